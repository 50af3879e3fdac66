import { Logger } from '@nestjs/common';
import { Store } from 'express-session';
import type { SessionData } from 'express-session';
import type { Request } from 'express';
import type { SessionStoreOptions } from '../interfaces/session-cache-options.interface';
import type { SessionCache, SessionCacheLogger } from '../memcached/session-cache.client';
import { SessionCacheConfigError, SessionIdError } from '../session-cache.errors';
import { buildStoreParts } from './session-store.parts';
import type { SessionStoreParts } from './session-store.parts';
import { resolveStoreOptions } from './session-store.options';

export {
  DEFAULT_PREFIX,
  DEFAULT_TTL,
  DEFAULT_MAX_SESSION_SIZE,
  DEFAULT_LAZY_TOUCH,
} from './session-store.options';
export { CLOCK_MARGIN } from './ttl';
export type { ReadRepairEvent } from './replication';

type Done<T = void> = (err?: unknown, value?: T) => void;

/**
 * An express-session `Store` on the session memcached; the Fastify bridge
 * (fastify/fastify-session.bridge.ts) drives the same store through its promise methods. It is an
 * adapter: each guarantee lives in the part its file name says.
 *
 * - TTL comes from the cookie as it is at each save and touch (rounded up to whole seconds, at
 *   least 1 s), else `ttl`; TTLs over 30 days work (sent as absolute times). See ttl.ts.
 * - A session whose cookie has expired is never returned, and is deleted rather than written.
 * - `touch` uses memcached's TOUCH (the value is not re-sent, a session that is gone stays gone),
 *   lazily; a request that changes the cookie's lifetime writes the session anew instead, guarded
 *   by CAS so it never overwrites a parallel save. See lazy-touch.ts.
 * - A session loaded from the store is saved with `replace`, a new one with `add`: a slow request
 *   that saves after a parallel logout does not bring the session back. Versions are logical:
 *   replicas agree on the newest copy whatever the servers' clocks. See replication.ts.
 * - `clear()` without `flush_all` (namespace.ts); logout everywhere (user-index.ts).
 * - A session over `maxSessionSize` is refused before it is sent (`SessionTooLargeError`);
 *   the stored one stays intact. A value that cannot be decoded counts as no session (warned,
 *   without the session id). See session-codec.ts.
 */
export class SessionStore extends Store {
  readonly prefix: string;
  readonly ttl: number;
  readonly maxSessionSize: number;
  readonly tombstoneTtl: number;
  /** Lazy touch: the fraction of a session's lifetime added as slack; see the option. */
  readonly lazyTouch: number;
  readonly #ownsClient: boolean;
  /** What it is an adapter over: one part per concern (session-store.parts.ts). */
  readonly #parts: SessionStoreParts;

  constructor(
    /** The memcached client of the session cluster. */
    readonly client: SessionCache,
    options: SessionStoreOptions = {},
    logger: SessionCacheLogger = new Logger('SessionCacheModule'),
    ownsClient = false,
  ) {
    super();
    const o = resolveStoreOptions(options);
    ({ prefix: this.prefix, ttl: this.ttl, maxSessionSize: this.maxSessionSize } = o);
    ({ tombstoneTtl: this.tombstoneTtl, lazyTouch: this.lazyTouch } = o);
    this.#ownsClient = ownsClient;
    this.#parts = buildStoreParts(client, o, logger, (e) => this.emit('readRepair', e));
    // The client's events are re-emitted by the store, subscribed only once someone listens here.
    const forwarded = new Set<string>();
    this.on('newListener', (event: string | symbol) => {
      if (typeof event !== 'string' || forwarded.has(event)) return;
      if (event !== 'nodeDown' && event !== 'nodeUp' && event !== 'operationFailed') return;
      forwarded.add(event);
      client.on(event, (payload: unknown) => this.emit(event, payload));
    });
  }

  /**
   * The memcached key of a session id: the prefix and an HMAC of the id (see `hashKeys`). With
   * `hashKeys: false`, an id that has the form of an internal key is refused ({@link SessionIdError}).
   */
  key(sid: string): string {
    const key = this.#parts.keys.session(sid);
    if (key === null) throw new SessionIdError();
    return key;
  }

  /** The memcached key of the namespace generation (see {@link clearSessions}). */
  get generationKey(): string {
    return this.#parts.keys.generation;
  }

  /** The memcached key of the index of user `userId`'s sessions (see {@link destroyUserSessions}):
   * the index of sessions whose TTL is at most 2^20 s (about 12 days, the classes whose index
   * lives the 30-day minimum); longer ones are listed under this key plus `:<class>` (class k:
   * TTLs up to 2^k s). */
  userKey(userId: string): string {
    return this.#parts.keys.user(userId);
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
    this.#parts.states.copy(session, created);
    return created;
  }

  /**
   * Whether `session` (an express-session `Session`) differs from what this store loaded for it:
   * its serialization, cookie included, against the bytes loaded (or last saved); a session that
   * was not loaded (new, or regenerated) has changed once it holds anything besides its cookie.
   * What the module's save-before-response asks; cheaper than a snapshot before the handler.
   */
  sessionChanged(session: SessionData & { id?: string }): boolean {
    const state =
      typeof session.id === 'string'
        ? this.#parts.states.of(session, this.key(session.id))
        : undefined;
    return this.#parts.codec.changed(session, state);
  }

  /** Promise form of `get`: the session, or `null` when there is none (or it is unusable). */
  async getSession(sid: string): Promise<SessionData | null> {
    const key = this.#parts.keys.session(sid);
    if (key === null) return null;
    const read = await this.#parts.replicas.read(key, this.#parts.namespace.current());
    if (read === null) return null;
    return this.#parts.states.loaded(
      read.found,
      key,
      read.cas,
      this.#parts.users.userOf(read.found.session),
    );
  }

  /** Promise form of `set` (see session-writer.ts). */
  async setSession(sid: string, session: SessionData): Promise<void> {
    const key = this.key(sid);
    const ttl = this.#parts.ttl.ttlOf(session);
    if (ttl === null) await this.client.delete(key);
    else await this.#parts.writer.save(key, session, this.#parts.states.of(session, key), ttl);
  }

  /** Promise form of `touch`: makes memcached keep the session as long as its cookie now needs,
   * lazily (see lazy-touch.ts). */
  async touchSession(sid: string, session: SessionData): Promise<void> {
    const key = this.#parts.keys.session(sid);
    if (key === null) return;
    const ttl = this.#parts.ttl.ttlOf(session);
    if (ttl === null) await this.client.delete(key);
    else await this.#parts.touches.touch(key, session, this.#parts.states.of(session, key), ttl);
  }

  /** Promise form of `destroy` (a logout; with replicas it leaves tombstones, see replication.ts). */
  async destroySession(sid: string): Promise<void> {
    const key = this.#parts.keys.session(sid);
    if (key !== null) await this.#parts.replicas.destroy(key);
  }

  /**
   * Removes every session of this store, without `flush_all`: raises the namespace generation
   * (kept on every node), so all sessions created before are void; they expire from memcached on
   * their own. Other keys on the same memcached are untouched. Other processes of the app see the
   * new generation within `generationCheckInterval` ms; this one at once. See namespace.ts.
   */
  clearSessions(): Promise<void> {
    return this.#parts.namespace.clear();
  }

  /**
   * Destroys every session of user `userId` (as the `userId` option reads it from sessions) and
   * resolves with how many were destroyed. Each session listed in the user's indexes is read
   * first, and destroyed only when its current user is `userId` (or it cannot be decoded): a
   * session id that changed user since it was listed is left alone. See user-index.ts.
   */
  async destroyUserSessions(userId: string | number): Promise<number> {
    if (!this.#parts.users.userId) {
      throw new SessionCacheConfigError(
        'destroyUserSessions() needs the `userId` option: a function that returns the user id ' +
          'of a session, e.g. { userId: (session) => session.userId }.',
      );
    }
    const user = String(userId);
    return this.#parts.users.destroyAll(user, (key) =>
      this.#parts.replicas.destroyIf(
        key,
        (s) => s === null || this.#parts.users.userOf(s.session) === user,
      ),
    );
  }

  /**
   * Seconds the session should live in memcached from now: until its cookie expires (`ttl` for a
   * browser-session cookie), plus the lazy-touch slack, rounded up, at least 1; `null` when the
   * cookie has already expired. See ttl.ts.
   */
  ttlOf(session: SessionData): number | null {
    return this.#parts.ttl.ttlOf(session);
  }

  /** Closes the memcached connections if this store opened them (`createSessionStore`). */
  async close(): Promise<void> {
    if (this.#ownsClient) await this.client.close();
  }
}

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
