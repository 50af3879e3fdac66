// Property-based fuzzing of the stored-value decoder against a real memcached (issue 4, "Prove
// it"): whatever bytes sit under a session's key, getSession resolves to null (warned) or to a
// session, never rejects or throws, serves a session only when the bytes are a valid one, and no
// warning names the session id or key material.
import { randomBytes } from 'node:crypto';
import * as fc from 'fast-check';
import type { SessionData } from 'express-session';
import { SessionCache, SessionStore } from '../../src';
import type { SessionStoreOptions } from '../../src';
import { decodeValue, encodeValue, VALUE_HEADER_BYTES } from '../../src/store/value-header';
import { MemcachedProcess } from '../support/memcached.mjs';
import { newSession, RecordingLogger } from '../support/store';

const RUNS = 150;

/** A session id as express-session makes them (24 random bytes, base64url). */
const sessionId = fc
  .uint8Array({ minLength: 24, maxLength: 24 })
  .map((bytes) => Buffer.from(bytes).toString('base64url'));

/** A valid stored value of session `sid`, and what it holds. */
interface Valid {
  sid: string;
  raw: Buffer;
  data: unknown;
}

type Mutation =
  | { kind: 'flip'; flips: [number, number][] }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; other: number; cut: number; otherCut: number }
  | { kind: 'reorder'; a: number; b: number; c: number }
  | { kind: 'headerOnly' }
  | { kind: 'randomPayload'; payload: Uint8Array; keepKeyId: boolean }
  | { kind: 'otherKey'; other: number }
  | { kind: 'otherStore' }
  | { kind: 'legacyJson' };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('flip' as const),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), {
        minLength: 1,
        maxLength: 4,
      }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('splice' as const),
      other: fc.nat(),
      cut: fc.nat(),
      otherCut: fc.nat(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('reorder' as const),
      a: fc.nat(),
      b: fc.nat(),
      c: fc.nat(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('headerOnly' as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('randomPayload' as const),
      payload: fc.uint8Array({ maxLength: 300 }),
      keepKeyId: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('otherKey' as const), other: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('otherStore' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('legacyJson' as const) }) },
);

/**
 * Applies `m` to `base`, the valid value at index `i` of `pool` (`foreign`: the values of a store
 * with the other encryption setting).
 */
function mutate(m: Mutation, pool: Valid[], i: number, foreign: Valid[]): Buffer {
  const base = pool[i];
  const raw = base.raw;
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(raw);
      for (const [at, bit] of m.flips) out[at % out.length] ^= 1 << bit;
      return out;
    }
    case 'truncate':
      return raw.subarray(0, m.at % raw.length);
    case 'splice': {
      const other = pool[(i + 1 + (m.other % (pool.length - 1))) % pool.length].raw;
      return Buffer.concat([
        raw.subarray(0, m.cut % (raw.length + 1)),
        other.subarray(m.otherCut % (other.length + 1)),
      ]);
    }
    case 'reorder': {
      // Swap two adjacent chunks [a, b) and [b, c) of the value.
      const [a, b, c] = [m.a, m.b, m.c].map((n) => n % (raw.length + 1)).sort((x, y) => x - y);
      return Buffer.concat([
        raw.subarray(0, a),
        raw.subarray(b, c),
        raw.subarray(a, b),
        raw.subarray(c),
      ]);
    }
    case 'headerOnly':
      return raw.subarray(0, VALUE_HEADER_BYTES);
    case 'randomPayload':
      // A valid header (and the first 4 bytes of the payload, the key id when encrypted) + noise.
      return Buffer.concat([
        raw.subarray(0, VALUE_HEADER_BYTES + (m.keepKeyId ? 4 : 0)),
        Buffer.from(m.payload),
      ]);
    case 'otherKey':
      // A valid value of another session, moved under this session's key.
      return pool[(i + 1 + (m.other % (pool.length - 1))) % pool.length].raw;
    case 'otherStore':
      // The value another configuration wrote (plaintext under encryption, or the reverse).
      return foreign[i % foreign.length].raw;
    case 'legacyJson':
      // A 0.1 value (JSON without the header).
      return Buffer.from(JSON.stringify(base.data));
  }
}

describe('stored-value decoder: fuzzing against a real memcached', () => {
  let memcached: MemcachedProcess;
  let cache: SessionCache;
  const keySecret = randomBytes(24).toString('base64url');
  const encryptionKey = randomBytes(32);
  /** Texts that must never appear in a warning. */
  const secrets = [
    keySecret,
    encryptionKey.toString('hex'),
    encryptionKey.toString('base64'),
    encryptionKey.toString('base64url'),
  ];

  function makeStore(options: SessionStoreOptions): {
    store: SessionStore;
    logger: RecordingLogger;
  } {
    const logger = new RecordingLogger();
    return { store: new SessionStore(cache, { keySecret, ...options }, logger), logger };
  }

  /** Saves a few sessions through `store` and reads back their raw values. */
  async function validValues(store: SessionStore): Promise<Valid[]> {
    const fields = [
      { user: 'ada', visits: 3 },
      { user: 'grace', roles: ['admin', 'ops'], note: 'ünïcödé ✓ \u0000 "quoted"' },
      { user: 'alan', nested: { a: [1, 2, { b: null }] } },
      {},
    ];
    const pool: Valid[] = [];
    for (const data of fields) {
      const sid = randomBytes(24).toString('base64url');
      const session = newSession(store, sid, data, { maxAge: 3_600_000 });
      await store.setSession(sid, session);
      const raw = await memcached.getRaw(store.key(sid));
      if (raw === null) throw new Error('the session was not stored');
      pool.push({ sid, raw, data: JSON.parse(JSON.stringify(session)) });
    }
    return pool;
  }

  /** Writes `value` under session `sid`'s key and reads the session back. */
  async function readBack(store: SessionStore, sid: string, value: Buffer) {
    await memcached.setRaw(store.key(sid), value, 60);
    return store.getSession(sid);
  }

  function expectNoLeak(logger: RecordingLogger, store: SessionStore, sids: string[]) {
    for (const warning of [...logger.warnings, ...logger.debugs]) {
      for (const sid of sids) {
        expect(warning).not.toContain(sid);
        expect(warning).not.toContain(store.key(sid));
      }
      for (const secret of secrets) expect(warning).not.toContain(secret);
    }
  }

  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
    cache = SessionCache.fromUrl(memcached.url);
  });
  afterAll(async () => {
    await cache?.close();
    await memcached?.kill();
  });

  for (const encrypted of [false, true]) {
    const options: SessionStoreOptions = encrypted ? { encryptionKeys: [encryptionKey] } : {};
    const foreignOptions: SessionStoreOptions = encrypted
      ? {}
      : { encryptionKeys: [encryptionKey] };

    describe(encrypted ? 'with encryption' : 'without encryption', () => {
      it('random bytes: null or a valid session, never a rejection, no leak in warnings', async () => {
        const { store, logger } = makeStore(options);
        const header = fc
          .tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 10, maxLength: 10 }))
          .map(([flags, rest]) => Buffer.concat([Buffer.from([0xf5, flags]), Buffer.from(rest)]));
        const bytes = fc.oneof(
          fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)),
          // With the magic byte, so the header is read and the payload is decrypted or parsed.
          fc
            .tuple(header, fc.uint8Array({ maxLength: 512 }))
            .map(([h, p]) => Buffer.concat([h, Buffer.from(p)])),
          // Text that is nearly a session.
          fc.jsonValue().map((v) => Buffer.from(JSON.stringify({ cookie: v, user: v }) ?? 'null')),
          fc
            .jsonValue()
            .map((v) =>
              encodeValue({ version: 1, generation: 0, expiresAt: 0 }, JSON.stringify(v) ?? 'null'),
            ),
        );
        const sids: string[] = [];
        await fc.assert(
          fc.asyncProperty(sessionId, bytes, async (sid, value) => {
            sids.push(sid);
            const session = await readBack(store, sid, value);
            if (session === null) return;
            // Only a value that decodes to a session object (a cookie object) is served.
            expect(encrypted).toBe(false);
            const parsed = JSON.parse(decodeValue(value).payload.toString('utf8'));
            expect(session).toEqual(parsed);
            expect(typeof (session as SessionData).cookie).toBe('object');
          }),
          { numRuns: RUNS },
        );
        expectNoLeak(logger, store, sids);
      });

      it('mutated valid values (bit flips, truncations, splices, re-orders, moved values, plaintext): null unless still a valid session', async () => {
        const { store, logger } = makeStore(options);
        const pool = await validValues(store);
        const foreign = await validValues(makeStore(foreignOptions).store);
        let nulls = 0;
        await fc.assert(
          fc.asyncProperty(fc.nat({ max: pool.length - 1 }), mutation, async (i, m) => {
            const { sid, raw, data } = pool[i];
            const value = mutate(m, pool, i, foreign);
            const session = await readBack(store, sid, value);
            if (value.equals(raw)) {
              expect(session).toEqual(data);
              return;
            }
            if (session === null) {
              nulls += 1;
              return;
            }
            // Without encryption a changed value may still be a valid session (a flipped digit of
            // a visit count, another session's value); it is then exactly what the bytes say.
            expect(encrypted).toBe(false);
            expect(session).toEqual(JSON.parse(decodeValue(value).payload.toString('utf8')));
          }),
          { numRuns: RUNS * 2 },
        );
        expect(nulls).toBeGreaterThan(0);
        expect(logger.warnings.length).toBeGreaterThan(0);
        expectNoLeak(
          logger,
          store,
          pool.map((v) => v.sid),
        );
      });

      it('untouched valid values read back as the session they hold', async () => {
        const { store } = makeStore(options);
        const pool = await validValues(store);
        for (const { sid, raw, data } of pool) {
          expect(await readBack(store, sid, raw)).toEqual(data);
        }
      });
    });
  }
});
