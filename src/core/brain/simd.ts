// A WebAssembly SIMD backend for the Linear-layer product of the Brain, matmulBT (out = a·btᵀ + bias,
// bt = W[N×K] row-major, as PyTorch stores Linear weights): the kernel is emitted by wasm-asm.ts at
// first use, compiled synchronously once (once per KernelShape; production uses only KERNEL), and
// runs on one linear memory per shape that grows as needed (never shrinks: it keeps the size of the
// largest product seen, a + bt + bias + out, e.g. ≈ 6 MB for 256×1024×1024).
//
// Why: plain JS has no SIMD, so tensor.ts's blocked scalar kernels stop near 6 GFLOP/s on a core that
// can do ~166; f32x4 lanes are the only vector width JS can reach without a native addon.
//
// The micro-kernel (dot-product form; both a and bt have K contiguous, so no packing is needed):
// - R rows of a × C rows of bt (C output columns) keep R·C f32x4 accumulators; each step over k
//   loads R vectors of a and C vectors of bt (4 consecutive k each) and does R·C lane-wise
//   multiply-adds; lane l of accumulator (r,c) sums the terms k ≡ l (mod 4). At the end the four
//   lanes are summed, always as (l0 + l2) + (l1 + l3), four columns at a time by two rounds of
//   shuffles (a 4×4 transpose-add), so a whole vector of 4 outputs is stored at once.
// - Rows that do not fill an R block go through the same kernel built for R = 1 and the same C: the
//   arithmetic per output element is identical, so a row computed alone (decode, M = 1) equals the
//   same row inside a block bit for bit, as in tensor.ts.
// - Edges are removed by the copy into linear memory instead of by edge kernels: K is padded with
//   zeros to a multiple of 4 (a zero term changes no sum), N to a multiple of C (zero rows of bt; the
//   padding columns are computed and dropped). Rows of a are never padded.
// - The k loop is unrolled UNROLL times (memarg offsets 16·u, one pointer increment per row per
//   UNROLL steps), followed by a single-step loop for the rest.
// - Column panels: the kernel is called once per panel of bt of at most panelBytes (256 KB, L2), so
//   every row block of a passes over a panel while it is cached.
// Measured on Node 24 / V8, one Zen 5 core, f32, median of 7 (GFLOP/s; tensor.ts's matmulBT ≈ 6):
// R×C = 2×4 unroll 2: 55 at 256³, 512³ and 256×1024×1024 (copies included, ≈ 2% of the time);
// 4×2: 54–55; 1×4: 43–46; 3×4 and 4×4: 27–30 (V8 gives wasm 16 xmm registers, so R·C accumulators
// + R + 1 live vectors must stay under ~15, or they spill); f32x4.relaxed_madd instead of mul + add:
// no gain (52–54), so the deterministic mul + add is kept. The panel size changed nothing measurable
// between 64 KB and no panels at these shapes. Matrix–vector (1×1024×1024): ≈ 12 against ≈ 3 for JS;
// there the copy of bt into linear memory (4 MB, ≈ 0.11 ms of ≈ 0.17 ms) is most of the time, and
// only weights resident in linear memory would remove it.
//
// Numerics: sums are accumulated in f32 lanes (tensor.ts accumulates in f64 and rounds once). Each
// lane adds ⌈K/4⌉ products in sequence, so the rounding error grows like ε32·(K/4)·Σ|a·b| in the
// worst case and like ε32·√(K/4) typically; test/core/brain/simd.test.ts asserts
// |got − exact| ≤ 2⁻²⁴·(⌈K/4⌉ + 4)·(Σ|a·b| + |bias| + |old out|) on shapes up to K = 4096. Measured
// on uniform [−1, 1] data, max |err|/Σ|a·b|: 5e-8 (K = 64…1024), 1.3e-7 (K = 4096), 3.2e-7
// (K = 16384), against 0.7–1.7e-8 for the f64-accumulating JS kernel (which is limited by the final
// rounding to f32). Relative to |exact| itself the error is larger where the sum cancels, as for any
// f32 accumulation (up to 6e-3 on single outputs at K = 4096, vs 3.5e-5 for JS).
//
// Pure: no node: imports; only the global WebAssembly (feature-detected, absent → simdAvailable()
// is false and matmulBTSimd throws).
import { F32, Fn, I32, V128, assembleModule, type ValType } from "./wasm-asm.ts";

// ---------------------------------------------------------------------------------------------
// The few WebAssembly JS API members used here (the project's lib setting has no DOM types).

interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
type KernelFn = (a: number, bt: number, out: number, bias: number, rows: number, kBytes: number, cols: number, ldo: number, add: number) => void;
interface WasmApi {
  validate(bytes: Uint8Array<ArrayBuffer>): boolean;
  Module: new (bytes: Uint8Array<ArrayBuffer>) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
  Memory: new (desc: { initial: number }) => WasmMemory;
}
const wasmApi = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

const PAGE = 65536;
/** Byte address where the operands start; address 0 stays reserved as "no bias". */
const BASE = 64;

// ---------------------------------------------------------------------------------------------
// The kernel

/** Shape of the micro-kernel: rows of a, columns of out (rows of bt), k unroll, fused multiply-add. */
export interface KernelShape {
  readonly R: number;
  readonly C: number;
  readonly unroll: number;
  /** Use f32x4.relaxed_madd (may fuse, platform-dependent rounding) instead of f32x4.mul + f32x4.add. */
  readonly madd: boolean;
  /** Bytes of bt per column panel (a run-time choice, not part of the module). */
  readonly panelBytes: number;
}

/** The shape in use (measured, see the header): 2×4 accumulators, k unrolled 2×, mul then add. */
export const KERNEL: KernelShape = { R: 2, C: 4, unroll: 2, madd: false, panelBytes: 256 * 1024 };

/**
 * One function kernel(a, bt, out, bias, rows, kBytes, cols, ldo, add) (addresses and strides in
 * bytes, all i32): for each block of R rows among `rows` rows of a (rows a multiple of R; row stride
 * kBytes, a multiple of 16) and each block of C rows of bt (cols of them, a multiple of C, same
 * stride), out[i][j] (row stride ldo) = Σ_k a[i][k]·bt[j][k] + (bias ≠ 0 ? bias[j] : 0) +
 * (add ≠ 0 ? out[i][j] : 0).
 */
function kernelFn(R: number, C: number, unroll: number, madd: boolean): Fn {
  const P = [I32, I32, I32, I32, I32, I32, I32, I32, I32] as const satisfies readonly ValType[];
  const f = new Fn(P);
  const [A, B, OUT, BIAS, ROWS, KB, COLS, LDO, ADD] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const ldo = LDO, cEnd = f.local(I32), aEnd = f.local(I32), rowA = f.local(I32), rowO = f.local(I32);
  const col = f.local(I32), colB = f.local(I32), kEnd = f.local(I32), v = f.local(V128);
  const pa = Array.from({ length: R }, () => f.local(I32));
  const pb = Array.from({ length: C }, () => f.local(I32));
  const av = Array.from({ length: R }, () => f.local(V128));
  const bv = f.local(V128);
  const acc = Array.from({ length: R }, () => Array.from({ length: C }, () => f.local(V128)));
  const t0 = f.local(V128), t1 = f.local(V128), s = f.local(F32);

  f.get(COLS).i32(4).i32Mul().set(cEnd); // 4·cols bytes of each out row
  f.get(A).get(ROWS).get(KB).i32Mul().i32Add().set(aEnd);
  f.get(A).set(rowA).get(OUT).set(rowO);

  /** One k step of 4 lanes at byte offset `off` from every row pointer. */
  const step = (off: number): void => {
    for (let r = 0; r < R; r++) f.get(pa[r]!).v128Load(off).set(av[r]!);
    for (let c = 0; c < C; c++) {
      f.get(pb[c]!).v128Load(off).set(bv);
      for (let r = 0; r < R; r++) {
        if (madd) f.get(av[r]!).get(bv).get(acc[r]![c]!).f32x4RelaxedMadd().set(acc[r]![c]!);
        else f.get(acc[r]![c]!).get(av[r]!).get(bv).f32x4Mul().f32x4Add().set(acc[r]![c]!);
      }
    }
  };
  const advance = (bytes: number): void => {
    for (const p of [...pa, ...pb]) f.get(p).i32(bytes).i32Add().set(p);
  };
  /** Pushes the address of out[i + r][j] (block row i, block column j; constant offsets go in the memarg). */
  const addr = (r: number): void => {
    f.get(rowO).get(col).i32Add();
    if (r > 0) f.get(ldo).i32(r).i32Mul().i32Add();
  };
  /** The epilogue for output vector `v` of row r at column byte offset 16·g within the block. */
  const finish = (r: number, g: number): void => {
    f.get(BIAS).if().get(v).get(BIAS).get(col).i32Add().v128Load(16 * g).f32x4Add().set(v).end();
    f.get(ADD).if().get(v); addr(r); f.v128Load(16 * g).f32x4Add().set(v).end();
    addr(r); f.get(v).v128Store(16 * g);
  };
  /** Σ of the 4 lanes of x as (l0 + l2) + (l1 + l3), as an f32 on the stack. */
  const laneSum = (x: number): void => {
    f.get(x).f32x4ExtractLane(0).get(x).f32x4ExtractLane(2).f32Add();
    f.get(x).f32x4ExtractLane(1).get(x).f32x4ExtractLane(3).f32Add().f32Add();
  };

  f.block().loop(); // rows: for (rowA = a; rowA < aEnd; rowA += R·kBytes)
  f.get(rowA).get(aEnd).i32GeU().brIf(1);
  f.i32(0).set(col).get(B).set(colB);
  f.loop(); // columns: for (col = 0; col < 4·cols; col += 4·C)
  for (let r = 0; r < R; r++) {
    f.get(rowA);
    if (r > 0) f.get(KB).i32(r).i32Mul().i32Add();
    f.set(pa[r]!);
  }
  for (let c = 0; c < C; c++) {
    f.get(colB);
    if (c > 0) f.get(KB).i32(c).i32Mul().i32Add();
    f.set(pb[c]!);
  }
  for (const row of acc) for (const x of row) f.v128Zero().set(x);
  f.get(rowA).get(KB).i32Add().set(kEnd);
  if (unroll > 1) {
    f.block().loop(); // while (pa0 + 16·unroll ≤ kEnd)
    f.get(pa[0]!).i32(16 * unroll).i32Add().get(kEnd).i32GtU().brIf(1);
    for (let u = 0; u < unroll; u++) step(16 * u);
    advance(16 * unroll);
    f.br(0).end().end();
  }
  f.block().loop(); // while (pa0 < kEnd)
  f.get(pa[0]!).get(kEnd).i32GeU().brIf(1);
  step(0);
  advance(16);
  f.br(0).end().end();
  for (let r = 0; r < R; r++) {
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      // transpose-add: t0 = [x0₀+x0₂, x1₀+x1₂, x0₁+x0₃, x1₁+x1₃], t1 likewise for x2, x3
      const [x0, x1, x2, x3] = acc[r]!.slice(c, c + 4) as [number, number, number, number];
      f.get(x0).get(x1).f32x4Shuffle(0, 4, 1, 5).get(x0).get(x1).f32x4Shuffle(2, 6, 3, 7).f32x4Add().set(t0);
      f.get(x2).get(x3).f32x4Shuffle(0, 4, 1, 5).get(x2).get(x3).f32x4Shuffle(2, 6, 3, 7).f32x4Add().set(t1);
      f.get(t0).get(t1).f32x4Shuffle(0, 1, 4, 5).get(t0).get(t1).f32x4Shuffle(2, 3, 6, 7).f32x4Add().set(v);
      finish(r, c / 4);
    }
    // a last partial group (C not a multiple of 4): the same sums, (l0 + l2) + (l1 + l3), one by one
    for (; c < C; c++) {
      laneSum(acc[r]![c]!);
      f.set(s);
      f.get(BIAS).if().get(s).get(BIAS).get(col).i32Add().f32Load(4 * c).f32Add().set(s).end();
      f.get(ADD).if().get(s); addr(r); f.f32Load(4 * c).f32Add().set(s).end();
      addr(r); f.get(s).f32Store(4 * c);
    }
  }
  f.get(colB).get(KB).i32(C).i32Mul().i32Add().set(colB);
  f.get(col).i32(4 * C).i32Add().tee(col).get(cEnd).i32LtU().brIf(0);
  f.end(); // columns
  f.get(rowA).get(KB).i32(R).i32Mul().i32Add().set(rowA);
  f.get(rowO).get(ldo).i32(R).i32Mul().i32Add().set(rowO);
  f.br(0).end().end(); // rows
  return f;
}

/** The module: `block` (R rows at a time) and `row` (R = 1, same C), memory imported as m.mem. */
export function buildKernelModule(shape: KernelShape = KERNEL): Uint8Array<ArrayBuffer> {
  const { R, C, unroll, madd } = shape;
  return assembleModule({ module: "m", field: "mem", minPages: 1 }, [
    { name: "block", fn: kernelFn(R, C, unroll, madd) },
    { name: "row", fn: kernelFn(1, C, unroll, madd) },
  ]);
}

// ---------------------------------------------------------------------------------------------
// Feature detection and the lazily built instance

/** The smallest module using SIMD: (func (result v128) v128.const 0). */
function simdProbe(): Uint8Array<ArrayBuffer> {
  const f = new Fn([], [V128]).v128Zero();
  return assembleModule({ module: "m", field: "mem", minPages: 0 }, [{ name: "probe", fn: f }]);
}

let available: boolean | undefined;

/** Whether this engine has WebAssembly with 128-bit SIMD (validated on a tiny module, once). */
export function simdAvailable(): boolean {
  if (available === undefined) {
    try {
      available = wasmApi !== undefined && wasmApi.validate(simdProbe()) && wasmApi.validate(buildKernelModule());
    } catch {
      available = false;
    }
  }
  return available;
}

interface Backend {
  readonly mem: WasmMemory;
  f32: Float32Array;
  readonly block: KernelFn;
  readonly row: KernelFn;
  readonly shape: KernelShape;
}

const backends = new Map<string, Backend>();

function backend(shape: KernelShape): Backend {
  const key = `${shape.R}x${shape.C}u${shape.unroll}${shape.madd ? "f" : ""}`;
  let b = backends.get(key);
  if (b === undefined) {
    if (!simdAvailable() || wasmApi === undefined) throw new Error("matmulBTSimd: WebAssembly SIMD is not available");
    const mem = new wasmApi.Memory({ initial: 1 });
    const inst = new wasmApi.Instance(new wasmApi.Module(buildKernelModule(shape)), { m: { mem } });
    b = { mem, f32: new Float32Array(mem.buffer), block: inst.exports["block"] as KernelFn, row: inst.exports["row"] as KernelFn, shape };
    backends.set(key, b);
  }
  return b;
}

/** Makes the memory at least `bytes` long (growing at least 2×, to amortise), refreshing the view. */
function reserve(b: Backend, bytes: number): void {
  if (bytes > 0x7fff0000) throw new RangeError(`matmulBTSimd: ${bytes} bytes exceed the 2 GiB the kernel addresses`);
  const have = b.mem.buffer.byteLength;
  if (bytes <= have) return;
  const want = Math.min(Math.max(bytes, 2 * have), 0x7fff0000);
  b.mem.grow(Math.ceil((want - have) / PAGE));
  b.f32 = new Float32Array(b.mem.buffer);
}

/** Copies `rows` rows of `cols` values of src into dst at element `at`, row stride `stride` ≥ cols (padding zeroed). */
function copyIn(dst: Float32Array, at: number, src: Float32Array, rows: number, cols: number, stride: number): void {
  if (stride === cols) {
    dst.set(src.subarray(0, rows * cols), at);
    return;
  }
  for (let i = 0; i < rows; i++) {
    const o = at + i * stride;
    dst.set(src.subarray(i * cols, (i + 1) * cols), o);
    dst.fill(0, o + cols, o + stride);
  }
}

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;

/**
 * out[M×N] (+)= a[M×K]·btᵀ (+ bias[N]), bt = [N×K] row-major: the same contract as tensor.ts's
 * matmulBT for Float32Array arguments (the bias is added once; with `accumulate` the product is
 * added to out instead of replacing it), computed by the WebAssembly SIMD kernel with f32
 * accumulation (see the header for the error bound). Throws if simdAvailable() is false.
 */
export function matmulBTSimd(
  out: Float32Array, a: Float32Array, bt: Float32Array, M: number, K: number, N: number,
  bias: Float32Array | null = null, accumulate = false, shape: KernelShape = KERNEL,
): void {
  if (M <= 0 || N <= 0) return;
  if (a.length < M * K || bt.length < N * K || out.length < M * N || (bias !== null && bias.length < N)) {
    throw new RangeError("matmulBTSimd: an operand is shorter than its shape");
  }
  if (K === 0) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) out[i * N + j] = (accumulate ? out[i * N + j]! : 0) + (bias === null ? 0 : bias[j]!);
    }
    return;
  }
  const b = backend(shape);
  const { R, C } = shape;
  const Kp = roundUp(K, 4), Np = roundUp(N, C);
  // layout (bytes, each region 16-aligned since Kp and Np are multiples of 4): a | bt | bias | out
  const aAt = BASE, btAt = aAt + 4 * M * Kp, biasAt = btAt + 4 * Np * Kp, outAt = biasAt + 4 * Np;
  reserve(b, outAt + 4 * M * Np);
  const mem = b.f32;
  copyIn(mem, aAt / 4, a, M, K, Kp);
  copyIn(mem, btAt / 4, bt, N, K, Kp);
  if (Np > N) mem.fill(0, btAt / 4 + N * Kp, btAt / 4 + Np * Kp);
  if (bias !== null) {
    mem.set(bias.subarray(0, N), biasAt / 4);
    mem.fill(0, biasAt / 4 + N, biasAt / 4 + Np);
  }
  if (accumulate) copyIn(mem, outAt / 4, out, M, N, Np);
  const Mb = M - (M % R), kb = 4 * Kp, ldo = 4 * Np, add = accumulate ? 1 : 0;
  // column panels of bt small enough to stay in L2 while every row block of a passes over them
  const nc = Math.max(C, Math.floor(shape.panelBytes / kb / C) * C);
  for (let j0 = 0; j0 < Np; j0 += nc) {
    const cols = Math.min(nc, Np - j0), bp = btAt + j0 * kb, op = outAt + 4 * j0;
    const biasPtr = bias === null ? 0 : biasAt + 4 * j0;
    if (Mb > 0) b.block(aAt, bp, op, biasPtr, Mb, kb, cols, ldo, add);
    if (Mb < M) b.row(aAt + Mb * kb, bp, op + Mb * ldo, biasPtr, M - Mb, kb, cols, ldo, add);
  }
  const res = b.f32; // the same view (the kernel does not grow memory)
  if (Np === N) out.set(res.subarray(outAt / 4, outAt / 4 + M * N));
  else for (let i = 0; i < M; i++) out.set(res.subarray(outAt / 4 + i * Np, outAt / 4 + i * Np + N), i * N);
}
