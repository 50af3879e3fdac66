import type { SessionData } from 'express-session';
import type { SessionCacheLogger } from '../memcached/session-cache.client';
import type { SessionNamespace } from './namespace';
import { nextHeader } from './replication';
import type { Replication } from './replication';
import type { SessionCodec } from './session-codec';
import type { SessionState, SessionStates } from './session-state';
import { lifeOf } from './ttl';
import type { SessionTtl } from './ttl';
import { NOT_INDEXED } from './user-index';
import type { UserIndex } from './user-index';

/**
 * Writes one new version of a session: serialized once (size checked before anything is sent),
 * its user's index written or refreshed first (a login whose index write fails leaves no session),
 * a header ordered after the version it was loaded at, encoded, stored, and recorded on the
 * session object for the next save.
 */
export class SessionWriter {
  constructor(
    readonly codec: SessionCodec,
    readonly states: SessionStates,
    readonly ttl: SessionTtl,
    readonly namespace: SessionNamespace,
    readonly users: UserIndex,
    readonly replicas: Replication,
    readonly logger: SessionCacheLogger,
  ) {}

  /**
   * A save (`set`): a session this store loaded under `key` (`state`) with `replace`, so a session
   * destroyed meanwhile stays destroyed; any other with `add` (set is an upsert: `add` falls back
   * to `replace` when the id exists).
   */
  async save(
    key: string,
    session: SessionData,
    state: SessionState | undefined,
    ttl: number,
  ): Promise<void> {
    const serialized = this.codec.serialize(session, state);
    const user = this.users.userOf(session);
    // A new session takes the generation from memcached, not from this process's cache: a
    // clear() another process just made must not void it. A loaded one keeps its own, so saving
    // it never revives it after clear(). A login writes the user index first (with that read).
    const [generation, index] = await Promise.all([
      state ? state.stamp.generation : this.namespace.read(),
      user === undefined ? NOT_INDEXED : this.users.ensure(user, key, ttl, state),
    ]);
    const stamp = nextHeader(state?.stamp, generation, ttl, this.ttl.fullTtl(session), index);
    const value = this.codec.encode(serialized, key, stamp);
    const cas = state
      ? await this.replicas.replace(key, value, ttl)
      : await this.replicas.add(key, value, ttl);
    if (cas === null) {
      // Destroyed (logout) or expired since this request loaded it: it stays gone.
      this.logger.debug?.('Dropped the save of a session that was destroyed meanwhile.');
      return;
    }
    this.states.set(session, { key, stamp, user, life: lifeOf(session), cas, loaded: serialized });
  }

  /**
   * A touch that changes the session's TTL other than by extending it (see lazy-touch.ts): a new
   * version over exactly the copies this request loaded or wrote (CAS), so it never overwrites a
   * parallel save, which then stands.
   */
  async rewrite(key: string, session: SessionData, state: SessionState, ttl: number) {
    const serialized = this.codec.serialize(session, state);
    const { user } = state;
    const index = user === undefined ? NOT_INDEXED : await this.users.ensure(user, key, ttl, state);
    const generation = state.stamp.generation;
    const stamp = nextHeader(state.stamp, generation, ttl, this.ttl.fullTtl(session), index);
    const value = this.codec.encode(serialized, key, stamp);
    const cas = await this.replicas.replaceRead(key, value, ttl, state.cas);
    if (cas === null) {
      this.logger.debug?.(
        'A request changed the lifetime of a session that another request saved (or destroyed) ' +
          'meanwhile; that save stands.',
      );
      return;
    }
    this.states.set(session, { key, stamp, user, life: lifeOf(session), cas, loaded: serialized });
  }
}
