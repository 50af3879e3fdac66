import {
  HttpException,
  InternalServerErrorException,
  PayloadTooLargeException,
  ServiceUnavailableException,
} from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import {
  SessionCacheAuthError,
  SessionCacheError,
  SessionCacheTlsError,
  SessionCacheUnavailableError,
  SessionTooLargeError,
} from './session-cache.errors';
import type { SessionCache } from './memcached/session-cache.client';

/** Module-private token: what the middleware and the interceptor of one connection need. */
export const SESSION_HTTP_CONTEXT = 'nestjs-session-cache:http-context';

/** True for errors that mean "the session memcached cannot be used right now". */
export function isUnavailable(err: unknown): boolean {
  return (
    err instanceof SessionCacheUnavailableError ||
    err instanceof SessionCacheAuthError ||
    err instanceof SessionCacheTlsError
  );
}

/**
 * The response object of either HTTP platform: Node's `ServerResponse` (Express's response is
 * one), or a Fastify reply (`reply.header()`, `reply.sent`, the Node response as `reply.raw`).
 */
export type HttpResponse =
  | Pick<ServerResponse, 'setHeader' | 'headersSent'>
  | {
      readonly sent: boolean;
      readonly raw: Pick<ServerResponse, 'headersSent'>;
      header(name: string, value: string): unknown;
    };

/** Whether the response's headers are written already (no header can be added). */
export function headersSent(res: HttpResponse): boolean {
  return 'setHeader' in res ? res.headersSent : res.sent || res.raw.headersSent;
}

/** Sets a response header on either platform. */
export function setResponseHeader(res: HttpResponse, name: string, value: string): void {
  if ('setHeader' in res) res.setHeader(name, value);
  else res.header(name, value);
}

/**
 * Sets `Retry-After` (whole seconds, at least 1: when the library next tries the server that
 * failed) on a response that is about to answer 503 because of `err`. Other errors: nothing.
 */
export function setRetryAfter(
  res: HttpResponse | undefined,
  client: SessionCache,
  err: unknown,
): void {
  if (!res || headersSent(res)) return;
  const status = toHttpException(err).getStatus();
  if (status !== 503) return;
  setResponseHeader(res, 'Retry-After', String(client.retryAfterSeconds(err)));
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

/**
 * Logs a repeated warning at most once per `intervalMs`. What it held back is counted and reported
 * at the end of that interval ("… N more like this in the last 10 s"), so the first line of a later
 * burst (the next outage) starts clean. The timer never keeps the process alive.
 */
export class ThrottledWarning {
  #last = -Infinity;
  #suppressed = 0;
  #message = '';
  #timer: NodeJS.Timeout | null = null;
  constructor(
    private readonly warn: (message: string) => void,
    private readonly intervalMs = 10_000,
  ) {}
  emit(message: string): void {
    const now = Date.now();
    if (now - this.#last < this.intervalMs) {
      this.#suppressed++;
      this.#message = message;
      return;
    }
    this.#last = now;
    this.warn(message);
    this.#timer = setTimeout(() => this.#flush(), this.intervalMs);
    this.#timer.unref();
  }
  #flush(): void {
    this.#timer = null;
    if (this.#suppressed === 0) return;
    const held = this.#suppressed;
    this.#suppressed = 0;
    this.warn(
      `${this.#message} (and ${held} more like this in the last ${Math.round(this.intervalMs / 1000)} s)`,
    );
  }
}

export function errorSummary(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
