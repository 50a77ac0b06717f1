// Dense kernels of the Brain over flat row-major typed arrays: matrix products, softmax, LayerNorm
// and GELU, forward and backward. Every kernel accepts Float32Array (weights and activations in
// production) and Float64Array (the gradient check runs the very same code in double precision);
// sums are always accumulated in JS numbers (doubles) and rounded once when stored.
//
// How the matrix products are blocked (research/anchors-brain.md §3.1–3.2, measured with Node 24 on
// this 2-core Zen 4 VM):
// - One strided kernel, gemm, serves every layout: element (i,k) of A is a[aOff + i·ars + k·acs] and
//   (k,j) of B is b[bOff + k·brs + j·bcs], so a·b, a·bᵀ (PyTorch Linear weights W[out][in]) and aᵀ·b
//   (weight gradients dW += dyᵀ·x) are the same loop with different strides. Measured: the strided
//   form runs as fast as three hand-specialised copies (≈6.3 GFLOP/s f32 for 256×256×1024 in all
//   three layouts), because the row bases are computed outside the k loop.
// - Register blocking: a 4×4 micro-kernel keeps 16 accumulators in registers and loads 4 + 4 values
//   per k (16 multiply-adds per 8 loads). 4×4 measured 6.4 GFLOP/s against 5.1 for 2×4. Edges use
//   4×1, 1×4 and 1×1 kernels, so any M, N works; 1×4 is also the matrix–vector fast path (M = 1,
//   decode with a KV cache), where the weights are streamed once.
// - Cache tiling: columns of the output are visited in panels of at most PANEL_ELEMENTS/kc columns
//   of B (≈128 KB of f32, resident in the 1 MB L2 while every row block of A passes over it), and K
//   is cut into slices of K_TILE, later slices adding onto the partial sums. At the sizes the Brain
//   uses (K ≤ 1024) the K slice is the whole K; the N panel gained ≈10% at 512×2048×2048.
// Accumulation order over k is the same in every micro-kernel, so a row computed alone (decode)
// equals the same row computed inside a block (whole-sequence forward) bit for bit.

import { matmulBTSimd, simdAvailable } from "./simd.ts";

/** A flat row-major tensor: f32 in production, f64 for gradient checks and exact comparisons. */
export type Vec = Float32Array | Float64Array;

/** Epsilon of every LayerNorm (PyTorch's default). */
export const LN_EPS = 1e-5;

const K_TILE = 1024;
const PANEL_ELEMENTS = 32 * 1024;

/** Floating-point operations of one M×K by K×N product (a multiply and an add per term). */
export function matmulFlops(M: number, K: number, N: number): number {
  return 2 * M * K * N;
}

/**
 * General product with strides: out[oOff + i·ldo + j] (+)= Σ_k A(i,k)·B(k,j) (+ bias[biasOff + j]),
 * A(i,k) = a[aOff + i·ars + k·acs], B(k,j) = b[bOff + k·brs + j·bcs], for i < M, j < N, k < K.
 * With `accumulate` the result is added to out, otherwise it replaces it. The bias, if any, is
 * added once. out must not overlap a or b.
 */
export function gemm(
  M: number, K: number, N: number,
  a: Vec, aOff: number, ars: number, acs: number,
  b: Vec, bOff: number, brs: number, bcs: number,
  out: Vec, oOff: number, ldo: number,
  bias: Vec | null = null, biasOff = 0, accumulate = false,
): void {
  let add = accumulate;
  if (bias !== null) {
    for (let i = 0; i < M; i++) {
      const o = oOff + i * ldo;
      if (add) for (let j = 0; j < N; j++) out[o + j] = out[o + j]! + bias[biasOff + j]!;
      else for (let j = 0; j < N; j++) out[o + j] = bias[biasOff + j]!;
    }
    add = true;
  }
  if (K === 0) {
    if (!add) for (let i = 0; i < M; i++) out.fill(0, oOff + i * ldo, oOff + i * ldo + N);
    return;
  }
  const M4 = M - (M % 4);
  for (let k0 = 0; k0 < K; k0 += K_TILE) {
    const kc = Math.min(K_TILE, K - k0);
    const ak = aOff + k0 * acs;
    const bk = bOff + k0 * brs;
    const nc = Math.max(4, Math.floor(PANEL_ELEMENTS / kc / 4) * 4);
    for (let j0 = 0; j0 < N; j0 += nc) {
      const j1 = Math.min(N, j0 + nc);
      const j4 = j1 - ((j1 - j0) % 4);
      for (let i = 0; i < M4; i += 4) {
        for (let j = j0; j < j4; j += 4) kernel44(kc, a, ak + i * ars, ars, acs, b, bk + j * bcs, brs, bcs, out, oOff + i * ldo + j, ldo, add);
        for (let j = j4; j < j1; j++) kernel41(kc, a, ak + i * ars, ars, acs, b, bk + j * bcs, brs, out, oOff + i * ldo + j, ldo, add);
      }
      for (let i = M4; i < M; i++) {
        for (let j = j0; j < j4; j += 4) kernel14(kc, a, ak + i * ars, acs, b, bk + j * bcs, brs, bcs, out, oOff + i * ldo + j, add);
        for (let j = j4; j < j1; j++) kernel11(kc, a, ak + i * ars, acs, b, bk + j * bcs, brs, out, oOff + i * ldo + j, add);
      }
    }
    add = true;
  }
}

function kernel44(
  K: number, a: Vec, pa: number, ars: number, acs: number,
  b: Vec, pb: number, brs: number, bcs: number, out: Vec, o: number, ldo: number, add: boolean,
): void {
  const ars2 = 2 * ars, ars3 = 3 * ars, bcs2 = 2 * bcs, bcs3 = 3 * bcs;
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let k = 0, p = pa, q = pb; k < K; k++, p += acs, q += brs) {
    const y0 = b[q]!, y1 = b[q + bcs]!, y2 = b[q + bcs2]!, y3 = b[q + bcs3]!;
    let x = a[p]!;
    c00 += x * y0; c01 += x * y1; c02 += x * y2; c03 += x * y3;
    x = a[p + ars]!;
    c10 += x * y0; c11 += x * y1; c12 += x * y2; c13 += x * y3;
    x = a[p + ars2]!;
    c20 += x * y0; c21 += x * y1; c22 += x * y2; c23 += x * y3;
    x = a[p + ars3]!;
    c30 += x * y0; c31 += x * y1; c32 += x * y2; c33 += x * y3;
  }
  const o1 = o + ldo, o2 = o1 + ldo, o3 = o2 + ldo;
  if (add) {
    out[o] = out[o]! + c00; out[o + 1] = out[o + 1]! + c01; out[o + 2] = out[o + 2]! + c02; out[o + 3] = out[o + 3]! + c03;
    out[o1] = out[o1]! + c10; out[o1 + 1] = out[o1 + 1]! + c11; out[o1 + 2] = out[o1 + 2]! + c12; out[o1 + 3] = out[o1 + 3]! + c13;
    out[o2] = out[o2]! + c20; out[o2 + 1] = out[o2 + 1]! + c21; out[o2 + 2] = out[o2 + 2]! + c22; out[o2 + 3] = out[o2 + 3]! + c23;
    out[o3] = out[o3]! + c30; out[o3 + 1] = out[o3 + 1]! + c31; out[o3 + 2] = out[o3 + 2]! + c32; out[o3 + 3] = out[o3 + 3]! + c33;
  } else {
    out[o] = c00; out[o + 1] = c01; out[o + 2] = c02; out[o + 3] = c03;
    out[o1] = c10; out[o1 + 1] = c11; out[o1 + 2] = c12; out[o1 + 3] = c13;
    out[o2] = c20; out[o2 + 1] = c21; out[o2 + 2] = c22; out[o2 + 3] = c23;
    out[o3] = c30; out[o3 + 1] = c31; out[o3 + 2] = c32; out[o3 + 3] = c33;
  }
}

function kernel41(
  K: number, a: Vec, pa: number, ars: number, acs: number,
  b: Vec, pb: number, brs: number, out: Vec, o: number, ldo: number, add: boolean,
): void {
  const ars2 = 2 * ars, ars3 = 3 * ars;
  let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
  for (let k = 0, p = pa, q = pb; k < K; k++, p += acs, q += brs) {
    const y = b[q]!;
    c0 += a[p]! * y; c1 += a[p + ars]! * y; c2 += a[p + ars2]! * y; c3 += a[p + ars3]! * y;
  }
  const o1 = o + ldo, o2 = o1 + ldo, o3 = o2 + ldo;
  if (add) {
    out[o] = out[o]! + c0; out[o1] = out[o1]! + c1; out[o2] = out[o2]! + c2; out[o3] = out[o3]! + c3;
  } else {
    out[o] = c0; out[o1] = c1; out[o2] = c2; out[o3] = c3;
  }
}

function kernel14(
  K: number, a: Vec, pa: number, acs: number,
  b: Vec, pb: number, brs: number, bcs: number, out: Vec, o: number, add: boolean,
): void {
  const bcs2 = 2 * bcs, bcs3 = 3 * bcs;
  let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
  for (let k = 0, p = pa, q = pb; k < K; k++, p += acs, q += brs) {
    const x = a[p]!;
    c0 += x * b[q]!; c1 += x * b[q + bcs]!; c2 += x * b[q + bcs2]!; c3 += x * b[q + bcs3]!;
  }
  if (add) {
    out[o] = out[o]! + c0; out[o + 1] = out[o + 1]! + c1; out[o + 2] = out[o + 2]! + c2; out[o + 3] = out[o + 3]! + c3;
  } else {
    out[o] = c0; out[o + 1] = c1; out[o + 2] = c2; out[o + 3] = c3;
  }
}

function kernel11(K: number, a: Vec, pa: number, acs: number, b: Vec, pb: number, brs: number, out: Vec, o: number, add: boolean): void {
  let c = 0;
  for (let k = 0, p = pa, q = pb; k < K; k++, p += acs, q += brs) c += a[p]! * b[q]!;
  out[o] = add ? out[o]! + c : c;
}

/** out[M×N] (+)= a[M×K]·b[K×N] (+ bias[N]). */
export function matmul(out: Vec, a: Vec, b: Vec, M: number, K: number, N: number, bias: Vec | null = null, accumulate = false): void {
  gemm(M, K, N, a, 0, K, 1, b, 0, N, 1, out, 0, N, bias, 0, accumulate);
}

/** out[M×N] (+)= a[M×K]·btᵀ (+ bias[N]), bt = [N×K]: y = x·Wᵀ + b for a Linear weight W[out][in]. */
export function matmulBT(out: Vec, a: Vec, bt: Vec, M: number, K: number, N: number, bias: Vec | null = null, accumulate = false): void {
  if (M * K * N >= SIMD_MIN_WORK && simdOn() && out instanceof Float32Array && a instanceof Float32Array && bt instanceof Float32Array
    && (bias === null || bias instanceof Float32Array)) {
    matmulBTSimd(out, a, bt, M, K, N, bias, accumulate);
    return;
  }
  gemm(M, K, N, a, 0, K, 1, bt, 0, 1, K, out, 0, N, bias, 0, accumulate);
}

/**
 * matmulBT on Float32Arrays of at least this much work (M·K·N) runs on the WebAssembly SIMD kernel
 * (simd.ts: f32x4 lanes, about 9× this file's JS kernel at 256³ on this machine); smaller products,
 * Float64Arrays (the gradient checks) and engines without SIMD stay here. The SIMD kernel
 * accumulates in f32 (relative error ≈ 5e-8 of Σ|a·b| at K ≤ 1024, against ≈ 1e-8 here).
 */
export const SIMD_MIN_WORK = 1 << 15;
let simdWanted = true;
let simdReady: boolean | undefined;

function simdOn(): boolean {
  if (!simdWanted) return false;
  simdReady ??= simdAvailable();
  return simdReady;
}

/** Turns the SIMD kernel off or on (benchmarks compare the two); on by default where available. */
export function setSimd(enabled: boolean): void {
  simdWanted = enabled;
}

/**
 * A Linear layer over slices: out[oOff + i·ldo + j] (+)= Σ_k a[aOff + i·lda + k] · w[wOff + j·ldw + k]
 * (+ bias[biasOff + j]) for i < M, j < N, k < K — rows of W (a head's q/k/v) or columns of W (a
 * head's share of Wo, an FFN column range of W2) as tensor parallelism cuts them. Large products on
 * Float32Arrays pack the slices and run the SIMD kernel; the rest go through gemm.
 */
export function linear(
  M: number, K: number, N: number,
  a: Vec, aOff: number, lda: number,
  w: Vec, wOff: number, ldw: number,
  out: Vec, oOff: number, ldo: number,
  bias: Vec | null = null, biasOff = 0, accumulate = false,
): void {
  if (!(M * K * N >= SIMD_MIN_WORK && simdOn() && out instanceof Float32Array && a instanceof Float32Array && w instanceof Float32Array
    && (bias === null || bias instanceof Float32Array))) {
    gemm(M, K, N, a, aOff, lda, 1, w, wOff, 1, ldw, out, oOff, ldo, bias, biasOff, accumulate);
    return;
  }
  const A = lda === K ? a.subarray(aOff, aOff + M * K) : pack(0, a, aOff, lda, M, K);
  const W = ldw === K ? w.subarray(wOff, wOff + N * K) : pack(1, w, wOff, ldw, N, K);
  const B = bias === null ? null : bias.subarray(biasOff, biasOff + N);
  if (ldo === N) {
    matmulBTSimd(out.subarray(oOff, oOff + M * N), A, W, M, K, N, B, accumulate);
    return;
  }
  const O = scratchOf(2, M * N);
  if (accumulate) for (let i = 0; i < M; i++) O.set(out.subarray(oOff + i * ldo, oOff + i * ldo + N), i * N);
  matmulBTSimd(O, A, W, M, K, N, B, accumulate);
  for (let i = 0; i < M; i++) out.set(O.subarray(i * N, i * N + N), oOff + i * ldo);
}

const scratch: Float32Array[] = [new Float32Array(0), new Float32Array(0), new Float32Array(0)];

function scratchOf(slot: number, n: number): Float32Array {
  let buf = scratch[slot]!;
  if (buf.length < n) scratch[slot] = buf = new Float32Array(Math.max(n, 2 * buf.length));
  return buf.subarray(0, n);
}

/** Rows × cols of x with leading dimension ld, copied contiguous into scratch slot `slot`. */
function pack(slot: number, x: Float32Array, off: number, ld: number, rows: number, cols: number): Float32Array {
  const p = scratchOf(slot, rows * cols);
  for (let r = 0; r < rows; r++) p.set(x.subarray(off + r * ld, off + r * ld + cols), r * cols);
  return p;
}

/** Whether matmulBT uses the SIMD kernel for large products. */
export function simdEnabled(): boolean {
  return simdOn();
}

/** out[M×N] (+)= atᵀ·b, at = [K×M], b = [K×N]: the weight gradient dW[out][in] += dyᵀ·x. */
export function matmulAT(out: Vec, at: Vec, b: Vec, M: number, K: number, N: number, accumulate = false): void {
  gemm(M, K, N, at, 0, 1, M, b, 0, N, 1, out, 0, N, null, 0, accumulate);
}

/** out[j] += Σ_i x[i·N + j] for the M rows of x[M×N]: the bias gradient. */
export function sumRows(out: Vec, x: Vec, M: number, N: number): void {
  for (let i = 0; i < M; i++) {
    const r = i * N;
    for (let j = 0; j < N; j++) out[j] = out[j]! + x[r + j]!;
  }
}

/** Softmax of each of the `rows` rows of x[rows×cols], in place; the row maximum is subtracted first. */
export function softmaxRows(x: Vec, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    const r = i * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) if (x[r + j]! > max) max = x[r + j]!;
    let sum = 0;
    for (let j = 0; j < cols; j++) {
      const e = Math.exp(x[r + j]! - max);
      x[r + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j < cols; j++) x[r + j] = x[r + j]! * inv;
  }
}

/**
 * LayerNorm of each row of x[rows×d]: out = (x − mean)·rstd·g + b with the biased variance and
 * rstd = 1/√(var + LN_EPS). mean[rows] and rstd[rows] are kept for the backward pass. out may be x.
 */
export function layerNorm(out: Vec, x: Vec, g: Vec, b: Vec, rows: number, d: number, mean: Vec, rstd: Vec): void {
  for (let i = 0; i < rows; i++) {
    const r = i * d;
    let s = 0;
    for (let j = 0; j < d; j++) s += x[r + j]!;
    const m = s / d;
    let v = 0;
    for (let j = 0; j < d; j++) {
      const c = x[r + j]! - m;
      v += c * c;
    }
    const rs = 1 / Math.sqrt(v / d + LN_EPS);
    mean[i] = m;
    rstd[i] = rs;
    for (let j = 0; j < d; j++) out[r + j] = (x[r + j]! - m) * rs * g[j]! + b[j]!;
  }
}

/**
 * Backward of layerNorm, accumulating: dx += ∂L/∂x, dg += ∂L/∂g, db += ∂L/∂b given dout = ∂L/∂out,
 * the forward input x and the mean/rstd it recorded. dx must not alias dout or x.
 */
export function layerNormBackward(
  dx: Vec, dg: Vec, db: Vec, dout: Vec, x: Vec, g: Vec, mean: Vec, rstd: Vec, rows: number, d: number,
): void {
  for (let i = 0; i < rows; i++) {
    const r = i * d;
    const m = mean[i]!, rs = rstd[i]!;
    // With n = (x − m)·rs and dn = dout·g: dx = rs·(dn − mean(dn) − n·mean(dn·n)).
    let sumDn = 0, sumDnN = 0;
    for (let j = 0; j < d; j++) {
      const n = (x[r + j]! - m) * rs;
      const dy = dout[r + j]!;
      const dn = dy * g[j]!;
      sumDn += dn;
      sumDnN += dn * n;
      dg[j] = dg[j]! + dy * n;
      db[j] = db[j]! + dy;
    }
    const meanDn = sumDn / d, meanDnN = sumDnN / d;
    for (let j = 0; j < d; j++) {
      const n = (x[r + j]! - m) * rs;
      dx[r + j] = dx[r + j]! + rs * (dout[r + j]! * g[j]! - meanDn - n * meanDnN);
    }
  }
}

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/** out[i] = GELU(x[i]) for i < n, tanh approximation, as PyTorch's GELU(approximate='tanh'). out may be x. */
export function gelu(out: Vec, x: Vec, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    out[i] = 0.5 * v * (1 + Math.tanh(GELU_C * (v + GELU_A * v * v * v)));
  }
}

/** dx[i] = dout[i]·GELU′(x[i]) for i < n (tanh approximation). dx may be dout. */
export function geluBackward(dx: Vec, dout: Vec, x: Vec, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    const t = Math.tanh(GELU_C * (v + GELU_A * v * v * v));
    const dt = (1 - t * t) * GELU_C * (1 + 3 * GELU_A * v * v);
    dx[i] = dout[i]! * (0.5 * (1 + t) + 0.5 * v * dt);
  }
}
