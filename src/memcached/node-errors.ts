import {
  isError,
  SessionCacheAuthError,
  SessionCacheError,
  SessionCacheTlsError,
  SessionCacheUnavailableError,
} from '../session-cache.errors';
import { isAuthFailure, isRefusal } from './memjs-adapter';
import { describeTlsFailure } from './tls';

/** The longest key memcached accepts. */
export const MAX_KEY_LENGTH = 250;

/** Why memcached cannot take `key` (empty, not a string, over {@link MAX_KEY_LENGTH} bytes), or undefined. */
export function invalidKey(key: unknown, operation: string): SessionCacheError | undefined {
  if (
    typeof key === 'string' &&
    key.length > 0 &&
    // (a key of up to 83 UTF-16 units is at most 249 bytes: skip the count)
    (key.length <= 83 || Buffer.byteLength(key) <= MAX_KEY_LENGTH)
  )
    return undefined;
  return new SessionCacheError(
    `memcached keys must be 1 to ${MAX_KEY_LENGTH} bytes; got ${
      typeof key === 'string' ? Buffer.byteLength(key) : typeof key
    } (${operation}).`,
  );
}

/** The node a failed call was sent to, as its errors name it. */
export interface FailedNode {
  /** `host:port`. */
  name: string;
  username: string | undefined;
  tls: boolean;
}

/**
 * What a failed call of `node` rejects with: a {@link SessionCacheAuthError} when the server
 * refused our SASL login, a {@link SessionCacheTlsError} when TLS failed for a reason
 * configuration causes, a plain {@link SessionCacheError} when the server answered but refused the
 * command (e.g. a value too large), else (no answer: timeout, refused or broken connection) a
 * {@link SessionCacheUnavailableError}. Our own errors pass through.
 */
export function classifyFailure(node: FailedNode, operation: string, err: unknown): Error {
  if (err instanceof SessionCacheError) return err;
  if (isAuthFailure(err))
    return new SessionCacheAuthError(node.name, node.username, { cause: err });
  const tlsFailure = node.tls ? describeTlsFailure(err) : undefined;
  if (tlsFailure) return new SessionCacheTlsError(node.name, tlsFailure, { cause: err });
  if (isRefusal(err)) {
    return new SessionCacheError(
      `memcached ${node.name} refused the ${operation}: ${err.message}`,
      {
        cause: err,
      },
    );
  }
  return new SessionCacheUnavailableError(operation, node.name, describe(err), { cause: err });
}

/** A short description of `err` for messages and events (no trailing period). */
export function describe(err: unknown): string {
  if (isError(err)) {
    const code = (err as NodeJS.ErrnoException).code;
    return (err.message || code || err.name || 'unknown error').replace(/\.$/, '');
  }
  if (typeof err === 'string' && err) return err.replace(/\.$/, '');
  return 'unknown error';
}
