import type { SessionData } from 'express-session';
import { lifeOf } from './ttl';
import type { ValueStamp } from './value-header';

/** What a stored session says about itself (its header), and whether it had one. */
export interface LoadedStamp extends Required<ValueStamp> {
  /** Written without a header (by 0.1). */
  legacy?: boolean;
  /** Decrypted with a key other than the first: rewrite it at the next touch. */
  reencrypt?: boolean;
}

/** A stored session, decoded: the session, the serializer's bytes it came from, its header. */
export type DecodedSession = { session: SessionData; loaded: string | Buffer } & LoadedStamp;

/** What the store knows of a session object, from its load (or last write) to its next save. */
export interface SessionState {
  /** The memcached key it was loaded from or last written to: all else here is about that key.
   * Saves to that key use `replace`, so a session destroyed meanwhile stays destroyed. */
  key: string;
  /** Its header as read, or as last written (the index fields: as last known to this process). */
  stamp: LoadedStamp;
  /** Its user id as loaded or last saved (only with the `userId` option). */
  user?: string;
  /** The cookie's `originalMaxAge` stored in that version (null: none): every TOUCH of a version
   * is made for that lifetime; a request that changes it writes a new version (see lazy-touch.ts). */
  life: number | null;
  /** Per node of `client.nodesFor(key)`: the CAS token of that version's copy there, when known. */
  cas: (Buffer | null)[];
  /** The serializer's bytes of that version (text for the default JSON serializer): what the
   * session serializes to while unchanged (see `SessionCodec.changed`). */
  loaded?: string | Buffer;
  /** The serialization `SessionCodec.changed` made of a changed session, kept for the save that
   * follows at once (so the session is serialized once, not twice). */
  serialized?: string | Buffer;
}

/**
 * Where the store keeps what it knows of a session object: on the object itself, under a private
 * symbol (not enumerable: express-session's copies, hashes and JSON never see it). Cheaper per
 * request than weak maps. The Fastify bridge hands the store the same object from load to save,
 * so this works through both doors.
 */
export class SessionStates {
  readonly #symbol = Symbol('nestjs-session-cache store state');

  /** What is known of `session` as stored under `key` (nothing when it was loaded from, or
   * written to, another key: saving it under this one is then a plain upsert). */
  of(session: object, key?: string): SessionState | undefined {
    const state = (session as { [key: symbol]: SessionState | undefined })[this.#symbol];
    return key === undefined || state?.key === key ? state : undefined;
  }

  set(session: object, state: SessionState): SessionState {
    Object.defineProperty(session, this.#symbol, {
      value: state,
      writable: true,
      enumerable: false,
      configurable: true,
    });
    return state;
  }

  /** Gives `to` (the `Session` express-session builds from loaded data) a copy of what is known
   * of `from` (that data). */
  copy(from: object, to: object): void {
    const loaded = this.of(from);
    if (loaded !== undefined) this.set(to, { ...loaded, cas: [...loaded.cas] });
  }

  /** Records a session just loaded: its header, CAS tokens, user, cookie lifetime and bytes. */
  loaded(
    found: DecodedSession,
    key: string,
    cas: (Buffer | null)[],
    user: string | undefined,
  ): SessionData {
    const { session, loaded, ...stamp } = found;
    this.set(session, { key, stamp, cas, life: lifeOf(session), user, loaded });
    return session;
  }
}
