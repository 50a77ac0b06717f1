// `npm run bench -- raft [--only pk|etcd] [--clients 1,16,64] [--seconds S] [--warmup S] [--failovers N]
//                        [--heartbeat-ms H] [--election-ms E] [--timeout-ms T] [--failover-clients N] [--hedge-ms H]
//                        [--dir ROOT] [--value-bytes B]`:
// replicated write throughput, latency and failover of p-kernel's Raft KV against etcd, issue 4.
//
// Starts a 3-node p-kernel cluster (`pk node` processes) and a 3-member etcd cluster (Debian package
// `etcd-server`) on loopback, one system after the other so that each has the machine to itself,
// both fsyncing every commit (p-kernel: its store's durable batches, SQLite synchronous=FULL; etcd:
// its default WAL fdatasync — no unsafe flag exists or is passed). Data lives in a fresh temporary
// folder, removed at the end, made in --dir ROOT when given (both systems: e.g. /dev/shm, a tmpfs,
// to see them on a fast disk) and in the system's temporary folder otherwise.
//
// Each level also reports what the servers spent per acknowledged write while it was measured: CPU
// milliseconds of the three server processes together (Linux: /proc/PID/stat, every thread), and
// fsyncs per write of each member (p-kernel: the `raft` command's disk line, its Raft log batches;
// etcd: its etcd_disk_wal_fsync_duration_seconds_count metric). On a machine shared with other
// work, CPU per write is the steadier figure: throughput follows what the others leave free.
//
// Throughput and latency: for each level of --clients (default 1, 16, 64), that many clients run in
// this process, each a loop of sequential writes of a random key out of 1,000 with a 100-byte value
// (--value-bytes),
// for --warmup (1 s, not counted) and then --seconds (5 s). Client c starts on member c mod 3; a
// 307 names the leader and the client then sticks to it; an error moves it to the next member.
//   - p-kernel: `PUT /v1/kv/bench-NNNN`, the raw value as body → 200 once committed (a follower
//     forwards the write, or answers 307 with the leader in Location, which is followed).
//   - etcd: its JSON gateway, `POST /v3/kv/put` with `{"key": base64, "value": base64}` → 200 (a
//     follower forwards the proposal to the leader itself).
// Each level reports the writes completed per second, the p50 and p99 of the latency the client
// saw (redirects included), the errors, and p-kernel / etcd ratios.
//
// Failover: --failover-clients (4) clients write continuously through every member. One second in
// (plus a random 0–0.5 s), the leader process is SIGKILLed; the failover time is from the kill to
// the first write *sent after the kill* that is acknowledged (an answer to an earlier write could
// be the old leader's last commit reaching a follower). A write that gets no answer within
// --hedge-ms (50) is hedged by another to the next member, and a failed one is retried on the next
// member at once, so the measurement is not a client timeout. The victim is restarted with the
// same command line and data folder, and the cluster is healthy again (every member up, one agreed
// leader, a write through each member succeeds) before the next of --failovers (5) rounds.
// Both systems use the same heartbeat and election timeouts: --heartbeat-ms (30) and --election-ms
// (150) are passed to etcd as --heartbeat-interval and --election-timeout (etcd needs the election
// timeout to be at least 5 heartbeats, and draws its randomized timeout from [E, 2E) like etcd-raft,
// which p-kernel's Raft follows); they must equal p-kernel's Raft settings, which are compiled in
// (the bench prints p-kernel's /v1/status `raft` object so they can be compared). etcd also gets
// --pre-vote, which p-kernel's Raft has (and etcd enables by default from 3.5 on); etcd always has
// check-quorum.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, fdatasyncSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { Agent, request } from "node:http";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { makeToken } from "../src/adapters/seal.ts";
import { describeExit, freePorts, HOST, pkNodeArgv, type Child, type Processes, sigkill, startPkNode, waitReady, Workspace } from "./procs.ts";

const MEMBERS = 3;
const KEYS = 1_000;
/** Bytes of each written value unless --value-bytes says otherwise. */
const VALUE_BYTES_DEFAULT = 100;
/** At most this many bytes per value (p-kernel's KV takes up to 64 KiB). */
const VALUE_BYTES_MAX = 65_536;
/** Distinct values written (each --value-bytes random printable characters), made once. */
const VALUES = 64;
const START_TIMEOUT_MS = 30_000;
const HEALTHY_TIMEOUT_MS = 60_000;
const STATUS_TIMEOUT_MS = 2_000;
/** Pause after a failed write before the client tries the next member. */
const ERROR_BACKOFF_MS = 10;
/** Pause after a failed write during failover before the next attempt (on the next member). */
const RETRY_BACKOFF_MS = 5;
/** Attempts one failover client keeps in flight at most (the first plus hedges and retries). */
const HEDGE_INFLIGHT_MAX = 8;
/** Time from the start of a failover round to the kill: this plus a random 0..KILL_JITTER_MS. */
const STEADY_MS = 1_000;
const KILL_JITTER_MS = 500;
const REDIRECTS_MAX = 3;
const ERROR_KINDS_MAX = 8;
const TARGET_FAILOVER_MEDIAN_MS = 300;
const TARGET_CLIENTS = 64;

type SystemName = "pk" | "etcd";

// ---------------------------------------------------------------------------------------------
// Processes

/** The environment without ETCD_* variables, which etcd would read as flags. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("ETCD_")));
}

// ---------------------------------------------------------------------------------------------
// HTTP

interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

interface HttpResponse {
  readonly status: number;
  readonly location: string | undefined;
  readonly body: string;
}

/** node:http with one keep-alive Agent per origin, every request bounded by a timeout. */
class Http {
  readonly #maxSockets: number;
  readonly #agents = new Map<string, Agent>();
  readonly #urls = new Map<string, URL>();

  constructor(maxSockets: number) {
    this.#maxSockets = maxSockets;
  }

  send(origin: string, req: HttpRequest, timeoutMs: number, signal?: AbortSignal): Promise<HttpResponse> {
    let url = this.#urls.get(origin);
    if (url === undefined) {
      url = new URL(origin);
      this.#urls.set(origin, url);
    }
    let agent = this.#agents.get(origin);
    if (agent === undefined) {
      agent = new Agent({ keepAlive: true, maxSockets: this.#maxSockets });
      this.#agents.set(origin, agent);
    }
    const { hostname, port } = url;
    return new Promise<HttpResponse>((resolve, reject) => {
      const fail = (error: Error): void => {
        clearTimeout(timer);
        reject(error);
      };
      const outgoing = request({
        host: hostname, port, method: req.method, path: req.path, agent,
        headers: { ...req.headers, "Content-Length": String(Buffer.byteLength(req.body)) },
        ...(signal !== undefined ? { signal } : {}),
      }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (body.length < 4_096) body += chunk;
        });
        res.on("end", () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, location: res.headers.location, body });
        });
        res.on("error", fail);
      });
      const timer = setTimeout(() => outgoing.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      outgoing.on("error", fail);
      outgoing.end(req.body);
    });
  }

  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}

function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && !error.message.includes(code) ? `${code} ${error.message}` : error.message;
}

// ---------------------------------------------------------------------------------------------
// The two clusters

interface Member {
  readonly name: string;
  /** Client API base URL, e.g. "http://127.0.0.1:23791". */
  readonly origin: string;
  readonly argv: readonly string[];
  child: Child | undefined;
  /** The system's own id of the member: p-kernel node id, etcd member id (decimal); "" until known. */
  id: string;
}

/** One of the two clusters: what is particular to it is abstract; killing, restarting and stopping members is common. */
abstract class System {
  abstract readonly name: SystemName;
  readonly members: Member[] = [];
  protected readonly procs: Processes;

  constructor(procs: Processes) {
    this.procs = procs;
  }

  abstract start(): Promise<void>;
  /** The index of the member the running members agree leads, or why there is none. */
  abstract leader(http: Http): Promise<number | string>;
  /** The request that writes key number `key` with value number `value`. */
  abstract put(key: number, value: number): HttpRequest;
  /** Starts member i, with the same command line on a restart, and waits until it is ready. */
  protected abstract launch(i: number): Promise<void>;

  /** SIGKILL member i; returns the moment just before the signal. */
  kill(i: number): number {
    return sigkill((this.members[i] as Member).child);
  }

  async restart(i: number): Promise<void> {
    await (this.members[i] as Member).child?.exited;
    await this.launch(i);
  }

  async stop(): Promise<void> {
    await this.procs.stop(this.members.map((member) => member.child), 5_000);
  }

  /** Each member's CPU time and fsyncs so far (null where they cannot be read). */
  async counters(): Promise<MemberCounters[]> {
    return Promise.all(this.members.map(async (member) => ({
      cpuMs: cpuMsOf(member.child),
      fsyncs: member.child?.exit === undefined ? await this.fsyncs(member).catch(() => null) : null,
    })));
  }

  /** Fsyncs of the member's log so far. */
  protected abstract fsyncs(member: Member): Promise<number | null>;
}

interface MemberCounters {
  readonly cpuMs: number | null;
  readonly fsyncs: number | null;
}

/** The kernel's clock ticks per second, the unit of /proc/PID/stat's CPU times (USER_HZ: 100 nearly everywhere). */
const CLOCK_TICKS_PER_S = ((): number => {
  if (process.platform !== "linux") return 100;
  const result = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5_000 });
  const hz = Number(result.stdout?.trim());
  return Number.isInteger(hz) && hz > 0 ? hz : 100;
})();

/** Milliseconds of CPU (user + system, every thread) the process has used: Linux only, else null. */
function cpuMsOf(child: Child | undefined): number | null {
  const pid = child?.proc.pid;
  if (pid === undefined || child?.exit !== undefined || process.platform !== "linux") return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces), from field 3 on: utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? (ticks * 1000) / CLOCK_TICKS_PER_S : null;
  } catch {
    return null;
  }
}

/** What the servers spent per acknowledged write between two readings of their counters. */
function perWrite(before: readonly MemberCounters[], after: readonly MemberCounters[], writes: number): ServerCost {
  if (writes === 0) return { cpuMsPerWrite: null, fsyncsPerWrite: before.map(() => null) };
  let cpu = 0;
  let cpuKnown = true;
  const fsyncs = before.map((b, i) => {
    const a = after[i];
    if (b.cpuMs === null || a?.cpuMs === null || a === undefined) cpuKnown = false;
    else cpu += a.cpuMs - b.cpuMs;
    return b.fsyncs === null || a?.fsyncs === null || a === undefined ? null : round2((a.fsyncs - b.fsyncs) / writes);
  });
  return { cpuMsPerWrite: cpuKnown ? Math.round((cpu / writes) * 1000) / 1000 : null, fsyncsPerWrite: fsyncs };
}

interface ServerCost {
  /** CPU milliseconds of all members together per acknowledged write. */
  readonly cpuMsPerWrite: number | null;
  /** Per member: fsyncs of its log per acknowledged write. */
  readonly fsyncsPerWrite: ReadonlyArray<number | null>;
}

const KEY_NAMES = Array.from({ length: KEYS }, (_, k) => `bench-${String(k).padStart(4, "0")}`);
/** The values written (VALUES of them, `bytes` random printable characters each); set by run(). */
let VALUE_TEXTS: readonly string[] = [];

function makeValues(bytes: number): string[] {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from({ length: VALUES }, () => {
    let text = "";
    for (let i = 0; i < bytes; i++) text += alphabet[Math.floor(Math.random() * alphabet.length)];
    return text;
  });
}

interface PkStatus {
  readonly id?: unknown;
  readonly raft?: { readonly state?: unknown; readonly leader?: unknown; readonly term?: unknown };
}

class PkCluster extends System {
  override readonly name = "pk";
  readonly token = makeToken();
  readonly #dir: string;
  readonly #headers: Readonly<Record<string, string>>;

  constructor(dir: string, ports: ReadonlyArray<{ listen: number; api: number }>, procs: Processes) {
    super(procs);
    this.#dir = dir;
    // The API needs the token for writes (and sends it for reads, as a client off loopback must).
    this.#headers = { Authorization: `Bearer ${this.token}`, "Content-Type": "application/octet-stream" };
    let seed: string | undefined;
    for (const [i, port] of ports.entries()) {
      const name = `n${i + 1}`;
      const listen = `${HOST}:${port.listen}`;
      const argv = pkNodeArgv({ name, data: join(dir, name), listen, api: `${HOST}:${port.api}`, token: this.token, join: seed });
      seed ??= listen;
      this.members.push({ name, origin: `http://${HOST}:${port.api}`, argv, child: undefined, id: "" });
    }
  }

  override async start(): Promise<void> {
    await this.launch(0);
    await Promise.all(this.members.slice(1).map((_, i) => this.launch(i + 1)));
  }

  override put(key: number, value: number): HttpRequest {
    return { method: "PUT", path: `/v1/kv/${KEY_NAMES[key] as string}`, headers: this.#headers, body: VALUE_TEXTS[value] as string };
  }

  statusRequest(): HttpRequest {
    return { method: "GET", path: "/v1/status", headers: { Authorization: this.#headers.Authorization as string }, body: "" };
  }

  override async leader(http: Http): Promise<number | string> {
    const views = await Promise.all(this.members.map(async (member) => {
      if (member.child?.exit !== undefined) return null;
      try {
        const response = await http.send(member.origin, this.statusRequest(), STATUS_TIMEOUT_MS);
        if (response.status !== 200) return `${member.name}: GET /v1/status answered ${response.status}`;
        return JSON.parse(response.body) as PkStatus;
      } catch (error) {
        return `${member.name}: GET /v1/status failed (${errorText(error)})`;
      }
    }));
    return agreedLeader(this.members, views.map((view) => {
      if (view === null || typeof view === "string") return view;
      const leader = view.raft?.leader;
      return { id: typeof view.id === "string" ? view.id : "", leader: typeof leader === "string" && leader !== "" ? leader : undefined, leading: view.raft?.state === "leader" };
    }));
  }

  /** The `raft` command's disk line: "N fsyncs for M entries". */
  protected override async fsyncs(member: Member): Promise<number | null> {
    const response = await fetch(`${member.origin}/v1/shell`, {
      method: "POST",
      headers: { Authorization: this.#headers.Authorization as string, "Content-Type": "application/json" },
      body: JSON.stringify({ line: "raft" }),
      signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
    });
    const body = (await response.json()) as { output?: unknown };
    const match = typeof body.output === "string" ? /(\d+) fsyncs for \d+ entries/.exec(body.output) : null;
    return match === null ? null : Number(match[1]);
  }

  /** The `raft` object of one member's /v1/status, printed with the settings. */
  async raftStatus(http: Http): Promise<unknown> {
    try {
      const response = await http.send((this.members[0] as Member).origin, this.statusRequest(), STATUS_TIMEOUT_MS);
      return (JSON.parse(response.body) as PkStatus).raft ?? null;
    } catch {
      return null;
    }
  }

  protected override async launch(i: number): Promise<void> {
    const member = this.members[i] as Member;
    const { child, ready } = startPkNode(this.procs, `p-kernel node ${member.name}`, join(this.#dir, member.name), member.argv, member.id, START_TIMEOUT_MS);
    member.child = child;
    member.id = await ready;
  }
}

interface EtcdStatus {
  readonly header?: { readonly member_id?: unknown };
  readonly leader?: unknown;
}

class EtcdCluster extends System {
  override readonly name = "etcd";
  readonly binary: string;
  /** Every member's flags but its own name, folders and URLs. */
  readonly commonFlags: readonly string[];
  readonly #env = cleanEnv();

  constructor(binary: string, dir: string, ports: ReadonlyArray<{ client: number; peer: number }>, timing: { heartbeatMs: number; electionMs: number }, procs: Processes) {
    super(procs);
    this.binary = binary;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const peers = ports.map((port, i) => `e${i + 1}=http://${HOST}:${port.peer}`).join(",");
    this.commonFlags = [
      "--initial-cluster", peers, "--initial-cluster-state", "new", "--initial-cluster-token", "pk-bench-raft",
      "--heartbeat-interval", String(timing.heartbeatMs), "--election-timeout", String(timing.electionMs), "--pre-vote=true",
      "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
    ];
    for (const [i, port] of ports.entries()) {
      const name = `e${i + 1}`;
      const client = `http://${HOST}:${port.client}`;
      const peer = `http://${HOST}:${port.peer}`;
      // On a restart the data folder holds the member's WAL, and etcd ignores the --initial-* flags.
      const argv = [
        binary, "--name", name, "--data-dir", join(dir, name),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, ...this.commonFlags,
      ];
      this.members.push({ name, origin: client, argv, child: undefined, id: "" });
    }
  }

  override async start(): Promise<void> {
    // A member serves clients only once the cluster has a quorum: start all three, then wait.
    await Promise.all(this.members.map((_, i) => this.launch(i)));
  }

  override put(key: number, value: number): HttpRequest {
    const body = `{"key":"${Buffer.from(KEY_NAMES[key] as string).toString("base64")}","value":"${Buffer.from(VALUE_TEXTS[value] as string).toString("base64")}"}`;
    return { method: "POST", path: "/v3/kv/put", headers: { "Content-Type": "application/json" }, body };
  }

  /** etcd's count of WAL fsyncs (its fsync-duration histogram), from /metrics. */
  protected override async fsyncs(member: Member): Promise<number | null> {
    const response = await fetch(`${member.origin}/metrics`, { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
    const match = /^etcd_disk_wal_fsync_duration_seconds_count (\S+)$/m.exec(await response.text());
    return match === null ? null : Number(match[1]);
  }

  async status(http: Http, member: Member): Promise<EtcdStatus> {
    const response = await http.send(member.origin, { method: "POST", path: "/v3/maintenance/status", headers: { "Content-Type": "application/json" }, body: "{}" }, STATUS_TIMEOUT_MS);
    if (response.status !== 200) throw new Error(`POST /v3/maintenance/status answered ${response.status}: ${response.body.slice(0, 200)}`);
    return JSON.parse(response.body) as EtcdStatus;
  }

  override async leader(http: Http): Promise<number | string> {
    const views = await Promise.all(this.members.map(async (member) => {
      if (member.child?.exit !== undefined) return null;
      try {
        const status = await this.status(http, member);
        const id = String(status.header?.member_id ?? "");
        const leader = String(status.leader ?? "0");
        if (id !== "") member.id = id;
        return { id, leader: leader !== "0" && leader !== "" ? leader : undefined, leading: id !== "" && leader === id };
      } catch (error) {
        return `${member.name}: ${errorText(error)}`;
      }
    }));
    return agreedLeader(this.members, views);
  }

  protected override async launch(i: number): Promise<void> {
    const member = this.members[i] as Member;
    const child = this.procs.start(member.argv[0] as string, member.argv.slice(1), { env: this.#env });
    member.child = child;
    const http = new Http(1);
    try {
      const answering = (async () => {
        for (;;) {
          if (child.exit !== undefined) return;
          try {
            member.id = String((await this.status(http, member)).header?.member_id ?? "");
            return;
          } catch {
            await sleep(100);
          }
        }
      })();
      await waitReady(child, `etcd member ${member.name}`, answering, START_TIMEOUT_MS);
      if (child.exit !== undefined) throw new Error(describeExit(`etcd member ${member.name}`, child));
    } finally {
      http.close();
    }
  }
}

/** A member's view of the leader; a string says why it has none to give, null that it is not running. */
type LeaderView = { readonly id: string; readonly leader: string | undefined; readonly leading: boolean } | string | null;

/** The member every running member names as leader, and which says it leads; else why not. */
function agreedLeader(members: readonly Member[], views: readonly LeaderView[]): number | string {
  const problems = views.filter((view) => typeof view === "string");
  if (problems.length > 0) return problems.join("; ");
  const named = new Set(views.flatMap((view) => (view === null || typeof view === "string" ? [] : [view.leader])));
  const [leader] = named;
  if (named.size !== 1 || leader === undefined) {
    return `no agreed leader (${views.flatMap((view, i) => (view === null ? [] : [`${(members[i] as Member).name} says ${typeof view === "string" ? "?" : view.leader ?? "none"}`])).join(", ")})`;
  }
  const index = views.findIndex((view) => view !== null && typeof view !== "string" && view.id === leader);
  if (index < 0) return `the leader ${leader} is not one of the members`;
  const view = views[index];
  if (view === undefined || view === null || typeof view === "string" || !view.leading) return `${(members[index] as Member).name} is named leader but does not say it leads`;
  return index;
}

// ---------------------------------------------------------------------------------------------
// Writes

type Attempt =
  | { readonly ok: true; readonly origin: string; readonly redirects: number }
  | { readonly ok: false; readonly status: number; readonly error: string };

/** One write through `origin`, following up to REDIRECTS_MAX redirects to the leader. Never throws. */
async function write(http: Http, system: System, origin: string, timeoutMs: number, signal?: AbortSignal): Promise<Attempt> {
  const req = system.put(Math.floor(Math.random() * KEYS), Math.floor(Math.random() * VALUES));
  let at = origin;
  let path = req.path;
  for (let redirects = 0; ; redirects++) {
    let response: HttpResponse;
    try {
      response = await http.send(at, { ...req, path }, timeoutMs, signal);
    } catch (error) {
      return { ok: false, status: 0, error: errorText(error) };
    }
    if (response.status >= 200 && response.status < 300) return { ok: true, origin: at, redirects };
    if ((response.status === 307 || response.status === 308) && response.location !== undefined && redirects < REDIRECTS_MAX) {
      let next: URL;
      try {
        next = new URL(response.location, at);
      } catch {
        return { ok: false, status: response.status, error: `HTTP ${response.status} with a bad Location: ${response.location.slice(0, 100)}` };
      }
      at = next.origin;
      // A Location that is only the leader's base URL means: the same path there.
      if (next.pathname !== "/" && next.pathname !== "") path = `${next.pathname}${next.search}`;
      continue;
    }
    return { ok: false, status: response.status, error: `HTTP ${response.status}: ${response.body.slice(0, 160).replace(/\s+/g, " ")}` };
  }
}

class ErrorKinds {
  readonly #counts = new Map<string, number>();

  add(error: string): void {
    // Numbers (ports, ids, durations) would make every error its own kind.
    const kind = error.replace(/\d+/g, "N").slice(0, 120);
    if (this.#counts.has(kind) || this.#counts.size < ERROR_KINDS_MAX) this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + 1);
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.#counts].sort((a, b) => b[1] - a[1]));
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Quantile of sorted values with linear interpolation between closest ranks; null for none. */
function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const a = sorted[lo] as number;
  const b = sorted[Math.ceil(pos)] as number;
  return round2(a + (b - a) * (pos - lo));
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return typeof a === "number" && typeof b === "number" && b > 0 ? Math.round((a / b) * 1000) / 1000 : null;
}

/** Every member running, one agreed leader, and a write through each member succeeds. */
async function waitHealthy(system: System, what: string): Promise<void> {
  const http = new Http(MEMBERS);
  const deadline = performance.now() + HEALTHY_TIMEOUT_MS;
  let why = "";
  try {
    for (;;) {
      const down = system.members.filter((member) => member.child === undefined || member.child.exit !== undefined);
      if (down.length > 0) {
        throw new Error(`${system.name} ${what}: ${down.map((member) => (member.child === undefined ? `${member.name} never started` : describeExit(member.name, member.child))).join("\n")}`);
      }
      const leader = await system.leader(http);
      if (typeof leader === "number") {
        const attempts = await Promise.all(system.members.map((member) => write(http, system, member.origin, STATUS_TIMEOUT_MS)));
        const failed = attempts.flatMap((attempt, i) => (attempt.ok ? [] : [{ member: system.members[i] as Member, attempt }]));
        if (failed.length === 0) return;
        for (const { attempt } of failed) {
          // The API is not there at all: waiting will not help.
          if (!attempt.ok && [404, 405, 501].includes(attempt.status)) {
            throw new Error(`${system.name}: a write answered ${attempt.error}${system.name === "pk" ? " (the p-kernel KV API, PUT /v1/kv/{key}, is not implemented in this build)" : ""}`);
          }
        }
        why = failed.map(({ member, attempt }) => `a write through ${member.name} failed: ${attempt.ok ? "" : attempt.error}`).join("; ");
      } else {
        why = leader;
        if (system.name === "pk" && why.startsWith("no agreed leader")) {
          // Fail fast when this build has no KV API (its /v1/status never names a leader).
          const probe = await write(http, system, (system.members[0] as Member).origin, STATUS_TIMEOUT_MS);
          if (!probe.ok && [404, 405, 501].includes(probe.status)) {
            throw new Error(`pk: PUT /v1/kv/{key} answered ${probe.error} (the p-kernel KV API is not implemented in this build)`);
          }
        }
      }
      if (performance.now() > deadline) throw new Error(`${system.name} ${what}: not healthy after ${HEALTHY_TIMEOUT_MS / 1000} s: ${why}`);
      await sleep(200);
    }
  } finally {
    http.close();
  }
}

interface LevelResult {
  readonly opsPerSec: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly meanMs: number | null;
  readonly maxMs: number | null;
  readonly ops: number;
  readonly errors: number;
  readonly redirects: number;
  readonly errorKinds: ErrorKinds;
  readonly server: ServerCost;
}

/** `clients` closed-loop clients for warmupMs, then measured for measureMs. */
async function runLevel(system: System, clients: number, warmupMs: number, measureMs: number, timeoutMs: number): Promise<LevelResult> {
  const http = new Http(clients);
  const latencies: number[] = [];
  const errorKinds = new ErrorKinds();
  let errors = 0;
  let redirects = 0;
  const from = performance.now() + warmupMs;
  const end = from + measureMs;
  const n = system.members.length;
  // The servers' counters when the measured time starts and once every client stopped; the writes
  // acknowledged in between are what they were spent on.
  let countedFrom = Number.POSITIVE_INFINITY;
  let writesSinceCounted = 0;
  const counted = sleep(warmupMs).then(async () => {
    const counters = await system.counters();
    countedFrom = performance.now();
    return counters;
  });
  const client = async (c: number): Promise<void> => {
    let next = c % n;
    let origin = (system.members[next] as Member).origin;
    while (performance.now() < end) {
      const sent = performance.now();
      const attempt = await write(http, system, origin, timeoutMs);
      const done = performance.now();
      const counted = done >= from && done <= end;
      if (attempt.ok) {
        if (done >= countedFrom) writesSinceCounted++;
        if (counted) {
          latencies.push(done - sent);
          redirects += attempt.redirects;
        }
        // Sticks to the leader a redirect named.
        origin = attempt.origin;
      } else {
        if (counted) {
          errors++;
          errorKinds.add(attempt.error);
        }
        next = (next + 1) % n;
        origin = (system.members[next] as Member).origin;
        await sleep(ERROR_BACKOFF_MS);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  } finally {
    http.close();
  }
  const before = await counted;
  const server = perWrite(before, await system.counters(), writesSinceCounted);
  latencies.sort((a, b) => a - b);
  return {
    opsPerSec: Math.round((latencies.length * 1000) / measureMs),
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    meanMs: latencies.length === 0 ? null : round2(latencies.reduce((sum, x) => sum + x, 0) / latencies.length),
    maxMs: latencies.length === 0 ? null : round2(latencies[latencies.length - 1] as number),
    ops: latencies.length,
    errors,
    redirects,
    errorKinds,
    server,
  };
}

interface FailoverRound {
  readonly round: number;
  readonly victim: string;
  /** Kill → first acknowledged write sent after the kill; null if none within the timeout. */
  readonly ms: number | null;
  readonly newLeader: string | null;
  /** Failed writes (errors, timeouts) between the kill and the first acknowledged write. */
  readonly failedWrites: number;
}

interface FailoverResult {
  readonly medianMs: number | null;
  readonly maxMs: number | null;
  readonly minMs: number | null;
  readonly samples: number;
  readonly misses: number;
  readonly perRound: readonly FailoverRound[];
  readonly errorKinds: ErrorKinds;
}

interface FailoverRun {
  readonly system: System;
  readonly http: Http;
  readonly timeoutMs: number;
  readonly hedgeMs: number;
  readonly errorKinds: ErrorKinds;
  stop: boolean;
  killedAt: number | undefined;
  firstAck: number | undefined;
  failedAfterKill: number;
}

/**
 * One write that is done when any attempt is acknowledged: the first goes to member `start`; an
 * attempt that fails is followed by one to the next member after RETRY_BACKOFF_MS, and every
 * hedgeMs another goes to the next member whatever the others do. With HEDGE_INFLIGHT_MAX attempts
 * in flight, a new one abandons the oldest (a write a dead leader swallowed may never be answered).
 * Resolves with the member to start the next write on.
 */
function hedgedWrite(run: FailoverRun, start: number): Promise<number> {
  const n = run.system.members.length;
  return new Promise<number>((resolve) => {
    let next = start;
    let settled = false;
    const inflight: Array<{ readonly abort: AbortController; abandoned: boolean }> = [];
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearInterval(hedge);
      for (const attempt of inflight) attempt.abort.abort();
      resolve(next);
    };
    const launch = (): void => {
      if (settled) return;
      if (run.stop) return finish();
      if (inflight.length >= HEDGE_INFLIGHT_MAX) {
        const oldest = inflight.shift();
        if (oldest !== undefined) {
          oldest.abandoned = true;
          oldest.abort.abort();
          if (run.killedAt !== undefined && run.firstAck === undefined) run.errorKinds.add(`no answer before ${HEDGE_INFLIGHT_MAX} newer attempts (abandoned)`);
        }
      }
      const origin = (run.system.members[next] as Member).origin;
      next = (next + 1) % n;
      const mine = { abort: new AbortController(), abandoned: false };
      inflight.push(mine);
      const sent = performance.now();
      void write(run.http, run.system, origin, run.timeoutMs, mine.abort.signal).then((attempt) => {
        const at = performance.now();
        const i = inflight.indexOf(mine);
        if (i >= 0) inflight.splice(i, 1);
        if (settled || mine.abandoned) return;
        if (attempt.ok) {
          if (run.killedAt !== undefined && sent >= run.killedAt) run.firstAck ??= at;
          return finish();
        }
        if (run.killedAt !== undefined && run.firstAck === undefined) {
          run.failedAfterKill++;
          run.errorKinds.add(attempt.error);
        }
        setTimeout(launch, RETRY_BACKOFF_MS);
      });
    };
    const hedge = setInterval(launch, run.hedgeMs);
    launch();
  });
}

async function runFailover(
  system: System, rounds: number, clients: number, hedgeMs: number, timeoutMs: number, giveUpMs: number, log: (line: string) => void,
): Promise<FailoverResult> {
  const perRound: FailoverRound[] = [];
  const errorKinds = new ErrorKinds();
  const n = system.members.length;
  for (let r = 1; r <= rounds; r++) {
    await waitHealthy(system, `before failover round ${r}`);
    const probe = new Http(MEMBERS);
    const victim = await system.leader(probe).finally(() => probe.close());
    if (typeof victim === "string") throw new Error(`${system.name}: no leader to kill in failover round ${r}: ${victim}`);
    const run: FailoverRun = {
      system, http: new Http(Infinity), timeoutMs, hedgeMs, errorKinds, stop: false, killedAt: undefined, firstAck: undefined, failedAfterKill: 0,
    };
    const loops = Array.from({ length: clients }, async (_, c) => {
      let start = c % n;
      while (!run.stop) start = await hedgedWrite(run, start);
    });
    let ms: number | null = null;
    try {
      await sleep(STEADY_MS + Math.random() * KILL_JITTER_MS);
      const killedAt = system.kill(victim);
      run.killedAt = killedAt;
      while (run.firstAck === undefined && performance.now() - killedAt < giveUpMs) await sleep(2);
      ms = run.firstAck === undefined ? null : round2(run.firstAck - killedAt);
    } finally {
      run.stop = true;
      await Promise.all(loops);
      run.http.close();
    }
    const after = new Http(MEMBERS);
    const newLeader = await system.leader(after).finally(() => after.close());
    const record: FailoverRound = {
      round: r,
      victim: (system.members[victim] as Member).name,
      ms,
      newLeader: typeof newLeader === "number" ? (system.members[newLeader] as Member).name : null,
      failedWrites: run.failedAfterKill,
    };
    perRound.push(record);
    log(`${system.name} failover ${r}/${rounds}: killed leader ${record.victim}, next write acknowledged after ${ms === null ? `nothing within ${giveUpMs} ms` : `${ms} ms`}${record.newLeader === null ? "" : `, new leader ${record.newLeader}`}`);
    await system.restart(victim);
  }
  await waitHealthy(system, "after the last failover round");
  const samples = perRound.flatMap((round) => (round.ms === null ? [] : [round.ms])).sort((a, b) => a - b);
  return {
    medianMs: quantile(samples, 0.5),
    maxMs: samples.length === 0 ? null : (samples[samples.length - 1] as number),
    minMs: samples.length === 0 ? null : (samples[0] as number),
    samples: samples.length,
    misses: perRound.length - samples.length,
    perRound,
    errorKinds,
  };
}

// ---------------------------------------------------------------------------------------------
// The run

function findEtcd(): { binary: string; version: string } | string {
  for (const binary of ["etcd", "/usr/bin/etcd"]) {
    if (binary.startsWith("/") && !existsSync(binary)) continue;
    const result = spawnSync(binary, ["--version"], { encoding: "utf8", env: cleanEnv(), timeout: 10_000 });
    if (result.error !== undefined || result.status !== 0) continue;
    const version = /etcd Version:\s*(\S+)/.exec(result.stdout)?.[1] ?? result.stdout.split("\n")[0]?.trim() ?? "?";
    return { binary, version };
  }
  return "etcd is not installed (no `etcd` on PATH or at /usr/bin/etcd). Install it with `apt-get install etcd-server` (Debian/Ubuntu), or run only p-kernel: npm run bench -- raft --only pk";
}

/** Median milliseconds of a 4 KiB write + fdatasync in `dir`: what a commit's fsync costs on this disk. */
function fdatasyncMs(dir: string): number | null {
  const file = join(dir, "fsync-probe");
  const block = Buffer.alloc(4_096, 1);
  const times: number[] = [];
  const fd = openSync(file, "w");
  try {
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      writeSync(fd, block, 0, block.length, (i % 16) * block.length);
      fdatasyncSync(fd);
      times.push(performance.now() - t);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  return quantile(times.sort((a, b) => a - b), 0.5);
}

function positiveNumber(name: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`--${name} must be a positive ${integer ? "integer" : "number"}, got ${text}`);
  }
  return value;
}

interface SystemRun {
  readonly levels: Map<number, LevelResult>;
  failover: FailoverResult | null;
  error: string | null;
  extra: Record<string, unknown>;
}

export async function run(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      only: { type: "string" },
      clients: { type: "string", default: "1,16,64" },
      seconds: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" },
      failovers: { type: "string", default: "5" },
      "heartbeat-ms": { type: "string", default: "30" },
      "election-ms": { type: "string", default: "150" },
      "timeout-ms": { type: "string", default: "2000" },
      "failover-clients": { type: "string", default: "4" },
      "hedge-ms": { type: "string", default: "50" },
      "failover-timeout": { type: "string", default: "10" },
      dir: { type: "string" },
      "value-bytes": { type: "string", default: String(VALUE_BYTES_DEFAULT) },
    },
    strict: true,
  });
  if (values.only !== undefined && values.only !== "pk" && values.only !== "etcd") throw new Error(`--only takes pk or etcd, got ${values.only}`);
  const systems: SystemName[] = values.only === undefined ? ["pk", "etcd"] : [values.only];
  const levels = values.clients.split(",").map((text) => positiveNumber("clients", text.trim(), true));
  const measureMs = positiveNumber("seconds", values.seconds, false) * 1000;
  const warmup = Number(values.warmup);
  if (!(warmup >= 0)) throw new Error(`--warmup must be a number of seconds >= 0, got ${values.warmup}`);
  const warmupMs = warmup * 1000;
  const failovers = values.failovers === "0" ? 0 : positiveNumber("failovers", values.failovers, true);
  const heartbeatMs = positiveNumber("heartbeat-ms", values["heartbeat-ms"], true);
  const electionMs = positiveNumber("election-ms", values["election-ms"], true);
  if (electionMs < 5 * heartbeatMs) throw new Error(`--election-ms must be at least 5 x --heartbeat-ms (etcd refuses less), got ${electionMs} and ${heartbeatMs}`);
  const timeoutMs = positiveNumber("timeout-ms", values["timeout-ms"], true);
  const failoverClients = positiveNumber("failover-clients", values["failover-clients"], true);
  const hedgeMs = positiveNumber("hedge-ms", values["hedge-ms"], true);
  const giveUpMs = positiveNumber("failover-timeout", values["failover-timeout"], false) * 1000;
  const valueBytes = positiveNumber("value-bytes", values["value-bytes"], true);
  if (valueBytes > VALUE_BYTES_MAX) throw new Error(`--value-bytes must be at most ${VALUE_BYTES_MAX}, got ${valueBytes}`);
  VALUE_TEXTS = makeValues(valueBytes);
  const root = values.dir;
  if (root !== undefined) {
    let isDir = false;
    try {
      isDir = statSync(root).isDirectory();
    } catch {
      // Reported below.
    }
    if (!isDir) throw new Error(`--dir must name an existing folder, got ${JSON.stringify(root.slice(0, 200))}`);
  }

  const log = (line: string): void => {
    process.stderr.write(`raft: ${line}\n`);
  };
  const etcd = systems.includes("etcd") ? findEtcd() : null;
  if (typeof etcd === "string") {
    process.stderr.write(`bench raft: ${etcd}\n`);
    process.exitCode = 1;
    return { bench: "raft", error: etcd };
  }

  const workspace = new Workspace("raft", root);
  const { procs, dir } = workspace;

  const started = performance.now();
  const loadBefore = loadavg()[0] ?? 0;
  let fsyncMs: number | null = null;
  try {
    fsyncMs = fdatasyncMs(dir);
  } catch (error) {
    log(`could not time fdatasync in ${dir}: ${errorText(error)}`);
  }
  const results = new Map<SystemName, SystemRun>();
  try {
    const taken = new Set<number>();
    for (const name of systems) {
      const result: SystemRun = { levels: new Map(), failover: null, error: null, extra: {} };
      results.set(name, result);
      let system: System | undefined;
      try {
        if (name === "pk") {
          system = new PkCluster(join(dir, "pk"), await freePorts(taken, MEMBERS, ["listen", "api"]), procs);
        } else {
          const ports = await freePorts(taken, MEMBERS, ["client", "peer"]);
          const cluster = new EtcdCluster((etcd as { binary: string }).binary, join(dir, "etcd"), ports, { heartbeatMs, electionMs }, procs);
          result.extra = { binary: cluster.binary, flags: cluster.commonFlags };
          system = cluster;
        }
        log(`${name}: starting ${MEMBERS} members (data in ${join(dir, name)})`);
        await system.start();
        await waitHealthy(system, "after start");
        if (system instanceof PkCluster) {
          const http = new Http(1);
          result.extra = { raftStatus: await system.raftStatus(http) };
          http.close();
        }
        for (const clients of levels) {
          await waitHealthy(system, `before the ${clients}-client level`);
          const level = await runLevel(system, clients, warmupMs, measureMs, timeoutMs);
          result.levels.set(clients, level);
          log(`${name} ${clients} clients: ${level.opsPerSec} writes/s, p50 ${level.p50Ms} ms, p99 ${level.p99Ms} ms, ${level.errors} errors; `
            + `servers ${level.server.cpuMsPerWrite ?? "?"} CPU ms and ${level.server.fsyncsPerWrite.map((x) => x ?? "?").join("/")} fsyncs per write`);
        }
        if (failovers > 0) result.failover = await runFailover(system, failovers, failoverClients, hedgeMs, timeoutMs, giveUpMs, log);
      } catch (error) {
        result.error = error instanceof Error ? error.message : String(error);
        log(`${name} FAILED: ${result.error}`);
        process.exitCode = 1;
      } finally {
        if (system !== undefined) await system.stop();
      }
    }
  } finally {
    await workspace.close(5_000);
  }

  const pk = results.get("pk");
  const et = results.get("etcd");
  const levelJson = (level: LevelResult | undefined): unknown => level === undefined ? null : {
    opsPerSec: level.opsPerSec, p50Ms: level.p50Ms, p99Ms: level.p99Ms, meanMs: level.meanMs, maxMs: level.maxMs,
    ops: level.ops, errors: level.errors, redirects: level.redirects, errorKinds: level.errorKinds.toJSON(),
    serverCpuMsPerWrite: level.server.cpuMsPerWrite, fsyncsPerWrite: level.server.fsyncsPerWrite,
  };
  const pkAt = pk?.levels.get(TARGET_CLIENTS);
  const etAt = et?.levels.get(TARGET_CLIENTS);
  const throughputMet = pkAt !== undefined && etAt !== undefined ? pkAt.opsPerSec >= etAt.opsPerSec : null;
  const pkFailover = pk?.failover?.medianMs;
  const failoverMet = pk?.failover === null || pk?.failover === undefined ? null
    : pkFailover !== null && pkFailover !== undefined && pkFailover < TARGET_FAILOVER_MEDIAN_MS && pk.failover.misses === 0;
  const cpuList = cpus();
  return {
    bench: "raft",
    machine: {
      cpus: cpuList.length,
      cpuModel: cpuList[0]?.model.trim() ?? null,
      memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
      platform: `${process.platform} ${release()} ${process.arch}`,
      loadAverage1m: { before: round2(loadBefore), after: round2(loadavg()[0] ?? 0) },
      /** Median of 200 × (4 KiB write + fdatasync) in the data folder's file system, before the run. */
      fdatasyncMedianMs: fsyncMs,
    },
    versions: { node: process.version, etcd: etcd === null ? null : etcd.version },
    settings: {
      systems,
      order: "one system at a time: p-kernel's cluster is stopped before etcd's starts",
      members: MEMBERS,
      clients: levels,
      warmupSeconds: warmupMs / 1000,
      seconds: measureMs / 1000,
      keys: KEYS,
      valueBytes,
      dataRoot: root ?? null,
      requestTimeoutMs: timeoutMs,
      heartbeatMs,
      electionMs,
      failovers,
      failoverClients,
      hedgeMs,
      failoverTimeoutMs: giveUpMs,
      pk: pk === undefined ? null : {
        write: "PUT /v1/kv/bench-NNNN, body = the value (valueBytes) (Content-Type: application/octet-stream); 307/308 Location followed",
        fsync: "store durable batches: SQLite WAL, synchronous=FULL",
        ...pk.extra,
      },
      etcd: et === undefined ? null : {
        write: "POST /v3/kv/put (JSON gateway) {key, value} base64",
        fsync: "etcd default (WAL fdatasync per commit)",
        ...et.extra,
      },
    },
    note: `The load generator runs in this benchmark's process on the same ${cpuList.length} CPUs as the three servers, and competes with them; `
      + "clients are closed loops (one write at a time each) spread over the three members (client c starts on member c mod 3; a 307 makes it stick to the leader named). "
      + "Latency is what the client saw, from sending the write to its acknowledgement. Both systems run with the same heartbeat and election settings: "
      + "they are passed to etcd, and must match p-kernel's compiled-in Raft settings (settings.pk.raftStatus).",
    levels: levels.map((clients) => {
      const a = pk?.levels.get(clients);
      const b = et?.levels.get(clients);
      return {
        clients,
        pk: levelJson(a),
        etcd: levelJson(b),
        ratio: {
          throughput: ratio(a?.opsPerSec, b?.opsPerSec), p50: ratio(a?.p50Ms, b?.p50Ms), p99: ratio(a?.p99Ms, b?.p99Ms),
          cpuPerWrite: ratio(a?.server.cpuMsPerWrite, b?.server.cpuMsPerWrite),
        },
      };
    }),
    failover: {
      measure: "SIGKILL of the leader → first acknowledged write sent after the kill (writes hedged across members every hedgeMs, failed ones retried on the next member)",
      pk: pk?.failover === null || pk?.failover === undefined ? null : { ...pk.failover, errorKinds: pk.failover.errorKinds.toJSON() },
      etcd: et?.failover === null || et?.failover === undefined ? null : { ...et.failover, errorKinds: et.failover.errorKinds.toJSON() },
      ratio: { median: ratio(pk?.failover?.medianMs, et?.failover?.medianMs), max: ratio(pk?.failover?.maxMs, et?.failover?.maxMs) },
    },
    errors: { pk: pk?.error ?? null, etcd: et?.error ?? null },
    target: {
      throughputAt64Clients: {
        condition: `p-kernel writes/s >= etcd writes/s at ${TARGET_CLIENTS} clients`,
        pk: pkAt?.opsPerSec ?? null,
        etcd: etAt?.opsPerSec ?? null,
        met: throughputMet,
      },
      failoverMedian: {
        condition: `p-kernel median failover < ${TARGET_FAILOVER_MEDIAN_MS} ms, no missed round`,
        pkMedianMs: pkFailover ?? null,
        met: failoverMet,
      },
      met: throughputMet === null || failoverMet === null ? null : throughputMet && failoverMet,
    },
    wallMs: Math.round(performance.now() - started),
  };
}
