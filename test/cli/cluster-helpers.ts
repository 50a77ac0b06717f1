// Helpers for tests that drive real node processes through `pk up` (test/cli/*.test.ts): run pk,
// read cluster.json, poll /v1/status, and a temp dir whose processes are always cleaned up.
import { type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

export const BIN = fileURLToPath(new URL("../../bin/pk.js", import.meta.url));

export interface ClusterNode {
  id: string;
  pid: number | null;
  listen: string;
  api: string;
  data: string;
  argv: string[];
}
export interface Cluster {
  token: string;
  nodes: ClusterNode[];
}
export interface Status {
  id: string;
  mode: string;
  members: Array<{ id: string; state: string; incarnation: number; addr: string; vital: { uptimeMs: number; rssBytes: number } | null }>;
  guarded?: Array<{ name: string; owner: string; epoch: number; runningHere: boolean }>;
}

/** The header that carries the cluster token (every API route but status and metrics needs it). */
export function bearer(token: string): { Authorization: string } {
  return { Authorization: `Bearer ${token}` };
}

/** Runs one shell line on a node through POST /v1/shell, with the cluster token. */
export async function shellLine(api: string, line: string, token: string): Promise<{ ok: boolean; output: string }> {
  const response = await fetch(`${api}/v1/shell`, {
    method: "POST", headers: { "Content-Type": "application/json", ...bearer(token) }, body: JSON.stringify({ line }), signal: AbortSignal.timeout(20_000),
  });
  assert.equal(response.status, 200);
  return await response.json() as { ok: boolean; output: string };
}

/** Restarts a node exactly as cluster.json records it, detached, output appended to its log. */
export function restartNode(node: ClusterNode): number {
  const [command, ...args] = node.argv;
  assert.ok(command !== undefined);
  const log = openSync(join(node.data, "node.log"), "a");
  const child = spawn(command, args, { detached: true, stdio: ["ignore", log, log] });
  closeSync(log);
  child.unref();
  assert.ok(child.pid !== undefined);
  return child.pid;
}

export function pk(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString(); });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function readCluster(dir: string): Cluster {
  return JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as Cluster;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    assert.equal((error as NodeJS.ErrnoException).code, "ESRCH");
    return false;
  }
}

export async function status(api: string): Promise<Status | undefined> {
  try {
    const response = await fetch(`${api}/v1/status`, { signal: AbortSignal.timeout(1_000) });
    return response.ok ? await response.json() as Status : undefined;
  } catch {
    return undefined;
  }
}

/** A temp dir whose cluster is stopped (pk down, then SIGKILL of anything left) and removed after the test. */
export function clusterDir(t: TestContext, extraPids: number[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), "pk-up-"));
  t.after(async () => {
    await pk(["down", "--dir", dir], 20_000).catch(() => undefined);
    let pids: number[] = [...extraPids];
    try {
      pids = pids.concat(readCluster(dir).nodes.flatMap((node) => (node.pid === null ? [] : [node.pid])));
    } catch {
      // no cluster.json: nothing recorded
    }
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

export async function waitConverged(apis: readonly string[], count: number, timeoutMs: number, check: (s: Status) => boolean = () => true): Promise<Status[]> {
  const deadline = Date.now() + timeoutMs;
  let last: Array<Status | undefined> = [];
  for (;;) {
    last = await Promise.all(apis.map(status));
    const done = last.every((s) => s !== undefined && s.members.filter((m) => m.state === "alive").length === count && check(s));
    if (done) return last as Status[];
    if (Date.now() > deadline) {
      assert.fail(`not converged to ${count} alive members within ${timeoutMs} ms: ${JSON.stringify(last.map((s) => s?.members.length))}`);
    }
    await sleep(20);
  }
}

/**
 * A --base-port for `pk up` of its own: test files run in parallel, and two `pk up`s preferring the
 * same default ports race between checking a port and binding it.
 */
export function basePort(): number {
  return 20_000 + 200 * Math.floor(Math.random() * 150);
}

/** `pk up --detach --nodes N` in a cleaned-up temp dir, waited on until every node sees N alive. */
export async function startCluster(t: TestContext, nodes: number, extraPids: number[] = []): Promise<{ dir: string; cluster: Cluster; apis: string[] }> {
  const dir = clusterDir(t, extraPids);
  const up = await pk(["up", "--detach", "--nodes", String(nodes), "--dir", dir, "--base-port", String(basePort())]);
  assert.equal(up.code, 0, up.stderr);
  const cluster = readCluster(dir);
  const apis = cluster.nodes.map((node) => node.api);
  await waitConverged(apis, nodes, 10_000);
  return { dir, cluster, apis };
}
