// Issue 13, "Guarantees that hold under every request pattern": one test per fault, written as the
// scenario that exposed it, against real memcached processes. Durations of days are scaled down
// through the store's `userIndexMinTtl` test seam; where a build without that seam would keep its
// 30-day index, the test ages the index in memcached to the same remaining life (a raw TOUCH that
// is a no-op for a store honouring the seam), so the scenario means the same thing on both.
import { jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import type { SessionData } from 'express-session';
import { createSessionStore, SessionCache, SessionStore } from '../../src';
import type { MemcachedNode, SessionStoreOptions } from '../../src';
import { MemcachedProcess, rawCommand, startMemcachedCluster } from '../support/memcached.mjs';
import { HoldingProxy } from '../support/proxy';
import {
  loadSession,
  newSession,
  RecordingLogger,
  storedPayload,
  storeSet,
  storeTouch,
} from '../support/store';
import type { TestSession } from '../support/store';
import { eventually } from '../support/wait';

jest.setTimeout(60_000);

const DAY = 86_400;
const sid = () => randomBytes(18).toString('base64url');
const userId = (session: SessionData) => (session as { user?: string }).user;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every key a user index of `user` can have (the minimum-lifetime one, and one per class). */
const indexKeys = (store: SessionStore, user: string) => [
  store.userKey(user),
  ...Array.from({ length: 33 }, (_, k) => `${store.userKey(user)}:${k}`),
];

/** A request as express-session makes it: load, reset the rolling cookie, then `change` (may
 * modify the session or its cookie), then save if modified, else touch. */
async function request(
  store: SessionStore,
  id: string,
  change: (session: TestSession) => boolean | void = () => false,
): Promise<TestSession | null> {
  const session = await loadSession(store, id);
  if (!session) return null;
  session.touch();
  if (change(session)) await storeSet(store, id, session);
  else await storeTouch(store, id, session);
  return session;
}

describe('guarantees (issue 13), one memcached', () => {
  let memcached: MemcachedProcess;
  let cache: SessionCache;
  let logger: RecordingLogger;
  const store = (options: SessionStoreOptions) =>
    new SessionStore(cache, { keySecret: 'k', ...options }, logger);

  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
    cache = SessionCache.fromUrl(memcached.url);
  });
  beforeEach(() => {
    logger = new RecordingLogger();
  });
  afterAll(async () => {
    await cache.close();
    await memcached.kill();
  });

  /** Gives every index of `user` at most `seconds` to live (see the top of this file). */
  async function ageIndexes(s: SessionStore, user: string, seconds: number): Promise<void> {
    for (const key of indexKeys(s, user)) {
      const ttl = await memcached.ttl(key);
      if (ttl !== null && (ttl < 0 || ttl > seconds)) {
        await rawCommand(memcached.port, `touch ${key} ${seconds}`);
      }
    }
  }

  describe('1. logout everywhere misses live sessions when the user index expires first', () => {
    it('1. an app that saves on every request: 200 sequential saves with lazy touch, then logout everywhere', async () => {
      // Index minimum 3 s instead of 30 days; the session lives 0.9 s after each request.
      const s = store({ prefix: 'g1a:', userId, userIndexMinTtl: 3 } as SessionStoreOptions);
      const id = sid();
      await s.setSession(id, newSession(s, id, { user: 'alice', visits: 0 }, { maxAge: 900 }));
      await ageIndexes(s, 'alice', 4);
      const started = Date.now();
      for (let i = 1; i <= 200; i++) {
        // Each request modifies the session and saves it explicitly; express-session then
        // touches it (lazy: skipped, the save is fresh).
        const session = (await loadSession(s, id))!;
        expect(session).not.toBeNull();
        session.touch();
        session.visits = i;
        await storeSet(s, id, session);
        await storeTouch(s, id, session);
        await pause(Math.max(0, started + i * 30 - Date.now()));
      }
      expect(Date.now() - started).toBeGreaterThan(5000); // longer than the index was given
      expect(await s.destroyUserSessions('alice')).toBe(1);
      expect(await s.getSession(id)).toBeNull();
    });

    it('1. logout everywhere with a remember-me session longer than the index minimum (60 days)', async () => {
      const s = store({ prefix: 'g1b:', userId });
      const id = sid();
      await s.setSession(id, newSession(s, id, { user: 'carol' }, { maxAge: 60 * DAY * 1000 }));
      for (let i = 0; i < 20; i++) {
        await request(s, id, (session) => {
          session.visits = i;
          return i % 2 === 0;
        });
      }
      const sessionTtl = (await memcached.ttl(s.key(id)))!;
      expect(sessionTtl).toBeGreaterThan(60 * DAY);
      // The index that lists the session lives at least as long as the session.
      const entry = s.key(id).slice('g1b:'.length);
      let indexTtl = -1;
      for (const key of indexKeys(s, 'carol')) {
        const raw = await memcached.getRaw(key);
        if (raw?.toString('latin1').includes(entry)) {
          indexTtl = Math.max(indexTtl, (await memcached.ttl(key))!);
        }
      }
      expect(indexTtl).toBeGreaterThanOrEqual(sessionTtl);
      expect(await s.destroyUserSessions('carol')).toBe(1);
      expect(await s.getSession(id)).toBeNull();
    });
  });

  it('3. destroyUserSessions(A) leaves alone a session id that changed to user B', async () => {
    const s = store({ prefix: 'g3:', userId });
    const id = sid();
    await s.setSession(id, newSession(s, id, { user: 'alice' })); // alice logs in
    await request(s, id, (session) => {
      delete session.user; // alice logs out by deleting her user id
      return true;
    });
    await request(s, id, (session) => {
      session.user = 'bob'; // bob logs in on the same id, without regenerate()
      return true;
    });
    const other = sid();
    await s.setSession(other, newSession(s, other, { user: 'alice' }));

    expect(await s.destroyUserSessions('alice')).toBe(1);
    expect(await s.getSession(id)).toMatchObject({ user: 'bob' });
    expect(await s.getSession(other)).toBeNull();
    expect(await s.destroyUserSessions('bob')).toBe(1);
    expect(await s.getSession(id)).toBeNull();
  });

  it('4. a shortened TTL is not trusted later: a restored long maxAge is applied', async () => {
    const s = store({ prefix: 'g4:' }); // lazyTouch 0.1
    const id = sid();
    await s.setSession(id, newSession(s, id, { user: 'u' }, { maxAge: 60_000 }));
    // A request shortens the cookie (e.g. "log me out soon"): memcached keeps it about 3 s.
    await request(s, id, (session) => {
      session.cookie.maxAge = 1000;
    });
    expect(await memcached.ttl(s.key(id))).toBeLessThanOrEqual(3);
    // The next request restores the long maxAge (a rolling remember-me cookie).
    await request(s, id, (session) => {
      session.cookie.maxAge = 60_000;
    });
    expect(await memcached.ttl(s.key(id))).toBeGreaterThan(60);
    await pause(3500); // past the short TTL
    expect(await s.getSession(id)).toMatchObject({ user: 'u' });
  });

  it('4. a TOUCH that lands on a newer save never shortens what that save promised', async () => {
    const s = store({ prefix: 'g4b:', lazyTouch: 0 });
    const id = sid();
    await s.setSession(id, newSession(s, id, { user: 'u' }, { maxAge: 60_000 }));
    await pause(1100); // a while later, two requests at once:
    const reader = (await loadSession(s, id))!; // an unmodified one, its TOUCH due
    await request(s, id, (session) => {
      session.cookie.maxAge = 30 * DAY * 1000; // the other ticks "remember me" and saves
      session.remember = true;
      return true;
    });
    reader.touch();
    await storeTouch(s, id, reader); // lands after that save
    expect(await memcached.ttl(s.key(id))).toBeGreaterThan(30 * DAY - 10);
    // ...so a later request that trusts the saved header is right to skip its TOUCH.
    expect(await request(s, id)).toMatchObject({ remember: true });
    expect(await memcached.ttl(s.key(id))).toBeGreaterThan(30 * DAY - 10);
  });

  it('5. a cookie change after an explicit save() is applied (remember-me)', async () => {
    const s = store({ prefix: 'g5:' });
    const id = sid();
    await s.setSession(id, newSession(s, id, { user: 'u' }, { maxAge: 1000 }));
    // One request: modifies and saves explicitly, then ticks "remember me"; express-session then
    // touches the session at the end of the request.
    const session = (await loadSession(s, id))!;
    session.touch();
    session.visits = 1;
    await storeSet(s, id, session);
    session.cookie.maxAge = 60_000;
    await storeTouch(s, id, session);
    expect(await memcached.ttl(s.key(id))).toBeGreaterThan(60);
    await pause(3500); // the user is idle longer than the short cookie
    expect(await s.getSession(id)).toMatchObject({ user: 'u', visits: 1 });
    // It is stored as the browser has it: the next request goes on with the long cookie.
    expect((await loadSession(s, id))!.cookie.originalMaxAge).toBe(60_000);
  });

  it('7. clear() voids exactly the sessions created before it returned, on every process', async () => {
    const here = store({ prefix: 'g7:', generationCheckInterval: 1000 });
    const there = store({ prefix: 'g7:', generationCheckInterval: 1000 });
    const before = sid();
    await there.setSession(before, newSession(there, before, { user: 'old' }));
    expect(await here.getSession(before)).toMatchObject({ user: 'old' });
    expect(await there.getSession(before)).toMatchObject({ user: 'old' });

    await here.clearSessions();
    // Another process creates a session right after the clear, its cached generation still old.
    const after = sid();
    await there.setSession(after, newSession(there, after, { user: 'new' }));

    expect(await here.getSession(after)).toMatchObject({ user: 'new' });
    expect(await here.getSession(before)).toBeNull();
    await eventually(async () => expect(await there.getSession(before)).toBeNull());
    expect(await there.getSession(after)).toMatchObject({ user: 'new' });
    expect(await here.getSession(after)).toMatchObject({ user: 'new' });
  });

  describe('8. internal keys never equal a session key', () => {
    it.each(['generation', 'user:abc', 'abc!'])(
      'with hashKeys: false, refuses to store session id %p',
      async (id) => {
        const s = store({ prefix: 'g8a:', hashKeys: false });
        const err = await s.setSession(id, newSession(s, id, { user: 'x' })).then(
          () => null,
          (e: unknown) => e as Error,
        );
        expect(err?.name).toBe('SessionIdError');
        expect(err?.message).not.toContain('abc'); // names no session id
        expect(await s.getSession(id)).toBeNull();
      },
    );

    it('a session id equal to `generation` cannot revive the sessions a clear() voided', async () => {
      const s = store({ prefix: 'g8b:', hashKeys: false });
      const old = sid();
      await s.setSession(old, newSession(s, old, { user: 'old' }));
      await s.clearSessions();
      await s
        .setSession('generation', newSession(s, 'generation', { user: 'x' }))
        .catch(() => null);
      // A process started later reads the generation from memcached.
      const later = store({ prefix: 'g8b:', hashKeys: false });
      expect(await later.getSession(old)).toBeNull();
      expect(await s.getSession(old)).toBeNull();
    });

    it('a session id ending in `!` is not taken for the tombstone of another', async () => {
      const s = store({ prefix: 'g8c:', hashKeys: false });
      const id = sid();
      await s.setSession(id, newSession(s, id, { user: 'a' }));
      await s.setSession(`${id}!`, newSession(s, `${id}!`, { user: 'b' })).catch(() => null);
      expect(await memcached.getRaw(`g8c:${id}!`)).toBeNull();
    });
  });
});

describe('guarantees (issue 13), several memcached nodes', () => {
  let cluster: MemcachedProcess[];
  const open: SessionStore[] = [];
  const storeOn = (url: string, options: SessionStoreOptions = {}) => {
    const s = new SessionStore(
      SessionCache.fromUrl(url, { timeout: 300 }),
      { ttl: 3600, keySecret: 'k', ...options },
      new RecordingLogger(),
      true,
    );
    open.push(s);
    return s;
  };
  const urlOf = (nodes: { address: string }[], query = '') =>
    `memcached://${nodes.map((n) => n.address).join(',')}${query}`;
  const nodeOf = (s: SessionStore, proc: MemcachedProcess): MemcachedNode =>
    s.client.nodes.find((n) => n.name === proc.address)!;

  /** Hangs `proc` and waits until every store has seen it fail (it is then skipped). */
  async function hang(proc: MemcachedProcess, stores: SessionStore[]) {
    await proc.pause();
    await Promise.all(
      stores.map((s) => expect(nodeOf(s, proc).get('probe')).rejects.toThrow(/no answer/)),
    );
  }
  /** Resumes `proc` and waits until every store uses it again. */
  async function wake(proc: MemcachedProcess, stores: SessionStore[]) {
    await proc.resume();
    await Promise.all(stores.map((s) => eventually(() => nodeOf(s, proc).get('probe'))));
  }

  beforeAll(async () => {
    cluster = await startMemcachedCluster(2);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    await Promise.all(cluster.map((p) => p.resume()));
  });
  afterAll(() => Promise.all(cluster.map((p) => p.kill())));

  it('2. a login whose index write failed leaves no session behind (replicas: 1)', async () => {
    const s = storeOn(urlOf(cluster), { userId, generationCheckInterval: 60_000 });
    const [nodeA, nodeB] = cluster.map((p) => nodeOf(s, p));
    // A user whose index is on B, a session id whose session is on A.
    let user = '';
    for (let i = 0; !user; i++) {
      if (s.client.nodesFor(s.userKey(`alice-${i}`))[0] === nodeB) user = `alice-${i}`;
    }
    let id = sid();
    while (s.client.nodesFor(s.key(id))[0] !== nodeA) id = sid();

    await cluster[1].pause(); // B hangs during the login
    await expect(s.setSession(id, newSession(s, id, { user }))).rejects.toThrow(/did not answer/);
    await wake(cluster[1], [s]);

    expect(await s.getSession(id)).toBeNull(); // not logged in: the 503 was the truth
    // A new attempt logs in, and logout everywhere reaches it.
    await s.setSession(id, newSession(s, id, { user }));
    expect(await s.getSession(id)).toMatchObject({ user });
    expect(await s.destroyUserSessions(user)).toBe(1);
    expect(await s.getSession(id)).toBeNull();
  });

  describe('6. write ordering that clocks cannot break (2 nodes, 2 replicas)', () => {
    const realNow = Date.now.bind(Date);
    let skew = 0;
    beforeEach(() => {
      skew = 0;
      jest.spyOn(Date, 'now').mockImplementation(() => realNow() + skew);
    });
    afterEach(() => {
      jest.restoreAllMocks();
    });
    /** Runs `work` on an app server whose clock is `offset` ms off. */
    async function at<T>(offset: number, work: () => Promise<T>): Promise<T> {
      skew = offset;
      try {
        return await work();
      } finally {
        skew = 0;
      }
    }

    /**
     * Server A (clock `offsetA`) and server B (exact clock) write one session across an outage of
     * each node in turn: A saves once while node 2 is hung, then B saves twice (the second from
     * the first) while node 1 is hung. Returns what both servers then read.
     */
    async function forkAcrossOutage(offsetA: number): Promise<string> {
      const url = urlOf(cluster, '?replicas=2');
      const a = storeOn(url);
      const b = storeOn(url);
      const id = sid();
      const save = (s: SessionStore, by: string) => async () => {
        const session = (await loadSession(s, id))!;
        session.by = by;
        await storeSet(s, id, session);
      };
      await at(offsetA, () => a.setSession(id, newSession(a, id, { by: 'A0' })));
      await hang(cluster[1], [a, b]);
      await at(offsetA, save(a, 'A1'));
      await wake(cluster[1], [a, b]);
      await hang(cluster[0], [a, b]);
      await save(b, 'B1')();
      await save(b, 'B2')(); // made from B1
      await wake(cluster[0], [a, b]);
      const seenByA = (await at(offsetA, () => a.getSession(id))) as unknown as { by: string };
      const seenByB = (await b.getSession(id)) as unknown as { by: string };
      expect(seenByB.by).toBe(seenByA.by);
      const key = a.key(id);
      await eventually(async () =>
        expect(await cluster[0].getRaw(key)).toEqual(await cluster[1].getRaw(key)),
      );
      return seenByA.by;
    }

    it('6. two stores 30 s apart across a replica outage: the same copy wins whichever clock is ahead', async () => {
      const aheadA = await forkAcrossOutage(30_000);
      const behindA = await forkAcrossOutage(-30_000);
      expect(aheadA).toBe(behindA);
      expect(aheadA).toBe('B2'); // the copy saved from the other one (more saves since the fork)
    });

    it('6. two stores saving the same loaded version at once converge on every replica', async () => {
      const url = urlOf(cluster, '?replicas=2');
      const a = storeOn(url);
      const b = storeOn(url);
      const id = sid();
      await a.setSession(id, newSession(a, id, { by: 'start' }));
      const fromA = (await loadSession(a, id))!;
      const fromB = (await loadSession(b, id))!;
      // Both saves in the same millisecond, each reaching one replica.
      const frozen = realNow();
      await hang(cluster[1], [a, b]);
      fromA.by = 'A';
      await at(frozen - realNow(), () => storeSet(a, id, fromA));
      await wake(cluster[1], [a, b]);
      await hang(cluster[0], [a, b]);
      fromB.by = 'B';
      await at(frozen - realNow(), () => storeSet(b, id, fromB));
      await wake(cluster[0], [a, b]);

      const key = a.key(id);
      const first = (await a.getSession(id)) as unknown as { by: string };
      await eventually(
        async () => {
          expect(await cluster[0].getRaw(key)).toEqual(await cluster[1].getRaw(key));
        },
        { timeout: 3000 },
      );
      expect(((await b.getSession(id)) as unknown as { by: string }).by).toBe(first.by);
      expect(storedPayload(await cluster[0].getRaw(key))).toContain(`"by":"${first.by}"`);
    });

    it('6. a read-repair never lands on a newer write (CAS)', async () => {
      // Store A reaches node 2 through a proxy that can hold its requests; B reaches it directly.
      const proxy = await HoldingProxy.start(cluster[1].port);
      try {
        const a = storeOn(`memcached://${cluster[0].address},${proxy.address}?replicas=2`);
        const b = storeOn(urlOf(cluster, '?replicas=2'));
        const id = sid();
        const key = b.key(id);
        await b.setSession(id, newSession(b, id, { v: 0 }));
        await hang(cluster[1], [b]);
        const v1 = (await loadSession(b, id))!;
        v1.v = 1;
        await storeSet(b, id, v1); // node 2 misses it
        await wake(cluster[1], [b]);

        expect(await a.getSession(id)).toMatchObject({ v: 1 }); // repairs node 2 (v0 -> v1)...
        proxy.hold(); // ...but that repair is held on its way
        const v2 = (await loadSession(b, id))!;
        v2.v = 2;
        await storeSet(b, id, v2); // a newer write reaches node 2 first
        expect(proxy.heldChunks).toBeGreaterThan(0);
        proxy.release();
        const aNode2 = a.client.nodes.find((n) => n.name === proxy.address)!;
        await aNode2.get('probe'); // after the repair, on the same connection

        expect(storedPayload(await cluster[1].getRaw(key))).toContain('"v":2');
        expect(await cluster[1].getRaw(key)).toEqual(await cluster[0].getRaw(key));
      } finally {
        await proxy.close();
      }
    });
  });

  it('migration: a value of the previous release (0xF5, clock version) is counted on from', async () => {
    const s = storeOn(urlOf(cluster, '?replicas=2'));
    const id = sid();
    const key = s.key(id);
    const old = Buffer.alloc(16);
    old[0] = 0xf5;
    old.writeUIntBE(Date.now() + 3_600_000, 2, 6); // written by a server whose clock ran ahead
    old.writeUInt32BE(Math.floor(Date.now() / 1000) + 600, 12);
    const value = Buffer.concat([old, Buffer.from(JSON.stringify({ cookie: {}, by: 'old' }))]);
    for (const node of cluster) await node.setRaw(key, value, 600);
    const session = (await loadSession(s, id))!;
    expect(session.by).toBe('old');
    session.by = 'new';
    await storeSet(s, id, session);
    await cluster[1].setRaw(key, value, 600); // a replica that missed the save
    expect(await s.getSession(id)).toMatchObject({ by: 'new' });
    await eventually(async () =>
      expect(await cluster[1].getRaw(key)).toEqual(await cluster[0].getRaw(key)),
    );
  });

  describe('8. tombstones outlive the longest session they guard', () => {
    it('8. createSessionStore: a 60-day session gets a tombstone that outlives it', async () => {
      const s = createSessionStore(urlOf(cluster, '?replicas=2'), { keySecret: 'k' });
      open.push(s);
      const id = sid();
      await s.setSession(id, newSession(s, id, { user: 'u' }, { maxAge: 60 * DAY * 1000 }));
      const sessionTtl = (await cluster[0].ttl(s.key(id)))!;
      await s.destroySession(id);
      for (const node of cluster) {
        expect(await node.ttl(`${s.key(id)}!`)).toBeGreaterThanOrEqual(sessionTtl);
      }
    });

    it('8. a per-request remember-me lengthening outlives a tombstoneTtl set from the cookie', async () => {
      // As SessionCacheModule configures it for a 1-day cookie.
      const s = storeOn(urlOf(cluster, '?replicas=2'), { tombstoneTtl: DAY });
      const id = sid();
      await s.setSession(id, newSession(s, id, { user: 'u' }, { maxAge: DAY * 1000 }));
      await request(s, id, (session) => {
        session.cookie.maxAge = 30 * DAY * 1000; // "remember me"
        session.remember = true;
        return true;
      });
      const sessionTtl = (await cluster[0].ttl(s.key(id)))!;
      expect(sessionTtl).toBeGreaterThan(30 * DAY);
      await s.destroySession(id);
      for (const node of cluster) {
        expect(await node.ttl(`${s.key(id)}!`)).toBeGreaterThanOrEqual(sessionTtl);
      }
    });
  });
});
