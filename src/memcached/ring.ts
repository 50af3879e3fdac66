import HashRing from 'hashring';

/**
 * The consistent-hash ring of the session cluster: ketama-compatible (libmemcached, php-memcached)
 * through the `hashring` package (MD5, 160 points per server). Adding one server to n moves about
 * 1/(n+1) of the keys; the `replicas` nodes of a key are the next distinct servers clockwise.
 */
export class SessionCacheRing {
  readonly #ring: HashRing;
  readonly #index: Map<string, number>;

  /** `servers` as `host:port` strings (IPv6 hosts in brackets); their order does not matter. */
  constructor(readonly servers: readonly string[]) {
    this.#ring = new HashRing([...servers], 'md5', {
      compatibility: 'ketama',
      // As libmemcached: a server on the default port is hashed by its host alone.
      'default port': 11211,
    });
    this.#index = new Map(servers.map((s, i) => [s, i]));
  }

  /** Indexes (into `servers`) of the `count` distinct servers that hold `key`, primary first. */
  nodesFor(key: string, count: number): number[] {
    if (this.servers.length === 1) return [0];
    return this.#ring.range(key, Math.min(count, this.servers.length), true).map((s) => {
      const i = this.#index.get(s);
      if (i === undefined) throw new Error(`hashring returned an unknown server ${s}`);
      return i;
    });
  }

  /**
   * Every distinct set of `count` servers that some key maps to (as sorted index lists). Used by
   * the health check: all sessions are reachable while every set has a live member.
   */
  replicaSets(count: number): number[][] {
    const points = (this.#ring as unknown as { ring: { value: number; server: string }[] }).ring;
    const size = Math.min(count, this.servers.length);
    const sets = new Map<string, number[]>();
    for (let start = 0; start < points.length; start++) {
      const chosen: number[] = [];
      for (let i = start; chosen.length < size && i < start + points.length; i++) {
        const index = this.#index.get(points[i % points.length].server);
        if (index !== undefined && !chosen.includes(index)) chosen.push(index);
      }
      chosen.sort((a, b) => a - b);
      sets.set(chosen.join(','), chosen);
    }
    return [...sets.values()];
  }
}
