import { EventEmitter } from 'node:events';
import { SessionCacheConfigError, SessionCacheError } from '../session-cache.errors';
import { AUTH_MIN_RETRY_MS, MemcachedNode, SessionCacheLogger } from './memcached-node';
import { MIN_RETRY_DELAY_MS } from './url';
import { SessionCacheRing } from './ring';
import { MemcachedTls } from './tls';
import type { SessionCacheTlsOptions } from './tls';
import {
  formatServer,
  MemcachedCredentials,
  MemcachedServerAddress,
  parseSessionCacheUrl,
} from './url';

export { MAX_KEY_LENGTH, MemcachedNode } from './memcached-node';
export type { SessionCacheLogger } from './memcached-node';

/** Options of {@link SessionCache}. */
export interface SessionCacheClientOptions {
  /** Time budget of one operation in milliseconds, connecting included. Default 500. */
  timeout?: number;
  /** TCP keep-alive on the memcached connections. Default false. */
  keepAlive?: boolean;
  /** Copies of every key, on distinct nodes of the ring (1 to the number of servers). Default 1. */
  replicas?: number;
  /**
   * How often a node marked down is probed in the background, in ms: a server that is back is in
   * service again at most this long (plus one round trip) after it answers. Default 100.
   */
  retryDelay?: number;
  /** SASL credentials (they may also come from the URL). */
  credentials?: MemcachedCredentials;
  /**
   * TLS to every server: `true` (certificates checked against Node's default CAs) or Node's
   * `tls.connect` options (`ca`, `cert`, `key`, `servername`, `rejectUnauthorized`, `minVersion`…).
   * A `memcacheds://` URL turns it on too. Default: plaintext.
   */
  tls?: boolean | SessionCacheTlsOptions | MemcachedTls;
  /** Where memjs's and the client's own messages go. */
  logger?: SessionCacheLogger;
}

export const DEFAULT_TIMEOUT_MS = 500;
export const DEFAULT_RETRY_DELAY_MS = 100;
/** The shortest background probe interval (a shorter one would only spin on a dead server). */
export { MIN_RETRY_DELAY_MS } from './url';

/** Payload of the `nodeDown` event. */
export interface NodeDownEvent {
  server: string;
  reason: string;
}
/** Payload of the `nodeUp` event. */
export interface NodeUpEvent {
  server: string;
  /** How long the node was marked down, in ms. */
  downtimeMs: number;
}
/** Payload of the `operationFailed` event: a call that a node did not answer. */
export interface OperationFailedEvent {
  server: string;
  operation: string;
  error: string;
}
/** Health of one node, as reported by {@link SessionCache.health}. */
export interface NodeHealth {
  server: string;
  status: 'up' | 'down';
  /** Round trip of the probe in ms (also when it failed). */
  latencyMs: number;
  error?: string;
}
/** Result of {@link SessionCache.health}. */
export interface SessionCacheHealth {
  /** True while every key still has a live node among its replicas. */
  healthy: boolean;
  replicas: number;
  nodes: NodeHealth[];
}

/** The events a {@link SessionCache} emits. */
export interface SessionCacheEvents {
  nodeDown: [NodeDownEvent];
  nodeUp: [NodeUpEvent];
  operationFailed: [OperationFailedEvent];
}

/** A settled call on one replica. */
export type ReplicaResult<T> =
  { node: MemcachedNode; ok: true; value: T } | { node: MemcachedNode; ok: false; error: unknown };

/**
 * The memcached client of the session cluster, with a typed promise API. It is the very instance
 * the {@link SessionStore} uses. Every operation settles within `timeout` milliseconds: it
 * resolves with the answer or rejects with a {@link SessionCacheUnavailableError}; nothing hangs
 * and nothing throws synchronously.
 *
 * Keys are placed on a ketama-compatible consistent-hash ring; with `replicas` R > 1 every write,
 * touch and delete goes to the key's R nodes and succeeds when one of them took it, and `get`
 * answers from the first of them that has the key. A node that fails is skipped until a background
 * probe (every `retryDelay` ms) finds it answering again, see {@link MemcachedNode}.
 *
 * TTLs are in seconds; TTLs over 30 days are sent as absolute Unix times (memcached's rule), so they
 * work as expected.
 */
export class SessionCache extends EventEmitter<SessionCacheEvents> {
  /** The servers, as `host:port`. */
  readonly servers: readonly string[];
  /** The per-operation time budget in milliseconds. */
  readonly timeout: number;
  /** Copies of every key. */
  readonly replicas: number;
  /** One entry per server, in the order of `servers`. */
  readonly nodes: readonly MemcachedNode[];
  /** The TLS settings of every connection, or undefined for plaintext. */
  readonly tls: MemcachedTls | undefined;
  readonly #ring: SessionCacheRing;
  readonly #logger?: SessionCacheLogger;
  #closed = false;

  constructor(servers: readonly MemcachedServerAddress[], options: SessionCacheClientOptions = {}) {
    super();
    if (servers.length === 0) {
      throw new SessionCacheConfigError('SessionCache needs at least one memcached server.');
    }
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw new SessionCacheConfigError(
        `timeout must be a positive number of milliseconds, got ${timeout}.`,
      );
    }
    const replicas = options.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > servers.length) {
      throw new SessionCacheConfigError(
        `replicas must be a whole number from 1 to the number of servers (${servers.length}), ` +
          `got ${replicas}. Add servers or lower replicas.`,
      );
    }
    const retryDelay = options.retryDelay ?? DEFAULT_RETRY_DELAY_MS;
    if (!Number.isFinite(retryDelay) || retryDelay < MIN_RETRY_DELAY_MS) {
      throw new SessionCacheConfigError(
        `retryDelay (how often a node marked down is probed) must be a number of milliseconds ` +
          `>= ${MIN_RETRY_DELAY_MS}, got ${retryDelay}.`,
      );
    }
    const tls = MemcachedTls.resolve(false, options.tls);
    this.timeout = timeout;
    this.replicas = replicas;
    this.tls = tls;
    this.servers = servers.map(formatServer);
    this.#logger = options.logger;
    this.#ring = new SessionCacheRing(this.servers);
    this.nodes = servers.map(
      (s, i) =>
        new MemcachedNode(this.servers[i], s.host, s.port, {
          timeout,
          keepAlive: options.keepAlive ?? false,
          retryDelay,
          maxRetryDelay: Math.max(retryDelay * 16, 16 * AUTH_MIN_RETRY_MS),
          credentials: options.credentials,
          tls,
          logger: options.logger,
          onStateChange: (node, up, detail, downtimeMs) =>
            this.#onStateChange(node, up, detail, downtimeMs),
          onFailure: (node, operation, error) => {
            if (!this.#closed)
              this.emit('operationFailed', { server: node.name, operation, error });
          },
        }),
    );
  }

  /**
   * Builds a client from a `memcached://` or `memcacheds://` (TLS) URL (see the README for the
   * format). Options given here win over the URL's; options left undefined keep the URL's.
   */
  static fromUrl(url: string, options: SessionCacheClientOptions = {}): SessionCache {
    const parsed = parseSessionCacheUrl(url);
    return new SessionCache(parsed.servers, {
      ...options,
      timeout: options.timeout ?? parsed.options.timeout,
      keepAlive: options.keepAlive ?? parsed.options.keepAlive,
      replicas: options.replicas ?? parsed.options.replicas,
      retryDelay: options.retryDelay ?? parsed.options.retryDelay,
      credentials: options.credentials ?? parsed.credentials,
      tls: MemcachedTls.resolve(parsed.tls, options.tls),
    });
  }

  /** The nodes that hold `key`, primary first (`replicas` distinct nodes). */
  nodesFor(key: string): MemcachedNode[] {
    if (this.nodes.length === 1) return [this.nodes[0]];
    return this.#ring.nodesFor(key, this.replicas).map((i) => this.nodes[i]);
  }

  /**
   * Runs `call` on every replica of `key` at once and reports each outcome; rejects with the first
   * error when no replica answered.
   */
  onReplicas<T>(
    key: string,
    call: (node: MemcachedNode) => Promise<T>,
  ): Promise<ReplicaResult<T>[]> {
    return settleAnswered(this.nodesFor(key), call);
  }

  /** The value stored under `key`, or `null` when none of its replicas has it. */
  async get(key: string): Promise<Buffer | null> {
    const nodes = this.nodesFor(key);
    if (nodes.length === 1) return nodes[0].get(key);
    const results = await settleEach(nodes, (node) => node.get(key));
    for (const r of results) if (r.ok && r.value !== null) return r.value;
    return answered(results) ? null : Promise.reject(firstError(results));
  }

  /** Stores `value` under `key` for `ttl` seconds (0 or none: no expiry), on every replica. */
  async set(key: string, value: string | Buffer, ttl?: number): Promise<void> {
    await this.#write(key, (node) => node.set(key, value, ttl));
  }

  /** Stores `value` only if `key` holds nothing. Resolves `false` when it already exists. */
  add(key: string, value: string | Buffer, ttl?: number): Promise<boolean> {
    return this.#write(key, (node) => node.add(key, value, ttl));
  }

  /** Stores `value` only if `key` already exists. Resolves `false` when it does not. */
  replace(key: string, value: string | Buffer, ttl?: number): Promise<boolean> {
    return this.#write(key, (node) => node.replace(key, value, ttl));
  }

  /** Deletes `key` from its replicas. Resolves `false` when there was nothing to delete. */
  delete(key: string): Promise<boolean> {
    return this.#write(key, (node) => node.delete(key));
  }

  /**
   * Sets a new TTL on `key` with memcached's TOUCH command, without sending the value.
   * Resolves `false` when the key does not exist (it is not created).
   */
  touch(key: string, ttl: number): Promise<boolean> {
    return this.#write(key, (node) => node.touch(key, ttl));
  }

  /**
   * Statistics of every server, keyed by `host:port`. A server that does not answer in time is
   * reported with an `error` entry instead of failing the whole call.
   */
  async stats(): Promise<Record<string, Record<string, string>>> {
    const results = await settleEach(this.nodes, (node) => node.stats());
    return Object.fromEntries(
      results.map((r) => [r.node.name, r.ok ? r.value : { error: describeError(r.error) }]),
    );
  }

  /**
   * Probes every node (also those marked down) and reports which answer, with their latency.
   * `healthy` is true while every key still has a live node among its replicas.
   */
  async health(): Promise<SessionCacheHealth> {
    const nodes = await Promise.all(
      this.nodes.map(async (node): Promise<NodeHealth> => {
        const started = performance.now();
        try {
          await node.stats();
          return { server: node.name, status: 'up', latencyMs: elapsed(started) };
        } catch (err) {
          return {
            server: node.name,
            status: 'down',
            latencyMs: elapsed(started),
            error: describeError(err),
          };
        }
      }),
    );
    const down = new Set(nodes.flatMap((n, i) => (n.status === 'down' ? [i] : [])));
    const healthy =
      down.size < this.replicas ||
      this.#ring.replicaSets(this.replicas).every((set) => set.some((i) => !down.has(i)));
    return { healthy, replicas: this.replicas, nodes };
  }

  /**
   * Whole seconds after which a request that failed because of `err` is worth trying again (the
   * HTTP `Retry-After`): when the node that failed is next probed or asked to log in; at least 1.
   */
  retryAfterSeconds(err?: unknown): number {
    const server = (err as { server?: unknown } | undefined)?.server;
    const node = this.nodes.find((n) => n.name === server);
    const ms = node?.retryInMs ?? 0;
    return Math.max(1, Math.ceil(ms / 1000));
  }

  /** Closes every connection. Later calls reject. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const node of this.nodes) node.close();
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Runs a write on every replica; the first replica that answered decides the result. */
  async #write<T>(key: string, call: (node: MemcachedNode) => Promise<T>): Promise<T> {
    const nodes = this.nodesFor(key);
    if (nodes.length === 1) return call(nodes[0]);
    const results = await settleEach(nodes, call);
    for (const r of results) if (r.ok) return r.value;
    throw firstError(results);
  }

  #onStateChange(node: MemcachedNode, up: boolean, detail: string, downtimeMs: number): void {
    if (this.#closed) return;
    if (up) {
      this.#logger?.warn(`Session memcached ${node.name} is back: ${detail}.`);
      this.emit('nodeUp', { server: node.name, downtimeMs });
    } else {
      this.#logger?.warn(
        `Session memcached ${node.name} is marked down (${detail}); it is skipped until it ` +
          'answers a background probe.',
      );
      this.emit('nodeDown', { server: node.name, reason: detail });
    }
  }
}

/** Runs `call` on each node at once and reports every outcome; never rejects. */
export function settleEach<T>(
  nodes: readonly MemcachedNode[],
  call: (node: MemcachedNode) => Promise<T>,
): Promise<ReplicaResult<T>[]> {
  return Promise.all(
    nodes.map((node) =>
      call(node).then(
        (value): ReplicaResult<T> => ({ node, ok: true, value }),
        (error: unknown): ReplicaResult<T> => ({ node, ok: false, error }),
      ),
    ),
  );
}

/**
 * {@link settleEach}, but rejects with the first error when no node answered: what every write to
 * several replicas needs (it succeeds when one of them took it).
 */
export async function settleAnswered<T>(
  nodes: readonly MemcachedNode[],
  call: (node: MemcachedNode) => Promise<T>,
): Promise<ReplicaResult<T>[]> {
  const results = await settleEach(nodes, call);
  if (!answered(results)) throw firstError(results);
  return results;
}

/** True when at least one replica answered. */
export function answered(results: readonly ReplicaResult<unknown>[]): boolean {
  return results.some((r) => r.ok);
}

/** The error of the first replica that failed (they all did, when this is called). */
export function firstError(results: readonly ReplicaResult<unknown>[]): unknown {
  for (const r of results) if (!r.ok) return r.error;
  return new SessionCacheError('no replica answered');
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
