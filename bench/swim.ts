// `npm run bench -- swim [--rounds N] [--nodes N] [--timeout S] [--no-load] [--systems pkernel,serf]`:
// failure-detection time of p-kernel's SWIM against HashiCorp serf (memberlist), issue 3.
//
// Starts N (default 5) `pk node` processes and N `serf agent -profile lan` processes on loopback.
// Both probe every 1 s: p-kernel's SWIM_LAN is 100 ticks of 10 ms, serf's LAN profile is
// memberlist's DefaultLANConfig. Busy-loop processes, one per CPU, keep every CPU saturated while
// the rounds run (--no-load turns them off). Each round:
//  1. wait until every node of both clusters sees every other alive;
//  2. wait 1 s plus a random 0–1 s, so that kills land at random phases of the probe period;
//  3. SIGKILL one p-kernel node and one serf agent, back to back (simultaneous: both systems see
//     the same load); the victim rotates over nodes 2..N, node 1 being the seed every (re)started
//     node joins through, never killed;
//  4. time from the kill to the moment each of the N−1 survivors reports the victim dead (no report
//     within --timeout, default 60 s, is a miss);
//  5. restart the victims (p-kernel: the same argv, data folder and so identity; serf: the same name
//     and ports, -join node 1) and wait until every node sees them alive again.
//
// How a survivor's report is observed, timestamped with performance.now() when it arrives here:
//  - p-kernel: its server-sent-event stream GET /v1/events: "member-dead" (and "member-suspect",
//    for information), `data: {"type":"member-dead","data":{"id":...}}`.
//  - serf: its log on stdout: "serf: EventMemberFailed: NAME", which every member logs when
//    memberlist declares NAME dead (its own suspicion timer fired, or it heard so); and
//    "memberlist: Suspect NAME has failed", logged by the prober only, for information. Reading the
//    log costs nothing extra and is as prompt as serf's RPC event stream (both are written when
//    memberlist notifies serf).
// A dead report naming a node that is up — not killed this round, or already back and seen alive
// by every node — is a false positive, for either system, whenever it happens during the run.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { get as httpGet, type ClientRequest } from "node:http";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { makeToken } from "../src/adapters/seal.ts";
import { freePorts, HOST, pkNodeArgv, type Processes, sigkill, startPkNode, waitReady, Workspace, type Child } from "./procs.ts";

/** Probe interval of both systems (p-kernel SWIM_LAN.probeTicks × 10 ms; memberlist LAN ProbeInterval). */
const PROBE_INTERVAL_MS = 1_000;
const START_TIMEOUT_MS = 20_000;
const CONVERGE_TIMEOUT_MS = 90_000;
const STATUS_TIMEOUT_MS = 5_000;
const LOAD_COMMAND = "for(;;){}";

type SystemName = "pkernel" | "serf";

// ---------------------------------------------------------------------------------------------
// What the survivors report

interface FalsePositive {
  readonly round: number;
  /** "measure": between a kill and the end of its round; "recovery": restarting the victim; "steady": otherwise. */
  readonly phase: "measure" | "recovery" | "steady";
  readonly observer: string;
  readonly subject: string;
}

interface RoundRecord {
  readonly round: number;
  readonly victim: string;
  /** Kill → dead at each survivor that reported in time, ascending. */
  readonly deadMs: number[];
  readonly misses: number;
  /** Kill → first suspicion of the victim anywhere; null when none was seen. */
  readonly firstSuspectMs: number | null;
}

interface OpenRound {
  readonly round: number;
  readonly victim: number;
  readonly killedAt: number;
  readonly dead: Map<number, number>;
  readonly suspect: Map<number, number>;
}

interface Summary {
  readonly medianMs: number | null;
  readonly p90Ms: number | null;
  readonly minMs: number | null;
  readonly maxMs: number | null;
  readonly samples: number;
  readonly misses: number;
  readonly falsePositives: number;
  readonly firstSuspectMedianMs: number | null;
  readonly suspicionsOfLiveNodes: number;
  readonly falsePositiveReports: readonly FalsePositive[];
  readonly perRound: readonly RoundRecord[];
  readonly error?: string;
}

/** One system's view of the run: which nodes are down, the round being measured, false positives. */
class Tracker {
  readonly system: SystemName;
  readonly names: readonly string[];
  /** Nodes killed and not yet seen alive by every node again. */
  readonly down = new Set<number>();
  readonly rounds: RoundRecord[] = [];
  readonly falsePositives: FalsePositive[] = [];
  /** Suspicions of nodes that were up (they may be refuted: not false positives, but a sign of load). */
  suspicionsOfLiveNodes = 0;
  /** SWIM reports (dead or suspect) of any kind seen at all: tells whether the system publishes them. */
  reportsSeen = 0;
  #open: OpenRound | undefined;
  #round = 0;
  #phase: FalsePositive["phase"] = "steady";

  constructor(system: SystemName, names: readonly string[]) {
    this.system = system;
    this.names = names;
  }

  observe(kind: "dead" | "suspect", observer: number, subject: number, at: number): void {
    if (observer === subject) return;
    this.reportsSeen++;
    const open = this.#open;
    if (!this.down.has(subject)) {
      if (kind === "suspect") {
        this.suspicionsOfLiveNodes++;
        process.stderr.write(`swim: ${this.system}: ${this.#name(observer)} suspects ${this.#name(subject)}, which is up (round ${this.#round}, ${this.#phase})\n`);
      }
      else {
        const fp: FalsePositive = { round: this.#round, phase: this.#phase, observer: this.#name(observer), subject: this.#name(subject) };
        this.falsePositives.push(fp);
        process.stderr.write(`swim: ${this.system} FALSE POSITIVE: ${fp.observer} reports ${fp.subject} dead (round ${fp.round}, ${fp.phase})\n`);
      }
      return;
    }
    if (open === undefined || subject !== open.victim || observer === open.victim) return;
    const seen = kind === "dead" ? open.dead : open.suspect;
    if (!seen.has(observer)) seen.set(observer, at - open.killedAt);
  }

  begin(round: number, victim: number, killedAt: number): void {
    this.#round = round;
    this.#phase = "measure";
    this.down.add(victim);
    this.#open = { round, victim, killedAt, dead: new Map(), suspect: new Map() };
  }

  complete(): boolean {
    return this.#open === undefined || this.#open.dead.size >= this.names.length - 1;
  }

  end(): RoundRecord {
    const open = this.#open;
    if (open === undefined) throw new Error("no round open");
    this.#open = undefined;
    this.#phase = "recovery";
    const deadMs = [...open.dead.values()].sort((a, b) => a - b).map(round1);
    const suspects = [...open.suspect.values()];
    const record: RoundRecord = {
      round: open.round,
      victim: this.#name(open.victim),
      deadMs,
      misses: this.names.length - 1 - deadMs.length,
      firstSuspectMs: suspects.length === 0 ? null : round1(Math.min(...suspects)),
    };
    this.rounds.push(record);
    return record;
  }

  /** The victim is back and every node sees it alive. */
  recovered(victim: number): void {
    this.down.delete(victim);
    this.#phase = "steady";
  }

  summary(): Summary {
    const samples = this.rounds.flatMap((r) => r.deadMs);
    const suspects = this.rounds.flatMap((r) => (r.firstSuspectMs === null ? [] : [r.firstSuspectMs]));
    return {
      medianMs: quantile(samples, 0.5),
      p90Ms: quantile(samples, 0.9),
      minMs: samples.length === 0 ? null : Math.min(...samples),
      maxMs: samples.length === 0 ? null : Math.max(...samples),
      samples: samples.length,
      misses: this.rounds.reduce((sum, r) => sum + r.misses, 0),
      falsePositives: this.falsePositives.length,
      firstSuspectMedianMs: quantile(suspects, 0.5),
      suspicionsOfLiveNodes: this.suspicionsOfLiveNodes,
      falsePositiveReports: this.falsePositives.slice(0, 20),
      perRound: this.rounds,
    };
  }

  #name(index: number): string {
    return this.names[index] ?? `#${index}`;
  }
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Quantile with linear interpolation between closest ranks; null for no samples. */
function quantile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return round1(a + (b - a) * (pos - lo));
}

// ---------------------------------------------------------------------------------------------
// The two clusters

interface Cluster {
  readonly tracker: Tracker;
  start(): Promise<void>;
  /** Whether every running node sees every node alive; else a short account of who lags. */
  converged(): Promise<true | string>;
  /** SIGKILL node i; returns the moment just before the signal. */
  kill(i: number): number;
  restart(i: number): Promise<void>;
}

interface PkNode {
  readonly name: string;
  readonly data: string;
  readonly listen: string;
  readonly api: string;
  readonly argv: readonly string[];
  id: string;
  child: Child | undefined;
  stream: ClientRequest | undefined;
}

interface PkStatus {
  readonly id: string;
  readonly members: ReadonlyArray<{ readonly id: string; readonly state: string }>;
}

class PkCluster implements Cluster {
  readonly tracker: Tracker;
  readonly dir: string;
  readonly token = makeToken();
  readonly nodes: PkNode[] = [];
  readonly #procs: Processes;
  readonly #index = new Map<string, number>();

  constructor(dir: string, ports: Array<{ listen: number; api: number }>, procs: Processes) {
    this.dir = dir;
    this.#procs = procs;
    for (const [i, port] of ports.entries()) {
      const name = `n${i + 1}`;
      const data = join(dir, name);
      const listen = `${HOST}:${port.listen}`;
      const argv = pkNodeArgv({ name, data, listen, api: `${HOST}:${port.api}`, token: this.token, join: this.nodes[0]?.listen });
      this.nodes.push({ name, data, listen, api: `http://${HOST}:${port.api}`, argv, id: "", child: undefined, stream: undefined });
    }
    this.tracker = new Tracker("pkernel", this.nodes.map((node) => node.name));
  }

  async start(): Promise<void> {
    await this.#launch(0);
    await Promise.all(this.nodes.slice(1).map((_, i) => this.#launch(i + 1)));
  }

  async converged(): Promise<true | string> {
    const ids = this.nodes.map((node) => node.id);
    const lags = await Promise.all(this.nodes.map(async (node) => {
      if (node.child?.exit !== undefined) return `${node.name} is not running`;
      let status: PkStatus;
      try {
        const response = await fetch(`${node.api}/v1/status`, { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
        status = await response.json() as PkStatus;
      } catch (error) {
        return `${node.name} did not answer /v1/status (${(error as Error).message})`;
      }
      const wrong = ids.flatMap((id) => {
        const state = status.members.find((member) => member.id === id)?.state ?? "unknown";
        return state === "alive" ? [] : [`${this.nodes[this.#index.get(id) ?? -1]?.name ?? id} ${state}`];
      });
      return wrong.length === 0 ? undefined : `${node.name} sees ${wrong.join(", ")}`;
    }));
    const problems = lags.filter((lag) => lag !== undefined);
    return problems.length === 0 ? true : problems.join("; ");
  }

  kill(i: number): number {
    const node = this.nodes[i] as PkNode;
    const at = sigkill(node.child);
    node.stream?.destroy();
    node.stream = undefined;
    return at;
  }

  async restart(i: number): Promise<void> {
    await (this.nodes[i] as PkNode).child?.exited;
    await this.#launch(i);
  }

  async #launch(i: number): Promise<void> {
    const node = this.nodes[i] as PkNode;
    const { child, ready } = startPkNode(this.#procs, `p-kernel node ${node.name}`, node.data, node.argv, node.id, START_TIMEOUT_MS);
    node.child = child;
    const id = await ready;
    node.id = id;
    this.#index.set(id, i);
    await this.#connect(i);
    this.#writeClusterFile();
  }

  /** Opens node i's event stream; resolves once the stream's headers arrived. */
  #connect(i: number): Promise<void> {
    const node = this.nodes[i] as PkNode;
    return new Promise<void>((resolve, reject) => {
      const request = httpGet(`${node.api}/v1/events`, { headers: { Accept: "text/event-stream", Authorization: `Bearer ${this.token}` } }, (response) => {
        if (response.statusCode !== 200) {
          response.resume();
          reject(new Error(`p-kernel node ${node.name}: GET /v1/events answered ${response.statusCode}`));
          return;
        }
        response.setEncoding("utf8");
        let buffer = "";
        response.on("data", (chunk: string) => {
          const at = performance.now();
          buffer += chunk;
          for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(nl + 1);
            if (line.startsWith("data: ")) this.#onEvent(i, line.slice(6), at);
          }
        });
        response.on("error", () => undefined);
        resolve();
      });
      // After a kill the stream breaks; that is expected.
      request.on("error", (error) => reject(error));
      node.stream = request;
    });
  }

  #onEvent(observer: number, json: string, at: number): void {
    let event: { type?: unknown; data?: { id?: unknown } };
    try {
      event = JSON.parse(json) as typeof event;
    } catch {
      return;
    }
    const kind = event.type === "member-dead" ? "dead" : event.type === "member-suspect" ? "suspect" : undefined;
    const id = event.data?.id;
    if (kind === undefined || typeof id !== "string") return;
    const subject = this.#index.get(id);
    if (subject !== undefined) this.tracker.observe(kind, observer, subject, at);
  }

  /** cluster.json as `pk up` writes it, so that `pk shell --dir DIR` attaches during a run. */
  #writeClusterFile(): void {
    const cluster = {
      token: this.token,
      nodes: this.nodes.filter((node) => node.id !== "").map((node) => ({
        id: node.id, pid: node.child?.proc.pid ?? null, listen: node.listen, api: node.api, data: node.data,
        argv: node.argv, name: node.name, state: node.child?.exit === undefined ? "running" : "stopped",
      })),
    };
    writeFileSync(join(this.dir, "cluster.json"), `${JSON.stringify(cluster, null, 2)}\n`, { mode: 0o600 });
  }
}

type SerfState = "alive" | "failed" | "left";

interface SerfAgent {
  readonly name: string;
  readonly bind: string;
  readonly rpc: string;
  child: Child | undefined;
  /** Members as this agent's log says it sees them. */
  view: Map<string, SerfState>;
}

const SERF_LINE = /\[(?:INFO|WARN)\] (serf: EventMember(Join|Failed|Leave|Reap): (\S+)|memberlist: Suspect (\S+) has failed)/;

class SerfCluster implements Cluster {
  readonly tracker: Tracker;
  readonly agents: SerfAgent[] = [];
  readonly #procs: Processes;
  readonly #index = new Map<string, number>();

  constructor(ports: Array<{ bind: number; rpc: number }>, procs: Processes) {
    this.#procs = procs;
    for (const [i, port] of ports.entries()) {
      const name = `s${i + 1}`;
      this.#index.set(name, i);
      this.agents.push({ name, bind: `${HOST}:${port.bind}`, rpc: `${HOST}:${port.rpc}`, child: undefined, view: new Map() });
    }
    this.tracker = new Tracker("serf", this.agents.map((agent) => agent.name));
  }

  async start(): Promise<void> {
    await this.#launch(0);
    await Promise.all(this.agents.slice(1).map((_, i) => this.#launch(i + 1)));
  }

  converged(): Promise<true | string> {
    const problems: string[] = [];
    for (const agent of this.agents) {
      if (agent.child?.exit !== undefined) {
        problems.push(`${agent.name} is not running`);
        continue;
      }
      const wrong = this.agents.flatMap((other) => {
        const state = agent.view.get(other.name) ?? "unknown";
        return state === "alive" ? [] : [`${other.name} ${state}`];
      });
      if (wrong.length > 0) problems.push(`${agent.name} sees ${wrong.join(", ")}`);
    }
    return Promise.resolve(problems.length === 0 ? true : problems.join("; "));
  }

  kill(i: number): number {
    return sigkill((this.agents[i] as SerfAgent).child);
  }

  async restart(i: number): Promise<void> {
    await (this.agents[i] as SerfAgent).child?.exited;
    await this.#launch(i);
  }

  async #launch(i: number): Promise<void> {
    const agent = this.agents[i] as SerfAgent;
    agent.view = new Map();
    const seed = this.agents[0] as SerfAgent;
    const args = [
      "agent", "-node", agent.name, "-bind", agent.bind, "-rpc-addr", agent.rpc, "-profile", "lan", "-log-level", "info",
      ...(i > 0 ? ["-join", seed.bind] : []),
    ];
    let ready: () => void = () => undefined;
    const running = new Promise<void>((resolve) => {
      ready = resolve;
    });
    const child = this.#procs.start("serf", args, { onLine: (line, at) => {
      if (line.includes("==> Log data will now stream in")) {
        ready();
        return;
      }
      const match = SERF_LINE.exec(line);
      if (match === null) return;
      const suspect = match[4];
      if (suspect !== undefined) {
        const subject = this.#index.get(suspect);
        if (subject !== undefined) this.tracker.observe("suspect", i, subject, at);
        return;
      }
      const name = match[3] as string;
      const event = match[2] as "Join" | "Failed" | "Leave" | "Reap";
      if (event === "Reap") agent.view.delete(name);
      else agent.view.set(name, event === "Join" ? "alive" : event === "Failed" ? "failed" : "left");
      const subject = this.#index.get(name);
      if (event === "Failed" && subject !== undefined) this.tracker.observe("dead", i, subject, at);
    } });
    agent.child = child;
    await waitReady(child, `serf agent ${agent.name}`, running, START_TIMEOUT_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// The run

function serfVersion(): string {
  const result = spawnSync("serf", ["version"], { encoding: "utf8" });
  if (result.error !== undefined || result.status !== 0) {
    process.stderr.write(
      "bench swim: HashiCorp serf is not installed (no `serf` on PATH).\n"
      + "Install it with `apt-get install serf` (Debian/Ubuntu), or run only p-kernel: npm run bench -- swim --systems pkernel\n",
    );
    process.exit(1);
  }
  return result.stdout.split("\n")[0]?.trim() ?? "serf";
}

async function waitConverged(clusters: readonly Cluster[], what: string): Promise<void> {
  const deadline = performance.now() + CONVERGE_TIMEOUT_MS;
  for (;;) {
    const states = await Promise.all(clusters.map((cluster) => cluster.converged()));
    if (states.every((state) => state === true)) return;
    if (performance.now() > deadline) {
      const lags = states.flatMap((state, i) => (state === true ? [] : [`${(clusters[i] as Cluster).tracker.system}: ${state}`]));
      throw new Error(`${what}: not converged after ${CONVERGE_TIMEOUT_MS / 1000} s (${lags.join(" | ")})`);
    }
    await sleep(250);
  }
}

function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const cpu of cpus()) {
    const t = cpu.times;
    const sum = t.user + t.nice + t.sys + t.idle + t.irq;
    total += sum;
    busy += sum - t.idle;
  }
  return { busy, total };
}

export async function run(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "10" },
      nodes: { type: "string", default: "5" },
      timeout: { type: "string", default: "60" },
      "no-load": { type: "boolean", default: false },
      systems: { type: "string", default: "pkernel,serf" },
    },
    strict: true,
  });
  const rounds = Number(values.rounds);
  const n = Number(values.nodes);
  const timeoutMs = Number(values.timeout) * 1000;
  const systems = new Set(values.systems.split(",").map((s) => s.trim()));
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);
  if (!Number.isInteger(n) || n < 3 || n > 32) throw new Error(`--nodes must be an integer from 3 to 32, got ${values.nodes}`);
  if (!(timeoutMs > 0)) throw new Error(`--timeout must be a positive number of seconds, got ${values.timeout}`);
  for (const s of systems) if (s !== "pkernel" && s !== "serf") throw new Error(`--systems takes pkernel and/or serf, got ${s}`);
  const serfVer = systems.has("serf") ? serfVersion() : null;
  const load = !values["no-load"];

  const workspace = new Workspace("swim");
  const { procs, dir } = workspace;
  const log = (line: string): void => {
    process.stderr.write(`swim: ${line}\n`);
  };

  try {
    const taken = new Set<number>();
    const clusters: Cluster[] = [];
    let pk: PkCluster | undefined;
    let serf: SerfCluster | undefined;
    if (systems.has("pkernel")) {
      pk = new PkCluster(dir, await freePorts(taken, n, ["listen", "api"]), procs);
      clusters.push(pk);
    }
    if (systems.has("serf")) {
      serf = new SerfCluster(await freePorts(taken, n, ["bind", "rpc"]), procs);
      clusters.push(serf);
    }
    log(`starting ${clusters.map((c) => `${n} ${c.tracker.system === "pkernel" ? "p-kernel nodes" : "serf agents"}`).join(" and ")} (p-kernel data and cluster.json in ${dir})`);
    await Promise.all(clusters.map((cluster) => cluster.start()));
    await waitConverged(clusters, "initial join");
    log("every node sees every other alive");

    // The machine's own load before ours: on a shared machine --no-load is not an idle CPU.
    const loadAvgBefore = loadavg()[0] ?? 0;
    const workers = load ? availableParallelism() : 0;
    for (let i = 0; i < workers; i++) procs.start(process.execPath, ["-e", LOAD_COMMAND]);
    if (workers > 0) {
      log(`CPU load: ${workers} busy-loop process${workers === 1 ? "" : "es"} (${cpus().length} CPUs)`);
      await sleep(1_000);
    }
    const cpuBefore = cpuTimes();
    const started = performance.now();
    /** Clusters still measured: p-kernel drops out when it publishes no SWIM report at all. */
    let measured = [...clusters];
    let pkernelError: string | undefined;

    for (let r = 1; r <= rounds; r++) {
      await waitConverged(clusters, `before round ${r}`);
      await sleep(PROBE_INTERVAL_MS + Math.random() * PROBE_INTERVAL_MS);
      const victim = 1 + ((r - 1) % (n - 1));
      // Back to back: both systems lose their victim within microseconds of each other.
      for (const cluster of measured) cluster.tracker.begin(r, victim, cluster.kill(victim));
      const killedAt = performance.now();
      while (performance.now() - killedAt < timeoutMs && !measured.every((cluster) => cluster.tracker.complete())) await sleep(20);
      const records = measured.map((cluster) => ({ system: cluster.tracker.system, record: cluster.tracker.end() }));
      log(`round ${r}/${rounds}: victim node ${victim + 1}; ${records.map(({ system, record }) =>
        `${system} dead after [${record.deadMs.map((ms) => Math.round(ms)).join(", ")}] ms`
        + `${record.misses > 0 ? `, ${record.misses} missed` : ""}, first suspect ${record.firstSuspectMs === null ? "-" : Math.round(record.firstSuspectMs)} ms`).join("; ")}`);

      await Promise.all(measured.map((cluster) => cluster.restart(victim)));
      await waitConverged(clusters, `after restarting node ${victim + 1} in round ${r}`);
      for (const cluster of measured) cluster.tracker.recovered(victim);

      if (r === 1 && pk !== undefined && measured.includes(pk) && pk.tracker.reportsSeen === 0) {
        pkernelError = `no p-kernel node published a member-suspect or member-dead event within ${timeoutMs / 1000} s of a kill in round 1: the kernel does not forward SWIM events to /v1/events; p-kernel was not measured further`;
        log(pkernelError);
        measured = measured.filter((cluster) => cluster !== pk);
        if (measured.length === 0) break;
      }
    }

    const cpuAfter = cpuTimes();
    const pkSummary: Summary | null = pk === undefined ? null : { ...pk.tracker.summary(), ...(pkernelError !== undefined ? { error: pkernelError } : {}) };
    const serfSummary: Summary | null = serf === undefined ? null : serf.tracker.summary();
    const ratio = (key: "medianMs" | "p90Ms"): number | null => {
      const a = pkSummary?.[key];
      const b = serfSummary?.[key];
      return typeof a === "number" && typeof b === "number" && b > 0 ? Math.round((a / b) * 1000) / 1000 : null;
    };
    const medianRatio = ratio("medianMs");
    const met = medianRatio !== null && medianRatio <= 0.5 && load
      && pkSummary?.falsePositives === 0 && serfSummary?.falsePositives === 0 && pkSummary.misses === 0;
    return {
      bench: "swim",
      rounds,
      nodes: n,
      kill: `${clusters.length > 1 ? "simultaneous: each round SIGKILLs one p-kernel node and one serf agent back to back" : "each round SIGKILLs one node"}; the victim rotates over nodes 2..${n} (node 1 is the seed restarts join through)`,
      timeoutMs,
      load: {
        enabled: load,
        workers,
        command: workers > 0 ? `${process.execPath} -e "${LOAD_COMMAND}"` : null,
        cpus: cpus().length,
        /** Every CPU's busy share over the rounds (all processes on the machine, not only ours). */
        cpuBusyPercent: Math.round((1000 * (cpuAfter.busy - cpuBefore.busy)) / Math.max(1, cpuAfter.total - cpuBefore.total)) / 10,
        /** 1-minute load average before the busy loops started, and after the last round. */
        loadAverage1m: { before: Math.round(loadAvgBefore * 100) / 100, after: Math.round((loadavg()[0] ?? 0) * 100) / 100 },
      },
      wallMs: Math.round(performance.now() - started),
      probeIntervalMs: { pkernel: PROBE_INTERVAL_MS, serf: PROBE_INTERVAL_MS },
      detection: {
        pkernel: "member-dead on each survivor's GET /v1/events stream",
        serf: "EventMemberFailed in each survivor's log (stdout)",
      },
      versions: { node: process.version, serf: serfVer },
      pkernel: pkSummary,
      serf: serfSummary,
      ratio: { median: medianRatio, p90: ratio("p90Ms") },
      target: "pkernel median <= 0.5 x serf",
      targetConditions: "median ratio <= 0.5, CPU load on, zero false positives in both, no p-kernel misses",
      met,
    };
  } finally {
    await workspace.close(3_000);
  }
}
