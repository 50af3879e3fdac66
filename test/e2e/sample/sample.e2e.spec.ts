import { randomBytes } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { CACHE_MANAGER } from '@nestjs/cache-manager';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { getSessionCacheToken, SessionCache, SessionStore } from '../../../src';
import { AppModule } from '../../../sample/app.module';
import { SESSION_COOKIE } from '../../../sample/session';
import {
  clearsCookie,
  cookieAttributes,
  cookieFrom,
  sessionIdOf,
  setCookies,
} from '../../support/http';
import { CapturingLogger } from '../../support/logger';
import { MemcachedProcess } from '../../support/memcached.mjs';
import { createApp, PLATFORMS } from '../../support/platform';

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('sample app: general cache on memcached A, sessions on memcached B', () => {
    const secret = randomBytes(24).toString('base64url');
    const logger = new CapturingLogger();
    /** Every session id the tests saw, to check the logs against. */
    const seenSessionIds = new Set<string>();
    let general: MemcachedProcess; // A
    let sessions: MemcachedProcess; // B
    let app: INestApplication;

    const api = () => request(app.getHttpServer());

    /** The memcached key of the session behind a cookie. */
    function sessionKey(cookie: string): string {
      const sid = sessionIdOf(cookie);
      seenSessionIds.add(sid);
      return app.get(SessionStore).key(sid);
    }

    async function login(username: string, cookie?: string): Promise<string> {
      const req = api().post('/login').send({ username });
      if (cookie) req.set('Cookie', cookie);
      const res = await req.expect(200);
      expect(res.body.user.username).toBe(username);
      return cookieFrom(res, SESSION_COOKIE);
    }

    async function stamp(): Promise<{ value: string; fromCache: boolean }> {
      return (await api().get('/cache/stamp').expect(200)).body;
    }

    beforeAll(async () => {
      [general, sessions] = await Promise.all([MemcachedProcess.start(), MemcachedProcess.start()]);
      const moduleRef = await Test.createTestingModule({
        imports: [
          AppModule.forRoot({
            generalCacheUrl: general.url,
            sessionCacheUrl: sessions.url,
            sessionSecret: secret,
          }),
        ],
      }).compile();
      app = await createApp(moduleRef, platform, { logger });
    });

    afterAll(async () => {
      await app?.close();
      await Promise.all([general?.stop(), sessions?.stop()]);
    });

    it('sets an HttpOnly session cookie at login that GET /me replays', async () => {
      await api().get('/me').expect(401);

      const res = await api().post('/login').send({ username: 'ada' }).expect(200);
      expect(res.body).toEqual({ user: { username: 'ada', loggedInAt: expect.any(String) } });
      const attributes = cookieAttributes(res, SESSION_COOKIE);
      expect(attributes).toHaveProperty('httponly');
      expect(attributes?.samesite).toBe('Lax');
      const cookie = cookieFrom(res, SESSION_COOKIE);

      const me = await api().get('/me').set('Cookie', cookie).expect(200);
      expect(me.body).toEqual({ user: res.body.user, visits: 0 });
      // The session is on B, and only there.
      expect(await sessions.getRaw(sessionKey(cookie))).not.toBeNull();
      expect(await general.getRaw(sessionKey(cookie))).toBeNull();
    });

    it('rejects a login without a usable username (400) and starts no session', async () => {
      for (const body of [{}, { username: '' }, { username: '   ' }, { username: 42 }]) {
        const res = await api().post('/login').send(body).expect(400);
        expect(setCookies(res)).toEqual([]);
      }
    });

    it('keeps changes to the session data between requests', async () => {
      const cookie = await login('grace');
      await api().post('/visits').set('Cookie', cookie).expect(200, { visits: 1 });
      await api().post('/visits').set('Cookie', cookie).expect(200, { visits: 2 });
      const me = await api().get('/me').set('Cookie', cookie).expect(200);
      expect(me.body.visits).toBe(2);
    });

    it('gives the session a new id at login: the pre-login id is dead (no fixation)', async () => {
      // An anonymous session, as a visitor (or an attacker planting the id) would have.
      const anonymous = await api().post('/visits').expect(200, { visits: 1 });
      const before = cookieFrom(anonymous, SESSION_COOKIE);
      expect(await sessions.getRaw(sessionKey(before))).not.toBeNull();

      const after = await login('alan', before);
      expect(sessionIdOf(after)).not.toBe(sessionIdOf(before));
      expect(await sessions.getRaw(sessionKey(before))).toBeNull();
      expect(await sessions.getRaw(sessionKey(after))).not.toBeNull();

      await api().get('/me').set('Cookie', before).expect(401);
      await api().get('/me').set('Cookie', after).expect(200);
      // The old cookie now only gets a fresh, empty session.
      await api().post('/visits').set('Cookie', before).expect(200, { visits: 1 });
    });

    it('POST /cache/clear flushes memcached A, and the user stays logged in', async () => {
      const cookie = await login('barbara');
      await stamp();
      const hitsBefore = Number((await general.stats()).get_hits);
      const cached = await stamp();
      expect(cached.fromCache).toBe(true);
      const [generalBefore, sessionsBefore] = await Promise.all([
        general.stats(),
        sessions.stats(),
      ]);
      // The cached read was served by memcached A.
      expect(Number(generalBefore.get_hits)).toBeGreaterThan(hitsBefore);

      await api().post('/cache/clear').expect(200, { cleared: true });

      const [generalAfter, sessionsAfter] = await Promise.all([general.stats(), sessions.stats()]);
      expect(Number(generalAfter.cmd_flush)).toBe(Number(generalBefore.cmd_flush) + 1);
      expect(sessionsAfter.cmd_flush).toBe(sessionsBefore.cmd_flush);
      // The cached value is gone from A: the next read misses there and recomputes it.
      const recomputed = await stamp();
      expect(recomputed.fromCache).toBe(false);
      expect(Number((await general.stats()).get_misses)).toBeGreaterThan(
        Number(generalAfter.get_misses),
      );

      // ...while the session on B is untouched.
      expect(await sessions.getRaw(sessionKey(cookie))).not.toBeNull();
      const me = await api().get('/me').set('Cookie', cookie).expect(200);
      expect(me.body.user.username).toBe('barbara');
    });

    it('flushing memcached B logs the user out and leaves the general cache alone', async () => {
      const cookie = await login('linus');
      await stamp();
      const cached = await stamp();
      expect(cached.fromCache).toBe(true);

      await sessions.flush();

      await api().get('/me').set('Cookie', cookie).expect(401);
      expect(await stamp()).toEqual(cached);
    });

    it('logout destroys the session and clears the cookie; the old cookie is unusable', async () => {
      const cookie = await login('margaret');
      const res = await api()
        .post('/logout')
        .set('Cookie', cookie)
        .expect(200, { loggedOut: true });
      expect(clearsCookie(res, SESSION_COOKIE)).toBe(true);

      expect(await sessions.getRaw(sessionKey(cookie))).toBeNull();
      await api().get('/me').set('Cookie', cookie).expect(401);
      await api().get('/admin/session-cache').set('Cookie', cookie).expect(401);
    });

    it('POST /logout-everywhere ends every session of that user and nobody else', async () => {
      const laptop = await login('barbara');
      const phone = await login('barbara');
      const other = await login('john');
      await api().post('/logout-everywhere').set('Cookie', phone).expect(200, { sessions: 2 });
      await api().get('/me').set('Cookie', laptop).expect(401);
      await api().get('/me').set('Cookie', phone).expect(401);
      await api().get('/me').set('Cookie', other).expect(200);
      expect(await sessions.getRaw(sessionKey(laptop))).toBeNull();
    });

    it('GET /admin/session-cache reports memcached B through the injected SessionCache', async () => {
      await api().get('/admin/session-cache').expect(401);
      const cookie = await login('edsger');

      const res = await api().get('/admin/session-cache').set('Cookie', cookie).expect(200);
      expect(Object.keys(res.body.servers)).toEqual([sessions.address]);
      expect(JSON.stringify(res.body)).not.toContain(general.address);
      const reported = res.body.servers[sessions.address];
      expect(reported).toEqual({
        curr_items: expect.any(Number),
        curr_connections: expect.any(Number),
        uptime: expect.any(Number),
      });
      expect(reported.curr_items).toBe(Number((await sessions.stats()).curr_items));
      expect(reported.curr_items).toBeGreaterThanOrEqual(1);

      // The injected client is the library's, on B; CACHE_MANAGER is another object.
      const sessionCache = app.get<SessionCache>(getSessionCacheToken());
      expect(sessionCache).toBeInstanceOf(SessionCache);
      expect(sessionCache.servers).toEqual([sessions.address]);
      expect(app.get(CACHE_MANAGER)).not.toBe(sessionCache);
    });

    it('logs neither session ids nor the secret', () => {
      expect(seenSessionIds.size).toBeGreaterThan(0);
      const logs = logger.lines.join('\n');
      expect(logs).not.toContain(secret);
      for (const sid of seenSessionIds) expect(logs).not.toContain(sid);
    });
  });
});
