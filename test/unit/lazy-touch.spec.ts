import { jest } from '@jest/globals';
import type { SessionData } from 'express-session';
import { LazyTouch } from '../../src/store/lazy-touch';
import type { LoadedStamp, SessionState } from '../../src/store/session-state';
import { SessionTtl } from '../../src/store/ttl';
import { encodeValue, NO_INDEX } from '../../src/store/value-header';
import { controlledClock } from '../support/clock';
import { FakeCache } from '../support/memory-memcached';

const NOW = 1_800_000_000_000;
const NOW_S = NOW / 1000;
const KEY = 'sess:a';
const MAX_AGE = 100_000; // 100 s

/** A session as a request leaves it: its cookie expires `maxAge` from now (rolling). */
const session = (maxAge = MAX_AGE, fields: Record<string, unknown> = {}) =>
  ({
    cookie: { originalMaxAge: maxAge, expires: new Date(Date.now() + maxAge).toISOString() },
    ...fields,
  }) as unknown as SessionData;

const stamp = (expiresAt: number, more: Partial<LoadedStamp> = {}): LoadedStamp => ({
  version: 3,
  tag: 7,
  generation: 0,
  expiresAt,
  indexUntil: 0,
  indexClass: NO_INDEX,
  longest: 0,
  ...more,
});

const state = (s: LoadedStamp, life = MAX_AGE, user?: string): SessionState => ({
  key: KEY,
  stamp: s,
  life,
  user,
  cas: [null],
});

function setup(lazyTouch = 0.1, replicas = 1) {
  const cache = new FakeCache(replicas, replicas);
  const ttl = new SessionTtl(3600, lazyTouch);
  const users = {
    userOf: jest.fn((s: SessionData) => (s as { userId?: string }).userId),
    ensure: jest.fn(async () => ({ until: NOW_S + 30 * 86_400, cls: 8 })),
  };
  const writer = { save: jest.fn(async () => undefined), rewrite: jest.fn(async () => undefined) };
  const touches = new LazyTouch(cache.client, ttl, users, writer);
  return { cache, ttl, users, writer, touches };
}

describe('lazy touch (lazy-touch.ts)', () => {
  const clock = controlledClock(NOW);

  describe('when a TOUCH is due', () => {
    it('not while memcached is known to keep the session until its cookie expires', () => {
      const { touches } = setup();
      expect(touches.due(KEY, session(), state(stamp(NOW_S + 100)), 111)).toBe('none');
      expect(touches.due(KEY, session(), state(stamp(NOW_S + 110)), 111)).toBe('none');
    });

    it('a TOUCH once the cookie would outlive what memcached is known to keep', () => {
      const { touches } = setup();
      expect(touches.due(KEY, session(), state(stamp(NOW_S + 99)), 111)).toBe('touch');
      expect(touches.due(KEY, session(), state(stamp(0)), 111)).toBe('touch');
    });

    it('a new write when the cookie lifetime changed and memcached would keep it too short', () => {
      const { touches } = setup();
      const longer = session(200_000);
      expect(touches.due(KEY, longer, state(stamp(NOW_S + 110)), 221)).toBe('rewrite');
    });

    it('a new write when the cookie was shortened and memcached would keep it much longer', () => {
      const { touches } = setup();
      const shorter = session(10_000);
      // Kept 110 s, the new cookie needs 10 s (12 with slack): a TOUCH cannot shorten it.
      expect(touches.due(KEY, shorter, state(stamp(NOW_S + 110)), 12)).toBe('rewrite');
      // Within 2 s of what the new cookie gets: nothing to do.
      expect(touches.due(KEY, shorter, state(stamp(NOW_S + 13)), 12)).toBe('none');
    });

    it('remembers its last TOUCH of a version, not of another one', async () => {
      const { cache, touches } = setup();
      await cache.nodes[0].set(KEY, 'x', 60);
      const loaded = stamp(NOW_S + 50);
      expect(touches.due(KEY, session(), state(loaded), 111)).toBe('touch');
      await touches.touch(KEY, session(), state(loaded), 111);
      expect(touches.due(KEY, session(), state(loaded), 111)).toBe('none');
      expect(touches.due(KEY, session(), state({ ...loaded, tag: 8 }), 111)).toBe('touch');
      expect(touches.due(KEY, session(), state({ ...loaded, version: 4 }), 111)).toBe('touch');
      // That TOUCH gave 10 s of slack: 10 s on, none is due yet; 11 s on, the cookie (rolling)
      // needs more than it gave.
      clock.now += 10_000;
      expect(touches.due(KEY, session(), state(loaded), 111)).toBe('none');
      clock.now += 1000;
      expect(touches.due(KEY, session(), state(loaded), 111)).toBe('touch');
    });

    it('lazyTouch 0: a TOUCH on every request', () => {
      const { touches, ttl } = setup(0);
      const loaded = stamp(NOW_S + 100);
      expect(ttl.ttlOf(session())).toBe(101);
      clock.now += 1000;
      expect(touches.due(KEY, session(), state(loaded), 101)).toBe('touch');
    });
  });

  describe('what a touch sends', () => {
    it('a TOUCH (get-and-touch) on every replica, the value not re-sent', async () => {
      const { cache, touches } = setup(0.1, 2);
      for (const node of cache.nodes) await node.set(KEY, encodeValue(stamp(NOW_S + 50), '{}'), 60);
      await touches.touch(KEY, session(), state(stamp(NOW_S + 50)), 111);
      expect(cache.log.filter((c) => !c.startsWith('set'))).toEqual([
        `gat ${KEY} 111`,
        `gat ${KEY} 111`,
      ]);
    });

    it('nothing when none is due', async () => {
      const { cache, touches, writer, users } = setup();
      await touches.touch(KEY, session(), state(stamp(NOW_S + 105), MAX_AGE, 'u'), 111);
      expect(cache.log).toEqual([]);
      expect(users.ensure).not.toHaveBeenCalled();
      expect(writer.save).not.toHaveBeenCalled();
    });

    it("refreshes the user's index first, and records where it stands", async () => {
      const { cache, touches, users } = setup();
      await cache.nodes[0].set(KEY, encodeValue(stamp(NOW_S + 50), '{}'), 60);
      const s = state(stamp(NOW_S + 50, { indexClass: 8, indexUntil: NOW_S + 1000 }), MAX_AGE, 'u');
      await touches.touch(KEY, session(), s, 111);
      expect(users.ensure).toHaveBeenCalledWith('u', KEY, 111, s);
      expect(s.stamp).toMatchObject({ indexClass: 8, indexUntil: NOW_S + 30 * 86_400 });
    });

    it('a TOUCH that lands on a newer save restores the later expiry that save promised', async () => {
      const { cache, touches } = setup();
      const newer = encodeValue({ ...stamp(NOW_S + 5000), version: 4 }, '{}');
      await cache.nodes[0].set(KEY, newer, 5000);
      await touches.touch(KEY, session(), state(stamp(NOW_S + 50)), 111);
      expect(cache.nodes[0].log.slice(-2)).toEqual([`gat ${KEY} 111`, `touch ${KEY} 5001`]);
      expect(cache.nodes[0].ttlOf(KEY)).toBe(5001);
    });

    it('hands a changed lifetime to the writer (a CAS-guarded new version)', async () => {
      const { cache, touches, writer } = setup();
      const s = state(stamp(NOW_S + 110));
      await touches.touch(KEY, session(10_000), s, 12);
      expect(writer.rewrite).toHaveBeenCalledWith(KEY, session(10_000), s, 12);
      expect(cache.log).toEqual([]);
    });

    it('writes a session read under an older encryption key under the first one', async () => {
      const { touches, writer } = setup();
      const s = state(stamp(NOW_S + 110, { reencrypt: true }));
      await touches.touch(KEY, session(), s, 111);
      expect(writer.save).toHaveBeenCalledWith(KEY, session(), s, 111);
    });

    it('a session object the store did not load: its user indexed, then a plain TOUCH', async () => {
      const { cache, touches, users } = setup();
      await cache.nodes[0].set(KEY, 'x', 60);
      await touches.touch(KEY, session(MAX_AGE, { userId: 'u' }), undefined, 111);
      expect(users.ensure).toHaveBeenCalledWith('u', KEY, 111, undefined);
      expect(cache.nodes[0].log.slice(-1)).toEqual([`touch ${KEY} 111`]);
    });
  });
});
