// A cluster of real `pk node` processes for the Self layer's benchmarks (bench/self.ts's chat
// overhead, bench/dmn.ts): a fake local model process of fixed latency (test/fakes/mind-server.ts,
// an OpenAI-compatible server) given to some nodes with --mind, formation, shell lines and JSON
// requests over the API. Not a benchmark itself: it has no run().
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { HOST, Workspace, freePorts, pkNodeArgv, startPkNode, waitReady, type Child } from "./procs.ts";

const MIND_SERVER = fileURLToPath(new URL("../test/fakes/mind-server.ts", import.meta.url));

export interface SelfNode {
  readonly name: string;
  readonly api: string;
  readonly data: string;
  readonly child: Child;
}

export interface SelfCluster {
  readonly token: string;
  readonly nodes: SelfNode[];
  /** The fake model's base URL (…/v1), when one was started. */
  readonly mindUrl: string | undefined;
}

export interface SelfClusterOptions {
  readonly nodes: number;
  /** Indexes of the nodes given the fake model with --mind. */
  readonly minds: readonly number[];
  /** The fake model's fixed latency per answer (ms). */
  readonly mindLatencyMs: number;
  /** Extra environment for the nodes. */
  readonly env?: Readonly<Record<string, string>>;
}

export async function startSelfCluster(ws: Workspace, options: SelfClusterOptions): Promise<SelfCluster> {
  let mindUrl: string | undefined;
  if (options.minds.length > 0) {
    let resolve: (url: string) => void = () => undefined;
    const ready = new Promise<string>((r) => (resolve = r));
    const child = ws.procs.start(process.execPath, [MIND_SERVER, "--port", "0", "--latency-ms", String(options.mindLatencyMs), "--log", join(ws.dir, "mind.jsonl")], {
      onLine: (line) => {
        try {
          const parsed = JSON.parse(line) as { url?: unknown };
          if (typeof parsed.url === "string") resolve(parsed.url);
        } catch {
          // Not its ready line.
        }
      },
    });
    mindUrl = await waitReady(child, "the fake model", ready, 20_000);
  }
  const token = randomBytes(24).toString("base64url");
  const ports = await freePorts(new Set(), options.nodes, ["peer", "api"] as const);
  const nodes: SelfNode[] = [];
  // Provider keys of the benchmark's own environment are not the nodes' business.
  const env = { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "", PK_MIND_FRONTIER: "off", ...options.env };
  for (let i = 0; i < options.nodes; i++) {
    const name = `n${i + 1}`;
    const data = join(ws.dir, name);
    const argv = pkNodeArgv({ name, data, listen: `${HOST}:${ports[i]!.peer}`, api: `${HOST}:${ports[i]!.api}`, token, join: i === 0 ? undefined : `${HOST}:${ports[0]!.peer}` });
    argv.push("--no-discover");
    if (options.minds.includes(i) && mindUrl !== undefined) argv.push("--mind", `${mindUrl}#fake-model`);
    const { child, ready } = startPkNode(ws.procs, name, data, argv, "", 30_000, env);
    await ready;
    nodes.push({ name, api: `http://${HOST}:${ports[i]!.api}`, data, child });
  }
  const cluster = { token, nodes, mindUrl };
  await formed(cluster, 60_000);
  return cluster;
}

export async function request(cluster: SelfCluster, api: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${api}${path}`, {
    method, headers: { Authorization: `Bearer ${cluster.token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }), signal: AbortSignal.timeout(120_000),
  });
  const text = await response.text();
  const ms = performance.now() - started;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: response.status, json, ms };
}

export async function shell(cluster: SelfCluster, api: string, line: string): Promise<string> {
  const { json } = await request(cluster, api, "POST", "/v1/shell", { line });
  const answer = json as { ok?: boolean; output?: string };
  if (answer.ok !== true) throw new Error(`${line}: ${answer.output ?? JSON.stringify(json)}`);
  return answer.output ?? "";
}

/** Every node sees every other alive and Raft has a leader. */
export async function formed(cluster: SelfCluster, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const statuses = await Promise.all(cluster.nodes.map((n) => request(cluster, n.api, "GET", "/v1/status")));
      const ok = statuses.every(({ json }) => {
        const s = json as { members?: Array<{ state: string }>; raft?: { leader?: string } };
        return (s.members ?? []).filter((m) => m.state === "alive").length === cluster.nodes.length && (s.raft?.leader ?? "") !== "";
      });
      if (ok) return;
    } catch {
      // Not up yet.
    }
    if (performance.now() > deadline) throw new Error(`the cluster did not form within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function summary(values: readonly number[]): { n: number; p50: number; p90: number; p99: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const round = (x: number): number => Math.round(x * 100) / 100;
  return { n: sorted.length, p50: round(percentile(sorted, 50)), p90: round(percentile(sorted, 90)), p99: round(percentile(sorted, 99)), max: round(sorted.at(-1) ?? Number.NaN) };
}


/**
 * Chat's overhead beyond the mind's own time (issue 14, acceptance 4): one real node with a local
 * model of fixed latency, `memories` memories to recall from, then `turns` chat turns through
 * POST /v1/chat (whole answers). Per turn: the client's time minus the model's fixed latency (the
 * whole overhead: HTTP both ways, recall, the prompt, remembering the turn twice with fsyncs, the
 * SDK), and the node's own measure (the turn's time minus the time in the mind).
 */
export async function measureChatOverhead(options: { quick: boolean }): Promise<unknown> {
  const latencyMs = 50;
  const memories = options.quick ? 200 : 2_000;
  const turns = options.quick ? 50 : 300;
  const ws = new Workspace("chat");
  try {
    const cluster = await startSelfCluster(ws, { nodes: 1, minds: [0], mindLatencyMs: latencyMs, env: { PK_DMN_EVERY_MS: "86400000" } });
    const api = cluster.nodes[0]!.api;
    for (let i = 0; i < memories; i++) {
      const { status } = await request(cluster, api, "POST", "/v1/memory", { text: `note ${i}: item ${i % 97} is kept in box ${i % 13} since day ${i % 31}`, speaker: `user${i % 5}` });
      if (status !== 201) throw new Error(`seeding: HTTP ${status}`);
    }
    const client: number[] = [];
    const node: number[] = [];
    for (let i = 0; i < turns; i++) {
      const { status, json, ms } = await request(cluster, api, "POST", "/v1/chat", { text: `where is item ${i % 97} kept?`, speaker: "bench" });
      const answer = json as { source?: string; totalMs?: number; mindMs?: number };
      if (status !== 200 || answer.source !== "mind") throw new Error(`turn ${i}: HTTP ${status} ${JSON.stringify(json).slice(0, 200)}`);
      if (i < 5) continue; // warm-up
      client.push(ms - latencyMs);
      node.push((answer.totalMs ?? 0) - (answer.mindMs ?? 0));
    }
    return { mindLatencyMs: latencyMs, memories, turns: client.length, overheadMs: summary(client), nodeOverheadMs: summary(node) };
  } finally {
    await ws.close(10_000);
  }
}
