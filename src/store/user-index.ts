import type { SessionData } from 'express-session';
import type { MemcachedNode, SessionCache } from '../memcached/session-cache.client';
import { settleEach } from '../memcached/session-cache.client';
import type { CasValue } from '../memcached/memcached-node';
import { RecentMemo } from './recent-memo';
import type { SessionKeys } from './session-keys';
import type { SessionState } from './session-state';
import { expiresAt, nowSeconds } from './ttl';
import { NO_INDEX } from './value-header';

/** The session index of a user lives at least this long (seconds): `userIndexMinTtl`'s default. */
export const USER_INDEX_MIN_TTL = 30 * 86_400;
/** The highest index class: 2^32 s is past 2106. */
export const MAX_INDEX_CLASS = 32;
/** User indexes whose lifetime a process remembers. */
const MEMO_SIZE = 100_000;

/** Where a session is listed for logout everywhere: its index class, and until when that index
 * is known to live. */
export interface IndexPlace {
  until: number;
  cls: number;
}
export const NOT_INDEXED: IndexPlace = { until: 0, cls: NO_INDEX };

/** The index class of a session stored with `ttl`: the smallest k with 2^k >= ttl. */
export function indexClassOf(ttl: number): number {
  return Math.min(MAX_INDEX_CLASS, Math.max(0, Math.ceil(Math.log2(ttl))));
}

/** Lifetime (seconds) of index class `k`: fixed, so refreshes never move its expiry earlier. */
export function indexTtl(k: number, minTtl: number): number {
  return Math.max(minTtl, 2 ** (k + 1));
}

/** `ttl`, cut so that a session listed in a user index (per its header) never outlives it. */
export function ttlWithinIndex(
  ttl: number,
  stamp: { indexClass: number; indexUntil: number },
): number {
  return stamp.indexClass === NO_INDEX ? ttl : Math.min(ttl, stamp.indexUntil - nowSeconds() - 1);
}

/**
 * Logout everywhere: the per-user session indexes behind `destroyUserSessions(userId)`.
 *
 * The sessions of a user are listed (space-separated keys, appended to) in indexes that must
 * outlive every session they list, whatever the request pattern:
 *
 * - Bands. A session is listed in one index class: class k holds sessions whose TTL is at most
 *   2^k seconds ({@link indexClassOf}) and lives max(userIndexMinTtl, 2^(k+1)) seconds from its
 *   last refresh ({@link indexTtl}). The classes that live the minimum share one key.
 * - Lifetimes. The TTL of a class is fixed, so a refresh (a TOUCH, or a write that appends) only
 *   ever moves its expiry later: a short session can never shorten the index of a long one. Each
 *   stored session records (its header's `indexUntil`) until when its index is known to live; no
 *   save, touch or repair ever gives a session a TTL past that ({@link ttlWithinIndex}).
 * - Cost. When less than half the class lifetime is left, the save or touch that would extend the
 *   session first refreshes the index (and records the new `indexUntil`): once per half lifetime
 *   per session (15 days by default), so ordinary requests pay no extra round trip on average.
 * - Logins. A save that gives the session a new user writes the index first and the session only
 *   once that succeeded: a login whose index write failed fails, and leaves no session behind.
 * - Logout everywhere reads each listed session and destroys it only while it is still that
 *   user's; the indexes are then deleted, unless a login added to them meanwhile (CAS): those are
 *   read again.
 */
export class UserIndex {
  /** user index key → until when this process knows it lives (it refreshed or wrote it). */
  readonly #known = new RecentMemo<string, number>(MEMO_SIZE);

  constructor(
    readonly client: Pick<SessionCache, 'onReplicas' | 'get'>,
    readonly keys: SessionKeys,
    /** The shortest lifetime of an index (`userIndexMinTtl`). */
    readonly minTtl: number,
    /** The `userId` option; none: sessions are not indexed. */
    readonly userId?: (session: SessionData) => unknown,
  ) {}

  /** The user id of `session` as a string; undefined for none, or without the `userId` option. */
  userOf(session: SessionData): string | undefined {
    const id = this.userId?.(session);
    return id === undefined || id === null || id === '' ? undefined : String(id);
  }

  /** The key of `user`'s index of class `k` (the classes that live the minimum share one). */
  keyOf(user: string, k: number): string {
    return 2 ** (k + 1) <= this.minTtl ? this.keys.user(user) : `${this.keys.user(user)}:${k}`;
  }

  /** Every index key of `user`. */
  keysOf(user: string): string[] {
    const keys = new Set<string>();
    for (let k = 0; k <= MAX_INDEX_CLASS; k++) keys.add(this.keyOf(user, k));
    return [...keys];
  }

  /**
   * Makes sure that `user`'s index lists the session under `key` and lives past a TTL of `ttl`
   * given now, and says where: writes the entry (a login, a new user, a longer class, a value
   * that has no index yet) or refreshes the index when less than half its lifetime is left.
   * Rejects when no replica of the index answered: the caller must then not extend the session.
   */
  async ensure(
    user: string,
    key: string,
    ttl: number,
    state: SessionState | undefined,
  ): Promise<IndexPlace> {
    const needed = indexClassOf(ttl);
    const listed = state?.user === user ? state.stamp.indexClass : NO_INDEX;
    if (listed === NO_INDEX || listed < needed) {
      return { until: await this.#list(user, key, needed), cls: needed };
    }
    const indexKey = this.keyOf(user, listed);
    const lifetime = indexTtl(listed, this.minTtl);
    const until = Math.max(state!.stamp.indexUntil, this.#known.get(indexKey) ?? 0);
    // Half its lifetime left at least (which is at least `ttl`): nothing to do.
    if (until - nowSeconds() - 1 >= lifetime / 2) return { until, cls: listed };
    const entry = this.#entry(key);
    const since = expiresAt(lifetime);
    await this.client.onReplicas(indexKey, async (node) => {
      // A replica that lost the index (restarted) gets it back with this entry.
      if (!(await node.touch(indexKey, lifetime))) {
        await this.#addEntry(node, indexKey, entry, lifetime);
      }
    });
    return { until: this.#known.set(indexKey, since), cls: listed };
  }

  /**
   * Destroys every session listed for `user`, through `destroy` (which checks that the session
   * is still that user's), and resolves with how many were destroyed. The indexes are then
   * deleted, unless a login added to them meanwhile (CAS): those are read again.
   */
  async destroyAll(user: string, destroy: (key: string) => Promise<boolean>): Promise<number> {
    const seen = new Set<string>();
    let destroyed = 0;
    let pending = this.keysOf(user);
    for (let round = 0; pending.length > 0 && round < 5; round++) {
      const indexes = await Promise.all(
        pending.map(async (indexKey) => ({
          indexKey,
          copies: await this.client.onReplicas(indexKey, (node) => node.gets(indexKey)),
        })),
      );
      const entries = new Set<string>();
      for (const { copies } of indexes) {
        for (const r of copies) {
          if (!r.ok || r.value === null) continue;
          for (const entry of r.value.value.toString('latin1').split(' ')) {
            if (entry && !seen.has(entry)) entries.add(entry);
          }
        }
      }
      for (const entry of entries) seen.add(entry);
      const outcomes = await Promise.all(
        [...entries].map((entry) => destroy(this.keys.prefix + entry)),
      );
      destroyed += outcomes.filter(Boolean).length;
      const changed = await Promise.all(
        indexes.map(async ({ indexKey, copies }) => {
          this.#known.delete(indexKey);
          const held = copies.filter((r) => r.ok && r.value !== null) as {
            node: MemcachedNode;
            value: CasValue;
          }[];
          const deleted = await settleEach(
            held.map((r) => r.node),
            (node) => node.deleteIfCas(indexKey, held.find((r) => r.node === node)!.value.cas),
          );
          return deleted.some((d) => d.ok && !d.value) ? indexKey : null;
        }),
      );
      pending = changed.filter((k): k is string => k !== null);
    }
    return destroyed;
  }

  /** Adds `key` to `user`'s index of class `k` (creating it if needed); resolves with until when
   * that index lives at least. */
  async #list(user: string, key: string, k: number): Promise<number> {
    const indexKey = this.keyOf(user, k);
    const lifetime = indexTtl(k, this.minTtl);
    const entry = this.#entry(key);
    const since = expiresAt(lifetime);
    await this.client.onReplicas(indexKey, (node) =>
      this.#addEntry(node, indexKey, entry, lifetime),
    );
    return this.#known.set(indexKey, since);
  }

  /** The entry of a session key in an index: the key without the prefix, and a space. */
  #entry(key: string): string {
    return `${key.slice(this.keys.prefix.length)} `;
  }

  /** Adds one entry to an index on one node, with the index's full (fixed) lifetime. */
  async #addEntry(
    node: MemcachedNode,
    indexKey: string,
    entry: string,
    lifetime: number,
  ): Promise<void> {
    if (await node.add(indexKey, entry, lifetime)) return;
    if (await node.append(indexKey, entry)) {
      // append keeps the old TTL: give the index the full lifetime again.
      await node.touch(indexKey, lifetime);
      return;
    }
    // Refused: deleted in between, or full (memcached's item size limit).
    const current = await node.get(indexKey);
    if (current === null) {
      await node.add(indexKey, entry, lifetime);
      return;
    }
    await node.set(indexKey, `${await this.#liveEntries(current)}${entry}`, lifetime);
  }

  /** The entries of a full index whose sessions still exist (kept when unsure). */
  async #liveEntries(index: Buffer): Promise<string> {
    const entries = [...new Set(index.toString('latin1').split(' ').filter(Boolean))];
    const alive = await Promise.all(
      entries.map((e) =>
        this.client.get(this.keys.prefix + e).then(
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
}
