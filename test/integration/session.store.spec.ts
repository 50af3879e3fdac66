import { SessionCache, SessionStore, SessionTooLargeError } from '../../src';
import type { SessionSerializer } from '../../src';
import { MemcachedProcess } from '../support/memcached.mjs';
import {
  loadSession,
  newSession,
  RecordingLogger,
  storeDestroy,
  storeGet,
  storeSet,
  storeTouch,
  storedPayload,
} from '../support/store';
import { VALUE_HEADER_BYTES } from '../../src/store/value-header';
import { eventually } from '../support/wait';

const DAY = 86_400;

describe('SessionStore against a real memcached', () => {
  let memcached: MemcachedProcess;
  let cache: SessionCache;
  let store: SessionStore;
  let logger: RecordingLogger;
  let n = 0;
  const sid = () => `sid-${process.pid}-${++n}`;

  async function stat(name: string): Promise<number> {
    return Number((await memcached.stats())[name]);
  }

  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
    cache = SessionCache.fromUrl(memcached.url);
  });
  beforeEach(() => {
    logger = new RecordingLogger();
    // lazyTouch 0: TTLs exactly as the cookie says, a TOUCH on every request (see 8. for lazy).
    store = new SessionStore(cache, { ttl: 3600, keySecret: 'k', lazyTouch: 0 }, logger);
  });
  afterAll(async () => {
    await cache.close();
    await memcached.kill();
  });

  describe('1. TTL from the cookie, else `ttl`', () => {
    it("uses the cookie maxAge, rounded up to whole seconds, plus a second for memcached's clock", async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { a: 1 }, { maxAge: 90_500 }));
      const ttl = await memcached.ttl(store.key(id));
      expect(ttl).toBeGreaterThanOrEqual(91);
      expect(ttl).toBeLessThanOrEqual(92);
    });

    it('stores at least 1 s (plus the clock second) for a sub-second maxAge', async () => {
      const s = newSession(store, 'x', {}, { maxAge: 300 });
      expect(store.ttlOf(s)).toBe(2);
    });

    it('uses `ttl` for a browser-session cookie (no maxAge/expires)', async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { a: 1 }));
      const ttl = await memcached.ttl(store.key(id));
      expect(ttl).toBeGreaterThan(3591);
      expect(ttl).toBeLessThanOrEqual(3601);
    });

    it('keeps a session whose cookie lives 40 days (absolute expiry past 30 days)', async () => {
      const id = sid();
      await storeSet(
        store,
        id,
        newSession(store, id, { user: 'long' }, { maxAge: 40 * DAY * 1000 }),
      );
      expect(await storeGet(store, id)).toMatchObject({ user: 'long' });
      const ttl = await memcached.ttl(store.key(id));
      expect(ttl).toBeGreaterThan(40 * DAY - 10);
      // memcached's clock ticks once a second and lags the wall clock by up to one tick, so an
      // absolute expiry can read one second longer than the TTL that was sent.
      expect(ttl).toBeLessThanOrEqual(40 * DAY + 2);
      // touch sends the same kind of expiry
      const loaded = (await loadSession(store, id))!;
      await storeTouch(store, id, loaded);
      expect(await memcached.ttl(store.key(id))).toBeGreaterThan(40 * DAY - 10);
    });
  });

  describe('2. expired cookies', () => {
    it('never returns a session whose cookie expired, even if memcached still has it', async () => {
      const id = sid();
      const expired = newSession(store, id, { user: 'gone' }, { maxAge: 60_000 });
      expired.cookie.expires = new Date(Date.now() - 1000);
      await memcached.setRaw(store.key(id), JSON.stringify(expired), 600);
      expect(await storeGet(store, id)).toBeNull();
      // ...and it removed the stale copy
      expect(await memcached.getRaw(store.key(id))).toBeNull();
    });

    it('deletes rather than writes a session whose cookie has expired', async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { user: 'u' }, { maxAge: 60_000 }));
      const loaded = (await loadSession(store, id))!;
      loaded.cookie.expires = new Date(Date.now() - 1);
      await storeSet(store, id, loaded);
      expect(await memcached.getRaw(store.key(id))).toBeNull();
      await storeTouch(store, id, loaded);
      expect(await memcached.getRaw(store.key(id))).toBeNull();
    });
  });

  describe('3. touch', () => {
    it("refreshes the TTL with memcached's TOUCH and never re-sends the value", async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { user: 'u' }, { maxAge: 10_000 }));
      // A request a while after the save: its cookie (same lifetime) now expires later than the
      // stored value was promised to live, so a TOUCH is due.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const loaded = (await loadSession(store, id))!;
      loaded.touch(); // express-session resets maxAge on every request (rolling)
      const [sets, touches] = [await stat('cmd_set'), await stat('cmd_touch')];
      await storeTouch(store, id, loaded);
      expect(await stat('cmd_set')).toBe(sets);
      expect(await stat('cmd_touch')).toBe(touches + 1);
      expect(await memcached.ttl(store.key(id))).toBeGreaterThan(9);
    });

    it('does not bring back a session that is gone', async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { user: 'u' }));
      const loaded = (await loadSession(store, id))!;
      await storeDestroy(store, id);
      await storeTouch(store, id, loaded);
      expect(await storeGet(store, id)).toBeNull();
    });
  });

  describe('4. no resurrection by a slow save after a parallel logout', () => {
    it('drops the save of a session destroyed after it was loaded', async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { user: 'u', visits: 1 }));
      const slowRequest = (await loadSession(store, id))!; // request A loads the session
      await storeDestroy(store, id); // request B logs out meanwhile
      slowRequest.visits = 2; // request A modifies and saves afterwards
      await storeSet(store, id, slowRequest);
      expect(await storeGet(store, id)).toBeNull();
      expect(await memcached.getRaw(store.key(id))).toBeNull();
    });

    it('stores a session created in this request (add) and updates a loaded one (replace)', async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { v: 1 }));
      const loaded = (await loadSession(store, id))!;
      loaded.v = 2;
      await storeSet(store, id, loaded);
      await storeSet(store, id, loaded); // a second save in the same request still updates
      expect(await storeGet(store, id)).toMatchObject({ v: 2 });
    });
  });

  describe("4b. set is an upsert (express-session's Store contract)", () => {
    it('stores a session object loaded under one id when it is saved under another', async () => {
      const a = sid();
      const b = sid();
      await storeSet(store, a, newSession(store, a, { user: 'copied' }));
      const loaded = (await loadSession(store, a))!;
      await storeSet(store, b, loaded); // e.g. an app copying a session to a new id
      expect(await storeGet(store, b)).toMatchObject({ user: 'copied' });
      expect(await storeGet(store, a)).toMatchObject({ user: 'copied' }); // untouched
      expect(logger.debugs.join('\n')).not.toMatch(/destroyed meanwhile/);
      // …and that copy is then a loaded session of its own: a logout under `b` still wins.
      const again = (await loadSession(store, b))!;
      await storeDestroy(store, b);
      again.user = 'late';
      await storeSet(store, b, again);
      expect(await storeGet(store, b)).toBeNull();
    });

    it('stores over an existing session of another id, as MemoryStore does', async () => {
      const a = sid();
      const b = sid();
      await storeSet(store, a, newSession(store, a, { user: 'a' }));
      await storeSet(store, b, newSession(store, b, { user: 'b' }));
      const loaded = (await loadSession(store, a))!;
      await storeSet(store, b, loaded);
      expect(await storeGet(store, b)).toMatchObject({ user: 'a' });
    });
  });

  describe('5. oversized sessions', () => {
    it('refuses a session over the limit before sending it and keeps the stored one', async () => {
      const small = new SessionStore(cache, { maxSessionSize: 2000, keySecret: 'k' }, logger);
      const id = sid();
      await storeSet(small, id, newSession(small, id, { user: 'u' }));
      const loaded = (await loadSession(small, id))!;
      loaded.blob = 'x'.repeat(5000);
      const sets = await stat('cmd_set');
      const err = await storeSet(small, id, loaded).catch((e) => e);
      expect(err).toBeInstanceOf(SessionTooLargeError);
      expect(err.size).toBeGreaterThan(5000);
      expect(err.limit).toBe(2000);
      expect(err.message).toMatch(/\d+ bytes serialized, over the limit of 2000 bytes/);
      expect(await stat('cmd_set')).toBe(sets); // nothing was sent
      expect(await storeGet(small, id)).toMatchObject({ user: 'u' });
      expect(await storeGet(small, id)).not.toHaveProperty('blob');
    });

    it("defaults to a limit that memcached's default 1 MB item size accepts", async () => {
      const id = sid();
      const justUnder = newSession(store, id, {});
      const overhead = VALUE_HEADER_BYTES + JSON.stringify({ ...justUnder, blob: '' }).length;
      justUnder.blob = 'y'.repeat(store.maxSessionSize - overhead);
      await storeSet(store, id, justUnder);
      expect((await loadSession(store, id))?.blob).toHaveLength(store.maxSessionSize - overhead);
      const over = (await loadSession(store, id))!;
      over.blob += 'z';
      await expect(storeSet(store, id, over)).rejects.toBeInstanceOf(SessionTooLargeError);
      expect((await loadSession(store, id))?.blob).toHaveLength(store.maxSessionSize - overhead);
    });
  });

  describe('5b. sessionChanged (what save-before-response asks)', () => {
    it('tells a loaded session that is unchanged from one a handler changed, by its bytes', async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { user: 'u', nested: { n: 1 } }));
      const loaded = (await loadSession(store, id))!;
      expect(store.sessionChanged(loaded)).toBe(false);
      loaded.nested.n = 2; // a change deep inside is a change
      expect(store.sessionChanged(loaded)).toBe(true);
      loaded.nested.n = 1;
      expect(store.sessionChanged(loaded)).toBe(false);
      loaded.cookie.maxAge = 30 * DAY * 1000; // remember-me: the cookie counts too
      expect(store.sessionChanged(loaded)).toBe(true);
    });

    it('takes a new session as changed once it holds more than its cookie', () => {
      const fresh = newSession(store, sid(), {});
      expect(store.sessionChanged(fresh)).toBe(false);
      fresh.user = 'new';
      expect(store.sessionChanged(fresh)).toBe(true);
    });

    it('serializes a changed session once: the comparison is reused by the save', async () => {
      let calls = 0;
      const counting = new SessionStore(
        cache,
        {
          keySecret: 'k',
          serializer: {
            stringify: (s) => (calls++, JSON.stringify(s)),
            parse: (raw) => JSON.parse(raw.toString()),
          },
        },
        logger,
      );
      const id = sid();
      await storeSet(counting, id, newSession(counting, id, { v: 1 }));
      const loaded = (await loadSession(counting, id))!;
      loaded.v = 2;
      calls = 0;
      expect(counting.sessionChanged(loaded)).toBe(true);
      await storeSet(counting, id, loaded);
      expect(calls).toBe(1);
      expect(await storeGet(counting, id)).toMatchObject({ v: 2 });
      expect(counting.sessionChanged(loaded)).toBe(false); // saved: what is stored now
    });
  });

  describe('6. corrupt stored values', () => {
    it.each([
      ['not JSON', '{"cookie": {"originalMaxAge":'],
      ['a JSON array', '[1,2,3]'],
      ['JSON without cookie', '{"user":"u"}'],
      ['a JSON string', '"hello"'],
      ['binary garbage', Buffer.from([0xff, 0x00, 0xfe, 0x81])],
    ])('treats %s as no session, warns without the session id', async (_what, raw) => {
      const id = sid();
      await memcached.setRaw(store.key(id), raw, 60);
      expect(await storeGet(store, id)).toBeNull();
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]).toMatch(/Ignored a stored session/);
      expect(logger.warnings[0]).not.toContain(id);
    });
  });

  describe('7. pluggable serialization', () => {
    it('stores JSON by default', async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { user: 'json' }));
      expect(
        JSON.parse(String(storedPayload(await memcached.getRaw(store.key(id))))),
      ).toMatchObject({
        user: 'json',
      });
    });

    it('uses a custom serializer both ways', async () => {
      const tagged: SessionSerializer = {
        stringify: (s) => `v1:${Buffer.from(JSON.stringify(s)).toString('base64')}`,
        parse: (raw) => {
          const text = raw.toString();
          if (!text.startsWith('v1:')) throw new Error('unknown format');
          return JSON.parse(Buffer.from(text.slice(3), 'base64').toString());
        },
      };
      const custom = new SessionStore(
        cache,
        { serializer: tagged, prefix: 'custom:', keySecret: 'k' },
        logger,
      );
      const id = sid();
      await storeSet(custom, id, newSession(custom, id, { user: 'b64' }));
      expect(storedPayload(await memcached.getRaw(custom.key(id)))).toMatch(/^v1:/);
      expect(await storeGet(custom, id)).toMatchObject({ user: 'b64' });
      await memcached.setRaw(custom.key(id), '{"cookie":{}}', 60);
      expect(await storeGet(custom, id)).toBeNull();
      expect(logger.warnings[0]).toMatch(/could not be decoded \(Error\)/);
    });
  });

  describe('8. lazy touch: sessions expire on time, never earlier', () => {
    const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    /** What express-session does on a request that does not modify the session. */
    async function request(s: SessionStore, id: string): Promise<boolean> {
      const session = await loadSession(s, id);
      if (!session) return false;
      session.touch();
      await storeTouch(s, id, session);
      return true;
    }

    it('keeps an active session alive long after its last save, with fewer TOUCHes than requests', async () => {
      // maxAge 2 s, slack 100%: memcached keeps it 4 s; a TOUCH is due about once a second.
      const lazy = new SessionStore(cache, { keySecret: 'k', lazyTouch: 1 }, logger);
      const id = sid();
      await storeSet(lazy, id, newSession(lazy, id, { user: 'busy' }, { maxAge: 2000 }));
      const before = Number((await memcached.stats()).cmd_touch);
      const started = Date.now();
      let requests = 0;
      while (Date.now() - started < 6000) {
        expect(await request(lazy, id)).toBe(true); // 3x maxAge after the save, still alive
        requests++;
        await wait(250);
      }
      const touches = Number((await memcached.stats()).cmd_touch) - before;
      expect(touches).toBeGreaterThanOrEqual(2);
      expect(touches).toBeLessThan(requests / 2);
    });

    it('expires between maxAge and maxAge x (1 + lazyTouch) after the last request', async () => {
      const lazy = new SessionStore(cache, { keySecret: 'k', lazyTouch: 1 }, logger);
      const id = sid();
      await storeSet(lazy, id, newSession(lazy, id, { user: 'idle' }, { maxAge: 2000 }));
      await wait(1500);
      expect(await request(lazy, id)).toBe(true);
      const last = Date.now();
      // Looked up raw, so the check itself is no request that would extend the session.
      await wait(last + 1900 - Date.now());
      expect(await memcached.getRaw(lazy.key(id))).not.toBeNull(); // not earlier than maxAge
      await eventually(async () => expect(await memcached.getRaw(lazy.key(id))).toBeNull(), {
        timeout: 6000,
        interval: 100,
      });
      // Gone within maxAge x 2, plus memcached's one-second clock.
      expect(Date.now() - last).toBeLessThanOrEqual(2000 * 2 + 1500);
    });

    it('shortens the TTL when a request shortens the cookie (no lazy skip then)', async () => {
      const lazy = new SessionStore(cache, { keySecret: 'k' }, logger); // lazyTouch 0.1
      const id = sid();
      await storeSet(lazy, id, newSession(lazy, id, { user: 'u' }, { maxAge: 3_600_000 }));
      const session = (await loadSession(lazy, id))!;
      session.cookie.maxAge = 5000; // e.g. "log me out soon"; not a modification for express-session
      await storeTouch(lazy, id, session);
      // 5 s + 10%, rounded up, + memcached's clock second
      expect(await memcached.ttl(lazy.key(id))).toBeLessThanOrEqual(7);
    });

    it('a TOUCHed session is not taken for expired when its stored cookie is older (lazyTouch 0)', async () => {
      const id = sid();
      await storeSet(store, id, newSession(store, id, { user: 'rolling' }, { maxAge: 2000 }));
      await wait(1200);
      expect(await request(store, id)).toBe(true);
      await wait(1300); // 2.5 s after the save, 1.3 s after the last request
      expect(await storeGet(store, id)).toMatchObject({ user: 'rolling' });
    });
  });

  it('calls back asynchronously with errors as the first argument when memcached is down', async () => {
    const down = new SessionStore(
      SessionCache.fromUrl('memcached://127.0.0.1:1'),
      { keySecret: 'k' },
      logger,
    );
    const calls: unknown[][] = [];
    await new Promise<void>((resolve) =>
      down.get('x', (...args) => {
        calls.push(args);
        resolve();
      }),
    );
    expect(calls).toHaveLength(1);
    expect((calls[0][0] as Error).name).toBe('SessionCacheUnavailableError');
    await down.client.close();
  });

  it('rejects bad options with clear errors', () => {
    expect(() => new SessionStore(cache, { ttl: 0, keySecret: 'k' })).toThrow(
      /ttl must be a whole number/,
    );
    expect(() => new SessionStore(cache, { maxSessionSize: -1, keySecret: 'k' })).toThrow(
      /maxSessionSize/,
    );
    expect(
      () =>
        new SessionStore(cache, {
          serializer: {} as unknown as SessionSerializer,
          keySecret: 'k',
        }),
    ).toThrow(/serializer must have stringify\(\) and parse\(\)/);
  });
});
