import { Logger } from '@nestjs/common';
import { Store } from 'express-session';
import type { SessionData } from 'express-session';
import type { Request } from 'express';
import type { SessionStoreOptions } from './interfaces/session-cache-options.interface';
import {
  answered,
  firstError,
  MemcachedNode,
  SessionCache,
  SessionCacheLogger,
  settleEach,
} from './memcached/session-cache.client';
import { decodeValue, encodeValue, nextVersion } from './session-value';
import { SessionCacheConfigError, SessionTooLargeError } from './session-cache.errors';
import { jsonSessionSerializer, SessionSerializer } from './session.serializer';

export const DEFAULT_PREFIX = 'sess:';
export const DEFAULT_TTL = 86_400;
/** memcached's default item limit (-I 1m) minus room for the key and item header. */
export const DEFAULT_MAX_SESSION_SIZE = 1024 * 1024 - 1024;

/** Payload of the store's `readRepair` event. */
export interface ReadRepairEvent {
  /** The node that was repaired. */
  server: string;
  /** `missing`: it lacked the session; `stale`: it held an older version; `destroyed`: it held a
   * copy of a session that was logged out while it was away (the copy was deleted). */
  reason: 'missing' | 'stale' | 'destroyed';
}

type Done<T = void> = (err?: unknown, value?: T) => void;

/** Settles a callback outside the promise chain, so an exception in it is not swallowed. */
function settle<T>(work: Promise<T>, done: Done<T> | undefined): void {
  work.then(
    (value) => {
      if (done) process.nextTick(done, null, value);
    },
    (err) => {
      if (done) process.nextTick(done, err);
    },
  );
}

/**
 * An express-session `Store` on the session memcached.
 *
 * - TTL comes from the cookie (rounded up to whole seconds, at least 1 s), else `ttl`; TTLs over
 *   30 days work (sent as absolute times).
 * - A session whose cookie has expired is never returned, and is deleted rather than written.
 * - `touch` uses memcached's TOUCH: the value is not re-sent, and a session that is gone stays gone.
 * - A session loaded from the store is saved with `replace`, a new one with `add`: a slow request
 *   that saves after a parallel logout does not bring the session back.
 * - A session over `maxSessionSize` is refused before it is sent ({@link SessionTooLargeError});
 *   the stored one stays intact.
 * - A value that cannot be decoded counts as no session (warned, without the session id).
 */
export class SessionStore extends Store {
  readonly prefix: string;
  readonly ttl: number;
  readonly maxSessionSize: number;
  readonly tombstoneTtl: number;
  readonly #serializer: SessionSerializer;
  readonly #logger: SessionCacheLogger;
  readonly #ownsClient: boolean;
  /** Sessions that exist in memcached (loaded from it, or added by this store). */
  readonly #persisted = new WeakSet<object>();
  /** Sessions written in the current request: their TTL is fresh, the closing touch is redundant. */
  readonly #justSaved = new WeakSet<object>();
  /** Version of each session as read (the data object) or last written (the Session object). */
  readonly #loadedVersions = new WeakMap<object, number>();
  readonly #versions = new WeakMap<object, number>();

  constructor(
    /** The memcached client of the session cluster. */
    readonly client: SessionCache,
    options: SessionStoreOptions = {},
    logger: SessionCacheLogger = new Logger('SessionCacheModule'),
    ownsClient = false,
  ) {
    super();
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.ttl = options.ttl ?? DEFAULT_TTL;
    this.maxSessionSize = options.maxSessionSize ?? DEFAULT_MAX_SESSION_SIZE;
    this.tombstoneTtl = options.tombstoneTtl ?? this.ttl;
    this.#serializer = options.serializer ?? jsonSessionSerializer;
    this.#logger = logger;
    this.#ownsClient = ownsClient;
    if (typeof this.prefix !== 'string') {
      throw new SessionCacheConfigError('prefix must be a string, e.g. "sess:".');
    }
    if (!Number.isInteger(this.ttl) || this.ttl < 1) {
      throw new SessionCacheConfigError(
        `ttl must be a whole number of seconds >= 1, got ${this.ttl}.`,
      );
    }
    if (!Number.isInteger(this.tombstoneTtl) || this.tombstoneTtl < 1) {
      throw new SessionCacheConfigError(
        `tombstoneTtl must be a whole number of seconds >= 1, got ${this.tombstoneTtl}.`,
      );
    }
    if (!Number.isInteger(this.maxSessionSize) || this.maxSessionSize < 1) {
      throw new SessionCacheConfigError(
        `maxSessionSize must be a whole number of bytes >= 1, got ${this.maxSessionSize}.`,
      );
    }
    // The client's events are re-emitted by the store, subscribed only once someone listens here.
    const forwarded = new Set<string>();
    this.on('newListener', (event: string | symbol) => {
      if (typeof event !== 'string' || forwarded.has(event)) return;
      if (event !== 'nodeDown' && event !== 'nodeUp' && event !== 'operationFailed') return;
      forwarded.add(event);
      client.on(event, (payload: unknown) => this.emit(event, payload));
    });
    const s = this.#serializer as Partial<SessionSerializer> | undefined;
    if (typeof s?.stringify !== 'function' || typeof s?.parse !== 'function') {
      throw new SessionCacheConfigError('serializer must have stringify() and parse() functions.');
    }
  }

  /** The memcached key of a session id. */
  key(sid: string): string {
    return this.prefix + sid;
  }

  override get(sid: string, callback: (err: unknown, session?: SessionData | null) => void): void {
    settle(this.getSession(sid), callback);
  }

  override set(sid: string, session: SessionData, callback?: (err?: unknown) => void): void {
    settle(this.setSession(sid, session), callback);
  }

  override touch(sid: string, session: SessionData, callback?: (err?: unknown) => void): void {
    settle(this.touchSession(sid, session), callback);
  }

  override destroy(sid: string, callback?: (err?: unknown) => void): void {
    settle(this.destroySession(sid), callback);
  }

  override createSession(req: Request, session: SessionData) {
    const created = super.createSession(req, session);
    this.#persisted.add(created);
    const version = this.#loadedVersions.get(session);
    if (version !== undefined) this.#versions.set(created, version);
    return created;
  }

  /** Decodes a stored value; `null` (with a warning) when it is not a usable session. */
  #decode(raw: Buffer): { session: SessionData; version: number } | null {
    const { version, payload } = decodeValue(raw);
    let data: unknown;
    try {
      data = this.#serializer.parse(payload);
    } catch (err) {
      this.#logger.warn(
        `Ignored a stored session that could not be decoded (${describeError(err)}); ` +
          'the request continues without it.',
      );
      return null;
    }
    if (!isSessionData(data)) {
      this.#logger.warn(
        'Ignored a stored session that is not a session object (no cookie field); ' +
          'the request continues without it.',
      );
      return null;
    }
    return { session: data, version };
  }

  /** Where the tombstone of a destroyed session lives (on the session's own replicas). */
  #graveKey(key: string): string {
    return `${key}!`;
  }

  /** Runs a read-repair in the background and reports it as a `readRepair` event. */
  #repair(node: MemcachedNode, reason: ReadRepairEvent['reason'], work: Promise<unknown>): void {
    work.then(
      (done) => {
        // add/replace/delete answer false when there was nothing to do (e.g. raced by a save).
        if (done !== false)
          this.emit('readRepair', { server: node.name, reason } satisfies ReadRepairEvent);
      },
      (err: unknown) =>
        this.#logger.debug?.(`Read-repair on ${node.name} failed: ${describeError(err)}.`),
    );
  }

  /** Promise form of `get`: the session, or `null` when there is none (or it is unusable). */
  async getSession(sid: string): Promise<SessionData | null> {
    const key = this.key(sid);
    const nodes = this.client.nodesFor(key);
    if (nodes.length === 1) {
      const raw = await nodes[0].get(key);
      if (raw === null) return null;
      const found = this.#decode(raw);
      if (found === null) return null;
      if (isExpired(found.session)) {
        // Rare path: drop the stale copy now; a failure here must not fail the request.
        await nodes[0].delete(key).catch(() => undefined);
        return null;
      }
      this.#loadedVersions.set(found.session, found.version);
      return found.session;
    }
    return this.#getReplicated(key, nodes);
  }

  /**
   * Reads every replica at once. The newest copy wins; replicas that lack it are repaired in the
   * background, unless a replica holds the tombstone of a logout it saw while another one was
   * away: then the session is gone and the leftover copies are deleted.
   */
  async #getReplicated(key: string, nodes: MemcachedNode[]): Promise<SessionData | null> {
    const results = await settleEach(nodes, (node) => node.get(key));
    if (!answered(results)) throw firstError(results);
    let best: { session: SessionData; version: number; raw: Buffer } | null = null;
    const copies: { node: MemcachedNode; version: number }[] = [];
    const missing: MemcachedNode[] = [];
    for (const r of results) {
      if (!r.ok) continue;
      const found = r.value === null ? null : this.#decode(r.value);
      if (found === null) {
        missing.push(r.node);
        continue;
      }
      copies.push({ node: r.node, version: found.version });
      if (best === null || found.version > best.version) best = { ...found, raw: r.value! };
    }
    if (best === null) return null;
    if (missing.length > 0) {
      const graves = await settleEach(missing, (node) => node.get(this.#graveKey(key)));
      if (graves.some((g) => g.ok && g.value !== null)) {
        for (const c of copies) this.#repair(c.node, 'destroyed', c.node.delete(key));
        return null;
      }
    }
    const ttl = this.ttlOf(best.session);
    if (ttl === null) {
      for (const c of copies) void c.node.delete(key).catch(() => undefined);
      return null;
    }
    for (const node of missing) this.#repair(node, 'missing', node.add(key, best.raw, ttl));
    for (const c of copies) {
      if (c.version < best.version) {
        this.#repair(c.node, 'stale', c.node.replace(key, best.raw, ttl));
      }
    }
    this.#loadedVersions.set(best.session, best.version);
    return best.session;
  }

  /** Promise form of `set`. */
  async setSession(sid: string, session: SessionData): Promise<void> {
    const key = this.key(sid);
    const ttl = this.ttlOf(session);
    if (ttl === null) {
      await this.client.delete(key);
      return;
    }
    const value = encodeValue(
      nextVersion(this.#versions.get(session)),
      this.#serializer.stringify(session),
    );
    if (value.length > this.maxSessionSize) {
      throw new SessionTooLargeError(value.length, this.maxSessionSize);
    }
    if (this.#persisted.has(session)) {
      const results = await this.client.onReplicas(key, (node) => node.replace(key, value, ttl));
      if (!answered(results)) throw firstError(results);
      if (!results.some((r) => r.ok && r.value)) {
        // Destroyed (logout) or expired since this request loaded it: it stays gone.
        this.#logger.debug?.('Dropped the save of a session that was destroyed meanwhile.');
        return;
      }
    } else {
      const results = await this.client.onReplicas(key, async (node) => {
        // `add` finds the key only when an earlier save of this very session lost its answer.
        if (!(await node.add(key, value, ttl))) await node.replace(key, value, ttl);
      });
      if (!answered(results)) throw firstError(results);
    }
    this.#versions.set(session, value.readUIntBE(2, 6));
    this.#persisted.add(session);
    this.#justSaved.add(session);
  }

  /** Promise form of `touch`: refreshes the TTL without sending the session. */
  async touchSession(sid: string, session: SessionData): Promise<void> {
    if (this.#justSaved.has(session)) {
      this.#justSaved.delete(session);
      return;
    }
    const ttl = this.ttlOf(session);
    if (ttl === null) {
      await this.client.delete(this.key(sid));
      return;
    }
    await this.client.touch(this.key(sid), ttl);
  }

  /**
   * Promise form of `destroy`. With replicas, each replica also keeps a tombstone for
   * `tombstoneTtl` seconds, so a copy on a node that missed the logout cannot come back.
   */
  async destroySession(sid: string): Promise<void> {
    const key = this.key(sid);
    if (this.client.replicas === 1) {
      await this.client.delete(key);
      return;
    }
    const grave = this.#graveKey(key);
    const results = await this.client.onReplicas(key, (node) =>
      Promise.all([node.set(grave, '1', this.tombstoneTtl), node.delete(key)]),
    );
    if (!answered(results)) throw firstError(results);
  }

  /**
   * Seconds the session should live in memcached: from the cookie's expiry (rounded up, at
   * least 1), else `ttl`; `null` when the cookie has already expired.
   */
  ttlOf(session: SessionData): number | null {
    const ms = remainingMs(session);
    if (ms === undefined) return this.ttl;
    if (ms <= 0) return null;
    return Math.max(1, Math.ceil(ms / 1000));
  }

  /** Closes the memcached connections if this store opened them (`createSessionStore`). */
  async close(): Promise<void> {
    if (this.#ownsClient) await this.client.close();
  }
}

function isSessionData(value: unknown): value is SessionData {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { cookie?: unknown }).cookie === 'object' &&
    (value as { cookie?: unknown }).cookie !== null
  );
}

/** Milliseconds until the session's cookie expires; undefined for a browser-session cookie. */
function isExpired(session: Partial<SessionData>): boolean {
  const left = remainingMs(session);
  return left !== undefined && left <= 0;
}

function remainingMs(session: Partial<SessionData>): number | undefined {
  const cookie = session.cookie as { expires?: unknown; maxAge?: unknown } | undefined;
  if (!cookie) return undefined;
  const expires = cookie.expires;
  if (expires instanceof Date || typeof expires === 'string' || typeof expires === 'number') {
    const at = new Date(expires).getTime();
    if (!Number.isNaN(at)) return at - Date.now();
  }
  return undefined;
}

/** Only the error's class: a parser's message may quote the stored data. */
function describeError(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}
