/**
 * A map that keeps only its `size` most recently set entries: what a process remembers of
 * sessions and user indexes (lazy touch, index lifetimes) stays bounded however many there are.
 */
export class RecentMemo<K, V> {
  readonly #entries = new Map<K, V>();

  constructor(readonly size: number) {}

  get(key: K): V | undefined {
    return this.#entries.get(key);
  }

  /** Sets `key` as the most recent entry, forgetting the oldest one when full. */
  set(key: K, value: V): V {
    this.#entries.delete(key);
    if (this.#entries.size >= this.size) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    this.#entries.set(key, value);
    return value;
  }

  delete(key: K): void {
    this.#entries.delete(key);
  }
}
