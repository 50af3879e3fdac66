import { toFastifySessionOptions } from '../../src/fastify/fastify-session.options';
import { resolveSessionCacheOptions } from '../../src/session-cache.providers';
import { SessionCacheConfigError } from '../../src';
import type { SessionCacheSessionOptions } from '../../src';

const SECRET = 'a-session-secret-of-at-least-32-chars';

/** The module's `session` options after its defaults, mapped onto @fastify/session's. */
function mapped(session: Partial<SessionCacheSessionOptions>) {
  const resolved = resolveSessionCacheOptions({
    url: 'memcached://127.0.0.1:11211',
    session: { secret: SECRET, ...session },
  });
  return toFastifySessionOptions(resolved.session);
}

describe('express-session options on @fastify/session', () => {
  it("keeps express-session's defaults and cookie (not @fastify/session's)", () => {
    expect(mapped({})).toEqual({
      secret: SECRET,
      cookieName: 'connect.sid',
      cookiePrefix: 's:',
      cookie: { secure: false, httpOnly: true, sameSite: 'lax' },
      rolling: false,
      saveUninitialized: false,
    });
  });

  it('maps name, cookie, rolling, saveUninitialized, genid and secret arrays', () => {
    const seen: unknown[] = [];
    const genid = (req: unknown) => {
      seen.push(req);
      return 'an-id';
    };
    const options = mapped({
      secret: [SECRET, `${SECRET}-old`],
      name: 'app.sid',
      rolling: true,
      saveUninitialized: true,
      genid,
      cookie: {
        maxAge: 40 * 86_400_000,
        secure: 'auto',
        sameSite: 'strict',
        httpOnly: false,
        path: '/app',
        domain: 'example.com',
      },
    });
    expect(options).toMatchObject({
      secret: [SECRET, `${SECRET}-old`],
      cookieName: 'app.sid',
      rolling: true,
      saveUninitialized: true,
      cookie: {
        maxAge: 40 * 86_400_000,
        secure: 'auto',
        sameSite: 'strict',
        httpOnly: false,
        path: '/app',
        domain: 'example.com',
      },
    });
    const request = { id: 'r' };
    expect(options.idGenerator!(request)).toBe('an-id');
    expect(seen).toEqual([request]);
  });

  it.each([
    [{ secret: 'x'.repeat(31) }, /at least 32 characters.*has 31/],
    [{ secret: [SECRET, 'short'] }, /1 of its 2 secrets are shorter/],
    [{ cookie: () => ({}) }, /cannot be a function/], // (a function: shown as {})
    [{ resave: true }, /resave: true/],
    [{ unset: 'destroy' as const }, /unset: 'destroy'/],
  ])('refuses %j with a SessionCacheConfigError', (session, message) => {
    expect(() => mapped(session as Partial<SessionCacheSessionOptions>)).toThrow(
      SessionCacheConfigError,
    );
    expect(() => mapped(session as Partial<SessionCacheSessionOptions>)).toThrow(message);
  });
});
