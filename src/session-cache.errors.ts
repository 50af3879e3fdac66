/**
 * Errors thrown or passed to callbacks by nestjs-session-cache. Each has a `name` that can be
 * matched on and a message that says what went wrong and what to do. None of them ever carries a
 * session id, a secret or a password.
 */

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
      `Session memcached ${server} failed a ${operation}: ${detail}. ` +
        'Check that the server is running and reachable from this host; sessions are ' +
        'unavailable until it answers again (no restart is needed).',
      options,
    );
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
