import { inspect } from 'node:util';
import {
  SessionCache,
  SessionCacheError,
  SessionCacheUnavailableError,
  SessionStore,
} from '../../src';
import { freePort, MemcachedProcess } from '../support/memcached.mjs';
import { eventually } from '../support/wait';

describe('SessionCache against a real memcached', () => {
  let memcached: MemcachedProcess;
  let cache: SessionCache;

  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
    cache = SessionCache.fromUrl(memcached.url);
  });
  afterAll(async () => {
    await cache.close();
    await memcached.stop();
  });

  it('gets, sets, adds, replaces, touches and deletes', async () => {
    expect(await cache.get('k1')).toBeNull();
    expect(await cache.replace('k1', 'x', 60)).toBe(false);
    expect(await cache.touch('k1', 60)).toBe(false);
    expect(await cache.get('k1')).toBeNull(); // touch and replace did not create it
    expect(await cache.add('k1', 'one', 60)).toBe(true);
    expect(await cache.add('k1', 'two', 60)).toBe(false);
    expect((await cache.get('k1'))?.toString()).toBe('one');
    expect(await cache.replace('k1', Buffer.from('three'), 60)).toBe(true);
    await cache.set('k1', 'four', 60);
    expect((await cache.get('k1'))?.toString()).toBe('four');
    expect(await cache.touch('k1', 120)).toBe(true);
    expect(await cache.delete('k1')).toBe(true);
    expect(await cache.delete('k1')).toBe(false);
    expect(await cache.get('k1')).toBeNull();
  });

  it('compare-and-swap: gets, storeCas, deleteIfCas, and get-and-touch (MemcachedNode)', async () => {
    const [node] = cache.nodes;
    expect(await node.gets('c1')).toBeNull();
    const added = await node.storeCas('add', 'c1', Buffer.from('one'), 60);
    expect(added).toBeInstanceOf(Buffer);
    expect(await node.storeCas('add', 'c1', Buffer.from('again'), 60)).toBeNull();
    const read = (await node.gets('c1'))!;
    expect(read.value.toString()).toBe('one');
    expect(read.cas).toEqual(added);
    // A write in between changes the CAS token: the guarded replace and delete do nothing.
    await cache.set('c1', 'two', 60);
    expect(await node.storeCas('replace', 'c1', Buffer.from('stale'), 60, read.cas)).toBeNull();
    expect(await node.deleteIfCas('c1', read.cas)).toBe(false);
    const current = (await node.gets('c1'))!;
    expect(current.value.toString()).toBe('two');
    const replaced = await node.storeCas('replace', 'c1', Buffer.from('three'), 60, current.cas);
    expect(replaced).not.toBeNull();
    expect(await node.storeCas('replace', 'missing', Buffer.from('x'), 60)).toBeNull();
    // get-and-touch answers the value it touched, and sets the TTL.
    expect((await node.getAndTouch('c1', 500))?.toString()).toBe('three');
    expect(await memcached.ttl('c1')).toBeGreaterThan(490);
    expect(await node.getAndTouch('missing', 60)).toBeNull();
    expect(await node.deleteIfCas('c1', replaced!)).toBe(true);
    expect(await cache.get('c1')).toBeNull();
  });

  it('keeps an item with a 40-day TTL (sent as an absolute time)', async () => {
    await cache.set('long', 'lives', 40 * 86_400);
    expect((await cache.get('long'))?.toString()).toBe('lives');
    expect(await cache.touch('long', 45 * 86_400)).toBe(true);
    expect((await cache.get('long'))?.toString()).toBe('lives');
  });

  it('reports stats per server', async () => {
    const stats = await cache.stats();
    expect(Object.keys(stats)).toEqual([memcached.address]);
    expect(Number(stats[memcached.address].pid)).toBe(memcached.pid);
  });

  it('refuses bad keys without a round trip', async () => {
    await expect(cache.get('')).rejects.toThrow(SessionCacheError);
    await expect(cache.get('x'.repeat(251))).rejects.toThrow(/1 to 250 bytes/);
  });

  it('reports a value over the item limit as a refusal, not as an outage', async () => {
    const err = await cache.set('big', Buffer.alloc(2 * 1024 * 1024), 60).catch((e) => e);
    expect(err).toBeInstanceOf(SessionCacheError);
    expect(err).not.toBeInstanceOf(SessionCacheUnavailableError);
    expect(err.message).toMatch(/too large/i);
  });
});

describe('SessionCache on IPv6', () => {
  it('names an IPv6 server as in the URL, also in stats', async () => {
    const memcached = await MemcachedProcess.start({ host: '::1' });
    const cache = SessionCache.fromUrl(memcached.url);
    try {
      expect(cache.servers).toEqual([`[::1]:${memcached.port}`]);
      await cache.set('k', 'v', 60);
      const stats = await cache.stats();
      expect(Object.keys(stats)).toEqual([`[::1]:${memcached.port}`]);
      expect(stats[`[::1]:${memcached.port}`].curr_items).toBe('1');
    } finally {
      await cache.close();
      await memcached.kill();
    }
  });
});

describe('SessionCache when memcached is down or hung', () => {
  it('rejects quickly with SessionCacheUnavailableError when nothing listens', async () => {
    const port = await freePort();
    const cache = SessionCache.fromUrl(`memcached://127.0.0.1:${port}`, { timeout: 300 });
    const started = Date.now();
    const err = await cache.get('k').catch((e) => e);
    expect(err).toBeInstanceOf(SessionCacheUnavailableError);
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(Date.now() - started).toBeLessThan(1000);
    const stats = await cache.stats();
    expect(stats[`127.0.0.1:${port}`].error).toBeDefined();
    await cache.close();
  });

  it('settles within the time budget when memcached hangs (SIGSTOP), and recovers on SIGCONT', async () => {
    const memcached = await MemcachedProcess.start();
    const cache = SessionCache.fromUrl(memcached.url, { timeout: 200, retryDelay: 300 });
    try {
      await cache.set('k', 'v', 60);
      await memcached.pause();
      const started = Date.now();
      const results = await Promise.allSettled([
        cache.get('k'),
        cache.touch('k', 60),
        cache.stats(),
      ]);
      const elapsed = Date.now() - started;
      expect(results[0].status).toBe('rejected');
      expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(
        SessionCacheUnavailableError,
      );
      expect((results[0] as PromiseRejectedResult).reason.message).toMatch(
        /no answer within 200 ms/,
      );
      expect(results[1].status).toBe('rejected');
      expect(results[2].status).toBe('fulfilled');
      // The bound is the budget plus timer slack, far below memjs's own retry schedule.
      expect(elapsed).toBeLessThan(1000);
      // The hung node is now skipped: the next call fails at once instead of waiting again.
      const skippedAt = Date.now();
      await expect(cache.get('k')).rejects.toThrow(/skipped: marked down/);
      expect(Date.now() - skippedAt).toBeLessThan(100);
      await memcached.resume();
      // It is tried again after retryDelay, and serves from then on.
      expect((await eventually(() => cache.get('k')))?.toString()).toBe('v');
    } finally {
      await memcached.resume();
      await cache.close();
      await memcached.stop();
    }
  });

  it('serves again right after memcached is restarted', async () => {
    const memcached = await MemcachedProcess.start();
    const cache = SessionCache.fromUrl(memcached.url);
    try {
      await cache.set('k', 'v', 60);
      await memcached.kill();
      await expect(cache.get('k')).rejects.toBeInstanceOf(SessionCacheUnavailableError);
      await memcached.restart();
      // A restart empties memcached; the first call after retryDelay reconnects by itself.
      expect(await eventually(() => cache.get('k'))).toBeNull();
      await cache.set('k', 'again', 60);
      expect((await cache.get('k'))?.toString()).toBe('again');
    } finally {
      await cache.close();
      await memcached.stop();
    }
  });

  it("keeps the URL's options unless told otherwise", () => {
    const url = 'memcached://127.0.0.1:1?timeout=123';
    expect(SessionCache.fromUrl(url).timeout).toBe(123);
    expect(SessionCache.fromUrl(url, { timeout: undefined }).timeout).toBe(123);
    expect(SessionCache.fromUrl(url, { timeout: 77 }).timeout).toBe(77);
  });

  it('keeps the password out of inspection, JSON and errors', async () => {
    const port = await freePort();
    const cache = SessionCache.fromUrl(`memcached://app:pw-s3cr3t@127.0.0.1:${port}`, {
      timeout: 200,
    });
    const store = new SessionStore(cache, { keySecret: 'k' });
    expect(inspect(cache, { depth: 20, showHidden: true })).not.toContain('pw-s3cr3t');
    expect(inspect(store, { depth: 20, showHidden: true })).not.toContain('pw-s3cr3t');
    expect(JSON.stringify(cache)).not.toContain('pw-s3cr3t');
    const err = await cache.get('k').catch((e) => e);
    expect(err).toBeInstanceOf(SessionCacheUnavailableError);
    expect(`${err.message} ${err.stack} ${inspect(err, { depth: 20 })}`).not.toContain('pw-s3cr3t');
    await cache.close();
  });

  it('rejects calls after close and closes idempotently', async () => {
    const cache = SessionCache.fromUrl('memcached://127.0.0.1:1');
    await cache.close();
    await cache.close();
    expect(cache.closed).toBe(true);
    await expect(cache.get('k')).rejects.toThrow(/closed/);
    expect(await cache.stats()).toEqual({
      '127.0.0.1:1': { error: 'SessionCache is closed; cannot stats.' },
    });
  });
});
