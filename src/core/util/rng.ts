// A seeded pseudo-random generator (PCG32, O'Neill 2014: 64-bit LCG state, XSH-RR output). Every
// core that needs randomness receives an Rng; nothing in src/core reads ambient randomness, so a
// whole-cluster simulation replays exactly from one seed.

const MULT = 6364136223846793005n;
const MASK64 = (1n << 64n) - 1n;

export interface Rng {
  /** A uniform integer in [0, 2^32). */
  nextU32(): number;
  /** A uniform float in [0, 1). */
  next(): number;
  /** A uniform integer in [0, n), n >= 1. */
  int(n: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  /** A new generator whose stream is independent of this one, derived deterministically. */
  fork(): Rng;
}

export function createRng(seed: number | bigint, stream: number | bigint = 54): Rng {
  return new Pcg32(BigInt(seed), BigInt(stream));
}

class Pcg32 implements Rng {
  // The 64-bit state split in two 32-bit halves keeps the hot path in plain numbers: BigInt
  // arithmetic is ~20x slower and the simulator draws millions of numbers.
  #hi: number;
  #lo: number;
  readonly #incHi: number;
  readonly #incLo: number;

  constructor(seed: bigint, stream: bigint) {
    const inc = ((stream << 1n) | 1n) & MASK64;
    this.#incHi = Number(inc >> 32n);
    this.#incLo = Number(inc & 0xffffffffn);
    let state = 0n;
    state = (state * MULT + inc) & MASK64;
    state = (state + (BigInt.asUintN(64, seed))) & MASK64;
    state = (state * MULT + inc) & MASK64;
    this.#hi = Number(state >> 32n);
    this.#lo = Number(state & 0xffffffffn);
  }

  nextU32(): number {
    const hi = this.#hi;
    const lo = this.#lo;
    // Output: XSH-RR of the old state: rotr32(((state >> 18) ^ state) >> 27, state >> 59).
    const x = mix(hi, lo);
    const rot = hi >>> 27;
    const out = ((x >>> rot) | (x << ((32 - rot) & 31))) >>> 0;
    this.#advance();
    return out;
  }

  #advance(): void {
    const mHi = 0x5851f42d;
    const mLo = 0x4c957f2d;
    const lo = this.#lo;
    const hi = this.#hi;
    // 64x64 -> low 64 bits, in 16-bit limbs to stay exact in doubles.
    const a0 = lo & 0xffff, a1 = lo >>> 16, a2 = hi & 0xffff, a3 = hi >>> 16;
    const b0 = mLo & 0xffff, b1 = mLo >>> 16, b2 = mHi & 0xffff, b3 = mHi >>> 16;
    let c0 = a0 * b0;
    let c1 = (c0 >>> 16) + a0 * b1;
    let c2 = c1 >>> 16;
    c1 = (c1 & 0xffff) + a1 * b0;
    c2 += c1 >>> 16;
    c2 += a0 * b2;
    let c3 = c2 >>> 16;
    c2 = (c2 & 0xffff) + a1 * b1;
    c3 += c2 >>> 16;
    c2 = (c2 & 0xffff) + a2 * b0;
    c3 += c2 >>> 16;
    c3 += a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0;
    c0 &= 0xffff; c1 &= 0xffff; c2 &= 0xffff; c3 &= 0xffff;
    let newLo = ((c1 << 16) | c0) >>> 0;
    let newHi = ((c3 << 16) | c2) >>> 0;
    // + inc
    const sumLo = newLo + this.#incLo;
    newLo = sumLo >>> 0;
    newHi = (newHi + this.#incHi + (sumLo > 0xffffffff ? 1 : 0)) >>> 0;
    this.#lo = newLo;
    this.#hi = newHi;
  }

  next(): number {
    return this.nextU32() / 4294967296;
  }

  int(n: number): number {
    if (!(n >= 1)) throw new RangeError(`Rng.int needs n >= 1, got ${n}`);
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  fork(): Rng {
    return new Pcg32(BigInt(this.nextU32()) << 32n | BigInt(this.nextU32()), BigInt(this.nextU32()));
  }
}

/** ((state >>> 18) ^ state) >>> 27 as a 32-bit value, for state = hi:lo. */
function mix(hi: number, lo: number): number {
  // s18 = state >>> 18
  const s18Hi = hi >>> 18;
  const s18Lo = ((lo >>> 18) | (hi << 14)) >>> 0;
  const xHi = (s18Hi ^ hi) >>> 0;
  const xLo = (s18Lo ^ lo) >>> 0;
  // >>> 27, keep low 32 bits
  return ((xLo >>> 27) | (xHi << 5)) >>> 0;
}

/** Fisher–Yates shuffle in place with the given generator. */
export function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
  return items;
}
