import * as fc from 'fast-check';
import { SessionCacheConfigError } from '../../src';
import { SessionKeyHasher, SessionKeys } from '../../src/store/session-keys';

const hashed = () => new SessionKeys('sess:', new SessionKeyHasher('key secret'));
const raw = () => new SessionKeys('sess:', new SessionKeyHasher(null));

describe('memcached keys (session-keys.ts)', () => {
  it('hides session ids: the prefix and an HMAC (43 base64url characters)', () => {
    const key = hashed().session('my-session-id')!;
    expect(key).toMatch(/^sess:[A-Za-z0-9_-]{43}$/);
    expect(key).not.toContain('my-session-id');
    expect(hashed().session('my-session-id')).toBe(key);
    expect(hashed().session('other-id')).not.toBe(key);
    const otherSecret = new SessionKeys('sess:', new SessionKeyHasher('another secret'));
    expect(otherSecret.session('my-session-id')).not.toBe(key);
  });

  it('uses the raw id with `hashKeys: false`', () => {
    expect(raw().session('abc')).toBe('sess:abc');
  });

  it('internal keys never equal a session key: raw ids of their forms are refused', () => {
    const keys = raw();
    for (const id of ['generation', 'user:alice', 'user:', 'abc!'])
      expect(keys.session(id)).toBeNull();
    expect(keys.generation).toBe('sess:generation');
    expect(keys.grave('sess:abc')).toBe('sess:abc!');
    expect(keys.user('alice')).toMatch(/^sess:user:[A-Za-z0-9_-]{43}$/);
  });

  it('a hashed id never has the form of an internal key (property)', () => {
    const keys = hashed();
    fc.assert(
      fc.property(fc.string(), (sid) => {
        const key = keys.session(sid)!;
        expect(key).not.toBe(keys.generation);
        expect(key.startsWith('sess:user:')).toBe(false);
        expect(key.endsWith('!')).toBe(false);
      }),
    );
    // ...and the ids that a raw store refuses are fine once hashed.
    expect(keys.session('generation')).not.toBeNull();
    expect(keys.session('x!')).not.toBeNull();
  });

  it('user index keys are always hashed (user ids are not key-safe), per secret', () => {
    expect(raw().user('alice bob\n')).toMatch(/^sess:user:[A-Za-z0-9_-]{43}$/);
    expect(hashed().user('alice')).not.toBe(raw().user('alice'));
    expect(hashed().user('alice')).not.toBe(hashed().user('bob'));
    // Not the key of a session whose id is the user id.
    expect(hashed().user('alice').slice('sess:user:'.length)).not.toBe(
      hashed().session('alice')!.slice('sess:'.length),
    );
  });

  it('needs a secret to hash', () => {
    for (const secret of ['', Buffer.alloc(0), undefined as unknown as string]) {
      expect(() => new SessionKeyHasher(secret)).toThrow(SessionCacheConfigError);
    }
  });
});
