import { Logger } from '@nestjs/common';
import { Store } from 'express-session';
import type { SessionData } from 'express-session';
import type { Request } from 'express';
import type { SessionStoreOptions } from '../interfaces/session-cache-options.interface';
import {
  MemcachedNode,
  SessionCache,
  SessionCacheLogger,
  settleAnswered,
  settleEach,
} from '../memcached/session-cache.client';
import type { ReplicaResult } from '../memcached/session-cache.client';
import type { CasValue } from '../memcached/memcached-node';
import { SessionCipher } from './session-cipher';
import { SessionKeyHasher, SessionKeys } from './session-keys';
import { isCleared, SessionNamespace } from './namespace';
import type { IndexPlace } from './user-index';
import { NOT_INDEXED, ttlWithinIndex, USER_INDEX_MIN_TTL, UserIndex } from './user-index';
import { compareCopies, decodeValue, nextStamp } from './value-header';
import { SessionCacheConfigError, SessionIdError } from '../session-cache.errors';
import { describeError, SessionCodec } from './session-codec';
import { SessionStates } from './session-state';
import type { DecodedSession, LoadedStamp, SessionState } from './session-state';
import { jsonSessionSerializer, SessionSerializer } from './session.serializer';
import { CLOCK_MARGIN, expiresAt, isExpired, lifeOf, nowSeconds, SessionTtl } from './ttl';

export { CLOCK_MARGIN } from './ttl';

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

/** Sessions whose last TOUCH this process remembers (see lazy touch). */
const MEMO_SIZE = 100_000;

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
 * - TTL comes from the cookie as it is at each save and touch (rounded up to whole seconds, at
 *   least 1 s), else `ttl`; TTLs over 30 days work (sent as absolute times).
 * - A session whose cookie has expired is never returned, and is deleted rather than written.
 * - `touch` uses memcached's TOUCH (the value is not re-sent, a session that is gone stays gone),
 *   lazily; a request that changes the cookie's lifetime writes the session anew instead, guarded
 *   by CAS so it never overwrites a parallel save.
 * - A session loaded from the store is saved with `replace`, a new one with `add`: a slow request
 *   that saves after a parallel logout does not bring the session back.
 * - Versions are logical (loaded + 1, see value-header.ts): replicas agree on the newest copy
 *   whatever the servers' clocks.
 * - A session over `maxSessionSize` is refused before it is sent (`SessionTooLargeError`);
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
  readonly #ttl: SessionTtl;
  readonly #logger: SessionCacheLogger;
  readonly #ownsClient: boolean;
  readonly #codec: SessionCodec;
  readonly #states = new SessionStates();
  readonly #keys: SessionKeys;
  readonly #namespace: SessionNamespace;
  readonly #users: UserIndex;
  /** key → the version and expiry of this process's last TOUCH of it (lazy touch). */
  readonly #touched = new Map<string, { version: number; tag: number; expiresAt: number }>();
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
    this.#ttl = new SessionTtl(this.ttl, this.lazyTouch);
    const serializer = options.serializer ?? jsonSessionSerializer;
    this.#logger = logger;
    this.#ownsClient = ownsClient;
    const hasher = new SessionKeyHasher(
      options.hashKeys === false ? null : (options.keySecret ?? (undefined as unknown as string)),
    );
    const cipher =
      options.encryptionKeys === undefined ? null : new SessionCipher(options.encryptionKeys);
    if (options.userId !== undefined && typeof options.userId !== 'function') {
      throw new SessionCacheConfigError(
        'userId must be a function that returns the user id of a session, e.g. (s) => s.userId.',
      );
    }
    const generationCheckInterval = options.generationCheckInterval ?? 1000;
    if (!Number.isFinite(generationCheckInterval) || generationCheckInterval < 0) {
      throw new SessionCacheConfigError(
        `generationCheckInterval must be a number of milliseconds >= 0, got ${options.generationCheckInterval}.`,
      );
    }
    const userIndexMinTtl = options.userIndexMinTtl ?? USER_INDEX_MIN_TTL;
    if (!Number.isInteger(userIndexMinTtl) || userIndexMinTtl < 1) {
      throw new SessionCacheConfigError(
        `userIndexMinTtl must be a whole number of seconds >= 1, got ${userIndexMinTtl}.`,
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
    const s = serializer as Partial<SessionSerializer> | undefined;
    if (typeof s?.stringify !== 'function' || typeof s?.parse !== 'function') {
      throw new SessionCacheConfigError('serializer must have stringify() and parse() functions.');
    }
    this.#codec = new SessionCodec(serializer, cipher, this.maxSessionSize, logger);
    this.#keys = new SessionKeys(this.prefix, hasher);
    this.#namespace = new SessionNamespace(
      client,
      this.#keys.generation,
      generationCheckInterval,
      logger,
    );
    this.#users = new UserIndex(client, this.#keys, userIndexMinTtl, options.userId);
  }

  /**
   * The memcached key of a session id: the prefix and an HMAC of the id (see `hashKeys`). With
   * `hashKeys: false`, an id that has the form of an internal key is refused ({@link SessionIdError}).
   */
  key(sid: string): string {
    const key = this.#keys.session(sid);
    if (key === null) throw new SessionIdError();
    return key;
  }

  /** The memcached key of the namespace generation (see {@link clearSessions}). */
  get generationKey(): string {
    return this.#keys.generation;
  }

  /** The memcached key of the index of user `userId`'s sessions (see {@link destroyUserSessions}):
   * the index of sessions whose TTL is at most 2^20 s (about 12 days, the classes whose index
   * lives the 30-day minimum); longer ones are listed under this key plus `:<class>` (class k:
   * TTLs up to 2^k s). */
  userKey(userId: string): string {
    return this.#keys.user(userId);
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
    this.#states.copy(session, created);
    return created;
  }

  /**
   * Whether `session` (an express-session `Session`) differs from what this store loaded for it:
   * its serialization, cookie included, compared with the bytes that were loaded (or last
   * saved); a session that was not loaded (new, or regenerated) has changed once it holds
   * anything besides its cookie. A changed loaded session's serialization is kept for the save
   * that follows, so it is made once. What the module's save-before-response asks; cheaper than
   * a snapshot before the handler.
   */
  sessionChanged(session: SessionData & { id?: string }): boolean {
    const state =
      typeof session.id === 'string' ? this.#states.of(session, this.key(session.id)) : undefined;
    return this.#codec.changed(session, state);
  }

  /**
   * Removes every session of this store, without `flush_all`: raises the namespace generation
   * (kept on every node), so all sessions created before are void; they expire from memcached on
   * their own. Other keys on the same memcached are untouched. Other processes of the app see the
   * new generation within `generationCheckInterval` ms; this one at once. See namespace.ts.
   */
  clearSessions(): Promise<void> {
    return this.#namespace.clear();
  }

  /**
   * Destroys every session of user `userId` (as the `userId` option reads it from sessions) and
   * resolves with how many were destroyed. Each session listed in the user's indexes is read
   * first, and destroyed only when its current user is `userId` (or it cannot be decoded): a
   * session id that changed user since it was listed is left alone. See user-index.ts.
   */
  async destroyUserSessions(userId: string | number): Promise<number> {
    if (!this.#users.userId) {
      throw new SessionCacheConfigError(
        'destroyUserSessions() needs the `userId` option: a function that returns the user id ' +
          'of a session, e.g. { userId: (session) => session.userId }.',
      );
    }
    const user = String(userId);
    return this.#users.destroyAll(user, (key) => this.#destroyIfUser(key, user));
  }

  /**
   * Destroys the session under `key` if its current user is `user` (an undecodable one too);
   * exactly the copies that were read are deleted (CAS), so a copy written since is read again.
   */
  async #destroyIfUser(key: string, user: string): Promise<boolean> {
    const nodes = this.client.nodesFor(key);
    for (let attempt = 0; attempt < 3; attempt++) {
      const copies = await settleAnswered(nodes, (node) => node.gets(key));
      let best: { found: DecodedSession; raw: Buffer } | null = null;
      let present = false;
      for (const r of copies) {
        if (!r.ok || r.value === null) continue;
        present = true;
        const found = this.#codec.decode(r.value.value, key);
        if (found === null) continue;
        if (
          best === null ||
          compareCopies({ ...found, raw: r.value.value }, { ...best.found, raw: best.raw }) > 0
        )
          best = { found, raw: r.value.value };
      }
      if (!present) return false;
      if (best !== null && this.#users.userOf(best.found.session) !== user) return false;
      if (await this.#destroyCopies(key, copies)) return true;
    }
    return false;
  }

  // ---------------------------------------------------------------------------------------------
  // Reads.
  // ---------------------------------------------------------------------------------------------

  /** Runs a read-repair in the background and reports it as a `readRepair` event. */
  #repair(node: MemcachedNode, reason: ReadRepairEvent['reason'], work: Promise<unknown>): void {
    work.then(
      (done) => {
        // Nothing to do (e.g. raced by a save): add/replace/delete answer false or null.
        if (done !== false && done !== null)
          this.emit('readRepair', { server: node.name, reason } satisfies ReadRepairEvent);
      },
      (err: unknown) =>
        this.#logger.debug?.(`Read-repair on ${node.name} failed: ${describeError(err)}.`),
    );
  }

  /** Promise form of `get`: the session, or `null` when there is none (or it is unusable). */
  async getSession(sid: string): Promise<SessionData | null> {
    const key = this.#keys.session(sid);
    if (key === null) return null;
    const nodes = this.client.nodesFor(key);
    let generation = this.#namespace.current();
    if (nodes.length > 1) {
      if (typeof generation !== 'number') generation = await generation;
      return this.#getReplicated(key, nodes, generation);
    }
    let read: CasValue | null;
    if (typeof generation === 'number') read = await nodes[0].gets(key);
    else [read, generation] = await Promise.all([nodes[0].gets(key), generation]);
    if (read === null) return null;
    const found = this.#codec.decode(read.value, key);
    if (found === null) return null;
    if (isCleared(found.generation, generation) || (found.legacy && isExpired(found.session))) {
      // Cleared or expired: drop the stale copy now; a failure here must not fail the request.
      await nodes[0].delete(key).catch(() => undefined);
      return null;
    }
    return this.#states.loaded(found, key, [read.cas], this.#users.userOf(found.session));
  }

  /**
   * Reads every replica at once. The newest copy wins (see the order of versions in
   * value-header.ts: the same copy for every reader, whatever the clocks); replicas that lack it
   * or hold another copy are repaired in the background, each repair guarded by the CAS token of
   * what was read, so it never lands on a newer write. Unless a replica holds the tombstone of a
   * logout it saw while another one was away: then the session is gone and the leftover copies
   * are deleted.
   */
  async #getReplicated(
    key: string,
    nodes: MemcachedNode[],
    generation: number,
  ): Promise<SessionData | null> {
    const results = await settleAnswered(nodes, (node) => node.gets(key));
    type Copy = { node: MemcachedNode; raw: Buffer; cas: Buffer };
    let best: (Copy & { found: DecodedSession }) | null = null;
    const copies: Copy[] = [];
    const missing: MemcachedNode[] = [];
    for (const r of results) {
      if (!r.ok) continue;
      const found = r.value === null ? null : this.#codec.decode(r.value.value, key);
      if (found === null) {
        missing.push(r.node);
        continue;
      }
      const copy = { node: r.node, raw: r.value!.value, cas: r.value!.cas };
      copies.push(copy);
      if (
        best === null ||
        compareCopies({ ...found, raw: copy.raw }, { ...best.found, raw: best.raw }) > 0
      )
        best = { ...copy, found };
    }
    if (best === null) return null;
    if (missing.length > 0) {
      const graves = await settleEach(missing, (node) => node.get(this.#keys.grave(key)));
      if (graves.some((g) => g.ok && g.value !== null)) {
        for (const c of copies) this.#repair(c.node, 'destroyed', c.node.delete(key));
        return null;
      }
    }
    const found = best.found;
    if (isCleared(found.generation, generation) || (found.legacy && isExpired(found.session))) {
      for (const c of copies) void c.node.delete(key).catch(() => undefined);
      return null;
    }
    // A repaired copy lives as a touch would make it (this read is a request of the session),
    // never past the user index that lists it.
    let ttl = this.#ttl.fullTtl(found.session);
    ttl = ttlWithinIndex(ttl, found);
    if (ttl >= 1) {
      const raw = best.raw;
      for (const node of missing) this.#repair(node, 'missing', node.add(key, raw, ttl));
      for (const c of copies) {
        if (!c.raw.equals(raw))
          this.#repair(c.node, 'stale', c.node.storeCas('replace', key, raw, ttl, c.cas));
      }
    }
    const winner = best.raw;
    const cas = nodes.map(
      (n) => copies.find((c) => c.node === n && c.raw.equals(winner))?.cas ?? null,
    );
    return this.#states.loaded(found, key, cas, this.#users.userOf(found.session));
  }

  // ---------------------------------------------------------------------------------------------
  // Saves.
  // ---------------------------------------------------------------------------------------------

  /** Promise form of `set`. */
  async setSession(sid: string, session: SessionData): Promise<void> {
    const key = this.key(sid);
    const ttl = this.ttlOf(session);
    if (ttl === null) {
      await this.client.delete(key);
      return;
    }
    const state = this.#states.of(session, key);
    const serialized = this.#codec.serialize(session, state);
    const user = this.#users.userOf(session);
    // A new session takes the generation from memcached, not from this process's cache: a
    // clear() another process just made must not void it. A loaded one keeps its own, so saving
    // it never revives it after clear(). A login writes the user index first (with that read).
    const [generation, index] = await Promise.all([
      state ? state.stamp.generation : this.#namespace.read(),
      user === undefined ? NOT_INDEXED : this.#users.ensure(user, key, ttl, state),
    ]);
    const stamp = this.#stampFor(state?.stamp, session, generation, ttl, index);
    const value = this.#codec.encode(serialized, key, stamp);
    const cas = state
      ? await this.#replaceOnReplicas(key, value, ttl)
      : await this.#addOnReplicas(key, value, ttl);
    if (cas === null) {
      // Destroyed (logout) or expired since this request loaded it: it stays gone.
      this.#logger.debug?.('Dropped the save of a session that was destroyed meanwhile.');
      return;
    }
    this.#states.set(session, { key, stamp, user, life: lifeOf(session), cas, loaded: serialized });
  }

  /** The header of the next write of a session loaded (or last written) with `loaded`. */
  #stampFor(
    loaded: LoadedStamp | undefined,
    session: SessionData,
    generation: number,
    ttl: number,
    index: IndexPlace,
  ): LoadedStamp {
    return {
      ...nextStamp(loaded),
      generation,
      expiresAt: expiresAt(ttl),
      indexUntil: index.until,
      indexClass: index.cls,
      // So that a logout's tombstone outlives every version of the session (see #destroyKey).
      longest: Math.max(loaded?.longest ?? 0, ttl, this.#ttl.fullTtl(session)),
    };
  }

  /** `replace` on every replica: the CAS tokens per node, or null when none still had it. */
  async #replaceOnReplicas(
    key: string,
    value: Buffer,
    ttl: number,
  ): Promise<(Buffer | null)[] | null> {
    const nodes = this.client.nodesFor(key);
    if (nodes.length === 1) {
      const cas = await nodes[0].storeCas('replace', key, value, ttl);
      return cas === null ? null : [cas];
    }
    const results = await settleAnswered(nodes, (node) =>
      node.storeCas('replace', key, value, ttl),
    );
    const cas = casOf(results);
    return cas.some((c) => c !== null) ? cas : null;
  }

  /** `add` on every replica (a new session); `add` finds the key only when the session object is
   * saved over an existing id (set is an upsert), and then it is replaced. */
  async #addOnReplicas(key: string, value: Buffer, ttl: number): Promise<(Buffer | null)[]> {
    const store = async (node: MemcachedNode) =>
      (await node.storeCas('add', key, value, ttl)) ??
      (await node.storeCas('replace', key, value, ttl));
    const nodes = this.client.nodesFor(key);
    if (nodes.length === 1) return [await store(nodes[0])];
    return casOf(await settleAnswered(nodes, store));
  }

  // ---------------------------------------------------------------------------------------------
  // Touches.
  // ---------------------------------------------------------------------------------------------

  /**
   * Promise form of `touch`: makes memcached keep the session as long as its cookie now needs.
   *
   * - Lazy: nothing is sent while memcached is known to keep the session at least until its cookie
   *   expires, and not much longer (`lazyTouch` × the lifetime of slack). What is known comes from
   *   the value's header (as loaded, or as this request wrote it) and this process's last TOUCH of
   *   that version. A header is only ever a lower bound: TOUCHes only move expiries later.
   * - A TOUCH (memcached's, the value is not re-sent) when the session must live longer with the
   *   same cookie lifetime; the user's index is refreshed first when it would not outlive it.
   * - A new write of the value (a new version, with the cookie as it is now) when the cookie's
   *   lifetime changed in this request and memcached would keep the session too short or much
   *   longer than that cookie: a TOUCH cannot shorten a TTL without making the header lie, and
   *   TOUCHes of one version are all made for one lifetime (so a process's memory of its last
   *   TOUCH stays true). That write is guarded by CAS: it never overwrites a parallel save (which
   *   then stands as it is).
   */
  async touchSession(sid: string, session: SessionData): Promise<void> {
    const key = this.#keys.session(sid);
    if (key === null) return;
    const ttl = this.ttlOf(session);
    if (ttl === null) {
      await this.client.delete(key);
      return;
    }
    const state = this.#states.of(session, key);
    if (state === undefined) {
      // A session object this store did not load: no header to go by.
      const user = this.#users.userOf(session);
      if (user !== undefined) await this.#users.ensure(user, key, ttl, undefined);
      await this.client.touch(key, ttl);
      return;
    }
    const loaded = state.stamp;
    if (loaded.reencrypt) {
      // Read with an older encryption key: write it under the first one, so that old keys can
      // be retired even for sessions that are only ever read.
      await this.setSession(sid, session);
      return;
    }
    const needed = this.#ttl.neededUntil(session);
    const until = expiresAt(ttl);
    const memo = this.#touched.get(key);
    const known = Math.max(
      loaded.expiresAt,
      memo !== undefined && memo.version === loaded.version && memo.tag === loaded.tag
        ? memo.expiresAt
        : 0,
    );
    // The cookie's lifetime changed in this request: memcached must keep the session as long as
    // the new cookie needs, and (when it was shortened) not much longer. With the same lifetime,
    // every TOUCH of this version is made for the same cookie, so what memcached keeps is never
    // much longer than needed (but for app servers' clocks that disagree: that is no reason to
    // write). (2 s of leeway: ceil() of two nearly equal lifetimes can differ by a second.)
    const lifeChanged = lifeOf(session) !== state.life;
    if (known >= needed && (!lifeChanged || known <= until + 2)) return;
    if (lifeChanged) {
      await this.#rewrite(key, session, state, ttl);
      return;
    }
    if (state.user !== undefined) {
      const index = await this.#users.ensure(state.user, key, ttl, state);
      state.stamp = { ...loaded, indexUntil: index.until, indexClass: index.cls };
    }
    await this.#touchReplicas(key, ttl, loaded);
    this.#rememberTouch(key, loaded, until);
  }

  /**
   * TOUCH with memcached's get-and-touch, which answers the value the TOUCH landed on. When that
   * is a newer save than the one this request loaded, and its header promised a later expiry than
   * this TOUCH gave (its cookie is longer), the TTL it promised is restored at once.
   */
  async #touchReplicas(key: string, ttl: number, loaded: LoadedStamp): Promise<void> {
    const until = expiresAt(ttl);
    const results = await this.client.onReplicas(key, (node) => node.getAndTouch(key, ttl));
    await Promise.all(
      results.map(async (r) => {
        if (!r.ok || r.value === null) return;
        const landed = decodeValue(r.value);
        if (landed.version === loaded.version && landed.tag === loaded.tag) return;
        if (landed.expiresAt > until) {
          await r.node.touch(key, landed.expiresAt - nowSeconds() + 1).catch(() => undefined);
        }
      }),
    );
  }

  /** Writes the session anew (a touch that changes its TTL other than by extending it), over
   * exactly the copies this request loaded or wrote (CAS). */
  async #rewrite(key: string, session: SessionData, state: SessionState, ttl: number) {
    const serialized = this.#codec.serialize(session, state);
    const index =
      state.user === undefined
        ? NOT_INDEXED
        : await this.#users.ensure(state.user, key, ttl, state);
    const stamp = this.#stampFor(state.stamp, session, state.stamp.generation, ttl, index);
    const value = this.#codec.encode(serialized, key, stamp);
    const nodes = this.client.nodesFor(key);
    const results = await settleAnswered(nodes, (node) => {
      const cas = state.cas[nodes.indexOf(node)];
      return cas ? node.storeCas('replace', key, value, ttl, cas) : Promise.resolve(null);
    });
    const cas = casOf(results);
    if (cas.every((c) => c === null)) {
      this.#logger.debug?.(
        'A request changed the lifetime of a session that another request saved (or destroyed) ' +
          'meanwhile; that save stands.',
      );
      return;
    }
    this.#states.set(session, {
      key,
      stamp,
      user: state.user,
      life: lifeOf(session),
      cas,
      loaded: serialized,
    });
  }

  #rememberTouch(key: string, loaded: LoadedStamp, until: number): void {
    this.#touched.delete(key);
    if (this.#touched.size >= MEMO_SIZE) {
      this.#touched.delete(this.#touched.keys().next().value!);
    }
    this.#touched.set(key, { version: loaded.version, tag: loaded.tag, expiresAt: until });
  }

  // ---------------------------------------------------------------------------------------------
  // Logouts.
  // ---------------------------------------------------------------------------------------------

  /**
   * Promise form of `destroy`. With replicas, each replica also keeps a tombstone, so a copy on a
   * node that missed the logout cannot come back; it lives at least `tombstoneTtl` seconds, and at
   * least as long as the session could (its values' headers say how long that is).
   */
  async destroySession(sid: string): Promise<void> {
    const key = this.#keys.session(sid);
    if (key === null) return;
    await this.#destroyKey(key);
  }

  async #destroyKey(key: string): Promise<void> {
    if (this.client.replicas === 1) {
      await this.client.delete(key);
      return;
    }
    const grave = this.#keys.grave(key);
    const floor = this.#tombstoneTtl([]);
    // One round trip: each node answers the copy it held, then takes the tombstone and the delete
    // (one connection: in that order). Only a session given a longer TTL than `tombstoneTtl`
    // would give (a remember-me cookie, say) needs a second one.
    const results = await this.client.onReplicas(key, async (node) => {
      const [copy] = await Promise.all([
        node.get(key),
        node.set(grave, '1', floor),
        node.delete(key),
      ]);
      return copy;
    });
    const ttl = this.#tombstoneTtl(results.map((r) => (r.ok ? r.value : null)));
    if (ttl > floor) await this.client.onReplicas(key, (node) => node.set(grave, '1', ttl));
  }

  /**
   * Deletes exactly the copies in `read` (CAS), then leaves tombstones; false when one of them
   * changed since it was read (a save of a new user on this id): no tombstone is left then, and
   * the caller reads the session again.
   */
  async #destroyCopies(key: string, read: ReplicaResult<CasValue | null>[]): Promise<boolean> {
    const held = read.filter((r) => r.ok && r.value !== null) as {
      node: MemcachedNode;
      value: CasValue;
    }[];
    const deleted = await settleEach(
      held.map((r) => r.node),
      (node) => node.deleteIfCas(key, held.find((r) => r.node === node)!.value.cas),
    );
    if (deleted.some((d) => d.ok && !d.value)) return false;
    if (this.client.replicas === 1) return true;
    const grave = this.#keys.grave(key);
    const ttl = this.#tombstoneTtl(held.map((r) => r.value.value));
    await settleAnswered(
      read.map((r) => r.node),
      (node) => Promise.all([node.set(grave, '1', ttl), node.delete(key)]),
    );
    return true;
  }

  /** How long a tombstone must live to outlive the session whose copies were `copies`. */
  #tombstoneTtl(copies: (Buffer | null)[]): number {
    // The longest TTL any of them was ever given (their headers record it), at least what
    // `tombstoneTtl` gives; a copy given that TTL up to now dies by now + TTL, and memcached may
    // drop the tombstone a second before now + its own TTL: one more second.
    let ttl = this.#ttl.withSlack(this.tombstoneTtl);
    for (const raw of copies) {
      if (raw === null) continue;
      const { longest, expiresAt: until } = decodeValue(raw);
      ttl = Math.max(ttl, longest, until > 0 ? until - nowSeconds() + 1 : 0);
    }
    return ttl + CLOCK_MARGIN;
  }

  /**
   * Seconds the session should live in memcached from now: until its cookie expires (`ttl` for a
   * browser-session cookie), plus the lazy-touch slack, rounded up, at least 1; `null` when the
   * cookie has already expired. See ttl.ts.
   */
  ttlOf(session: SessionData): number | null {
    return this.#ttl.ttlOf(session);
  }

  /** Closes the memcached connections if this store opened them (`createSessionStore`). */
  async close(): Promise<void> {
    if (this.#ownsClient) await this.client.close();
  }
}

/** The CAS tokens of a write on every replica (null where it was not stored). */
function casOf(results: ReplicaResult<Buffer | null>[]): (Buffer | null)[] {
  return results.map((r) => (r.ok ? r.value : null));
}
