import { isCleared, SessionNamespace } from '../../src/store/namespace';
import { controlledClock } from '../support/clock';
import { FakeCache } from '../support/memory-memcached';
import { RecordingLogger } from '../support/store';

const KEY = 'sess:generation';
const NOW = 1_800_000_000_000;

function namespace(cache: FakeCache, checkInterval = 1000) {
  const logger = new RecordingLogger();
  return { ns: new SessionNamespace(cache.client, KEY, checkInterval, logger), logger };
}

/** Lets background work (read-repairs of the generation) run. */
const settled = () => new Promise((resolve) => setImmediate(resolve));

describe('the namespace generation behind clear() (namespace.ts)', () => {
  const clock = controlledClock(NOW);

  it('voids exactly the sessions of older generations', () => {
    expect(isCleared(4, 5)).toBe(true);
    expect(isCleared(5, 5)).toBe(false);
    expect(isCleared(6, 5)).toBe(false);
    expect(isCleared(0, 0)).toBe(false);
  });

  it('clear() writes a new generation to every node, and never flush_all', async () => {
    const cache = new FakeCache(3);
    const { ns } = namespace(cache);
    await ns.clear();
    const generation = String(NOW / 1000);
    for (const node of cache.nodes) expect(node.text(KEY)).toBe(generation);
    // Nothing but the generation key was written: no other key on those nodes is touched.
    expect(cache.log.filter((c) => !c.includes(KEY))).toEqual([]);
    expect(cache.log.filter((c) => c.startsWith('set'))).toEqual([
      `set ${KEY} 0`,
      `set ${KEY} 0`,
      `set ${KEY} 0`,
    ]);
  });

  it('the process that cleared sees the new generation at once; a second clear in the same second still raises it', async () => {
    const cache = new FakeCache(1);
    const { ns } = namespace(cache, 60_000);
    await ns.clear();
    expect(ns.current()).toBe(NOW / 1000);
    await ns.clear();
    expect(ns.current()).toBe(NOW / 1000 + 1);
    await ns.clear();
    expect(ns.current()).toBe(NOW / 1000 + 2);
  });

  it('the first read waits for memcached; later ones answer from the cache within the interval', async () => {
    const cache = new FakeCache(1);
    await cache.nodes[0].set(KEY, '41', 0);
    const { ns } = namespace(cache, 1000);
    const first = ns.current();
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toBe(41);
    await cache.nodes[0].set(KEY, '42', 0); // another process cleared
    clock.now += 999;
    expect(ns.current()).toBe(41);
    clock.now += 1;
    // Due: re-read in the background, the last known generation meanwhile.
    expect(ns.current()).toBe(41);
    await settled();
    expect(ns.current()).toBe(42);
  });

  it('keeps the last known generation when a background re-read fails', async () => {
    const cache = new FakeCache(1);
    await cache.nodes[0].set(KEY, '7', 0);
    const { ns } = namespace(cache, 0);
    expect(await ns.current()).toBe(7);
    cache.nodes[0].down = true;
    expect(ns.current()).toBe(7);
    await settled();
    expect(ns.current()).toBe(7);
  });

  it('takes the highest generation of any node and gives it back to nodes that lost it', async () => {
    const cache = new FakeCache(3);
    await cache.nodes[0].set(KEY, '5', 0);
    await cache.nodes[1].set(KEY, '9', 0);
    const { ns } = namespace(cache);
    expect(await ns.read()).toBe(9);
    await settled();
    // The node that lost it (restarted) gets it back with `add`, never over a newer one.
    expect(cache.nodes[2].text(KEY)).toBe('9');
    expect(cache.nodes[2].log).toContain(`add ${KEY} 0`);
    expect(cache.nodes[0].text(KEY)).toBe('5');
  });

  it('never goes back to an older generation, even when every node lost it', async () => {
    const cache = new FakeCache(2);
    await cache.nodes[0].set(KEY, '12', 0);
    const { ns } = namespace(cache);
    expect(await ns.read()).toBe(12);
    for (const node of cache.nodes) node.items.clear();
    expect(await ns.read()).toBe(12);
    await settled();
    for (const node of cache.nodes) expect(node.text(KEY)).toBe('12');
  });

  it('ignores a value that is not a generation', async () => {
    const cache = new FakeCache(2);
    await cache.nodes[0].set(KEY, 'garbage', 0);
    await cache.nodes[1].set(KEY, '1e400', 0);
    const { ns } = namespace(cache);
    expect(await ns.read()).toBe(0);
  });

  it('a node that misses the clear is named in a warning and gets the generation when back', async () => {
    const cache = new FakeCache(2);
    const { ns, logger } = namespace(cache);
    cache.nodes[1].down = true;
    await ns.clear();
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toMatch(/clear\(\): fake-1 did not take the new generation/);
    cache.nodes[1].down = false;
    await ns.read();
    await settled();
    expect(cache.nodes[1].text(KEY)).toBe(String(NOW / 1000));
  });

  it('fails when no node answers (the caller learns that clear() did not happen)', async () => {
    const cache = new FakeCache(2);
    for (const node of cache.nodes) node.down = true;
    const { ns } = namespace(cache);
    await expect(ns.clear()).rejects.toThrow(/down/);
  });
});
