// C programs, an optional component (docs/adr/019-c-programs.md; docs/protocols/programs.md, "C
// programs (optional)"). A program whose manifest says "language":"c" is compiled on the node by
// Clang and LLD built for WebAssembly (@yowasp/clang, itself WebAssembly: nothing native), to a
// freestanding wasm32 module that implements its hook through a small fixed ABI (C_HEADER). The
// module is checked — it imports nothing but the pk_* capability functions its grants allow, its
// memory is within the manifest's memoryBytes, it exports its hook's function with the ABI's type —
// then turned into JavaScript by binaryen's wasm2js and wrapped into an ES module with the hook's
// export (cShim), so it runs in the same QuickJS sandbox as a TypeScript program: gas, memory,
// stack, wall-clock and output bounds and the capability API apply unchanged.
//
// Neither package is a dependency: a user adds them (`npm install @yowasp/clang binaryen`, about
// 100 MB). They are loaded by a dynamic import of a name held in a variable, only when a C program
// arrives, so the type checker never needs them and a node without them refuses a C program with a
// message naming the install command. Compiling takes hundreds of milliseconds (seconds the first
// time), so it runs in a worker thread (compile-c-worker.ts) like the TypeScript verifier.
import { WorkerCalls, workerScript } from "./worker-calls.ts";
import { performance } from "node:perf_hooks";
import { HOOK_EXPORTS, utf8Length, type HookKind } from "../core/evolve/capabilities.ts";
import { hookName, readProgram, type Manifest } from "../core/evolve/manifest.ts";
import type { Finding, RuleName, RuleResult, Verdict, VerifyReport } from "../core/evolve/verdict.ts";
import { LIMITS } from "../core/util/limits.ts";

const C = LIMITS.evolve.c;
const VERIFY = LIMITS.evolve.verify;
const PROGRAM = LIMITS.evolve.program;
const WASM_PAGE_BYTES = 65_536;

/** The optional packages, by the names a user installs. */
export const C_PACKAGES = ["@yowasp/clang", "binaryen"] as const;
/** What a node without them says. */
export const C_INSTALL_HINT = `C programs need the optional C toolchain: npm install ${C_PACKAGES.join(" ")}`;

/** Tunables of the C path; every number within LIMITS.evolve.c or LIMITS.evolve.program. */
export const C_DEFAULTS = {
  /** The C stack, in the program's linear memory (wasm-ld's -z stack-size). */
  stackBytes: 64 * 1024,
  /** The compiler's thread ends after this long without work: its toolchain holds about 350 MB. */
  idleMs: 60_000,
} as const;

/** The compiler's command line: freestanding wasm32, MVP features (what wasm2js translates), no libc, explicit exports. */
export const CLANG_FLAGS = [
  "--target=wasm32", "-O2", "-std=c17", "-nostdlib", "-ffreestanding", "-mcpu=mvp", "-mbulk-memory",
  "-fno-math-errno", "-fno-color-diagnostics", "-fno-caret-diagnostics", "-include", "pk.h",
  "-Wl,--no-entry", "-Wl,--allow-undefined", "-Wl,--strip-all", "-Wl,--stack-first",
] as const;

type ValType = "i32" | "i64" | "f32" | "f64";
interface FuncType {
  readonly params: readonly ValType[];
  readonly results: readonly ValType[];
}

/** The hooks a C program may implement: the function it defines and its WebAssembly type. */
export const C_HOOKS: Readonly<Partial<Record<HookKind, { readonly symbol: string; readonly type: FuncType; readonly prototype: string }>>> = {
  "sensor.prefilter": {
    symbol: "pk_prefilter",
    type: { params: ["i32", "i32", "i32", "i32"], results: ["i32"] },
    prototype: "int pk_prefilter(const double *values, const int *sensors, int n, unsigned char *keep);",
  },
  command: {
    symbol: "pk_command",
    type: { params: ["i32", "i32", "i32", "i32"], results: ["i32"] },
    prototype: "int pk_command(int argc, const char *args, char *out, int cap);",
  },
  task: { symbol: "pk_task", type: { params: [], results: [] }, prototype: "void pk_task(void);" },
  probe: { symbol: "pk_probe", type: { params: [], results: ["i32"] }, prototype: "int pk_probe(void);" },
};

/** The capability functions a C program may import (module "env"), each with the grant it needs. */
export const C_IMPORTS: Readonly<Record<string, { readonly capability: "log"; readonly level: "info" | "warn" | "error"; readonly type: FuncType }>> = {
  pk_log: { capability: "log", level: "info", type: { params: ["i32", "i32"], results: [] } },
  pk_warn: { capability: "log", level: "warn", type: { params: ["i32", "i32"], results: [] } },
  pk_error: { capability: "log", level: "error", type: { params: ["i32", "i32"], results: [] } },
};

/** pk.h: included before the program (-include), so a hook defined with another signature does not compile. */
export const C_HEADER = `/* pk.h: the p-kernel C ABI (docs/protocols/programs.md, "C programs (optional)"). */
#ifndef PK_H
#define PK_H
#define PK_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
/* Capability "log": a line of length bytes (UTF-8) into the program's log. */
PK_IMPORT(pk_log) void pk_log(const char *message, int length);
PK_IMPORT(pk_warn) void pk_warn(const char *message, int length);
PK_IMPORT(pk_error) void pk_error(const char *message, int length);
/* Hooks: a program defines the one its manifest names. */
${Object.values(C_HOOKS).map((h) => h.prototype).join("\n")}
#endif
`;

// ---------------------------------------------------------------------------------------------
// The module's shape, read from its binary (no WebAssembly engine needed).

export interface WasmImport {
  readonly module: string;
  readonly name: string;
  /** function, table, memory, global (or tag) */
  readonly kind: "function" | "table" | "memory" | "global" | "tag";
  readonly type?: FuncType;
}

export interface WasmShape {
  readonly imports: readonly WasmImport[];
  readonly memories: ReadonlyArray<{ readonly initialPages: number; readonly maxPages: number | undefined; readonly shared: boolean; readonly memory64: boolean }>;
  readonly exports: ReadonlyArray<{ readonly name: string; readonly kind: "function" | "table" | "memory" | "global" | "tag"; readonly type?: FuncType }>;
}

const KINDS = ["function", "table", "memory", "global", "tag"] as const;
const VALTYPES: Readonly<Record<number, ValType>> = { 0x7f: "i32", 0x7e: "i64", 0x7d: "f32", 0x7c: "f64" };

/** The imports, memories and exports of a WebAssembly binary; throws on a malformed one. */
export function wasmShape(bytes: Uint8Array): WasmShape {
  let at = 0;
  const fail = (why: string): never => {
    throw new Error(`malformed WebAssembly at byte ${at}: ${why}`);
  };
  const byte = (): number => (at < bytes.length ? (bytes[at++] as number) : fail("unexpected end"));
  const u32 = (): number => {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
    }
    return fail("a LEB128 number too long");
  };
  const name = (): string => {
    const n = u32();
    if (at + n > bytes.length) fail("a name past the end");
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(at, at + n));
    at += n;
    return text;
  };
  const valtype = (): ValType => VALTYPES[byte()] ?? fail("a value type other than i32, i64, f32, f64");
  const limits = (): { initialPages: number; maxPages: number | undefined; shared: boolean; memory64: boolean } => {
    const flags = byte();
    if (flags > 7) fail(`limits flags ${flags}`);
    const initialPages = u32();
    const maxPages = (flags & 1) !== 0 ? u32() : undefined;
    return { initialPages, maxPages, shared: (flags & 2) !== 0, memory64: (flags & 4) !== 0 };
  };
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d || bytes[4] !== 1) fail("not a WebAssembly 1 module");
  at = 8;
  const types: FuncType[] = [];
  const imports: WasmImport[] = [];
  const funcTypes: number[] = [];
  const memories: Array<WasmShape["memories"][number]> = [];
  const exportsRaw: Array<{ name: string; kind: (typeof KINDS)[number]; index: number }> = [];
  while (at < bytes.length) {
    const id = byte();
    const size = u32();
    const end = at + size;
    if (end > bytes.length) fail("a section past the end");
    switch (id) {
      case 1: {
        for (let n = u32(); n > 0; n--) {
          if (byte() !== 0x60) fail("a type other than a function type");
          const params: ValType[] = [];
          for (let p = u32(); p > 0; p--) params.push(valtype());
          const results: ValType[] = [];
          for (let r = u32(); r > 0; r--) results.push(valtype());
          types.push({ params, results });
        }
        break;
      }
      case 2: {
        for (let n = u32(); n > 0; n--) {
          const module = name();
          const field = name();
          const kind = KINDS[byte()] ?? fail("an import of unknown kind");
          if (kind === "function") {
            const index = u32();
            imports.push({ module, name: field, kind, type: types[index] ?? fail("an import of an unknown type") });
            funcTypes.push(index);
          } else {
            imports.push({ module, name: field, kind });
            at = end; // nothing after a non-function import is needed: the module is refused
            break;
          }
        }
        break;
      }
      case 3:
        for (let n = u32(); n > 0; n--) funcTypes.push(u32());
        break;
      case 5:
        for (let n = u32(); n > 0; n--) memories.push(limits());
        break;
      case 7:
        for (let n = u32(); n > 0; n--) {
          const field = name();
          const kind = KINDS[byte()] ?? fail("an export of unknown kind");
          exportsRaw.push({ name: field, kind, index: u32() });
        }
        break;
      default:
        break;
    }
    at = end;
  }
  const exports = exportsRaw.map((e) => {
    if (e.kind !== "function") return { name: e.name, kind: e.kind };
    const type = types[funcTypes[e.index] ?? -1];
    return type === undefined ? { name: e.name, kind: e.kind } : { name: e.name, kind: e.kind, type };
  });
  return { imports, memories, exports };
}

function sameType(a: FuncType, b: FuncType): boolean {
  return a.params.length === b.params.length && a.results.length === b.results.length && a.params.every((p, i) => p === b.params[i]) && a.results.every((r, i) => r === b.results[i]);
}

function showType(t: FuncType): string {
  return `(${t.params.join(", ")}) -> (${t.results.join(", ")})`;
}

// ---------------------------------------------------------------------------------------------
// The report, in the shape of the TypeScript verifier's (core/evolve/verdict.ts).

/** The rules a C program's report lists, with what each asks of a C program (RULES names them; the meaning here is C's). */
export const C_RULES: Readonly<Partial<Record<RuleName, string>>> = {
  manifest: "the manifest is given once (header or beside), decodes strictly and says \"language\":\"c\"",
  size: `the source is within ${PROGRAM.sourceBytesMax} bytes, the module within ${C.wasmBytesMax} bytes and the manifest's memoryBytes, its JavaScript within ${C.jsCharsMax} characters`,
  syntax: "it compiles with clang -O2 --target=wasm32 -nostdlib, pk.h included: no errors (warnings are noted)",
  hook: "it defines its hook's pk_* function with the ABI's type (a hook C programs are offered)",
  imports: "it imports only the pk_* capability functions: no libc, no WASI, no system calls, no imported memory, table or global",
  grants: "every capability function it imports is granted by its manifest",
  checker: "the C toolchain is installed and ran to the end on it (the compiler, the linker, wasm2js)",
  emit: "wasm2js turns it into JavaScript for the sandbox",
};
const C_RULE_NAMES = Object.keys(C_RULES) as RuleName[];

class Findings {
  readonly #results = new Map<RuleName, { verdict: Verdict; findings: Finding[]; count: number; reason?: string }>();

  constructor() {
    for (const rule of C_RULE_NAMES) this.#results.set(rule, { verdict: "pass", findings: [], count: 0 });
  }

  add(rule: RuleName, verdict: "fail" | "warn", message: string, line = 0, col = 0): void {
    const r = this.#results.get(rule);
    if (r === undefined) return;
    if (verdict === "fail" || r.verdict === "pass") r.verdict = verdict;
    r.count++;
    if (r.findings.length < VERIFY.findingsPerRuleMax) {
      r.findings.push({ line, col, message: message.length > VERIFY.findingCharsMax ? `${message.slice(0, VERIFY.findingCharsMax - 3)}...` : message });
    }
  }

  readonly #checked = new Set<RuleName>();

  /** The rules checked so far (a pass among them stays a pass when the rest are skipped). */
  checked(...rules: RuleName[]): void {
    for (const rule of rules) this.#checked.add(rule);
  }

  skipRest(reason: string): void {
    for (const [rule, r] of this.#results) {
      if (r.verdict !== "pass" || this.#checked.has(rule)) continue;
      r.verdict = "skip";
      r.reason = reason;
    }
  }

  failed(): boolean {
    for (const r of this.#results.values()) if (r.verdict === "fail") return true;
    return false;
  }

  list(): RuleResult[] {
    return C_RULE_NAMES.map((rule) => {
      const r = this.#results.get(rule) as { verdict: Verdict; findings: Finding[]; count: number; reason?: string };
      return r.reason === undefined ? { rule, verdict: r.verdict, findings: r.findings, count: r.count } : { rule, verdict: r.verdict, findings: r.findings, count: r.count, reason: r.reason };
    });
  }
}

/** What compiling a C program gives: the report (ok, findings, the JavaScript when ok) and measurements. */
export interface CompileResult {
  readonly ok: boolean;
  readonly report: VerifyReport;
  /** The ES module the sandbox runs (imports only "pk:program"), when ok. */
  readonly js: string | undefined;
  /** Measured, never a verdict. */
  readonly stats: { readonly wasmBytes: number; readonly jsChars: number; readonly compileMs: number; readonly wasm2jsMs: number; readonly loadMs: number };
}

/** True when a source (with its manifest beside, if any) is a C program: its manifest decodes and says "language":"c". */
export function isCProgram(source: string, beside?: unknown): boolean {
  const read = readProgram(source, beside);
  return read.ok && read.value.manifest.language === "c";
}

// ---------------------------------------------------------------------------------------------
// The toolchain: loaded on first use, by names held in variables (tsc never resolves them).

interface Tree { [name: string]: Tree | string | Uint8Array }
interface ClangModule {
  runClang(args: string[] | null, files: Tree, options?: { stdout?: (bytes: Uint8Array | null) => void; stderr?: (bytes: Uint8Array | null) => void; fetchProgress?: () => void }): Promise<Tree> | Tree | undefined;
}
interface BinaryenModule {
  setFeatures(features: number): void;
  validate(): number;
  optimize(): void;
  emitAsmjs(): string;
  dispose(): void;
}
interface BinaryenApi {
  readBinary(bytes: Uint8Array): BinaryenModule;
  Features?: Readonly<Record<string, number>>;
  setOptimizeLevel?(level: number): void;
  setShrinkLevel?(level: number): void;
  ready?: Promise<unknown>;
}
interface Toolchain {
  readonly clang: ClangModule;
  readonly binaryen: BinaryenApi;
}

async function importOptional(name: string): Promise<unknown> {
  const specifier: string = name;
  return import(specifier);
}

/** Loads the optional packages, or says which is missing. */
export async function loadToolchain(): Promise<Toolchain | string> {
  const loaded: unknown[] = [];
  for (const name of C_PACKAGES) {
    try {
      loaded.push(await importOptional(name));
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") return `${name} is not installed. ${C_INSTALL_HINT}`;
      return `${name} did not load: ${error instanceof Error ? error.message : String(error)}. ${C_INSTALL_HINT}`;
    }
  }
  const clang = loaded[0] as ClangModule;
  const bin = loaded[1] as { default?: BinaryenApi } & BinaryenApi;
  const binaryen = bin.default ?? bin;
  if (binaryen.ready !== undefined) await binaryen.ready;
  if (typeof clang.runClang !== "function" || typeof binaryen.readBinary !== "function") return `the C toolchain's packages have an unexpected API. ${C_INSTALL_HINT}`;
  // Load the compiler's resources now, quietly (the first compile would print its fetch progress).
  await clang.runClang(null, {}, { fetchProgress: () => undefined });
  return { clang, binaryen };
}

/** Clang's diagnostics on the program: `program.c:L:C: error|warning: message`. */
const DIAGNOSTIC = /^(?:\.?\/)?program\.c:(\d+):(\d+): (error|warning|fatal error): (.*)$/;

function decodeText(chunks: Uint8Array[]): string {
  let total = 0;
  for (const c of chunks) total += c.length;
  const all = new Uint8Array(Math.min(total, C.diagnosticsCharsMax * 4));
  let at = 0;
  for (const c of chunks) {
    if (at >= all.length) break;
    const part = c.subarray(0, all.length - at);
    all.set(part, at);
    at += part.length;
  }
  return new TextDecoder().decode(all).slice(0, C.diagnosticsCharsMax);
}

/** Compiles C programs in the caller's thread (the worker, compile-c-worker.ts, holds one). */
export class CCompiler {
  #toolchain: Promise<Toolchain | string> | undefined;
  /** Compiles done, for the cold/warm measure. */
  compiles = 0;

  /** Compiles a C program; never throws (a failure of the toolchain is the `checker` rule's). */
  async compile(source: string, beside?: unknown): Promise<CompileResult> {
    const started = performance.now();
    const findings = new Findings();
    const sourceBytes = utf8Length(source);
    const stats = { wasmBytes: 0, jsChars: 0, compileMs: 0, wasm2jsMs: 0, loadMs: 0 };
    let manifest: Manifest | undefined = undefined;
    let js: string | undefined = undefined;
    const done = (): CompileResult => {
      const ok = !findings.failed() && js !== undefined;
      const report: VerifyReport = {
        ok,
        program: manifest === undefined ? undefined : { name: manifest.name, version: manifest.version, hook: hookName(manifest.hook) },
        rules: findings.list(),
        js: ok ? js : undefined,
        stats: { sourceBytes, astNodes: 0, astDepth: 0 },
        timings: { totalMs: performance.now() - started, checkMs: stats.compileMs, emitMs: stats.wasm2jsMs },
      };
      return { ok, report, js: ok ? js : undefined, stats };
    };

    const read = readProgram(source, beside);
    if (!read.ok) {
      for (const e of read.errors) findings.add(/over \d+ bytes/.test(e) && e.startsWith("the source") ? "size" : "manifest", "fail", e);
      findings.skipRest("the manifest or size failed: nothing is compiled");
      return done();
    }
    manifest = read.value.manifest;
    findings.checked("manifest");
    if (manifest.language !== "c") findings.add("manifest", "fail", "not a C program: its manifest does not say \"language\":\"c\"");
    const hook = C_HOOKS[manifest.hook.kind];
    if (hook === undefined) findings.add("hook", "fail", `the ${hookName(manifest.hook)} hook is not offered to C programs (they implement ${Object.keys(C_HOOKS).join(", ")}); write it in TypeScript`);
    if (findings.failed() || hook === undefined) {
      findings.skipRest("an earlier rule failed: nothing is compiled");
      return done();
    }

    const loadStarted = performance.now();
    this.#toolchain ??= loadToolchain();
    const toolchain = await this.#toolchain;
    stats.loadMs = performance.now() - loadStarted;
    if (typeof toolchain === "string") {
      this.#toolchain = undefined; // installed later: tried again on the next program
      findings.add("checker", "fail", toolchain);
      findings.skipRest("the C toolchain is not installed");
      return done();
    }

    // Compile and link.
    const maxPages = Math.floor(manifest.limits.memoryBytes / WASM_PAGE_BYTES);
    const args = [
      "clang", ...CLANG_FLAGS,
      `-Wl,-z,stack-size=${C_DEFAULTS.stackBytes}`, `-Wl,--max-memory=${maxPages * WASM_PAGE_BYTES}`,
      `-Wl,--export-if-defined=${hook.symbol}`, "-o", "program.wasm", "program.c",
    ];
    const stderr: Uint8Array[] = [];
    const capture = (bytes: Uint8Array | null): void => {
      if (bytes !== null) stderr.push(new Uint8Array(bytes));
    };
    let wasm: Uint8Array | undefined;
    const compileStarted = performance.now();
    let crashed: string | undefined;
    try {
      const out = await toolchain.clang.runClang(args, { "program.c": source, "pk.h": C_HEADER }, { stdout: capture, stderr: capture, fetchProgress: () => undefined });
      const file = out?.["program.wasm"];
      if (file instanceof Uint8Array) wasm = file;
    } catch (error) {
      if (typeof (error as { code?: unknown }).code !== "number") crashed = error instanceof Error ? error.message : String(error);
    }
    stats.compileMs = performance.now() - compileStarted;
    this.compiles++;
    findings.checked("syntax");
    const diagnostics = decodeText(stderr);
    let errors = 0;
    const others: string[] = [];
    for (const line of diagnostics.split("\n")) {
      const m = DIAGNOSTIC.exec(line);
      if (m !== null) {
        const error = m[3] !== "warning";
        if (error) errors++;
        findings.add("syntax", error ? "fail" : "warn", `${m[3]}: ${m[4] ?? ""}`, Number(m[1]), Number(m[2]));
      } else if (/error/i.test(line) && !/^\d+ errors? generated\.$/.test(line.trim())) others.push(line.trim());
    }
    if (wasm === undefined) {
      const memory = others.map((l) => /memory too small, (\d+) bytes needed/.exec(l)).find((m) => m !== null);
      if (memory !== undefined) {
        findings.add("size", "fail", `its static data and its ${C_DEFAULTS.stackBytes}-byte stack need ${memory[1] ?? "?"} bytes of memory, over the manifest's memoryBytes ${manifest.limits.memoryBytes}`);
      } else if (errors === 0) {
        // Not the program's own syntax: the linker (an undefined hook is no error here), the driver, a crash.
        const why = crashed ?? (others.length > 0 ? others.slice(0, 3).join("; ") : "the compiler produced no module");
        findings.add("checker", "fail", why);
      }
      findings.skipRest("it did not compile");
      return done();
    }
    stats.wasmBytes = wasm.length;
    if (wasm.length > C.wasmBytesMax) {
      findings.add("size", "fail", `the module is ${wasm.length} bytes, over ${C.wasmBytesMax}`);
      findings.skipRest("the module is too large");
      return done();
    }

    // The module's shape: imports, memory, the hook's export.
    let shape: WasmShape;
    try {
      shape = wasmShape(wasm);
    } catch (error) {
      findings.add("checker", "fail", error instanceof Error ? error.message : String(error));
      findings.skipRest("the module could not be read");
      return done();
    }
    const used = new Set<string>();
    for (const imp of shape.imports) {
      const abi = C_IMPORTS[imp.name];
      const what = `${imp.module}.${imp.name}`;
      if (imp.kind !== "function") findings.add("imports", "fail", `it imports a ${imp.kind} (${what}): a C program's memory, table and globals are its own`);
      else if (imp.module !== "env" || abi === undefined) findings.add("imports", "fail", `it calls ${imp.name}, which it does not define and the ABI does not offer (only ${Object.keys(C_IMPORTS).join(", ")}; no libc, no WASI)`);
      else if (imp.type === undefined || !sameType(imp.type, abi.type)) findings.add("imports", "fail", `${imp.name} is declared with type ${imp.type === undefined ? "?" : showType(imp.type)}, not the ABI's ${showType(abi.type)}`);
      else {
        used.add(imp.name);
        if (!manifest.capabilities[abi.capability]) findings.add("grants", "fail", `it calls ${imp.name} without the ${abi.capability} capability in its manifest`);
      }
    }
    if (shape.memories.length !== 1) findings.add("size", "fail", `it has ${shape.memories.length} memories (one is expected)`);
    for (const mem of shape.memories) {
      if (mem.shared || mem.memory64) findings.add("size", "fail", "its memory is shared or 64-bit");
      if (mem.initialPages * WASM_PAGE_BYTES > manifest.limits.memoryBytes) findings.add("size", "fail", `its memory starts at ${mem.initialPages * WASM_PAGE_BYTES} bytes, over the manifest's memoryBytes ${manifest.limits.memoryBytes} (static data and the ${C_DEFAULTS.stackBytes}-byte stack)`);
      if (mem.maxPages === undefined || mem.maxPages > maxPages) findings.add("size", "fail", `its memory may grow to ${mem.maxPages === undefined ? "4 GiB" : `${mem.maxPages * WASM_PAGE_BYTES} bytes`}, over the manifest's memoryBytes ${manifest.limits.memoryBytes}`);
    }
    const exported = shape.exports.find((e) => e.name === hook.symbol);
    if (exported === undefined) findings.add("hook", "fail", `it does not define ${hook.symbol}: a ${hookName(manifest.hook)} program defines ${hook.prototype}`);
    else if (exported.kind !== "function" || exported.type === undefined || !sameType(exported.type, hook.type)) {
      findings.add("hook", "fail", `${hook.symbol} is not a function of type ${showType(hook.type)}: ${hook.prototype}`);
    }
    if (!shape.exports.some((e) => e.name === "memory" && e.kind === "memory")) findings.add("checker", "fail", "the module exports no memory");
    if (findings.failed()) {
      findings.skipRest("an earlier rule failed: nothing is emitted");
      return done();
    }

    // wasm2js, then the hook's wrapper.
    const emitStarted = performance.now();
    let asmjs: string;
    let bmod: BinaryenModule | undefined;
    try {
      // What -mcpu=mvp -mbulk-memory emits: memory.copy and memory.fill beside the MVP.
      const f = toolchain.binaryen.Features ?? {};
      const features = (f.MutableGlobals ?? 0) | (f.BulkMemory ?? 0) | (f.BulkMemoryOpt ?? 0) | (f.SignExt ?? 0);
      bmod = toolchain.binaryen.readBinary(wasm);
      bmod.setFeatures(features);
      if (!bmod.validate()) throw new Error("binaryen does not validate the module");
      asmjs = bmod.emitAsmjs();
    } catch (error) {
      findings.add("emit", "fail", `wasm2js failed: ${error instanceof Error ? error.message : String(error)}`);
      return done();
    } finally {
      bmod?.dispose();
    }
    const shim = cShim(asmjs, manifest, used, maxPages);
    stats.wasm2jsMs = performance.now() - emitStarted;
    if (typeof shim !== "string") {
      findings.add("emit", "fail", shim.error);
      return done();
    }
    stats.jsChars = shim.length;
    if (shim.length > C.jsCharsMax) {
      findings.add("size", "fail", `its JavaScript is ${shim.length} characters, over ${C.jsCharsMax}`);
      return done();
    }
    js = shim;
    return done();
  }
}

// ---------------------------------------------------------------------------------------------
// The wrapper: wasm2js's module text made into one ES module with the hook's export.

/**
 * wasm2js's output without its own imports and exports: its `function asmFunc(imports) {...}`,
 * which the wrapper calls with the capability functions. undefined when the text is not of that shape.
 */
export function asmFuncOf(asmjs: string): string | undefined {
  const start = asmjs.indexOf("function asmFunc(");
  if (start < 0) return undefined;
  const call = asmjs.indexOf("\nvar retasmFunc = asmFunc(", start);
  if (call < 0) return undefined;
  const body = asmjs.slice(start, call);
  // Helpers wasm2js places before asmFunc (scratch views, base64 decoding of data) are kept; its imports are not.
  const before = asmjs.slice(0, start).split("\n").filter((l) => !/^\s*import\s/.test(l)).join("\n");
  return `${before}\n${body}`;
}

/** The JavaScript the sandbox runs for a C program: wasm2js's module, instantiated once per run, behind the hook's function. */
export function cShim(asmjs: string, manifest: Manifest, imports: ReadonlySet<string>, maxPages: number): string | { error: string } {
  const core = asmFuncOf(asmjs);
  if (core === undefined) return { error: "wasm2js's output is not of the expected shape (function asmFunc ... var retasmFunc)" };
  const hook = C_HOOKS[manifest.hook.kind];
  if (hook === undefined) return { error: `no C ABI for ${hookName(manifest.hook)}` };
  const exportName = HOOK_EXPORTS[manifest.hook.kind];
  const env = [...imports].map((name) => `${name}: function (p, n) { log.${C_IMPORTS[name]?.level ?? "info"}(pkText(p, n)); }`).join(", ");
  const lines = [
    `// A C program (${manifest.name} ${manifest.version}) compiled by clang to wasm32 and by wasm2js to JavaScript (adapters/compile-c.ts).`,
    imports.size > 0 ? "import { log } from \"pk:program\";" : "",
    core,
    `const PK_MAX_PAGES = ${maxPages};`,
    `const PK_OUTPUT_CAP = ${manifest.limits.outputBytes};`,
    `const pkX = asmFunc({ env: { ${env} } });`,
    SHIM_HELPERS,
    hookWrapper(manifest.hook.kind, exportName, hook.symbol),
  ];
  return lines.filter((l) => l !== "").join("\n");
}

/** Memory, UTF-8 and errors for the wrapper; plain ES2020 for QuickJS (no TextEncoder there). */
const SHIM_HELPERS = `function pkOutOfMemory(what) {
  throw typeof InternalError === "function" ? new InternalError("out of memory") : new RangeError("out of memory: " + what);
}
function pkMem() { return pkX.memory.buffer; }
/* Fresh pages at the end of the module's memory for the hook's arguments: nothing of the program's lies there. */
function pkReserve(bytes) {
  const pages = Math.ceil((bytes + 8) / 65536);
  const old = pkMem().byteLength / 65536;
  if (old + pages > PK_MAX_PAGES) pkOutOfMemory("the arguments do not fit in the program's memory");
  pkX.memory.grow(pages);
  if (pkMem().byteLength / 65536 !== old + pages) pkOutOfMemory("the memory did not grow");
  return old * 65536;
}
function pkText(p, n) {
  const mem = new Uint8Array(pkMem());
  p = p >>> 0; n = n | 0;
  if (n < 0 || p + n > mem.length) throw new RangeError("a string outside the program's memory");
  let s = "", i = p;
  const end = p + n;
  while (i < end) {
    let c = mem[i++];
    if (c >= 0x80) {
      const extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
      if (extra < 0 || i + extra > end) { s += "\\ufffd"; continue; }
      c = c & (0x3f >> extra);
      for (let k = 0; k < extra; k++) c = (c << 6) | (mem[i++] & 0x3f);
    }
    s += String.fromCodePoint(c > 0x10ffff ? 0xfffd : c);
  }
  return s;
}
function pkBytes(s) {
  const out = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.codePointAt(i);
    if (c > 0xffff) i++;
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return out;
}
function pkCheck(symbol, rc) {
  if (rc < 0) throw new Error(symbol + " failed with code " + rc);
  return rc;
}`;

function hookWrapper(kind: HookKind, exportName: string, symbol: string): string {
  switch (kind) {
    case "sensor.prefilter":
      return `export function ${exportName}(readings) {
  const n = readings.length;
  const ids = new Map();
  const base = pkReserve(n * 13);
  const values = new Float64Array(pkMem(), base, n), sensors = new Int32Array(pkMem(), base + n * 8, n);
  for (let i = 0; i < n; i++) {
    const r = readings[i];
    let id = ids.get(r.sensor);
    if (id === undefined) { id = ids.size; ids.set(r.sensor, id); }
    values[i] = r.value;
    sensors[i] = id;
  }
  pkCheck("${symbol}", pkX.${symbol}(base, base + n * 8, n, base + n * 12) | 0);
  const keep = new Uint8Array(pkMem(), base + n * 12, n);
  const kept = [];
  for (let i = 0; i < n; i++) if (keep[i] !== 0) kept.push(readings[i]);
  return kept;
}`;
    case "command":
      return `export function ${exportName}(args) {
  const encoded = [];
  let total = 0;
  for (let i = 0; i < args.length; i++) { const b = pkBytes(args[i]); encoded.push(b); total += b.length + 1; }
  const base = pkReserve(total + PK_OUTPUT_CAP);
  const mem = new Uint8Array(pkMem());
  let at = base;
  for (let i = 0; i < encoded.length; i++) { const b = encoded[i]; for (let k = 0; k < b.length; k++) mem[at++] = b[k]; mem[at++] = 0; }
  const out = base + total;
  const n = pkCheck("${symbol}", pkX.${symbol}(args.length, base, out, PK_OUTPUT_CAP) | 0);
  if (n > PK_OUTPUT_CAP) throw new RangeError("${symbol} wrote " + n + " bytes into " + PK_OUTPUT_CAP);
  return pkText(out, n);
}`;
    case "task":
      return `export function ${exportName}() {
  pkX.${symbol}();
}`;
    case "probe":
      return `export function ${exportName}() {
  return { ok: (pkX.${symbol}() | 0) !== 0 };
}`;
    case "topic":
      return "";
  }
}

// ---------------------------------------------------------------------------------------------
// The compiler off the event loop.

/** A worker thread holding one CCompiler (compile-c-worker.ts), started on first use; a compile over compileMsMax terminates it, and it ends after idleMs without work (worker-calls.ts). */
export class CCompilerThread {
  readonly #calls: WorkerCalls<CompileResult>;

  constructor(options: { readonly idleMs?: number } = {}) {
    this.#calls = new WorkerCalls<CompileResult>({
      script: workerScript(import.meta.url, "compile-c-worker"), name: "the C compiler",
      timeoutMs: C.compileMsMax, idleMs: options.idleMs ?? C_DEFAULTS.idleMs, inFlightMax: C.queuedCompilesMax,
    });
  }

  /** Threads started (1, plus one after each death, termination or idle end). */
  get starts(): number {
    return this.#calls.starts;
  }

  compile(source: string, beside?: unknown): Promise<CompileResult> {
    return this.#calls.call(beside === undefined ? { source } : { source, beside });
  }

  close(): Promise<void> {
    return this.#calls.close();
  }
}

/** A report for a compile that could not run at all (the thread died, timed out or was closed). */
export function failedCompile(source: string, message: string, beside?: unknown): CompileResult {
  const read = readProgram(source, beside);
  const findings = new Findings();
  findings.add("checker", "fail", message);
  findings.skipRest("the compiler did not run to the end");
  const m = read.ok ? read.value.manifest : undefined;
  return {
    ok: false,
    js: undefined,
    stats: { wasmBytes: 0, jsChars: 0, compileMs: 0, wasm2jsMs: 0, loadMs: 0 },
    report: {
      ok: false,
      program: m === undefined ? undefined : { name: m.name, version: m.version, hook: hookName(m.hook) },
      rules: findings.list(),
      js: undefined,
      stats: { sourceBytes: utf8Length(source), astNodes: 0, astDepth: 0 },
      timings: { totalMs: 0, checkMs: 0, emitMs: 0 },
    },
  };
}

let shared: CCompilerThread | undefined;

/**
 * Compiles a C program off the event loop (one shared thread, started on first use): its report in
 * the TypeScript verifier's shape, and the JavaScript the sandbox runs when ok. Never rejects: a
 * thread that dies or runs out of time is a failed `checker` rule.
 */
export async function compileC(source: string, beside?: unknown): Promise<CompileResult> {
  shared ??= new CCompilerThread();
  try {
    return await shared.compile(source, beside);
  } catch (error) {
    return failedCompile(source, error instanceof Error ? error.message : String(error), beside);
  }
}

/** Ends the shared compiler thread, if one started. */
export async function closeCompileC(): Promise<void> {
  const thread = shared;
  shared = undefined;
  if (thread !== undefined) await thread.close();
}
