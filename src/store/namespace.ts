import type { SessionCache, SessionCacheLogger } from '../memcached/session-cache.client';
import { settleAnswered } from '../memcached/session-cache.client';

/** Whether a session created in `generation` was voided by a `clear()` (the generation is now
 * `current`). */
export function isCleared(generation: number, current: number): boolean {
  return generation < current;
}

/**
 * The namespace generation behind `clear()`: clear without `flush_all`.
 *
 * Every stored session records (in its header) the generation it was created in. `clear()` raises
 * the generation, kept on every node under the store's generation key; a session from an older
 * generation is void: never returned, deleted when read, and it expires from memcached on its own.
 * Other keys on the same memcached (the app's general cache, other stores) are never touched.
 *
 * - The generation is the highest any node holds, and never lower than this process has seen: a
 *   node that lost it (restarted) gets it back, so it never serves an older namespace.
 * - A new generation is the current Unix second, or the current generation plus one when that is
 *   higher: a `clear()` made after every node lost the key, by a process that never read it, still
 *   passes the generations before it.
 * - Other processes see a new generation within `checkInterval` ms; the process that cleared, at
 *   once. A new session takes the generation from memcached ({@link read}), not from this cache:
 *   a `clear()` another process just made must not void it.
 */
export class SessionNamespace {
  /** The generation, when it was last read, and a read under way. */
  #generation = 0;
  #readAt = -Infinity;
  #reading: Promise<number> | null = null;

  constructor(
    readonly client: Pick<SessionCache, 'nodes'>,
    /** Where the generation lives (on every node). */
    readonly key: string,
    /** How often (ms) the generation is re-read: the `generationCheckInterval` option. */
    readonly checkInterval: number,
    readonly logger: SessionCacheLogger,
  ) {}

  /**
   * The current generation: cached, re-read from memcached (in the background) at most every
   * `checkInterval` ms; the first call waits for it.
   */
  current(): number | Promise<number> {
    if (Date.now() - this.#readAt < this.checkInterval) return this.#generation;
    const read = (this.#reading ??= this.read().finally(() => {
      this.#reading = null;
    }));
    if (this.#readAt === -Infinity) return read;
    read.catch(() => undefined); // keep the last known generation meanwhile
    return this.#generation;
  }

  /** Reads the generation from every node (it lives on all of them) and keeps the highest. */
  async read(): Promise<number> {
    const results = await settleAnswered(this.client.nodes, (node) => node.get(this.key));
    let highest = 0;
    for (const r of results) {
      const value = r.ok && r.value !== null ? Number(r.value.toString('latin1')) : 0;
      if (Number.isSafeInteger(value) && value > highest) highest = value;
    }
    // A node that lost it (restarted) gets it back, so it never serves an older namespace; the
    // generation this process already knows counts too (all nodes may have lost it).
    highest = Math.max(highest, this.#generation);
    if (highest > 0) {
      for (const r of results) {
        if (r.ok && r.value === null)
          void r.node.add(this.key, String(highest), 0).catch(() => undefined);
      }
    }
    this.#generation = Math.max(this.#generation, highest);
    this.#readAt = Date.now();
    return this.#generation;
  }

  /**
   * Voids every session created before: raises the generation on every node (a node that does not
   * answer gets it back at its next read, see {@link read}).
   */
  async clear(): Promise<void> {
    const current = await this.read();
    const next = Math.max(Math.floor(Date.now() / 1000), current + 1);
    const results = await settleAnswered(this.client.nodes, (node) =>
      node.set(this.key, String(next), 0),
    );
    this.#generation = next;
    this.#readAt = Date.now();
    const missed = results.filter((r) => !r.ok).map((r) => r.node.name);
    if (missed.length > 0) {
      this.logger.warn(
        `clear(): ${missed.join(', ')} did not take the new generation; it gets it when it ` +
          'answers again (the other nodes already void the old sessions).',
      );
    }
  }
}
