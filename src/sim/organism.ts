// `pk sim --scenario organism`: the whole organism in simulation — N kernels (the real node code)
// with the shared folder on their simulated disks (src/sim/files.ts) and the Brain, on a simulated
// network (lossy by default), from one seed. In order:
//
//   1. the cluster forms (every node holds every node alive);
//   2. node 0 writes a file into /shared/; it reaches every node, byte for byte;
//   3. node 0 publishes a model (`dtr init`: a shape where every participant has layers, heads,
//      FFN columns and positions); every node loads it from its replica of /shared/brain/model.pkm;
//   4. node 0 runs distributed inference in every mode (pipeline, tensor, dkva) over its peers, on
//      whole sequences and on a decode session per mode: FULL, and equal to its local inference
//      within 1e-5 (max |Δlogit|);
//   5. node 0 writes a second file, and one of its peers crashes (power loss on its disk) while the
//      file may be in flight; inference starts again at once, with the dead node still among the
//      peers (SWIM has not noticed yet) and the sessions continued: REDUCED (SOLO with 2 nodes),
//      the dead node dropped, still equal to local inference; the file reaches every live node;
//   6. the crashed node restarts from its disk: it rejoins, holds both files and loads the same
//      model from its own replica, and inference over every node is FULL again and equal.
//
// Everything the report holds is a function of the options alone (ticks, not wall time), so the
// same seed prints the same JSON; the trace hash folds every delivered packet. Wall time goes to
// the caller's stderr.
import { createHash } from "node:crypto";
import { createRng } from "../core/util/rng.ts";
import { generateSensorData } from "../core/brain/data.ts";
import type { ModelConfig } from "../core/brain/transformer.ts";
import type { Kernel } from "../node/kernel.ts";
import { BRAIN_DEFAULTS, type InferMode, type InferOutcome } from "../node/brain/service.ts";
import { SimCluster, type FaultProfile } from "./cluster.ts";

/** Every participant of 3 has a share: 3 layers, 3 heads, 48 FFN columns, positions round-robin. */
export const ORGANISM_MODEL: ModelConfig = Object.freeze({ vocab: 4, seqLen: 8, dModel: 24, nHeads: 3, dFF: 48, nLayers: 3, nClasses: 3 });
/** The tolerance of distributed against local inference (docs/adr/009-brain.md). */
export const ORGANISM_TOLERANCE = 1e-5;
const MODES = ["pipeline", "tensor", "dkva"] as const;
const FORM_TICKS_MAX = 3_000;
const WAIT_TICKS_MAX = 3_000;
/** Sensor readings per mode, each a whole sequence. */
const INPUTS = 3;
/** Tokens of each decode session: half before the crash, half after. */
const SESSION_TOKENS = 4;

export interface OrganismOptions {
  readonly seed: number;
  readonly nodes?: number;
  readonly faults?: FaultProfile;
}

export interface ModeReport {
  readonly states: readonly string[];
  readonly dropped: readonly string[];
  readonly maxAbsDiff: number;
  readonly roundTrips: number;
}

export interface OrganismReport {
  readonly ok: boolean;
  readonly result: Record<string, unknown>;
}

type Settled<T> = { ok: true; value: T; ticks: number } | { ok: false; error: string; ticks: number };

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Runs the scenario; never throws (a failure is a report with ok false and its reason). */
export async function runOrganism(options: OrganismOptions): Promise<OrganismReport> {
  const nodes = options.nodes ?? 3;
  const faults = options.faults ?? "lossy";
  const failures: string[] = [];
  const check = (ok: boolean, what: string): void => {
    if (!ok) failures.push(what);
  };
  let cluster: SimCluster | undefined;
  const result: Record<string, unknown> = { scenario: "organism", seed: options.seed, nodes, faults };
  try {
    if (!Number.isInteger(nodes) || nodes < 2 || nodes > 16) throw new RangeError("organism: --nodes must be 2..16");
    // The GA is off: it changes the weights on its own in idle time (its own tests cover it), and
    // every answer here is compared with local inference on the weights published in step 3.
    const c = new SimCluster({ nodes, seed: options.seed, faults, sharedFolder: true, kernel: { brain: { ...BRAIN_DEFAULTS, gaEveryTicks: 0 } } });
    cluster = c;
    const rng = createRng(options.seed, 0x6f72);

    /** Ticks until `done` holds (checked before each tick), at most `max`; the tick it held at, or null. */
    const until = async (done: () => boolean, max: number): Promise<number | null> => {
      for (let i = 0; i <= max; i++) {
        if (done()) return c.now;
        await c.runAsync(1);
      }
      return null;
    };
    /** Ticks until every promise settles (at most WAIT_TICKS_MAX). */
    const settleAll = async <T>(promises: readonly Promise<T>[]): Promise<Settled<T>[]> => {
      const start = c.now;
      const out: (Settled<T> | undefined)[] = promises.map(() => undefined);
      promises.forEach((p, k) => {
        p.then((value) => { out[k] = { ok: true, value, ticks: c.now - start }; },
          (error: unknown) => { out[k] = { ok: false, error: error instanceof Error ? error.message : String(error), ticks: c.now - start }; });
      });
      await until(() => out.every((o) => o !== undefined), WAIT_TICKS_MAX);
      return out.map((o) => o ?? { ok: false, error: `not settled within ${WAIT_TICKS_MAX} ticks`, ticks: WAIT_TICKS_MAX });
    };
    const live = (): Kernel[] => c.nodes.filter((n) => n.alive).map((n) => n.kernel);
    const formed = (): boolean => live().every((k) => k.swim.liveIds().filter((id) => k.swim.stateOf(id) === "alive").length === live().length - 1);
    const read = async (k: Kernel, path: string): Promise<string | null> => {
      try {
        return sha256(await k.sharedFolder!.files.read(path, 1 << 20));
      } catch {
        return null;
      }
    };
    /** Ticks until every live node holds `path` with this content, polling every 10 ticks. */
    const replicated = async (path: string, digest: string): Promise<number | null> => {
      for (let i = 0; i <= WAIT_TICKS_MAX; i += 10) {
        const got = await settleAll(live().map((k) => read(k, path)));
        if (got.every((g) => g.ok && g.value === digest)) return c.now;
        await c.runAsync(10);
      }
      return null;
    };
    const write = async (k: Kernel, path: string, bytes: Uint8Array): Promise<string | undefined> => {
      const folder = k.sharedFolder!;
      const staged = await folder.files.stageBytes(bytes);
      const local = folder.core.localWrite(path, staged.info, staged.temp);
      if (!local.ok) await folder.files.discardStaged(staged.temp);
      return folder.wait(local);
    };

    // 1. The cluster forms.
    const formedAt = await until(formed, FORM_TICKS_MAX);
    check(formedAt !== null, `the cluster did not form within ${FORM_TICKS_MAX} ticks`);
    check(c.nodes.every((n) => n.kernel.sharedFolder?.booted === true && n.filesError === undefined), "a shared folder did not boot");
    result.formedAt = formedAt;
    const coordinator = c.nodes[0]!.kernel;
    const brain = coordinator.brain;

    // 2. A file written on node 0 reaches every node.
    const file1 = new TextEncoder().encode(`organism ${options.seed}: ${Array.from({ length: 64 }, () => rng.int(10)).join("")}\n`);
    const [w1] = await settleAll([write(coordinator, "organism/hello.txt", file1)]);
    check(w1!.ok && w1!.value === undefined, `writing organism/hello.txt: ${w1!.ok ? w1!.value : w1!.error}`);
    const file1At = await replicated("organism/hello.txt", sha256(file1));
    check(file1At !== null, "organism/hello.txt did not reach every node");
    result.file = { path: "organism/hello.txt", bytes: file1.length, replicatedAt: file1At };

    // 3. A model published on node 0 is loaded by every node from its replica.
    const [published] = await settleAll([brain.init(ORGANISM_MODEL, options.seed % 0xffff_ffff)]);
    check(published!.ok, `dtr init: ${published!.ok ? "" : published!.error}`);
    const tag = brain.model.tag;
    const loadedAt = await until(() => live().every((k) => k.brain.model.tag === tag), WAIT_TICKS_MAX);
    check(loadedAt !== null, "the model did not reach every node");
    result.model = { version: brain.model.header.version, tag, params: brain.model.params.length, loadedEverywhereAt: loadedAt };

    // Inputs: sensor readings of the seed.
    const inputs = generateSensorData(createRng(options.seed, 0x696e), INPUTS).map((ex) => ({ ids: ex.ids, values: Float32Array.from(ex.values) }));
    const session = generateSensorData(createRng(options.seed, 0x7365), 1)[0]!;
    const local = await settleAll(inputs.map((x) => brain.infer("local", x.ids, x.values)));
    const localLogits = local.map((l) => (l.ok ? l.value.logits : new Float32Array(0)));
    // The local decode session: logits after each token.
    const localSteps: Float32Array[] = [];
    for (let t = 0; t < SESSION_TOKENS; t++) {
      const [s] = await settleAll([brain.infer("local", session.ids.subarray(t, t + 1), Float32Array.from(session.values.slice(t, t + 1)), { session: `${coordinator.id}-local` })]);
      localSteps.push(s!.ok ? s!.value.logits : new Float32Array(0));
    }

    /**
     * The outcomes of one kind of run against local inference. Every answer must equal it. With a
     * dead node, a run that had it among its peers must have dropped it (REDUCED, or SOLO when no
     * peer was left); without, a run is FULL — unless the faults are random, whose delays may
     * exceed a call's deadline and drop a live peer too (legitimately: REDUCED, still equal).
     */
    const report = (mode: string, outcomes: readonly Settled<InferOutcome>[], want: readonly Float32Array[], dead?: string): ModeReport => {
      let max = 0, trips = 0;
      const states: string[] = [], dropped = new Set<string>();
      outcomes.forEach((o, k) => {
        if (!o.ok) {
          failures.push(`${mode} #${k}: ${o.error}`);
          states.push("error");
          return;
        }
        states.push(o.value.state);
        for (const d of o.value.dropped) dropped.add(d);
        trips += o.value.roundTrips;
        max = Math.max(max, maxAbsDiff(o.value.logits, want[k]!));
        if (dead !== undefined && o.value.peers.includes(dead)) {
          check(o.value.dropped.includes(dead), `${mode} #${k}: the dead node was not dropped`);
          const expect = faults === "random" ? ["REDUCED", "SOLO"] : [o.value.peers.length > 1 ? "REDUCED" : "SOLO"];
          check(expect.includes(o.value.state), `${mode} #${k}: ${o.value.state} with the dead node dropped`);
        } else if (faults !== "random") {
          check(o.value.state === "FULL", `${mode} #${k}: ${o.value.state}, expected FULL`);
        }
      });
      check(max <= ORGANISM_TOLERANCE, `${mode}: max |Δlogit| ${max} above ${ORGANISM_TOLERANCE}`);
      return { states, dropped: [...dropped].sort(), maxAbsDiff: max, roundTrips: trips };
    };
    const names = new Map(c.nodes.map((n) => [n.kernel.id, `n${n.index}`]));
    const named = (r: ModeReport): ModeReport => ({ ...r, dropped: r.dropped.map((d) => names.get(d) ?? d) });
    const sessionId = (mode: string): string => `${coordinator.id}-${mode}`;
    const sessionStep = (mode: InferMode, t: number): Promise<InferOutcome> =>
      brain.infer(mode, session.ids.subarray(t, t + 1), Float32Array.from(session.values.slice(t, t + 1)), { session: sessionId(mode) });

    // 4. Distributed inference over every node: FULL and equal.
    const full: Record<string, unknown> = {};
    for (const mode of MODES) {
      const whole = await settleAll(inputs.map((x) => brain.infer(mode, x.ids, x.values)));
      const steps: Settled<InferOutcome>[] = [];
      for (let t = 0; t < SESSION_TOKENS / 2; t++) steps.push(...(await settleAll([sessionStep(mode, t)])));
      full[mode] = { whole: named(report(`${mode} whole`, whole, localLogits)), session: named(report(`${mode} session`, steps, localSteps.slice(0, SESSION_TOKENS / 2))) };
    }
    result.full = full;

    // 5. A second file, then a crash of node 0's last peer; inference at once, with it among the peers.
    const file2 = new TextEncoder().encode(`after the crash ${options.seed}: ${Array.from({ length: 2048 }, () => rng.int(10)).join("")}\n`);
    const w2 = write(coordinator, "organism/after.txt", file2);
    await c.runAsync(2);
    const peersNow = brain.peers();
    const deadId = peersNow.at(-1) ?? "";
    const victim = c.nodes.findIndex((n) => n.kernel.id === deadId);
    if (victim < 1) throw new Error("node 0 has no peer to crash");
    c.crash(victim);
    const crashAt = c.now;
    const crash: Record<string, unknown> = { node: `n${victim}`, at: crashAt, peers: peersNow.map((p) => names.get(p) ?? p) };
    const wholeRuns = MODES.map((mode) => inputs.map((x) => brain.infer(mode, x.ids, x.values)));
    const sessionRuns = MODES.map(async (mode) => {
      const out: InferOutcome[] = [];
      for (let t = SESSION_TOKENS / 2; t < SESSION_TOKENS; t++) out.push(await sessionStep(mode, t));
      return out;
    });
    const wholeDone = await settleAll(wholeRuns.flat());
    const sessionsDone = await settleAll(sessionRuns);
    const runs: Record<string, unknown> = {};
    MODES.forEach((mode, m) => {
      const whole = wholeDone.slice(m * INPUTS, (m + 1) * INPUTS);
      const s = sessionsDone[m]!;
      const steps: Settled<InferOutcome>[] = s.ok ? s.value.map((value) => ({ ok: true as const, value, ticks: s.ticks })) : [s];
      runs[mode] = {
        whole: named(report(`${mode} whole after the crash`, whole, localLogits, deadId)),
        session: named(report(`${mode} session after the crash`, steps, localSteps.slice(SESSION_TOKENS / 2), deadId)),
        ticks: Math.max(...whole.map((w) => w.ticks)),
      };
    });
    crash.runs = runs;
    const [written2] = await settleAll([w2]);
    check(written2!.ok && written2!.value === undefined, `writing organism/after.txt: ${written2!.ok ? written2!.value : written2!.error}`);
    const file2At = await replicated("organism/after.txt", sha256(file2));
    check(file2At !== null, "organism/after.txt did not reach the live nodes");
    crash.fileReplicatedAt = file2At;
    const outOfPeersBy = await until(() => !brain.peers().includes(deadId), WAIT_TICKS_MAX);
    check(outOfPeersBy !== null, "the crashed node was never taken out of the peers (SWIM)");
    crash.outOfPeersBy = outOfPeersBy;
    result.crash = crash;

    // 6. The crashed node restarts from its disk.
    c.restart(victim);
    const restartAt = c.now;
    const rejoinedAt = await until(formed, FORM_TICKS_MAX);
    check(rejoinedAt !== null, "the restarted node did not rejoin");
    const back = c.nodes[victim]!.kernel;
    const bothAt = await replicated("organism/after.txt", sha256(file2));
    const [kept] = await settleAll([read(back, "organism/hello.txt")]);
    check(bothAt !== null && kept!.ok && kept!.value === sha256(file1), "the restarted node does not hold both files");
    const modelAt = await until(() => back.brain.model.tag === tag, WAIT_TICKS_MAX);
    check(modelAt !== null, "the restarted node did not load the model from its replica");
    const again: Record<string, unknown> = {};
    for (const mode of MODES) {
      const whole = await settleAll(inputs.map((x) => brain.infer(mode, x.ids, x.values)));
      again[mode] = named(report(`${mode} after the restart`, whole, localLogits));
    }
    result.restart = { at: restartAt, rejoinedAt, filesAt: bothAt, modelLoadedAt: modelAt, full: again };
  } catch (error) {
    failures.push(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
  }
  if (cluster !== undefined) {
    const r = cluster.result();
    result.ticks = r.ticks;
    result.messages = r.messages;
    result.traceHash = r.traceHash;
    result.kernelDrops = r.kernelDrops;
    const bad = r.kernelDrops.auth + r.kernelDrops.decode;
    if (bad > 0) failures.push(`${bad} legitimate packets were dropped as auth or decode`);
  }
  result.failures = failures;
  result.ok = failures.length === 0;
  return { ok: failures.length === 0, result };
}
