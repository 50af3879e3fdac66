import { randomBytes } from 'node:crypto';
import { SessionCache, SessionCacheConfigError, SessionCacheError, SessionStore } from '../../src';
import type { SessionData } from 'express-session';
import type { SessionStoreOptions } from '../../src';
import { decodeValue, encodeValue, VALUE_HEADER_BYTES } from '../../src/store/value-header';
import { freePort, MemcachedProcess } from '../support/memcached.mjs';
import { dumpKeys } from '../support/metadump';
import { loadSession, newSession, RecordingLogger, storeSet, storeTouch } from '../support/store';
import { eventually } from '../support/wait';

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

const sid = () => randomBytes(24).toString('base64url');
const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);

describe('security against a real memcached', () => {
  let memcached: MemcachedProcess;
  let cache: SessionCache;
  let logger: RecordingLogger;
  const store = (options: SessionStoreOptions = {}) =>
    new SessionStore(cache, { keySecret: 'key-secret', ...options }, logger);

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

  describe('hashed keys', () => {
    it('keys are the prefix plus an HMAC: a key dump shows no session id', async () => {
      const s = store();
      const ids = [sid(), sid(), sid()];
      for (const id of ids) await s.setSession(id, newSession(s, id, { user: id }));
      const keys = await dumpKeys(memcached.port);
      for (const id of ids) {
        expect(keys).toContain(s.key(id));
        expect(s.key(id)).toMatch(/^sess:[A-Za-z0-9_-]{43}$/);
        expect(keys.join('\n')).not.toContain(id);
      }
      // Another secret gives other keys; `hashKeys: false` gives the raw id.
      expect(store({ keySecret: 'other' }).key(ids[0])).not.toBe(s.key(ids[0]));
      expect(store({ hashKeys: false }).key(ids[0])).toBe(`sess:${ids[0]}`);
    });

    it('refuses to hash without a secret', () => {
      expect(() => new SessionStore(cache, {})).toThrow(SessionCacheConfigError);
      expect(() => new SessionStore(cache, {})).toThrow(/keySecret must be a non-empty string/);
      expect(() => new SessionStore(cache, { keySecret: '' })).toThrow(/keySecret/);
    });
  });

  describe('encryption at rest (AES-256-GCM)', () => {
    async function saved(s: SessionStore, fields: Record<string, unknown>) {
      const id = sid();
      await s.setSession(id, newSession(s, id, fields));
      return { id, key: s.key(id), raw: (await memcached.getRaw(s.key(id)))! };
    }

    it('stores no session field in clear text', async () => {
      const s = store({ encryptionKeys: [KEY_A] });
      const { id, raw } = await saved(s, { user: 'grace-hopper', role: 'admiral' });
      expect(decodeValue(raw).flags).toBe(1);
      for (const clear of ['grace-hopper', 'admiral', 'user', 'cookie', 'originalMaxAge']) {
        expect(raw.includes(clear)).toBe(false);
      }
      expect(await s.getSession(id)).toMatchObject({ user: 'grace-hopper', role: 'admiral' });
    });

    const tamperings: [string, (raw: Buffer, other: Buffer) => Buffer, RegExp][] = [
      [
        'a flipped ciphertext byte',
        (raw) => Buffer.from(raw.map((b, i) => (i === raw.length - 3 ? b ^ 1 : b))),
        /failed authentication/,
      ],
      ['a truncated value', (raw) => raw.subarray(0, raw.length - 5), /failed authentication/],
      [
        'a value cut inside the IV',
        (raw) => raw.subarray(0, VALUE_HEADER_BYTES + 8),
        /failed authentication/,
      ],
      [
        'a changed header (version)',
        (raw) => Buffer.from(raw.map((b, i) => (i === 7 ? b ^ 1 : b))),
        /failed authentication/,
      ],
      [
        'IV and tag swapped',
        (raw) => {
          const p = VALUE_HEADER_BYTES + 4;
          return Buffer.concat([
            raw.subarray(0, p),
            raw.subarray(p + 12, p + 28),
            raw.subarray(p, p + 12),
            raw.subarray(p + 28),
          ]);
        },
        /failed authentication/,
      ],
      [
        "another session's value moved under this key",
        (_raw, other) => other,
        /failed authentication/,
      ],
      [
        'a plaintext value',
        () =>
          encodeValue(
            { version: Date.now(), generation: 0, expiresAt: 0 },
            '{"cookie":{},"user":"mallory"}',
          ),
        /not encrypted while encryption is on/,
      ],
      ['a legacy JSON value', () => Buffer.from('{"cookie":{},"user":"mallory"}'), /not encrypted/],
    ];
    it.each(tamperings)(
      'treats %s as no session, with a warning',
      async (_what, tamper, warning) => {
        const s = store({ encryptionKeys: [KEY_A] });
        const victim = await saved(s, { user: 'victim' });
        const other = await saved(s, { user: 'other' });
        await memcached.setRaw(victim.key, tamper(victim.raw, other.raw), 60);
        expect(await s.getSession(victim.id)).toBeNull();
        expect(logger.warnings).toHaveLength(1);
        expect(logger.warnings[0]).toMatch(warning);
        expect(logger.warnings[0]).not.toContain(victim.id);
      },
    );

    it('rotates keys: old sessions stay readable, new writes use the first key', async () => {
      const before = store({ encryptionKeys: [KEY_A] });
      const old = await saved(before, { user: 'old' });
      const rotated = store({ encryptionKeys: [KEY_B, KEY_A] });
      const session = (await loadSession(rotated, old.id))!;
      expect(session.user).toBe('old');
      session.visits = 1;
      await storeSet(rotated, old.id, session);
      const rewritten = (await memcached.getRaw(old.key))!;
      // The key id (4 bytes after the header) now names KEY_B, and only a store with it reads it.
      const keyId = (raw: Buffer) => raw.subarray(VALUE_HEADER_BYTES, VALUE_HEADER_BYTES + 4);
      expect(keyId(rewritten)).not.toEqual(keyId(old.raw));
      expect(await store({ encryptionKeys: [KEY_B] }).getSession(old.id)).toMatchObject({
        visits: 1,
      });
      expect(await before.getSession(old.id)).toBeNull();
      expect(logger.warnings.at(-1)).toMatch(/key that is not in encryptionKeys/);
    });

    it('moves a session that is only ever read to the first key at its next touch', async () => {
      const old = await saved(store({ encryptionKeys: [KEY_A] }), { user: 'reader' });
      const rotated = store({ encryptionKeys: [KEY_B, KEY_A] });
      const session = (await loadSession(rotated, old.id))!;
      await storeTouch(rotated, old.id, session); // an unmodified request
      // Now readable with the new key alone: the old one can be retired.
      expect(await store({ encryptionKeys: [KEY_B] }).getSession(old.id)).toMatchObject({
        user: 'reader',
      });
    });

    it('does not read encrypted sessions without keys', async () => {
      const { id } = await saved(store({ encryptionKeys: [KEY_A] }), { user: 'x' });
      expect(await store().getSession(id)).toBeNull();
      expect(logger.warnings[0]).toMatch(/encrypted, but no encryptionKeys are configured/);
    });

    it.each([
      [[], /non-empty array/],
      [[randomBytes(31)], /encryptionKeys\[0\] is not a 32-byte key \(31 bytes\)/],
      [['not a key'], /encryptionKeys\[0\] is not a 32-byte key .*neither 64 hex digits/],
      [[KEY_A.toString('base64'), KEY_A.toString('hex')], /the same key twice/],
      [[KEY_A, 42], /encryptionKeys\[1\] must be a Buffer or a string/],
    ])('refuses a broken key list %#', (keys, message) => {
      const create = () => store({ encryptionKeys: keys as (string | Buffer)[] });
      expect(create).toThrow(SessionCacheConfigError);
      expect(create).toThrow(message);
      // The message never shows key material.
      const thrown = String(catchError(create));
      for (const k of keys)
        if (Buffer.isBuffer(k)) expect(thrown).not.toContain(k.toString('base64'));
    });

    it('an encryption error is an error, never a plaintext write', async () => {
      const s = store({
        encryptionKeys: [KEY_A],
        serializer: {
          stringify: () => 42 as unknown as string,
          parse: (raw) => JSON.parse(`${raw}`),
        },
      });
      const id = sid();
      await expect(s.setSession(id, newSession(s, id, { user: 'x' }))).rejects.toThrow(
        SessionCacheError,
      );
      expect(await memcached.getRaw(s.key(id))).toBeNull();
    });
  });

  describe('clear()', () => {
    it('voids every session of this store and leaves everything else on memcached alone', async () => {
      const s = store({ prefix: 'app1:' });
      const neighbour = store({ prefix: 'app2:' });
      const mine = [sid(), sid()];
      for (const id of mine) await s.setSession(id, newSession(s, id, { user: id }));
      const theirs = sid();
      await neighbour.setSession(theirs, newSession(neighbour, theirs, { user: 'n' }));
      await memcached.setRaw('general:cache-entry', 'keep me', 0);
      const slow = (await loadSession(s, mine[0]))!; // a request in flight across the clear
      const flushes = Number((await memcached.stats()).cmd_flush);

      await s.clearSessions();

      for (const id of mine) expect(await s.getSession(id)).toBeNull();
      slow.visits = 1;
      await storeSet(s, mine[0], slow); // its save does not bring it back
      expect(await s.getSession(mine[0])).toBeNull();
      expect(await neighbour.getSession(theirs)).toMatchObject({ user: 'n' });
      expect(String(await memcached.getRaw('general:cache-entry'))).toBe('keep me');
      expect(Number((await memcached.stats()).cmd_flush)).toBe(flushes);
      // New sessions work after a clear.
      const fresh = sid();
      await s.setSession(fresh, newSession(s, fresh, { user: 'fresh' }));
      expect(await s.getSession(fresh)).toMatchObject({ user: 'fresh' });
    });

    it('keeps the generation when memcached loses it, so new processes agree with old ones', async () => {
      const old = store({ prefix: 'app4:', generationCheckInterval: 0 });
      await old.clearSessions();
      await memcached.flush(); // a restart or eviction loses the generation key (and sessions)
      expect(await old.getSession(sid())).toBeNull(); // old re-reads it and writes back its own
      await eventually(async () =>
        expect(await memcached.getRaw(old.generationKey)).not.toBeNull(),
      );
      const fresh = store({ prefix: 'app4:', generationCheckInterval: 0 }); // e.g. a new deploy
      const id = sid();
      await fresh.setSession(id, newSession(fresh, id, { user: 'new' }));
      expect(await old.getSession(id)).toMatchObject({ user: 'new' });
      expect(await fresh.getSession(id)).toMatchObject({ user: 'new' });
    });

    it('reaches the other processes of the app within generationCheckInterval', async () => {
      const here = store({ prefix: 'app3:', generationCheckInterval: 100 });
      const there = store({ prefix: 'app3:', generationCheckInterval: 100 });
      const id = sid();
      await here.setSession(id, newSession(here, id, { user: 'u' }));
      expect(await there.getSession(id)).toMatchObject({ user: 'u' });
      await here.clearSessions();
      await eventually(async () => expect(await there.getSession(id)).toBeNull());
    });
  });

  describe('logout everywhere', () => {
    const userId = (session: SessionData) => (session as { user?: string }).user;

    it("destroys every session of one user and no other's", async () => {
      const s = store({ prefix: 'lo:', userId });
      const alice = [sid(), sid(), sid()];
      const bob = sid();
      for (const id of alice) await s.setSession(id, newSession(s, id, { user: 'alice' }));
      await s.setSession(bob, newSession(s, bob, { user: 'bob' }));
      // A session that logs in later (anonymous first) is indexed at that save.
      const late = sid();
      await s.setSession(late, newSession(s, late, { cart: 1 }));
      const session = (await loadSession(s, late))!;
      session.user = 'alice';
      await storeSet(s, late, session);

      expect(await s.destroyUserSessions('alice')).toBe(4);
      for (const id of [...alice, late]) expect(await s.getSession(id)).toBeNull();
      expect(await s.getSession(bob)).toMatchObject({ user: 'bob' });
      expect(await s.destroyUserSessions('alice')).toBe(0);
    });

    it('costs ordinary requests nothing: a read (with its lazy touch) is 1 memcached command', async () => {
      const s = store({ prefix: 'lo2:', userId });
      const id = sid();
      await s.setSession(id, newSession(s, id, { user: 'carol' }));
      const before = await memcached.stats();
      const session = (await loadSession(s, id))!;
      await s.touchSession(id, session);
      session.visits = 1; // a modification that keeps the user: no index write either
      await storeSet(s, id, session);
      const after = await memcached.stats();
      const delta = (name: string) => Number(after[name]) - Number(before[name]);
      expect(delta('cmd_get')).toBe(1);
      expect(delta('cmd_touch')).toBe(0); // fresh: lazy touch skips it
      expect(delta('cmd_set')).toBe(1); // the replace of the save; no append
    });

    it('a login during an outage fails cleanly (no unhandled rejection from the index)', async () => {
      const down = new SessionStore(
        SessionCache.fromUrl(`memcached://127.0.0.1:${await freePort()}`, { timeout: 200 }),
        { keySecret: 'k', userId, generationCheckInterval: 60_000 },
        logger,
      );
      const unhandled: unknown[] = [];
      const record = (reason: unknown) => unhandled.push(reason);
      process.on('unhandledRejection', record);
      try {
        const id = sid();
        await expect(down.setSession(id, newSession(down, id, { user: 'dave' }))).rejects.toThrow(
          /did not answer an? (get|add) command/,
        );
        await new Promise((resolve) => setTimeout(resolve, 50)); // give a stray rejection time
        expect(unhandled).toEqual([]);
      } finally {
        process.off('unhandledRejection', record);
        await down.client.close();
      }
    });

    it("keeps finding a user's live sessions once the index reaches memcached's item limit", async () => {
      // About 40 index entries fit in an item of 2 KiB.
      const small = await MemcachedProcess.start({
        maxItemSize: '2k',
        args: ['-o', 'slab_chunk_max=1024'],
      });
      const client = SessionCache.fromUrl(small.url);
      const s = new SessionStore(client, { keySecret: 'k', userId }, logger);
      try {
        const live: string[] = [];
        for (let i = 0; i < 120; i++) {
          const id = sid();
          await s.setSession(id, newSession(s, id, { user: 'erin' }));
          live.push(id);
          if (live.length > 3) await s.destroySession(live.shift()!); // logged out elsewhere
        }
        expect(await s.destroyUserSessions('erin')).toBeGreaterThanOrEqual(3);
        for (const id of live) expect(await s.getSession(id)).toBeNull();
      } finally {
        await client.close();
        await small.kill();
      }
    });

    it('needs the userId option', async () => {
      await expect(store().destroyUserSessions('x')).rejects.toThrow(/needs the `userId` option/);
    });
  });
});
