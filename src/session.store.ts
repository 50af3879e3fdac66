import { Logger } from '@nestjs/common';
import { Store } from 'express-session';
import type { SessionData } from 'express-session';
import type { Request } from 'express';
import type { SessionStoreOptions } from './interfaces/session-cache-options.interface';
import { SessionCache, SessionCacheLogger } from './memcached/session-cache.client';
import { SessionCacheConfigError, SessionTooLargeError } from './session-cache.errors';
import { jsonSessionSerializer, SessionSerializer } from './session.serializer';

export const DEFAULT_PREFIX = 'sess:';
export const DEFAULT_TTL = 86_400;
/** memcached's default item limit (-I 1m) minus room for the key and item header. */
export const DEFAULT_MAX_SESSION_SIZE = 1024 * 1024 - 1024;

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
  readonly #serializer: SessionSerializer;
  readonly #logger: SessionCacheLogger;
  readonly #ownsClient: boolean;
  /** Sessions that exist in memcached (loaded from it, or added by this store). */
  readonly #persisted = new WeakSet<object>();
  /** Sessions written in the current request: their TTL is fresh, the closing touch is redundant. */
  readonly #justSaved = new WeakSet<object>();

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
    if (!Number.isInteger(this.maxSessionSize) || this.maxSessionSize < 1) {
      throw new SessionCacheConfigError(
        `maxSessionSize must be a whole number of bytes >= 1, got ${this.maxSessionSize}.`,
      );
    }
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
    return created;
  }

  /** Promise form of `get`: the session, or `null` when there is none (or it is unusable). */
  async getSession(sid: string): Promise<SessionData | null> {
    const key = this.key(sid);
    const raw = await this.client.get(key);
    if (raw === null) return null;
    let data: unknown;
    try {
      data = this.#serializer.parse(raw);
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
    const left = remainingMs(data);
    if (left !== undefined && left <= 0) {
      // Rare path: drop the stale copy now; a failure here must not fail the request.
      await this.client.delete(key).catch(() => undefined);
      return null;
    }
    return data;
  }

  /** Promise form of `set`. */
  async setSession(sid: string, session: SessionData): Promise<void> {
    const key = this.key(sid);
    const ttl = this.ttlOf(session);
    if (ttl === null) {
      await this.client.delete(key);
      return;
    }
    const encoded = this.#serializer.stringify(session);
    const payload = typeof encoded === 'string' ? Buffer.from(encoded, 'utf8') : encoded;
    if (payload.length > this.maxSessionSize) {
      throw new SessionTooLargeError(payload.length, this.maxSessionSize);
    }
    if (this.#persisted.has(session)) {
      const replaced = await this.client.replace(key, payload, ttl);
      if (!replaced) {
        // Destroyed (logout) or expired since this request loaded it: it stays gone.
        this.#logger.debug?.('Dropped the save of a session that was destroyed meanwhile.');
        return;
      }
    } else if (!(await this.client.add(key, payload, ttl))) {
      // Only a save of this very session whose answer was lost gets here; overwrite it.
      await this.client.replace(key, payload, ttl);
    }
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

  /** Promise form of `destroy`. */
  async destroySession(sid: string): Promise<void> {
    await this.client.delete(this.key(sid));
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
