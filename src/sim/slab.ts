// Cheap byte buffers for the simulator's hot path. A fresh Uint8Array of more than 64 bytes gets
// its own off-heap backing store in V8, which costs more than everything else a simulated send
// does; a view into a shared slab costs a small object. A slab is collected once nothing views it,
// so slab bytes suit short-lived packets: anything kept for long should be copied out (slice()).
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";

/** Default bytes per slab. */
export const SLAB_BYTES = 256 * 1024;
/** Largest slab accepted. */
export const SLAB_BYTES_MAX = LIMITS.sim.slabBytesMax;

export class ByteSlab {
  readonly #slabBytes: number;
  /** Allocations larger than this get a buffer of their own (a sixteenth of a slab). */
  readonly #allocationBytesMax: number;
  #bytes: Uint8Array;
  #used = 0;

  /**
   * slabBytes trades speed for memory: a packet kept for long pins its whole slab, so a slab
   * whose allocations may be kept (sealed packets the caller owns) should be small.
   */
  constructor(slabBytes = SLAB_BYTES) {
    assert(Number.isInteger(slabBytes) && slabBytes >= 1024 && slabBytes <= SLAB_BYTES_MAX, `ByteSlab: slabBytes must be in [1024, ${SLAB_BYTES_MAX}]`);
    this.#slabBytes = slabBytes;
    this.#allocationBytesMax = slabBytes >>> 4;
    this.#bytes = new Uint8Array(slabBytes);
  }

  /** `length` fresh zero bytes (never handed out before), starting on an 8-byte boundary. */
  alloc(length: number): Uint8Array {
    assert(Number.isInteger(length) && length >= 0, "ByteSlab.alloc: bad length");
    if (length > this.#allocationBytesMax) return new Uint8Array(length);
    if (this.#used + length > this.#slabBytes) {
      this.#bytes = new Uint8Array(this.#slabBytes);
      this.#used = 0;
    }
    const offset = this.#used;
    this.#used = (offset + length + 7) & ~7;
    return this.#bytes.subarray(offset, offset + length);
  }

  /** A copy of `bytes` in slab memory. */
  copy(bytes: Uint8Array): Uint8Array {
    const copy = this.alloc(bytes.length);
    copy.set(bytes);
    return copy;
  }
}
