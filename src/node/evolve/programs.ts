// Programs on a node (issues 15, 16; docs/protocols/programs.md, rollout.md): verified TypeScript
// attached to the kernel's hooks and run in the sandbox, off the event loop (EvolvePorts: the
// verifier's thread and the sandbox's worker).
//
// Where things live:
//   - a program's stable version, cluster-wide, in the Raft KV under `prog/NAME`: every node runs
//     it on its hook (a guarded task program, `pguard/NAME`, runs only under its guard); every node
//     verifies a source itself before it runs it (it never runs what another node compiled);
//   - a new version under rollout in `psrc/NAME`, with its signed record in `rollout/NAME`: the
//     canary nodes run it instead of the stable one until the leader promotes or rolls it back
//     (rollouts.ts). A node keeps serving the version it runs until the one it should run is
//     verified and loaded, so no call ever finds no program;
//   - its KV namespace in the Raft KV under `pns/NAME/`: replicated, it moves with the program;
//   - its folder in this node's store (`pfile/NAME/PATH`).
//
// A run is a pure function of its request (core/evolve/run.ts): the program reads a snapshot cut
// to its grants, and its writes come back as effects, checked again here and then applied. KV
// writes go through Raft; until they are applied here an overlay keeps them, so the next run reads
// its own writes.
import { checkHookResult, type HookReading } from "../../core/evolve/capabilities.ts";
import { checkSuccessor, hookName, readProgram, type Manifest } from "../../core/evolve/manifest.ts";
import { checkEffects, NO_EFFECTS, topicGranted, type RunArg, type RunFailure, type RunOutcome, type RunRequest, type RunState, type RunTopicRow } from "../../core/evolve/run.ts";
import { failures, type VerifyReport } from "../../core/evolve/verdict.ts";
import { encodeHealth, ROLLOUT_DEFAULTS, type ProgramHealth, type RolloutConfig } from "../../core/evolve/rollout.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { EvolvePorts, StoreWrite } from "../ports.ts";
import type { SubsystemContext } from "../subsystem-context.ts";
import { CANDIDATE_PREFIX, HEALTH_TOPIC, ROLLOUT_PREFIX, Rollouts, sourceHash, type RolloutOptions } from "./rollouts.ts";

export const PROGRAM_KEY_PREFIX = "prog/";
export const NAMESPACE_PREFIX = "pns/";
export const GUARD_PREFIX = "pguard/";
const FILE_PREFIX = "pfile/";
const RUN = LIMITS.evolve.run;
/** How often a node looks at the cluster's programs and rollouts, and publishes its programs' health. */
const SYNC_EVERY_MS = 250;
const HEALTH_EVERY_MS = 1_000;
/** During a rollout: how often a program's probe() runs, and a prefilter's held-out accuracy is measured. */
const PROBE_EVERY_MS = 1_000;
const ACCURACY_EVERY_MS = 3_000;
/** Held-out examples a prefilter's accuracy is measured on. */
const ACCURACY_EXAMPLES = 256;

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
  /** SHA-256 of the source's UTF-8, hex: what rollout records name. */
  readonly hash: string;
  /** When this node began running this version. */
  readonly sinceMs: number;
  /** Its probe() (runs, failures, time); exported undefined until tried, false when it has none. */
  readonly probe: { runs: number; failed: number; msSum: number; exported: boolean | undefined; dueMs: number };
  probeRunning: boolean;
  accuracy: { with: number; without: number } | null;
  accuracyDueMs: number;
  accuracyRunning: boolean;
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
  /** "canary" while this node runs a version under rollout; "stable" otherwise. */
  readonly track: "canary" | "stable";
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
  /** The version of each program this node runs now. */
  readonly #programs = new Map<string, Loaded>();
  /** Programs being loaded (verified here first), by name, with the source hash being loaded. */
  readonly #loading = new Map<string, { hash: string; promise: Promise<Loaded> }>();
  /** New versions under rollout, verified and loaded here before this node is to run them. */
  readonly #prepared = new Map<string, Loaded>();
  /** Programs loaded to run once (`exec`, a guard) that this node does not run on a hook. */
  readonly #loose = new Map<string, Loaded>();
  /** The newest reading of each sensor this node saw (the prefilter's recorded data too). */
  readonly #latest = new Map<string, HookReading>();
  /** Recent readings, for dry runs on recorded data. */
  readonly #recorded: HookReading[] = [];
  /** The last value the prefilter kept, per sensor: a dropped reading is replaced by it. */
  readonly #held = new Map<string, number>();
  readonly prefilterStats: PrefilterStats = { calls: 0, readings: 0, dropped: 0, failed: 0, program: undefined };
  readonly rollouts: Rollouts;
  /** Sources whose verification failed here, by hash: not tried again every sync. */
  readonly #refusedHashes = new Map<string, string>();
  /** Source hashes computed, by the KV's value object (unchanged values are the same object). */
  readonly #hashes = new WeakMap<Uint8Array, string>();
  #syncAtMs = 0;
  #healthAtMs = 0;
  #audit: (step: string, text: string) => void = () => undefined;

  constructor(ctx: SubsystemContext, config: RolloutConfig = ROLLOUT_DEFAULTS) {
    this.#ctx = ctx;
    this.#ports = ctx.evolve;
    this.rollouts = new Rollouts(ctx, config, (step, text) => this.#audit(step, text));
  }

  /** Where rollout steps are written (the evolve log). */
  set audit(write: (step: string, text: string) => void) {
    this.#audit = write;
  }

  get available(): boolean {
    return this.#ports !== undefined;
  }

  start(): void {
    // The cluster's programs are loaded by the first sync (tick), from the consensus store.
  }

  stop(): void {
    for (const p of this.#programs.values()) p.subscription?.close();
  }

  list(): ProgramView[] {
    return [...this.#programs.values()].map((p) => ({
      name: p.manifest.name, version: p.manifest.version, hook: hookName(p.manifest.hook), attached: p.attached, stats: p.stats, limits: p.manifest.limits, logs: p.logs,
      track: this.#track(p.manifest.name) === "candidate" ? "canary" : "stable",
    }));
  }

  /** Verifies a program's source; the report says every rule's verdict. */
  verify(source: string): Promise<VerifyReport> {
    return this.#portsOrThrow().verifySource(source);
  }

  /**
   * Verifies a program, runs it once on recorded data (the dry run: effects dropped), and — unless
   * `dryRun` — starts its rollout: this node (and a share of the core nodes) runs it as the canary
   * at once; the leader promotes it everywhere or rolls it back after the window.
   */
  async deploy(source: string, options: { readonly dryRun?: boolean } & RolloutOptions = {}): Promise<DeployOutcome> {
    const ports = this.#portsOrThrow();
    if (this.#ctx.members.self.role !== "core") throw new ProgramError("a contributor deploys no programs (its KV writes would be refused)");
    const read = readProgram(source);
    const report = await ports.verifySource(source);
    const refused = (reason: string, dry?: RunOutcome): DeployOutcome => ({ ok: false, report, dryRun: dry, reason, manifest: read.ok ? read.value.manifest : undefined });
    if (!report.ok || report.js === undefined || !read.ok) return refused(`verification failed: ${failures(report).join("; ") || "manifest"}`);
    const manifest = read.value.manifest;
    const name = manifest.name;
    // Versions only go up: past the stable version, and past any version rolled out before.
    const stableBytes = this.#ctx.services.kv?.valueLocal(PROGRAM_KEY_PREFIX + name);
    const stable = stableBytes === undefined ? undefined : readProgram(fromUtf8.decode(stableBytes));
    const held = this.rollouts.held(name);
    const successor = checkSuccessor(stable?.ok === true ? stable.value.manifest : this.#programs.get(name)?.manifest, manifest)
      ?? (held === undefined ? undefined : checkSuccessor({ ...manifest, version: held.record.version }, manifest));
    if (successor !== undefined) return refused(successor);
    if (held?.record.phase === "canary") return refused(`${name} ${held.record.version} is in its canary now (rollout status ${name}); promote it or roll it back first`);
    if (stable === undefined && this.#programs.size >= LIMITS.evolve.programsMax) return refused(`this node holds ${LIMITS.evolve.programsMax} programs already`);
    const sourceBytes = utf8.encode(source);
    const loaded = newLoaded(manifest, source, sourceHash(sourceBytes), report.js, report.timings.totalMs, this.#ctx.clock.nowMs());
    const dry = await this.#runOnce(loaded, this.#dryArg(manifest), { dry: true });
    if (!dry.ok) return refused(`the dry run failed: ${dry.error?.kind ?? "?"}: ${dry.error?.message ?? ""}`, dry);
    if (options.dryRun === true) return { ok: true, report, dryRun: dry, reason: undefined, manifest };
    const from = stableBytes === undefined || stable?.ok !== true ? null : { version: stable.value.manifest.version, hash: this.#hash(stableBytes) };
    const started = await this.rollouts.start({ name, version: manifest.version, source: sourceBytes, from }, held?.bytes, options);
    if (!started.ok) return refused(started.reason, dry);
    // The canary (this node among them) runs it from now on; its dry run counts as its first run.
    this.#swap(loaded);
    this.#ctx.emit("program-deployed", { program: name, version: manifest.version, hook: hookName(manifest.hook), canary: started.record.canary.length });
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

  /** Removes a program from the cluster: every node stops it at its next sync (its KV namespace stays for a later version). */
  async kill(name: string): Promise<string> {
    const p = this.#programs.get(name);
    const code = await this.rollouts.kv((kv, done) => kv.delete(PROGRAM_KEY_PREFIX + name, done));
    if (p === undefined && code !== "ok") throw new ProgramError(`no program ${JSON.stringify(name.slice(0, 48))} here, and the cluster's could not be removed: ${code}`);
    for (const key of [CANDIDATE_PREFIX + name, ROLLOUT_PREFIX + name, GUARD_PREFIX + name]) await this.rollouts.kv((kv, done) => kv.delete(key, done));
    if (p !== undefined) this.#remove(name);
    this.#loose.delete(name);
    this.#prepared.delete(name);
    this.#ctx.emit("program-killed", { program: name });
    this.#audit("kill", `${name}${p === undefined ? "" : ` ${p.manifest.version}`}: stopped and removed`);
    return code === "ok" ? `${name}: stopped and removed` : `${name}: stopped here; removing it from the cluster failed (${code})`;
  }

  /** Whether a program of that name is held here or deployed in the cluster. */
  exists(name: string): boolean {
    const kv = this.#ctx.services.kv;
    return this.#programs.has(name) || kv?.valueLocal(PROGRAM_KEY_PREFIX + name) !== undefined || kv?.valueLocal(CANDIDATE_PREFIX + name) !== undefined;
  }

  /** The guarded-task line for a task program: `guard NAME SECONDS exec NAME`. */
  async guardArgs(name: string): Promise<string[]> {
    const p = await this.#load(name);
    if (p.manifest.hook.kind !== "task") throw new ProgramError(`${name} is a ${hookName(p.manifest.hook)} program; only task programs are guarded`);
    // From now on the guard runs it (here, or on a survivor): no node runs it on its own period.
    const code = await this.rollouts.kv((kv, done) => kv.put(GUARD_PREFIX + name, utf8.encode("1"), done));
    if (code !== "ok") throw new ProgramError(`${name}: could not mark it guarded in the cluster KV (${code})`);
    p.attached = false;
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
    if (now >= this.#syncAtMs) {
      this.#syncAtMs = now + SYNC_EVERY_MS;
      this.#sync();
    }
    this.rollouts.tick();
    if (now >= this.#healthAtMs) {
      this.#healthAtMs = now + HEALTH_EVERY_MS;
      this.#publishHealth(now);
      this.rollouts.publishModel();
    }
    for (const p of this.#programs.values()) {
      this.#watch(p, now);
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

  // ---- loading, attaching and the cluster's view -----------------------------------------------

  /** A program held here, or loaded from the cluster KV and verified here (for `exec` and `guard`). */
  #load(name: string): Promise<Loaded> {
    const held = this.#programs.get(name);
    if (held !== undefined) return Promise.resolve(held);
    // Not run here: the stable version, or (a new program still in its canary elsewhere) the new one.
    const desired = this.#desired(name) ?? this.#candidate(name);
    if (desired === undefined) return Promise.reject(new ProgramError(`no program ${JSON.stringify(name.slice(0, 48))} (ps lists them)`));
    const loose = this.#loose.get(name);
    if (loose?.hash === desired.hash) return Promise.resolve(loose);
    return this.#verifyAndLoad(name, desired.source, desired.hash).then((loaded) => {
      this.#loose.set(name, loaded);
      while (this.#loose.size > LIMITS.evolve.programsMax) this.#loose.delete(this.#loose.keys().next().value as string);
      return loaded;
    });
  }

  /** The source this node should run for NAME: the canary's while it is one, else the stable one. */
  #desired(name: string): { source: Uint8Array; hash: string } | undefined {
    if (this.#track(name) === "candidate") return this.#candidate(name);
    const source = this.#ctx.services.kv?.valueLocal(PROGRAM_KEY_PREFIX + name);
    return source === undefined ? undefined : { source, hash: this.#hash(source) };
  }

  /** NAME's version under a trusted rollout, once this node's replica holds the source its record names. */
  #candidate(name: string): { source: Uint8Array; hash: string } | undefined {
    const held = this.rollouts.held(name);
    const source = this.#ctx.services.kv?.valueLocal(CANDIDATE_PREFIX + name);
    if (held === undefined || held.untrusted !== undefined || held.record.phase !== "canary" || source === undefined || this.#hash(source) !== held.record.hash) return undefined;
    return { source, hash: held.record.hash };
  }

  /** Whether this node runs NAME's canary (a trusted record in its canary phase names it). */
  #track(name: string): "candidate" | "stable" {
    const held = this.rollouts.held(name);
    return held !== undefined && held.untrusted === undefined && held.record.phase === "canary" && held.record.canary.includes(this.#ctx.id) ? "candidate" : "stable";
  }

  #verifyAndLoad(name: string, raw: Uint8Array, hash: string): Promise<Loaded> {
    const loading = this.#loading.get(name);
    if (loading !== undefined && loading.hash === hash) return loading.promise;
    const ports = this.#portsOrThrow();
    const promise = (async () => {
      const source = fromUtf8.decode(raw);
      const read = readProgram(source);
      const report = await ports.verifySource(source);
      if (!read.ok || !report.ok || report.js === undefined || read.value.manifest.name !== name) {
        const why = `${name}: the cluster's copy does not verify here: ${failures(report).join("; ") || "its manifest names another program"}`;
        if (this.#refusedHashes.size >= LIMITS.evolve.programsMax * 8) this.#refusedHashes.clear();
        this.#refusedHashes.set(hash, why);
        throw new ProgramError(why);
      }
      return newLoaded(read.value.manifest, source, hash, report.js, report.timings.totalMs, this.#ctx.clock.nowMs());
    })();
    this.#loading.set(name, { hash, promise });
    const clear = (): void => {
      if (this.#loading.get(name)?.promise === promise) this.#loading.delete(name);
    };
    promise.then(clear, clear);
    return promise;
  }

  /**
   * Brings the programs this node runs in line with the cluster's: each program's stable version,
   * or its canary where this node is one; a program removed from the cluster stops. A new version
   * replaces the old only once it is verified and loaded: until then the old one serves.
   */
  #sync(): void {
    const kv = this.#ctx.services.kv;
    if (kv === undefined) return;
    const names = new Set<string>();
    for (const key of kv.keysLocal(PROGRAM_KEY_PREFIX, LIMITS.evolve.programsMax)) names.add(key.slice(PROGRAM_KEY_PREFIX.length));
    for (const name of this.rollouts.names()) if (this.#track(name) === "candidate") names.add(name);
    for (const name of names) {
      const desired = this.#desired(name);
      const current = this.#programs.get(name);
      if (desired === undefined || current?.hash === desired.hash || this.#refusedHashes.has(desired.hash)) continue;
      const prepared = this.#prepared.get(name);
      if (prepared?.hash === desired.hash) {
        this.#prepared.delete(name);
        this.#swap(prepared);
        continue;
      }
      if (this.#loading.get(name)?.hash === desired.hash) continue;
      this.#verifyAndLoad(name, desired.source, desired.hash).then((loaded) => {
        // Still what this node should run? (A decision may have come while it was verified.)
        if (this.#desired(name)?.hash === loaded.hash && this.#programs.get(name)?.hash !== loaded.hash) this.#swap(loaded);
      }, (error: unknown) => {
        this.#ctx.emit("program-load-failed", { program: name, error: error instanceof Error ? error.message : String(error) });
      });
    }
    for (const name of [...this.#programs.keys()]) if (!names.has(name) && !this.#loading.has(name)) this.#remove(name);
    // A version in its canary elsewhere is verified and loaded here ahead of its promotion, so
    // that the switch, when it comes, is immediate.
    for (const name of this.rollouts.names()) {
      const candidate = this.#candidate(name);
      const prepared = this.#prepared.get(name);
      if (candidate === undefined) {
        if (prepared !== undefined && this.#desired(name)?.hash !== prepared.hash) this.#prepared.delete(name);
        continue;
      }
      if (this.#programs.get(name)?.hash === candidate.hash || prepared?.hash === candidate.hash || this.#refusedHashes.has(candidate.hash) || this.#loading.has(name)) continue;
      this.#verifyAndLoad(name, candidate.source, candidate.hash).then((loaded) => {
        this.#prepared.set(name, loaded);
      }, () => undefined);
    }
  }

  /** Makes `loaded` the version of its program this node runs: attached at once, the old one detached after. */
  #swap(loaded: Loaded): void {
    const name = loaded.manifest.name;
    const old = this.#programs.get(name);
    this.#programs.set(name, loaded);
    if (this.#ctx.services.kv?.valueLocal(GUARD_PREFIX + name) === undefined || loaded.manifest.hook.kind !== "task") this.#attach(loaded);
    old?.subscription?.close();
    if (old !== undefined && old.hash !== loaded.hash) {
      this.#ctx.emit("program-switched", { program: name, from: old.manifest.version, to: loaded.manifest.version });
    }
    this.#healthAtMs = 0;
  }

  #remove(name: string): void {
    const p = this.#programs.get(name);
    if (p === undefined) return;
    p.subscription?.close();
    p.attached = false;
    this.#programs.delete(name);
    this.#ctx.services.topics?.publish(HEALTH_TOPIC, `${this.#ctx.id}/${name}`, undefined);
    this.#ctx.emit("program-stopped", { program: name, version: p.manifest.version });
  }

  #attach(p: Loaded): void {
    p.attached = true;
    p.nextDueMs = this.#ctx.clock.nowMs() + (p.manifest.periodMs ?? 10_000);
    if (p.manifest.hook.kind === "topic") {
      const topic = p.manifest.hook.topic ?? "";
      p.subscription = this.#ctx.services.topics?.subscribe(topic);
      if (p.subscription === undefined) p.logs.push(`error no subscription left for topic ${topic}`);
    }
  }

  #hash(source: Uint8Array): string {
    let h = this.#hashes.get(source);
    if (h === undefined) {
      h = sourceHash(source);
      this.#hashes.set(source, h);
    }
    return h;
  }

  // ---- health: what the rollout judges ------------------------------------------------------

  /** Publishes, for each program this node runs, its health since it began running that version. */
  #publishHealth(now: number): void {
    const topics = this.#ctx.services.topics;
    if (topics === undefined) return;
    const loopDelayMs = this.#ctx.host?.sample().loopDelayP99Ms ?? 0;
    for (const p of this.#programs.values()) {
      const s = p.stats;
      const failed = Object.values(s.failures).reduce((a, b) => a + (b ?? 0), 0);
      const health: ProgramHealth = {
        node: this.#ctx.id, name: p.manifest.name, version: p.manifest.version, sinceMs: Math.floor(p.sinceMs), atMs: Math.floor(now),
        runs: s.runs, failures: failed, lastError: s.lastError === undefined ? null : s.lastError.slice(0, LIMITS.evolve.rollout.reasonCharsMax),
        gasAvg: s.runs === 0 ? 0 : s.gasTotal / s.runs, memoryPeak: s.memoryPeak, memoryLimit: p.manifest.limits.memoryBytes,
        probe: p.probe.exported === true ? { runs: p.probe.runs, failed: p.probe.failed, msAvg: p.probe.runs === 0 ? 0 : p.probe.msSum / p.probe.runs } : null,
        accuracy: p.accuracy, loopDelayMs: Number.isFinite(loopDelayMs) ? Math.max(0, loopDelayMs) : 0,
      };
      const error = topics.publish(HEALTH_TOPIC, `${this.#ctx.id}/${p.manifest.name}`, encodeHealth(health));
      if (error !== undefined) p.logs.push(`error health row: ${error}`);
    }
  }

  /** While a program is under rollout: its probe() and, for a prefilter, the Brain's held-out accuracy. */
  #watch(p: Loaded, now: number): void {
    const held = this.rollouts.held(p.manifest.name);
    if (held?.record.phase !== "canary") return;
    if (p.probe.exported !== false && now >= p.probe.dueMs && !p.probeRunning) {
      p.probe.dueMs = now + PROBE_EVERY_MS;
      p.probeRunning = true;
      void this.#runProbe(p).finally(() => {
        p.probeRunning = false;
      });
    }
    const brain = this.#ctx.services.brain;
    if (p.manifest.hook.kind === "sensor.prefilter" && brain !== undefined && now >= p.accuracyDueMs && !p.accuracyRunning) {
      p.accuracyDueMs = now + ACCURACY_EVERY_MS;
      p.accuracyRunning = true;
      brain.prefilterAccuracy(ACCURACY_EXAMPLES, (examples) => this.#filterExamples(p, examples)).then((accuracy) => {
        if (accuracy !== undefined) p.accuracy = accuracy;
      }, (error: unknown) => {
        p.logs.push(`error accuracy: ${error instanceof Error ? error.message : String(error)}`);
      }).finally(() => {
        p.accuracyRunning = false;
      });
    }
  }

  async #runProbe(p: Loaded): Promise<void> {
    const m = p.manifest;
    const request: RunRequest = { program: `${m.name}@${m.version}`, js: p.js, hook: "probe", arg: { kind: "probe" }, grants: m.capabilities, limits: m.limits, state: this.#state(p) };
    let outcome: RunOutcome;
    try {
      outcome = await this.#portsOrThrow().run(request);
    } catch (error) {
      outcome = failed("host", error instanceof Error ? error.message : String(error));
    }
    if (p.probe.exported === undefined) {
      if (!outcome.ok && outcome.error?.kind === "contract" && /exports no function probe/.test(outcome.error.message)) {
        p.probe.exported = false;
        return;
      }
      p.probe.exported = true;
    }
    const verdict = outcome.ok ? checkHookResult("probe", outcome.result, { outputBytesMax: m.limits.outputBytes }) : undefined;
    p.probe.runs++;
    p.probe.msSum += outcome.ms;
    if (!outcome.ok || verdict !== undefined || (outcome.result as { ok?: unknown } | undefined)?.ok !== true) p.probe.failed++;
  }

  /** Held-out examples' readings through a prefilter program, as the hook does it (a dropped reading takes the last kept value). */
  async #filterExamples(p: Loaded, examples: readonly Float32Array[]): Promise<Float32Array[]> {
    const readings: HookReading[] = [];
    examples.forEach((values, i) => {
      SENSORS.slice(0, values.length).forEach((sensor, j) => readings.push({ sensor, value: values[j] as number, at: i }));
    });
    const m = p.manifest;
    const request: RunRequest = { program: `${m.name}@${m.version}`, js: p.js, hook: "sensor.prefilter", arg: { kind: "sensor.prefilter", readings }, grants: m.capabilities, limits: m.limits, state: this.#state(p) };
    const outcome = await this.#portsOrThrow().run(request);
    const contract = outcome.ok ? checkHookResult("sensor.prefilter", outcome.result, { readings, outputBytesMax: m.limits.outputBytes }) : "failed";
    if (contract !== undefined) return [...examples];
    const kept = new Map((outcome.result as HookReading[]).map((r) => [`${r.sensor}@${r.at}`, r.value]));
    const last = new Map<string, number>();
    return examples.map((values, i) => Float32Array.from(values, (v, j) => {
      const sensor = SENSORS[j] as string;
      const k = kept.get(`${sensor}@${i}`);
      if (k !== undefined) {
        last.set(sensor, k);
        return k;
      }
      return last.get(sensor) ?? 0;
    }));
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

function newLoaded(manifest: Manifest, source: string, hash: string, js: string, verifyMs: number, nowMs: number): Loaded {
  return {
    manifest, source, hash, js, verifyMs, sinceMs: nowMs, logs: [], overlay: new Map(), attached: false, nextDueMs: 0, running: false, subscription: undefined,
    probe: { runs: 0, failed: 0, msSum: 0, exported: undefined, dueMs: 0 }, probeRunning: false, accuracy: null, accuracyDueMs: 0, accuracyRunning: false,
    stats: { runs: 0, failures: {}, gasTotal: 0, gasLast: 0, memoryPeak: 0, outputBytes: 0, lastError: undefined, lastMs: 0, kvWritesFailed: 0 },
  };
}

function failed(kind: RunFailure, message: string): RunOutcome {
  return { ok: false, error: { kind, message }, effects: NO_EFFECTS, logs: [], gas: 0, memoryBytes: 0, outputBytes: 0, ms: 0 };
}
