// `npm run bench -- spawn [--rows N] [--mb M]`: a fourth node joins a running 3-node cluster with an
// empty data folder and only --join (and the token), and the bench prints how long it takes until
// it holds the same state: every gossip row (default 10,000), every shared file (default 100 MB in
// 50 MB files, byte-identical), and the Raft log (applied up to the leader's commit), with the time
// of each part. Issue 5, acceptance 4. Everything runs on loopback in a temporary folder.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { PK_BIN } from "./procs.ts";

interface ClusterFile {
  token: string;
  nodes: Array<{ id: string; listen: string; api: string; data: string }>;
}

async function shell(api: string, token: string, line: string): Promise<string> {
  const response = await fetch(`${api}/v1/shell`, {
    method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: JSON.stringify({ line }), signal: AbortSignal.timeout(30_000),
  });
  const body = await response.json() as { ok: boolean; output: string };
  if (!body.ok) throw new Error(`${line}: ${body.output}`);
  return body.output;
}

async function status(api: string): Promise<{ id: string; raft: { leader: string | null; commitIndex: number; appliedIndex: number; voters: string[]; learners: string[] } } | undefined> {
  try {
    return await (await fetch(`${api}/v1/status`, { signal: AbortSignal.timeout(2_000) })).json() as never;
  } catch {
    return undefined;
  }
}

function pk(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [PK_BIN, ...args], { stdio: "ignore" });
    child.on("exit", (code) => resolve(code ?? 1));
  });
}

function sha(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

export async function run(argv: string[]): Promise<unknown> {
  const { values } = parseArgs({ args: argv, options: { rows: { type: "string", default: "10000" }, mb: { type: "string", default: "100" } }, strict: true });
  const rows = Number(values.rows);
  const mb = Number(values.mb);
  if (!(Number.isInteger(rows) && rows >= 0 && rows <= 200_000)) throw new Error("--rows must be an integer in [0, 200000]");
  if (!(Number.isInteger(mb) && mb >= 0 && mb <= 1000)) throw new Error("--mb must be an integer in [0, 1000]");
  const dir = mkdtempSync(join(tmpdir(), "pk-bench-spawn-"));
  const joiner = join(dir, "n4");
  let child: ReturnType<typeof spawn> | undefined;
  try {
    if (await pk(["up", "--detach", "--dir", dir]) !== 0) throw new Error("pk up failed");
    const cluster = JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as ClusterFile;
    const [n1] = cluster.nodes;
    if (n1 === undefined) throw new Error("no nodes");
    await sleep(2_000);
    // The state: `rows` gossip rows (written through n1's shell, 16 at a time), `mb` MB of files.
    const loadStarted = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      for (let i = next++; i < rows; i = next++) await shell(n1.api, cluster.token, `topic pub bench k${i} value-${i}`);
    }));
    const files: Array<{ name: string; sha: string }> = [];
    for (let written = 0, i = 0; written < mb; i++) {
      const size = Math.min(50, mb - written);
      const name = `file${i}.bin`;
      writeFileSync(join(n1.data, "shared", name), randomBytes(size * 1024 * 1024));
      files.push({ name, sha: sha(join(n1.data, "shared", name)) });
      written += size;
    }
    await shell(n1.api, cluster.token, "sfs sync");
    const loadMs = performance.now() - loadStarted;
    // Let the three settle, then start the fourth with an empty folder and only --join.
    await sleep(3_000);
    const started = performance.now();
    // The token through the environment: pk node refuses it on the command line.
    child = spawn(process.execPath, [PK_BIN, "node", "--data", joiner, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:7599", "--join", n1.listen, "--name", "n4", "--owner-key", join(dir, "owner.key")], { stdio: "ignore", env: { ...process.env, PK_TOKEN: cluster.token } });
    const api = "http://127.0.0.1:7599";
    const times: Record<string, number | null> = { member: null, raft: null, rows: null, files: null };
    const deadline = started + 600_000;
    while (performance.now() < deadline && Object.values(times).some((t) => t === null)) {
      const elapsed = Math.round(performance.now() - started);
      const own = await status(api);
      const lead = await status(n1.api);
      if (own !== undefined && lead !== undefined) {
        if (times["member"] === null && [...lead.raft.voters, ...lead.raft.learners].includes(own.id)) times["member"] = elapsed;
        if (times["raft"] === null && times["member"] !== null && own.raft.appliedIndex >= lead.raft.commitIndex) times["raft"] = elapsed;
        if (times["rows"] === null) {
          const list = await shell(api, cluster.token, "topic list").catch(() => "");
          const match = /^bench +gossip +(\d+) keys/m.exec(list);
          if (rows === 0 || (match !== null && Number(match[1]) >= rows)) times["rows"] = elapsed;
        }
        if (times["files"] === null && files.every((f) => existsSync(join(joiner, "shared", f.name)) && sha(join(joiner, "shared", f.name)) === f.sha)) times["files"] = elapsed;
      }
      await sleep(100);
    }
    const synced = Object.values(times).every((t) => t !== null) ? Math.max(...Object.values(times) as number[]) : null;
    return {
      bench: "spawn",
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? "unknown" },
      state: { gossipRows: rows, sharedMB: mb, files: files.length, loadSeconds: Math.round(loadMs / 100) / 10 },
      joinerMs: times,
      syncedMs: synced,
      note: "a fourth node started with an empty data folder and only --join; each time is from its start until it is a Raft member, has applied the leader's commit, holds every gossip row, holds every shared file byte-identical",
    };
  } finally {
    child?.kill("SIGKILL");
    await pk(["down", "--dir", dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}
