import {
  HttpException,
  InternalServerErrorException,
  PayloadTooLargeException,
  ServiceUnavailableException,
} from '@nestjs/common';
import {
  SessionCacheError,
  SessionCacheUnavailableError,
  SessionTooLargeError,
} from './session-cache.errors';

/** Module-private token: what the middleware and the interceptor of one connection need. */
export const SESSION_HTTP_CONTEXT = 'nestjs-session-cache:http-context';

/** True for errors that mean "the session memcached cannot be used right now". */
export function isUnavailable(err: unknown): boolean {
  return err instanceof SessionCacheUnavailableError;
}

/**
 * The HTTP answer to a store error: 413 for a session that is too large, 503 when memcached cannot
 * be used. The body never names servers; the log line does.
 */
export function toHttpException(err: unknown): HttpException {
  if (err instanceof HttpException) return err;
  if (err instanceof SessionTooLargeError) {
    return new PayloadTooLargeException(
      `The session is too large to store (${err.size} bytes, limit ${err.limit}); it was not saved.`,
      { cause: err },
    );
  }
  if (err instanceof SessionCacheError) {
    return new ServiceUnavailableException(
      'Sessions are temporarily unavailable; try again soon.',
      {
        cause: err,
      },
    );
  }
  return new InternalServerErrorException(undefined, { cause: err });
}

/** Logs a repeated warning at most once per `intervalMs`, counting what it held back. */
export class ThrottledWarning {
  #last = -Infinity;
  #suppressed = 0;
  constructor(
    private readonly warn: (message: string) => void,
    private readonly intervalMs = 10_000,
  ) {}
  emit(message: string): void {
    const now = Date.now();
    if (now - this.#last < this.intervalMs) {
      this.#suppressed++;
      return;
    }
    const held = this.#suppressed;
    this.#last = now;
    this.#suppressed = 0;
    this.warn(held > 0 ? `${message} (${held} similar messages held back)` : message);
  }
}

export function errorSummary(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
