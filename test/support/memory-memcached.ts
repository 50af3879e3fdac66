// An in-memory stand-in for the session memcached, for unit tests of the store's parts: the
// commands they send (get/gets/set/add/replace/append/touch/delete, CAS variants, get-and-touch)
// on nodes that can be taken down, with every command logged. TTLs are relative seconds and
// expire on Date.now() (which tests may stub).
import type { MemcachedNode, SessionCache } from '../../src';
import { settleAnswered } from '../../src/memcached/session-cache.client';

interface Item {
  value: Buffer;
  cas: number;
  ttl: number;
  storedAt: number;
}

export class FakeNode {
  readonly items = new Map<string, Item>();
  /** Every command received, e.g. `touch sess:a 61`. */
  readonly log: string[] = [];
  /** While true, every command rejects (an outage). */
  down = false;
  #cas = 0;

  constructor(readonly name: string) {}

  /** The TTL the item under `key` was last given (undefined: none there). */
  ttlOf(key: string): number | undefined {
    return this.#live(key)?.ttl;
  }

  /** The value under `key`, as text (null: none). */
  text(key: string): string | null {
    return this.#live(key)?.value.toString('latin1') ?? null;
  }

  async get(key: string): Promise<Buffer | null> {
    this.#command('get', key);
    return this.#live(key)?.value ?? null;
  }
  async gets(key: string): Promise<{ value: Buffer; cas: Buffer } | null> {
    this.#command('gets', key);
    const item = this.#live(key);
    return item ? { value: item.value, cas: casToken(item.cas) } : null;
  }
  async set(key: string, value: string | Buffer, ttl = 0): Promise<void> {
    this.#command('set', key, ttl);
    this.#store(key, value, ttl);
  }
  async add(key: string, value: string | Buffer, ttl = 0): Promise<boolean> {
    this.#command('add', key, ttl);
    if (this.#live(key)) return false;
    this.#store(key, value, ttl);
    return true;
  }
  async replace(key: string, value: string | Buffer, ttl = 0): Promise<boolean> {
    this.#command('replace', key, ttl);
    if (!this.#live(key)) return false;
    this.#store(key, value, ttl);
    return true;
  }
  async append(key: string, value: string | Buffer): Promise<boolean> {
    this.#command('append', key);
    const item = this.#live(key);
    if (!item) return false;
    item.value = Buffer.concat([item.value, Buffer.from(value)]);
    item.cas = ++this.#cas;
    return true;
  }
  async touch(key: string, ttl: number): Promise<boolean> {
    this.#command('touch', key, ttl);
    const item = this.#live(key);
    if (!item) return false;
    Object.assign(item, { ttl, storedAt: Date.now() });
    return true;
  }
  async getAndTouch(key: string, ttl: number): Promise<Buffer | null> {
    this.#command('gat', key, ttl);
    const item = this.#live(key);
    if (!item) return null;
    Object.assign(item, { ttl, storedAt: Date.now() });
    return item.value;
  }
  async delete(key: string): Promise<boolean> {
    this.#command('delete', key);
    const had = this.#live(key) !== undefined;
    this.items.delete(key);
    return had;
  }
  async storeCas(
    operation: 'add' | 'replace',
    key: string,
    value: Buffer,
    ttl: number,
    cas?: Buffer,
  ): Promise<Buffer | null> {
    this.#command(`${operation}${cas ? '-cas' : ''}`, key, ttl);
    const item = this.#live(key);
    if (operation === 'add' ? item : !item || (cas && !casToken(item.cas).equals(cas))) return null;
    return casToken(this.#store(key, value, ttl).cas);
  }
  async deleteIfCas(key: string, cas: Buffer): Promise<boolean> {
    this.#command('delete-cas', key);
    const item = this.#live(key);
    if (!item || !casToken(item.cas).equals(cas)) return false;
    return this.items.delete(key);
  }

  #command(name: string, key: string, ttl?: number): void {
    if (this.down) throw new Error(`${this.name} is down`);
    this.log.push(ttl === undefined ? `${name} ${key}` : `${name} ${key} ${ttl}`);
  }
  #store(key: string, value: string | Buffer, ttl: number): Item {
    const item = { value: Buffer.from(value), cas: ++this.#cas, ttl, storedAt: Date.now() };
    this.items.set(key, item);
    return item;
  }
  #live(key: string): Item | undefined {
    const item = this.items.get(key);
    if (item && item.ttl > 0 && Date.now() >= item.storedAt + item.ttl * 1000) {
      this.items.delete(key);
      return undefined;
    }
    return item;
  }
}

/** The part of `SessionCache` the store's parts use: every key lives on the first `replicas` nodes. */
export class FakeCache {
  readonly nodes: FakeNode[];

  constructor(
    count = 1,
    readonly replicas = 1,
  ) {
    this.nodes = Array.from({ length: count }, (_, i) => new FakeNode(`fake-${i}`));
  }

  /** This fake, typed as the client the parts take. */
  get client(): SessionCache {
    return this as unknown as SessionCache;
  }

  /** Every command of every node, in order per node. */
  get log(): string[] {
    return this.nodes.flatMap((n) => n.log);
  }

  nodesFor(): MemcachedNode[] {
    return this.nodes.slice(0, this.replicas) as unknown as MemcachedNode[];
  }
  onReplicas<T>(_key: string, call: (node: MemcachedNode) => Promise<T>) {
    return settleAnswered(this.nodesFor(), call);
  }
  async get(key: string): Promise<Buffer | null> {
    for (const node of this.nodesFor()) {
      const value = await node.get(key);
      if (value !== null) return value;
    }
    return null;
  }
  async delete(key: string): Promise<boolean> {
    const results = await this.onReplicas(key, (node) => node.delete(key));
    return results.some((r) => r.ok && r.value);
  }
  async touch(key: string, ttl: number): Promise<boolean> {
    const results = await this.onReplicas(key, (node) => node.touch(key, ttl));
    return results.some((r) => r.ok && r.value);
  }
}

function casToken(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}
