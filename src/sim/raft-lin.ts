// `pk sim --scenario raft-lin`: linearizability of the consensus key-value store (/v1/kv: Raft in
// src/core/collective/raft, the state machine in src/core/collective/kv.ts, the node side in
// src/node/collective/consensus.ts) under faults, checked by src/sim/checkers/linearizability.ts.
//
// One seed gives one run, bit for bit (the same traceHash and the same history on every replay):
//
//  1. A SimCluster of 3 or 5 whole kernels: node 0 founds the cluster, the others join through it;
//     warm-up until every node is a voter (bounded). Half the seeds take a Raft snapshot every
//     20–80 entries, so restarts from snapshots and snapshots sent to followers are exercised.
//  2. Workload (its own Rng stream): `clients` logical clients, each with at most one operation in
//     flight, each operation sent to a node drawn at random (skipped when that node is down or
//     stalled), on a few keys so that operations conflict: reads, puts, deletes and compare-and-
//     sets. Every written value is unique (client·10⁶ + n), so a read names the write it saw; puts,
//     deletes and conflicting CAS also report the value they replaced or found, which the model
//     checks too. Timestamps are a global event counter (every call and every return is one event),
//     so the history keeps the exact real-time order the simulator saw.
//  3. Nemesis (another Rng stream), while the workload runs: the link profile of the seed (lossy:
//     delay, jitter, loss, duplication, reordering; or random: drawn from the seed), per-link slow
//     links, clogs, symmetric partitions (minority/majority splits, the leader isolated, a bridge
//     node), one-way blocks around the leader, crashes that lose or tear unsynced writes (the
//     leader half the time; at most a minority down, except for an occasional brief majority
//     outage), quick crash-restarts, and event-loop stalls. Clock skew stays on (SimCluster's
//     default). Outages are kept well under regeneration's threshold (ADR 008: a cluster whose
//     majority is dead for regenerateAfterTicks trades safety for survival on purpose).
//  4. Quiet period: heal, clear link faults, restart the crashed; wait for in-flight operations;
//     read every key once more; wait until every node has applied the same index and compare their
//     key-value maps.
//
// Outcomes: ok / not-found / conflict are definite; timeout and leader-changed are unknown (return
// +∞; the write may apply now, later or never), as are operations in flight on a node that crashed
// or at the end; no-leader and busy were not executed and leave the history. The verdict is the
// checker's, per key (keyedRegisterModel); nodes disagreeing at the end or anything the kernel
// should never answer (invalid, full, a code that does not fit the operation) fail the run too.
import { performance } from "node:perf_hooks";
import { LIMITS } from "../core/util/limits.ts";
import { createRng, type Rng } from "../core/util/rng.ts";
import { CONSENSUS_DEFAULTS, type KvOutcome } from "../node/collective/consensus.ts";
import type { KernelEvent } from "../node/events.ts";
import { checkLinearizable, type Operation, type Verdict } from "./checkers/linearizability.ts";
import { keyedRegisterModel, pruneUnseenWrites, type KeyedRegisterInput, type KeyedRegisterOutput } from "./checkers/models.ts";
import { SimCluster, type FaultProfile, type SimNode } from "./cluster.ts";
import { Fingerprint } from "./fingerprint.ts";

export interface RaftLinFaults {
  /** The seed's link profile (lossy or random); false: perfect links. */
  readonly network: boolean;
  /** Slow links and clogs. */
  readonly links: boolean;
  readonly partitions: boolean;
  readonly crashes: boolean;
  readonly stalls: boolean;
  /** An occasional brief outage of a majority (crashed or cut off): availability drops, safety must hold. */
  readonly majority: boolean;
}

export const RAFT_LIN_FAULTS: RaftLinFaults = { network: true, links: true, partitions: true, crashes: true, stalls: true, majority: true };

export interface RaftLinOptions {
  readonly seed: number;
  readonly nodes: 3 | 5;
  /** Ticks of workload under faults (10 ms each). */
  readonly ticks?: number;
  readonly clients?: number;
  readonly keys?: number;
  /** A client waits 0..thinkTicksMax ticks between operations. */
  readonly thinkTicksMax?: number;
  readonly faults?: Partial<RaftLinFaults>;
  /**
   * Take a Raft snapshot every this many applied entries (the kernel's default is 10,000, which a
   * short run never reaches). Unset: drawn from the seed, half the seeds snapshotting every 20–80
   * entries (keeping 0–10 behind), so that restarts from a snapshot and snapshots sent to lagging
   * or restarted followers are exercised too.
   */
  readonly snapshotEntries?: number;
  /** Search bound per key for the checker (verdict "timeout" beyond it). */
  readonly stepsMax?: number;
  /** Keep the history in the result (for the determinism test and debugging). */
  readonly keepHistory?: boolean;
  /**
   * A deliberately broken store, for the test that shows the scenario can fail: "local-reads"
   * answers reads from the chosen node's own state, without ReadIndex (stale on a partitioned or
   * lagging node).
   */
  readonly mutation?: "local-reads";
  /** Called after every tick of the cluster (debugging: tracing a failing seed). */
  readonly onTick?: (cluster: SimCluster) => void;
}

export const RAFT_LIN_DEFAULTS = {
  ticks: 3000,
  clients: 6,
  keys: 3,
  thinkTicksMax: 12,
  stepsMax: 5_000_000,
  /** A client waits this much longer after an operation that got no answer (no-leader, busy, timeout, leader-changed). */
  backoffTicks: 20,
  /** Warm-up bound: until every node is a voter. */
  warmupTicksMax: 3000,
  /** After the workload: in-flight operations end within requestTimeoutTicks (500). */
  drainTicksMax: 1200,
  /**
   * Final reads, and nodes catching up before their maps are compared. Beyond a restarted node's
   * first SWIM push-pull (30–60 s after boot), by which a node that lost part of its unsynced
   * member list relearns it (until then it drops Raft traffic from the members it forgot).
   */
  settleTicksMax: 7000,
  /**
   * Packets sent per node per tick, over a 100-tick window, beyond which the run stops as a
   * message storm (a correct cluster sends a few; a storm would otherwise run for minutes).
   */
  stormPacketsPerNodeTick: 25,
} as const;

/** One operation as the scenario records it: the checker's fields plus where and when. */
export interface LinOp extends Operation<KeyedRegisterInput, KeyedRegisterOutput> {
  readonly node: number;
  readonly callTick: number;
  readonly returnTick: number;
  /** The kernel's answer ("crashed": its node crashed; "pending": still in flight at the end). */
  readonly code: string;
}

export interface RaftLinFailure {
  readonly kind: "illegal" | "checker-timeout" | "diverged" | "not-converged" | "message-storm" | "bad-outcome" | "exception";
  readonly detail: string;
  readonly key?: string;
  /** The shortest illegal prefix of the key's history, its last operations (the culprit last). */
  readonly excerpt?: readonly string[];
  /** The nemesis' last actions before the failure. */
  readonly nemesis?: readonly string[];
}

export interface RaftLinResult {
  readonly scenario: "raft-lin";
  readonly seed: number;
  readonly nodes: number;
  readonly ticks: number;
  readonly linkProfile: FaultProfile;
  readonly warmupTicks: number;
  /** Operations with an outcome: ok (definite) + unknown. */
  readonly ops: number;
  readonly ok: number;
  /** Outcome unknown: timeout, leader-changed, node crashed, still in flight at the end. */
  readonly unknown: number;
  /** Not executed (no-leader, busy): left out of the history. */
  readonly failed: number;
  /** Operations in the checked history, by kind (reads with unknown outcome are left out). */
  readonly reads: number;
  readonly writes: number;
  readonly cas: number;
  readonly deletes: number;
  /** Operations the checker saw: the history less unknown writes whose value nobody saw (pruneUnseenWrites). */
  readonly checked: number;
  readonly verdict: Verdict | "error";
  readonly checkerMs: number;
  readonly leaderChanges: number;
  readonly crashes: number;
  readonly partitions: number;
  readonly stalls: number;
  readonly majorityOutages: number;
  readonly regenerations: number;
  readonly snapshotEntries: number;
  /** Snapshots taken, and snapshots installed from the leader, over all nodes. */
  readonly snapshots: number;
  readonly snapshotsInstalled: number;
  /** Every node applied the same index and holds the same map at the end. */
  readonly converged: boolean;
  /** Ticks from the start of the quiet period until then (-1: not converged). */
  readonly settleTicks: number;
  /** Tick at which the run ended (warm-up, workload, quiet period). */
  readonly endTick: number;
  readonly traceHash: string;
  readonly historyHash: string;
  readonly wallMs: number;
  readonly failure?: RaftLinFailure;
  readonly history?: readonly LinOp[];
}

export interface RaftLinReport {
  readonly ok: boolean;
  readonly result: RaftLinResult;
}

type Input = KeyedRegisterInput;
type Output = KeyedRegisterOutput;

interface Pending {
  readonly client: number;
  readonly node: number;
  readonly input: Input;
  readonly call: number;
  readonly callTick: number;
  /** Set when the client gave up on it (its node crashed) or it ended. */
  settled: boolean;
}

interface Client {
  readonly id: number;
  nextAt: number;
  writes: number;
  inflight: Pending | undefined;
}

const UTF8 = new TextEncoder();
const UTF8_DECODE = new TextDecoder();
const NEMESIS_LOG_KEPT = LIMITS.sim.nemesisLogLinesMax;

function encodeValue(value: number): Uint8Array {
  return UTF8.encode(String(value));
}

/** A value as the client wrote it; -1 for bytes no client wrote (the checker then fails the op). */
function decodeValue(bytes: Uint8Array | undefined): number | null {
  if (bytes === undefined) return null;
  const text = UTF8_DECODE.decode(bytes);
  return /^[1-9]\d{0,15}$/.test(text) ? Number(text) : -1;
}

/** Runs one seed; never throws (an exception is a failure that keeps its seed). */
export function runRaftLin(options: RaftLinOptions): RaftLinReport {
  const started = performance.now();
  const run = new RaftLinRun(options);
  let failure: RaftLinFailure | undefined;
  try {
    failure = run.execute();
  } catch (error) {
    failure = error instanceof RunStopped
      ? error.failure
      : { kind: "exception", detail: error instanceof Error ? `${error.name}: ${error.message}` : String(error), nemesis: run.nemesisLog() };
  }
  const result = run.result(failure, Math.round(performance.now() - started));
  return { ok: failure === undefined, result };
}

/** Thrown to stop a run that cannot finish usefully (a message storm). */
class RunStopped extends Error {
  readonly failure: RaftLinFailure;

  constructor(failure: RaftLinFailure) {
    super(failure.detail);
    this.failure = failure;
  }
}

class RaftLinRun {
  readonly seed: number;
  readonly n: number;
  readonly ticks: number;
  readonly faults: RaftLinFaults;
  readonly keys: string[];
  readonly thinkTicksMax: number;
  readonly stepsMax: number;
  readonly keepHistory: boolean;
  readonly onTick: ((cluster: SimCluster) => void) | undefined;
  readonly mutation: "local-reads" | undefined;
  readonly linkProfile: FaultProfile;
  readonly snapshotEntries: number;
  readonly cluster: SimCluster;
  readonly #work: Rng;
  readonly #nemesis: Rng;
  readonly #clients: Client[] = [];
  readonly #history: LinOp[] = [];
  #events = 0;
  #ok = 0;
  #unknown = 0;
  #failed = 0;
  #badOutcome: string | undefined;
  /** The last value a client learned per key (CAS expects it most of the time). */
  readonly #lastSeen = new Map<string, number | null>();
  readonly #leaderTerms = new Set<number>();
  #regenerations = 0;
  #snapshots = 0;
  #snapshotsInstalled = 0;
  #warmupTicks = 0;
  #crashes = 0;
  #partitions = 0;
  #stalls = 0;
  #majorityOutages = 0;
  #checkerMs = 0;
  #checked = 0;
  #verdict: Verdict | "error" = "error";
  #converged = false;
  #settleTicks = -1;
  readonly #nemesisLog: string[] = [];
  /** Crashed nodes and the tick each restarts at. */
  readonly #down = new Map<number, number>();
  #healAt = -1;
  #quietAt = 0;
  #sentAtWindow = 0;
  #linksClearAt = -1;
  readonly #slowLinks: Array<[string, string]> = [];
  #nextNemesis = 0;
  #majorityDone = false;

  constructor(options: RaftLinOptions) {
    this.seed = options.seed;
    this.n = options.nodes;
    this.ticks = options.ticks ?? RAFT_LIN_DEFAULTS.ticks;
    this.faults = { ...RAFT_LIN_FAULTS, ...options.faults };
    this.thinkTicksMax = options.thinkTicksMax ?? RAFT_LIN_DEFAULTS.thinkTicksMax;
    this.stepsMax = options.stepsMax ?? RAFT_LIN_DEFAULTS.stepsMax;
    this.keepHistory = options.keepHistory ?? false;
    this.onTick = options.onTick;
    this.mutation = options.mutation;
    const keyCount = options.keys ?? RAFT_LIN_DEFAULTS.keys;
    this.keys = Array.from({ length: keyCount }, (_, i) => `k${i}`);
    // Streams 1 and 2 of the seed: independent of each other and of the cluster's (stream 54), so a
    // change in the workload does not shift the nemesis' draws.
    this.#work = createRng(options.seed, 1);
    this.#nemesis = createRng(options.seed, 2);
    this.linkProfile = !this.faults.network ? "none" : this.#nemesis.chance(0.5) ? "lossy" : "random";
    // Stream 3: the cluster's configuration, drawn apart so that it does not shift the others.
    const config = createRng(options.seed, 3);
    const small = config.chance(0.5);
    this.snapshotEntries = options.snapshotEntries ?? (small ? 20 + config.int(61) : CONSENSUS_DEFAULTS.snapshotEntries);
    const keep = this.snapshotEntries === CONSENSUS_DEFAULTS.snapshotEntries ? CONSENSUS_DEFAULTS.snapshotKeepEntries : config.int(11);
    this.cluster = new SimCluster({
      nodes: this.n, seed: options.seed, faults: this.linkProfile, clockSkew: true,
      kernel: { consensus: { ...CONSENSUS_DEFAULTS, snapshotEntries: this.snapshotEntries, snapshotKeepEntries: keep } },
    });
    for (const node of this.cluster.nodes) this.#watch(node);
    const clients = options.clients ?? RAFT_LIN_DEFAULTS.clients;
    for (let id = 0; id < clients; id++) this.#clients.push({ id, nextAt: 0, writes: 0, inflight: undefined });
  }

  execute(): RaftLinFailure | undefined {
    // A run stopped early (a message storm) still has its history checked: a violation is the
    // more useful report.
    let stopped: RaftLinFailure | undefined;
    try {
      const failure = this.#simulate();
      if (failure !== undefined) return failure;
    } catch (error) {
      if (!(error instanceof RunStopped)) throw error;
      stopped = error.failure;
    }
    // Whatever is still in flight has an unknown outcome.
    for (const client of this.#clients) if (client.inflight !== undefined) this.#abandon(client, "pending");
    const started = performance.now();
    // Unknown writes nobody saw change nothing in the verdict, and only slow the search down.
    const checked = pruneUnseenWrites(this.#history) as LinOp[];
    this.#checked = checked.length;
    const verdict = checkLinearizable(keyedRegisterModel, checked, { stepsMax: this.stepsMax });
    this.#checkerMs = Math.round(performance.now() - started);
    this.#verdict = verdict;
    if (verdict === "illegal") return this.#explainIllegal(checked);
    if (stopped !== undefined) return stopped;
    try {
      const divergence = this.#settle();
      if (divergence !== undefined) return divergence;
    } catch (error) {
      if (!(error instanceof RunStopped)) throw error;
      return error.failure;
    }
    if (verdict === "timeout") return { kind: "checker-timeout", detail: `the checker gave up after ${this.stepsMax} steps on some key`, nemesis: this.nemesisLog() };
    return undefined;
  }

  /** Warm-up, workload under the nemesis, quiet period, final reads. */
  #simulate(): RaftLinFailure | undefined {
    const cluster = this.cluster;
    this.#warmup();
    const workEnd = cluster.now + this.ticks;
    for (const client of this.#clients) client.nextAt = cluster.now + this.#work.int(this.thinkTicksMax + 1);
    this.#nextNemesis = cluster.now + 20 + this.#nemesis.int(100);
    while (cluster.now < workEnd) {
      this.#nemesisStep();
      this.#tick();
      this.#clientsStep();
      if (this.#badOutcome !== undefined) return { kind: "bad-outcome", detail: this.#badOutcome, nemesis: this.nemesisLog() };
    }
    this.#quiet();
    const drainEnd = cluster.now + RAFT_LIN_DEFAULTS.drainTicksMax;
    while (cluster.now < drainEnd && this.#clients.some((c) => c.inflight !== undefined)) this.#tickAndRestart();
    this.#finalReads();
    if (this.#badOutcome !== undefined) return { kind: "bad-outcome", detail: this.#badOutcome, nemesis: this.nemesisLog() };
    return undefined;
  }

  nemesisLog(): string[] {
    return this.#nemesisLog.slice(-NEMESIS_LOG_KEPT);
  }

  result(failure: RaftLinFailure | undefined, wallMs: number): RaftLinResult {
    const history = this.#history;
    const counts = { read: 0, write: 0, cas: 0, delete: 0 };
    const fingerprint = new Fingerprint();
    for (const op of history) {
      counts[op.input.op]++;
      fingerprint.bytes(UTF8.encode(describe(op)));
    }
    return {
      scenario: "raft-lin",
      seed: this.seed,
      nodes: this.n,
      ticks: this.ticks,
      linkProfile: this.linkProfile,
      warmupTicks: this.#warmupTicks,
      ops: this.#ok + this.#unknown,
      ok: this.#ok,
      unknown: this.#unknown,
      failed: this.#failed,
      reads: counts.read,
      writes: counts.write,
      cas: counts.cas,
      deletes: counts.delete,
      checked: this.#checked,
      verdict: this.#verdict,
      checkerMs: this.#checkerMs,
      leaderChanges: Math.max(0, this.#leaderTerms.size - 1),
      crashes: this.#crashes,
      partitions: this.#partitions,
      stalls: this.#stalls,
      majorityOutages: this.#majorityOutages,
      regenerations: this.#regenerations,
      snapshotEntries: this.snapshotEntries,
      snapshots: this.#snapshots,
      snapshotsInstalled: this.#snapshotsInstalled,
      converged: this.#converged,
      settleTicks: this.#settleTicks,
      endTick: this.cluster.now,
      traceHash: this.cluster.network.traceHash,
      historyHash: fingerprint.hex(),
      wallMs,
      ...(failure !== undefined ? { failure } : {}),
      ...(this.keepHistory ? { history } : {}),
    };
  }

  // ---- cluster ------------------------------------------------------------------------------

  #watch(node: SimNode): void {
    node.kernel.events.subscribe((event: KernelEvent) => {
      if (event.type === "raft-leader" && typeof event.data.leader === "string" && event.data.leader !== "" && typeof event.data.term === "number") {
        this.#leaderTerms.add(event.data.term);
      } else if (event.type === "raft-snapshot") {
        this.#snapshots++;
      } else if (event.type === "raft-snapshot-installed") {
        this.#snapshotsInstalled++;
      } else if (event.type === "raft-regenerated") {
        this.#regenerations++;
        this.#log(`n${node.index} regenerated the cluster (${JSON.stringify(event.data)})`);
      }
    });
  }

  #warmup(): void {
    const cluster = this.cluster;
    const ids = cluster.nodes.map((node) => node.kernel.id);
    for (let t = 0; t < RAFT_LIN_DEFAULTS.warmupTicksMax; t++) {
      this.#tick();
      const voters = new Set(this.#leader()?.kernel.consensus.status().conf.voters ?? []);
      if (ids.every((id) => voters.has(id))) break;
    }
    this.#warmupTicks = cluster.now;
  }

  /** The live leader of the highest term, if any. */
  #leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.cluster.nodes) {
      if (!node.alive || !node.kernel.consensus.isLeader) continue;
      if (best === undefined || node.kernel.consensus.raft.term > best.kernel.consensus.raft.term) best = node;
    }
    return best;
  }

  #tick(): void {
    const cluster = this.cluster;
    cluster.tick();
    this.onTick?.(cluster);
    if (cluster.now % 100 !== 0) return;
    const sent = cluster.network.stats.sent;
    const window = sent - this.#sentAtWindow;
    this.#sentAtWindow = sent;
    if (window > 100 * this.n * RAFT_LIN_DEFAULTS.stormPacketsPerNodeTick) {
      throw new RunStopped({
        kind: "message-storm",
        detail: `${window} packets sent in the 100 ticks up to tick ${cluster.now} (${(window / 100 / this.n).toFixed(0)} per node per tick)`,
        nemesis: this.nemesisLog(),
      });
    }
  }

  #tickAndRestart(): void {
    this.#restartDue();
    this.#tick();
  }

  #restartDue(): void {
    for (const [index, at] of [...this.#down]) {
      if (at > this.cluster.now) continue;
      this.#down.delete(index);
      this.cluster.restart(index);
      this.#watch(this.cluster.nodes[index] as SimNode);
      this.#log(`restart n${index}`);
    }
  }

  #crash(index: number, downTicks: number, why: string): void {
    for (const client of this.#clients) if (client.inflight?.node === index) this.#abandon(client, "crashed");
    this.cluster.crash(index);
    this.#down.set(index, this.cluster.now + downTicks);
    this.#crashes++;
    this.#log(`crash n${index} (${why}) for ${downTicks} ticks`);
  }

  #log(text: string): void {
    this.#nemesisLog.push(`t${this.cluster.now} ${text}`);
    if (this.#nemesisLog.length > 4 * NEMESIS_LOG_KEPT) this.#nemesisLog.splice(0, this.#nemesisLog.length - NEMESIS_LOG_KEPT);
  }

  // ---- nemesis ------------------------------------------------------------------------------

  #nemesisStep(): void {
    const cluster = this.cluster;
    const network = cluster.network;
    const now = cluster.now;
    this.#restartDue();
    if (this.#healAt >= 0 && now >= this.#healAt) {
      network.heal();
      this.#healAt = -1;
      this.#log("heal");
    }
    if (this.#linksClearAt >= 0 && now >= this.#linksClearAt) {
      for (const [from, to] of this.#slowLinks.splice(0)) network.clearLinkFaults(from, to);
      this.#linksClearAt = -1;
    }
    if (now < this.#nextNemesis) return;
    const rng = this.#nemesis;
    this.#nextNemesis = now + 20 + rng.int(280);
    const f = this.faults;
    const nodes = cluster.nodes;
    const n = this.n;
    const minority = Math.floor((n - 1) / 2);
    const leader = this.#leader();
    const addr = (i: number) => (nodes[i] as SimNode).address;
    const roll = rng.int(100);
    if (roll < 22) {
      if (!f.partitions || this.#healAt >= 0) return;
      const kind = rng.int(5);
      const order = shuffle(rng, nodes.map((node) => node.index));
      const duration = 50 + rng.int(550);
      if (kind === 0 && leader !== undefined) {
        network.partition([leader.address]);
        this.#log(`isolate leader n${leader.index} for ${duration}`);
      } else if (kind === 1 && leader !== undefined) {
        // One-way: the leader can still hear, but its messages to some followers are cut.
        const cut = order.filter((i) => i !== leader.index).slice(0, 1 + rng.int(n - 1));
        for (const i of cut) network.block(leader.address, addr(i));
        this.#log(`block n${leader.index} -> ${cut.map((i) => `n${i}`).join(",")} for ${duration}`);
      } else if (kind === 2 && n === 5) {
        // A bridge: two pairs cut from each other, the fifth node reaching both.
        network.partition([addr(order[0]!), addr(order[1]!)], [addr(order[2]!), addr(order[3]!)]);
        this.#log(`bridge n${order[4]}: n${order[0]},n${order[1]} | n${order[2]},n${order[3]} for ${duration}`);
      } else {
        const size = 1 + rng.int(Math.floor(n / 2));
        const side = order.slice(0, size);
        network.partition(side.map(addr));
        this.#log(`partition ${side.map((i) => `n${i}`).join(",")} | rest for ${duration}`);
      }
      this.#partitions++;
      this.#healAt = now + duration;
    } else if (roll < 44) {
      if (!f.crashes) return;
      const live = nodes.filter((node) => node.alive).map((node) => node.index);
      if (this.#down.size + 1 > minority || live.length === 0) return;
      const victim = leader !== undefined && rng.chance(0.5) ? leader.index : live[rng.int(live.length)]!;
      const quick = rng.chance(0.25);
      this.#crash(victim, quick ? 1 + rng.int(10) : 30 + rng.int(470), victim === leader?.index ? "leader" : "node");
    } else if (roll < 60) {
      if (!f.stalls) return;
      const candidates = nodes.filter((node) => node.alive && node.stalledUntil === 0);
      if (candidates.length === 0) return;
      const node = leader !== undefined && leader.stalledUntil === 0 && rng.chance(0.4) ? leader : candidates[rng.int(candidates.length)]!;
      const ticks = 10 + rng.int(290);
      cluster.stall(node.index, ticks);
      this.#stalls++;
      this.#log(`stall n${node.index} for ${ticks}`);
    } else if (roll < 72) {
      if (!f.links) return;
      const i = rng.int(n);
      const until = now + 5 + rng.int(95);
      network.clog(addr(i), until);
      this.#log(`clog n${i} until t${until}`);
    } else if (roll < 84) {
      if (!f.links || this.#linksClearAt >= 0) return;
      const from = rng.int(n);
      const to = (from + 1 + rng.int(n - 1)) % n;
      const faults = { minDelayTicks: 3 + rng.int(20), jitter: { kind: "uniform" as const, maxTicks: rng.int(30) }, reorderRate: 0.2, reorderDelayTicksMax: 20, lossRate: 0.2, duplicateRate: 0.05 };
      network.setLinkFaults(addr(from), addr(to), faults);
      this.#slowLinks.push([addr(from), addr(to)]);
      this.#linksClearAt = now + 100 + rng.int(400);
      this.#log(`slow link n${from} -> n${to} (${faults.minDelayTicks}+${faults.jitter.maxTicks} ticks)`);
    } else if (roll < 88) {
      // A brief majority outage, once per run: crashed or cut off, then back.
      if (!f.majority || this.#majorityDone || (!f.crashes && !f.partitions)) return;
      this.#majorityDone = true;
      this.#majorityOutages++;
      const majority = Math.floor(n / 2) + 1;
      const duration = 50 + rng.int(250);
      const order = shuffle(rng, nodes.filter((node) => node.alive && !this.#down.has(node.index)).map((node) => node.index));
      if (f.crashes && (!f.partitions || rng.chance(0.5))) {
        const victims = order.slice(0, Math.max(0, majority - this.#down.size));
        for (const i of victims) this.#crash(i, duration + rng.int(20), "majority outage");
      } else {
        network.heal();
        for (const i of order.slice(0, majority)) network.partition([addr(i)]);
        this.#partitions++;
        this.#healAt = now + duration;
        this.#log(`cut off ${order.slice(0, majority).map((i) => `n${i}`).join(",")} one by one for ${duration}`);
      }
    }
  }

  /** End of the workload: heal everything (links become perfect), restart the crashed. */
  #quiet(): void {
    const network = this.cluster.network;
    network.heal();
    network.setFaults({});
    this.#healAt = -1;
    for (const [from, to] of this.#slowLinks.splice(0)) network.clearLinkFaults(from, to);
    this.#linksClearAt = -1;
    for (const node of this.cluster.nodes) network.unclog(node.address);
    for (const index of this.#down.keys()) this.#down.set(index, this.cluster.now);
    this.#restartDue();
    this.#quietAt = this.cluster.now;
    this.#log("quiet: healed, crashed nodes restarted");
  }

  // ---- workload -----------------------------------------------------------------------------

  #clientsStep(): void {
    const now = this.cluster.now;
    for (const client of this.#clients) {
      if (client.inflight !== undefined || now < client.nextAt) continue;
      const index = this.#work.int(this.n);
      const node = this.cluster.nodes[index] as SimNode;
      const input = this.#nextInput(client);
      if (!node.alive || node.stalledUntil !== 0) {
        client.nextAt = now + 1 + this.#work.int(this.thinkTicksMax + 1);
        continue;
      }
      this.#issue(client, node, input);
    }
  }

  #nextInput(client: Client): Input {
    const rng = this.#work;
    const key = this.keys[rng.int(this.keys.length)] as string;
    const roll = rng.int(100);
    const value = () => (client.id + 1) * 1_000_000 + ++client.writes;
    if (roll < 40) return { key, op: "read" };
    if (roll < 65) return { key, op: "write", value: value() };
    if (roll < 85) {
      const seen = this.#lastSeen.get(key);
      const expected = rng.chance(0.75) && seen !== undefined ? seen : rng.chance(0.5) ? null : (1 + rng.int(this.#clients.length)) * 1_000_000 + 1;
      return { key, op: "cas", expected, value: value() };
    }
    return { key, op: "delete" };
  }

  #issue(client: Client, node: SimNode, input: Input): void {
    const pending: Pending = { client: client.id, node: node.index, input, call: ++this.#events, callTick: this.cluster.now, settled: false };
    client.inflight = pending;
    const callback = (outcome: KvOutcome) => this.#answer(client, pending, outcome);
    const kernel = node.kernel;
    if (input.op === "read" && this.mutation === "local-reads") {
      const record = kernel.consensus.getLocal(input.key);
      callback(record === undefined ? { code: "not-found", leader: "" } : { code: "ok", value: record.value, revision: record.revision, leader: "" });
      return;
    }
    switch (input.op) {
      case "read": kernel.kvGet(input.key, callback); break;
      case "write": kernel.kvPut(input.key, encodeValue(input.value), callback); break;
      case "delete": kernel.kvDelete(input.key, callback); break;
      case "cas": kernel.kvCas(input.key, input.expected === null ? undefined : encodeValue(input.expected), encodeValue(input.value), callback); break;
    }
  }

  #answer(client: Client, pending: Pending, outcome: KvOutcome): void {
    if (pending.settled) return;
    pending.settled = true;
    const code = outcome.code;
    if (client.inflight === pending) {
      client.inflight = undefined;
      // A client that got no answer backs off, as a real one retrying would: a cluster without a
      // stable leader would otherwise collect unknown outcomes as fast as clients can ask.
      const unanswered = code === "no-leader" || code === "busy" || code === "timeout" || code === "leader-changed";
      client.nextAt = this.cluster.now + (unanswered ? RAFT_LIN_DEFAULTS.backoffTicks : 0) + this.#work.int(this.thinkTicksMax + 1);
    }
    if (code === "no-leader" || code === "busy") {
      this.#failed++;
      return;
    }
    if (code === "timeout" || code === "leader-changed") {
      this.#unknown++;
      // Reads have no effect: one whose answer is lost says nothing and only costs the checker.
      if (pending.input.op !== "read") this.#record(pending, { unknown: true }, Infinity, code);
      return;
    }
    const output = this.#outputOf(pending.input, outcome);
    if (output === undefined) {
      this.#badOutcome ??= `${describeInput(pending.input)} by c${pending.client} on n${pending.node} answered ${code}` +
        `${outcome.detail !== undefined ? ` (${outcome.detail})` : ""}: a code it should never get`;
      return;
    }
    this.#ok++;
    this.#record(pending, output, ++this.#events, code);
    if (output.unknown) return;
    // What the client learned of the key feeds the next CAS's expected value.
    const key = pending.input.key;
    if (pending.input.op === "read") this.#lastSeen.set(key, output.value ?? null);
    else if (pending.input.op === "write") this.#lastSeen.set(key, pending.input.value);
    else if (pending.input.op === "delete") this.#lastSeen.set(key, null);
    else if (output.ok === true) this.#lastSeen.set(key, pending.input.value);
    else if (output.previous !== undefined) this.#lastSeen.set(key, output.previous);
  }

  /** The checker's output for a definite answer; undefined when the code does not fit the operation. */
  #outputOf(input: Input, outcome: KvOutcome): Output | undefined {
    const code = outcome.code;
    switch (input.op) {
      case "read":
        if (code === "ok") return { unknown: false, value: decodeValue(outcome.value) };
        if (code === "not-found") return { unknown: false, value: null };
        return undefined;
      case "write":
        return code === "ok" ? { unknown: false, previous: decodeValue(outcome.value) } : undefined;
      case "delete":
        if (code === "ok") return { unknown: false, found: true, previous: decodeValue(outcome.value) };
        if (code === "not-found") return { unknown: false, found: false, previous: null };
        return undefined;
      case "cas":
        if (code === "ok") return { unknown: false, ok: true };
        if (code === "conflict") return { unknown: false, ok: false, previous: decodeValue(outcome.value) };
        return undefined;
    }
  }

  #record(pending: Pending, output: Output, ret: number, code: string): void {
    this.#history.push({
      client: pending.client, node: pending.node, input: pending.input, call: pending.call, callTick: pending.callTick,
      output, return: ret, returnTick: ret === Infinity ? Infinity : this.cluster.now, code,
    });
  }

  /** The client gives up on its operation: the outcome is unknown. */
  #abandon(client: Client, code: "crashed" | "pending"): void {
    const pending = client.inflight;
    if (pending === undefined) return;
    pending.settled = true;
    client.inflight = undefined;
    client.nextAt = this.cluster.now + 1 + this.#work.int(this.thinkTicksMax + 1);
    this.#unknown++;
    if (pending.input.op !== "read") this.#record(pending, { unknown: true }, Infinity, code);
  }

  /** After the quiet period: one linearizable read of every key, retried until it answers. */
  #finalReads(): void {
    const cluster = this.cluster;
    const client: Client = { id: this.#clients.length, nextAt: 0, writes: 0, inflight: undefined };
    const deadline = cluster.now + RAFT_LIN_DEFAULTS.settleTicksMax;
    for (const key of this.keys) {
      let answered = false;
      while (!answered && cluster.now < deadline) {
        const before = this.#history.length;
        const live = cluster.nodes.filter((node) => node.alive && node.stalledUntil === 0);
        if (live.length > 0) this.#issue(client, live[this.#work.int(live.length)] as SimNode, { key, op: "read" });
        while (client.inflight !== undefined && cluster.now < deadline) this.#tickAndRestart();
        answered = this.#history.length > before && this.#history[this.#history.length - 1]!.output.unknown === false;
        if (!answered) for (let t = 0; t < 10; t++) this.#tick();
      }
    }
    if (client.inflight !== undefined) this.#abandon(client, "pending");
  }

  // ---- the end ------------------------------------------------------------------------------

  /** Waits until every node applied the same index, then compares their maps. */
  #settle(): RaftLinFailure | undefined {
    const cluster = this.cluster;
    const start = this.#quietAt;
    const deadline = cluster.now + RAFT_LIN_DEFAULTS.settleTicksMax;
    for (;;) {
      const nodes = cluster.nodes.filter((node) => node.alive);
      const applied = nodes.map((node) => node.kernel.consensus.raft.log.applied);
      const commit = Math.max(...nodes.map((node) => node.kernel.consensus.raft.log.committed));
      if (nodes.length === this.n && applied.every((a) => a === commit)) {
        const maps = nodes.map((node) => mapOf(node));
        const reference = maps[0] as string;
        const odd = maps.findIndex((m) => m !== reference);
        if (odd >= 0) {
          return {
            kind: "diverged",
            detail: `at applied index ${commit}, n${nodes[0]!.index} holds ${reference} but n${nodes[odd]!.index} holds ${maps[odd]}`,
            nemesis: this.nemesisLog(),
          };
        }
        this.#converged = true;
        this.#settleTicks = cluster.now - start;
        return undefined;
      }
      if (cluster.now >= deadline) {
        const states = nodes.map((node) => {
          const s = node.kernel.consensus.status();
          const progress = [...s.progress.entries()].filter(([id]) => id !== node.kernel.id)
            .map(([id, pr]) => `n${cluster.nodes.findIndex((n) => n.kernel.id === id)}:${pr.state} match ${pr.match} next ${pr.next} inflight ${pr.inflight}${pr.recentActive ? "" : " inactive"}`);
          const swim = cluster.nodes.filter((n) => n !== node).map((n) => `n${n.index}=${node.kernel.swim.stateOf(n.kernel.id) ?? "unknown"}`).join(",");
          return `n${node.index} ${s.role} term ${s.term} lead n${cluster.nodes.findIndex((n) => n.kernel.id === s.lead)} commit ${s.commit} applied ${s.applied} last ${s.lastIndex} voters ${s.conf.voters.length} swim ${swim}${progress.length > 0 ? ` [${progress.join("; ")}]` : ""}`;
        });
        return {
          kind: "not-converged",
          detail: `${RAFT_LIN_DEFAULTS.settleTicksMax} ticks after the quiet period the nodes have not applied the same index: ${states.join("; ")}`,
          nemesis: this.nemesisLog(),
        };
      }
      this.#tickAndRestart();
    }
  }

  /**
   * Names the first key whose history is illegal and the shortest prefix of it that is: the
   * operations called by some event t, those returning after t made unknown (a prefix of a
   * linearizable history is linearizable, so the smallest illegal t ends at the culprit's return).
   */
  #explainIllegal(history: readonly LinOp[]): RaftLinFailure {
    const byKey = keyedRegisterModel.partition!(history) as LinOp[][];
    for (const ops of byKey) {
      if (checkLinearizable(keyedRegisterModel, ops, { stepsMax: this.stepsMax }) !== "illegal") continue;
      const key = ops[0]!.input.key;
      const prefix = (t: number): LinOp[] => ops.filter((op) => op.call <= t)
        .map((op) => (op.return <= t ? op : { ...op, output: { unknown: true }, return: Infinity, code: `answered later: ${op.code}` }));
      const times = [...new Set(ops.filter((op) => op.return !== Infinity).map((op) => op.return))].sort((a, b) => a - b);
      let lo = 0;
      let hi = times.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (checkLinearizable(keyedRegisterModel, prefix(times[mid]!), { stepsMax: this.stepsMax }) === "illegal") hi = mid;
        else lo = mid + 1;
      }
      const cut = times[lo]!;
      const shown = prefix(cut).sort((a, b) => a.call - b.call);
      const culprit = shown.findIndex((op) => op.return === cut);
      const excerpt = shown.filter((op, i) => i === culprit || i >= shown.length - 30).map((op) => `${op.return === cut ? "!! " : "   "}${describe(op)}`);
      return {
        kind: "illegal",
        key,
        detail: `the history of ${key} (${ops.length} operations) is not linearizable; ` +
          `the shortest illegal prefix ends when c${shown[culprit]?.client} returns at tick ${shown[culprit]?.returnTick}`,
        excerpt,
        nemesis: this.nemesisLog(),
      };
    }
    return { kind: "illegal", detail: `the history is not linearizable (no single key shows it?)`, nemesis: this.nemesisLog() };
  }
}

function mapOf(node: SimNode): string {
  return JSON.stringify(node.kernel.consensus.kv.keys("", 1_000_000).map(([key, record]) => [key, UTF8_DECODE.decode(record.value), record.revision]));
}

function shuffle(rng: Rng, items: number[]): number[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [items[i], items[j]] = [items[j] as number, items[i] as number];
  }
  return items;
}

function describeInput(input: Input): string {
  switch (input.op) {
    case "read": return `read ${input.key}`;
    case "write": return `put ${input.key}=${input.value}`;
    case "delete": return `delete ${input.key}`;
    case "cas": return `cas ${input.key} ${input.expected ?? "absent"}->${input.value}`;
  }
}

/** One line per operation: who, where, when (ticks and event numbers), what, and the answer. */
export function describe(op: LinOp): string {
  const out = op.output;
  let answer: string;
  if (out.unknown) answer = `? (${op.code})`;
  else if (op.input.op === "read") answer = `${out.value ?? "absent"}`;
  else if (op.input.op === "cas") answer = `${out.ok === true ? "ok" : `conflict, holds ${out.previous ?? "absent"}`}`;
  else if (op.input.op === "delete") answer = `${out.found === true ? `deleted ${out.previous ?? "?"}` : "not-found"}`;
  else answer = `ok, replaced ${out.previous ?? "absent"}`;
  const ret = op.return === Infinity ? "∞" : `t${op.returnTick}#${op.return}`;
  return `c${op.client}@n${op.node} [t${op.callTick}#${op.call} .. ${ret}] ${describeInput(op.input)} -> ${answer}`;
}
