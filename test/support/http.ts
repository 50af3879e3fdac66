// Cookie helpers for supertest: replay a Set-Cookie on the next request, and look inside
// express-session's cookie. Session ids are secrets: assert on them, never print them.
import type { Response } from 'supertest';

/** The Set-Cookie headers of a response (none: an empty array). */
export function setCookies(res: Response): string[] {
  const header = res.headers['set-cookie'] as unknown;
  if (Array.isArray(header)) return header.map(String);
  return typeof header === 'string' ? [header] : [];
}

/**
 * The `name=value` pair of cookie `name` that `res` sets, ready for a `Cookie` header:
 * `request(server).get('/me').set('Cookie', cookieFrom(res))`. Throws when `res` sets none.
 */
export function cookieFrom(res: Response, name = 'connect.sid'): string {
  const cookie = setCookies(res).find((c) => c.startsWith(`${name}=`));
  if (!cookie) {
    throw new Error(`The response (HTTP ${res.status}) sets no "${name}" cookie.`);
  }
  return cookie.split(';')[0];
}

/** The attributes of cookie `name` as `res` sets it (lower-cased names), or undefined. */
export function cookieAttributes(
  res: Response,
  name = 'connect.sid',
): Record<string, string> | undefined {
  const cookie = setCookies(res).find((c) => c.startsWith(`${name}=`));
  if (!cookie) return undefined;
  const attributes: Record<string, string> = {};
  for (const part of cookie.split(';').slice(1)) {
    const eq = part.indexOf('=');
    const key = (eq >= 0 ? part.slice(0, eq) : part).trim().toLowerCase();
    attributes[key] = eq >= 0 ? part.slice(eq + 1).trim() : '';
  }
  return attributes;
}

/** Whether `res` tells the browser to drop cookie `name` (empty value, expiry in the past). */
export function clearsCookie(res: Response, name = 'connect.sid'): boolean {
  const attributes = cookieAttributes(res, name);
  if (!attributes) return false;
  const expires = Date.parse(attributes.expires ?? '');
  return (
    cookieFrom(res, name) === `${name}=` &&
    ((!Number.isNaN(expires) && expires <= Date.now()) || attributes['max-age'] === '0')
  );
}

/**
 * The session id inside an express-session cookie pair (`name=s%3A<id>.<signature>`), e.g. to
 * look the session up in memcached. The signature is not checked.
 */
export function sessionIdOf(cookie: string): string {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  if (!value.startsWith('s:') || value.lastIndexOf('.') < 3) {
    throw new Error('Not a signed express-session cookie.');
  }
  return value.slice(2, value.lastIndexOf('.'));
}
