import * as fc from 'fast-check';
import type { SessionData } from 'express-session';
import { SessionKeyHasher, SessionKeys } from '../../src/store/session-keys';
import type { SessionState } from '../../src/store/session-state';
import {
  indexClassOf,
  indexTtl,
  MAX_INDEX_CLASS,
  NOT_INDEXED,
  ttlWithinIndex,
  USER_INDEX_MIN_TTL,
  UserIndex,
} from '../../src/store/user-index';
import { NO_INDEX } from '../../src/store/value-header';
import { controlledClock } from '../support/clock';
import { FakeCache } from '../support/memory-memcached';

const DAY = 86_400;
const NOW = 1_800_000_000_000;
const NOW_S = NOW / 1000;
const keys = new SessionKeys('sess:', new SessionKeyHasher('k'));

function index(cache: FakeCache, minTtl = USER_INDEX_MIN_TTL) {
  return new UserIndex(cache.client, keys, minTtl, (s) => (s as { userId?: unknown }).userId);
}

/** What the store knows of a session of `user` listed in class `cls` until `until`. */
const listed = (user: string, cls: number, until: number): SessionState => ({
  key: 'sess:a',
  user,
  life: null,
  cas: [null],
  stamp: {
    version: 1,
    tag: 0,
    generation: 0,
    expiresAt: 0,
    indexUntil: until,
    indexClass: cls,
    longest: 0,
  },
});

describe('logout everywhere: user indexes (user-index.ts)', () => {
  controlledClock(NOW);

  describe('bands and lifetimes', () => {
    it('lists a session in the smallest class k with 2^k >= its TTL', () => {
      expect(indexClassOf(1)).toBe(0);
      expect(indexClassOf(2)).toBe(1);
      expect(indexClassOf(3)).toBe(2);
      expect(indexClassOf(3601)).toBe(12);
      expect(indexClassOf(2 ** 20)).toBe(20);
      expect(indexClassOf(2 ** 20 + 1)).toBe(21);
      expect(indexClassOf(2 ** 40)).toBe(MAX_INDEX_CLASS);
    });

    it('a class lives max(minimum, 2^(k+1)) s: the 30-day minimum up to class 20', () => {
      expect(USER_INDEX_MIN_TTL).toBe(30 * DAY);
      expect(indexTtl(0, USER_INDEX_MIN_TTL)).toBe(30 * DAY);
      expect(indexTtl(20, USER_INDEX_MIN_TTL)).toBe(30 * DAY);
      expect(indexTtl(21, USER_INDEX_MIN_TTL)).toBe(2 ** 22);
      expect(indexTtl(3, 10)).toBe(16);
    });

    it('with half its lifetime left, an index still outlives every session of its class (property)', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 2 ** 32 }),
          fc.integer({ min: 1, max: 400 * DAY }),
          (ttl, minTtl) => {
            expect(indexTtl(indexClassOf(ttl), minTtl) / 2).toBeGreaterThanOrEqual(ttl);
          },
        ),
      );
    });

    it('the classes that live the minimum share one key; longer ones have their own', () => {
      const users = index(new FakeCache());
      expect(users.keyOf('alice', 0)).toBe(keys.user('alice'));
      expect(users.keyOf('alice', 20)).toBe(keys.user('alice'));
      expect(users.keyOf('alice', 21)).toBe(`${keys.user('alice')}:21`);
      expect(users.keysOf('alice')).toEqual([
        keys.user('alice'),
        ...Array.from({ length: 12 }, (_, i) => `${keys.user('alice')}:${21 + i}`),
      ]);
    });

    it('never gives a listed session a TTL past its index', () => {
      const stamp = { indexClass: 12, indexUntil: NOW_S + 100 };
      expect(ttlWithinIndex(3600, stamp)).toBe(99);
      expect(ttlWithinIndex(50, stamp)).toBe(50);
      expect(ttlWithinIndex(3600, { indexClass: NO_INDEX, indexUntil: 0 })).toBe(3600);
    });
  });

  it("reads a session's user id as a string; none without the option", () => {
    const users = index(new FakeCache());
    const s = (userId: unknown) => ({ cookie: {}, userId }) as unknown as SessionData;
    expect(users.userOf(s(42))).toBe('42');
    expect(users.userOf(s('alice'))).toBe('alice');
    for (const none of [undefined, null, '']) expect(users.userOf(s(none))).toBeUndefined();
    expect(new UserIndex(new FakeCache().client, keys, 10).userOf(s('alice'))).toBeUndefined();
  });

  describe('ensure: the index lists the session and outlives it', () => {
    it('a login writes the entry with the class lifetime and says until when it lives', async () => {
      const cache = new FakeCache();
      const users = index(cache);
      const place = await users.ensure('alice', 'sess:a', 3601, undefined);
      expect(place).toEqual({ cls: 12, until: NOW_S + 30 * DAY - 1 });
      const node = cache.nodes[0];
      expect(node.text(keys.user('alice'))).toBe('a ');
      expect(node.ttlOf(keys.user('alice'))).toBe(30 * DAY);
      // A second session is appended, and the index gets its full lifetime again.
      await users.ensure('alice', 'sess:b', 3601, undefined);
      expect(node.text(keys.user('alice'))).toBe('a b ');
      expect(node.log.slice(-2)).toEqual([
        `append ${keys.user('alice')}`,
        `touch ${keys.user('alice')} ${30 * DAY}`,
      ]);
    });

    it('sends nothing while the index has half its lifetime left', async () => {
      const cache = new FakeCache();
      const users = index(cache);
      const state = listed('alice', 12, NOW_S + 15 * DAY + 2);
      expect(await users.ensure('alice', 'sess:a', 3601, state)).toEqual({
        cls: 12,
        until: NOW_S + 15 * DAY + 2,
      });
      expect(cache.log).toEqual([]);
    });

    it('refreshes it (a TOUCH) once less than half is left; a replica that lost it gets it back', async () => {
      const cache = new FakeCache(2, 2);
      const users = index(cache);
      await cache.nodes[0].set(keys.user('alice'), 'a ', 10 * DAY);
      const state = listed('alice', 12, NOW_S + 10 * DAY);
      expect(await users.ensure('alice', 'sess:a', 3601, state)).toEqual({
        cls: 12,
        until: NOW_S + 30 * DAY - 1,
      });
      expect(cache.nodes[0].ttlOf(keys.user('alice'))).toBe(30 * DAY);
      expect(cache.nodes[1].text(keys.user('alice'))).toBe('a ');
      expect(cache.nodes[1].ttlOf(keys.user('alice'))).toBe(30 * DAY);
      // This process remembers the refresh: the next request sends nothing.
      const sent = cache.log.length;
      await users.ensure('alice', 'sess:a', 3601, state);
      expect(cache.log).toHaveLength(sent);
    });

    it('a longer session moves to a longer class; a new user is a login', async () => {
      const cache = new FakeCache();
      const users = index(cache);
      const state = listed('alice', 12, NOW_S + 29 * DAY);
      expect((await users.ensure('alice', 'sess:a', 60 * DAY, state)).cls).toBe(23);
      expect(cache.nodes[0].text(`${keys.user('alice')}:23`)).toBe('a ');
      expect(cache.nodes[0].ttlOf(`${keys.user('alice')}:23`)).toBe(2 ** 24);
      expect((await users.ensure('bob', 'sess:a', 3601, state)).cls).toBe(12);
      expect(cache.nodes[0].text(keys.user('bob'))).toBe('a ');
    });

    it("a full index keeps only its live sessions' entries", async () => {
      const cache = new FakeCache();
      const users = index(cache);
      const node = cache.nodes[0];
      await node.set(keys.user('alice'), 'gone live ', 30 * DAY);
      await node.set('sess:live', 'x', 60);
      node.append = async () => false; // memcached refuses: the item is at its size limit
      await users.ensure('alice', 'sess:new', 3601, undefined);
      expect(node.text(keys.user('alice'))).toBe('live new ');
    });

    it('rejects when no replica of the index answers (the session must not be extended)', async () => {
      const cache = new FakeCache();
      cache.nodes[0].down = true;
      await expect(index(cache).ensure('alice', 'sess:a', 3601, undefined)).rejects.toThrow(/down/);
    });

    it('nothing is listed without a user', () => {
      expect(NOT_INDEXED).toEqual({ until: 0, cls: NO_INDEX });
    });
  });

  describe('destroyAll', () => {
    it('hands every listed session to `destroy` once, counts what it destroyed, deletes the indexes', async () => {
      const cache = new FakeCache();
      const users = index(cache);
      await users.ensure('alice', 'sess:a', 3601, undefined);
      await users.ensure('alice', 'sess:b', 3601, undefined);
      await users.ensure('alice', 'sess:a', 3601, undefined);
      await users.ensure('alice', 'sess:long', 60 * DAY, undefined);
      const asked: string[] = [];
      const destroyed = await users.destroyAll('alice', async (key) => {
        asked.push(key);
        return key !== 'sess:b'; // sess:b changed user meanwhile: left alone
      });
      expect(asked.sort()).toEqual(['sess:a', 'sess:b', 'sess:long']);
      expect(destroyed).toBe(2);
      for (const key of users.keysOf('alice')) expect(cache.nodes[0].text(key)).toBeNull();
    });

    it('reads again an index that a login added to meanwhile (CAS), and destroys that session too', async () => {
      const cache = new FakeCache();
      const users = index(cache);
      await users.ensure('alice', 'sess:a', 3601, undefined);
      const asked: string[] = [];
      const destroyed = await users.destroyAll('alice', async (key) => {
        asked.push(key);
        if (key === 'sess:a') await users.ensure('alice', 'sess:c', 3601, undefined);
        return true;
      });
      expect(asked).toEqual(['sess:a', 'sess:c']);
      expect(destroyed).toBe(2);
      expect(cache.nodes[0].text(keys.user('alice'))).toBeNull();
    });
  });
});
