// A fast 64-bit fingerprint of a byte stream: two independent 32-bit lanes, FNV-1a and a
// multiply–xorshift (murmur-style) lane. Every step of both lanes is a bijection of the state for
// a fixed input, so changing any one input word always changes both lanes; two different streams
// collide by accident with probability ~2^-64. Deterministic and cheap; not cryptographic.
//
// Bytes are folded as little-endian 32-bit words (then the 0–3 trailing bytes one by one), read
// through an Int32Array view when the bytes are 4-aligned on a little-endian machine, and
// assembled by hand otherwise — same words, so the result never depends on alignment.

import { fmix32 } from "../core/util/bytes.ts";

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export const LANE_A_SEED = 0x811c9dc5;
export const LANE_B_SEED = 0x9747b28c;

export class Fingerprint {
  a = LANE_A_SEED;
  b = LANE_B_SEED;
  /** The word view of the last buffer read, reused while bytes keep coming from it (slabs). */
  #viewBuffer: ArrayBufferLike | undefined;
  #view: Int32Array<ArrayBufferLike> | undefined;

  reset(a = LANE_A_SEED, b = LANE_B_SEED): void {
    this.a = a;
    this.b = b;
  }

  word(value: number): void {
    this.a = Math.imul(this.a ^ value, 0x01000193);
    const h = Math.imul(this.b ^ value, 0x5bd1e995);
    this.b = h ^ (h >>> 15);
  }

  /** Folds bytes[0, length) (the whole array by default). */
  bytes(bytes: Uint8Array, length = bytes.length): void {
    let a = this.a;
    let b = this.b;
    const wordCount = length >>> 2;
    if (LITTLE_ENDIAN && (bytes.byteOffset & 3) === 0) {
      const words = this.#wordsOf(bytes.buffer);
      for (let i = bytes.byteOffset >>> 2, end = i + wordCount; i < end; i++) {
        const word = words[i] as number;
        a = Math.imul(a ^ word, 0x01000193);
        const h = Math.imul(b ^ word, 0x5bd1e995);
        b = h ^ (h >>> 15);
      }
    } else {
      for (let i = 0; i < wordCount << 2; i += 4) {
        const word = (bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24);
        a = Math.imul(a ^ word, 0x01000193);
        const h = Math.imul(b ^ word, 0x5bd1e995);
        b = h ^ (h >>> 15);
      }
    }
    for (let i = wordCount << 2; i < length; i++) {
      const byte = bytes[i] as number;
      a = Math.imul(a ^ byte, 0x01000193);
      const h = Math.imul(b ^ byte, 0x5bd1e995);
      b = h ^ (h >>> 15);
    }
    this.a = a;
    this.b = b;
  }

  /** The 64 bits as 16 hex digits. */
  hex(): string {
    return (this.a >>> 0).toString(16).padStart(8, "0") + (this.b >>> 0).toString(16).padStart(8, "0");
  }

  #wordsOf(buffer: ArrayBufferLike): Int32Array<ArrayBufferLike> {
    if (buffer !== this.#viewBuffer || this.#view === undefined) {
      this.#viewBuffer = buffer;
      this.#view = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    }
    return this.#view;
  }
}

export { fmix32 };
