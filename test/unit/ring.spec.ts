import HashRing from 'hashring';
import { SessionCache, SessionCacheConfigError } from '../../src';
import { SessionCacheRing } from '../../src/memcached/ring';

const servers = ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11212', '[::1]:11213'];
const keys = Array.from({ length: 2000 }, (_, i) => `sess:key-${i}`);

describe('SessionCacheRing', () => {
  const ring = new SessionCacheRing(servers);

  it('gives each key `count` distinct nodes, the same ones every time and in any server order', () => {
    const shuffled = new SessionCacheRing([...servers].reverse());
    for (const key of keys) {
      const nodes = ring.nodesFor(key, 2);
      expect(new Set(nodes).size).toBe(2);
      expect(nodes.map((i) => servers[i])).toEqual(
        shuffled.nodesFor(key, 2).map((i) => [...servers].reverse()[i]),
      );
    }
  });

  it('places primaries exactly as a plain ketama hashring does (libmemcached compatible)', () => {
    const reference = new HashRing(servers, 'md5', {
      compatibility: 'ketama',
      'default port': 11211,
    });
    for (const key of keys) expect(servers[ring.nodesFor(key, 1)[0]]).toBe(reference.get(key));
  });

  it('spreads keys over every node', () => {
    const counts = new Map<number, number>();
    for (const key of keys) {
      const [primary] = ring.nodesFor(key, 1);
      counts.set(primary, (counts.get(primary) ?? 0) + 1);
    }
    expect(counts.size).toBe(servers.length);
    for (const count of counts.values()) expect(count).toBeGreaterThan(keys.length / 8);
  });

  it('lists every replica set a key can map to', () => {
    const sets = ring.replicaSets(2).map((s) => s.join(','));
    for (const key of keys) {
      expect(sets).toContain([...ring.nodesFor(key, 2)].sort((a, b) => a - b).join(','));
    }
    expect(new SessionCacheRing(['a:1']).replicaSets(2)).toEqual([[0]]);
  });
});

describe('SessionCache configuration', () => {
  it.each([
    [{ replicas: 0 }, /replicas must be a whole number from 1 to the number of servers \(2\)/],
    [{ replicas: 3 }, /got 3\. Add servers or lower replicas/],
    [{ replicas: 1.5 }, /replicas must be/],
    [{ retryDelay: -1 }, /retryDelay .*must be a number of milliseconds >= 10/],
    [{ retryDelay: 0 }, /retryDelay .*must be a number of milliseconds >= 10/],
    [{ timeout: 0 }, /timeout must be a positive number/],
  ])('rejects %j', (options, message) => {
    const create = () => SessionCache.fromUrl('memcached://a:1,b:2', options);
    expect(create).toThrow(SessionCacheConfigError);
    expect(create).toThrow(message);
  });

  it('takes replicas and retryDelay from the URL unless the options say otherwise', () => {
    const url = 'memcached://a:1,b:2,c:3?replicas=2&retryDelay=50';
    expect(SessionCache.fromUrl(url).replicas).toBe(2);
    expect(SessionCache.fromUrl(url, { replicas: 3 }).replicas).toBe(3);
    expect(SessionCache.fromUrl('memcached://a:1').replicas).toBe(1);
  });
});
