import { createHash, createHmac } from 'node:crypto';
import { SessionCacheConfigError } from '../session-cache.errors';

const MEMO_SIZE = 10_000;

/**
 * Turns session ids (and user ids) into the part of a memcached key after the prefix. With a
 * secret, it is HMAC-SHA256(secret, id) in base64url (43 characters): nobody who can read
 * memcached's keys can recover a session id from them. Without one (`hashKeys: false`) the session
 * id is used as is. Recent results are remembered, so one request hashes its session id once.
 */
export class SessionKeyHasher {
  readonly #secret: Buffer | null;
  readonly #memo = new Map<string, string>();

  constructor(secret: string | Buffer | null) {
    if (
      secret !== null &&
      !(typeof secret === 'string'
        ? secret.length > 0
        : Buffer.isBuffer(secret) && secret.length > 0)
    ) {
      throw new SessionCacheConfigError(
        'keySecret must be a non-empty string or Buffer: the secret of the HMAC that hides ' +
          'session ids in memcached keys (SessionCacheModule defaults it to the session secret; ' +
          'createSessionStore needs it, or `hashKeys: false`).',
      );
    }
    this.#secret = secret === null ? null : Buffer.from(secret);
  }

  /** Whether ids are hashed. */
  get hashing(): boolean {
    return this.#secret !== null;
  }

  /** The key part for session id `sid`. */
  session(sid: string): string {
    if (this.#secret === null) return sid;
    let hashed = this.#memo.get(sid);
    if (hashed === undefined) {
      hashed = createHmac('sha256', this.#secret).update(sid).digest('base64url');
      if (this.#memo.size >= MEMO_SIZE) this.#memo.delete(this.#memo.keys().next().value!);
      this.#memo.set(sid, hashed);
    }
    return hashed;
  }

  /** The key part for the session index of user `userId` (always hashed: user ids are not key-safe). */
  user(userId: string): string {
    const input = `user\0${userId}`;
    return this.#secret === null
      ? createHash('sha256').update(input).digest('base64url')
      : createHmac('sha256', this.#secret).update(input).digest('base64url');
  }
}

/** Internal keys (after the prefix): the namespace generation, user indexes, tombstones. */
const GENERATION_KEY = 'generation';
const USER_KEY_PREFIX = 'user:';
const GRAVE_SUFFIX = '!';

/**
 * Every memcached key of one store, all under its prefix: sessions, and the internal keys beside
 * them. Internal keys never equal a session key: a hashed session id (base64url, 43 characters)
 * never has their forms, and a raw one (`hashKeys: false`) that has is refused.
 */
export class SessionKeys {
  constructor(
    readonly prefix: string,
    readonly hasher: SessionKeyHasher,
  ) {}

  /** The key of session `sid`, or null when a raw id has the form of an internal key. */
  session(sid: string): string | null {
    if (
      !this.hasher.hashing &&
      (sid === GENERATION_KEY || sid.startsWith(USER_KEY_PREFIX) || sid.endsWith(GRAVE_SUFFIX))
    ) {
      return null;
    }
    return this.prefix + this.hasher.session(sid);
  }

  /** The key of the namespace generation (namespace.ts). */
  get generation(): string {
    return this.prefix + GENERATION_KEY;
  }

  /** The key of user `userId`'s session index (user-index.ts adds `:<class>` for long ones). */
  user(userId: string): string {
    return this.prefix + USER_KEY_PREFIX + this.hasher.user(userId);
  }

  /** The key of the tombstone of the session under `key` (replication.ts). */
  grave(key: string): string {
    return key + GRAVE_SUFFIX;
  }
}
