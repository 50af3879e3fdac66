import type { SessionData } from 'express-session';
import type { SessionCache } from '../memcached/session-cache.client';
import { RecentMemo } from './recent-memo';
import type { SessionWriter } from './session-writer';
import type { LoadedStamp, SessionState } from './session-state';
import type { SessionTtl } from './ttl';
import { expiresAt, lifeOf, nowSeconds } from './ttl';
import type { UserIndex } from './user-index';
import { decodeValue } from './value-header';

/** Sessions whose last TOUCH a process remembers. */
const MEMO_SIZE = 100_000;

/**
 * What a touch of a loaded session must do: nothing, a TOUCH (memcached's: the value is not
 * re-sent), or a new write of the value (a new version, see {@link LazyTouch.due}).
 */
export type TouchDue = 'none' | 'touch' | 'rewrite';

/**
 * Lazy touch: express-session touches every unmodified session on every request (and the Fastify
 * bridge every loaded session it does not save); this decides when memcached actually needs to
 * hear of it, and what it hears.
 *
 * - Nothing is sent while memcached is known to keep the session at least until its cookie
 *   expires, and not much longer (`lazyTouch` × the lifetime of slack, see ttl.ts). What is known
 *   comes from the value's header (as loaded, or as this request wrote it) and this process's last
 *   TOUCH of that version (the touch memo). A header is only ever a lower bound: TOUCHes only move
 *   expiries later.
 * - A TOUCH when the session must live longer with the same cookie lifetime.
 * - A new write of the value (a new version, with the cookie as it is now) when the cookie's
 *   lifetime changed in this request and memcached would keep the session too short or much
 *   longer than that cookie: a TOUCH cannot shorten a TTL without making the header lie, and
 *   TOUCHes of one version are all made for one lifetime (so the memo of the last TOUCH stays
 *   true). That write is guarded by CAS: it never overwrites a parallel save (which then stands).
 * - A TOUCH never shortens a newer save: it answers the value it landed on, and when that is a
 *   newer save whose header promised a later expiry, that expiry is restored at once.
 */
export class LazyTouch {
  /** key → the version and expiry of this process's last TOUCH of it. */
  readonly #touched = new RecentMemo<string, { version: number; tag: number; expiresAt: number }>(
    MEMO_SIZE,
  );

  constructor(
    readonly client: Pick<SessionCache, 'onReplicas' | 'touch'>,
    readonly ttl: SessionTtl,
    readonly users: Pick<UserIndex, 'userOf' | 'ensure'>,
    readonly writer: Pick<SessionWriter, 'save' | 'rewrite'>,
  ) {}

  /**
   * A touch of `session` under `key`, which memcached must keep `ttl` seconds from now (its
   * cookie's remaining life, with slack); `state` is what the store knows of it (none: a session
   * object it did not load). The user's index is refreshed first when it would not outlive it.
   */
  async touch(
    key: string,
    session: SessionData,
    state: SessionState | undefined,
    ttl: number,
  ): Promise<void> {
    if (state === undefined) {
      // A session object this store did not load: no header to go by.
      const user = this.users.userOf(session);
      if (user !== undefined) await this.users.ensure(user, key, ttl, undefined);
      await this.client.touch(key, ttl);
      return;
    }
    const loaded = state.stamp;
    if (loaded.reencrypt) {
      // Read with an older encryption key: write it under the first one, so that old keys can
      // be retired even for sessions that are only ever read.
      await this.writer.save(key, session, state, ttl);
      return;
    }
    const due = this.due(key, session, state, ttl);
    if (due === 'none') return;
    if (due === 'rewrite') {
      await this.writer.rewrite(key, session, state, ttl);
      return;
    }
    if (state.user !== undefined) {
      const index = await this.users.ensure(state.user, key, ttl, state);
      state.stamp = { ...loaded, indexUntil: index.until, indexClass: index.cls };
    }
    await this.#touchReplicas(key, ttl, loaded);
  }

  /** What a touch of `session` (loaded as `state`, under `key`) must do, memcached keeping it
   * `ttl` seconds from now. */
  due(key: string, session: SessionData, state: SessionState, ttl: number): TouchDue {
    const loaded = state.stamp;
    const needed = this.ttl.neededUntil(session);
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
    if (known >= needed && (!lifeChanged || known <= until + 2)) return 'none';
    return lifeChanged ? 'rewrite' : 'touch';
  }

  /**
   * TOUCHes every replica of `key` (the version `loaded`) for `ttl` seconds with memcached's
   * get-and-touch, which answers the value the TOUCH landed on. When that is a newer save than
   * `loaded`, and its header promised a later expiry than this TOUCH gave (its cookie is longer),
   * the TTL it promised is restored at once. Remembers the TOUCH.
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
    this.#touched.set(key, { version: loaded.version, tag: loaded.tag, expiresAt: until });
  }
}
