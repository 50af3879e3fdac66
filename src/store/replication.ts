import { randomInt } from 'node:crypto';
import type { CasValue } from '../memcached/memcached-node';
import type {
  MemcachedNode,
  ReplicaResult,
  SessionCache,
  SessionCacheLogger,
} from '../memcached/session-cache.client';
import { settleAnswered, settleEach } from '../memcached/session-cache.client';
import { isCleared } from './namespace';
import { describeError } from './session-codec';
import type { SessionCodec } from './session-codec';
import type { SessionKeys } from './session-keys';
import type { DecodedSession, LoadedStamp } from './session-state';
import type { SessionTtl } from './ttl';
import { CLOCK_MARGIN, expiresAt, isExpired, nowSeconds } from './ttl';
import type { IndexPlace } from './user-index';
import { ttlWithinIndex } from './user-index';
import { decodeValue, MAX_VERSION } from './value-header';

// -------------------------------------------------------------------------------------------------
// Versions and their order.
//
// A stored value's version is a logical counter: the loaded version's plus one at every save, never
// a clock; a random tag breaks ties between saves made from the same version. A copy is newer than
// another when its version is higher, or equal with a higher tag, or (version and tag equal, which
// takes two saves from the same version drawing the same tag) when its bytes compare higher. Every
// reader therefore picks the same copy among any set of replicas, whatever the clocks of the
// servers that wrote them. An old 0xF5 version (a millisecond time, about 1.7e12) stays ordered:
// the next save counts on from it.
// -------------------------------------------------------------------------------------------------

/**
 * The version and tag of the next save of a session loaded at `loaded` (none: a new session):
 * one more than the loaded version, whatever any clock says, and a random tag. A save made from
 * another one is therefore always newer than it; two saves made from the same version are ordered
 * by their tags (then by their bytes), the same way by every reader.
 */
export function nextStamp(loaded: { version: number } | undefined): {
  version: number;
  tag: number;
} {
  return { version: Math.min((loaded?.version ?? 0) + 1, MAX_VERSION), tag: randomInt(0x10000) };
}

/**
 * Orders two stored copies of a session (see the order of versions above): negative when `a` is
 * older than `b`, positive when newer, 0 only for the very same bytes.
 */
export function compareCopies(
  a: { version: number; tag?: number; raw: Buffer },
  b: { version: number; tag?: number; raw: Buffer },
): number {
  return a.version - b.version || (a.tag ?? 0) - (b.tag ?? 0) || Buffer.compare(a.raw, b.raw);
}

/** The header of the next write of a session loaded (or last written) with `loaded`, stored for
 * `ttl` seconds; `fullTtl` is what a touch would give it now (ttl.ts). */
export function nextHeader(
  loaded: LoadedStamp | undefined,
  generation: number,
  ttl: number,
  fullTtl: number,
  index: IndexPlace,
): LoadedStamp {
  return {
    ...nextStamp(loaded),
    generation,
    expiresAt: expiresAt(ttl),
    indexUntil: index.until,
    indexClass: index.cls,
    // So that a logout's tombstone outlives every version of the session (see tombstoneTtl).
    longest: Math.max(loaded?.longest ?? 0, ttl, fullTtl),
  };
}

/** Payload of the store's `readRepair` event. */
export interface ReadRepairEvent {
  /** The node that was repaired. */
  server: string;
  /** `missing`: it lacked the session; `stale`: it held an older version; `destroyed`: it held a
   * copy of a session that was logged out while it was away (the copy was deleted). */
  reason: 'missing' | 'stale' | 'destroyed';
}

/** A session read from its replicas: the newest copy, and per replica the CAS token of that very
 * copy there (null where it holds another or none). */
export interface ReadSession {
  found: DecodedSession;
  cas: (Buffer | null)[];
}

/**
 * A session's copies on its replicas (`replicas` option; one node is the case of one replica):
 *
 * - No resurrection. A session loaded from the store is saved with `replace`, a new one with
 *   `add`: a slow request that saves after a parallel logout does not bring the session back.
 *   With replicas, a logout also leaves a tombstone on each replica, which outlives the longest
 *   TTL the session was ever given: a copy on a node that missed the logout is deleted when read,
 *   never served or spread.
 * - One winner. Reads take the newest copy by the order of versions above: the same copy for every
 *   reader, whatever the clocks.
 * - Read-repair. Replicas that lack the winner or hold another copy are repaired in the
 *   background, each repair guarded by the CAS token of what was read, so it never lands on a
 *   newer write (reported as `readRepair` events).
 * - Sessions voided by `clear()` (namespace.ts), and legacy values whose cookie expired, are
 *   deleted when read.
 */
export class Replication {
  constructor(
    readonly client: SessionCache,
    readonly codec: SessionCodec,
    readonly keys: SessionKeys,
    readonly ttl: SessionTtl,
    /** The shortest life of a tombstone (`tombstoneTtl`). */
    readonly tombstoneTtl: number,
    readonly logger: SessionCacheLogger,
    readonly onRepair: (event: ReadRepairEvent) => void,
  ) {}

  /** The session under `key`, or null (none, unusable, destroyed, or older than `generation`). */
  async read(key: string, generation: number | Promise<number>): Promise<ReadSession | null> {
    const nodes = this.client.nodesFor(key);
    if (nodes.length > 1) return this.#readReplicas(key, nodes, await generation);
    let read: CasValue | null;
    if (typeof generation === 'number') read = await nodes[0].gets(key);
    else [read, generation] = await Promise.all([nodes[0].gets(key), generation]);
    if (read === null) return null;
    const found = this.codec.decode(read.value, key);
    if (found === null) return null;
    if (isStale(found, generation)) {
      // Cleared or expired: drop the stale copy now; a failure here must not fail the request.
      await nodes[0].delete(key).catch(() => undefined);
      return null;
    }
    return { found, cas: [read.cas] };
  }

  /** Reads every replica at once, takes the newest copy and repairs the others (see above). */
  async #readReplicas(
    key: string,
    nodes: MemcachedNode[],
    generation: number,
  ): Promise<ReadSession | null> {
    const results = await settleAnswered(nodes, (node) => node.gets(key));
    type Copy = { node: MemcachedNode; raw: Buffer; cas: Buffer };
    let best: (Copy & { found: DecodedSession }) | null = null;
    const copies: Copy[] = [];
    const missing: MemcachedNode[] = [];
    for (const r of results) {
      if (!r.ok) continue;
      const found = r.value === null ? null : this.codec.decode(r.value.value, key);
      if (found === null) {
        missing.push(r.node);
        continue;
      }
      const copy = { node: r.node, raw: r.value!.value, cas: r.value!.cas };
      copies.push(copy);
      if (
        best === null ||
        compareCopies({ ...found, raw: copy.raw }, { ...best.found, raw: best.raw }) > 0
      )
        best = { ...copy, found };
    }
    if (best === null) return null;
    if (missing.length > 0) {
      // A replica without the session that holds its tombstone saw a logout the others missed.
      const graves = await settleEach(missing, (node) => node.get(this.keys.grave(key)));
      if (graves.some((g) => g.ok && g.value !== null)) {
        for (const c of copies) this.#repair(c.node, 'destroyed', c.node.delete(key));
        return null;
      }
    }
    const found = best.found;
    if (isStale(found, generation)) {
      for (const c of copies) void c.node.delete(key).catch(() => undefined);
      return null;
    }
    // A repaired copy lives as a touch would make it (this read is a request of the session),
    // never past the user index that lists it.
    const ttl = ttlWithinIndex(this.ttl.fullTtl(found.session), found);
    if (ttl >= 1) {
      const raw = best.raw;
      for (const node of missing) this.#repair(node, 'missing', node.add(key, raw, ttl));
      for (const c of copies) {
        if (!c.raw.equals(raw))
          this.#repair(c.node, 'stale', c.node.storeCas('replace', key, raw, ttl, c.cas));
      }
    }
    const winner = best.raw;
    const cas = nodes.map(
      (n) => copies.find((c) => c.node === n && c.raw.equals(winner))?.cas ?? null,
    );
    return { found, cas };
  }

  /** Runs a read-repair in the background and reports it as a `readRepair` event. */
  #repair(node: MemcachedNode, reason: ReadRepairEvent['reason'], work: Promise<unknown>): void {
    work.then(
      (done) => {
        // Nothing to do (e.g. raced by a save): add/replace/delete answer false or null.
        if (done !== false && done !== null) this.onRepair({ server: node.name, reason });
      },
      (err: unknown) =>
        this.logger.debug?.(`Read-repair on ${node.name} failed: ${describeError(err)}.`),
    );
  }

  /** `add` on every replica (a new session); `add` finds the key only when the session object is
   * saved over an existing id (set is an upsert), and then it is replaced. The CAS tokens. */
  async add(key: string, value: Buffer, ttl: number): Promise<(Buffer | null)[]> {
    const store = async (node: MemcachedNode) =>
      (await node.storeCas('add', key, value, ttl)) ??
      (await node.storeCas('replace', key, value, ttl));
    const nodes = this.client.nodesFor(key);
    if (nodes.length === 1) return [await store(nodes[0])];
    return casOf(await settleAnswered(nodes, store));
  }

  /** `replace` on every replica (a loaded session): the CAS tokens per node, or null when none
   * still had it (destroyed meanwhile: it stays destroyed). */
  async replace(key: string, value: Buffer, ttl: number): Promise<(Buffer | null)[] | null> {
    const nodes = this.client.nodesFor(key);
    if (nodes.length === 1) {
      const cas = await nodes[0].storeCas('replace', key, value, ttl);
      return cas === null ? null : [cas];
    }
    const results = await settleAnswered(nodes, (node) =>
      node.storeCas('replace', key, value, ttl),
    );
    const cas = casOf(results);
    return cas.some((c) => c !== null) ? cas : null;
  }

  /** `replace` of exactly the copies whose CAS tokens are `read` (per node): the new tokens, or
   * null when every one of them changed since (a parallel save, which then stands). */
  async replaceRead(
    key: string,
    value: Buffer,
    ttl: number,
    read: readonly (Buffer | null)[],
  ): Promise<(Buffer | null)[] | null> {
    const nodes = this.client.nodesFor(key);
    const results = await settleAnswered(nodes, (node) => {
      const cas = read[nodes.indexOf(node)];
      return cas ? node.storeCas('replace', key, value, ttl, cas) : Promise.resolve(null);
    });
    const cas = casOf(results);
    return cas.every((c) => c === null) ? null : cas;
  }

  /**
   * Destroys the session under `key` (a logout). With replicas, each replica also keeps a
   * tombstone, so a copy on a node that missed the logout cannot come back; it lives at least
   * `tombstoneTtl` seconds, and at least as long as the session could (its values' headers say
   * how long that is).
   */
  async destroy(key: string): Promise<void> {
    if (this.client.replicas === 1) {
      await this.client.delete(key);
      return;
    }
    const grave = this.keys.grave(key);
    const floor = this.#tombstoneTtl([]);
    // One round trip: each node answers the copy it held, then takes the tombstone and the delete
    // (one connection: in that order). Only a session given a longer TTL than `tombstoneTtl`
    // would give (a remember-me cookie, say) needs a second one.
    const results = await this.client.onReplicas(key, async (node) => {
      const [copy] = await Promise.all([
        node.get(key),
        node.set(grave, '1', floor),
        node.delete(key),
      ]);
      return copy;
    });
    const ttl = this.#tombstoneTtl(results.map((r) => (r.ok ? r.value : null)));
    if (ttl > floor) await this.client.onReplicas(key, (node) => node.set(grave, '1', ttl));
  }

  /**
   * Destroys the session under `key` if `wanted` says so of its newest copy (null: none could be
   * decoded); exactly the copies that were read are deleted (CAS), so a copy written since is read
   * again. Whether it was destroyed.
   */
  async destroyIf(
    key: string,
    wanted: (newest: DecodedSession | null) => boolean,
  ): Promise<boolean> {
    const nodes = this.client.nodesFor(key);
    for (let attempt = 0; attempt < 3; attempt++) {
      const copies = await settleAnswered(nodes, (node) => node.gets(key));
      let best: { found: DecodedSession; raw: Buffer } | null = null;
      let present = false;
      for (const r of copies) {
        if (!r.ok || r.value === null) continue;
        present = true;
        const found = this.codec.decode(r.value.value, key);
        if (found === null) continue;
        if (
          best === null ||
          compareCopies({ ...found, raw: r.value.value }, { ...best.found, raw: best.raw }) > 0
        )
          best = { found, raw: r.value.value };
      }
      if (!present || !wanted(best?.found ?? null)) return false;
      if (await this.#destroyCopies(key, copies)) return true;
    }
    return false;
  }

  /**
   * Deletes exactly the copies in `read` (CAS), then leaves tombstones; false when one of them
   * changed since it was read (a save of a new user on this id): no tombstone is left then, and
   * the caller reads the session again.
   */
  async #destroyCopies(key: string, read: ReplicaResult<CasValue | null>[]): Promise<boolean> {
    const held = read.filter((r) => r.ok && r.value !== null) as {
      node: MemcachedNode;
      value: CasValue;
    }[];
    const deleted = await settleEach(
      held.map((r) => r.node),
      (node) => node.deleteIfCas(key, held.find((r) => r.node === node)!.value.cas),
    );
    if (deleted.some((d) => d.ok && !d.value)) return false;
    if (this.client.replicas === 1) return true;
    const grave = this.keys.grave(key);
    const ttl = this.#tombstoneTtl(held.map((r) => r.value.value));
    await settleAnswered(
      read.map((r) => r.node),
      (node) => Promise.all([node.set(grave, '1', ttl), node.delete(key)]),
    );
    return true;
  }

  /** How long a tombstone must live to outlive the session whose copies were `copies`. */
  #tombstoneTtl(copies: (Buffer | null)[]): number {
    // The longest TTL any of them was ever given (their headers record it), at least what
    // `tombstoneTtl` gives; a copy given that TTL up to now dies by now + TTL, and memcached may
    // drop the tombstone a second before now + its own TTL: one more second.
    let ttl = this.ttl.withSlack(this.tombstoneTtl);
    for (const raw of copies) {
      if (raw === null) continue;
      const { longest, expiresAt: until } = decodeValue(raw);
      ttl = Math.max(ttl, longest, until > 0 ? until - nowSeconds() + 1 : 0);
    }
    return ttl + CLOCK_MARGIN;
  }
}

/** Cleared by `clear()` since it was created, or a legacy value whose cookie expired. */
function isStale(found: DecodedSession, generation: number): boolean {
  return (
    isCleared(found.generation, generation) || (found.legacy === true && isExpired(found.session))
  );
}

/** The CAS tokens of a write on every replica (null where it was not stored). */
function casOf(results: ReplicaResult<Buffer | null>[]): (Buffer | null)[] {
  return results.map((r) => (r.ok ? r.value : null));
}
