// The WebAssembly SIMD matmulBT of src/core/brain/simd.ts and the emitter of wasm-asm.ts: every
// module built validates; results against a float64 oracle on shapes that are and are not multiples
// of the kernel's blocks (1×K, K = 1, odd M, N, K, K = 4096, N over several column panels), with bias
// and accumulate; the same row alone and inside a block bit for bit; agreement with tensor.ts.
//
// Error bound (f32 accumulation, see simd.ts): |got − exact| ≤ u·(⌈K/4⌉ + 4)·(Σ_k|a·b| + |bias| +
// |old out|) with u = 2⁻²⁴ — the worst case of ⌈K/4⌉ sequential f32 sums per lane, two reduction
// rounds, the bias and accumulate additions and the final rounding. Random data sits far below it:
// the test also asserts the typical error, max |got − exact|/Σ|a·b| ≤ 1e-6 (measured ≈ 1.3e-7 at
// K = 4096 against ≈ 1.3e-8 for tensor.ts's f64 accumulation).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRng, type Rng } from "../../../src/core/util/rng.ts";
import { matmulBT } from "../../../src/core/brain/tensor.ts";
import { buildKernelModule, KERNEL, matmulBTSimd, simdAvailable, type KernelShape } from "../../../src/core/brain/simd.ts";
import { assembleModule, Fn, I32, sleb, uleb, V128 } from "../../../src/core/brain/wasm-asm.ts";

const wasm = (globalThis as { WebAssembly?: { validate(bytes: Uint8Array<ArrayBuffer>): boolean } }).WebAssembly;
const U = 2 ** -24;

function randomF32(rng: Rng, n: number, scale = 1): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (rng.next() * 2 - 1) * scale;
  return v;
}

/** Checks out against the float64 oracle; returns the largest |err|/Σ|a·b| seen. */
function check(
  got: Float32Array, a: Float32Array, bt: Float32Array, M: number, K: number, N: number,
  bias: Float32Array | null, old: Float32Array | null, what: string,
): number {
  let worst = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0, mag = 0;
      for (let k = 0; k < K; k++) {
        const p = a[i * K + k]! * bt[j * K + k]!;
        s += p;
        mag += Math.abs(p);
      }
      const extra = (bias === null ? 0 : bias[j]!) + (old === null ? 0 : old[i * N + j]!);
      const extraMag = (bias === null ? 0 : Math.abs(bias[j]!)) + (old === null ? 0 : Math.abs(old[i * N + j]!));
      const err = Math.abs(got[i * N + j]! - (s + extra));
      const bound = U * (Math.ceil(K / 4) + 4) * (mag + extraMag);
      assert.ok(err <= bound, `${what}: (${i},${j}) = ${got[i * N + j]} vs ${s + extra}, err ${err} > ${bound}`);
      if (mag > 0) worst = Math.max(worst, Math.max(0, err - 2 * U * extraMag) / mag);
    }
  }
  return worst;
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 1], [1, 64, 64], [1, 300, 37], [5, 1, 3], [37, 16, 1], [4, 4, 4], [8, 12, 16],
  [3, 5, 7], [13, 29, 11], [64, 33, 65], [6, 1500, 70], [2, 2049, 9], [3, 4096, 37], [1, 4096, 64],
];

/** Kernel shapes beyond the default, to reach every code path of the generator (C not a multiple of 4, no unroll, fused). */
const VARIANTS: KernelShape[] = [
  KERNEL,
  { R: 1, C: 4, unroll: 1, madd: false, panelBytes: 4096 },
  { R: 4, C: 2, unroll: 2, madd: false, panelBytes: 256 * 1024 },
  { R: 3, C: 3, unroll: 4, madd: false, panelBytes: 8192 },
  { R: 2, C: 8, unroll: 1, madd: true, panelBytes: 256 * 1024 },
];

test("wasm-asm: LEB128 encodings", () => {
  assert.deepEqual(uleb(0), [0]);
  assert.deepEqual(uleb(127), [0x7f]);
  assert.deepEqual(uleb(128), [0x80, 0x01]);
  assert.deepEqual(uleb(624485), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(uleb(0xffffffff), [0xff, 0xff, 0xff, 0xff, 0x0f]);
  assert.deepEqual(sleb(0), [0]);
  assert.deepEqual(sleb(-1), [0x7f]);
  assert.deepEqual(sleb(63), [0x3f]);
  assert.deepEqual(sleb(64), [0xc0, 0x00]);
  assert.deepEqual(sleb(-64), [0x40]);
  assert.deepEqual(sleb(-123456), [0xc0, 0xbb, 0x78]);
  assert.deepEqual(sleb(-0x80000000), [0x80, 0x80, 0x80, 0x80, 0x78]);
  assert.throws(() => uleb(-1), RangeError);
  assert.throws(() => sleb(2 ** 31), RangeError);
});

test("wasm-asm: the modules it assembles validate", { skip: wasm === undefined }, () => {
  // (func (param i32 i32) (result i32) local.get 0 local.get 1 i32.add), and an invalid one
  const add = new Fn([I32, I32], [I32]).get(0).get(1).i32Add();
  assert.ok(wasm!.validate(assembleModule({ module: "m", field: "mem", minPages: 0 }, [{ name: "add", fn: add }])));
  const bad = new Fn([I32], [V128]).get(0); // an i32 where a v128 is due
  assert.equal(wasm!.validate(assembleModule({ module: "m", field: "mem", minPages: 0 }, [{ name: "bad", fn: bad }])), false);
  for (const shape of VARIANTS) assert.ok(wasm!.validate(buildKernelModule(shape)), JSON.stringify(shape));
});

test("simd: simdAvailable on Node 24", () => {
  assert.equal(simdAvailable(), true);
});

test("simd: matmulBTSimd equals the float64 oracle on odd shapes, every kernel variant", { skip: !simdAvailable() }, () => {
  const rng = createRng(7);
  let worst = 0;
  for (const shape of VARIANTS) {
    for (const [M, K, N] of SHAPES) {
      const a = randomF32(rng, M * K), bt = randomF32(rng, N * K);
      const out = randomF32(rng, M * N, 100); // garbage that must be overwritten
      matmulBTSimd(out, a, bt, M, K, N, null, false, shape);
      worst = Math.max(worst, check(out, a, bt, M, K, N, null, null, `${JSON.stringify(shape)} ${M}×${K}×${N}`));
    }
  }
  assert.ok(worst <= 1e-6, `typical error ${worst}`);
});

test("simd: bias, accumulate and both, like tensor.ts's matmulBT", { skip: !simdAvailable() }, () => {
  const rng = createRng(8);
  for (const [M, K, N] of [[1, 64, 37], [7, 33, 13], [9, 256, 64], [2, 4096, 5]] as const) {
    const a = randomF32(rng, M * K), bt = randomF32(rng, N * K), bias = randomF32(rng, N);
    for (const [withBias, accumulate] of [[true, false], [false, true], [true, true]] as const) {
      const old = randomF32(rng, M * N);
      const got = old.slice(), js = old.slice();
      matmulBTSimd(got, a, bt, M, K, N, withBias ? bias : null, accumulate);
      matmulBT(js, a, bt, M, K, N, withBias ? bias : null, accumulate);
      const what = `${M}×${K}×${N} bias=${withBias} accumulate=${accumulate}`;
      check(got, a, bt, M, K, N, withBias ? bias : null, accumulate ? old : null, what);
      // against the JS kernel: both within their bounds of the exact value, so within the sum of them
      for (let x = 0; x < M * N; x++) {
        const tol = 2 * U * (Math.ceil(K / 4) + 4) * (K + 2) + 1e-6;
        assert.ok(Math.abs(got[x]! - js[x]!) <= tol, `${what}: ${got[x]} vs js ${js[x]}`);
      }
    }
  }
});

test("simd: a row computed alone equals the same row inside a block, bit for bit", { skip: !simdAvailable() }, () => {
  const rng = createRng(9);
  const M = 7, K = 130, N = 45;
  const a = randomF32(rng, M * K), bt = randomF32(rng, N * K), bias = randomF32(rng, N);
  const all = new Float32Array(M * N);
  matmulBTSimd(all, a, bt, M, K, N, bias);
  for (let i = 0; i < M; i++) {
    const row = new Float32Array(N);
    matmulBTSimd(row, a.subarray(i * K, (i + 1) * K), bt, 1, K, N, bias);
    assert.deepEqual(row, all.subarray(i * N, (i + 1) * N), `row ${i}`);
  }
});

test("simd: degenerate sizes and memory growth", { skip: !simdAvailable() }, () => {
  const rng = createRng(10);
  // K = 0: out = bias (+ out); M = 0 or N = 0: nothing
  const bias = Float32Array.of(1, 2, 3);
  const out = Float32Array.of(9, 9, 9, 9, 9, 9);
  matmulBTSimd(out, new Float32Array(0), new Float32Array(0), 2, 0, 3, bias, true);
  assert.deepEqual(out, Float32Array.of(10, 11, 12, 10, 11, 12));
  matmulBTSimd(out, new Float32Array(0), new Float32Array(0), 2, 0, 3);
  assert.deepEqual(out, new Float32Array(6));
  matmulBTSimd(out, new Float32Array(0), new Float32Array(0), 0, 5, 3);
  assert.throws(() => matmulBTSimd(new Float32Array(1), new Float32Array(3), new Float32Array(4), 1, 4, 1), RangeError);
  // a small product, then one that needs several more pages, then the small one again
  for (const [M, K, N] of [[2, 8, 4], [64, 512, 300], [2, 8, 4]] as const) {
    const a = randomF32(rng, M * K), bt = randomF32(rng, N * K), o = new Float32Array(M * N);
    matmulBTSimd(o, a, bt, M, K, N);
    check(o, a, bt, M, K, N, null, null, `${M}×${K}×${N}`);
  }
});
