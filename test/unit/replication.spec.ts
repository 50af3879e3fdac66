import { jest } from '@jest/globals';
import type { SessionData } from 'express-session';
import { SessionCodec } from '../../src/store/session-codec';
import { SessionKeyHasher, SessionKeys } from '../../src/store/session-keys';
import type { LoadedStamp } from '../../src/store/session-state';
import { jsonSessionSerializer } from '../../src/store/session.serializer';
import { compareCopies, nextHeader, nextStamp, Replication } from '../../src/store/replication';
import type { ReadRepairEvent } from '../../src/store/replication';
import { CLOCK_MARGIN, SessionTtl } from '../../src/store/ttl';
import { NOT_INDEXED } from '../../src/store/user-index';
import { encodeValue, MAX_VERSION, NO_INDEX } from '../../src/store/value-header';
import { FakeCache } from '../support/memory-memcached';
import { RecordingLogger } from '../support/store';

const NOW = 1_800_000_000_000;
const NOW_S = NOW / 1000;
const KEY = 'sess:a';
const DAY = 86_400;

const session = (fields: Record<string, unknown> = {}, maxAge = 60_000) =>
  ({
    cookie: { originalMaxAge: maxAge, expires: new Date(NOW + maxAge).toISOString() },
    ...fields,
  }) as unknown as SessionData;

const stamp = (version: number, tag = 0, more: Partial<LoadedStamp> = {}): LoadedStamp => ({
  version,
  tag,
  generation: 0,
  expiresAt: NOW_S + 60,
  indexUntil: 0,
  indexClass: NO_INDEX,
  longest: 61,
  ...more,
});

function setup(nodes = 1, replicas = 1, tombstoneTtl = 3600) {
  const cache = new FakeCache(nodes, replicas);
  const logger = new RecordingLogger();
  const codec = new SessionCodec(jsonSessionSerializer, null, 1024 * 1024, logger);
  const keys = new SessionKeys('sess:', new SessionKeyHasher('k'));
  const ttl = new SessionTtl(3600, 0);
  const repairs: ReadRepairEvent[] = [];
  const replication = new Replication(cache.client, codec, keys, ttl, tombstoneTtl, logger, (e) =>
    repairs.push(e),
  );
  const value = (fields: Record<string, unknown>, s: LoadedStamp, maxAge?: number) =>
    codec.encode(codec.serialize(session(fields, maxAge)), KEY, s);
  return { cache, replication, repairs, value, logger, keys };
}

/** Lets background read-repairs run. */
const settled = async () => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('replication (replication.ts)', () => {
  beforeEach(() => {
    jest.spyOn(Date, 'now').mockReturnValue(NOW);
  });
  afterEach(() => {
    jest.restoreAllMocks();
  });

  describe('versions and their order', () => {
    it('counts versions from the loaded one, never from a clock', () => {
      expect(nextStamp(undefined).version).toBe(1);
      expect(nextStamp({ version: 41 }).version).toBe(42);
      // An old clock-based version (ms since 1970) is counted on from, so it never wins over the
      // saves made from it.
      expect(nextStamp({ version: 1_764_000_000_123 }).version).toBe(1_764_000_000_124);
      const tags = new Set(Array.from({ length: 50 }, () => nextStamp({ version: 1 }).tag));
      expect(tags.size).toBeGreaterThan(40);
    });

    it('orders copies by version, then tag, then bytes: every reader picks the same one', () => {
      const copy = (version: number, tag: number, text: string) => ({
        version,
        tag,
        raw: encodeValue({ version, tag, generation: 0, expiresAt: 0 }, text),
      });
      const a = copy(5, 9, '{"a":1}');
      const b = copy(6, 0, '{"b":1}');
      const c = copy(6, 1, '{"c":1}');
      const d = copy(6, 1, '{"d":1}'); // same version and tag as c, other data
      expect(compareCopies(a, b)).toBeLessThan(0);
      expect(compareCopies(b, c)).toBeLessThan(0);
      expect(Math.sign(compareCopies(c, d))).toBe(-Math.sign(compareCopies(d, c)));
      expect(compareCopies(c, d)).not.toBe(0);
      expect(compareCopies(c, { ...c, raw: Buffer.from(c.raw) })).toBe(0);
      const winner = (copies: (typeof a)[]) =>
        copies.reduce((best, x) => (compareCopies(x, best) > 0 ? x : best));
      expect(winner([a, b, c, d]).raw).toEqual(winner([d, c, b, a]).raw);
    });

    it('stops counting at the largest version the header holds', () => {
      expect(nextStamp({ version: MAX_VERSION }).version).toBe(MAX_VERSION);
    });

    it("the next header: one version on, the session's generation and index, the longest TTL yet", () => {
      const index = { until: NOW_S + 30 * DAY, cls: 12 };
      const header = nextHeader(stamp(7, 3, { longest: 9000 }), 4, 120, 3601, index);
      expect(header).toMatchObject({
        version: 8,
        generation: 4,
        expiresAt: NOW_S + 119,
        indexUntil: NOW_S + 30 * DAY,
        indexClass: 12,
        longest: 9000,
      });
      expect(nextHeader(undefined, 0, 120, 3601, NOT_INDEXED)).toMatchObject({
        version: 1,
        indexClass: NO_INDEX,
        longest: 3601,
      });
    });
  });

  describe('read, one node', () => {
    it('the session and its CAS token; null when there is none or it cannot be decoded', async () => {
      const { cache, replication, value } = setup();
      expect(await replication.read(KEY, 0)).toBeNull();
      await cache.nodes[0].set(KEY, value({ a: 1 }, stamp(1)), 60);
      const read = (await replication.read(KEY, Promise.resolve(0)))!;
      expect(read.found.session).toMatchObject({ a: 1 });
      expect(read.cas).toEqual([(await cache.nodes[0].gets(KEY))!.cas]);
      await cache.nodes[0].set(KEY, 'not a session', 60);
      expect(await replication.read(KEY, 0)).toBeNull();
    });

    it('a session voided by clear(), or a legacy one whose cookie expired, is deleted when read', async () => {
      const { cache, replication, value } = setup();
      await cache.nodes[0].set(KEY, value({ a: 1 }, stamp(1, 0, { generation: 3 })), 60);
      expect(await replication.read(KEY, 4)).toBeNull();
      expect(cache.nodes[0].text(KEY)).toBeNull();
      const legacy = JSON.stringify({ cookie: { expires: new Date(NOW - 1).toISOString() } });
      await cache.nodes[0].set(KEY, legacy, 60);
      expect(await replication.read(KEY, 0)).toBeNull();
      expect(cache.nodes[0].text(KEY)).toBeNull();
    });
  });

  describe('read, replicas: one winner, CAS-guarded read-repair', () => {
    it('the newest copy wins wherever it is; the others are repaired to it', async () => {
      const { cache, replication, repairs, value } = setup(3, 3);
      const newer = value({ v: 'newer' }, stamp(5, 1));
      await cache.nodes[0].set(KEY, value({ v: 'older' }, stamp(4, 9)), 60);
      await cache.nodes[1].set(KEY, newer, 60);
      const read = (await replication.read(KEY, 0))!;
      expect(read.found.session).toMatchObject({ v: 'newer' });
      // Only the replica that holds the winner has a CAS token for it.
      expect(read.cas.map((c) => c !== null)).toEqual([false, true, false]);
      await settled();
      for (const node of cache.nodes) expect(node.items.get(KEY)?.value).toEqual(newer);
      expect(repairs).toEqual([
        { server: 'fake-2', reason: 'missing' },
        { server: 'fake-0', reason: 'stale' },
      ]);
      // A repaired copy lives as a touch would make it: the cookie's maxAge, with slack.
      expect(cache.nodes[2].ttlOf(KEY)).toBe(60 + CLOCK_MARGIN);
    });

    it('a repair never lands on a write made since the read', async () => {
      const { cache, replication, repairs, value } = setup(2, 2);
      await cache.nodes[0].set(KEY, value({ v: 'old' }, stamp(1)), 60);
      await cache.nodes[1].set(KEY, value({ v: 'read' }, stamp(2)), 60);
      const save = value({ v: 'saved meanwhile' }, stamp(3));
      const node = cache.nodes[0];
      const storeCas = node.storeCas.bind(node);
      node.storeCas = async (...args) => {
        await node.set(KEY, save, 60); // a parallel save lands first
        return storeCas(...args);
      };
      await replication.read(KEY, 0);
      await settled();
      expect(node.items.get(KEY)?.value).toEqual(save);
      expect(repairs).toEqual([]);
    });

    it('never gives a repaired copy a TTL past its user index', async () => {
      const { cache, replication, value } = setup(2, 2);
      const indexed = stamp(1, 0, { indexClass: 12, indexUntil: NOW_S + 30 });
      await cache.nodes[0].set(KEY, value({ a: 1 }, indexed), 60);
      await replication.read(KEY, 0);
      await settled();
      expect(cache.nodes[1].ttlOf(KEY)).toBe(29);
    });

    it('no resurrection: a copy on a node that missed the logout is deleted, not served or spread', async () => {
      const { cache, replication, repairs, value, keys } = setup(2, 2);
      await cache.nodes[0].set(KEY, value({ a: 1 }, stamp(1)), 60);
      await cache.nodes[1].set(KEY, value({ a: 1 }, stamp(1)), 60);
      cache.nodes[0].down = true;
      await replication.destroy(KEY);
      expect(cache.nodes[1].text(keys.grave(KEY))).toBe('1');
      cache.nodes[0].down = false; // back, with its copy
      expect(await replication.read(KEY, 0)).toBeNull();
      await settled();
      expect(cache.nodes[0].text(KEY)).toBeNull();
      expect(repairs).toEqual([{ server: 'fake-0', reason: 'destroyed' }]);
      expect(cache.nodes[1].text(KEY)).toBeNull();
    });
  });

  describe('writes', () => {
    it('a new session with add (over an existing id: replace); a loaded one with replace only', async () => {
      const { cache, replication, value } = setup(2, 2);
      const v1 = value({ a: 1 }, stamp(1));
      const cas = await replication.add(KEY, v1, 61);
      expect(cas.every((c) => c !== null)).toBe(true);
      expect(cache.log.filter((c) => c.startsWith('add'))).toHaveLength(2);
      expect(await replication.add(KEY, value({ a: 2 }, stamp(1)), 61)).toHaveLength(2);
      expect(await replication.replace(KEY, value({ a: 3 }, stamp(2)), 61)).toHaveLength(2);
      for (const node of cache.nodes) node.items.clear(); // a logout meanwhile
      expect(await replication.replace(KEY, value({ a: 4 }, stamp(3)), 61)).toBeNull();
      for (const node of cache.nodes) expect(node.text(KEY)).toBeNull();
    });

    it('a rewrite replaces exactly the copies that were read (CAS)', async () => {
      const { cache, replication, value } = setup(2, 2);
      const read = await replication.add(KEY, value({ a: 1 }, stamp(1)), 61);
      // A parallel save on node 1 since: only node 0 is rewritten.
      await cache.nodes[1].set(KEY, value({ a: 'parallel' }, stamp(2)), 61);
      const written = (await replication.replaceRead(KEY, value({ a: 2 }, stamp(2)), 61, read))!;
      expect(written.map((c) => c !== null)).toEqual([true, false]);
      expect(cache.nodes[1].text(KEY)).toContain('parallel');
      // Every copy changed since: the rewrite is dropped.
      expect(await replication.replaceRead(KEY, value({ a: 3 }, stamp(3)), 61, read)).toBeNull();
    });
  });

  describe('destroy and tombstones', () => {
    it('one replica: a plain delete, no tombstone', async () => {
      const { cache, replication, value, keys } = setup(1, 1);
      await cache.nodes[0].set(KEY, value({ a: 1 }, stamp(1)), 60);
      await replication.destroy(KEY);
      expect(cache.nodes[0].text(KEY)).toBeNull();
      expect(cache.nodes[0].text(keys.grave(KEY))).toBeNull();
    });

    it('replicas: a tombstone on each that lives tombstoneTtl, with slack and margin', async () => {
      const { cache, replication, value, keys } = setup(2, 2, 600);
      await cache.nodes[0].set(KEY, value({ a: 1 }, stamp(1)), 60);
      await replication.destroy(KEY);
      for (const node of cache.nodes) {
        expect(node.text(KEY)).toBeNull();
        expect(node.ttlOf(keys.grave(KEY))).toBe(600 + 2 * CLOCK_MARGIN);
      }
    });

    it('a tombstone outlives the longest TTL the session was ever given', async () => {
      const { cache, replication, value, keys } = setup(2, 2, 600);
      const remembered = stamp(1, 0, { longest: 60 * DAY, expiresAt: NOW_S + 59 * DAY });
      await cache.nodes[0].set(KEY, value({ a: 1 }, remembered), 60 * DAY);
      await replication.destroy(KEY);
      for (const node of cache.nodes) {
        expect(node.ttlOf(keys.grave(KEY))).toBe(60 * DAY + CLOCK_MARGIN);
      }
    });

    it('destroyIf: only when the newest copy is wanted (null: none could be decoded)', async () => {
      const { cache, replication, value, keys } = setup(2, 2);
      await cache.nodes[0].set(KEY, value({ user: 'a' }, stamp(1)), 60);
      await cache.nodes[1].set(KEY, value({ user: 'b' }, stamp(2)), 60);
      const users: unknown[] = [];
      const ofA = (s: { session: SessionData } | null) => {
        users.push(s && (s.session as { user?: string }).user);
        return s !== null && (s.session as { user?: string }).user === 'a';
      };
      expect(await replication.destroyIf(KEY, ofA)).toBe(false);
      expect(users).toEqual(['b']);
      expect(cache.nodes[1].text(KEY)).not.toBeNull();
      await cache.nodes[1].set(KEY, 'garbage', 60);
      await cache.nodes[0].set(KEY, 'garbage', 60);
      expect(await replication.destroyIf(KEY, (s) => s === null)).toBe(true);
      for (const node of cache.nodes) {
        expect(node.text(KEY)).toBeNull();
        expect(node.text(keys.grave(KEY))).toBe('1');
      }
      expect(await replication.destroyIf(KEY, () => true)).toBe(false); // nothing left
    });
  });
});
