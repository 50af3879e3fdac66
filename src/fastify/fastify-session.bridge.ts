import type { SessionData } from 'express-session';
import { SessionCacheConfigError, SessionCacheError } from '../session-cache.errors';
import type { SessionStore } from '../store/session.store';

/** What this bridge uses of @fastify/session's `Cookie` (11.x). */
export interface FastifySessionCookie {
  originalMaxAge: number | null;
  expires: Date | null;
  path?: string;
  httpOnly?: boolean;
  secure?: boolean | 'auto' | null;
  sameSite?: unknown;
  domain?: string | null;
  partitioned?: boolean;
}

/** What this bridge uses of @fastify/session's `Session` (11.x); the app's fields besides. */
export interface FastifySession {
  readonly sessionId: string;
  cookie: FastifySessionCookie;
  isSaved(): boolean;
  save(callback: (err?: unknown) => void): void;
  [field: string]: unknown;
}

type Callback<T = void> = (err?: unknown, value?: T) => void;

/** A session as the {@link SessionStore} reads and writes it. */
type StoredSession = SessionData & Record<string, unknown>;

/** What the bridge knows of one @fastify/session `Session` object. */
interface SessionRecord {
  /**
   * The session as the store sees it: the very object `getSession()` returned for a loaded
   * session (the store keeps what it knows of it on that object: the key, the version, the bytes
   * it was loaded from, the user), a plain one for a new session. Its fields are copied from the
   * `Session` before every store call.
   */
  readonly data: StoredSession;
  /** In memcached under the session's id (loaded, or saved since): an unchanged save is a touch. */
  stored: boolean;
  /** Why the session could not be loaded; the request goes on without it (see the plugin). */
  readonly error?: unknown;
}

/**
 * The string key under which a loaded session's record travels into the `Session` that
 * @fastify/session builds from what the store's `get` answered: its constructor copies every
 * enumerable field of that answer, and the value is a function, which neither its change hash nor
 * JSON see. The module's `onRequest` hook (or the first store call) moves it off the `Session`
 * before the handler runs.
 */
export const CARRIER = 'nestjs-session-cache:record';

/**
 * The store @fastify/session is given on Fastify: callback `get`/`set`/`destroy` on the
 * {@link SessionStore}, carrying what the store knows of each session from its load to its save,
 * which @fastify/session cannot do (it never calls `store.createSession`):
 *
 * - a loaded session is saved with `replace` (a logout in between wins), a new one with `add`;
 * - the bytes it was loaded from (unchanged-session detection for save-before-response, and
 *   saves that are really touches: lazy);
 * - its size check (413 with the stored session kept), user index and encryption are the store's.
 *
 * Cookies with a `maxAge` are stored without their `expires`: memcached's TTL (the store's lazy
 * touch) is their idle timeout, as with express-session, and @fastify/session, which rejects a
 * session whose stored `expires` has passed, derives a fresh one from `maxAge` at every load.
 */
export class FastifySessionBridge {
  /** Where the record of a `Session` object (or of a carrier) lives on it. */
  readonly #record = Symbol('nestjs-session-cache:fastify-record');

  constructor(readonly store: SessionStore) {}

  get(sid: string, callback: Callback<Record<string, unknown> | null>): void {
    this.store.getSession(sid).then(
      (data) => {
        const loaded =
          data === null ? null : this.#carry({ data: data as StoredSession, stored: true });
        process.nextTick(callback, null, loaded);
      },
      (err: unknown) => {
        if (!(err instanceof SessionCacheError) || err instanceof SessionCacheConfigError) {
          process.nextTick(callback, err);
          return;
        }
        // The request goes on with a stand-in session that says why; see the plugin's hook.
        const standIn = this.#carry({
          data: { cookie: {} } as StoredSession,
          stored: false,
          error: err,
        });
        process.nextTick(callback, null, standIn);
      },
    );
  }

  set(sid: string, session: FastifySession, callback: Callback): void {
    const record =
      this.#recordOf(session) ??
      this.#attach(session, { data: {} as StoredSession, stored: false });
    this.#save(sid, session, record).then(
      () => process.nextTick(callback),
      (err: unknown) => process.nextTick(callback, err),
    );
  }

  destroy(sid: string, callback: Callback): void {
    this.store.destroySession(sid).then(
      () => process.nextTick(callback),
      (err: unknown) => process.nextTick(callback, err),
    );
  }

  /**
   * Takes the record off a `Session` @fastify/session just built (see {@link CARRIER}) and
   * returns it: `error` says the session could not be loaded.
   */
  adopt(session: unknown): { readonly error?: unknown } | undefined {
    if (typeof session !== 'object' || session === null) return undefined;
    return this.#recordOf(session as FastifySession);
  }

  /**
   * Whether `session` differs from what was loaded (or last saved): its fields and cookie
   * settings, serialized as the store stores them, against the bytes the store loaded; a session
   * that is not in memcached yet has changed once it holds anything besides its cookie.
   */
  sessionChanged(session: FastifySession): boolean {
    const record = this.#recordOf(session);
    if (record === undefined) {
      for (const field in session) if (field !== 'cookie') return true;
      return false;
    }
    if (record.error !== undefined) return false;
    return this.store.sessionChanged(this.#sync(record, session));
  }

  /**
   * The end of a request whose loaded session was not saved (unchanged, `rolling: false`): the
   * store's lazy touch, as express-session touches every session it does not save. Nothing for
   * other sessions; undefined when there is nothing to wait for.
   */
  touchUnsaved(session: unknown): Promise<void> | undefined {
    if (typeof session !== 'object' || session === null) return undefined;
    const s = session as FastifySession;
    const record = this.#recordOf(s);
    if (!record?.stored || record.error !== undefined || s.isSaved()) return undefined;
    return this.store.touchSession(s.sessionId, this.#sync(record, s));
  }

  async #save(sid: string, session: FastifySession, record: SessionRecord): Promise<void> {
    // Never write the stand-in of a session that could not be loaded over the real one.
    if (record.error !== undefined) throw record.error;
    const data = this.#sync(record, session);
    if (record.stored && !this.store.sessionChanged(data)) {
      // rolling, or an explicit save() of an unchanged session: the TTL is all there is to write.
      await this.store.touchSession(sid, data);
      return;
    }
    await this.store.setSession(sid, data);
    record.stored = true;
  }

  /** What `get` answers @fastify/session: the session's fields, its cookie, and the carrier. */
  #carry(record: SessionRecord): Record<string, unknown> {
    const carrier = () => undefined;
    Object.defineProperty(carrier, this.#record, { value: record });
    const { cookie, ...fields } = record.data;
    return { ...fields, cookie: cookieForFastify(cookie), [CARRIER]: carrier };
  }

  #recordOf(session: FastifySession): SessionRecord | undefined {
    const own = (session as unknown as Record<symbol, SessionRecord | undefined>)[this.#record];
    if (own !== undefined) return own;
    const carrier = session[CARRIER];
    if (typeof carrier !== 'function') return undefined;
    const record = (carrier as unknown as Record<symbol, SessionRecord | undefined>)[this.#record];
    if (record === undefined) return undefined;
    delete session[CARRIER];
    return this.#attach(session, record);
  }

  #attach(session: FastifySession, record: SessionRecord): SessionRecord {
    Object.defineProperty(session, this.#record, { value: record, configurable: true });
    return record;
  }

  /**
   * Copies the session's fields onto its record's `data` (in place: the store's state stays on
   * it, and the key order stays that of the loaded bytes), with the cookie as it is stored, and
   * gives `data` the session's id as the store expects it (not enumerable: never stored).
   */
  #sync(record: SessionRecord, session: FastifySession): StoredSession {
    const data = record.data as Record<string, unknown>;
    for (const field in data) {
      if (!Object.prototype.hasOwnProperty.call(session, field)) delete data[field];
    }
    for (const field in session) {
      if (field === CARRIER) continue;
      data[field] = field === 'cookie' ? storedCookie(session.cookie) : session[field];
    }
    Object.defineProperty(data, 'id', {
      value: session.sessionId,
      writable: true,
      enumerable: false,
      configurable: true,
    });
    return record.data;
  }
}

function hasMaxAge(cookie: { originalMaxAge?: unknown } | null | undefined): boolean {
  return typeof cookie?.originalMaxAge === 'number' && cookie.originalMaxAge > 0;
}

/**
 * The cookie as stored: its settings, and its `expires` only when it has no `maxAge` (an
 * absolute expiry). With a `maxAge`, `expires` is still there for the store's TTL, but not
 * enumerable, so that neither the stored bytes nor the unchanged-session check see it move at
 * every request.
 */
function storedCookie(cookie: FastifySessionCookie): Record<string, unknown> {
  const { originalMaxAge, expires, path, httpOnly, secure, sameSite, domain, partitioned } = cookie;
  const stored: Record<string, unknown> = {
    originalMaxAge,
    path,
    httpOnly,
    secure,
    sameSite,
    domain,
  };
  if (partitioned !== undefined) stored.partitioned = partitioned;
  if (hasMaxAge(cookie)) {
    Object.defineProperty(stored, 'expires', { value: expires, enumerable: false });
  } else {
    stored.expires = expires;
  }
  return stored;
}

/** The stored cookie as @fastify/session should restore it (see {@link FastifySessionBridge}). */
function cookieForFastify(cookie: unknown): unknown {
  const c = cookie as Record<string, unknown> | undefined;
  if (!hasMaxAge(c) || (c!.expires === undefined && c!.originalExpires === undefined))
    return cookie;
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- dropped on purpose
  const { expires, originalExpires, ...rest } = c!;
  return rest;
}
