import type { INestApplication } from '@nestjs/common';
import { CACHE_MANAGER } from '@nestjs/cache-manager';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { getSessionCacheToken, SESSION_CACHE, SessionCache, SessionStore } from '../../../src';
import type { SessionCacheOptions } from '../../../src';
import { cookieFrom, cookieAttributes, sessionIdOf } from '../../support/http';
import { CapturingLogger } from '../../support/logger';
import { storedPayload } from '../../support/store';
import { eventually } from '../../support/wait';
import { MemcachedProcess, rawCommand } from '../../support/memcached.mjs';
import { createApp, type Platform, PLATFORMS, SECRET } from '../../support/platform';
import { coreModule, Gate, SessionInfo } from './core.module';

async function startApp(
  platform: Platform,
  url: string,
  options: Partial<SessionCacheOptions> = {},
) {
  const moduleRef = await Test.createTestingModule({
    imports: [coreModule(url, options)],
  }).compile();
  const logger = new CapturingLogger();
  const app = await createApp(moduleRef, platform, { logger });
  return { app, logger, server: app.getHttpServer() };
}

/** Runs `test` against a fresh scenario app and closes the app afterwards, whatever happens. */
async function withApp(
  platform: Platform,
  url: string,
  options: Partial<SessionCacheOptions>,
  test: (ctx: { app: INestApplication; logger: CapturingLogger }) => Promise<void>,
): Promise<void> {
  const ctx = await startApp(platform, url, options);
  try {
    await test(ctx);
  } finally {
    await ctx.app.close();
  }
}

/** The memcached key of the session behind a cookie, as the app's store computes it. */
function keyOf(app: INestApplication, cookie: string): string {
  return app.get(SessionStore).key(sessionIdOf(cookie));
}

async function login(app: INestApplication, user = 'ada'): Promise<string> {
  const res = await request(app.getHttpServer()).post('/login').send({ user }).expect(200);
  return cookieFrom(res);
}

// One table, two platforms: every scenario runs on Nest's Express adapter and on its Fastify adapter.
describe.each(PLATFORMS)('on %s', (platform) => {
  describe('SessionCacheModule e2e (real memcached)', () => {
    let memcached: MemcachedProcess;
    let app: INestApplication;
    let logger: CapturingLogger;

    beforeAll(async () => {
      memcached = await MemcachedProcess.start();
      ({ app, logger } = await startApp(platform, memcached.url));
    });
    afterAll(async () => {
      await app?.close();
      await memcached?.kill();
    });

    it('persists a session across requests (Set-Cookie replayed)', async () => {
      const res = await request(app.getHttpServer())
        .post('/login')
        .send({ user: 'ada' })
        .expect(200);
      const attributes = cookieAttributes(res);
      expect(attributes).toHaveProperty('httponly');
      expect(attributes?.samesite).toBe('Lax');
      const cookie = cookieFrom(res);
      await request(app.getHttpServer()).post('/visits').set('Cookie', cookie).expect(200);
      const me = await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
      expect(me.body).toEqual({ user: 'ada', visits: 1 });
      const stored = await memcached.getRaw(keyOf(app, cookie));
      expect(JSON.parse(String(storedPayload(stored)))).toMatchObject({ user: 'ada', visits: 1 });
    });

    it('does not store sessions nobody wrote to (saveUninitialized: false)', async () => {
      const before = Number((await memcached.stats()).curr_items);
      const res = await request(app.getHttpServer()).get('/public').expect(200);
      expect(res.body).toEqual({ hasSession: true });
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(Number((await memcached.stats()).curr_items)).toBe(before);
    });

    it('injects the very client the store uses, under its own token, not CACHE_MANAGER', () => {
      const info = app.get(SessionInfo);
      expect(info.cache).toBeInstanceOf(SessionCache);
      expect(info.cache).toBe(app.get(SessionStore).client);
      expect(app.get(SESSION_CACHE)).toBe(info.cache);
      expect(app.get(getSessionCacheToken())).toBe(info.cache);
      expect(app.get(CACHE_MANAGER)).not.toBe(info.cache);
      expect(info.cache.servers).toEqual([memcached.address]);
    });

    it('logs the user out when the session memcached is flushed', async () => {
      const cookie = await login(app);
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
      await memcached.flush();
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(401);
    });

    it('logout destroys the session: the old cookie no longer works', async () => {
      const cookie = await login(app);
      await request(app.getHttpServer()).post('/logout').set('Cookie', cookie).expect(204);
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(401);
      expect(await memcached.getRaw(keyOf(app, cookie))).toBeNull();
    });

    it('login regenerates the session id (the pre-login session is dead)', async () => {
      const first = await login(app, 'before');
      const second = cookieFrom(
        await request(app.getHttpServer())
          .post('/login')
          .set('Cookie', first)
          .send({ user: 'after' })
          .expect(200),
      );
      expect(sessionIdOf(second)).not.toBe(sessionIdOf(first));
      await request(app.getHttpServer()).get('/me').set('Cookie', first).expect(401);
      expect((await request(app.getHttpServer()).get('/me').set('Cookie', second)).body.user).toBe(
        'after',
      );
    });

    it('4. a slow request that saves after a parallel logout does not bring the session back', async () => {
      const cookie = await login(app);
      const gate = app.get(Gate);
      const slow = request(app.getHttpServer()).post('/slow/visits').set('Cookie', cookie).then();
      await gate.reached; // the slow request has loaded the session and sits in its handler
      await request(app.getHttpServer()).post('/logout').set('Cookie', cookie).expect(204);
      gate.open();
      await slow; // it modifies the session and saves it after the logout
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(401);
      expect(await memcached.getRaw(keyOf(app, cookie))).toBeNull();
    });

    it('5. answers 413 for an oversized session and keeps the stored one intact', async () => {
      const cookie = await login(app);
      await request(app.getHttpServer()).post('/visits').set('Cookie', cookie).expect(200);
      const res = await request(app.getHttpServer())
        .post('/big')
        .set('Cookie', cookie)
        .send({ size: 2 * 1024 * 1024 })
        .expect(413);
      expect(res.body.message).toMatch(
        /session is too large to store \(\d+ bytes, limit 1047552\)/,
      );
      const me = await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
      expect(me.body).toEqual({ user: 'ada', visits: 1 });
    });

    it('6. treats a corrupt stored value as no session, with a warning that names no id', async () => {
      const cookie = await login(app);
      const sid = sessionIdOf(cookie);
      await memcached.setRaw(app.get(SessionStore).key(sid), '{"cookie":', 600);
      logger.lines.length = 0;
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(401);
      const warning = logger.lines.find((l) => l.includes('could not be decoded'));
      expect(warning).toBeDefined();
      expect(logger.lines.join('\n')).not.toContain(sid);
    });

    it('2. never serves a session whose cookie expired, even while memcached still has it', async () => {
      const cookie = await login(app);
      const key = keyOf(app, cookie);
      const data = JSON.parse(String(storedPayload(await memcached.getRaw(key))));
      data.cookie.expires = new Date(Date.now() - 1000).toISOString();
      await memcached.setRaw(key, JSON.stringify(data), 600);
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(401);
    });
    it('3. refreshes an unmodified session with TOUCH and never re-sends it', async () => {
      const options = { session: { secret: SECRET, cookie: { maxAge: 3_600_000 } }, lazyTouch: 0 };
      await withApp(platform, memcached.url, options, async ({ app: rolling }) => {
        const cookie = await login(rolling);
        const key = keyOf(rolling, cookie);
        await rawCommand(memcached.port, `touch ${key} 5`); // as if the session were about to expire
        expect(await memcached.ttl(key)).toBeLessThanOrEqual(5);
        const before = await memcached.stats();
        await request(rolling.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
        const after = await memcached.stats();
        expect(Number(after.cmd_touch)).toBe(Number(before.cmd_touch) + 1);
        expect(Number(after.cmd_set)).toBe(Number(before.cmd_set));
        expect(await memcached.ttl(key)).toBeGreaterThan(3590);
      });
    });

    it('3. with lazy touch (the default), an unchanged read costs one memcached command', async () => {
      const options = { session: { secret: SECRET, cookie: { maxAge: 3_600_000 } } };
      await withApp(platform, memcached.url, options, async ({ app: lazy }) => {
        const cookie = await login(lazy);
        const before = await memcached.stats();
        for (let i = 0; i < 50; i++) {
          await request(lazy.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
        }
        const after = await memcached.stats();
        const delta = (name: string) => Number(after[name]) - Number(before[name]);
        expect(delta('cmd_get')).toBe(50);
        expect({ touch: delta('cmd_touch'), set: delta('cmd_set') }).toEqual({ touch: 0, set: 0 });
        // memcached keeps it past the cookie's hour: 1 h plus the 10% slack.
        expect(await memcached.ttl(keyOf(lazy, cookie))).toBeGreaterThan(3600);
      });
    });

    it('rolling: true sends the cookie again at every response; an unchanged session is still not written', async () => {
      const unchanged = await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', await login(app))
        .expect(200);
      expect(unchanged.headers['set-cookie']).toBeUndefined(); // rolling: false, the default
      const options = { session: { secret: SECRET, rolling: true, cookie: { maxAge: 3_600_000 } } };
      await withApp(platform, memcached.url, options, async ({ app: rolling }) => {
        const cookie = await login(rolling);
        const before = await memcached.stats();
        for (let i = 0; i < 5; i++) {
          const res = await request(rolling.getHttpServer())
            .get('/me')
            .set('Cookie', cookie)
            .expect(200);
          expect(cookieFrom(res)).toBe(cookie);
          expect(Date.parse(cookieAttributes(res)!.expires)).toBeGreaterThan(
            Date.now() + 3_500_000,
          );
        }
        const after = await memcached.stats();
        const delta = (name: string) => Number(after[name]) - Number(before[name]);
        expect({ touch: delta('cmd_touch'), set: delta('cmd_set') }).toEqual({ touch: 0, set: 0 });
      });
    });

    it('7. stores sessions with a custom serializer given in the module options', async () => {
      const options: Partial<SessionCacheOptions> = {
        prefix: 'b64:',
        serializer: {
          stringify: (s) => Buffer.from(JSON.stringify(s)).toString('base64'),
          parse: (raw) => JSON.parse(Buffer.from(raw.toString(), 'base64').toString()),
        },
      };
      await withApp(platform, memcached.url, options, async ({ app: custom }) => {
        const cookie = await login(custom, 'grace');
        const raw = String(storedPayload(await memcached.getRaw(keyOf(custom, cookie))));
        expect(raw).toMatch(/^[A-Za-z0-9+/=]+$/);
        expect(JSON.parse(Buffer.from(raw, 'base64').toString())).toMatchObject({ user: 'grace' });
        const me = await request(custom.getHttpServer())
          .get('/me')
          .set('Cookie', cookie)
          .expect(200);
        expect(me.body.user).toBe('grace');
      });
    });

    it('logout everywhere: destroyUserSessions ends every session of that user and nobody else', async () => {
      const options = { userId: (s: object) => (s as { user?: string }).user };
      await withApp(platform, memcached.url, options, async ({ app: indexed }) => {
        const server = indexed.getHttpServer();
        const [laptop, phone, other] = [
          await login(indexed, 'ada'),
          await login(indexed, 'ada'),
          await login(indexed, 'grace'),
        ];
        const res = await request(server)
          .post('/admin/logout-everywhere')
          .set('Cookie', phone)
          .expect(200);
        expect(res.body).toEqual({ sessions: 2 });
        await request(server).get('/me').set('Cookie', laptop).expect(401);
        await request(server).get('/me').set('Cookie', phone).expect(401);
        expect((await request(server).get('/me').set('Cookie', other).expect(200)).body.user).toBe(
          'grace',
        );
      });
    });

    it('clear ends every session of the store without flush_all; other keys stay', async () => {
      const own = await MemcachedProcess.start(); // a generation of its own, apart from the others
      try {
        await withApp(platform, own.url, {}, async ({ app: cleared }) => {
          const server = cleared.getHttpServer();
          const cookie = await login(cleared);
          await own.setRaw('general:stamp', 'kept', 600);
          const before = await own.stats();
          await request(server).post('/admin/clear').expect(204);
          await request(server).get('/me').set('Cookie', cookie).expect(401);
          expect(String(await own.getRaw('general:stamp'))).toBe('kept');
          expect((await own.stats()).cmd_flush).toBe(before.cmd_flush);
          // New logins work after a clear.
          await request(server)
            .get('/me')
            .set('Cookie', await login(cleared))
            .expect(200);
        });
      } finally {
        await own.kill();
      }
    });
  });

  describe('cookie lifetimes (e2e)', () => {
    let memcached: MemcachedProcess;
    beforeAll(async () => {
      memcached = await MemcachedProcess.start();
    });
    afterAll(() => memcached.kill());

    it('1. keeps a session whose cookie lives 40 days, with the TTL taken from the cookie', async () => {
      const options = { session: { secret: SECRET, cookie: { maxAge: 40 * 86_400_000 } } };
      await withApp(platform, memcached.url, options, async ({ app }) => {
        const cookie = await login(app);
        await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
        await request(app.getHttpServer()).post('/visits').set('Cookie', cookie).expect(200);
        expect(await memcached.ttl(keyOf(app, cookie))).toBeGreaterThan(40 * 86_400 - 10);
      });
    });
  });

  describe('failure behaviour (e2e)', () => {
    let memcached: MemcachedProcess;
    beforeAll(async () => {
      memcached = await MemcachedProcess.start();
    });
    afterEach(() => memcached.resume()); // never leave it frozen for the next test, even on failure
    afterAll(() => memcached.kill());

    it('answers 503 within the time bound when memcached is killed, and serves again once it is back', async () => {
      await withApp(platform, memcached.url, { timeout: 300 }, async ({ app, logger }) => {
        const cookie = await login(app);
        await memcached.kill();
        const started = Date.now();
        const res = await request(app.getHttpServer()).get('/me').set('Cookie', cookie);
        expect(res.status).toBe(503);
        expect(res.headers['retry-after']).toBe('1');
        expect(res.body.message).toMatch(/Sessions are temporarily unavailable/);
        expect(JSON.stringify(res.body)).not.toContain(memcached.address);
        expect(Date.now() - started).toBeLessThan(1000);
        expect(logger.lines.some((l) => l.includes('use req.session are answered 503'))).toBe(true);
        expect(logger.lines.join('\n')).not.toContain(sessionIdOf(cookie));

        await memcached.restart(); // empty after a restart: the user must log in again
        // The node is skipped until a background probe finds it again, then it serves again.
        await eventually(() =>
          request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(401),
        );
        const again = await login(app);
        await request(app.getHttpServer()).get('/me').set('Cookie', again).expect(200);
      });
    });

    it('reports the outage and the recovery as store events (nodeDown, nodeUp)', async () => {
      await withApp(platform, memcached.url, { timeout: 300 }, async ({ app }) => {
        const store = app.get(SessionStore);
        const events: string[] = [];
        store.on('nodeDown', ({ server }) => events.push(`down ${server}`));
        store.on('nodeUp', ({ server }) => events.push(`up ${server}`));
        const cookie = await login(app);
        await memcached.kill();
        await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(503);
        expect(events).toEqual([`down ${memcached.address}`]);
        await memcached.restart();
        await eventually(() => expect(events).toContain(`up ${memcached.address}`));
      });
    });

    it('answers 503 within the time bound when memcached hangs (SIGSTOP)', async () => {
      await withApp(platform, memcached.url, { timeout: 300 }, async ({ app }) => {
        const cookie = await login(app);
        await memcached.pause();
        const started = Date.now();
        await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(503);
        expect(Date.now() - started).toBeLessThan(1000);
        await memcached.resume();
        await eventually(() =>
          request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200),
        );
      });
    });

    it('turns a save that fails after the handler ran into a 503, not a 200', async () => {
      await withApp(platform, memcached.url, { timeout: 300 }, async ({ app }) => {
        const cookie = await login(app);
        const gate = app.get(Gate);
        const slow = request(app.getHttpServer()).post('/slow/visits').set('Cookie', cookie).then();
        await gate.reached;
        await memcached.pause(); // memcached stops answering between the load and the save
        gate.open();
        const res = await slow;
        expect(res.status).toBe(503);
        expect(res.headers['retry-after']).toMatch(/^[1-9]\d*$/);
        expect(res.body.message).toMatch(/Sessions are temporarily unavailable/);
        await memcached.resume();
        // The session itself survives. (Whether the timed-out write was applied when memcached
        // woke up is undecidable for the client, as with any timed-out write.)
        const me = await eventually(() =>
          request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200),
        );
        expect(me.body.user).toBe('ada');
      });
    });

    it("with onUnavailable: 'fail', answers 503 with Retry-After even where the session is not used", async () => {
      await withApp(
        platform,
        memcached.url,
        { timeout: 300, onUnavailable: 'fail' },
        async ({ app }) => {
          const cookie = await login(app);
          await memcached.pause();
          const res = await request(app.getHttpServer()).get('/ping').set('Cookie', cookie);
          expect(res.status).toBe(503);
          expect(res.headers['retry-after']).toBe('1');
          await memcached.resume();
        },
      );
    });

    it('lazy (default): memcached down, only what uses req.session answers 503, and nothing is written later', async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (err: unknown) => unhandled.push(err);
      process.on('unhandledRejection', onUnhandled);
      process.on('uncaughtException', onUnhandled);
      try {
        await withApp(platform, memcached.url, { timeout: 300 }, async ({ app }) => {
          const server = app.getHttpServer();
          const cookie = await login(app);
          await request(server).post('/visits').set('Cookie', cookie).expect(200);
          const key = keyOf(app, cookie);
          const before = await memcached.getRaw(key);
          const setsBefore = Number((await memcached.stats()).cmd_set);
          await memcached.pause();
          // A route that never touches the session: served, with or without the cookie, no cookie set.
          for (const withCookie of [true, false, true]) {
            const res = await (withCookie
              ? request(server).get('/ping').set('Cookie', cookie)
              : request(server).get('/ping'));
            expect(res.status).toBe(200);
            expect(res.body).toEqual({ pong: true });
            expect(res.headers['set-cookie']).toBeUndefined();
          }
          // The handler, a guard and @Session() each answer 503 with Retry-After, through the filters.
          for (const path of ['/me', '/guarded', '/decorated']) {
            const res = await request(server).get(path).set('Cookie', cookie);
            expect({ path, status: res.status }).toEqual({ path, status: 503 });
            expect(res.headers['retry-after']).toBe('1');
            expect(res.body.message).toMatch(/Sessions are temporarily unavailable/);
            expect(res.headers['set-cookie']).toBeUndefined();
          }
          // A handler that modifies the session cannot silently lose it.
          await request(server).post('/visits').set('Cookie', cookie).expect(503);
          await memcached.resume();
          const back = await eventually(() =>
            request(server).get('/me').set('Cookie', cookie).expect(200),
          );
          expect(back.body.visits).toBe(1); // nothing of the outage was written
          expect(await memcached.getRaw(key)).toEqual(before);
          expect(Number((await memcached.stats()).cmd_set)).toBe(setsBefore);
        });
        expect(unhandled).toEqual([]);
      } finally {
        process.off('unhandledRejection', onUnhandled);
        process.off('uncaughtException', onUnhandled);
      }
    });

    it("with onUnavailable: 'proceed', serves the request without a session and warns", async () => {
      const options = { timeout: 300, onUnavailable: 'proceed' as const };
      await withApp(platform, memcached.url, options, async ({ app, logger }) => {
        const cookie = await login(app);
        await memcached.pause();
        const res = await request(app.getHttpServer())
          .get('/public')
          .set('Cookie', cookie)
          .expect(200);
        expect(res.body).toEqual({ hasSession: false });
        expect(logger.lines.some((l) => l.includes('without its session'))).toBe(true);
      });
    });

    it('starts even when memcached is down, with a warning, and serves once it is up', async () => {
      await memcached.kill();
      await withApp(platform, memcached.url, {}, async ({ app, logger }) => {
        expect(logger.lines.some((l) => l.includes('not reachable at start-up'))).toBe(true);
        await request(app.getHttpServer()).post('/login').send({ user: 'x' }).expect(503);
        await memcached.restart();
        await eventually(() => login(app));
      });
    });

    it('closes its memcached connections on shutdown', async () => {
      const own = await MemcachedProcess.start(); // only this app connects to it
      /** Polls memcached's connection list until `done` holds (connections close asynchronously). */
      const clientsUntil = async (done: (clients: string[]) => boolean) => {
        const deadline = Date.now() + 5000;
        let clients = await own.clients();
        while (!done(clients) && Date.now() < deadline) {
          await new Promise((r) => setImmediate(r));
          clients = await own.clients();
        }
        return clients;
      };
      try {
        expect(await clientsUntil((c) => c.length === 0)).toEqual([]);
        const { app } = await startApp(platform, own.url);
        await login(app);
        expect((await clientsUntil((c) => c.length > 0)).length).toBeGreaterThan(0);
        await app.close();
        expect(await clientsUntil((c) => c.length === 0)).toEqual([]);
      } finally {
        await own.kill();
      }
    });
  });
});
