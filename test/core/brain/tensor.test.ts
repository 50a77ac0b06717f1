// The blocked kernels of src/core/brain/tensor.ts against plain float64 oracles (research/
// anchors-brain.md §4.4): random shapes that are and are not multiples of the 4×4 block, vectors
// (1×K, M×1), K beyond one K slice and N beyond one column panel, every layout and flag.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRng, type Rng } from "../../../src/core/util/rng.ts";
import {
  gelu, geluBackward, gemm, layerNorm, layerNormBackward, LN_EPS, matmul, matmulAT, matmulBT, matmulFlops,
  softmaxRows, sumRows, type Vec,
  setSimd, simdEnabled, SIMD_MIN_WORK, linear,
} from "../../../src/core/brain/tensor.ts";

function randomVec(rng: Rng, n: number, ctor: typeof Float32Array | typeof Float64Array = Float32Array, scale = 1): Vec {
  const v = new ctor(n);
  for (let i = 0; i < n; i++) v[i] = (rng.next() * 2 - 1) * scale;
  return v;
}

/** Reference A(i,k)·B(k,j) sums in float64, with Σ|A·B| for an error bound that cancellation cannot fool. */
function oracle(M: number, K: number, N: number, A: (i: number, k: number) => number, B: (k: number, j: number) => number) {
  const ref = new Float64Array(M * N), mag = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0, m = 0;
      for (let k = 0; k < K; k++) {
        const p = A(i, k) * B(k, j);
        s += p;
        m += Math.abs(p);
      }
      ref[i * N + j] = s;
      mag[i * N + j] = m;
    }
  }
  return { ref, mag };
}

/** |got − ref| ≤ 1e-5·|ref| (f32 storage rounding) + 1e-12·Σ|terms| (double accumulation). */
function assertClose(got: Vec, ref: Float64Array, mag: Float64Array, what: string): void {
  assert.equal(got.length, ref.length);
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(got[i]! - ref[i]!);
    assert.ok(err <= 1e-5 * Math.abs(ref[i]!) + 1e-12 * mag[i]!, `${what}: element ${i}: ${got[i]} vs ${ref[i]}`);
  }
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 1], [1, 64, 37], [1, 300, 256], [5, 1, 3], [37, 16, 1], [4, 4, 4], [8, 12, 16],
  [3, 5, 7], [13, 29, 11], [64, 33, 65], [6, 1500, 70], [2, 2049, 9],
];

test("tensor: matmul, matmulBT and matmulAT equal the float64 oracle on odd shapes", () => {
  const rng = createRng(1);
  for (const [M, K, N] of SHAPES) {
    const a = randomVec(rng, M * K), b = randomVec(rng, K * N);
    const out = new Float32Array(M * N);
    const nn = oracle(M, K, N, (i, k) => a[i * K + k]!, (k, j) => b[k * N + j]!);
    matmul(out, a, b, M, K, N);
    assertClose(out, nn.ref, nn.mag, `matmul ${M}×${K}×${N}`);

    // bt holds b transposed: bt[j][k] = B(k, j).
    const bt = new Float32Array(N * K);
    for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) bt[j * K + k] = b[k * N + j]!;
    // The JS kernel (f64 accumulation) is held to the strict bound; large products normally run on
    // the SIMD kernel (f32 lanes), held to the f32-summation bound of simd.test.ts.
    setSimd(false);
    out.fill(0);
    matmulBT(out, a, bt, M, K, N);
    setSimd(true);
    assertClose(out, nn.ref, nn.mag, `matmulBT ${M}×${K}×${N}`);
    out.fill(0);
    matmulBT(out, a, bt, M, K, N);
    const usedSimd = simdEnabled() && M * K * N >= SIMD_MIN_WORK;
    for (let i = 0; i < out.length; i++) {
      const bound = usedSimd ? 2 ** -24 * (Math.ceil(K / 4) + 4) * nn.mag[i]! : 1e-5 * Math.abs(nn.ref[i]!) + 1e-12 * nn.mag[i]!;
      assert.ok(Math.abs(out[i]! - nn.ref[i]!) <= bound, `matmulBT ${M}×${K}×${N}${usedSimd ? " (SIMD)" : ""}: element ${i}`);
    }

    // at holds a transposed: at[k][i] = A(i, k).
    const at = new Float32Array(K * M);
    for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) at[k * M + i] = a[i * K + k]!;
    out.fill(0);
    matmulAT(out, at, b, M, K, N);
    assertClose(out, nn.ref, nn.mag, `matmulAT ${M}×${K}×${N}`);
  }
});

test("tensor: bias and accumulate add exactly once, in every layout", () => {
  const rng = createRng(2);
  // |got − ref| ≤ 1e-5 times the magnitude of everything that was added up.
  const check = (got: Vec, ref: Float64Array, mag: Float64Array, what: string) => {
    for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i]! - ref[i]!) <= 1e-5 * mag[i]!, `${what} [${i}] ${got[i]} vs ${ref[i]}`);
  };
  for (const [M, K, N] of [[7, 9, 6], [1, 20, 5], [12, 1100, 13]] as const) {
    const a = randomVec(rng, M * K), b = randomVec(rng, K * N), bias = randomVec(rng, N), init = randomVec(rng, M * N);
    const bt = new Float32Array(N * K), at = new Float32Array(K * M);
    for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) bt[j * K + k] = b[k * N + j]!;
    for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) at[k * M + i] = a[i * K + k]!;
    const base = oracle(M, K, N, (i, k) => a[i * K + k]!, (k, j) => b[k * N + j]!);
    const withBias = base.ref.map((r, i) => r + bias[i % N]!);
    const withBoth = withBias.map((r, i) => r + init[i]!);
    const magBias = base.mag.map((m, i) => m + Math.abs(bias[i % N]!));
    const magBoth = magBias.map((m, i) => m + Math.abs(init[i]!));
    const out = new Float32Array(M * N);

    out.set(init);
    matmulBT(out, a, bt, M, K, N, bias, true);
    check(out, withBoth, magBoth, "matmulBT bias+accumulate");
    out.set(init);
    matmulBT(out, a, bt, M, K, N, bias, false);
    check(out, withBias, magBias, "matmulBT bias, overwrite");
    out.set(init);
    matmul(out, a, b, M, K, N, bias, true);
    check(out, withBoth, magBoth, "matmul bias+accumulate");
    out.set(init);
    matmul(out, a, b, M, K, N, null, true);
    check(out, base.ref.map((r, i) => r + init[i]!), base.mag.map((m, i) => m + Math.abs(init[i]!)), "matmul accumulate");
    out.set(init);
    matmulAT(out, at, b, M, K, N, true);
    check(out, base.ref.map((r, i) => r + init[i]!), base.mag.map((m, i) => m + Math.abs(init[i]!)), "matmulAT accumulate");
  }
  // K = 0: an empty sum is zero (or leaves out unchanged when accumulating).
  const out = new Float32Array([5, 6]);
  matmul(out, new Float32Array(0), new Float32Array(0), 1, 0, 2);
  assert.deepEqual([...out], [0, 0]);
  out.set([5, 6]);
  matmul(out, new Float32Array(0), new Float32Array(0), 1, 0, 2, null, true);
  assert.deepEqual([...out], [5, 6]);
});

test("tensor: gemm with offsets and strides computes a column slice of W (Megatron row-parallel)", () => {
  // out[T×d] = act[T×w] · W[:, c0:c1]ᵀ with W = [d×F]: B(k,j) = W[j·F + c0 + k], written into a
  // column window of a wider output.
  const rng = createRng(3);
  const T = 5, d = 6, F = 23, c0 = 7, c1 = 18, w = c1 - c0, ldo = 10, oOff = 2;
  const act = randomVec(rng, T * w), W = randomVec(rng, d * F), bias = randomVec(rng, d + 3);
  const out = new Float32Array(T * ldo).fill(99);
  gemm(T, w, d, act, 0, w, 1, W, c0, 1, F, out, oOff, ldo, bias, 3, false);
  const o = oracle(T, w, d, (i, k) => act[i * w + k]!, (k, j) => W[j * F + c0 + k]!);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < ldo; j++) {
      const got = out[i * ldo + j]!;
      if (j < oOff || j >= oOff + d) assert.equal(got, 99, "outside the window is untouched");
      else {
        const ref = o.ref[i * d + j - oOff]! + bias[3 + j - oOff]!;
        assert.ok(Math.abs(got - ref) <= 1e-5 * Math.abs(ref) + 1e-6, `(${i},${j}) ${got} vs ${ref}`);
      }
    }
  }
});

test("tensor: f64 inputs give f64 results to double precision", () => {
  const rng = createRng(4);
  const [M, K, N] = [9, 31, 10];
  const a = randomVec(rng, M * K, Float64Array), b = randomVec(rng, K * N, Float64Array);
  const out = new Float64Array(M * N);
  matmul(out, a, b, M, K, N);
  const o = oracle(M, K, N, (i, k) => a[i * K + k]!, (k, j) => b[k * N + j]!);
  for (let i = 0; i < M * N; i++) assert.ok(Math.abs(out[i]! - o.ref[i]!) <= 1e-14 * o.mag[i]!, `${out[i]} vs ${o.ref[i]}`);
});

test("tensor: a row computed alone equals the same row inside a block, bit for bit", () => {
  // Decode (M = 1) and the whole-sequence forward (M = T) must agree exactly.
  const rng = createRng(5);
  const [M, K, N] = [11, 77, 19];
  const a = randomVec(rng, M * K), bt = randomVec(rng, N * K), bias = randomVec(rng, N);
  const all = new Float32Array(M * N), one = new Float32Array(N);
  matmulBT(all, a, bt, M, K, N, bias);
  for (let i = 0; i < M; i++) {
    matmulBT(one, a.subarray(i * K, (i + 1) * K), bt, 1, K, N, bias);
    assert.deepEqual([...one], [...all.subarray(i * N, (i + 1) * N)], `row ${i}`);
  }
});

test("tensor: sumRows adds column sums", () => {
  const x = new Float32Array([1, 2, 3, 4, 5, 6]);
  const out = new Float32Array([10, 20, 30]);
  sumRows(out, x, 2, 3);
  assert.deepEqual([...out], [15, 27, 39]);
});

test("tensor: softmaxRows equals exp/sum in float64 and survives huge logits", () => {
  const rng = createRng(6);
  for (const [rows, cols] of [[1, 1], [3, 7], [5, 64]] as const) {
    const x = randomVec(rng, rows * cols, Float32Array, 8);
    const ref = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += Math.exp(x[i * cols + j]!);
      for (let j = 0; j < cols; j++) ref[i * cols + j] = Math.exp(x[i * cols + j]!) / s;
    }
    softmaxRows(x, rows, cols);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - ref[i]!) <= 1e-5 * ref[i]! + 1e-30, `${x[i]} vs ${ref[i]}`);
  }
  const big = new Float32Array([1000, 1001, -1000]);
  softmaxRows(big, 1, 3);
  const e = Math.exp(-1);
  assert.ok(Math.abs(big[0]! - e / (1 + e)) < 1e-7 && Math.abs(big[1]! - 1 / (1 + e)) < 1e-7 && big[2] === 0, `${[...big]}`);
});

function layerNormOracle(x: Vec, g: Vec, b: Vec, rows: number, d: number) {
  const out = new Float64Array(rows * d), n = new Float64Array(rows * d), rstd = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let m = 0;
    for (let j = 0; j < d; j++) m += x[i * d + j]! / d;
    let v = 0;
    for (let j = 0; j < d; j++) v += (x[i * d + j]! - m) ** 2 / d;
    rstd[i] = 1 / Math.sqrt(v + LN_EPS);
    for (let j = 0; j < d; j++) {
      n[i * d + j] = (x[i * d + j]! - m) * rstd[i]!;
      out[i * d + j] = n[i * d + j]! * g[j]! + b[j]!;
    }
  }
  return { out, n, rstd };
}

test("tensor: layerNorm forward equals the float64 oracle (f32, in place too)", () => {
  const rng = createRng(7);
  for (const [rows, d] of [[1, 1], [1, 8], [6, 13], [4, 256]] as const) {
    const x = randomVec(rng, rows * d, Float32Array, 3), g = randomVec(rng, d), b = randomVec(rng, d);
    const out = new Float32Array(rows * d), mean = new Float32Array(rows), rstd = new Float32Array(rows);
    layerNorm(out, x, g, b, rows, d, mean, rstd);
    const o = layerNormOracle(x, g, b, rows, d);
    for (let i = 0; i < rows * d; i++) {
      const scale = Math.abs(o.n[i]! * g[i % d]!) + Math.abs(b[i % d]!);
      assert.ok(Math.abs(out[i]! - o.out[i]!) <= 1e-5 * Math.max(scale, 1e-3), `${rows}×${d} [${i}] ${out[i]} vs ${o.out[i]}`);
    }
    for (let i = 0; i < rows; i++) assert.ok(Math.abs(rstd[i]! - o.rstd[i]!) <= 1e-5 * o.rstd[i]!);
    const inPlace = new Float32Array(x);
    layerNorm(inPlace, inPlace, g, b, rows, d, mean, rstd);
    assert.deepEqual([...inPlace], [...out]);
  }
  // A constant row normalises to the bias (variance 0, eps keeps rstd finite).
  const out = new Float32Array(3);
  layerNorm(out, new Float32Array([2, 2, 2]), new Float32Array([5, 5, 5]), new Float32Array([1, 2, 3]), 1, 3, new Float32Array(1), new Float32Array(1));
  assert.deepEqual([...out], [1, 2, 3]);
});

test("tensor: layerNormBackward equals the explicit Jacobian and central differences (f64)", () => {
  const rng = createRng(8);
  for (const [rows, d] of [[1, 2], [3, 5], [2, 16]] as const) {
    const x = randomVec(rng, rows * d, Float64Array, 2), g = randomVec(rng, d, Float64Array), b = randomVec(rng, d, Float64Array);
    const dout = randomVec(rng, rows * d, Float64Array);
    const mean = new Float64Array(rows), rstd = new Float64Array(rows), out = new Float64Array(rows * d);
    layerNorm(out, x, g, b, rows, d, mean, rstd);
    const dx0 = randomVec(rng, rows * d, Float64Array), dg0 = randomVec(rng, d, Float64Array), db0 = randomVec(rng, d, Float64Array);
    const dx = new Float64Array(dx0), dg = new Float64Array(dg0), db = new Float64Array(db0);
    layerNormBackward(dx, dg, db, dout, x, g, mean, rstd, rows, d);

    // Jacobian: ∂n_k/∂x_j = rstd·(δ_kj − 1/d − n_k·n_j/d).
    const o = layerNormOracle(x, g, b, rows, d);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < d; j++) {
        let ref = dx0[i * d + j]!;
        for (let k = 0; k < d; k++) {
          const jac = o.rstd[i]! * ((k === j ? 1 : 0) - 1 / d - (o.n[i * d + k]! * o.n[i * d + j]!) / d);
          ref += dout[i * d + k]! * g[k]! * jac;
        }
        assert.ok(Math.abs(dx[i * d + j]! - ref) <= 1e-12 * (1 + Math.abs(ref)), `dx ${dx[i * d + j]} vs ${ref}`);
      }
    }
    for (let j = 0; j < d; j++) {
      let rg = dg0[j]!, rb = db0[j]!;
      for (let i = 0; i < rows; i++) {
        rg += dout[i * d + j]! * o.n[i * d + j]!;
        rb += dout[i * d + j]!;
      }
      assert.ok(Math.abs(dg[j]! - rg) <= 1e-12 * (1 + Math.abs(rg)));
      assert.ok(Math.abs(db[j]! - rb) <= 1e-12 * (1 + Math.abs(rb)));
    }

    // Central differences of L = Σ dout·LN(x) with respect to x.
    const h = 1e-6;
    const loss = (xx: Float64Array) => {
      const y = new Float64Array(rows * d);
      layerNorm(y, xx, g, b, rows, d, new Float64Array(rows), new Float64Array(rows));
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i]! * dout[i]!;
      return s;
    };
    for (let i = 0; i < rows * d; i++) {
      const xp = new Float64Array(x), xm = new Float64Array(x);
      xp[i] = xp[i]! + h;
      xm[i] = xm[i]! - h;
      const num = (loss(xp) - loss(xm)) / (2 * h);
      const ana = dx[i]! - dx0[i]!;
      assert.ok(Math.abs(num - ana) <= 1e-6 * Math.max(Math.abs(num), Math.abs(ana), 1e-3), `fd ${num} vs ${ana}`);
    }
  }
});

test("tensor: gelu is PyTorch's GELU(approximate='tanh'), forward and backward", () => {
  // Values from torch 1.13 (float64): nn.GELU(approximate='tanh')(x) and its gradient.
  const x = new Float64Array([-3, -1, -0.5, 0, 0.3, 1, 2.5]);
  const y = [-0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0, 0.18537092354275922, 0.8411919906082768, 2.484915733910001];
  const dy = [-0.011584166630969648, -0.08296408384578252, 0.13263009646535764, 0.5, 0.7322954516388018, 1.0829640838457826, 1.037951576212666];
  const out = new Float64Array(x.length), dx = new Float64Array(x.length);
  gelu(out, x, x.length);
  geluBackward(dx, new Float64Array(x.length).fill(1), x, x.length);
  for (let i = 0; i < x.length; i++) {
    assert.ok(Math.abs(out[i]! - y[i]!) <= 1e-15, `gelu(${x[i]}) = ${out[i]} vs ${y[i]}`);
    assert.ok(Math.abs(dx[i]! - dy[i]!) <= 1e-15, `gelu'(${x[i]}) = ${dx[i]} vs ${dy[i]}`);
  }
  // f32, in place, and the chain rule against central differences.
  const rng = createRng(10);
  const n = 101;
  const xs = randomVec(rng, n, Float64Array, 4), g = randomVec(rng, n, Float64Array);
  const d = new Float64Array(g);
  geluBackward(d, d, xs, n);
  const f = new Float64Array(n);
  const h = 1e-6;
  for (let i = 0; i < n; i++) {
    gelu(f, new Float64Array([xs[i]! + h, xs[i]! - h]), 2);
    const num = ((f[0]! - f[1]!) / (2 * h)) * g[i]!;
    assert.ok(Math.abs(num - d[i]!) <= 1e-7 * Math.max(1, Math.abs(num)), `${num} vs ${d[i]}`);
  }
  const x32 = new Float32Array(xs);
  const ref = new Float64Array(n);
  gelu(ref, x32, n);
  gelu(x32, x32, n);
  for (let i = 0; i < n; i++) assert.ok(Math.abs(x32[i]! - ref[i]!) <= 1e-6 * Math.abs(ref[i]!) + 1e-30);
});

test("tensor: matmulFlops counts a multiply and an add per term", () => {
  assert.equal(matmulFlops(256, 256, 1024), 2 * 256 * 256 * 1024);
  assert.equal(matmulFlops(1, 1, 1), 2);
});

test("tensor: linear over row and column slices of W equals gemm, with the SIMD kernel and without", () => {
  const rng = createRng(9);
  // [M, K, N, rowsOfW (q/k/v of a head range) or columns (a share of Wo or W2)]
  const cases: Array<[number, number, number, "rows" | "cols"]> = [[64, 96, 48, "rows"], [64, 48, 96, "cols"], [3, 5, 7, "rows"], [1, 256, 256, "cols"]];
  for (const [M, K, N, kind] of cases) {
    const ld = K + 13; // W is wider than the slice (and the output has a larger leading dimension)
    const a = randomVec(rng, M * (K + 5)), w = randomVec(rng, (N + 3) * ld), bias = randomVec(rng, N + 4);
    const aOff = 2, lda = K + 5, wOff = kind === "rows" ? 3 * ld : 7, ldo = N + 2, oOff = 1;
    const start = randomVec(rng, M * ldo + 1);
    const ref = start.slice();
    gemm(M, K, N, a, aOff, lda, 1, w, wOff, 1, ld, ref, oOff, ldo, bias, 4, true);
    for (const simd of [false, true]) {
      setSimd(simd);
      const got = start.slice();
      linear(M, K, N, a, aOff, lda, w, wOff, ld, got, oOff, ldo, bias, 4, true);
      for (let i = 0; i < got.length; i++) {
        const inside = i >= oOff && (i - oOff) % ldo < N && i - oOff < M * ldo;
        if (!inside) assert.equal(got[i], start[i], `${kind} ${M}×${K}×${N}: element ${i} outside the output was touched`);
        else assert.ok(Math.abs(got[i]! - ref[i]!) <= 1e-5 * (1 + Math.abs(ref[i]!)) * Math.sqrt(K), `${kind} ${M}×${K}×${N} simd=${simd}: element ${i} ${got[i]} vs ${ref[i]}`);
      }
    }
    setSimd(true);
  }
});
