import { Test } from '@nestjs/testing';
import request from 'supertest';
import { cookieFrom } from '../../support/http';
import { CapturingLogger } from '../../support/logger';
import { MemcachedProcess } from '../../support/memcached.mjs';
import { createApp, PLATFORMS, SECRET } from '../../support/platform';
import { coreModule } from './core.module';

// Save before the response must leave the session as express-session's own save would: with the
// cookie touched (expires = now + maxAge), so memcached's TTL counts from this request and no
// TOUCH follows. Found by the benchmark: once the lazy-touch slack of the session's first save had
// passed, every module write cost a get-and-touch on top of its get and replace.
describe.each(PLATFORMS)('on %s, a write long after login', (platform) => {
  let memcached: MemcachedProcess;
  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
  });
  afterAll(() => memcached.kill());

  it('costs exactly one get and one set: no TOUCH after the save', async () => {
    const moduleRef = await Test.createTestingModule({
      // 10 s cookies: the lazy-touch slack of the login's save (10%) is over after 1 s.
      imports: [
        coreModule(memcached.url, {
          session: { secret: SECRET, cookie: { maxAge: 10_000 } },
          generationCheckInterval: 3_600_000, // no background read of clear()'s generation
        }),
      ],
    }).compile();
    const app = await createApp(moduleRef, platform, { logger: new CapturingLogger() });
    try {
      const server = app.getHttpServer();
      const cookie = cookieFrom(await request(server).post('/login').send({ user: 'ada' }));
      await new Promise((r) => setTimeout(r, 1500)); // the slack passes (no event to wait for)
      const stat = async () => memcached.stats();
      const before = await stat();
      for (let i = 0; i < 3; i++) {
        await request(server).post('/visits').set('Cookie', cookie).expect(200);
      }
      const after = await stat();
      const delta = (name: string) => Number(after[name]) - Number(before[name]);
      expect({ get: delta('cmd_get'), set: delta('cmd_set'), touch: delta('cmd_touch') }).toEqual({
        get: 3,
        set: 3,
        touch: 0,
      });
    } finally {
      await app.close();
    }
  });
});
