// Rollouts (issue 16; docs/protocols/rollout.md, ADR 021): a program's new version runs first as a
// canary on a few nodes for a window, its health is compared with the version it replaces, and it
// is promoted everywhere or rolled back, automatically.
//
// Sans-IO: the record's format and signed bytes, the health rows nodes publish, and judge(), the
// decision from a record, the health rows and the time. The node (src/node/evolve/rollouts.ts)
// keeps records in the Raft KV, publishes health on a gossip topic and writes the decisions.
import { LIMITS } from "../util/limits.ts";

export type RolloutPhase = "canary" | "promoted" | "rolled-back";

/** One rollout, as the consensus store keeps it under `rollout/NAME`. */
export interface RolloutRecord {
  readonly name: string;
  readonly version: string;
  /** SHA-256 of the new version's source, hex. */
  readonly hash: string;
  /** The version it replaces, with its source's hash; null for a new program. */
  readonly from: { readonly version: string; readonly hash: string } | null;
  /** The nodes that run the new version during the window. */
  readonly canary: readonly string[];
  readonly windowMs: number;
  readonly startedMs: number;
  /** The core node that approved it (deployed it), and its Ed25519 signature over signedBody(). */
  readonly approver: string;
  readonly sig: string;
  readonly phase: RolloutPhase;
  /** Set once promoted or rolled back: when, by which node, why. */
  readonly decidedMs?: number;
  readonly decidedBy?: string;
  readonly reason?: string;
}

/** What one node measured of the program version it runs, since it began running it. */
export interface ProgramHealth {
  readonly node: string;
  readonly name: string;
  readonly version: string;
  readonly sinceMs: number;
  readonly atMs: number;
  readonly runs: number;
  readonly failures: number;
  /** The newest failure, "kind: message" (≤ 200 characters). */
  readonly lastError: string | null;
  readonly gasAvg: number;
  readonly memoryPeak: number;
  readonly memoryLimit: number;
  /** The program's own probe() (null when it exports none). */
  readonly probe: { readonly runs: number; readonly failed: number; readonly msAvg: number } | null;
  /** A sensor prefilter's effect on the Brain's held-out accuracy (null otherwise, or no model). */
  readonly accuracy: { readonly with: number; readonly without: number } | null;
  /** The node's event-loop delay (p99, ms): its vital signs while it runs this version. */
  readonly loopDelayMs: number;
}

export interface RolloutConfig {
  /** How long a canary runs before it may be promoted. */
  readonly windowMs: number;
  /** Runs of the new version (its hook's and its probe's, on every canary) needed to promote. */
  readonly minRuns: number;
  /** After this many windows without minRuns, the new version is promoted on what was seen. */
  readonly patienceWindows: number;
  /** Failed runs that, with a failure rate above the old version's by errorRateMargin, roll back. */
  readonly failuresMin: number;
  readonly errorRateMargin: number;
  /** Memory: the new version's peak over the old's times memoryFactor and by memoryMarginBytes. */
  readonly memoryFactor: number;
  readonly memoryMarginBytes: number;
  /** Probe: slower than the old version's by probeFactor and probeMarginMs (or failing). */
  readonly probeFactor: number;
  readonly probeMarginMs: number;
  /** Held-out accuracy a sensor prefilter may cost beyond what the old version costs (absolute, 0–1). */
  readonly accuracyDropMax: number;
  /** A canary node's loop delay over the others' median by this factor and loopDelayMarginMs. */
  readonly loopDelayFactor: number;
  readonly loopDelayMarginMs: number;
  /** The canary: this share of the live core nodes (at least one: the deploying node). */
  readonly canaryShare: number;
}

export const ROLLOUT_DEFAULTS: RolloutConfig = {
  windowMs: 20_000,
  minRuns: 5,
  patienceWindows: 4,
  failuresMin: 2,
  errorRateMargin: 0.1,
  memoryFactor: 2,
  memoryMarginBytes: 1024 * 1024,
  probeFactor: 3,
  probeMarginMs: 20,
  accuracyDropMax: 0.05,
  loopDelayFactor: 4,
  loopDelayMarginMs: 200,
  canaryShare: 0,
};

const R = LIMITS.evolve.rollout;
const NAME = /^[a-z][a-z0-9-]{0,47}$/;
const VERSION = /^\d{1,6}\.\d{1,6}\.\d{1,6}$/;
const NODE = /^[0-9a-f]{16}$/;
const HASH = /^[0-9a-f]{64}$/;
const SIG = /^[A-Za-z0-9+/]{86}==$/;
const PHASES: readonly RolloutPhase[] = ["canary", "promoted", "rolled-back"];
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The bytes the approver signs: every field that says what runs where, none that a decision changes. */
export function signedBody(r: Omit<RolloutRecord, "sig" | "phase" | "decidedMs" | "decidedBy" | "reason">): Uint8Array {
  return utf8.encode(JSON.stringify(["p-kernel/rollout/v1", r.name, r.version, r.hash, r.from, r.canary, r.windowMs, r.startedMs, r.approver]));
}

export function encodeRecord(r: RolloutRecord): Uint8Array {
  return utf8.encode(JSON.stringify(r));
}

type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const whole = (v: unknown, max: number): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= max;
const finite = (v: unknown, max: number): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0 && v <= max;
const str = (v: unknown, re: RegExp): v is string => typeof v === "string" && re.test(v);

function parse(bytes: Uint8Array, max: number): Decoded<Record<string, unknown>> {
  if (bytes.length > max) return { ok: false, error: `over ${max} bytes` };
  let value: unknown;
  try {
    value = JSON.parse(fromUtf8.decode(bytes));
  } catch {
    return { ok: false, error: "not JSON" };
  }
  return isObject(value) ? { ok: true, value } : { ok: false, error: "not an object" };
}

/** A record from the store; anything malformed is refused with the field at fault. */
export function decodeRecord(bytes: Uint8Array): Decoded<RolloutRecord> {
  const p = parse(bytes, R.recordBytesMax);
  if (!p.ok) return p;
  const v = p.value;
  const bad = (field: string): Decoded<RolloutRecord> => ({ ok: false, error: `rollout record: bad ${field}` });
  const known = new Set(["name", "version", "hash", "from", "canary", "windowMs", "startedMs", "approver", "sig", "phase", "decidedMs", "decidedBy", "reason"]);
  for (const k of Object.keys(v)) if (!known.has(k)) return bad(`field ${JSON.stringify(k.slice(0, 32))}`);
  if (!str(v.name, NAME)) return bad("name");
  if (!str(v.version, VERSION)) return bad("version");
  if (!str(v.hash, HASH)) return bad("hash");
  let from: RolloutRecord["from"] = null;
  if (v.from !== null) {
    if (!isObject(v.from) || !str(v.from.version, VERSION) || !str(v.from.hash, HASH) || Object.keys(v.from).length !== 2) return bad("from");
    from = { version: v.from.version, hash: v.from.hash };
  }
  if (!Array.isArray(v.canary) || v.canary.length === 0 || v.canary.length > R.canaryNodesMax || !v.canary.every((c) => str(c, NODE))) return bad("canary");
  if (!whole(v.windowMs, R.windowMsMax) || v.windowMs < 1) return bad("windowMs");
  if (!whole(v.startedMs, Number.MAX_SAFE_INTEGER)) return bad("startedMs");
  if (!str(v.approver, NODE)) return bad("approver");
  if (!str(v.sig, SIG)) return bad("sig");
  if (!PHASES.includes(v.phase as RolloutPhase)) return bad("phase");
  const decided = v.decidedMs !== undefined || v.decidedBy !== undefined || v.reason !== undefined;
  if (decided) {
    if (!whole(v.decidedMs, Number.MAX_SAFE_INTEGER) || !str(v.decidedBy, NODE) || typeof v.reason !== "string" || v.reason.length > R.reasonCharsMax) return bad("decision");
  }
  if ((v.phase === "canary") === decided) return bad("phase (a canary is undecided; a decided rollout says who, when and why)");
  return {
    ok: true,
    value: {
      name: v.name, version: v.version, hash: v.hash, from, canary: v.canary as string[], windowMs: v.windowMs, startedMs: v.startedMs,
      approver: v.approver, sig: v.sig, phase: v.phase as RolloutPhase,
      ...(decided ? { decidedMs: v.decidedMs as number, decidedBy: v.decidedBy as string, reason: v.reason as string } : {}),
    },
  };
}

export function encodeHealth(h: ProgramHealth): Uint8Array {
  return utf8.encode(JSON.stringify(h));
}

/** A health row from the gossip topic; anything malformed is refused. */
export function decodeHealth(bytes: Uint8Array): Decoded<ProgramHealth> {
  const p = parse(bytes, R.healthBytesMax);
  if (!p.ok) return p;
  const v = p.value;
  const bad = (field: string): Decoded<ProgramHealth> => ({ ok: false, error: `health row: bad ${field}` });
  if (!str(v.node, NODE)) return bad("node");
  if (!str(v.name, NAME)) return bad("name");
  if (!str(v.version, VERSION)) return bad("version");
  const big = Number.MAX_SAFE_INTEGER;
  for (const f of ["sinceMs", "atMs", "runs", "failures", "memoryPeak", "memoryLimit"] as const) if (!whole(v[f], big)) return bad(f);
  if (!finite(v.gasAvg, big)) return bad("gasAvg");
  if (!finite(v.loopDelayMs, big)) return bad("loopDelayMs");
  if (v.lastError !== null && (typeof v.lastError !== "string" || v.lastError.length > R.reasonCharsMax)) return bad("lastError");
  let probe: ProgramHealth["probe"] = null;
  if (v.probe !== null) {
    const q = v.probe;
    if (!isObject(q) || !whole(q.runs, big) || !whole(q.failed, big) || !finite(q.msAvg, big)) return bad("probe");
    probe = { runs: q.runs, failed: q.failed, msAvg: q.msAvg };
  }
  let accuracy: ProgramHealth["accuracy"] = null;
  if (v.accuracy !== null) {
    const a = v.accuracy;
    if (!isObject(a) || !finite(a.with, 1) || !finite(a.without, 1)) return bad("accuracy");
    accuracy = { with: a.with, without: a.without };
  }
  return {
    ok: true,
    value: {
      node: v.node, name: v.name, version: v.version, sinceMs: v.sinceMs as number, atMs: v.atMs as number, runs: v.runs as number,
      failures: v.failures as number, lastError: v.lastError as string | null, gasAvg: v.gasAvg, memoryPeak: v.memoryPeak as number,
      memoryLimit: v.memoryLimit as number, probe, accuracy, loopDelayMs: v.loopDelayMs,
    },
  };
}

export type Verdict =
  | { readonly verdict: "wait"; readonly reason: string }
  | { readonly verdict: "promote"; readonly reason: string }
  | { readonly verdict: "rollback"; readonly reason: string };

interface Totals {
  nodes: number;
  runs: number;
  failures: number;
  lastError: string | null;
  memoryPeak: number;
  memoryLimit: number;
  probeRuns: number;
  probeFailed: number;
  probeMs: number;
  accuracy: { with: number; without: number } | null;
  loopDelays: number[];
}

function totals(rows: readonly ProgramHealth[]): Totals {
  const t: Totals = { nodes: rows.length, runs: 0, failures: 0, lastError: null, memoryPeak: 0, memoryLimit: 0, probeRuns: 0, probeFailed: 0, probeMs: 0, accuracy: null, loopDelays: [] };
  let accWith = 0, accWithout = 0, accN = 0, probeMsSum = 0;
  for (const h of rows) {
    t.runs += h.runs;
    t.failures += h.failures;
    if (h.lastError !== null) t.lastError = h.lastError;
    t.memoryPeak = Math.max(t.memoryPeak, h.memoryPeak);
    t.memoryLimit = Math.max(t.memoryLimit, h.memoryLimit);
    t.loopDelays.push(h.loopDelayMs);
    if (h.probe !== null) {
      t.probeRuns += h.probe.runs;
      t.probeFailed += h.probe.failed;
      probeMsSum += h.probe.msAvg * h.probe.runs;
    }
    if (h.accuracy !== null) {
      accWith += h.accuracy.with;
      accWithout += h.accuracy.without;
      accN++;
    }
  }
  t.probeMs = t.probeRuns === 0 ? 0 : probeMsSum / t.probeRuns;
  t.accuracy = accN === 0 ? null : { with: accWith / accN, without: accWithout / accN };
  return t;
}

const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};
const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const mib = (x: number): string => `${(x / (1024 * 1024)).toFixed(1)} MiB`;

/**
 * The decision on a canary: roll back at the first sign the new version is worse than the one it
 * replaces (or, for a new program, than running without it), promote once the window is over and
 * enough was seen, wait otherwise. `health` is every node's newest row; only rows of this rollout's
 * versions taken since it started count.
 */
export function judge(record: RolloutRecord, health: readonly ProgramHealth[], nowMs: number, config: RolloutConfig = ROLLOUT_DEFAULTS): Verdict {
  if (record.phase !== "canary") return { verdict: "wait", reason: `already ${record.phase}` };
  const canary = new Set(record.canary);
  const fresh = health.filter((h) => h.name === record.name && h.atMs >= record.startedMs);
  const cand = totals(fresh.filter((h) => canary.has(h.node) && h.version === record.version && h.sinceMs >= record.startedMs - 1_000));
  const baseRows = record.from === null ? [] : fresh.filter((h) => !canary.has(h.node) && h.version === record.from?.version);
  const base = totals(baseRows);
  const hasBase = base.nodes > 0;
  const others = fresh.filter((h) => !canary.has(h.node)).map((h) => h.loopDelayMs);

  // Errors: failed runs (any kind: throw, gas, memory, wall, contract, ...), above the old rate.
  const candRate = cand.runs === 0 ? 0 : cand.failures / cand.runs;
  const baseRate = base.runs === 0 ? 0 : base.failures / base.runs;
  if (cand.failures >= config.failuresMin && candRate > baseRate + config.errorRateMargin) {
    return { verdict: "rollback", reason: `errors: ${cand.failures} of ${cand.runs} runs failed (${(cand.lastError ?? "?").slice(0, 120)})${hasBase ? `; ${record.from?.version ?? ""} failed ${base.failures} of ${base.runs}` : ""}` };
  }
  // Memory: well over what the old version needs, or (new program) over half its own limit.
  const memBound = hasBase && base.runs > 0 ? Math.max(base.memoryPeak * config.memoryFactor, base.memoryPeak + config.memoryMarginBytes) : cand.memoryLimit / 2;
  if (cand.runs > 0 && cand.memoryLimit > 0 && cand.memoryPeak > memBound) {
    return { verdict: "rollback", reason: `memory: peak ${mib(cand.memoryPeak)}, over ${mib(memBound)} (${hasBase ? `${record.from?.version ?? ""} peaked at ${mib(base.memoryPeak)}` : `half its ${mib(cand.memoryLimit)} limit`})` };
  }
  // The program's own probe: failing, or much slower than the old version's.
  if (cand.probeFailed >= config.failuresMin) return { verdict: "rollback", reason: `probe: ${cand.probeFailed} of ${cand.probeRuns} probes failed` };
  if (cand.probeRuns > 0 && hasBase && base.probeRuns > 0 && cand.probeMs > base.probeMs * config.probeFactor + config.probeMarginMs) {
    return { verdict: "rollback", reason: `probe slowed: ${cand.probeMs.toFixed(1)} ms against ${base.probeMs.toFixed(1)} ms for ${record.from?.version ?? ""}` };
  }
  // A sensor prefilter: what it costs the Brain's held-out accuracy (with it against without it, on
  // the same node's data: nodes' data differ), against what the old version costs on its nodes.
  if (cand.accuracy !== null) {
    const cost = cand.accuracy.without - cand.accuracy.with;
    const baseCost = base.accuracy === null ? 0 : Math.max(0, base.accuracy.without - base.accuracy.with);
    if (cost > baseCost + config.accuracyDropMax) {
      return { verdict: "rollback", reason: `accuracy: held-out ${pct(cand.accuracy.with)} with it, ${pct(cand.accuracy.without)} without${base.accuracy === null ? "" : `; ${record.from?.version ?? ""} costs ${(100 * baseCost).toFixed(1)} points`}` };
    }
  }
  // Vital signs: a canary node's event loop stalls far more than the others'.
  const delay = Math.max(0, ...cand.loopDelays);
  if (others.length > 0 && delay > median(others) * config.loopDelayFactor + config.loopDelayMarginMs) {
    return { verdict: "rollback", reason: `vital signs: the canary's event-loop delay ${delay.toFixed(0)} ms, the others' median ${median(others).toFixed(0)} ms` };
  }
  const elapsed = nowMs - record.startedMs;
  if (elapsed < record.windowMs) return { verdict: "wait", reason: `canary for ${Math.ceil((record.windowMs - elapsed) / 1000)} s more (${cand.runs} runs, ${cand.failures} failed)` };
  const seen = cand.runs + cand.probeRuns;
  if (seen < config.minRuns && elapsed < record.windowMs * config.patienceWindows) return { verdict: "wait", reason: `${seen} of ${config.minRuns} runs seen` };
  const accuracy = cand.accuracy === null ? "" : `, held-out ${pct(cand.accuracy.with)} (without ${pct(cand.accuracy.without)})`;
  return { verdict: "promote", reason: `healthy for ${Math.round(elapsed / 1000)} s: ${cand.runs} runs, ${cand.failures} failed, memory ${mib(cand.memoryPeak)}${cand.probeRuns > 0 ? `, probe ${cand.probeMs.toFixed(1)} ms` : ""}${accuracy}${seen < config.minRuns ? ` (only ${seen} runs seen in ${config.patienceWindows} windows)` : ""}` };
}

/** One node's check of the current model version: its held-out accuracy there, against the version before. */
export interface ModelHealth {
  readonly node: string;
  readonly version: number;
  readonly tag: string;
  readonly accuracy: number;
  readonly previousVersion: number;
  readonly previousAccuracy: number | null;
  readonly atMs: number;
}

export function encodeModelHealth(h: ModelHealth): Uint8Array {
  return utf8.encode(JSON.stringify(h));
}

export function decodeModelHealth(bytes: Uint8Array): Decoded<ModelHealth> {
  const p = parse(bytes, R.healthBytesMax);
  if (!p.ok) return p;
  const v = p.value;
  const bad = (field: string): Decoded<ModelHealth> => ({ ok: false, error: `model health row: bad ${field}` });
  if (!str(v.node, NODE)) return bad("node");
  if (!whole(v.version, 0xffff_ffff) || !whole(v.previousVersion, 0xffff_ffff)) return bad("version");
  if (!str(v.tag, /^[0-9a-f]{16}$/)) return bad("tag");
  if (!finite(v.accuracy, 1)) return bad("accuracy");
  if (v.previousAccuracy !== null && !finite(v.previousAccuracy, 1)) return bad("previousAccuracy");
  if (!whole(v.atMs, Number.MAX_SAFE_INTEGER)) return bad("atMs");
  return { ok: true, value: { node: v.node, version: v.version, tag: v.tag, accuracy: v.accuracy, previousVersion: v.previousVersion, previousAccuracy: v.previousAccuracy as number | null, atMs: v.atMs } };
}

/**
 * The decision on a new model version (`dtr train`, `fl train`, the GA, `dtr init`): every node
 * measures it on its own held-out data against the version it replaced; once half the live nodes
 * (at least one) have, it is kept, or rolled back when it costs more than accuracyDropMax on average.
 */
export function judgeModel(version: number, tag: string, rows: readonly ModelHealth[], liveNodes: number, config: RolloutConfig = ROLLOUT_DEFAULTS): Verdict {
  const mine = rows.filter((r) => r.version === version && r.tag === tag && r.previousAccuracy !== null);
  const needed = Math.max(1, Math.ceil(liveNodes / 2));
  if (mine.length < needed) return { verdict: "wait", reason: `model v${version}: measured on ${mine.length} of the ${needed} nodes needed` };
  const after = mine.reduce((a, r) => a + r.accuracy, 0) / mine.length;
  const before = mine.reduce((a, r) => a + (r.previousAccuracy ?? 0), 0) / mine.length;
  const previous = mine[0]?.previousVersion ?? 0;
  const text = `model v${version}: held-out ${pct(after)} against ${pct(before)} for v${previous}, on ${mine.length} node${mine.length === 1 ? "" : "s"}`;
  return before - after > config.accuracyDropMax ? { verdict: "rollback", reason: text } : { verdict: "promote", reason: text };
}
