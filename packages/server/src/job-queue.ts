// A bounded priority queue: higher priority first, then first come first served. Small (bounded by
// maxQueue), so a sorted array with binary-search insertion beats a heap on constant factors and
// makes "position in queue" a plain index.

/** What the queue needs to know about an entry. */
export interface Queued {
  /** Higher runs first. */
  readonly priority: number;
  /** Arrival order, increasing; ties in priority go to the lower sequence number. */
  readonly seq: number;
}

/** A priority queue ordered by priority (descending) then arrival (ascending). */
export class JobQueue<T extends Queued> {
  readonly #items: T[] = [];

  /** Number of queued entries. */
  get size(): number {
    return this.#items.length;
  }

  /** Inserts an entry in order; returns its position (0 = next). */
  push(item: T): number {
    let lo = 0;
    let hi = this.#items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (comesBefore(this.#items[mid] as T, item)) lo = mid + 1;
      else hi = mid;
    }
    this.#items.splice(lo, 0, item);
    return lo;
  }

  /** The next entry, without removing it. */
  peek(): T | undefined {
    return this.#items[0];
  }

  /** The entry at `index` in queue order (0 = next), without removing it. */
  at(index: number): T | undefined {
    return this.#items[index];
  }

  /** Removes and returns the next entry. */
  shift(): T | undefined {
    return this.#items.shift();
  }

  /** Removes a given entry; returns whether it was queued. */
  remove(item: T): boolean {
    const index = this.#items.indexOf(item);
    if (index < 0) return false;
    this.#items.splice(index, 1);
    return true;
  }

  /** Position of an entry (0 = next), or -1. */
  positionOf(item: T): number {
    return this.#items.indexOf(item);
  }

  /** Removes and returns every entry matching `predicate`. */
  removeWhere(predicate: (item: T) => boolean): T[] {
    const removed: T[] = [];
    for (let i = this.#items.length - 1; i >= 0; i--) {
      const item = this.#items[i] as T;
      if (predicate(item)) {
        this.#items.splice(i, 1);
        removed.unshift(item);
      }
    }
    return removed;
  }

  /** Entries in queue order (a copy). */
  toArray(): T[] {
    return this.#items.slice();
  }
}

function comesBefore(a: Queued, b: Queued): boolean {
  return a.priority !== b.priority ? a.priority > b.priority : a.seq < b.seq;
}
