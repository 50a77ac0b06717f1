// A binary min-heap ordered by a pair of numbers (key, tiebreak). The simulated network keys
// packets by (delivery tick, send sequence number): with distinct tie-breaks the pop order is a
// pure function of the pushes, never of the heap's internal layout — the determinism the simulator
// depends on. Entries with equal (key, tiebreak) leave in an unspecified order.
//
// Layout: keys and tie-breaks live in parallel Float64Arrays and values in a plain array,
// so sifting compares unboxed doubles and moves no objects but the values. Sifts use the "hole"
// technique (one write per level instead of a swap). Millions of pushes and pops a second.
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";

const INITIAL_CAPACITY = 64;

/** Entries a heap may hold: 2^27 (~134 million), 2 GiB of keys; far beyond any simulation. */
export const HEAP_ENTRIES_MAX = LIMITS.sim.heapEntriesMax;

export class MinHeap<T> {
  #keys = new Float64Array(INITIAL_CAPACITY);
  #seqs = new Float64Array(INITIAL_CAPACITY);
  #values: Array<T | undefined> = new Array<T | undefined>(INITIAL_CAPACITY);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** The smallest key, or Infinity when the heap is empty. */
  peekKey(): number {
    return this.#size > 0 ? (this.#keys[0] as number) : Infinity;
  }

  /** The value with the smallest (key, tiebreak), without removing it. */
  peek(): T | undefined {
    return this.#size > 0 ? this.#values[0] : undefined;
  }

  /** Adds value under (key, tiebreak); smaller keys, then smaller tie-breaks, pop first. */
  push(key: number, tiebreak: number, value: T): void {
    assert(!Number.isNaN(key) && !Number.isNaN(tiebreak), "MinHeap.push: key or tiebreak is NaN");
    if (this.#size === this.#keys.length) this.#grow();
    const keys = this.#keys;
    const seqs = this.#seqs;
    const values = this.#values;
    const seq = tiebreak;
    // Sift up: move parents down into the hole until the new entry's place is found.
    let hole = this.#size++;
    while (hole > 0) {
      const parent = (hole - 1) >>> 1;
      const parentKey = keys[parent] as number;
      if (parentKey < key || (parentKey === key && (seqs[parent] as number) < seq)) break;
      keys[hole] = parentKey;
      seqs[hole] = seqs[parent] as number;
      values[hole] = values[parent];
      hole = parent;
    }
    keys[hole] = key;
    seqs[hole] = seq;
    values[hole] = value;
  }

  /** Removes and returns the value with the smallest (key, tiebreak), or undefined when empty. */
  pop(): T | undefined {
    const size = this.#size;
    if (size === 0) return undefined;
    const values = this.#values;
    const top = values[0];
    const last = size - 1;
    this.#size = last;
    if (last > 0) {
      const keys = this.#keys;
      const seqs = this.#seqs;
      const key = keys[last] as number;
      const seq = seqs[last] as number;
      const value = values[last];
      // Sift down: move the smaller child up into the hole until the last entry fits.
      let hole = 0;
      for (;;) {
        let child = 2 * hole + 1;
        if (child >= last) break;
        let childKey = keys[child] as number;
        const right = child + 1;
        if (right < last) {
          const rightKey = keys[right] as number;
          if (rightKey < childKey || (rightKey === childKey && (seqs[right] as number) < (seqs[child] as number))) {
            child = right;
            childKey = rightKey;
          }
        }
        if (key < childKey || (key === childKey && seq < (seqs[child] as number))) break;
        keys[hole] = childKey;
        seqs[hole] = seqs[child] as number;
        values[hole] = values[child];
        hole = child;
      }
      keys[hole] = key;
      seqs[hole] = seq;
      values[hole] = value;
    }
    values[last] = undefined; // let the popped slot's value be collected
    return top;
  }

  clear(): void {
    this.#values.fill(undefined, 0, this.#size);
    this.#size = 0;
  }

  #grow(): void {
    const capacity = this.#keys.length * 2;
    assert(capacity <= HEAP_ENTRIES_MAX, `MinHeap: more than ${HEAP_ENTRIES_MAX} entries`);
    const keys = new Float64Array(capacity);
    keys.set(this.#keys);
    const seqs = new Float64Array(capacity);
    seqs.set(this.#seqs);
    this.#keys = keys;
    this.#seqs = seqs;
    this.#values.length = capacity;
  }
}
