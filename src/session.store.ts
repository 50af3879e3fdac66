import { Logger } from '@nestjs/common';
import { Store } from 'express-session';
import type { SessionData } from 'express-session';
import type { Request } from 'express';
import type { SessionStoreOptions } from './interfaces/session-cache-options.interface';
import {
  MemcachedNode,
  SessionCache,
  SessionCacheLogger,
  settleAnswered,
  settleEach,
} from './memcached/session-cache.client';
import { SessionCipher } from './session-cipher';
import { SessionKeyHasher } from './session-keys';
import {
  decodeValue,
  encodeHeader,
  encodeValue,
  FLAG_ENCRYPTED,
  nextVersion,
} from './session-value';
import type { ValueStamp } from './session-value';
import { SessionCacheConfigError, SessionTooLargeError } from './session-cache.errors';
import { jsonSessionSerializer, SessionSerializer } from './session.serializer';

export const DEFAULT_PREFIX = 'sess:';
export const DEFAULT_TTL = 86_400;
/** memcached's default item limit (-I 1m) minus room for the key and item header. */
export const DEFAULT_MAX_SESSION_SIZE = 1024 * 1024 - 1024;
/** Default lazy-touch slack: a tenth of a session's lifetime. */
export const DEFAULT_LAZY_TOUCH = 0.1;

/** Payload of the store's `readRepair` event. */
export interface ReadRepairEvent {
  /** The node that was repaired. */
  server: string;
  /** `missing`: it lacked the session; `stale`: it held an older version; `destroyed`: it held a
   * copy of a session that was logged out while it was away (the copy was deleted). */
  reason: 'missing' | 'stale' | 'destroyed';
}

/** What a stored session says about itself (its header), and whether it had one. */
interface Loaded extends ValueStamp {
  legacy?: boolean;
  /** Decrypted with a key other than the first: rewrite it at the next touch. */
  reencrypt?: boolean;
}

/** What a store knows of a session object (see SessionStore.#state). */
interface SessionState {
  /** The memcached key it was loaded from or last written to: all else here is about that key. */
  key: string;
  /** It exists in memcached under `key` (loaded from it, or written by this store): saves to that
   * key use `replace`, so a session destroyed meanwhile stays destroyed. */
  persisted: boolean;
  /** Its header as read, or as last written. */
  stamp?: Loaded;
  /** Its user id as loaded or last saved (only with the `userId` option). */
  user?: string;
  /** Written in the current request: its TTL is fresh, the closing touch is redundant. */
  justSaved: boolean;
  /** The serializer's bytes as loaded (text for the default JSON serializer): what an unchanged
   * session serializes to again (see {@link SessionStore.sessionChanged}). */
  loaded?: string | Buffer;
  /** The serialization {@link SessionStore.sessionChanged} made of a changed session, kept for the
   * save that follows at once (so the session is serialized once, not twice). */
  serialized?: string | Buffer;
}

/**
 * Seconds added to every TTL the store sends: memcached's clock ticks in whole seconds, and an item
 * stored with TTL n lives between n − 1 and n seconds (measured: a 3 s TTL lived 2.1 to 2.9 s).
 */
export const CLOCK_MARGIN = 1;

/** Sessions whose last TOUCH this process remembers (see lazy touch). */
const TOUCH_MEMO_SIZE = 100_000;

/** The session index of a user lives at least this long (seconds), see destroyUserSessions. */
const USER_INDEX_MIN_TTL = 30 * 86_400;

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
  /** Lazy touch: the fraction of a session's lifetime added as slack; see the option. */
  readonly lazyTouch: number;
  readonly #serializer: SessionSerializer;
  readonly #logger: SessionCacheLogger;
  readonly #ownsClient: boolean;
  /**
   * What this store knows of a session object, kept on the object under a private symbol (not
   * enumerable: express-session's copies, hashes and JSON never see it): cheaper per request than
   * weak maps.
   */
  readonly #state = Symbol('nestjs-session-cache store state');
  readonly #keys: SessionKeyHasher;
  readonly #cipher: SessionCipher | null;
  readonly #userId?: (session: SessionData) => unknown;
  readonly #generationCheckInterval: number;
  /** The namespace generation (see `clearSessions`), when it was last read, and a read under way. */
  #generation = 0;
  #generationReadAt = -Infinity;
  #generationRead: Promise<number> | null = null;
  /** key → the version and expiry of this process's last TOUCH of it (lazy touch). */
  readonly #touched = new Map<string, { version: number; expiresAt: number }>();

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
    this.lazyTouch = options.lazyTouch ?? DEFAULT_LAZY_TOUCH;
    if (!(this.lazyTouch >= 0 && this.lazyTouch <= 1)) {
      throw new SessionCacheConfigError(
        `lazyTouch must be a fraction from 0 (touch on every request) to 1, got ${options.lazyTouch}.`,
      );
    }
    this.#serializer = options.serializer ?? jsonSessionSerializer;
    this.#logger = logger;
    this.#ownsClient = ownsClient;
    this.#keys = new SessionKeyHasher(
      options.hashKeys === false ? null : (options.keySecret ?? (undefined as unknown as string)),
    );
    this.#cipher =
      options.encryptionKeys === undefined ? null : new SessionCipher(options.encryptionKeys);
    if (options.userId !== undefined && typeof options.userId !== 'function') {
      throw new SessionCacheConfigError(
        'userId must be a function that returns the user id of a session, e.g. (s) => s.userId.',
      );
    }
    this.#userId = options.userId;
    this.#generationCheckInterval = options.generationCheckInterval ?? 1000;
    if (!Number.isFinite(this.#generationCheckInterval) || this.#generationCheckInterval < 0) {
      throw new SessionCacheConfigError(
        `generationCheckInterval must be a number of milliseconds >= 0, got ${options.generationCheckInterval}.`,
      );
    }
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

  /** The memcached key of a session id: the prefix and an HMAC of the id (see `hashKeys`). */
  key(sid: string): string {
    return this.prefix + this.#keys.session(sid);
  }

  /** The memcached key of the namespace generation (see {@link clearSessions}). */
  get generationKey(): string {
    return `${this.prefix}generation`;
  }

  /** The memcached key of the index of user `userId`'s sessions (see {@link destroyUserSessions}). */
  userKey(userId: string): string {
    return `${this.prefix}user:${this.#keys.user(userId)}`;
  }

  /** Removes every session of this store (all nodes); see {@link clearSessions}. */
  override clear(callback?: (err?: unknown) => void): void {
    settle(this.clearSessions(), callback);
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
    const loaded = this.#stateOf(session);
    if (loaded === undefined) return created;
    this.#setState(created, {
      key: loaded.key,
      persisted: true,
      stamp: loaded?.stamp,
      user: this.#userId ? this.#userOf(session) : undefined,
      justSaved: false,
      loaded: loaded.loaded,
    });
    return created;
  }

  /**
   * Whether `session` (an express-session `Session`) differs from what this store loaded for it:
   * its serialization, cookie included, compared with the bytes that were loaded; a session that
   * was not loaded (new, or regenerated) has changed once it holds anything besides its cookie.
   * A changed loaded session's serialization is kept for the save that follows, so it is made
   * once. Used by the module's save-before-response; cheaper than a snapshot before the handler.
   */
  sessionChanged(session: SessionData & { id?: string }): boolean {
    const state =
      typeof session.id === 'string' ? this.#stateOf(session, this.key(session.id)) : undefined;
    if (state?.loaded === undefined) {
      for (const field in session) if (field !== 'cookie') return true;
      return false;
    }
    const serialized = this.#serializer.stringify(session);
    const loaded = state.loaded;
    const same =
      typeof serialized === 'string' && typeof loaded === 'string'
        ? serialized === loaded
        : Buffer.from(serialized).equals(Buffer.from(loaded));
    state.serialized = same ? undefined : serialized;
    return !same;
  }

  /** What this store knows of `session` as stored under `key` (nothing when it was loaded from,
   * or written to, another key: saving it under this one is then a plain upsert). */
  #stateOf(session: object, key?: string): SessionState | undefined {
    const state = (session as { [key: symbol]: SessionState | undefined })[this.#state];
    return key === undefined || state?.key === key ? state : undefined;
  }

  #setState(session: object, state: SessionState): SessionState {
    Object.defineProperty(session, this.#state, {
      value: state,
      writable: true,
      enumerable: false,
      configurable: true,
    });
    return state;
  }

  /** Decodes a stored value; `null` (with a warning) when it is not a usable session. */
  #decode(
    raw: Buffer,
    key: string,
  ): ({ session: SessionData; loaded: string | Buffer } & Loaded) | null {
    const { version, generation, expiresAt, flags, header, payload: stored } = decodeValue(raw);
    let payload = stored;
    let reencrypt = false;
    const encrypted = flags !== -1 && (flags & FLAG_ENCRYPTED) !== 0;
    if (this.#cipher) {
      if (!encrypted) {
        this.#logger.warn(
          'Ignored a stored session that is not encrypted while encryption is on; the request ' +
            'continues without it.',
        );
        return null;
      }
      const plain = this.#cipher.decrypt(stored, Buffer.concat([header, Buffer.from(key)]));
      if (typeof plain === 'string') {
        this.#logger.warn(
          plain === 'unknown-key'
            ? 'Ignored a stored session encrypted with a key that is not in encryptionKeys; ' +
                'the request continues without it.'
            : 'Ignored a stored session that failed authentication (tampered, truncated or ' +
                'not written for this key); the request continues without it.',
        );
        return null;
      }
      payload = plain;
      reencrypt = !this.#cipher.isCurrent(stored);
    } else if (encrypted) {
      this.#logger.warn(
        'Ignored a stored session that is encrypted, but no encryptionKeys are configured; the ' +
          'request continues without it.',
      );
      return null;
    }
    let data: unknown;
    let loaded: string | Buffer = payload;
    try {
      if (this.#serializer === jsonSessionSerializer) {
        loaded = payload.toString('utf8');
        data = JSON.parse(loaded);
      } else {
        data = this.#serializer.parse(payload);
      }
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
    return {
      session: data,
      loaded,
      version,
      generation,
      expiresAt,
      legacy: flags === -1,
      reencrypt,
    };
  }

  /** Encodes a session for `key`: header, then the serializer's bytes (encrypted if on). */
  #encode(
    session: SessionData,
    key: string,
    stamp: ValueStamp,
    serialized = this.#serializer.stringify(session),
  ): Buffer {
    if (!this.#cipher) return encodeValue(stamp, serialized);
    const header = encodeHeader(stamp, FLAG_ENCRYPTED);
    const sealed = this.#cipher.encrypt(serialized, Buffer.concat([header, Buffer.from(key)]));
    return Buffer.concat([header, sealed]);
  }

  #userOf(session: SessionData): string | undefined {
    const id = this.#userId?.(session);
    return id === undefined || id === null || id === '' ? undefined : String(id);
  }

  /**
   * The current namespace generation: cached, re-read from memcached (in the background) at most
   * every `generationCheckInterval` ms; the first call waits for it.
   */
  #currentGeneration(): number | Promise<number> {
    if (Date.now() - this.#generationReadAt < this.#generationCheckInterval) {
      return this.#generation;
    }
    const read = (this.#generationRead ??= this.#readGeneration().finally(() => {
      this.#generationRead = null;
    }));
    if (this.#generationReadAt === -Infinity) return read;
    read.catch(() => undefined); // keep the last known generation meanwhile
    return this.#generation;
  }

  /** Reads the generation from every node (it lives on all of them) and keeps the highest. */
  async #readGeneration(): Promise<number> {
    const key = this.generationKey;
    const results = await settleAnswered(this.client.nodes, (node) => node.get(key));
    let highest = 0;
    for (const r of results) {
      const value = r.ok && r.value !== null ? Number(r.value.toString('latin1')) : 0;
      if (Number.isSafeInteger(value) && value > highest) highest = value;
    }
    // A node that lost it (restarted) gets it back, so it never serves an older namespace; the
    // generation this process already knows counts too (all nodes may have lost it).
    highest = Math.max(highest, this.#generation);
    if (highest > 0) {
      for (const r of results) {
        if (r.ok && r.value === null)
          void r.node.add(key, String(highest), 0).catch(() => undefined);
      }
    }
    this.#generation = Math.max(this.#generation, highest);
    this.#generationReadAt = Date.now();
    return this.#generation;
  }

  /**
   * Removes every session of this store, without `flush_all`: raises the namespace generation
   * (kept on every node), so all sessions created before are void; they expire from memcached on
   * their own. Other keys on the same memcached are untouched. Other processes of the app see the
   * new generation within `generationCheckInterval` ms; this one at once.
   */
  async clearSessions(): Promise<void> {
    const current = await this.#readGeneration();
    const next = Math.max(Math.floor(Date.now() / 1000), current + 1);
    const results = await settleAnswered(this.client.nodes, (node) =>
      node.set(this.generationKey, String(next), 0),
    );
    this.#generation = next;
    this.#generationReadAt = Date.now();
    const missed = results.filter((r) => !r.ok).map((r) => r.node.name);
    if (missed.length > 0) {
      this.#logger.warn(
        `clear(): ${missed.join(', ')} did not take the new generation; it gets it when it ` +
          'answers again (the other nodes already void the old sessions).',
      );
    }
  }

  /**
   * Destroys every session of user `userId` (as the `userId` option reads it from sessions) and
   * resolves with how many sessions were listed for that user. The index is kept on writes that
   * give a session a new user id (a login), never on ordinary reads.
   */
  async destroyUserSessions(userId: string | number): Promise<number> {
    if (!this.#userId) {
      throw new SessionCacheConfigError(
        'destroyUserSessions() needs the `userId` option: a function that returns the user id ' +
          'of a session, e.g. { userId: (session) => session.userId }.',
      );
    }
    const indexKey = this.userKey(String(userId));
    const results = await this.client.onReplicas(indexKey, (node) => node.get(indexKey));
    const entries = new Set<string>();
    for (const r of results) {
      if (!r.ok || r.value === null) continue;
      for (const entry of r.value.toString('latin1').split(' ')) if (entry) entries.add(entry);
    }
    await Promise.all([...entries].map((entry) => this.#destroyKey(this.prefix + entry)));
    await this.client.delete(indexKey);
    return entries.size;
  }

  /** Adds `key` to the session index of `user` (creating the index if needed). */
  async #indexUser(user: string, key: string): Promise<void> {
    const indexKey = this.userKey(user);
    const entry = `${key.slice(this.prefix.length)} `;
    const ttl = this.#userIndexTtl();
    await this.client.onReplicas(indexKey, async (node) => {
      if (await node.add(indexKey, entry, ttl)) return;
      if (await node.append(indexKey, entry)) {
        // append keeps the old TTL: give the index the full lifetime again.
        await node.touch(indexKey, ttl);
        return;
      }
      // Refused: deleted in between, or full (memcached's item size limit).
      const current = await node.get(indexKey);
      if (current === null) {
        await node.add(indexKey, entry, ttl);
        return;
      }
      await node.set(indexKey, `${await this.#liveEntries(current)}${entry}`, ttl);
    });
  }

  /** The entries of a full user index whose sessions still exist (kept when unsure). */
  async #liveEntries(index: Buffer): Promise<string> {
    const entries = [...new Set(index.toString('latin1').split(' ').filter(Boolean))];
    const alive = await Promise.all(
      entries.map((e) =>
        this.client.get(this.prefix + e).then(
          (value) => value !== null,
          () => true,
        ),
      ),
    );
    return entries
      .filter((_, i) => alive[i])
      .map((e) => `${e} `)
      .join('');
  }

  #userIndexTtl(): number {
    return Math.max(
      this.#withSlack(this.tombstoneTtl),
      this.#withSlack(this.ttl),
      USER_INDEX_MIN_TTL,
    );
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
    let generation = this.#currentGeneration();
    if (nodes.length > 1) {
      if (typeof generation !== 'number') generation = await generation;
      return this.#getReplicated(key, nodes, generation);
    }
    let raw: Buffer | null;
    if (typeof generation === 'number') raw = await nodes[0].get(key);
    else [raw, generation] = await Promise.all([nodes[0].get(key), generation]);
    if (raw === null) return null;
    const found = this.#decode(raw, key);
    if (found === null) return null;
    if (found.generation < generation || (found.legacy && isExpired(found.session))) {
      // Cleared or expired: drop the stale copy now; a failure here must not fail the request.
      await nodes[0].delete(key).catch(() => undefined);
      return null;
    }
    this.#setState(found.session, {
      key,
      persisted: true,
      stamp: found,
      justSaved: false,
      loaded: found.loaded,
    });
    return found.session;
  }

  /**
   * Reads every replica at once. The newest copy wins; replicas that lack it are repaired in the
   * background, unless a replica holds the tombstone of a logout it saw while another one was
   * away: then the session is gone and the leftover copies are deleted.
   */
  async #getReplicated(
    key: string,
    nodes: MemcachedNode[],
    generation: number,
  ): Promise<SessionData | null> {
    const results = await settleAnswered(nodes, (node) => node.get(key));
    let best: ({ session: SessionData; raw: Buffer; loaded: string | Buffer } & Loaded) | null =
      null;
    const copies: { node: MemcachedNode; version: number }[] = [];
    const missing: MemcachedNode[] = [];
    for (const r of results) {
      if (!r.ok) continue;
      const found = r.value === null ? null : this.#decode(r.value, key);
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
    const expired = best.generation < generation || (best.legacy && isExpired(best.session));
    // A repaired copy lives as a touch would make it: this read is a request of the session.
    const ttl = expired ? null : this.#fullTtl(best.session);
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
    this.#setState(best.session, {
      key,
      persisted: true,
      stamp: best,
      justSaved: false,
      loaded: best.loaded,
    });
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
    const state = this.#stateOf(session, key);
    const loaded = state?.stamp;
    const stamp: Loaded = {
      version: nextVersion(loaded?.version),
      // A session keeps the generation it was created in: saving it never revives it after clear().
      generation: loaded?.generation ?? (await this.#currentGeneration()),
      expiresAt: expiresAt(ttl),
    };
    // The serialization sessionChanged() just made (no await since: the session is as it was).
    const serialized = state?.serialized ?? this.#serializer.stringify(session);
    if (state) state.serialized = undefined;
    const value = this.#encode(session, key, stamp, serialized);
    if (value.length > this.maxSessionSize) {
      throw new SessionTooLargeError(value.length, this.maxSessionSize);
    }
    const user = this.#userId ? this.#userOf(session) : undefined;
    const indexing = user !== undefined && user !== state?.user ? this.#indexUser(user, key) : null;
    // Both at once, and both awaited: a failed index write is never an unhandled rejection.
    const [stored] = await Promise.all([
      state?.persisted
        ? this.#replaceOnReplicas(key, value, ttl)
        : this.#addOnReplicas(key, value, ttl),
      indexing,
    ]);
    if (!stored) {
      // Destroyed (logout) or expired since this request loaded it: it stays gone.
      this.#logger.debug?.('Dropped the save of a session that was destroyed meanwhile.');
      return;
    }
    this.#setState(session, {
      key,
      persisted: true,
      stamp,
      user,
      justSaved: true,
      loaded: serialized,
    });
  }

  /** `replace` on every replica; false when none of them still had the session. */
  async #replaceOnReplicas(key: string, value: Buffer, ttl: number): Promise<boolean> {
    const nodes = this.client.nodesFor(key);
    if (nodes.length === 1) return nodes[0].replace(key, value, ttl);
    const results = await settleAnswered(nodes, (node) => node.replace(key, value, ttl));
    return results.some((r) => r.ok && r.value);
  }

  /** `add` on every replica (a new session); `add` finds the key only when an earlier save of this
   * very session lost its answer, and then it is replaced. */
  async #addOnReplicas(key: string, value: Buffer, ttl: number): Promise<true> {
    const store = async (node: MemcachedNode) => {
      if (!(await node.add(key, value, ttl))) await node.replace(key, value, ttl);
    };
    const nodes = this.client.nodesFor(key);
    if (nodes.length === 1) {
      await store(nodes[0]);
      return true;
    }
    await settleAnswered(nodes, store);
    return true;
  }

  /**
   * Promise form of `touch`: refreshes the TTL with memcached's TOUCH, without sending the session.
   * Lazy: skipped while memcached is known to keep the session at least until its cookie expires
   * (from the value's header, or this process's last touch of that version); a touch adds
   * `lazyTouch` × the lifetime as slack, so the next one is due only after that much time.
   */
  async touchSession(sid: string, session: SessionData): Promise<void> {
    const key = this.key(sid);
    const state = this.#stateOf(session, key);
    if (state?.justSaved) {
      state.justSaved = false;
      return;
    }
    const ttl = this.ttlOf(session);
    if (ttl === null) {
      await this.client.delete(key);
      return;
    }
    const loaded = state?.stamp;
    if (loaded?.reencrypt) {
      // Read with an older encryption key: write it under the first one, so that old keys can
      // be retired even for sessions that are only ever read.
      await this.setSession(sid, session);
      return;
    }
    if (loaded !== undefined) {
      const ms = remainingMs(session);
      const needed = Math.ceil((Date.now() + (ms ?? this.ttl * 1000)) / 1000);
      const memo = this.#touched.get(key);
      const known = Math.max(
        loaded.expiresAt,
        memo !== undefined && memo.version === loaded.version ? memo.expiresAt : 0,
      );
      // Skip while memcached keeps it past the cookie, but not longer than a touch now would
      // (a shortened maxAge must shorten the TTL too).
      // (2 s of leeway: ceil() of two nearly equal lifetimes can differ by a second.)
      if (known >= needed && known <= expiresAt(ttl) + 2) return;
    }
    await this.client.touch(key, ttl);
    if (loaded !== undefined) this.#rememberTouch(key, loaded.version, expiresAt(ttl));
    if (state?.user !== undefined) {
      // The user's index must live as long as the sessions it lists.
      const indexKey = this.userKey(state.user);
      const indexTtl = this.#userIndexTtl();
      void this.client
        .onReplicas(indexKey, (node) => node.touch(indexKey, indexTtl))
        .catch(() => undefined);
    }
  }

  #rememberTouch(key: string, version: number, until: number): void {
    this.#touched.delete(key);
    if (this.#touched.size >= TOUCH_MEMO_SIZE) {
      this.#touched.delete(this.#touched.keys().next().value!);
    }
    this.#touched.set(key, { version, expiresAt: until });
  }

  /**
   * Promise form of `destroy`. With replicas, each replica also keeps a tombstone for
   * `tombstoneTtl` seconds, so a copy on a node that missed the logout cannot come back.
   */
  destroySession(sid: string): Promise<void> {
    return this.#destroyKey(this.key(sid));
  }

  async #destroyKey(key: string): Promise<void> {
    if (this.client.replicas === 1) {
      await this.client.delete(key);
      return;
    }
    const grave = this.#graveKey(key);
    await this.client.onReplicas(key, (node) =>
      // A stale copy may outlive its cookie by the lazy-touch slack: so does its tombstone.
      Promise.all([node.set(grave, '1', this.#withSlack(this.tombstoneTtl)), node.delete(key)]),
    );
  }

  /**
   * Seconds the session should live in memcached from now: until its cookie expires (`ttl` for a
   * browser-session cookie), plus the lazy-touch slack, rounded up, at least 1; `null` when the
   * cookie has already expired.
   */
  ttlOf(session: SessionData): number | null {
    const ms = remainingMs(session);
    if (ms !== undefined && ms <= 0) return null;
    return this.#withSlack(ms === undefined ? this.ttl : ms / 1000);
  }

  /** The TTL a touch at this moment would give: the cookie's full maxAge (or `ttl`) plus slack. */
  #fullTtl(session: SessionData): number {
    const maxAge = (session.cookie as { originalMaxAge?: unknown } | undefined)?.originalMaxAge;
    return this.#withSlack(typeof maxAge === 'number' && maxAge > 0 ? maxAge / 1000 : this.ttl);
  }

  /**
   * The TTL to send for something that must live `seconds` from now: that lifetime plus the
   * lazy-touch slack, rounded up to whole seconds (ignoring floating-point dust: 3600 × 1.1 is
   * 3960.0000000000005), plus {@link CLOCK_MARGIN}: memcached's clock ticks in whole seconds, so
   * an item stored with TTL n lives between n − 1 and n seconds. Every TTL the store sends comes
   * from here: sessions, touches, tombstones, user indexes.
   */
  #withSlack(seconds: number): number {
    return Math.max(1, Math.ceil(seconds * (1 + this.lazyTouch) - 1e-6)) + CLOCK_MARGIN;
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
/** The Unix second until which memcached surely keeps a value written now with `ttl`. */
function expiresAt(ttl: number): number {
  // memcached's clock may run a second behind ours: stay on the safe side.
  return Math.floor(Date.now() / 1000) + ttl - 1;
}

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
