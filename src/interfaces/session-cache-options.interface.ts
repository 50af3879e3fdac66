import type {
  InjectionToken,
  MiddlewareConsumer,
  ModuleMetadata,
  OptionalFactoryDependency,
  Type,
} from '@nestjs/common';
import type { SessionData, SessionOptions } from 'express-session';
import type { MemcachedTls, SessionCacheTlsOptions } from '../memcached/tls';
import type { SessionSerializer } from '../store/session.serializer';

/** express-session's options, minus `store` (this library provides it) and with `secret` required. */
export type SessionCacheSessionOptions = Omit<SessionOptions, 'store' | 'secret'> & {
  /** Signs the session cookie. An array rotates secrets: the first signs, all verify. */
  secret: string | string[];
};

/** A route the middleware skips: a path or `{ path, method }`, as in Nest's `exclude()`. */
export type SessionCacheExcludedRoute = Parameters<
  ReturnType<MiddlewareConsumer['apply']>['exclude']
>[number];
/** A route the middleware covers: a path, `{ path, method }` or a controller, as in `forRoutes()`. */
export type SessionCacheRoute = Parameters<
  ReturnType<MiddlewareConsumer['apply']>['forRoutes']
>[number];

/** Options of the session store alone (also used by `createSessionStore`). */
export interface SessionStoreOptions {
  /** Prefix of every memcached key. Default `'sess:'`. */
  prefix?: string;
  /** TTL in seconds for sessions whose cookie has no maxAge/expires. Default 86400 (1 day). */
  ttl?: number;
  /** Largest serialized session in bytes. Default 1 MiB − 1 KiB (memcached's default -I 1m). */
  maxSessionSize?: number;
  /** How sessions become bytes. Default JSON. */
  serializer?: SessionSerializer;
  /**
   * Hide session ids in memcached: the key is the prefix plus HMAC-SHA256(`keySecret`, id).
   * Default true. `false` uses the raw id (anyone who can list memcached's keys can then hijack
   * sessions).
   */
  hashKeys?: boolean;
  /**
   * Secret of the key HMAC. SessionCacheModule defaults it to the session secret (the last one when
   * `secret` is an array, so adding a new secret in front keeps sessions); `createSessionStore` and
   * `new SessionStore` need it unless `hashKeys` is false. Changing it logs everyone out.
   */
  keySecret?: string | Buffer;
  /**
   * Encrypt sessions at rest with AES-256-GCM: 32-byte keys (Buffers, or base64/hex strings); the
   * first encrypts, all decrypt (rotation). Values that do not authenticate, or are not encrypted,
   * count as no session. Default: off.
   */
  encryptionKeys?: (string | Buffer)[];
  /**
   * The user id of a session, for `destroyUserSessions(userId)` (logout everywhere), e.g.
   * `(session) => session.userId`. A save that gives a session a new user id (a login) adds it to
   * that user's index; ordinary requests cost nothing extra. Default: none.
   */
  userId?: (session: SessionData) => unknown;
  /**
   * Lazy touch: sessions are kept this fraction of their lifetime longer than their cookie, and
   * express-session's per-request touch is skipped while memcached is known to keep the session
   * past its cookie's expiry. A session then expires between its idle timeout (maxAge after the
   * last request) and that plus `lazyTouch` × maxAge; never earlier. 0 touches on every request.
   * Default 0.1.
   */
  lazyTouch?: number;
  /**
   * How often (ms) a process re-reads the namespace generation that `clear()` raises; other
   * processes stop serving cleared sessions within this time. Default 1000.
   */
  generationCheckInterval?: number;
  /** Time budget of one memcached operation in ms, retries and connecting included. Default 500. */
  timeout?: number;
  /** TCP keep-alive on memcached connections. Default false. */
  keepAlive?: boolean;
  /** SASL user name; overrides the URL's. Give `password` with it. */
  username?: string;
  /** SASL password; overrides the URL's. Never logged. */
  password?: string;
  /**
   * TLS to every memcached server: `true` (certificates checked against Node's default CAs) or
   * Node's `tls.connect` options (`ca`, `cert` + `key` for a client certificate, `servername`,
   * `rejectUnauthorized`, `minVersion`…). A `memcacheds://` URL turns it on too; `false` with such
   * a URL is an error. Certificates are verified unless `rejectUnauthorized: false`. Default:
   * plaintext (memcached://).
   */
  tls?: boolean | SessionCacheTlsOptions | MemcachedTls;
  /**
   * Copies of every session, on distinct memcached nodes (also `?replicas=` in the URL). With 2,
   * losing any one node loses no session. Default 1.
   */
  replicas?: number;
  /**
   * How often a memcached node marked down is probed in the background, in ms (also
   * `?retryDelay=`): a server that is back serves again within this time plus one round trip. A
   * probe is one `version` command (a connection attempt while the server refuses them); none is
   * sent while the node is up. At least 10. Default 100.
   */
  retryDelay?: number;
  /**
   * The shortest time the marker of a destroyed session is kept, in seconds (only with `replicas`
   * > 1; it stops a copy on a node that missed the logout from coming back). Each tombstone lives
   * at least as long as the session it marks could still live (its stored values say how long that
   * is, remember-me lengthenings included), and at least this long. Default: the cookie's maxAge
   * when the module knows it, else `ttl`.
   */
  tombstoneTtl?: number;
  /**
   * @internal Test seam: the shortest lifetime of a user's session index, in seconds (default 30
   * days), so that tests can run index expiry in seconds. Production code never needs it.
   */
  userIndexMinTtl?: number;
}

/** Options of `SessionCacheModule.forRoot(url, options)`. */
export interface SessionCacheOptions extends SessionStoreOptions {
  /** express-session options. `secret` is required. */
  session: SessionCacheSessionOptions;
  /**
   * What a request gets when the session memcached cannot be reached (503 answers carry
   * `Retry-After`):
   * - `'lazy'` (default): the request is served as usual; the first read or write of `req.session`
   *   (a guard, a pipe, `@Session()`, the handler) throws a 503 `HttpException` that goes through
   *   the app's exception filters. Routes that never use the session keep working.
   * - `'fail'`: every request the middleware covers is answered 503 at once.
   * - `'proceed'`: logs a warning and runs the handler with `req.session` undefined.
   */
  onUnavailable?: 'lazy' | 'fail' | 'proceed';
  /** Install the session middleware. Default true; false if you wire express-session yourself. */
  installMiddleware?: boolean;
  /** Routes the middleware covers. Default: all routes. */
  forRoutes?: SessionCacheRoute[];
  /** Routes the middleware skips. Default: none. */
  exclude?: SessionCacheExcludedRoute[];
  /**
   * Save a modified session before a Nest handler's response is sent, so failures become HTTP
   * errors (413 too large, 503 unavailable) instead of a 200 with lost data. Default true.
   */
  saveBeforeResponse?: boolean;
  /** Name of this connection, for apps with more than one. Default: the unnamed connection. */
  name?: string;
  /** Register the module globally. Default true. */
  isGlobal?: boolean;
}

/** What a `forRootAsync` factory returns: the URL plus the options. */
export interface SessionCacheModuleOptions extends Omit<SessionCacheOptions, 'name' | 'isGlobal'> {
  /** `memcached[s]://[user:password@]host[:port][,host[:port]...][?option=value...]` */
  url: string;
}

/** A class that builds the options, for `forRootAsync({ useClass })` / `useExisting`. */
export interface SessionCacheOptionsFactory {
  createSessionCacheOptions(): SessionCacheModuleOptions | Promise<SessionCacheModuleOptions>;
}

/** Options of `SessionCacheModule.forRootAsync()`. */
export interface SessionCacheModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  name?: string;
  isGlobal?: boolean;
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
  useFactory?: (
    ...args: any[] // eslint-disable-line @typescript-eslint/no-explicit-any -- matches Nest's own FactoryProvider
  ) => SessionCacheModuleOptions | Promise<SessionCacheModuleOptions>;
  useClass?: Type<SessionCacheOptionsFactory>;
  useExisting?: Type<SessionCacheOptionsFactory>;
}
