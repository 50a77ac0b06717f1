// What an idle node costs (issue 18): starts a cluster with `pk up --detach`, lets it settle, then
// reads each node's CPU time from /proc/PID/stat (utime + stime) and its packet counters from its
// /metrics over a window in which nothing is asked of it, and stops the cluster.
//
//   npm run bench -- idle [--nodes N] [--seconds S] [--warmup S]
//
// Prints CPU milliseconds per second of wall time per node (and their mean), packets per second
// in and out per node, and the Raft role of each node (the leader sends every heartbeat). Linux
// only (/proc); /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 per second.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { portFree } from "../src/cli/main.ts";
import { HOST, PK_BIN, Workspace } from "./procs.ts";

const USAGE = "usage: npm run bench -- idle [--nodes N (1-9, default 3)] [--seconds S (5-600, default 30)] [--warmup S (0-600, default 10)]";
/** /proc/PID/stat counts CPU time in USER_HZ ticks: 100 per second on every Linux architecture. */
const USER_HZ = 100;
const UP_TIMEOUT_S = 120;
const STOP_TIMEOUT_MS = 20_000;

interface Options {
  readonly nodes: number;
  readonly seconds: number;
  readonly warmup: number;
}

interface ClusterNode {
  readonly name: string;
  readonly pid: number;
  readonly api: string;
}

interface Sample {
  readonly cpuTicks: number;
  readonly packets: { datagramIn: number; datagramOut: number; streamIn: number; streamOut: number };
}

export async function run(args: string[]): Promise<unknown> {
  const options = parseArgs(args);
  if (process.platform !== "linux") throw new Error("bench idle reads /proc/PID/stat: Linux only");
  const workspace = new Workspace("idle");
  const dir = join(workspace.dir, "cluster");
  try {
    const base = await freeBase(options.nodes);
    await pk(["up", "--nodes", String(options.nodes), "--dir", dir, "--detach", "--base-port", String(base), "--timeout", String(UP_TIMEOUT_S)]);
    try {
      const nodes = readCluster(join(dir, "cluster.json"));
      await sleep(options.warmup * 1000);
      const before = await Promise.all(nodes.map(sample));
      const started = performance.now();
      await sleep(options.seconds * 1000);
      const after = await Promise.all(nodes.map(sample));
      const wallS = (performance.now() - started) / 1000;
      const roles = await Promise.all(nodes.map(role));
      const perNode = nodes.map((node, i) => {
        const a = before[i] as Sample;
        const b = after[i] as Sample;
        const rate = (key: keyof Sample["packets"]): number => round((b.packets[key] - a.packets[key]) / wallS);
        return {
          name: node.name,
          role: roles[i],
          cpuMsPerS: round(((b.cpuTicks - a.cpuTicks) * (1000 / USER_HZ)) / wallS),
          packetsPerS: { datagramIn: rate("datagramIn"), datagramOut: rate("datagramOut"), streamIn: rate("streamIn"), streamOut: rate("streamOut") },
        };
      });
      const cpu = perNode.map((n) => n.cpuMsPerS);
      return {
        nodes: options.nodes,
        windowS: round(wallS),
        warmupS: options.warmup,
        cpuMsPerSMean: round(cpu.reduce((s, c) => s + c, 0) / cpu.length),
        cpuMsPerSMax: Math.max(...cpu),
        perNode,
        loadavg1: round(Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0])),
        node: process.version,
      };
    } finally {
      await pk(["down", "--dir", dir]).catch((error: unknown) => process.stderr.write(`idle: pk down: ${(error as Error).message}\n`));
    }
  } finally {
    await workspace.close(STOP_TIMEOUT_MS);
  }
}

function parseArgs(args: readonly string[]): Options {
  const values = { nodes: 3, seconds: 30, warmup: 10 };
  const bounds = { nodes: [1, 9], seconds: [5, 600], warmup: [0, 600] } as const;
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i] ?? "";
    const key = flag.replace(/^--/, "");
    if (!(key in values) || !flag.startsWith("--")) throw new Error(`idle: unknown argument "${flag}"\n${USAGE}`);
    const text = args[i + 1];
    const value = Number(text);
    const [lo, hi] = bounds[key as keyof typeof bounds];
    if (text === undefined || !Number.isInteger(value) || value < lo || value > hi) throw new Error(`idle: ${flag} needs a whole number from ${lo} to ${hi}, got ${text ?? "nothing"}\n${USAGE}`);
    values[key as keyof typeof values] = value;
  }
  return values;
}

/** A base port P such that `pk up` finds P..P+N-1 (listeners) and P+100.. (APIs) free. */
async function freeBase(nodes: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 9_000);
    let free = true;
    for (let i = 0; i < nodes && free; i++) free = (await portFree(HOST, base + i)) && (await portFree(HOST, base + 100 + i));
    if (free) return base;
  }
  throw new Error("idle: no free range of ports found");
}

/** Runs `pk ARGS` to completion; rejects with its output's tail when it fails. */
function pk(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PK_BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString("utf8")).slice(-4000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", reject);
    child.on("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`pk ${args[0]} exited with ${signal ?? code}: ${output.trim()}`))));
  });
}

function readCluster(path: string): ClusterNode[] {
  const parsed = JSON.parse(readFileSync(path, "utf8")) as { nodes?: unknown };
  if (!Array.isArray(parsed.nodes)) throw new Error(`idle: ${path} has no nodes`);
  return parsed.nodes.map((n: { name?: unknown; pid?: unknown; api?: unknown }) => {
    if (typeof n.pid !== "number" || typeof n.api !== "string") throw new Error(`idle: ${path}: a node without pid or api`);
    return { name: typeof n.name === "string" ? n.name : String(n.pid), pid: n.pid, api: n.api };
  });
}

async function sample(node: ClusterNode): Promise<Sample> {
  // Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime 15.
  const stat = readFileSync(`/proc/${node.pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  const text = await (await fetch(`${node.api}/metrics`)).text();
  const counter = (channel: string, direction: string): number => {
    const match = new RegExp(`^pk_packets_total\\{channel="${channel}",direction="${direction}"\\} (\\d+)$`, "m").exec(text);
    if (match === null) throw new Error(`idle: ${node.name}'s /metrics has no pk_packets_total for ${channel} ${direction}`);
    return Number(match[1]);
  };
  return { cpuTicks, packets: { datagramIn: counter("datagram", "in"), datagramOut: counter("datagram", "out"), streamIn: counter("stream", "in"), streamOut: counter("stream", "out") } };
}

async function role(node: ClusterNode): Promise<string> {
  try {
    const status = (await (await fetch(`${node.api}/v1/status`)).json()) as { raft?: { role?: unknown; state?: unknown } };
    const value = status.raft?.role ?? status.raft?.state;
    return typeof value === "string" ? value : "unknown";
  } catch {
    return "unknown";
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
