import type { SessionCacheAuthError } from '../session-cache.errors';

/** Shortest pause before a node that refused the SASL login is asked again, in milliseconds. */
export const AUTH_MIN_RETRY_MS = 1000;

export interface LoginBackoffOptions {
  /** `host:port` of the node, for the log lines. */
  name: string;
  /** The first pause, in milliseconds (at least {@link AUTH_MIN_RETRY_MS}). */
  retryDelay: number;
  /** The longest pause, in milliseconds (at least {@link AUTH_MIN_RETRY_MS}). */
  maxRetryDelay: number;
  logger?: { warn(message: string): void };
}

/**
 * The pause after a server refused our SASL login. A refused login is not an outage: one warning
 * is logged, and for `retryDelay` ms (at least {@link AUTH_MIN_RETRY_MS}, doubling while it keeps
 * failing, up to `maxRetryDelay`) calls to the node are refused at once, without network; then one
 * call tries to log in again. A call that gets an answer ends the pause.
 */
export class LoginBackoff {
  readonly #options: LoginBackoffOptions;
  /** Set while the server refuses our SASL login. */
  #refusing = false;
  #retryAt = 0;
  #delay = AUTH_MIN_RETRY_MS;
  /** Set while the one call that tries to log in again is in flight. */
  #retrying = false;

  constructor(options: LoginBackoffOptions) {
    this.#options = options;
  }

  /**
   * Before a call: `refuse` it during the pause (or while another call retries the login), let it
   * `retry` the login once the pause is over, or let it `go` when no login was refused.
   */
  admit(): 'go' | 'retry' | 'refuse' {
    if (!this.#refusing) return 'go';
    if (this.#retrying || performance.now() < this.#retryAt) return 'refuse';
    this.#retrying = true;
    return 'retry';
  }

  /** The call admitted to `retry` ended (whatever its outcome). */
  retryEnded(): void {
    this.#retrying = false;
  }

  /** A call met a refused login; `retry` says whether it was the call admitted to retry. */
  refused(err: SessionCacheAuthError, retry: boolean): void {
    if (!this.#refusing) {
      this.#refusing = true;
      this.#delay = Math.max(this.#options.retryDelay, AUTH_MIN_RETRY_MS);
      this.#options.logger?.warn(
        `${err.message} Calls to it fail at once for ${this.#delay} ms, then one call ` +
          'tries to log in again.',
      );
    } else if (retry) {
      this.#delay = Math.min(
        this.#delay * 2,
        Math.max(this.#options.maxRetryDelay, AUTH_MIN_RETRY_MS),
      );
    } else {
      return;
    }
    this.#retryAt = performance.now() + this.#delay;
  }

  /** A call was answered: the login went through. */
  accepted(): void {
    if (!this.#refusing) return;
    this.#refusing = false;
    this.#retryAt = 0;
    this.#options.logger?.warn(
      `Session memcached ${this.#options.name} accepted the SASL login again.`,
    );
  }

  /** Milliseconds until the next login retry while the server refuses our login, else 0. */
  get retryInMs(): number {
    return this.#refusing ? this.#retryAt - performance.now() : 0;
  }
}
