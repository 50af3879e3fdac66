import type { SessionData } from 'express-session';
import { resolveStoreOptions } from '../../src/store/session-store.options';
import { buildStoreParts } from '../../src/store/session-store.parts';
import { decodeValue } from '../../src/store/value-header';
import { FakeCache } from '../support/memory-memcached';
import { RecordingLogger } from '../support/store';

const KEY = 'sess:a';

const session = (fields: Record<string, unknown> = {}) =>
  ({
    cookie: { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000).toISOString() },
    ...fields,
  }) as unknown as SessionData;

function setup(replicas = 1) {
  const cache = new FakeCache(replicas, replicas);
  const logger = new RecordingLogger();
  const options = resolveStoreOptions({
    keySecret: 'k',
    lazyTouch: 0,
    userId: (s) => (s as { userId?: unknown }).userId,
  });
  const parts = buildStoreParts(cache.client, options, logger, () => undefined);
  return { cache, logger, ...parts };
}

describe('saves (session-writer.ts)', () => {
  it('a new session: add, with the generation read from memcached; its state recorded', async () => {
    const { cache, writer, states, keys } = setup();
    await cache.nodes[0].set(keys.generation, '5', 0);
    const s = session({ a: 1 });
    await writer.save(KEY, s, undefined, 61);
    expect(cache.nodes[0].log.slice(1)).toEqual([`get ${keys.generation}`, `add ${KEY} 61`]);
    const stored = decodeValue(cache.nodes[0].items.get(KEY)!.value);
    expect(stored).toMatchObject({ version: 1, generation: 5, longest: 61 });
    expect(states.of(s, KEY)).toMatchObject({ key: KEY, life: 60_000, stamp: { version: 1 } });
  });

  it('a loaded session: replace, one version on, its own generation kept', async () => {
    const { cache, writer, states, replicas, namespace } = setup();
    const s = session({ a: 1 });
    await writer.save(KEY, s, undefined, 61);
    await namespace.clear(); // a clear() since: saving the loaded session never revives it
    const loaded = (await replicas.read(KEY, 0))!;
    const again = states.loaded(loaded.found, KEY, loaded.cas, undefined);
    (again as unknown as { a: number }).a = 2;
    await writer.save(KEY, again, states.of(again, KEY), 61);
    expect(cache.nodes[0].log.at(-1)).toBe(`replace ${KEY} 61`);
    const stored = decodeValue(cache.nodes[0].items.get(KEY)!.value);
    expect(stored).toMatchObject({ version: 2, generation: 0 });
  });

  it('a save after a parallel logout is dropped: the session stays gone', async () => {
    const { cache, writer, states, logger } = setup();
    const s = session({ a: 1 });
    await writer.save(KEY, s, undefined, 61);
    const before = states.of(s, KEY)!;
    cache.nodes[0].items.delete(KEY); // logout
    (s as unknown as { a: number }).a = 2;
    await writer.save(KEY, s, before, 61);
    expect(cache.nodes[0].text(KEY)).toBeNull();
    expect(logger.debugs).toEqual(['Dropped the save of a session that was destroyed meanwhile.']);
    expect(states.of(s, KEY)).toBe(before);
  });

  it('a login writes the user index first; when that fails, no session is written', async () => {
    const { cache, writer, keys } = setup();
    await writer.save(KEY, session({ userId: 'alice' }), undefined, 61);
    expect(cache.nodes[0].log.findIndex((c) => c.includes(keys.user('alice')))).toBeLessThan(
      cache.nodes[0].log.indexOf(`add ${KEY} 61`),
    );
    const failing = setup();
    const add = failing.cache.nodes[0].add.bind(failing.cache.nodes[0]);
    failing.cache.nodes[0].add = async (key, ...rest) => {
      if (key.startsWith('sess:user:')) throw new Error('index write failed');
      return add(key, ...rest);
    };
    await expect(
      failing.writer.save('sess:b', session({ userId: 'alice' }), undefined, 61),
    ).rejects.toThrow(/index write failed/);
    expect(failing.cache.nodes[0].text('sess:b')).toBeNull();
  });

  it('refuses an oversized session before anything is sent', async () => {
    const { cache, writer } = setup();
    await expect(
      writer.save(KEY, session({ blob: 'x'.repeat(1024 * 1024) }), undefined, 61),
    ).rejects.toThrow(/over the limit/);
    expect(cache.log.filter((c) => c.includes(KEY))).toEqual([]);
  });

  it('a rewrite lands only on the copies that were read (CAS); otherwise the parallel save stands', async () => {
    const { cache, writer, states, logger } = setup(2);
    const s = session({ a: 1 });
    await writer.save(KEY, s, undefined, 61);
    const state = states.of(s, KEY)!;
    await writer.rewrite(KEY, s, state, 30);
    expect(cache.nodes.map((n) => n.ttlOf(KEY))).toEqual([30, 30]);
    const written = states.of(s, KEY)!;
    expect(written.stamp.version).toBe(2);
    for (const node of cache.nodes) await node.set(KEY, 'a parallel save', 61);
    await writer.rewrite(KEY, s, written, 20);
    expect(cache.nodes.map((n) => n.text(KEY))).toEqual(['a parallel save', 'a parallel save']);
    expect(logger.debugs.at(-1)).toMatch(/another request saved \(or destroyed\) meanwhile/);
  });
});
