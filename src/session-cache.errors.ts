/**
 * Errors thrown or passed to callbacks by nestjs-session-cache. Each has a `name` that can be
 * matched on and a message that says what went wrong and what to do. None of them ever carries a
 * session id, a secret or a password.
 */

import { types } from 'node:util';

/**
 * Whether `err` is an Error, also one made in another realm (Node's own socket and TLS errors, seen
 * from code that runs in a `vm` context such as Jest's, fail `instanceof Error`).
 */
export function isError(err: unknown): err is Error {
  return err instanceof Error || types.isNativeError(err);
}

/** Base class of every error this library raises. */
export class SessionCacheError extends Error {
  override name = 'SessionCacheError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The module or store options are invalid. */
export class SessionCacheConfigError extends SessionCacheError {
  override name = 'SessionCacheConfigError';
}

/** The connection URL could not be parsed. The message names the bad part. */
export class SessionCacheUrlError extends SessionCacheConfigError {
  override name = 'SessionCacheUrlError';
}

/**
 * The session memcached did not answer in time or refused the connection. Requests that need
 * their session get HTTP 503 (see the `onUnavailable` option).
 */
export class SessionCacheUnavailableError extends SessionCacheError {
  override name = 'SessionCacheUnavailableError';
  constructor(
    readonly operation: string,
    readonly server: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `Session memcached ${server} did not answer ${/^[aeiou]/.test(operation) ? 'an' : 'a'} ` +
        `${operation} command: ${detail}. ` +
        'Check that the server is running and reachable from this host; sessions are ' +
        'unavailable until it answers again (no restart is needed).',
      options,
    );
  }
}

/**
 * A session memcached refused the SASL login: wrong user name or password, a user missing from its
 * sasldb, or no credentials configured for a server that requires them (`memcached -S`). The
 * message names the server and the user, never the password. Thrown at application start-up (the
 * app does not start); met later (e.g. after the server's sasldb changed) it fails the session
 * operations that need that server, like an unavailable one (HTTP 503).
 */
export class SessionCacheAuthError extends SessionCacheError {
  override name = 'SessionCacheAuthError';
  constructor(
    /** `host:port` of the server that refused. */
    readonly server: string,
    /** The user name that was refused, or undefined when no credentials were configured. */
    readonly username: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(
      username === undefined
        ? `Session memcached ${server} requires SASL authentication (it runs with -S), but no ` +
            'credentials are configured. Put them in the URL ' +
            '(memcached://user:password@host, password percent-encoded) or set the `username` ' +
            'and `password` options.'
        : `Session memcached ${server} rejected the SASL login of user ${JSON.stringify(username)}. ` +
            'Check the password (percent-encoded in the URL, or the `password` option), that the ' +
            "user is in the server's sasldb for memcached's realm (saslpasswd2 -a memcached " +
            "-u <memcached's host name>), and that memcached runs with -S and allows the PLAIN " +
            'mechanism (mech_list in its SASL configuration).',
      options,
    );
  }
}

/**
 * TLS to a session memcached failed for a reason its configuration causes: its certificate is not
 * trusted (unknown CA, self-signed, expired) or not valid for the name we connect to, it refused our
 * client certificate (or the lack of one), or one side speaks TLS and the other does not. The message
 * names the server and the reason, never a key or a password. Thrown at application start-up (the
 * app does not start); met later (e.g. after a certificate expired) the node is marked down and
 * probed like an unreachable one, and requests that need it get HTTP 503.
 */
export class SessionCacheTlsError extends SessionCacheError {
  override name = 'SessionCacheTlsError';
  constructor(
    /** `host:port` of the server. */
    readonly server: string,
    /** What failed and what to do, e.g. "its certificate is not trusted (…). Give …". */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`TLS to session memcached ${server} failed: ${reason}`, options);
  }
}

/**
 * A session was refused before it was sent because its serialized size exceeds the item limit.
 * Whatever was stored for that session before is left intact. Requests get HTTP 413.
 */
export class SessionTooLargeError extends SessionCacheError {
  override name = 'SessionTooLargeError';
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(
      `Session is ${size} bytes serialized, over the limit of ${limit} bytes; it was not saved ` +
        'and the previously stored session is unchanged. Keep large data out of the session ' +
        '(store an id and load the data elsewhere), or raise `maxSessionSize` together with ' +
        "memcached's item size limit (-I).",
    );
  }
}

/**
 * With `hashKeys: false`, a session id that has the form of one of the store's own keys
 * (`generation`, a `user:` index, or ending in `!`, a logout's tombstone) cannot be stored: it
 * would overwrite or be mistaken for that key. Loading such an id finds no session; saving it
 * fails with this error. Use express-session's default ids (or a `genid` that cannot produce those
 * forms), or leave `hashKeys` on.
 */
export class SessionIdError extends SessionCacheError {
  override name = 'SessionIdError';
  constructor() {
    super(
      'This session id cannot be stored with `hashKeys: false`: it has the form of one of the ' +
        "store's own keys (`generation`, a `user:` prefix, or a trailing `!`). Use ids that " +
        "cannot take those forms (express-session's default ids never do), or leave `hashKeys` on.",
    );
  }
}
