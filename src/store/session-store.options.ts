import type { SessionData } from 'express-session';
import type { SessionStoreOptions } from '../interfaces/session-cache-options.interface';
import { SessionCacheConfigError } from '../session-cache.errors';
import { SessionCipher } from './session-cipher';
import { SessionKeyHasher } from './session-keys';
import { jsonSessionSerializer } from './session.serializer';
import type { SessionSerializer } from './session.serializer';
import { USER_INDEX_MIN_TTL } from './user-index';

export const DEFAULT_PREFIX = 'sess:';
export const DEFAULT_TTL = 86_400;
/** memcached's default item limit (-I 1m) minus room for the key and item header. */
export const DEFAULT_MAX_SESSION_SIZE = 1024 * 1024 - 1024;
/** Default lazy-touch slack: a tenth of a session's lifetime. */
export const DEFAULT_LAZY_TOUCH = 0.1;
/** Default `generationCheckInterval` (ms). */
export const DEFAULT_GENERATION_CHECK_INTERVAL = 1000;

/** The store's options with defaults applied, checked, and the key hasher and cipher built. */
export interface ResolvedStoreOptions {
  prefix: string;
  ttl: number;
  maxSessionSize: number;
  tombstoneTtl: number;
  lazyTouch: number;
  serializer: SessionSerializer;
  hasher: SessionKeyHasher;
  cipher: SessionCipher | null;
  userId?: (session: SessionData) => unknown;
  generationCheckInterval: number;
  userIndexMinTtl: number;
}

/** Applies the defaults and checks every option: a {@link SessionCacheConfigError} that says what
 * to give otherwise. */
export function resolveStoreOptions(options: SessionStoreOptions): ResolvedStoreOptions {
  const ttl = options.ttl ?? DEFAULT_TTL;
  const lazyTouch = options.lazyTouch ?? DEFAULT_LAZY_TOUCH;
  if (!(lazyTouch >= 0 && lazyTouch <= 1)) {
    throw new SessionCacheConfigError(
      `lazyTouch must be a fraction from 0 (touch on every request) to 1, got ${options.lazyTouch}.`,
    );
  }
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
  const generationCheckInterval =
    options.generationCheckInterval ?? DEFAULT_GENERATION_CHECK_INTERVAL;
  if (!Number.isFinite(generationCheckInterval) || generationCheckInterval < 0) {
    throw new SessionCacheConfigError(
      `generationCheckInterval must be a number of milliseconds >= 0, got ${options.generationCheckInterval}.`,
    );
  }
  const userIndexMinTtl = options.userIndexMinTtl ?? USER_INDEX_MIN_TTL;
  wholeNumber('userIndexMinTtl', userIndexMinTtl, 'seconds');
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string') {
    throw new SessionCacheConfigError('prefix must be a string, e.g. "sess:".');
  }
  wholeNumber('ttl', ttl, 'seconds');
  const tombstoneTtl = options.tombstoneTtl ?? ttl;
  wholeNumber('tombstoneTtl', tombstoneTtl, 'seconds');
  const maxSessionSize = options.maxSessionSize ?? DEFAULT_MAX_SESSION_SIZE;
  wholeNumber('maxSessionSize', maxSessionSize, 'bytes');
  const serializer = options.serializer ?? jsonSessionSerializer;
  const s = serializer as Partial<SessionSerializer> | undefined;
  if (typeof s?.stringify !== 'function' || typeof s?.parse !== 'function') {
    throw new SessionCacheConfigError('serializer must have stringify() and parse() functions.');
  }
  return {
    prefix,
    ttl,
    maxSessionSize,
    tombstoneTtl,
    lazyTouch,
    serializer,
    hasher,
    cipher,
    userId: options.userId,
    generationCheckInterval,
    userIndexMinTtl,
  };
}

function wholeNumber(name: string, value: number, unit: string): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new SessionCacheConfigError(
      `${name} must be a whole number of ${unit} >= 1, got ${value}.`,
    );
  }
}
