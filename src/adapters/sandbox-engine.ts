// The sandbox's engine (docs/adr/017-sandbox.md): QuickJS compiled to WebAssembly
// (quickjs-emscripten, the release-sync variant), one module loaded per engine, and for each run a
// new runtime and context with the run's memory and stack limits and an interrupt handler that is
// the gas meter (one unit per poll, about 10,000 bytecode steps) and the wall-clock check. The
// prelude (sandbox-prelude.ts) builds "pk:program" from the request's snapshot and grants; the
// program is evaluated as an ES module that imports it; the hook's export is called inside the
// guest; one JSON text comes back, which is parsed within a bound and checked here again: shape,
// output bytes, checkEffects and checkHookResult. No host function is exposed to the guest.
//
// Runs on any thread (sandbox-worker.ts runs it in a worker; createInlineSandbox in the caller's
// thread). Anything the host side throws — QuickJS's wrapper, a WebAssembly trap, a host stack
// overflow — is kind "host", and the module is thrown away and loaded again before the next run.
import { performance } from "node:perf_hooks";
import variantImport from "@jitl/quickjs-wasmfile-release-sync";
import { newQuickJSWASMModuleFromVariant, newVariant, type QuickJSContext, type QuickJSHandle, type QuickJSRuntime, type QuickJSSyncVariant, type QuickJSWASMModule } from "quickjs-emscripten-core";
import { HOOK_EXPORTS, checkHookResult, utf8Length } from "../core/evolve/capabilities.ts";
import { NO_EFFECTS, checkEffects, type LogLevel, type RunEffects, type RunFailure, type RunOutcome, type RunRequest } from "../core/evolve/run.ts";
import { LIMITS } from "../core/util/limits.ts";
import { CAPABILITY_MODULE_SOURCE, preludeSource } from "./sandbox-prelude.ts";

const RUN = LIMITS.evolve.run;
const SANDBOX = LIMITS.evolve.sandbox;
const PROGRAM = LIMITS.evolve.program;
const WASM_PAGE_BYTES = 65_536;

/** The variant: the package's ESM default at run time (its CommonJS typings wrap it once more). */
export const QUICKJS_VARIANT = ("default" in variantImport ? variantImport.default : variantImport) as QuickJSSyncVariant;

type WasmMemory = NonNullable<Parameters<typeof newVariant>[1]["wasmMemory"]>;
/** WebAssembly.Memory (a Node global that @types/node leaves out of this project's lib). */
const WasmMemoryCtor = (globalThis as unknown as { WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory } }).WebAssembly.Memory;

/** Tunables of the engine; every one within LIMITS.evolve.program. */
export const SANDBOX_ENGINE_DEFAULTS = {
  /**
   * The largest stack a run gets, whatever it asks: above 256 KiB a deep recursion overflows the
   * host's stack before QuickJS's own check and a host RangeError escapes (research/node24-deps.md).
   */
  stackBytesCap: PROGRAM.stackBytesMax,
  /** Gas granted to read the logs back after the meter stopped a run. */
  reportGas: 50,
  /**
   * Wall-clock the sandbox's own start (runtime, prelude, the snapshot's JSON) may take before the
   * program's code runs: the run's wallMs counts from there, so a loaded machine's slow start is
   * not charged to the program.
   */
  startWallMs: 2_000,
  /** Interrupt polls between two samples of the heap past a run's first 16 (its peak is what a run reports). */
  memorySampleEvery: 8,
  /** WebAssembly pages (64 KiB) the module's memory starts with: 16 MiB. */
  wasmInitialPages: 256,
} as const;

export interface EngineOptions {
  /** Overrides SANDBOX_ENGINE_DEFAULTS.stackBytesCap (tests use it to provoke a real host failure). */
  readonly stackBytesCap?: number;
}

export interface EngineStats {
  runs: number;
  /** Modules loaded again after a host failure. */
  rebuilds: number;
}

/** A failed run's outcome. */
export function failed(kind: RunFailure, message: string, extra: Partial<Pick<RunOutcome, "logs" | "gas" | "memoryBytes" | "outputBytes" | "ms">> = {}): RunOutcome {
  return {
    ok: false,
    error: { kind, message: message.length > SANDBOX.errorCharsMax ? message.slice(0, SANDBOX.errorCharsMax) : message },
    effects: NO_EFFECTS,
    logs: extra.logs ?? [],
    gas: extra.gas ?? 0,
    memoryBytes: extra.memoryBytes ?? 0,
    outputBytes: extra.outputBytes ?? 0,
    ms: extra.ms ?? 0,
  };
}

/** The request's size as the engine sees it (its JSON in UTF-8), or undefined when it is not JSON. */
export function requestBytes(req: RunRequest): number | undefined {
  try {
    return utf8Length(JSON.stringify(req));
  } catch {
    return undefined;
  }
}

const LEVELS: ReadonlySet<string> = new Set(["info", "warn", "error"]);
const GUEST_KINDS: ReadonlySet<string> = new Set(["throw", "memory", "stack", "contract", "output"]);

interface Report {
  readonly out: number;
  readonly dropped: number;
  readonly logs: Array<{ level: LogLevel; message: string }>;
  readonly effects: RunEffects;
  readonly error?: { kind: RunFailure; message: string };
  readonly result?: unknown;
  readonly hasResult: boolean;
}

function isStringPair(value: unknown): value is [string, string | null] {
  return Array.isArray(value) && value.length === 2 && typeof value[0] === "string" && (typeof value[1] === "string" || value[1] === null);
}

/** The guest's report, parsed and checked for shape; a string saying what is wrong otherwise. */
function parseReport(text: string): Report | string {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return "the run's report is not JSON";
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return "the run's report is not an object";
  const r = raw as Record<string, unknown>;
  const { out, dropped, logs, kv, files, publish, error } = r;
  if (typeof out !== "number" || typeof dropped !== "number") return "the run's report has no counters";
  if (!Array.isArray(logs) || !Array.isArray(kv) || !Array.isArray(files) || !Array.isArray(publish)) return "the run's report has no lists";
  if (logs.length > RUN.logLinesMax) return "the run's report holds too many log lines";
  const lines: Array<{ level: LogLevel; message: string }> = [];
  for (const l of logs as unknown[]) {
    if (!Array.isArray(l) || l.length !== 2 || typeof l[0] !== "string" || !LEVELS.has(l[0]) || typeof l[1] !== "string") return "the run's report has a bad log line";
    lines.push({ level: l[0] as LogLevel, message: l[1] });
  }
  if (!kv.every(isStringPair) || !files.every(isStringPair)) return "the run's report has a bad write";
  const published: Array<{ topic: string; key: string; value: string }> = [];
  for (const p of publish as unknown[]) {
    if (!Array.isArray(p) || p.length !== 3 || !p.every((x) => typeof x === "string")) return "the run's report has a bad publish";
    published.push({ topic: p[0] as string, key: p[1] as string, value: p[2] as string });
  }
  let failure: Report["error"];
  if (error !== undefined) {
    if (!Array.isArray(error) || error.length !== 2 || typeof error[0] !== "string" || !GUEST_KINDS.has(error[0]) || typeof error[1] !== "string") return "the run's report has a bad error";
    failure = { kind: error[0] as RunFailure, message: error[1] };
  }
  return {
    out, dropped, logs: lines,
    effects: { kv: kv as Array<[string, string | null]>, files: files as Array<[string, string | null]>, publish: published },
    ...(failure === undefined ? {} : { error: failure }),
    hasResult: Object.hasOwn(r, "result"),
    ...(Object.hasOwn(r, "result") ? { result: r.result } : {}),
  };
}

/** The logs as kept: at most logLinesMax, the last one saying how many were dropped. */
function keptLogs(report: Report): RunOutcome["logs"] {
  if (report.dropped <= 0) return report.logs;
  const kept = report.logs.slice(0, RUN.logLinesMax - 1);
  kept.push({ level: "warn", message: `sandbox: ${report.dropped + report.logs.length - kept.length} more log lines not kept` });
  return kept;
}

/** One QuickJS module and the runs made with it. Runs are synchronous; loading is not. */
export class SandboxEngine {
  readonly stats: EngineStats = { runs: 0, rebuilds: 0 };
  readonly #stackBytesCap: number;
  #module: QuickJSWASMModule | undefined;
  #loading: Promise<QuickJSWASMModule> | undefined;

  private constructor(options: EngineOptions) {
    this.#stackBytesCap = options.stackBytesCap ?? SANDBOX_ENGINE_DEFAULTS.stackBytesCap;
  }

  /** An engine with its module loaded. */
  static async create(options: EngineOptions = {}): Promise<SandboxEngine> {
    const engine = new SandboxEngine(options);
    await engine.ready();
    return engine;
  }

  /** Loads the module if it is not (after a host failure). */
  async ready(): Promise<void> {
    if (this.#module !== undefined) return;
    // A WebAssembly memory of our own with a maximum: QuickJS's memory limit does not count large
    // allocations in this build (no malloc_usable_size), so without a cap one run could grow the
    // module's memory to 2 GiB; with it, such a run gets a clean guest "out of memory".
    const wasmMemory = new WasmMemoryCtor({ initial: SANDBOX_ENGINE_DEFAULTS.wasmInitialPages, maximum: SANDBOX.wasmBytesMax / WASM_PAGE_BYTES });
    this.#loading ??= newQuickJSWASMModuleFromVariant(newVariant(QUICKJS_VARIANT, { wasmMemory }));
    try {
      this.#module = await this.#loading;
    } finally {
      this.#loading = undefined;
    }
  }

  /** True when a module is loaded and run() may be called. */
  get loaded(): boolean {
    return this.#module !== undefined;
  }

  /** Loads the module again if needed, then runs. */
  async runAsync(req: RunRequest): Promise<RunOutcome> {
    await this.ready();
    return this.run(req);
  }

  /**
   * One run; never throws. Needs a loaded module (after a "host" failure, await ready() first, or
   * use runAsync).
   */
  run(req: RunRequest): RunOutcome {
    const started = performance.now();
    this.stats.runs++;
    const module = this.#module;
    if (module === undefined) return failed("host", "the engine's module is not loaded");
    let json: string;
    try {
      json = JSON.stringify({
        exportName: HOOK_EXPORTS[req.hook],
        arg: req.arg,
        grants: req.grants,
        outputBytes: req.limits.outputBytes,
        state: req.state,
      });
    } catch (error) {
      return this.#hostFailure(error, started);
    }
    let rt: QuickJSRuntime | undefined;
    let ctx: QuickJSContext | undefined;
    const handles: QuickJSHandle[] = [];
    let gas = 0;
    let gasMax = req.limits.gas;
    let stopped: "gas" | "wall" | undefined;
    let peak = 0;
    let deadline = started + Math.max(req.limits.wallMs, SANDBOX_ENGINE_DEFAULTS.startWallMs);
    try {
      rt = module.newRuntime();
      rt.setMemoryLimit(req.limits.memoryBytes);
      rt.setMaxStackSize(Math.min(req.limits.stackBytes, this.#stackBytesCap));
      rt.setInterruptHandler(() => {
        gas++;
        if (stopped !== undefined) return true;
        // The heap's peak: sampled every few polls (the run's end sees only what it kept).
        // Every poll of a short run, every memorySampleEvery-th of a long one: a sample walks the
        // whole heap, so sampling every poll of a run that fills it would cost its square.
        if ((gas <= 16 || gas % SANDBOX_ENGINE_DEFAULTS.memorySampleEvery === 0) && ctx !== undefined) {
          try {
            peak = Math.max(peak, this.#memory(rt, ctx));
          } catch {
            // Out of memory while measuring: the run's own allocation will fail and say so.
          }
        }
        if (gas > gasMax) stopped = "gas";
        else if (performance.now() > deadline) stopped = "wall";
        return stopped !== undefined;
      });
      rt.setModuleLoader((name) => (name === "pk:program" ? CAPABILITY_MODULE_SOURCE : { error: new Error(`no module ${name.slice(0, 64)}: a program imports only "pk:program"`) }));
      ctx = rt.newContext();
      const c = ctx;
      const track = (h: QuickJSHandle): QuickJSHandle => {
        handles.push(h);
        return h;
      };
      const guestFailure = (kind: RunFailure, message: string): RunOutcome => failed(kind, message, { gas, ms: performance.now() - started, memoryBytes: Math.max(peak, this.#memory(rt, c)) });

      // Before the program is evaluated no guest code exists: an error here is the engine's own and
      // safe to read. Out of memory or stack with the run's limits is the run's failure; anything
      // else is the sandbox's (kind "host").
      const startFailure = (error: QuickJSHandle): RunOutcome => {
        track(error);
        if (stopped !== undefined) return guestFailure(stopped, `stopped by the ${stopped} meter while starting`);
        const dumped: unknown = c.dump(error);
        const message = typeof dumped === "object" && dumped !== null && typeof (dumped as { message?: unknown }).message === "string" ? (dumped as { message: string }).message : String(dumped);
        if (message === "out of memory") return guestFailure("memory", "the run's state does not fit in its memory");
        if (message === "stack overflow") return guestFailure("stack", "the sandbox could not start within the run's stack");
        throw new Error(`the prelude failed: ${message}`);
      };
      const prelude = c.evalCode(preludeSource(req.grants), "prelude.js", { type: "global", strict: true });
      if (prelude.error !== undefined) return startFailure(prelude.error);
      const setup = track(prelude.value);
      const control = c.callFunction(setup, c.undefined, track(c.newString(json)));
      if (control.error !== undefined) return startFailure(control.error);
      const controlFn = track(control.value);
      // Evaluate "pk:program" now, whether the program imports it or not: it takes the capabilities
      // off the global object before any program code runs (the program's import finds it loaded).
      const init = c.evalCode('import "pk:program";', "pk-init.js", { type: "module", strict: true });
      if (init.error !== undefined) return startFailure(init.error);
      track(init.value);
      const call = (op: number, value?: QuickJSHandle) => c.callFunction(controlFn, c.undefined, track(c.newNumber(op)), value ?? c.undefined);

      // From here the program's own code runs: its wall-clock bound starts now.
      deadline = performance.now() + req.limits.wallMs;
      const evaluated = c.evalCode(req.js, "program.js", { type: "module", strict: true });
      let reported;
      if (evaluated.error !== undefined) reported = call(1, track(evaluated.error));
      else reported = call(0, track(evaluated.value));

      if (stopped !== undefined || reported.error !== undefined) {
        if (reported.error !== undefined) track(reported.error);
        else track(reported.value);
        const kind: RunFailure = stopped ?? "memory";
        const message = stopped === "gas" ? `out of gas: more than ${req.limits.gas} units` : stopped === "wall" ? `over the wall-clock bound of ${req.limits.wallMs} ms` : "the run failed and its error could not be read (out of memory)";
        // Read the logs back with a little more gas; whatever fails here, the run has failed already.
        const base = gas;
        stopped = undefined;
        gasMax = base + SANDBOX_ENGINE_DEFAULTS.reportGas;
        const logs = this.#readReport(c, call(2), track);
        // Output over its bound came first (the program went on until the meter stopped it): that is the verdict.
        if (logs?.error?.kind === "output") return failed("output", logs.error.message, { gas: base, ms: performance.now() - started, memoryBytes: Math.max(peak, this.#memory(rt, c)), logs: keptLogs(logs), outputBytes: logs.out });
        return failed(kind, message, { gas: base, ms: performance.now() - started, memoryBytes: Math.max(peak, this.#memory(rt, c)), ...(logs === undefined ? {} : { logs: keptLogs(logs), outputBytes: logs.out }) });
      }
      const text = this.#readString(c, track(reported.value));
      if (text === undefined) return guestFailure("output", `the run's report is over ${SANDBOX.reportCharsMax} characters`);
      const report = parseReport(text);
      if (typeof report === "string") return guestFailure("contract", `${report} (did the program reshape the ES library?)`);
      return this.#verdict(req, report, gas, performance.now() - started, Math.max(peak, this.#memory(rt, c)));
    } catch (error) {
      return this.#hostFailure(error, started, gas);
    } finally {
      // Handles first, then the context, then the runtime; a failure here breaks the module too. A
      // module already broken is not touched again (freeing into it can abort).
      if (this.#module === module) {
        try {
          for (let i = handles.length - 1; i >= 0; i--) {
            const h = handles[i];
            if (h !== undefined && h.alive) h.dispose();
          }
          ctx?.dispose();
          rt?.dispose();
        } catch {
          this.#breakModule();
        }
      }
    }
  }

  /** The string behind a handle, if it is one within the report's bound. */
  #readString(ctx: QuickJSContext, handle: QuickJSHandle): string | undefined {
    if (ctx.typeof(handle) !== "string") return undefined;
    const lengthHandle = ctx.getProp(handle, "length");
    const length = ctx.typeof(lengthHandle) === "number" ? ctx.getNumber(lengthHandle) : Infinity;
    lengthHandle.dispose();
    if (length > SANDBOX.reportCharsMax) return undefined;
    return ctx.getString(handle);
  }

  #readReport(ctx: QuickJSContext, result: ReturnType<QuickJSContext["callFunction"]>, track: (h: QuickJSHandle) => QuickJSHandle): Report | undefined {
    if (result.error !== undefined) {
      track(result.error);
      return undefined;
    }
    const text = this.#readString(ctx, track(result.value));
    if (text === undefined) return undefined;
    const report = parseReport(text);
    return typeof report === "string" ? undefined : report;
  }

  #memory(rt: QuickJSRuntime | undefined, ctx: QuickJSContext): number {
    if (rt === undefined) return 0;
    const usage = rt.computeMemoryUsage();
    try {
      const used = ctx.getProp(usage, "memory_used_size");
      try {
        return ctx.typeof(used) === "number" ? ctx.getNumber(used) : 0;
      } finally {
        used.dispose();
      }
    } finally {
      usage.dispose();
    }
  }

  /** The host's checks of what the guest reported. */
  #verdict(req: RunRequest, report: Report, gas: number, ms: number, memoryBytes: number): RunOutcome {
    const logs = keptLogs(report);
    let outputBytes = 0;
    for (const line of report.logs) if (!line.message.startsWith("sandbox: ")) outputBytes += utf8Length(line.message);
    for (const p of report.effects.publish) outputBytes += utf8Length(p.value);
    if (req.hook === "command" && typeof report.result === "string") outputBytes += utf8Length(report.result);
    outputBytes = Math.max(outputBytes, report.out);
    const base = { logs, gas, memoryBytes, outputBytes, ms };
    if (report.error !== undefined) return failed(report.error.kind, report.error.message, base);
    if (outputBytes > req.limits.outputBytes) return failed("output", `over the output bound of ${req.limits.outputBytes} bytes`, base);
    const effectsProblem = checkEffects(req.grants, req.limits, report.effects, req.state.kv);
    if (effectsProblem !== undefined) return failed("effects", effectsProblem, base);
    const result = report.hasResult ? report.result : undefined;
    const readings = req.arg.kind === "sensor.prefilter" ? req.arg.readings : undefined;
    const contract = checkHookResult(req.hook, result, { ...(readings === undefined ? {} : { readings }), outputBytesMax: req.limits.outputBytes });
    if (contract !== undefined) return failed("contract", contract, base);
    return { ok: true, ...(result === undefined ? {} : { result }), effects: report.effects, ...base };
  }

  #hostFailure(error: unknown, started: number, gas = 0): RunOutcome {
    this.#breakModule();
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return failed("host", `the engine failed: ${message}`, { gas, ms: performance.now() - started });
  }

  /** Drops the module (its memory goes with it); ready() loads a new one. */
  #breakModule(): void {
    if (this.#module !== undefined) this.stats.rebuilds++;
    this.#module = undefined;
  }
}
