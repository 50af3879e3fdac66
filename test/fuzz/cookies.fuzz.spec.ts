// Property-based fuzzing of a running app's session cookie handling (issue 4, "Prove it"): random,
// garbled and forged Cookie headers never get a 5xx, never get someone else's session, never
// destroy a real session, and put no session id or secret into the logs.
import { randomBytes } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import * as fc from 'fast-check';
import request from 'supertest';
import { SessionStore } from '../../src';
import { cookieFrom, sessionIdOf } from '../support/http';
import { CapturingLogger } from '../support/logger';
import { MemcachedProcess } from '../support/memcached.mjs';
import { coreModule } from '../e2e/core/core.module';

const RUNS = 300;
const NAME = 'connect.sid';
const USERS = ['ada', 'grace', 'alan', 'barbara'];

/** Characters Node's http client sends in a header value (it refuses the others). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const headerChar = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
  { weight: 3, arbitrary: fc.constantFrom(...';=%" ,\t:.+/s', '%3A', '%3a', '%2B', '%zz', '%') },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)) },
);
const text = (maxLength: number) => fc.string({ unit: headerChar, maxLength });
/** What a cookie name may look like (a token), plus near misses of the session cookie's name. */
const cookieName = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9!#$&'*+.^_`|~-]{1,20}$/),
  fc.constantFrom('CONNECT.SID', 'connect.sid2', 'connect_sid', 'sid', 'connect.', '.sid'),
);

/** The value cookie.parse 0.7 (express-session's parser) gives each `name=value` pair. */
function cookieValues(header: string): string[] {
  const values: string[] = [];
  for (const piece of header.split(';')) {
    const eq = piece.indexOf('=');
    if (eq < 0) continue;
    let value = piece.slice(eq + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      value = value.slice(1, -1);
    } else if (value === '"') {
      value = '';
    }
    try {
      values.push(value.includes('%') ? decodeURIComponent(value) : value);
    } catch {
      values.push(value);
    }
  }
  return values;
}

describe('Cookie header fuzzing against a running app', () => {
  const secret = randomBytes(24).toString('base64url');
  const logger = new CapturingLogger();
  let memcached: MemcachedProcess;
  let app: INestApplication;
  /** Each user's real cookie pair (`connect.sid=s%3A…`), its decoded value, and its session id. */
  const real: { user: string; cookie: string; decoded: string; sid: string }[] = [];

  /** The users whose real session cookie value appears as a whole cookie value in `header`. */
  function holders(header: string): string[] {
    const values = new Set(cookieValues(header));
    return real.filter((r) => values.has(r.decoded)).map((r) => r.user);
  }

  async function send(route: 'me' | 'visits' | 'logout', cookie: string) {
    const server = app.getHttpServer();
    const req = route === 'me' ? request(server).get('/me') : request(server).post(`/${route}`);
    const res = await req.set('Cookie', cookie);
    expect(res.status).toBeLessThan(500);
    for (const r of real) expect(res.text).not.toContain(r.sid);
    return res;
  }

  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
    const moduleRef = await Test.createTestingModule({
      imports: [coreModule(memcached.url, { session: { secret } })],
    }).compile();
    app = moduleRef.createNestApplication({ logger });
    await app.listen(0, '127.0.0.1');
    for (const user of USERS) {
      const res = await request(app.getHttpServer()).post('/login').send({ user }).expect(200);
      const cookie = cookieFrom(res);
      const decoded = decodeURIComponent(cookie.slice(NAME.length + 1));
      real.push({ user, cookie, decoded, sid: sessionIdOf(cookie) });
    }
  });

  afterAll(async () => {
    await app?.close();
    await memcached?.kill();
  });

  afterEach(async () => {
    // Nothing sent above destroyed or took over a real session.
    for (const r of real) {
      const res = await send('me', r.cookie);
      expect(res.status).toBe(200);
      expect(res.body.user).toBe(r.user);
    }
    const logs = logger.lines.join('\n');
    for (const r of real) {
      expect(logs).not.toContain(r.sid);
      expect(logs).not.toContain(app.get(SessionStore).key(r.sid));
    }
    expect(logs).not.toContain(secret);
  });

  /** Headers an attacker could send: random text, random cookies, garbled and forged real ones. */
  function headers(): fc.Arbitrary<string> {
    const realIndex = fc.nat({ max: USERS.length - 1 });
    const sessionChar = fc.constantFrom(
      ...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/.:=',
    );
    /** A real decoded value, changed: one char replaced, removed or added, cut, re-signed... */
    const forgedValue = fc
      .tuple(
        realIndex,
        realIndex,
        fc.nat(),
        sessionChar,
        fc.constantFrom('replace', 'remove', 'insert', 'cut', 'swapSignature', 'append', 'prefix'),
      )
      .map(([i, j, at, c, how]) => {
        const v = real[i].decoded;
        const p = at % v.length;
        switch (how) {
          case 'replace':
            return v.slice(0, p) + c + v.slice(p + 1);
          case 'remove':
            return v.slice(0, p) + v.slice(p + 1);
          case 'insert':
            return v.slice(0, p) + c + v.slice(p);
          case 'cut':
            return v.slice(0, p);
          case 'swapSignature': {
            // Session id of one user, signature of another.
            const other = real[j].decoded;
            return v.slice(0, v.lastIndexOf('.')) + other.slice(other.lastIndexOf('.'));
          }
          case 'append':
            return v + c;
          default:
            return c + v.slice(2);
        }
      })
      .filter((v) => !real.some((r) => r.decoded === v));
    const encodedForgery = fc
      .tuple(forgedValue, fc.constantFrom('encoded', 'raw', 'quoted'))
      .map(([v, how]) =>
        how === 'raw' ? v : how === 'quoted' ? `"${encodeURIComponent(v)}"` : encodeURIComponent(v),
      );
    /** A real cookie pair with random characters of its encoded form replaced. */
    const garbled = fc
      .tuple(realIndex, fc.array(fc.tuple(fc.nat(), headerChar), { minLength: 1, maxLength: 4 }))
      .map(([i, edits]) =>
        edits.reduce((c, [at, ch]) => {
          const p = NAME.length + 1 + (at % (c.length - NAME.length - 1));
          return c.slice(0, p) + ch + c.slice(p + 1);
        }, real[i].cookie),
      );
    const truncated = fc
      .tuple(realIndex, fc.nat())
      .map(([i, at]) => real[i].cookie.slice(0, at % real[i].cookie.length));
    const sessionValue = fc.oneof(
      text(60),
      fc.string({ unit: sessionChar, maxLength: 80 }).map((v) => `s:${v}`),
      fc.string({ unit: sessionChar, maxLength: 80 }).map((v) => `s%3A${v}`),
      fc
        .tuple(
          fc.uint8Array({ minLength: 24, maxLength: 24 }),
          fc.uint8Array({ minLength: 32, maxLength: 32 }),
        )
        .map(([id, sig]) => {
          const signature = Buffer.from(sig).toString('base64').replace(/=+$/, '');
          return encodeURIComponent(`s:${Buffer.from(id).toString('base64url')}.${signature}`);
        }),
      encodedForgery,
      fc.integer({ min: 1000, max: 4000 }).chain((n) => text(n).map((t) => t.padEnd(n, 'x'))),
    );
    const pair = fc.oneof(
      { weight: 3, arbitrary: sessionValue.map((v) => `${NAME}=${v}`) },
      { weight: 2, arbitrary: fc.tuple(cookieName, text(40)).map(([n, v]) => `${n}=${v}`) },
      { weight: 1, arbitrary: text(40) },
    );
    const pairs = fc
      .tuple(fc.array(pair, { minLength: 1, maxLength: 4 }), fc.constantFrom('; ', ';', ' ; ', ','))
      .map(([ps, separator]) => ps.join(separator));
    return fc
      .oneof(
        { weight: 2, arbitrary: text(200) },
        { weight: 4, arbitrary: pairs },
        { weight: 3, arbitrary: encodedForgery.map((v) => `${NAME}=${v}`) },
        { weight: 2, arbitrary: garbled },
        { weight: 1, arbitrary: truncated },
        // Forged cookie first, the real one after it: the first cookie of a name is the one read.
        {
          weight: 1,
          arbitrary: fc
            .tuple(encodedForgery, realIndex)
            .map(([v, i]) => `${NAME}=${v}; ${real[i].cookie}`),
        },
        // Other cookies around a real one.
        {
          weight: 1,
          arbitrary: fc
            .tuple(pairs, realIndex, pairs)
            .map(([a, i, b]) => `${a}; ${real[i].cookie}; ${b}`),
        },
      )
      .filter((header) => HEADER_VALUE.test(header));
  }

  it('the real cookies work, and forged or garbled ones of them do not', async () => {
    // Sanity check for the oracle: it must be able to tell a real cookie from a forged one.
    for (const r of real) {
      expect(holders(r.cookie)).toEqual([r.user]);
      expect(holders(`${NAME}=${r.decoded}`)).toEqual([r.user]);
      expect(holders(`${NAME}=${encodeURIComponent(r.decoded)}x`)).toEqual([]);
      await send('me', `${NAME}=${encodeURIComponent(r.decoded)}x`).then((res) =>
        expect(res.status).toBe(401),
      );
    }
  });

  it('GET /me and POST /visits: never a 5xx; a session only for a header holding its real cookie', async () => {
    let authenticated = 0;
    await fc.assert(
      fc.asyncProperty(
        headers(),
        fc.constantFrom('me' as const, 'visits' as const),
        async (header, route) => {
          const users = holders(header);
          const res = await send(route, header);
          if (users.length === 0) {
            expect(res.status).toBe(401);
            return;
          }
          expect([200, 401]).toContain(res.status);
          if (res.status === 200) {
            authenticated += 1;
            if (route === 'me') expect(users).toContain(res.body.user);
          }
        },
      ),
      { numRuns: RUNS * 2 },
    );
    // Some headers did carry a real cookie (among other cookies) and were let in.
    expect(authenticated).toBeGreaterThan(0);
  });

  it('POST /logout with forged cookies: never a 5xx, and no real session is destroyed', async () => {
    await fc.assert(
      fc.asyncProperty(
        headers().filter((header) => holders(header).length === 0),
        async (header) => {
          const res = await send('logout', header);
          expect(res.status).toBe(204);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
