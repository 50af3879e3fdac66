import { Client, Server } from 'memjs';
import { SessionCacheError, SessionCacheUnavailableError } from '../session-cache.errors';
import { toMemcachedExpiry } from './expiry';
import {
  formatServer,
  MemcachedCredentials,
  MemcachedServerAddress,
  parseSessionCacheUrl,
} from './url';

/** A place for the client's own messages (Nest's `Logger` fits). */
export interface SessionCacheLogger {
  warn(message: string): void;
  debug?(message: string): void;
}

/** Options of {@link SessionCache}. */
export interface SessionCacheClientOptions {
  /** Time budget of one operation in milliseconds, connecting and retries included. Default 500. */
  timeout?: number;
  /** TCP keep-alive on the memcached connections. Default false. */
  keepAlive?: boolean;
  /** SASL credentials (they may also come from the URL). */
  credentials?: MemcachedCredentials;
  /** Where memjs's and the client's own messages go. */
  logger?: SessionCacheLogger;
}

export const DEFAULT_TIMEOUT_MS = 500;
/** The longest key memcached accepts. */
export const MAX_KEY_LENGTH = 250;

type Callback<T> = (err: Error | null, value: T) => void;

/**
 * The memcached client of the session cluster, with a typed promise API. It is the very instance
 * the {@link SessionStore} uses. Every operation settles within `timeout` milliseconds: it
 * resolves with the answer or rejects with a {@link SessionCacheUnavailableError}; nothing hangs
 * and nothing throws synchronously.
 *
 * TTLs are in seconds; TTLs over 30 days are sent as absolute Unix times (memcached's rule), so they
 * work as expected.
 */
export class SessionCache {
  /** The servers, as `host:port`. */
  readonly servers: readonly string[];
  /** The per-operation time budget in milliseconds. */
  readonly timeout: number;
  readonly #client: Client;
  readonly #label: string;
  /** memjs's "host:port" → our `servers` entry. */
  readonly #names: Map<string, string>;
  #closed = false;

  constructor(servers: readonly MemcachedServerAddress[], options: SessionCacheClientOptions = {}) {
    if (servers.length === 0) {
      throw new SessionCacheError('SessionCache needs at least one memcached server.');
    }
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw new SessionCacheError(
        `timeout must be a positive number of milliseconds, got ${timeout}.`,
      );
    }
    this.timeout = timeout;
    this.servers = servers.map(formatServer);
    this.#names = new Map(servers.map((s, i) => [`${s.host}:${s.port}`, this.servers[i]]));
    this.#label = this.servers.length === 1 ? this.servers[0] : `(${this.servers.join(', ')})`;
    const logger = options.logger;
    const serverOptions = {
      // memjs's own clocks; our deadline below bounds the whole call in any case.
      timeout: timeout / 1000,
      conntimeout: timeout / 1000,
      keepAlive: options.keepAlive ?? false,
    };
    const memjsServers = servers.map(
      (s) =>
        new Server(
          s.host,
          s.port,
          options.credentials?.username,
          options.credentials?.password,
          serverOptions,
        ),
    );
    this.#client = new Client(memjsServers, {
      // memjs counts attempts here (1 = no retry); a retry would not fit the time budget.
      retries: 1,
      failover: false,
      logger: { log: (...args: unknown[]) => logger?.warn(args.map(String).join(' ')) },
    });
  }

  /**
   * Builds a client from a `memcached://` URL (see the README for the format). Options given here
   * win over the URL's; options left undefined keep the URL's.
   */
  static fromUrl(url: string, options: SessionCacheClientOptions = {}): SessionCache {
    const parsed = parseSessionCacheUrl(url);
    return new SessionCache(parsed.servers, {
      ...options,
      timeout: options.timeout ?? parsed.options.timeout,
      keepAlive: options.keepAlive ?? parsed.options.keepAlive,
      credentials: options.credentials ?? parsed.credentials,
    });
  }

  /** The value stored under `key`, or `null` when there is none. */
  get(key: string): Promise<Buffer | null> {
    return this.#call<Buffer | null>('get', key, (cb) =>
      this.#client.get(key, (err, value) => cb(err, value ?? null)),
    );
  }

  /** Stores `value` under `key` for `ttl` seconds (0 or none: no expiry). */
  async set(key: string, value: string | Buffer, ttl?: number): Promise<void> {
    const ok = await this.#call<boolean>('set', key, (cb) =>
      this.#client.set(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) => cb(err, !!r)),
    );
    if (!ok) throw new SessionCacheError(`memcached refused to store a value (set).`);
  }

  /** Stores `value` only if `key` holds nothing. Resolves `false` when it already exists. */
  add(key: string, value: string | Buffer, ttl?: number): Promise<boolean> {
    return this.#call<boolean>('add', key, (cb) =>
      this.#client.add(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) => cb(err, !!r)),
    );
  }

  /** Stores `value` only if `key` already exists. Resolves `false` when it does not. */
  replace(key: string, value: string | Buffer, ttl?: number): Promise<boolean> {
    return this.#call<boolean>('replace', key, (cb) =>
      this.#client.replace(key, value, { expires: toMemcachedExpiry(ttl) }, (err, r) =>
        cb(err, !!r),
      ),
    );
  }

  /** Deletes `key`. Resolves `false` when there was nothing to delete. */
  delete(key: string): Promise<boolean> {
    return this.#call<boolean>('delete', key, (cb) =>
      this.#client.delete(key, (err, r) => cb(err, !!r)),
    );
  }

  /**
   * Sets a new TTL on `key` with memcached's TOUCH command, without sending the value.
   * Resolves `false` when the key does not exist (it is not created).
   */
  touch(key: string, ttl: number): Promise<boolean> {
    return this.#call<boolean>('touch', key, (cb) =>
      this.#client.touch(key, toMemcachedExpiry(ttl), (err, r) => cb(err, !!r)),
    );
  }

  /**
   * Statistics of every server, keyed by `host:port`. A server that does not answer in time is
   * reported with an `error` entry instead of failing the whole call.
   */
  stats(): Promise<Record<string, Record<string, string>>> {
    return new Promise((resolve) => {
      const result: Record<string, Record<string, string>> = {};
      let pending = this.servers.length;
      const finish = (missing: string) => {
        clearTimeout(timer);
        for (const s of this.servers) result[s] ??= { error: missing };
        resolve(result);
      };
      const timer = setTimeout(() => finish('no answer within the time budget'), this.timeout);
      if (this.#closed) return finish('the client is closed');
      try {
        this.#client.stats((err, server, stats) => {
          // memjs names a server "host:port" even for IPv6 hosts; use our own names.
          const name = this.#names.get(server) ?? server;
          if (name in result) return;
          result[name] = err ? { error: describe(err) } : (stats as Record<string, string>);
          if (--pending === 0) finish('no answer');
        });
      } catch (err) {
        finish(describe(err));
      }
    });
  }

  /** Closes every connection. Later calls reject. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #call<T>(operation: string, key: string, run: (cb: Callback<T>) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#closed) {
        reject(new SessionCacheError(`SessionCache is closed; cannot ${operation}.`));
        return;
      }
      if (typeof key !== 'string' || key.length === 0 || Buffer.byteLength(key) > MAX_KEY_LENGTH) {
        reject(
          new SessionCacheError(
            `memcached keys must be 1 to ${MAX_KEY_LENGTH} bytes; got ${
              typeof key === 'string' ? Buffer.byteLength(key) : typeof key
            } (${operation}).`,
          ),
        );
        return;
      }
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        // Drop the connection: memjs fails every request still queued on it, so a hung server
        // cannot stall the calls that come after this one.
        this.#resetConnection(key);
        reject(
          new SessionCacheUnavailableError(
            operation,
            this.#label,
            `no answer within ${this.timeout} ms`,
          ),
        );
      }, this.timeout);
      try {
        run((err, value) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          if (err) reject(this.#wrap(operation, err));
          else resolve(value);
        });
      } catch (err) {
        settled = true;
        clearTimeout(timer);
        reject(this.#wrap(operation, err));
      }
    });
  }

  #resetConnection(key: string): void {
    const server = this.#client.server(key) as unknown as { error?: (e: Error) => void } | null;
    server?.error?.(new Error(`no answer within ${this.timeout} ms`));
  }

  #wrap(operation: string, err: unknown): Error {
    if (err instanceof SessionCacheError) return err;
    const detail = describe(err);
    // memjs reports a refused command (e.g. "Value too large") as an Error whose message starts
    // with "MemJS <OP>:"; connection problems are socket errors or plain strings.
    if (err instanceof Error && /^MemJS [A-Z]+:/.test(err.message)) {
      return new SessionCacheError(`memcached refused the ${operation}: ${err.message}`, {
        cause: err,
      });
    }
    return new SessionCacheUnavailableError(operation, this.#label, detail, { cause: err });
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return (err.message || code || err.name || 'unknown error').replace(/\.$/, '');
  }
  if (typeof err === 'string' && err) return err.replace(/\.$/, '');
  return 'unknown error';
}
