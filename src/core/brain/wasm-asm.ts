// A tiny WebAssembly binary emitter: just enough of the format (WebAssembly Core Specification 2.0,
// §5 "Binary Format", plus the fixed-width SIMD proposal merged into it) to build the SIMD matrix
// kernels of simd.ts at run time, without a toolchain and without a dependency.
//
// What it covers:
// - a module with an imported linear memory, function types, functions, exports and their code
//   (sections 1 type, 2 import, 3 function, 7 export, 10 code), each a LEB128-sized byte vector;
// - a function body builder, `Fn`, with one method per instruction it needs: locals, i32 arithmetic
//   and comparisons, structured control (block, loop, if, br, br_if), f32 and v128 loads and stores
//   with constant offsets, and the f32x4 lane operations (splat, add, mul, extract/replace lane,
//   shuffle for horizontal sums). Every opcode is written next to its spec name.
// It does not check types or stack heights: the engine does (WebAssembly.validate / new Module),
// and the tests validate every module built here.

/** Value types (spec §5.3.1). */
export const I32 = 0x7f;
export const I64 = 0x7e;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof I64 | typeof F32 | typeof F64 | typeof V128;

/** The empty block type (spec §5.4.1: blocktype ε). */
const BLOCK_EMPTY = 0x40;

/** Unsigned LEB128 (spec §5.2.2), for sizes, counts, indices, offsets and alignments. */
export function uleb(n: number, out: number[] = []): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`uleb: ${n}`);
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (spec §5.2.2), for i32.const immediates. */
export function sleb(n: number, out: number[] = []): number[] {
  if (!Number.isInteger(n) || n < -0x80000000 || n > 0x7fffffff) throw new RangeError(`sleb: ${n}`);
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7; // arithmetic shift: keeps the sign
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

/** A UTF-8 name as a byte vector (spec §5.2.4). */
function name(s: string): number[] {
  const bytes = new TextEncoder().encode(s);
  return [...uleb(bytes.length), ...bytes];
}

/** A vector: its element count, then the elements (spec §5.1.3). */
function vec(items: readonly number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

/** A section: its id, its byte size, its contents (spec §5.5.2). */
function section(id: number, contents: number[]): number[] {
  return [id, ...uleb(contents.length), ...contents];
}

/**
 * The body of one function: its extra locals and its instructions, appended by the methods below
 * (each returns `this`, so they chain). Parameters are locals 0..params-1; `local()` adds more.
 */
export class Fn {
  readonly code: number[] = [];
  private readonly extra: ValType[] = [];

  readonly params: readonly ValType[];
  readonly results: readonly ValType[];

  constructor(params: readonly ValType[], results: readonly ValType[] = []) {
    this.params = params;
    this.results = results;
  }

  /** Declares one more local of type t and returns its index. */
  local(t: ValType): number {
    this.extra.push(t);
    return this.params.length + this.extra.length - 1;
  }

  /** Appends raw bytes (an instruction this builder does not name). */
  raw(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }

  // --- Control (spec §5.4.1) ---
  block(): this { return this.raw(0x02, BLOCK_EMPTY); } // block
  loop(): this { return this.raw(0x03, BLOCK_EMPTY); } // loop
  if(): this { return this.raw(0x04, BLOCK_EMPTY); } // if
  else(): this { return this.raw(0x05); } // else
  end(): this { return this.raw(0x0b); } // end
  br(depth: number): this { return this.raw(0x0c, ...uleb(depth)); } // br
  brIf(depth: number): this { return this.raw(0x0d, ...uleb(depth)); } // br_if

  // --- Variables (spec §5.4.4) ---
  get(i: number): this { return this.raw(0x20, ...uleb(i)); } // local.get
  set(i: number): this { return this.raw(0x21, ...uleb(i)); } // local.set
  tee(i: number): this { return this.raw(0x22, ...uleb(i)); } // local.tee

  // --- Memory (spec §5.4.6); memarg = alignment exponent, constant byte offset ---
  f32Load(offset = 0): this { return this.raw(0x2a, 2, ...uleb(offset)); } // f32.load align=4
  f32Store(offset = 0): this { return this.raw(0x38, 2, ...uleb(offset)); } // f32.store align=4

  // --- Numeric (spec §5.4.7) ---
  i32(n: number): this { return this.raw(0x41, ...sleb(n)); } // i32.const
  i32Eqz(): this { return this.raw(0x45); } // i32.eqz
  i32Ne(): this { return this.raw(0x47); } // i32.ne
  i32LtU(): this { return this.raw(0x49); } // i32.lt_u
  i32GtU(): this { return this.raw(0x4b); } // i32.gt_u
  i32LeU(): this { return this.raw(0x4d); } // i32.le_u
  i32GeU(): this { return this.raw(0x4f); } // i32.ge_u
  i32Add(): this { return this.raw(0x6a); } // i32.add
  i32Sub(): this { return this.raw(0x6b); } // i32.sub
  i32Mul(): this { return this.raw(0x6c); } // i32.mul
  i32And(): this { return this.raw(0x71); } // i32.and
  i32Shl(): this { return this.raw(0x74); } // i32.shl
  f32Add(): this { return this.raw(0x92); } // f32.add
  f32Mul(): this { return this.raw(0x94); } // f32.mul

  // --- Vector (spec §5.4.8; prefix 0xfd, then the opcode as a u32 LEB128) ---
  v128Load(offset = 0): this { return this.raw(0xfd, 0x00, 4, ...uleb(offset)); } // v128.load align=16
  v128Store(offset = 0): this { return this.raw(0xfd, 0x0b, 4, ...uleb(offset)); } // v128.store align=16
  v128Load32Splat(offset = 0): this { return this.raw(0xfd, 0x09, 2, ...uleb(offset)); } // v128.load32_splat
  v128Zero(): this { return this.raw(0xfd, 0x0c, ...new Array<number>(16).fill(0)); } // v128.const 0
  /** i8x16.shuffle with f32 lane indices (0–3 pick from the first operand, 4–7 from the second). */
  f32x4Shuffle(l0: number, l1: number, l2: number, l3: number): this {
    const bytes = [l0, l1, l2, l3].flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);
    return this.raw(0xfd, 0x0d, ...bytes); // i8x16.shuffle
  }
  f32x4Splat(): this { return this.raw(0xfd, 0x13); } // f32x4.splat
  f32x4ExtractLane(lane: number): this { return this.raw(0xfd, 0x1f, lane); } // f32x4.extract_lane
  f32x4ReplaceLane(lane: number): this { return this.raw(0xfd, 0x20, lane); } // f32x4.replace_lane
  f32x4Add(): this { return this.raw(0xfd, ...uleb(0xe4)); } // f32x4.add
  f32x4Mul(): this { return this.raw(0xfd, ...uleb(0xe6)); } // f32x4.mul
  /** Relaxed SIMD (merged in Wasm 3.0): a·b + c, fused or not as the hardware prefers. */
  f32x4RelaxedMadd(): this { return this.raw(0xfd, ...uleb(0x105)); } // f32x4.relaxed_madd

  /** The encoded body (spec §5.5.13): size, local declarations (runs of one type), code, end. */
  encode(): number[] {
    const runs: number[][] = [];
    for (let i = 0; i < this.extra.length;) {
      let j = i;
      while (j < this.extra.length && this.extra[j] === this.extra[i]) j++;
      runs.push([...uleb(j - i), this.extra[i]!]);
      i = j;
    }
    const body = [...vec(runs), ...this.code, 0x0b];
    return [...uleb(body.length), ...body];
  }
}

/** An exported function of a module. */
export interface ModuleFunction {
  readonly name: string;
  readonly fn: Fn;
}

/** The imported memory: `module`.`field`, at least `minPages` pages of 64 KiB. */
export interface MemoryImport {
  readonly module: string;
  readonly field: string;
  readonly minPages: number;
}

/**
 * A whole module (spec §5.5.16): magic, version, then the sections in their required order. Every
 * function gets its own type (duplicates are allowed) and is exported under its name; function i
 * has index i (the module imports no functions).
 */
export function assembleModule(memory: MemoryImport, funcs: readonly ModuleFunction[]): Uint8Array<ArrayBuffer> {
  const types = funcs.map(({ fn }) => [0x60, ...vec(fn.params.map((t) => [t])), ...vec(fn.results.map((t) => [t]))]); // functype
  const imports = [[...name(memory.module), ...name(memory.field), 0x02, 0x00, ...uleb(memory.minPages)]]; // importdesc mem, limits {min}
  const exports = funcs.map(({ name: n }, i) => [...name(n), 0x00, ...uleb(i)]); // exportdesc func
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, // magic "\0asm"
    0x01, 0x00, 0x00, 0x00, // version 1
    ...section(1, vec(types)), // type section
    ...section(2, vec(imports)), // import section
    ...section(3, vec(funcs.map((_, i) => uleb(i)))), // function section: type index of each function
    ...section(7, vec(exports)), // export section
    ...section(10, vec(funcs.map(({ fn }) => fn.encode()))), // code section
  ];
  return new Uint8Array(bytes);
}
