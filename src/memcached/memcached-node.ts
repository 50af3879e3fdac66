import { Client, Server, Utils } from 'memjs';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import {
  isError,
  SessionCacheAuthError,
  SessionCacheError,
  SessionCacheTlsError,
  SessionCacheUnavailableError,
} from '../session-cache.errors';
import { toMemcachedExpiry } from './expiry';
import { describeTlsFailure, speaksTls } from './tls';
import type { MemcachedTls } from './tls';
import type { MemcachedCredentials } from './url';

/** A place for the client's own messages (Nest's `Logger` fits). */
export interface SessionCacheLogger {
  warn(message: string): void;
  debug?(message: string): void;
}

/** The longest key memcached accepts. */
export const MAX_KEY_LENGTH = 250;

/** Shortest pause before a node that refused the SASL login is asked again, in milliseconds. */
export const AUTH_MIN_RETRY_MS = 1000;

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

type Callback<T> = (err: Error | null, value: T) => void;

/** Binary-protocol opcodes memjs has no method for (or none that shows the CAS). */
const OP_GET = 0x00;
const OP_ADD = 0x02;
const OP_REPLACE = 0x03;
const OP_DELETE = 0x04;
const OP_VERSION = 0x0b;
const OP_GAT = 0x1d;
/** Binary-protocol response statuses. */
const STATUS_OK = 0x00;
const STATUS_NOT_FOUND = 0x01;
const STATUS_EXISTS = 0x02;
const STATUS_NOT_STORED = 0x05;

/** A binary-protocol response as memjs parses it. */
interface MemjsResponse {
  header: { status: number; cas: Buffer };
  val: Buffer;
}

/**
 * The parts of memjs's Client used for the commands memjs lacks (`version`, get with CAS,
 * compare-and-swap replace and delete, get-and-touch). All of memjs's internals this library
 * touches are in this file: `seq`/`incrSeq`/`perform` of the Client, and `Utils.makeRequestBuffer`
 * (memjs 1.3: a 24-byte request header, then extras, key, value; the CAS goes in bytes 16-23).
 */
interface MemjsClientInternals {
  seq: number;
  incrSeq(): void;
  perform(
    key: string,
    request: Buffer,
    seq: number,
    callback: (err: Error | null, response?: MemjsResponse) => void,
  ): void;
}

/** A value as memcached holds it, with its CAS token (which any write of the key changes). */
export interface CasValue {
  value: Buffer;
  cas: Buffer;
}

/** The 4-byte expiration extras of touch and get-and-touch. */
function expirationExtras(ttl: number): Buffer {
  const extras = Buffer.alloc(4);
  extras.writeUInt32BE(toMemcachedExpiry(ttl), 0);
  return extras;
}

const STATUS_NAMES: Record<number, string> = {
  [STATUS_NOT_FOUND]: 'Key not found',
  [STATUS_EXISTS]: 'Key exists',
  [STATUS_NOT_STORED]: 'Item not stored',
};

/** A deadline timer this late means the event loop was stalled, not the server (ms). */
const STALL_MS = 50;

/** A call in flight: when it runs out of time, and how to fail it then. */
interface Deadline {
  at: number;
  settled: boolean;
  /** Given a new budget after an event-loop stall (at most once). */
  extended?: boolean;
  expire(): void;
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
 * With `tls`, the connection is TLS (see {@link connectOverTls}); a TLS failure that configuration
 * causes (untrusted certificate, wrong name, client certificate refused, plaintext port) rejects
 * with a {@link SessionCacheTlsError} and otherwise counts as an outage (marked down, probed).
 */
export class MemcachedNode {
  readonly #client: Client;
  readonly #options: MemcachedNodeOptions;
  #closed = false;
  #down = false;
  #downSince = 0;
  /** The background probe of a node marked down: its timer, or true while a probe is in flight. */
  #prober: NodeJS.Timeout | true | null = null;
  /** When the next probe starts (performance.now() ms), for Retry-After. */
  #nextProbeAt = 0;
  readonly #deadlines: Deadline[] = [];
  #sweeper: NodeJS.Timeout | null = null;
  #sweepDueAt = 0;
  /** Set while the server refuses our SASL login (see the class comment). */
  #authFailed = false;
  #authRetryAt = 0;
  #authDelay = AUTH_MIN_RETRY_MS;
  #authProbing = false;
  /** With TLS: whether the current connection is still in its TLS handshake. */
  readonly #handshaking?: () => boolean;

  constructor(
    /** `host:port` (IPv6 hosts in brackets). */
    readonly name: string,
    readonly host: string,
    readonly port: number,
    options: MemcachedNodeOptions,
  ) {
    this.#options = options;
    // memjs's own clocks, set behind ours: our deadline bounds every call and resets the
    // connection; memjs's are only a backstop.
    const seconds = (options.timeout * 2) / 1000;
    const server = new Server(
      host,
      port,
      options.credentials?.username,
      options.credentials?.password,
      { timeout: seconds, conntimeout: seconds, keepAlive: options.keepAlive },
    );
    // Without credentials memjs falls back to MEMCACHIER_USERNAME / MEMCACHE_USERNAME (and the
    // matching *_PASSWORD) from the environment. Those belong to some other cache: never send them
    // to the session servers. Exactly the configured credentials, or none.
    const login = server as unknown as { username?: string; password?: string };
    login.username = options.credentials?.username;
    login.password = options.credentials?.password;
    forgetUnsentOnError(server);
    coalesceWrites(server);
    if (options.tls)
      this.#handshaking = connectOverTls(server, options.tls.connectOptions(host, port));
    this.#client = new Client([server], {
      // memjs counts attempts here (1 = no retry); a retry would not fit the time budget.
      retries: 1,
      failover: false,
      logger: {
        log: (...args: unknown[]) => {
          const message = args.map(String).join(' ');
          // memjs logs every failed call ("MemJS: Server <…> failed after (1) retries with
          // error - …"): under load on a dead node that floods the log. The node reports those
          // itself, once per state change (nodeDown/nodeUp, SessionCacheAuthError) and per call
          // as the operationFailed event.
          if (!/^MemJS: Server <.*> failed after/.test(message)) options.logger?.warn(message);
        },
      },
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
      this.#client.get(key, (err, value) => cb(err, value ?? null)),
    );
  }

  async set(key: string, value: string | Buffer, ttl?: number): Promise<void> {
    const ok = await this.#call<boolean>('set', key, (cb) =>
      this.#client.set(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) => cb(err, !!r)),
    );
    if (!ok) throw new SessionCacheError(`memcached ${this.name} refused to store a value (set).`);
  }

  add(key: string, value: string | Buffer, ttl?: number): Promise<boolean> {
    return this.#call<boolean>('add', key, (cb) =>
      this.#client.add(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) => cb(err, !!r)),
    );
  }

  replace(key: string, value: string | Buffer, ttl?: number): Promise<boolean> {
    return this.#call<boolean>('replace', key, (cb) =>
      this.#client.replace(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) =>
        cb(err, !!r),
      ),
    );
  }

  delete(key: string): Promise<boolean> {
    return this.#call<boolean>('delete', key, (cb) =>
      this.#client.delete(key, (err, r) => cb(err, !!r)),
    );
  }

  touch(key: string, ttl: number): Promise<boolean> {
    return this.#call<boolean>('touch', key, (cb) =>
      this.#client.touch(key, toMemcachedExpiry(ttl), (err, r) => cb(err, !!r)),
    );
  }

  /** Appends `value` to what `key` holds (its TTL unchanged). Resolves `false` when it is missing. */
  append(key: string, value: string | Buffer): Promise<boolean> {
    return this.#call<boolean>('append', key, (cb) =>
      this.#client.append(key, value, (err, r) =>
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
        this.#client.stats((err, _server, stats) =>
          cb(err, (stats ?? {}) as Record<string, string>),
        ),
      true,
    );
  }

  /** `get` with the value's CAS token, for {@link storeCas} and {@link deleteIfCas}. */
  gets(key: string): Promise<CasValue | null> {
    return this.#call<CasValue | null>('get', key, (cb) =>
      this.#perform(OP_GET, key, '', '', undefined, (err, response) => {
        if (err) return cb(err, null);
        const status = response!.header.status;
        if (status === STATUS_NOT_FOUND) return cb(null, null);
        if (status !== STATUS_OK) return cb(refused('GET', status), null);
        cb(null, { value: response!.val, cas: Buffer.from(response!.header.cas) });
      }),
    );
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
    const extras = Buffer.concat([Buffer.alloc(4), expirationExtras(ttl)]);
    const opcode = operation === 'add' ? OP_ADD : OP_REPLACE;
    return this.#call<Buffer | null>(operation, key, (cb) =>
      this.#perform(opcode, key, extras, value, cas, (err, response) => {
        if (err) return cb(err, null);
        const status = response!.header.status;
        if (status === STATUS_OK) return cb(null, Buffer.from(response!.header.cas));
        if (status === STATUS_EXISTS || status === STATUS_NOT_FOUND || status === STATUS_NOT_STORED)
          return cb(null, null);
        cb(refused(operation.toUpperCase(), status), null);
      }),
    );
  }

  /** `delete` that applies only while the key holds the value whose CAS token is `cas`. */
  deleteIfCas(key: string, cas: Buffer): Promise<boolean> {
    return this.#call<boolean>('delete', key, (cb) =>
      this.#perform(OP_DELETE, key, '', '', cas, (err, response) => {
        if (err) return cb(err, false);
        const status = response!.header.status;
        if (status === STATUS_OK) return cb(null, true);
        if (status === STATUS_EXISTS || status === STATUS_NOT_FOUND) return cb(null, false);
        cb(refused('DELETE', status), false);
      }),
    );
  }

  /**
   * memcached's get-and-touch: sets a new TTL like {@link touch} and answers the value it applied
   * to (null when the key is missing), so the caller learns what the TOUCH landed on.
   */
  getAndTouch(key: string, ttl: number): Promise<Buffer | null> {
    return this.#call<Buffer | null>('touch', key, (cb) =>
      this.#perform(OP_GAT, key, expirationExtras(ttl), '', undefined, (err, response) => {
        if (err) return cb(err, null);
        const status = response!.header.status;
        if (status === STATUS_NOT_FOUND) return cb(null, null);
        if (status !== STATUS_OK) return cb(refused('GAT', status), null);
        cb(null, response!.val);
      }),
    );
  }

  /**
   * memcached's `version`: the cheapest command there is, used to probe a node marked down. Like
   * {@link stats}, it is sent also while the node is marked down.
   */
  version(): Promise<string> {
    return this.#call<string>(
      'version',
      undefined,
      (cb) =>
        this.#perform(OP_VERSION, '', '', '', undefined, (err, response) =>
          cb(err, response?.val?.toString() ?? ''),
        ),
      true,
    );
  }

  /** Sends one binary-protocol request through memjs's connection (see MemjsClientInternals). */
  #perform(
    opcode: number,
    key: string,
    extras: Buffer | string,
    value: Buffer | string,
    cas: Buffer | undefined,
    callback: (err: Error | null, response?: MemjsResponse) => void,
  ): void {
    const client = this.#client as unknown as MemjsClientInternals;
    client.incrSeq();
    const request = Utils.makeRequestBuffer(opcode, key, extras, value, client.seq);
    if (cas) cas.copy(request, 16, 0, 8);
    client.perform(key, request, client.seq, (err, response) => callback(err, response));
  }

  /**
   * Milliseconds until this node is expected to be tried again: the next background probe while
   * it is marked down, the next login retry while the server refuses our login, else 0.
   */
  get retryInMs(): number {
    const now = performance.now();
    let ms = 0;
    if (this.#down) ms = Math.max(0, this.#nextProbeAt - now) + this.#options.timeout;
    if (this.#authFailed) ms = Math.max(ms, this.#authRetryAt - now);
    return ms;
  }

  /** Closes the connection. Later calls reject. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopProbing();
    this.#client.close();
    // end() waits for the peer; a hung server never answers, and the socket would keep the
    // process alive.
    (this.#client.servers[0] as unknown as { _socket?: { destroy(): void } })._socket?.destroy();
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
      if (
        key !== undefined &&
        (typeof key !== 'string' ||
          key.length === 0 ||
          // (a key of up to 83 UTF-16 units is at most 249 bytes: skip the count)
          (key.length > 83 && Buffer.byteLength(key) > MAX_KEY_LENGTH))
      ) {
        reject(
          new SessionCacheError(
            `memcached keys must be 1 to ${MAX_KEY_LENGTH} bytes; got ${
              typeof key === 'string' ? Buffer.byteLength(key) : typeof key
            } (${operation}).`,
          ),
        );
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
      let authProbe = false;
      if (this.#authFailed && !ignoreBreaker) {
        if (this.#authProbing || performance.now() < this.#authRetryAt) {
          reject(new SessionCacheAuthError(this.name, this.username));
          return;
        }
        authProbe = this.#authProbing = true;
      }
      const deadline: Deadline = {
        at: performance.now() + this.#options.timeout,
        settled: false,
        expire: () => {
          const detail =
            `no answer within ${this.#options.timeout} ms` +
            (this.#handshaking?.() ? ' (the TLS handshake did not finish)' : '');
          finish(new Error(detail));
          // Drop the connection: memjs fails every request still queued on it, so a hung server
          // cannot stall the calls that come after this one.
          const server = this.#client.servers[0] as unknown as { error?: (e: Error) => void };
          server.error?.(new Error(detail));
        },
      };
      const finish = (err: unknown, value?: T) => {
        if (deadline.settled) return;
        deadline.settled = true;
        if (authProbe) this.#authProbing = false;
        if (err === null || err === undefined) {
          this.#markUp();
          this.#authAccepted();
          resolve(value as T);
          return;
        }
        const wrapped = this.#wrap(operation, err);
        if (wrapped instanceof SessionCacheAuthError) {
          this.#markUp(); // the server answered
          if (!ignoreBreaker) this.#authRefused(wrapped, authProbe);
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
      this.#track(deadline);
      try {
        run((err, value) => finish(err, value));
      } catch (err) {
        finish(err);
      }
    });
  }

  /**
   * Every call's deadline, in the order they started (all calls have the same budget, so the
   * order is also that of the deadlines). One timer per node, armed for the oldest unsettled call,
   * instead of one timer per call.
   */
  #track(deadline: Deadline): void {
    this.#deadlines.push(deadline);
    if (this.#sweeper === null) this.#arm(this.#options.timeout);
  }

  #arm(ms: number): void {
    this.#sweepDueAt = performance.now() + ms;
    this.#sweeper = setTimeout(() => this.#sweep(), ms);
    this.#sweeper.unref();
  }

  #sweep(): void {
    this.#sweeper = null;
    const now = performance.now();
    const queue = this.#deadlines;
    // The timer fired late: the event loop itself was stalled (long GC, synchronous work), and
    // the calls could not even be sent or their answers read. That time is not the server's:
    // give every call in flight a full budget from now, once, instead of taking the stall for
    // an outage (such a call is bounded by the stall plus twice the timeout).
    if (now - this.#sweepDueAt > STALL_MS) {
      for (const d of queue) {
        if (d.settled || d.extended) continue; // once per call: a slow loop cannot hide a hung server
        d.extended = true;
        d.at = Math.max(d.at, now + this.#options.timeout);
      }
    }
    let head = 0;
    while (head < queue.length && (queue[head].settled || queue[head].at <= now)) {
      if (!queue[head].settled) queue[head].expire();
      head++;
    }
    queue.splice(0, head);
    if (queue.length > 0) this.#arm(Math.max(1, queue[0].at - now));
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

  #authRefused(err: SessionCacheAuthError, probe: boolean): void {
    if (!this.#authFailed) {
      this.#authFailed = true;
      this.#authDelay = Math.max(this.#options.retryDelay, AUTH_MIN_RETRY_MS);
      this.#options.logger?.warn(
        `${err.message} Calls to it fail at once for ${this.#authDelay} ms, then one call ` +
          'tries to log in again.',
      );
    } else if (probe) {
      this.#authDelay = Math.min(
        this.#authDelay * 2,
        Math.max(this.#options.maxRetryDelay, AUTH_MIN_RETRY_MS),
      );
    } else {
      return;
    }
    this.#authRetryAt = performance.now() + this.#authDelay;
  }

  #authAccepted(): void {
    if (!this.#authFailed) return;
    this.#authFailed = false;
    this.#authRetryAt = 0;
    this.#options.logger?.warn(`Session memcached ${this.name} accepted the SASL login again.`);
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

  #wrap(operation: string, err: unknown): Error {
    if (err instanceof SessionCacheError) return err;
    // memjs reports a refused SASL login (wrong user or password, or no credentials for a server
    // that runs with -S) as the bare string "Memcached server authentication failed!".
    if (/authentication (failed|error)/i.test(messageOf(err))) {
      return new SessionCacheAuthError(this.name, this.username, { cause: err });
    }
    const tlsFailure = this.#options.tls ? describeTlsFailure(err) : undefined;
    if (tlsFailure) return new SessionCacheTlsError(this.name, tlsFailure, { cause: err });
    const detail = describe(err);
    // memjs reports a refused command (e.g. "Value too large") as an Error whose message starts
    // with "MemJS <OP>:"; connection problems are socket errors or plain strings.
    if (err instanceof Error && /^MemJS [A-Z]+:/.test(err.message)) {
      return new SessionCacheError(
        `memcached ${this.name} refused the ${operation}: ${err.message}`,
        {
          cause: err,
        },
      );
    }
    return new SessionCacheUnavailableError(operation, this.name, detail, { cause: err });
  }
}

/** A refused command, worded as memjs words its own ("MemJS <OP>: …"), see #wrap. */
function refused(name: string, status: number): Error {
  return new Error(`MemJS ${name}: ${STATUS_NAMES[status] ?? `status 0x${status.toString(16)}`}`);
}

function messageOf(err: unknown): string {
  if (typeof err === 'string') return err;
  return isError(err) && typeof err.message === 'string' ? err.message : '';
}

export function describe(err: unknown): string {
  if (isError(err)) {
    const code = (err as NodeJS.ErrnoException).code;
    return (err.message || code || err.name || 'unknown error').replace(/\.$/, '');
  }
  if (typeof err === 'string' && err) return err.replace(/\.$/, '');
  return 'unknown error';
}

/**
 * Requests issued while the event loop handles one batch of I/O (many HTTP requests at once) go
 * out in one socket write instead of one each: memjs writes every request at once; here the
 * socket is corked at the first write of a batch and uncorked when the batch is done (setImmediate
 * runs right after the I/O phase). Fewer syscalls and packets, on the app and on memcached.
 */
function coalesceWrites(server: Server): void {
  const memjs = server as unknown as {
    write(blob: Buffer): void;
    _socket?: { cork(): void; uncork(): void; writable?: boolean };
  };
  const write = memjs.write.bind(server);
  let corked: { uncork(): void } | null = null;
  memjs.write = (blob: Buffer) => {
    const socket = memjs._socket;
    if (socket && socket.writable && corked === null) {
      socket.cork();
      corked = socket;
      setImmediate(() => {
        const s = corked;
        corked = null;
        s?.uncork();
      });
    }
    write(blob);
  };
}

/**
 * memjs queues a request on a new connection behind its SASL login ('authenticated'). When that
 * connection fails before the login completes, memjs fails the request but keeps the listener, so
 * the next successful login would send it after all, possibly minutes later and over newer data.
 * Drop those listeners whenever memjs drops a connection.
 */
function forgetUnsentOnError(server: Server): void {
  const memjs = server as unknown as {
    error(err: Error): void;
    removeAllListeners(event: string): void;
  };
  const error = memjs.error.bind(server);
  memjs.error = (err: Error) => {
    memjs.removeAllListeners('authenticated');
    error(err);
  };
}

/** The parts of memjs's Server (1.3.2, lib/memjs/server.js) that {@link connectOverTls} drives. */
interface MemjsServerInternals {
  username?: string;
  password?: string;
  options: { conntimeout: number; keepAlive: boolean; keepAliveDelay: number };
  _socket?: TLSSocket;
  connected: boolean;
  timeoutSet: boolean;
  connectCallbacks: Array<(socket: TLSSocket) => void>;
  sock(sasl: boolean, go: (socket: TLSSocket) => void): void;
  onConnect(go: (socket: TLSSocket) => void): void;
  responseHandler(data: Buffer): void;
  listSasl(): void;
  error(err: Error): void;
  emit(event: 'authenticated'): boolean;
  once(event: 'authenticated', listener: () => void): unknown;
}

/**
 * TLS for memjs, which has none (memjs issue #169). memjs opens its connection in one place,
 * `Server.prototype.sock(sasl, go)`: when there is no `_socket` it calls `net.connect(port, host,
 * onConnect)`, and `onConnect` feeds 'data' to `responseHandler`, starts the SASL login
 * (`listSasl`) or emits 'authenticated' at once, and on 'authenticated' marks the server
 * `connected` and runs `go` and the queued `connectCallbacks`; while connecting, requests queue
 * with `onConnect(go)` (SASL writes go straight out), and once connected `go(_socket)` runs at once.
 * This replaces that method, for this server only, with the same steps over `tls.connect`, where
 * `onConnect` waits for 'secureConnect' (handshake done, certificate and name verified).
 * Everything else is memjs's own: `write` and its request timeouts, `error` (fails the waiting
 * calls and destroys `_socket`), `close`. Our deadline (which calls `error`), `close()` (which
 * destroys `_socket`) and {@link coalesceWrites} (which corks `_socket`) work on the TLS socket as
 * on a TCP one. Two deliberate differences from memjs's copy: a socket that closes clears
 * `_socket` only if it is still the current one (memjs clears whatever socket is current, which
 * can orphan a newer connection), and a connection timeout destroys the socket instead of ending
 * it politely. Returns whether the current connection is still in its TLS handshake.
 */
function connectOverTls(server: Server, options: ConnectionOptions): () => boolean {
  const memjs = server as unknown as MemjsServerInternals;
  let handshaking: TLSSocket | null = null;
  memjs.sock = (sasl, go) => {
    const current = memjs._socket;
    if (current) {
      if (!memjs.connected && !sasl) memjs.onConnect(go);
      else go(current);
      return;
    }
    memjs.connected = false;
    const socket = tlsConnect(options, () => {
      handshaking = null;
      memjs.once('authenticated', () => {
        if (memjs._socket !== socket) return;
        memjs.connected = true;
        socket.setTimeout(0);
        memjs.timeoutSet = false;
        go(socket);
        const queued = memjs.connectCallbacks;
        memjs.connectCallbacks = [];
        for (const cb of queued) cb(socket);
      });
      socket.on('data', (data: Buffer) => memjs.responseHandler(data));
      if (memjs.username && memjs.password) memjs.listSasl();
      else memjs.emit('authenticated');
    });
    handshaking = socket;
    memjs._socket = socket;
    socket.on('error', (err) => memjs.error(err));
    socket.on('close', () => {
      if (handshaking === socket) handshaking = null;
      if (memjs._socket !== socket) return;
      memjs.connected = false;
      memjs.timeoutSet = false;
      memjs._socket = undefined;
    });
    memjs.timeoutSet = true;
    socket.setTimeout(memjs.options.conntimeout * 1000, () => {
      memjs.timeoutSet = false;
      if (memjs.connected || memjs._socket !== socket) return;
      memjs.error(new Error('socket timed out connecting to server.'));
    });
    socket.setKeepAlive(memjs.options.keepAlive, memjs.options.keepAliveDelay * 1000);
  };
  return () => handshaking !== null && handshaking === memjs._socket;
}
