import type { SessionCacheSessionOptions } from '../interfaces/session-cache-options.interface';
import { SessionCacheConfigError } from '../session-cache.errors';

/** @fastify/session refuses shorter string secrets; the module asks as much of every secret. */
export const FASTIFY_MIN_SECRET_LENGTH = 32;

/** express-session's cookie name, kept on Fastify: the same options give the same cookie. */
const DEFAULT_COOKIE_NAME = 'connect.sid';

/** The options of @fastify/session (11.x) this module sets; `store` is added by the plugin. */
export interface FastifySessionPluginOptions {
  secret: string | string[];
  cookieName: string;
  cookiePrefix: string;
  cookie: Record<string, unknown>;
  rolling: boolean;
  saveUninitialized: boolean;
  idGenerator?: (request?: unknown) => string;
}

/**
 * @fastify/session's options from the module's express-session-style `session` options (with the
 * module's defaults applied: HttpOnly, SameSite=Lax, `saveUninitialized: false`):
 *
 * - `secret` (a string, or an array whose first entry signs) as it is; every secret must have at
 *   least 32 characters;
 * - `name` → `cookieName` (default `connect.sid`), and the cookie value keeps express-session's
 *   format (`s:` + the signed id, same signature): an app can move between platforms without
 *   logging anyone out;
 * - `cookie` → `cookie` (`maxAge`, `expires`, `httpOnly`, `sameSite`, `secure` (default false, as
 *   in express-session; @fastify/session's own default is true), `path`, `domain`,
 *   `partitioned`);
 * - `rolling` (default false, as in express-session; @fastify/session's own default is true),
 *   `saveUninitialized`, `genid` → `idGenerator` (called with the Fastify request).
 *
 * Settings @fastify/session has no equivalent for are refused with a {@link SessionCacheConfigError}
 * rather than ignored: `resave: true`, `unset: 'destroy'`, a cookie computed per request.
 */
export function toFastifySessionOptions(
  session: SessionCacheSessionOptions,
): FastifySessionPluginOptions {
  const secrets = Array.isArray(session.secret) ? session.secret : [session.secret];
  const short = secrets.filter(
    (s) => typeof s !== 'string' || s.length < FASTIFY_MIN_SECRET_LENGTH,
  );
  if (short.length > 0) {
    const which = Array.isArray(session.secret)
      ? `${short.length} of its ${secrets.length} secrets are shorter`
      : `has ${typeof session.secret === 'string' ? session.secret.length : 0}`;
    throw new SessionCacheConfigError(
      `On Fastify, every session secret needs at least ${FASTIFY_MIN_SECRET_LENGTH} characters ` +
        `(@fastify/session signs cookies with it); options.session.secret ${which}. Use a long ` +
        'random value from the environment, e.g. made with `openssl rand -base64 48`.',
    );
  }
  if (typeof session.cookie === 'function') {
    throw new SessionCacheConfigError(
      'options.session.cookie cannot be a function on Fastify: @fastify/session takes fixed ' +
        'cookie options. Give an object.',
    );
  }
  if (session.resave === true) {
    throw new SessionCacheConfigError(
      'options.session.resave: true is not supported on Fastify (@fastify/session saves a ' +
        'session when it changed, or at every request with `rolling: true`). Leave it out.',
    );
  }
  if (session.unset === 'destroy') {
    throw new SessionCacheConfigError(
      "options.session.unset: 'destroy' is not supported on Fastify: call " +
        '`req.session.destroy()` to end a session.',
    );
  }
  const { maxAge, expires, httpOnly, sameSite, secure, path, domain, partitioned } =
    session.cookie ?? {};
  const cookie: Record<string, unknown> = { secure: secure ?? false };
  for (const [key, value] of Object.entries({
    maxAge,
    expires,
    httpOnly,
    sameSite,
    path,
    domain,
    partitioned,
  })) {
    if (value !== undefined) cookie[key] = value;
  }
  const genid = session.genid;
  return {
    secret: session.secret,
    cookieName: session.name ?? DEFAULT_COOKIE_NAME,
    cookiePrefix: 's:',
    cookie,
    rolling: session.rolling ?? false,
    saveUninitialized: session.saveUninitialized ?? false,
    ...(genid
      ? { idGenerator: (request?: unknown) => genid(request as Parameters<typeof genid>[0]) }
      : {}),
  };
}
