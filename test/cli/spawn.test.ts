// Issue 16, acceptance 4, in its `npx` form: a fresh machine — a new data folder, the published
// package's code (this checkout stands in for `npx p-kernel`: nothing is published) and an invite
// code, nothing else: no token file, no owner key, no --join — becomes a member of a cluster that
// runs a newer signed bundle, fetches that bundle from the swarm (verified against the owner key
// the invite names), restarts into it under its supervisor and runs the cluster's code. Time to
// member, time to the cluster's code and the bytes fetched are reported.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, pk } from "./cluster-helpers.ts";
import { cleanEnv, converged, kill9, shell, statusOf, Swarm, until, type SwarmNode, freePort } from "./self-helpers.ts";

const VERSION = 2_000;


test("spawn from nothing (npx form): a fresh data folder and an invite code make a member that runs the cluster's signed code, fetched from the swarm (issue 16)", { timeout: 600_000 }, async (t) => {
  const swarm = new Swarm(t);
  const ports = async (): Promise<string[]> => ["--listen", `127.0.0.1:${await freePort()}`, "--api", `127.0.0.1:${await freePort()}`, "--supervise"];
  const n1 = await swarm.start("n1", { flags: await ports() });
  const others: SwarmNode[] = [];
  for (const name of ["n2", "n3"]) others.push(await swarm.start(name, { join: n1, flags: await ports() }));
  const all = [n1, ...others];
  await converged(all, 3, 60_000);
  const sh = async (node: { api: string }, line: string): Promise<string> => {
    const r = await shell(node.api, line, swarm.token, 30_000);
    assert.ok(r.ok, `${line}: ${r.output}`);
    return r.output;
  };
  const running = async (api: string): Promise<number | undefined> => {
    try {
      const m = /running\s+v(\d+)/.exec(await sh({ api }, "bundle status"));
      return m === null ? undefined : Number(m[1]);
    } catch {
      return undefined;
    }
  };

  // The cluster runs a signed bundle newer than the package's code.
  const built = await pk(["bundle", "--version", String(VERSION), "--key", join(n1.data, "owner.key"), "--install", n1.data], 300_000);
  assert.equal(built.code, 0, built.stderr);
  const size = Number(/(\d+) bytes, (\d+) chunks/.exec(built.stdout)?.[1] ?? 0);
  await sh(n1, "bundle scan");
  await until("the cluster on the bundle", async () => (await Promise.all(all.map((n) => running(n.api)))).every((v) => v === VERSION), 240_000, 500);

  // The fresh machine: a data folder of its own and the invite code, in a file (it carries the token).
  const invite = (await sh(n1, "invite --role core --ttl 10m")).split("\n")[0] as string;
  const dir = mkdtempSync(join(swarm.dir, "fresh-"));
  const inviteFile = join(dir, "invite");
  writeFileSync(inviteFile, `${invite}\n`, { mode: 0o600 });
  const data = join(dir, "data");
  const api = `127.0.0.1:${await freePort()}`;
  const out = join(dir, "out"), err = join(dir, "err");
  const [o, e] = [openSync(out, "a"), openSync(err, "a")];
  const started = Date.now();
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [BIN, "node", "--supervise", "--data", data, "--invite-file", inviteFile, "--listen", `127.0.0.1:${await freePort()}`, "--api", api, "--name", "fresh", "--no-discover"], { stdio: ["ignore", o, e], env: cleanEnv() });
  } finally {
    closeSync(o);
    closeSync(e);
  }
  t.after(() => kill9(child));
  const ready = await until("the fresh node's ready line", () => {
    if (child.exitCode !== null) assert.fail(`the fresh node exited ${child.exitCode}: ${readFileSync(err, "utf8").slice(-2_000)}`);
    const line = readFileSync(out, "utf8").split("\n").find((l) => l.startsWith("{\"ready\":true"));
    return line === undefined ? undefined : JSON.parse(line) as { id: string; api: string };
  }, 60_000);
  await until("the fresh node a member, alive on every node", async () => {
    const views = await Promise.all(all.map((n) => statusOf(n.api)));
    return views.every((v) => v?.members.some((m) => m.id === ready.id && m.state === "alive"));
  }, 60_000, 100);
  const memberMs = Date.now() - started;
  // Its fetch, seen while it runs the package's code (it restarts soon after the bundle is installed).
  let fetched = "";
  await until("the fresh node on the cluster's code", async () => {
    try {
      const status = await sh({ api: ready.api }, "bundle status");
      const row = /fetch\s+(v\d+: \d+\/\d+ chunks, .*)/.exec(status)?.[1];
      if (row !== undefined) fetched = row;
      return /running\s+v(\d+)/.exec(status)?.[1] === String(VERSION);
    } catch {
      return false;
    }
  }, 240_000, 100);
  const codeMs = Date.now() - started;
  await until("its supervisor keeping the cluster's code", () => new RegExp(`v${VERSION} [0-9a-f]{16} is healthy`).test(readFileSync(err, "utf8")), 120_000, 100);
  const healthyMs = Date.now() - started;
  assert.equal(await running(`http://${api}`), VERSION);
  t.diagnostic(`member after ${(memberMs / 1000).toFixed(1)} s; running the cluster's code (v${VERSION}: fetched, verified, restarted into) after ${(codeMs / 1000).toFixed(1)} s, kept as healthy after ${(healthyMs / 1000).toFixed(1)} s`);
  t.diagnostic(`fetched: ${fetched || "(the fetch finished between two looks)"}; the bundle is ${size} bytes`);
  // It is one of the cluster: a write through it is read back on n1.
  const put = await fetch(`http://${api}/v1/kv/fresh`, { method: "PUT", headers: { Authorization: `Bearer ${swarm.token}` }, body: "hello", signal: AbortSignal.timeout(10_000) });
  assert.equal(put.status, 200, await put.text());
  const got = await fetch(`${n1.api}/v1/kv/fresh`, { headers: { Authorization: `Bearer ${swarm.token}` }, signal: AbortSignal.timeout(10_000) });
  assert.equal(await got.text(), "hello");
});
