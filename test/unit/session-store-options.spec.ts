import { SessionCacheConfigError } from '../../src';
import type { SessionStoreOptions } from '../../src';
import { jsonSessionSerializer } from '../../src/store/session.serializer';
import {
  DEFAULT_GENERATION_CHECK_INTERVAL,
  DEFAULT_LAZY_TOUCH,
  DEFAULT_MAX_SESSION_SIZE,
  DEFAULT_PREFIX,
  DEFAULT_TTL,
  resolveStoreOptions,
} from '../../src/store/session-store.options';
import { USER_INDEX_MIN_TTL } from '../../src/store/user-index';

const KEY = Buffer.alloc(32, 7);

describe('store options (session-store.options.ts)', () => {
  it('applies the documented defaults', () => {
    const o = resolveStoreOptions({ keySecret: 'k' });
    expect(o).toMatchObject({
      prefix: DEFAULT_PREFIX,
      ttl: DEFAULT_TTL,
      maxSessionSize: DEFAULT_MAX_SESSION_SIZE,
      tombstoneTtl: DEFAULT_TTL,
      lazyTouch: DEFAULT_LAZY_TOUCH,
      serializer: jsonSessionSerializer,
      cipher: null,
      userId: undefined,
      generationCheckInterval: DEFAULT_GENERATION_CHECK_INTERVAL,
      userIndexMinTtl: USER_INDEX_MIN_TTL,
    });
    expect([DEFAULT_PREFIX, DEFAULT_TTL, DEFAULT_LAZY_TOUCH]).toEqual(['sess:', 86_400, 0.1]);
    expect(DEFAULT_MAX_SESSION_SIZE).toBe(1024 * 1024 - 1024);
    expect(o.hasher.hashing).toBe(true);
  });

  it('tombstoneTtl follows ttl unless given; hashKeys: false needs no secret', () => {
    expect(resolveStoreOptions({ keySecret: 'k', ttl: 60 }).tombstoneTtl).toBe(60);
    expect(resolveStoreOptions({ keySecret: 'k', ttl: 60, tombstoneTtl: 9 }).tombstoneTtl).toBe(9);
    expect(resolveStoreOptions({ hashKeys: false }).hasher.hashing).toBe(false);
    expect(resolveStoreOptions({ keySecret: 'k', encryptionKeys: [KEY] }).cipher).not.toBeNull();
  });

  const refused: [Partial<SessionStoreOptions>, RegExp][] = [
    [{ lazyTouch: 1.5 }, /lazyTouch must be a fraction from 0/],
    [{ lazyTouch: NaN }, /lazyTouch/],
    [{ keySecret: undefined }, /keySecret must be a non-empty string/],
    [{ encryptionKeys: [] }, /encryptionKeys must be a non-empty array/],
    [{ userId: 'userId' as never }, /userId must be a function/],
    [{ generationCheckInterval: -1 }, /generationCheckInterval must be a number of milliseconds/],
    [{ userIndexMinTtl: 0.5 }, /userIndexMinTtl must be a whole number of seconds/],
    [{ prefix: 5 as never }, /prefix must be a string/],
    [{ ttl: 0 }, /ttl must be a whole number of seconds >= 1, got 0/],
    [{ tombstoneTtl: 1.5 }, /tombstoneTtl must be a whole number of seconds/],
    [{ maxSessionSize: -1 }, /maxSessionSize must be a whole number of bytes/],
    [{ serializer: {} as never }, /serializer must have stringify\(\) and parse\(\)/],
  ];
  it.each(refused)(
    'refuses %p with a SessionCacheConfigError that says what to give',
    (bad, message) => {
      const options = { keySecret: 'k', ...bad };
      expect(() => resolveStoreOptions(options)).toThrow(SessionCacheConfigError);
      expect(() => resolveStoreOptions(options)).toThrow(message);
    },
  );
});
