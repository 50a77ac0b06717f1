// Programs on a node (issue 15; docs/protocols/programs.md): verified TypeScript attached to the
// kernel's hooks and run in the sandbox, off the event loop (EvolvePorts: the verifier's thread and
// the sandbox's worker).
//
// Where things live:
//   - a deployed program's source, cluster-wide, in the Raft KV under `prog/NAME`: any node can run
//     it (`exec NAME`), so a guarded program moves to a survivor; every node verifies a source
//     itself before it runs it (it never runs what another node compiled);
//   - its KV namespace in the Raft KV under `pns/NAME/`: replicated, it moves with the program;
//   - its folder in this node's store (`pfile/NAME/PATH`);
//   - which programs are attached to this node's hooks, in this node's store (`programs/attached`).
//
// A run is a pure function of its request (core/evolve/run.ts): the program reads a snapshot cut
// to its grants, and its writes come back as effects, checked again here and then applied. KV
// writes go through Raft; until they are applied here an overlay keeps them, so the next run reads
// its own writes.
import { checkHookResult, type HookReading } from "../../core/evolve/capabilities.ts";
import { checkSuccessor, hookName, readProgram, type Manifest } from "../../core/evolve/manifest.ts";
import { checkEffects, NO_EFFECTS, topicGranted, type RunArg, type RunFailure, type RunOutcome, type RunRequest, type RunState, type RunTopicRow } from "../../core/evolve/run.ts";
import { failures, type VerifyReport } from "../../core/evolve/verdict.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { EvolvePorts, StoreWrite } from "../ports.ts";
import type { SubsystemContext } from "../subsystem-context.ts";

export const PROGRAM_KEY_PREFIX = "prog/";
export const NAMESPACE_PREFIX = "pns/";
const FILE_PREFIX = "pfile/";
const ATTACHED_KEY = "programs/attached";
const RUN = LIMITS.evolve.run;

/** The four readings of the seed model, in the order the Brain takes them. */
export const SENSORS = ["temperature", "humidity", "pressure", "light"] as const;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: false });

export interface ProgramStats {
  runs: number;
  failures: Partial<Record<RunFailure, number>>;
  gasTotal: number;
  gasLast: number;
  memoryPeak: number;
  outputBytes: number;
  lastError: string | undefined;
  lastMs: number;
  kvWritesFailed: number;
}

export interface PrefilterStats {
  calls: number;
  readings: number;
  dropped: number;
  failed: number;
  program: string | undefined;
}

interface Loaded {
  readonly manifest: Manifest;
  readonly source: string;
  readonly js: string;
  readonly verifyMs: number;
  readonly stats: ProgramStats;
  /** Log lines of recent runs, newest last. */
  readonly logs: string[];
  /** KV writes sent to Raft and not yet applied here. */
  readonly overlay: Map<string, string | null>;
  attached: boolean;
  nextDueMs: number;
  running: boolean;
  subscription: { take(max: number): Array<{ topic: string; key: string; value: Uint8Array | undefined; origin: string }>; close(): void } | undefined;
}

export interface ProgramView {
  readonly name: string;
  readonly version: string;
  readonly hook: string;
  readonly attached: boolean;
  readonly stats: ProgramStats;
  readonly limits: Manifest["limits"];
  readonly logs: readonly string[];
}

export interface DeployOutcome {
  readonly ok: boolean;
  readonly report: VerifyReport | undefined;
  readonly dryRun: RunOutcome | undefined;
  /** Why it was refused, when not ok. */
  readonly reason: string | undefined;
  readonly manifest: Manifest | undefined;
}

/** Thrown for a request the programs cannot serve (no sandbox here, no such program, ...). */
export class ProgramError extends Error {}

export class ProgramsPart {
  readonly #ctx: SubsystemContext;
  readonly #ports: EvolvePorts | undefined;
  readonly #programs = new Map<string, Loaded>();
  /** Programs being loaded from the cluster KV (verified here first). */
  readonly #loading = new Map<string, Promise<Loaded>>();
  /** The newest reading of each sensor this node saw (the prefilter's recorded data too). */
  readonly #latest = new Map<string, HookReading>();
  /** Recent readings, for dry runs on recorded data. */
  readonly #recorded: HookReading[] = [];
  /** The last value the prefilter kept, per sensor: a dropped reading is replaced by it. */
  readonly #held = new Map<string, number>();
  readonly prefilterStats: PrefilterStats = { calls: 0, readings: 0, dropped: 0, failed: 0, program: undefined };

  constructor(ctx: SubsystemContext) {
    this.#ctx = ctx;
    this.#ports = ctx.evolve;
  }

  get available(): boolean {
    return this.#ports !== undefined;
  }

  start(): void {
    if (this.#ports === undefined) return;
    const raw = this.#ctx.store.get(ATTACHED_KEY);
    if (raw === undefined) return;
    let names: unknown;
    try {
      names = JSON.parse(fromUtf8.decode(raw));
    } catch {
      names = [];
    }
    if (!Array.isArray(names)) return;
    // Attached before a restart: loaded from the cluster KV and verified again, then attached.
    for (const name of names.slice(0, LIMITS.evolve.programsMax)) {
      if (typeof name !== "string") continue;
      this.#load(name).then((p) => this.#attach(p), (error: unknown) => {
        this.#ctx.emit("program-load-failed", { program: name, error: error instanceof Error ? error.message : String(error) });
      });
    }
  }

  stop(): void {
    for (const p of this.#programs.values()) p.subscription?.close();
  }

  list(): ProgramView[] {
    return [...this.#programs.values()].map((p) => ({
      name: p.manifest.name, version: p.manifest.version, hook: hookName(p.manifest.hook), attached: p.attached, stats: p.stats, limits: p.manifest.limits, logs: p.logs,
    }));
  }

  /** Verifies a program's source; the report says every rule's verdict. */
  verify(source: string): Promise<VerifyReport> {
    return this.#portsOrThrow().verifySource(source);
  }

  /**
   * Verifies a program, runs it once on recorded data (the dry run: effects dropped), and — unless
   * `dryRun` — writes it to the cluster KV and attaches it to this node's hook.
   */
  async deploy(source: string, options: { readonly dryRun?: boolean } = {}): Promise<DeployOutcome> {
    const ports = this.#portsOrThrow();
    if (this.#ctx.members.self.role !== "core") throw new ProgramError("a contributor deploys no programs (its KV writes would be refused)");
    const read = readProgram(source);
    const report = await ports.verifySource(source);
    const refused = (reason: string, dry?: RunOutcome): DeployOutcome => ({ ok: false, report, dryRun: dry, reason, manifest: read.ok ? read.value.manifest : undefined });
    if (!report.ok || report.js === undefined || !read.ok) return refused(`verification failed: ${failures(report).join("; ") || "manifest"}`);
    const manifest = read.value.manifest;
    const previous = this.#programs.get(manifest.name);
    const successor = checkSuccessor(previous?.manifest, manifest);
    if (successor !== undefined) return refused(successor);
    if (previous === undefined && this.#programs.size >= LIMITS.evolve.programsMax) return refused(`this node holds ${LIMITS.evolve.programsMax} programs already`);
    const loaded = newLoaded(manifest, source, report.js, report.timings.totalMs);
    const dry = await this.#runOnce(loaded, this.#dryArg(manifest), { dry: true });
    if (!dry.ok) return refused(`the dry run failed: ${dry.error?.kind ?? "?"}: ${dry.error?.message ?? ""}`, dry);
    if (options.dryRun === true) return { ok: true, report, dryRun: dry, reason: undefined, manifest };
    const code = await this.#kvPut(PROGRAM_KEY_PREFIX + manifest.name, utf8.encode(source));
    if (code !== "ok") return refused(`the program could not be stored in the cluster KV: ${code}`, dry);
    previous?.subscription?.close();
    this.#programs.set(manifest.name, loaded);
    this.#attach(loaded);
    this.#ctx.emit("program-deployed", { program: manifest.name, version: manifest.version, hook: hookName(manifest.hook) });
    return { ok: true, report, dryRun: dry, reason: undefined, manifest };
  }

  /** Runs a program once now: a command program with `args`; any other its hook with what it reads now. */
  async exec(name: string, args: readonly string[]): Promise<RunOutcome & { readonly program: string }> {
    const p = await this.#load(name);
    const arg: RunArg = p.manifest.hook.kind === "command" ? { kind: "command", args }
      : p.manifest.hook.kind === "sensor.prefilter" ? { kind: "sensor.prefilter", readings: [...this.#latest.values()] }
        : p.manifest.hook.kind === "topic" ? { kind: "topic", row: this.#lastRow(p.manifest.hook.topic ?? "") }
          : { kind: p.manifest.hook.kind };
    const outcome = await this.#runOnce(p, arg, { dry: false });
    return { ...outcome, program: `${p.manifest.name} ${p.manifest.version}` };
  }

  /** Detaches a program here and removes it from the cluster (its KV namespace stays for a later version). */
  async kill(name: string): Promise<string> {
    const p = this.#programs.get(name);
    const code = await this.#kvDelete(PROGRAM_KEY_PREFIX + name);
    if (p === undefined && code !== "ok") throw new ProgramError(`no program ${JSON.stringify(name.slice(0, 48))} here, and the cluster's could not be removed: ${code}`);
    if (p !== undefined) {
      p.subscription?.close();
      this.#programs.delete(name);
      this.#saveAttached();
    }
    this.#ctx.emit("program-killed", { program: name });
    return code === "ok" ? `${name}: stopped and removed` : `${name}: stopped here; removing it from the cluster failed (${code})`;
  }

  /** Whether a program of that name is held here or deployed in the cluster. */
  exists(name: string): boolean {
    return this.#programs.has(name) || this.#ctx.services.kv?.valueLocal(PROGRAM_KEY_PREFIX + name) !== undefined;
  }

  /** The guarded-task line for a task program: `guard NAME SECONDS exec NAME`. */
  async guardArgs(name: string): Promise<string[]> {
    const p = await this.#load(name);
    if (p.manifest.hook.kind !== "task") throw new ProgramError(`${name} is a ${hookName(p.manifest.hook)} program; only task programs are guarded`);
    // From now on the guard runs it (here, or on a survivor): its own period here stops.
    if (p.attached) {
      p.attached = false;
      this.#saveAttached();
    }
    return [name, String(Math.max(1, Math.round((p.manifest.periodMs ?? 10_000) / 1000))), "exec", name];
  }

  /**
   * The sensor readings through the attached prefilter, if any: a reading it drops is replaced by
   * the last value it kept of that sensor (0, the standardised mean, before any). A failing
   * program lets the readings through unchanged (counted).
   */
  async prefilter(values: Float32Array): Promise<{ values: Float32Array; dropped: number }> {
    const at = Math.floor(this.#ctx.clock.nowMs());
    const readings = SENSORS.slice(0, values.length).map((sensor, i) => ({ sensor, value: values[i] as number, at }));
    this.#record(readings);
    const p = [...this.#programs.values()].find((q) => q.attached && q.manifest.hook.kind === "sensor.prefilter");
    if (p === undefined) return { values, dropped: 0 };
    this.prefilterStats.program = `${p.manifest.name} ${p.manifest.version}`;
    this.prefilterStats.calls++;
    this.prefilterStats.readings += readings.length;
    const outcome = await this.#runOnce(p, { kind: "sensor.prefilter", readings }, { dry: false });
    if (!outcome.ok) {
      this.prefilterStats.failed++;
      return { values, dropped: 0 };
    }
    const kept = new Map((outcome.result as HookReading[]).map((r) => [r.sensor, r.value]));
    const out = Float32Array.from(readings, (r) => {
      const v = kept.get(r.sensor);
      if (v !== undefined) {
        this.#held.set(r.sensor, v);
        return v;
      }
      return this.#held.get(r.sensor) ?? 0;
    });
    const dropped = readings.length - kept.size;
    this.prefilterStats.dropped += dropped;
    return { values: out, dropped };
  }

  /** The newest reading of each sensor, for evolve's state. */
  sensorsText(): string {
    if (this.#latest.size === 0) return "no readings yet";
    return [...this.#latest.values()].map((r) => `${r.sensor} ${r.value.toFixed(2)}`).join(", ");
  }

  tick(): void {
    if (this.#ports === undefined) return;
    const now = this.#ctx.clock.nowMs();
    for (const p of this.#programs.values()) {
      if (!p.attached || p.running) continue;
      if (p.manifest.hook.kind === "task" && now >= p.nextDueMs) {
        p.nextDueMs = now + (p.manifest.periodMs ?? 10_000);
        this.#background(p, { kind: "task" });
      } else if (p.manifest.hook.kind === "topic" && p.subscription !== undefined) {
        const change = p.subscription.take(1)[0];
        if (change !== undefined) {
          this.#background(p, { kind: "topic", row: { topic: change.topic, key: change.key, value: change.value === undefined ? undefined : fromUtf8.decode(change.value), origin: change.origin } });
        }
      }
    }
  }

  sections(): Array<{ name: string; keys: number; bytes: number; durable: boolean }> {
    const files = this.#ctx.store.scan(FILE_PREFIX, RUN.filesMax * LIMITS.evolve.programsMax);
    return [{ name: "programs", keys: files.length + 1, bytes: files.reduce((n, [, v]) => n + v.length, 0), durable: true }];
  }

  // ---- runs ----------------------------------------------------------------------------------

  #background(p: Loaded, arg: RunArg): void {
    this.#runOnce(p, arg, { dry: false }).catch((error: unknown) => {
      p.stats.lastError = error instanceof Error ? error.message : String(error);
    });
  }

  async #runOnce(p: Loaded, arg: RunArg, options: { readonly dry: boolean }): Promise<RunOutcome> {
    const ports = this.#portsOrThrow();
    const m = p.manifest;
    const state = this.#state(p);
    const request: RunRequest = { program: `${m.name}@${m.version}`, js: p.js, hook: m.hook.kind, arg, grants: m.capabilities, limits: m.limits, state };
    p.running = true;
    let outcome: RunOutcome;
    try {
      outcome = await ports.run(request);
    } catch (error) {
      outcome = failed("host", error instanceof Error ? error.message : String(error));
    } finally {
      p.running = false;
    }
    // The engine's word is checked again here: the contract and the effects against the grants.
    if (outcome.ok) {
      const contract = checkHookResult(m.hook.kind, outcome.result, { ...(arg.kind === "sensor.prefilter" ? { readings: arg.readings } : {}), outputBytesMax: m.limits.outputBytes });
      const effects = contract === undefined ? checkEffects(m.capabilities, m.limits, outcome.effects, state.kv) : undefined;
      if (contract !== undefined) outcome = { ...outcome, ok: false, error: { kind: "contract", message: contract }, effects: NO_EFFECTS };
      else if (effects !== undefined) outcome = { ...outcome, ok: false, error: { kind: "effects", message: effects }, effects: NO_EFFECTS };
    }
    this.#count(p, outcome);
    if (outcome.ok && !options.dry) this.#apply(p, outcome);
    return outcome;
  }

  #count(p: Loaded, outcome: RunOutcome): void {
    const s = p.stats;
    s.runs++;
    s.gasTotal += outcome.gas;
    s.gasLast = outcome.gas;
    s.memoryPeak = Math.max(s.memoryPeak, outcome.memoryBytes);
    s.outputBytes += outcome.outputBytes;
    s.lastMs = outcome.ms;
    if (!outcome.ok && outcome.error !== undefined) {
      s.failures[outcome.error.kind] = (s.failures[outcome.error.kind] ?? 0) + 1;
      s.lastError = `${outcome.error.kind}: ${outcome.error.message}`.slice(0, 300);
    }
    for (const line of outcome.logs) p.logs.push(`${line.level} ${line.message}`.slice(0, 300));
    if (!outcome.ok && outcome.error !== undefined) p.logs.push(`error ${s.lastError ?? ""}`);
    if (p.logs.length > RUN.logLinesMax) p.logs.splice(0, p.logs.length - RUN.logLinesMax);
  }

  #apply(p: Loaded, outcome: RunOutcome): void {
    const name = p.manifest.name;
    for (const [key, value] of outcome.effects.kv) {
      p.overlay.set(key, value);
      const done = (code: string): void => {
        if (p.overlay.get(key) === value) p.overlay.delete(key);
        if (code !== "ok") {
          p.stats.kvWritesFailed++;
          p.logs.push(`error kv ${key}: the write failed (${code})`);
        }
      };
      const full = `${NAMESPACE_PREFIX}${name}/${key}`;
      if (value === null) void this.#kvDelete(full).then(done);
      else void this.#kvPut(full, utf8.encode(value)).then(done);
    }
    if (outcome.effects.files.length > 0) {
      const writes: StoreWrite[] = outcome.effects.files.map(([path, text]) => ({ key: `${FILE_PREFIX}${name}/${path}`, value: text === null ? undefined : utf8.encode(text) }));
      this.#ctx.persist(writes, true);
    }
    const topics = this.#ctx.services.topics;
    for (const { topic, key, value } of outcome.effects.publish) {
      const error = topics === undefined ? "this node has no gossip topics" : topics.publish(topic, key, utf8.encode(value));
      if (error !== undefined) p.logs.push(`error publish ${topic}/${key}: ${error}`);
    }
  }

  /** What the program may read now, cut to its grants and bounds. */
  #state(p: Loaded): RunState {
    const m = p.manifest;
    const g = m.capabilities;
    const kv: Record<string, string> = {};
    const kvService = this.#ctx.services.kv;
    if (g.kv && kvService !== undefined) {
      const prefix = `${NAMESPACE_PREFIX}${m.name}/`;
      for (const full of kvService.keysLocal(prefix, RUN.kvKeysMax)) {
        const value = kvService.valueLocal(full);
        if (value !== undefined) kv[full.slice(prefix.length)] = fromUtf8.decode(value);
      }
      for (const [key, value] of p.overlay) {
        if (value === null) delete kv[key];
        else kv[key] = value;
      }
    }
    const files: Record<string, string> = {};
    if (g.files) {
      const prefix = `${FILE_PREFIX}${m.name}/`;
      for (const [key, value] of this.#ctx.store.scan(prefix, RUN.filesMax)) files[key.slice(prefix.length)] = fromUtf8.decode(value);
    }
    const topics: Record<string, RunTopicRow[]> = {};
    const topicService = this.#ctx.services.topics;
    if (g.topics.read.length > 0 && topicService !== undefined) {
      for (const { topic } of topicService.topics()) {
        if (!topicGranted(g.topics.read, topic)) continue;
        topics[topic] = topicService.entries(topic).slice(0, RUN.topicRowsMax).map((r) => ({ topic, key: r.key, value: fromUtf8.decode(r.value), origin: r.origin }));
      }
    }
    return {
      kv, files, topics, sensors: g.sensors ? [...this.#latest.values()] : [],
      nowMs: Math.floor(this.#ctx.clock.nowMs()), seed: this.#ctx.rng.nextU32(),
    };
  }

  /** The dry run's argument: recorded data where the hook takes some. */
  #dryArg(m: Manifest): RunArg {
    switch (m.hook.kind) {
      case "sensor.prefilter": {
        const at = Math.floor(this.#ctx.clock.nowMs());
        const readings = this.#recorded.length > 0 ? this.#recorded.slice(-RUN.dryReadingsMax)
          : Array.from({ length: 100 }, (_, i) => ({ sensor: SENSORS[i % SENSORS.length] as string, value: Math.sin(i * 0.7) + (i % 37 === 0 ? 40 : 0), at: at - (100 - i) * 1000 }));
        return { kind: "sensor.prefilter", readings };
      }
      case "command":
        return { kind: "command", args: [] };
      case "topic":
        return { kind: "topic", row: this.#lastRow(m.hook.topic ?? "") };
      default:
        return { kind: m.hook.kind };
    }
  }

  #lastRow(topic: string): RunTopicRow {
    const rows = this.#ctx.services.topics?.entries(topic) ?? [];
    const row = rows[rows.length - 1];
    return row === undefined ? { topic, key: "dry-run", value: "", origin: this.#ctx.id } : { topic, key: row.key, value: fromUtf8.decode(row.value), origin: row.origin };
  }

  #record(readings: readonly HookReading[]): void {
    for (const r of readings) this.#latest.set(r.sensor, r);
    this.#recorded.push(...readings);
    if (this.#recorded.length > RUN.dryReadingsMax) this.#recorded.splice(0, this.#recorded.length - RUN.dryReadingsMax);
  }

  // ---- loading and attaching -----------------------------------------------------------------

  /** A program held here, or loaded from the cluster KV and verified here. */
  #load(name: string): Promise<Loaded> {
    const held = this.#programs.get(name);
    if (held !== undefined) return Promise.resolve(held);
    const loading = this.#loading.get(name);
    if (loading !== undefined) return loading;
    const ports = this.#portsOrThrow();
    const promise = (async () => {
      const raw = this.#ctx.services.kv?.valueLocal(PROGRAM_KEY_PREFIX + name);
      if (raw === undefined) throw new ProgramError(`no program ${JSON.stringify(name.slice(0, 48))} (ps lists them)`);
      const source = fromUtf8.decode(raw);
      const read = readProgram(source);
      const report = await ports.verifySource(source);
      if (!read.ok || !report.ok || report.js === undefined) throw new ProgramError(`${name}: the cluster's copy does not verify here: ${failures(report).join("; ")}`);
      const loaded = newLoaded(read.value.manifest, source, report.js, report.timings.totalMs);
      this.#programs.set(name, loaded);
      return loaded;
    })();
    this.#loading.set(name, promise);
    const clear = (): void => {
      this.#loading.delete(name);
    };
    promise.then(clear, clear);
    return promise;
  }

  #attach(p: Loaded): void {
    p.attached = true;
    p.nextDueMs = this.#ctx.clock.nowMs() + (p.manifest.periodMs ?? 10_000);
    if (p.manifest.hook.kind === "topic") {
      const topic = p.manifest.hook.topic ?? "";
      p.subscription = this.#ctx.services.topics?.subscribe(topic);
      if (p.subscription === undefined) p.logs.push(`error no subscription left for topic ${topic}`);
    }
    this.#saveAttached();
  }

  #saveAttached(): void {
    const names = [...this.#programs.values()].filter((p) => p.attached).map((p) => p.manifest.name);
    this.#ctx.persist([{ key: ATTACHED_KEY, value: utf8.encode(JSON.stringify(names)) }], true);
  }

  #kvPut(key: string, value: Uint8Array): Promise<string> {
    const kv = this.#ctx.services.kv;
    if (kv === undefined) return Promise.resolve("no-kv");
    return new Promise((resolve) => kv.put(key, value, (answer) => resolve(answer.code)));
  }

  #kvDelete(key: string): Promise<string> {
    const kv = this.#ctx.services.kv;
    if (kv === undefined) return Promise.resolve("no-kv");
    return new Promise((resolve) => kv.delete(key, (answer) => resolve(answer.code)));
  }

  #portsOrThrow(): EvolvePorts {
    if (this.#ports === undefined) throw new ProgramError("this node has no sandbox (programs run on real nodes: pk node)");
    return this.#ports;
  }
}

function newLoaded(manifest: Manifest, source: string, js: string, verifyMs: number): Loaded {
  return {
    manifest, source, js, verifyMs, logs: [], overlay: new Map(), attached: false, nextDueMs: 0, running: false, subscription: undefined,
    stats: { runs: 0, failures: {}, gasTotal: 0, gasLast: 0, memoryPeak: 0, outputBytes: 0, lastError: undefined, lastMs: 0, kvWritesFailed: 0 },
  };
}

function failed(kind: RunFailure, message: string): RunOutcome {
  return { ok: false, error: { kind, message }, effects: NO_EFFECTS, logs: [], gas: 0, memoryBytes: 0, outputBytes: 0, ms: 0 };
}
