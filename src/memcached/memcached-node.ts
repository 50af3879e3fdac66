import {
  SessionCacheAuthError,
  SessionCacheError,
  SessionCacheTlsError,
  SessionCacheUnavailableError,
} from '../session-cache.errors';
import { toMemcachedExpiry } from './expiry';
import { DeadlineSweeper } from './deadline-sweeper';
import type { Deadline } from './deadline-sweeper';
import { MemjsConnection } from './memjs-adapter';
import type { Callback, CasValue } from './memjs-adapter';
import { LoginBackoff } from './login-backoff';
import { classifyFailure, describe, invalidKey } from './node-errors';
import { speaksTls } from './tls';
import type { MemcachedTls } from './tls';
import type { MemcachedCredentials } from './url';

export type { CasValue } from './memjs-adapter';
export { AUTH_MIN_RETRY_MS } from './login-backoff';
export { MAX_KEY_LENGTH } from './node-errors';

/** A place for the client's own messages (Nest's `Logger` fits). */
export interface SessionCacheLogger {
  warn(message: string): void;
  debug?(message: string): void;
}

export interface MemcachedNodeOptions {
  /** Time budget of one operation in milliseconds, connecting included. */
  timeout: number;
  keepAlive: boolean;
  /**
   * How often a node marked down is probed in the background, in milliseconds (also the shortest
   * pause before a node that refused our SASL login is asked again, at least
   * {@link AUTH_MIN_RETRY_MS}).
   */
  retryDelay: number;
  /** Longest pause between SASL login retries of a node that keeps refusing it, in milliseconds. */
  maxRetryDelay: number;
  credentials?: MemcachedCredentials;
  /** Connect over TLS with these settings (else plaintext TCP). */
  tls?: MemcachedTls;
  logger?: SessionCacheLogger;
  /** Called when the node is marked down (with the reason) or answers again. */
  onStateChange?: (node: MemcachedNode, up: boolean, detail: string, downtimeMs: number) => void;
  /** Called for every call the server did not answer (not for calls skipped while down). */
  onFailure?: (node: MemcachedNode, operation: string, detail: string) => void;
}

/**
 * One memcached server of the session cluster: its own memjs connection, the time budget of every
 * call, and the circuit breaker. After a call fails for want of the server (timeout, refused or
 * broken connection), the node is marked down and calls to it fail at once, without network. While
 * it is down the node probes the server itself, in the background: a `version` command (connecting
 * first when needed) within the time budget, every `retryDelay` ms after the last probe ended. The
 * first probe that is answered puts the node back in service; no user request ever waits on a
 * probe, and the probe timer never keeps the process alive. A server that refuses connections
 * costs one connection attempt per `retryDelay`; a hung one, one probe per `timeout` + `retryDelay`.
 *
 * A refused SASL login is not an outage and does not mark the node down: the call rejects with a
 * {@link SessionCacheAuthError}, one warning is logged, and for `retryDelay` ms (at least
 * {@link AUTH_MIN_RETRY_MS}, doubling while it keeps failing) calls to the node reject at once with
 * that error, without network; then one call tries to log in again. `stats()` (start-up and health
 * probes) always asks the server and neither logs nor starts that pause.
 *
 * With `tls`, the connection is TLS (see memjs-adapter.ts); a TLS failure that configuration
 * causes (untrusted certificate, wrong name, client certificate refused, plaintext port) rejects
 * with a {@link SessionCacheTlsError} and otherwise counts as an outage (marked down, probed).
 */
export class MemcachedNode {
  readonly #memjs: MemjsConnection;
  readonly #options: MemcachedNodeOptions;
  #closed = false;
  #down = false;
  #downSince = 0;
  /** The background probe of a node marked down: its timer, or true while a probe is in flight. */
  #prober: NodeJS.Timeout | true | null = null;
  /** When the next probe starts (performance.now() ms), for Retry-After. */
  #nextProbeAt = 0;
  readonly #deadlines: DeadlineSweeper;
  /** The pause after a refused SASL login (see the class comment). */
  readonly #login: LoginBackoff;

  constructor(
    /** `host:port` (IPv6 hosts in brackets). */
    readonly name: string,
    readonly host: string,
    readonly port: number,
    options: MemcachedNodeOptions,
  ) {
    this.#options = options;
    this.#deadlines = new DeadlineSweeper(options.timeout);
    this.#login = new LoginBackoff({
      name,
      retryDelay: options.retryDelay,
      maxRetryDelay: options.maxRetryDelay,
      logger: options.logger,
    });
    this.#memjs = new MemjsConnection(host, port, {
      // memjs's own clocks, set behind ours: our deadline bounds every call and resets the
      // connection; memjs's are only a backstop.
      timeoutSeconds: (options.timeout * 2) / 1000,
      keepAlive: options.keepAlive,
      credentials: options.credentials,
      tls: options.tls?.connectOptions(host, port),
      logger: options.logger,
    });
  }

  /** The SASL user name this node logs in with, or undefined when it has no credentials. */
  get username(): string | undefined {
    return this.#options.credentials?.username;
  }

  /** Whether this node connects over TLS. */
  get tls(): boolean {
    return this.#options.tls !== undefined;
  }

  /** False while the node is marked down (calls to it fail at once until the next retry). */
  get up(): boolean {
    return !this.#down;
  }

  /** When the node was marked down (ms since the epoch), or 0 while it is up. */
  get downSince(): number {
    return this.#down ? Math.round(Date.now() - (performance.now() - this.#downSince)) : 0;
  }

  get(key: string): Promise<Buffer | null> {
    return this.#call<Buffer | null>('get', key, (cb) =>
      this.#memjs.client.get(key, (err, value) => cb(err, value ?? null)),
    );
  }

  async set(key: string, value: string | Buffer, ttl?: number): Promise<void> {
    const ok = await this.#call<boolean>('set', key, (cb) =>
      this.#memjs.client.set(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) =>
        cb(err, !!r),
      ),
    );
    if (!ok) throw new SessionCacheError(`memcached ${this.name} refused to store a value (set).`);
  }

  add(key: string, value: string | Buffer, ttl?: number): Promise<boolean> {
    return this.#call<boolean>('add', key, (cb) =>
      this.#memjs.client.add(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) =>
        cb(err, !!r),
      ),
    );
  }

  replace(key: string, value: string | Buffer, ttl?: number): Promise<boolean> {
    return this.#call<boolean>('replace', key, (cb) =>
      this.#memjs.client.replace(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) =>
        cb(err, !!r),
      ),
    );
  }

  delete(key: string): Promise<boolean> {
    return this.#call<boolean>('delete', key, (cb) =>
      this.#memjs.client.delete(key, (err, r) => cb(err, !!r)),
    );
  }

  touch(key: string, ttl: number): Promise<boolean> {
    return this.#call<boolean>('touch', key, (cb) =>
      this.#memjs.client.touch(key, toMemcachedExpiry(ttl), (err, r) => cb(err, !!r)),
    );
  }

  /** Appends `value` to what `key` holds (its TTL unchanged). Resolves `false` when it is missing. */
  append(key: string, value: string | Buffer): Promise<boolean> {
    return this.#call<boolean>('append', key, (cb) =>
      this.#memjs.client.append(key, value, (err, r) =>
        // memcached answers "not stored" (not "not found") when the key is missing.
        err && /Item not stored/.test(err.message) ? cb(null, false) : cb(err, !!r),
      ),
    );
  }

  /** memcached's `stats`. A node marked down is asked anyway (this is how health checks see it). */
  stats(): Promise<Record<string, string>> {
    return this.#call<Record<string, string>>(
      'stats',
      undefined,
      (cb) =>
        this.#memjs.client.stats((err, _server, stats) =>
          cb(err, (stats ?? {}) as Record<string, string>),
        ),
      true,
    );
  }

  /** `get` with the value's CAS token, for {@link storeCas} and {@link deleteIfCas}. */
  gets(key: string): Promise<CasValue | null> {
    return this.#call<CasValue | null>('get', key, (cb) => this.#memjs.gets(key, cb));
  }

  /**
   * `add` or `replace` that answers the new CAS token of the value it stored, or null when it was
   * not stored (`add`: the key exists; `replace`: it is missing, or, with `cas`, it no longer
   * holds the value whose CAS token that was: somebody wrote it since it was read).
   */
  storeCas(
    operation: 'add' | 'replace',
    key: string,
    value: Buffer,
    ttl: number,
    cas?: Buffer,
  ): Promise<Buffer | null> {
    return this.#call<Buffer | null>(operation, key, (cb) =>
      this.#memjs.storeCas(operation, key, value, ttl, cas, cb),
    );
  }

  /** `delete` that applies only while the key holds the value whose CAS token is `cas`. */
  deleteIfCas(key: string, cas: Buffer): Promise<boolean> {
    return this.#call<boolean>('delete', key, (cb) => this.#memjs.deleteIfCas(key, cas, cb));
  }

  /**
   * memcached's get-and-touch: sets a new TTL like {@link touch} and answers the value it applied
   * to (null when the key is missing), so the caller learns what the TOUCH landed on.
   */
  getAndTouch(key: string, ttl: number): Promise<Buffer | null> {
    return this.#call<Buffer | null>('touch', key, (cb) => this.#memjs.getAndTouch(key, ttl, cb));
  }

  /**
   * memcached's `version`: the cheapest command there is, used to probe a node marked down. Like
   * {@link stats}, it is sent also while the node is marked down.
   */
  version(): Promise<string> {
    return this.#call<string>('version', undefined, (cb) => this.#memjs.version(cb), true);
  }

  /**
   * Milliseconds until this node is expected to be tried again: the next background probe while
   * it is marked down, the next login retry while the server refuses our login, else 0.
   */
  get retryInMs(): number {
    const now = performance.now();
    let ms = 0;
    if (this.#down) ms = Math.max(0, this.#nextProbeAt - now) + this.#options.timeout;
    ms = Math.max(ms, this.#login.retryInMs);
    return ms;
  }

  /** Closes the connection. Later calls reject. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopProbing();
    this.#memjs.close(); // destroys the socket: a hung server would keep the process alive
  }

  #call<T>(
    operation: string,
    key: string | undefined,
    run: (cb: Callback<T>) => void,
    ignoreBreaker = false,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#closed) {
        reject(new SessionCacheError(`SessionCache is closed; cannot ${operation}.`));
        return;
      }
      const badKey = key === undefined ? undefined : invalidKey(key, operation);
      if (badKey) {
        reject(badKey);
        return;
      }
      if (this.#down && !ignoreBreaker) {
        // The background probe brings the node back; a user request never waits on it.
        const now = performance.now();
        reject(
          new SessionCacheUnavailableError(
            operation,
            this.name,
            `skipped: marked down ${Math.round(now - this.#downSince)} ms ago, probed in the ` +
              `background every ${this.#options.retryDelay} ms`,
          ),
        );
        return;
      }
      // After the outage check, so that a node skipped as down never holds the login retry.
      const admitted = ignoreBreaker ? 'go' : this.#login.admit();
      if (admitted === 'refuse') {
        reject(new SessionCacheAuthError(this.name, this.username));
        return;
      }
      const authProbe = admitted === 'retry';
      const deadline: Deadline = this.#deadlines.start(() => {
        const detail =
          `no answer within ${this.#options.timeout} ms` +
          (this.#memjs.handshaking ? ' (the TLS handshake did not finish)' : '');
        finish(new Error(detail));
        // Drop the connection: every request still queued on it fails, so a hung server cannot
        // stall the calls that come after this one.
        this.#memjs.drop(new Error(detail));
      });
      const finish = (err: unknown, value?: T) => {
        if (deadline.settled) return;
        deadline.settled = true;
        if (authProbe) this.#login.retryEnded();
        if (err === null || err === undefined) {
          this.#markUp();
          this.#login.accepted();
          resolve(value as T);
          return;
        }
        const wrapped = classifyFailure(this, operation, err);
        if (wrapped instanceof SessionCacheAuthError) {
          this.#markUp(); // the server answered
          if (!ignoreBreaker) this.#login.refused(wrapped, authProbe);
        } else if (
          wrapped instanceof SessionCacheUnavailableError ||
          wrapped instanceof SessionCacheTlsError
        ) {
          // A TLS failure is not an answer: the node is down for us until a probe gets through
          // (e.g. once the server has a renewed certificate).
          const detail =
            wrapped instanceof SessionCacheTlsError
              ? wrapped.reason.replace(/\.$/, '')
              : describe(err);
          this.#options.onFailure?.(this, operation, detail);
          this.#markDown(detail);
        } else this.#markUp(); // a refusal is an answer: the server is there
        reject(wrapped);
      };
      try {
        run((err, value) => finish(err, value));
      } catch (err) {
        finish(err);
      }
    });
  }

  #markDown(reason: string): void {
    if (this.#down || this.#closed) return;
    this.#down = true;
    this.#downSince = performance.now();
    this.#options.onStateChange?.(this, false, reason, 0);
    this.#scheduleProbe();
  }

  #markUp(): void {
    if (!this.#down) return;
    const downFor = Math.round(performance.now() - this.#downSince);
    this.#down = false;
    this.#downSince = 0;
    this.#stopProbing();
    this.#options.onStateChange?.(this, true, `answered again after ${downFor} ms`, downFor);
  }

  /** Starts the next background probe in `retryDelay` ms (unref'd: it never keeps the process alive). */
  #scheduleProbe(): void {
    if (!this.#down || this.#closed || this.#prober !== null) return;
    const delay = this.#options.retryDelay;
    this.#nextProbeAt = performance.now() + delay;
    const timer = setTimeout(() => {
      this.#prober = true;
      // Answered: #call marks the node up (and stops probing). Not answered: probe again later.
      this.version().then(
        () => this.#probeEnded(),
        () => this.#probeEnded(),
      );
    }, delay);
    timer.unref();
    this.#prober = timer;
  }

  #probeEnded(): void {
    if (this.#prober === true) this.#prober = null;
    this.#scheduleProbe();
  }

  #stopProbing(): void {
    if (this.#prober !== null && this.#prober !== true) clearTimeout(this.#prober);
    this.#prober = null;
  }

  /**
   * For start-up: when a call to a plaintext node failed because the server reset the connection,
   * whether that server speaks TLS (one handshake within the time budget), as memcached -Z does to
   * a plaintext request. Returns the error that says so, or undefined.
   */
  async tlsMismatch(err: unknown): Promise<SessionCacheTlsError | undefined> {
    if (this.#options.tls || !(err instanceof SessionCacheUnavailableError)) return undefined;
    const code = (err.cause as NodeJS.ErrnoException | undefined)?.code;
    if (code !== 'ECONNRESET' && code !== 'EPIPE') return undefined;
    if (!(await speaksTls(this.host, this.port, this.#options.timeout))) return undefined;
    return new SessionCacheTlsError(
      this.name,
      'it speaks TLS, but the URL is memcached:// (plaintext). Use memcacheds:// (or the `tls` ' +
        'option), with `tls.ca` for a certificate of your own CA.',
      { cause: err },
    );
  }
}
