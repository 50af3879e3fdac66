import { jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { SessionCache, SessionStore } from '../../src';
import { MemcachedProcess } from '../support/memcached.mjs';
import { newSession, RecordingLogger } from '../support/store';

// "A session never expires before its cookie" (issue 9): memcached's clock ticks in whole
// seconds, so an item stored with TTL n lives between n - 1 and n seconds. Every session must
// still be there 200 ms before its cookie expires, whatever the rounding.
jest.setTimeout(120_000);

const sleepUntil = (at: number) => new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));

describe('sessions outlive their cookies, never the other way round', () => {
  let memcached: MemcachedProcess;
  let client: SessionCache;
  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
    client = SessionCache.fromUrl(memcached.url);
  });
  afterAll(async () => {
    await client.close();
    await memcached.kill();
  });

  it('20 sessions each for maxAge 1.5 s, 3 s and 60 s, lazyTouch 0 and default, logins spread over 1 s', async () => {
    const groups = [1500, 3000, 60_000].flatMap((maxAge) =>
      [0, undefined].map((lazyTouch) => ({
        maxAge,
        lazyTouch,
        store: new SessionStore(client, { keySecret: 'k', lazyTouch }, new RecordingLogger()),
      })),
    );
    const checks = groups.flatMap(({ maxAge, lazyTouch, store }) =>
      Array.from({ length: 20 }, async (_, i) => {
        await new Promise((r) => setTimeout(r, (i * 1000) / 20 + Math.random() * 50));
        const id = randomBytes(18).toString('base64url');
        const session = newSession(store, id, { user: id }, { maxAge });
        const expires = (session.cookie.expires as Date).getTime();
        await store.setSession(id, session);
        await sleepUntil(expires - 200);
        const found = (await store.getSession(id)) as { user?: string } | null;
        return { maxAge, lazyTouch: lazyTouch ?? 'default', there: found?.user === id };
      }),
    );
    const results = await Promise.all(checks);
    const missing = results.filter((r) => !r.there);
    expect(missing).toEqual([]);
    expect(results).toHaveLength(120);
  });
});
