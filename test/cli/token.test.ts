// Tokens never on command lines (issue 13): `--token` is refused by every command with a message
// naming --token-file and PK_TOKEN; `pk node` takes the token from --token-file or PK_TOKEN (two
// real node processes, one of each, form one cluster, which they can only do with the same token);
// `pk shell` and `pk dashboard` take --token-file or PK_TOKEN too; --public-name adds a Host name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeToken } from "../../src/adapters/seal.ts";
import { BIN, bearer, pk, waitConverged } from "./cluster-helpers.ts";

test("--token on a command line is refused by every command, without echoing the token", async () => {
  const secret = "s3cret-token-value";
  for (const args of [
    ["node", "--data", "/nonexistent", "--token", secret],
    ["node", "--data", "/nonexistent", `--token=${secret}`],
    ["shell", "--token", secret, "-c", "status"],
    ["up", "--token", secret],
    ["dashboard", `--token=${secret}`],
    ["down", "--token", secret],
  ]) {
    const result = await pk(args);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, /--token is not accepted: a command line is readable by every user .*--token-file FILE .*PK_TOKEN/);
    assert.ok(!result.stderr.includes(secret) && !result.stdout.includes(secret), "the token is not repeated");
  }
  const missing = await pk(["node", "--data", "/nonexistent", "--token-file", "/nonexistent/token"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read --token-file \/nonexistent\/token/);
});

interface Started {
  readonly child: ChildProcess;
  readonly ready: { id: string; listen: string; api: string };
}

/** Starts `pk node ARGS` and resolves with its ready line (src/node/run.ts prints it on stdout). */
function startNode(args: string[], env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(process.execPath, [BIN, "node", ...args], { stdio: ["ignore", "pipe", "pipe"], env });
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`no ready line within 15 s: ${err}`)), 15_000);
    child.stderr?.on("data", (chunk: Buffer) => { err += chunk.toString(); });
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n").find((l) => l.startsWith("{\"ready\":true"));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve({ child, ready: JSON.parse(line) as Started["ready"] });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`pk node exited ${code}: ${err}`));
    });
  });
}

/** GET with an explicit Host header (fetch cannot set one). */
function getStatus(api: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${api}/v1/status`, { headers: { Host: host }, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

test("pk node takes the token from --token-file or PK_TOKEN; pk shell and pk dashboard too", { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pk-token-"));
  const nodes: ChildProcess[] = [];
  t.after(() => {
    for (const child of nodes) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  const token = makeToken();
  const file = join(dir, "token-file");
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  const env = { ...process.env };
  delete env["PK_TOKEN"];

  const a = await startNode(["--data", join(dir, "a"), "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--token-file", file, "--name", "a", "--no-discover", "--public-name", "pk-a.test"], env);
  nodes.push(a.child);
  const b = await startNode(["--data", join(dir, "b"), "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--join", a.ready.listen, "--name", "b", "--owner-key", join(dir, "a", "owner.key")], { ...env, PK_TOKEN: token });
  nodes.push(b.child);
  // Packets are sealed with the token: the two form one cluster only if both hold it.
  await waitConverged([a.ready.api, b.ready.api], 2, 15_000);
  assert.ok(!existsSync(join(dir, "a", "token")) && !existsSync(join(dir, "b", "token")), "a given token is not copied into the data folder");
  for (const child of nodes) assert.ok(!readFileSync(`/proc/${child.pid}/cmdline`, "utf8").includes(token));

  // The API takes that token.
  const shellAt = (api: string, headers: Record<string, string>) => fetch(`${api}/v1/shell`, {
    method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: JSON.stringify({ line: "status" }), signal: AbortSignal.timeout(5_000),
  });
  assert.equal((await shellAt(b.ready.api, bearer(token))).status, 200);
  assert.equal((await shellAt(b.ready.api, {})).status, 401);

  // pk shell: --token-file, or PK_TOKEN (the pk helper passes this process's environment).
  const viaFile = await pk(["shell", "--api", a.ready.api, "--token-file", file, "--dir", dir, "-c", "status"]);
  assert.equal(viaFile.code, 0, viaFile.stderr);
  assert.match(viaFile.stdout, new RegExp(`^id +${a.ready.id}$`, "m"));
  const viaEnv = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, "shell", "--api", b.ready.api, "--dir", dir, "-c", "status"], { env: { ...env, PK_TOKEN: token } });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => { stdout += chunk.toString(); });
    child.on("close", (code) => resolve({ code, stdout }));
  });
  assert.equal(viaEnv.code, 0);
  assert.match(viaEnv.stdout, new RegExp(`^id +${b.ready.id}$`, "m"));
  const withoutToken = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, "shell", "--api", b.ready.api, "--dir", dir, "-c", "status"], { env });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on("close", (code) => resolve({ code, stderr }));
  });
  assert.equal(withoutToken.code, 1);
  assert.match(withoutToken.stderr, /needs Authorization: Bearer/);

  // pk dashboard prints a one-time login URL of that node.
  const dashboard = await pk(["dashboard", "--api", a.ready.api, "--token-file", file, "--dir", dir]);
  assert.equal(dashboard.code, 0, dashboard.stderr);
  assert.match(dashboard.stdout.trim(), new RegExp(`^${a.ready.api.replaceAll(".", "\\.")}/\\?login=[A-Za-z0-9_-]{32}$`));

  // --public-name: node a answers to pk-a.test with its API port, node b does not.
  const portOf = (api: string): string => new URL(api).port;
  assert.equal(await getStatus(a.ready.api, `pk-a.test:${portOf(a.ready.api)}`), 200);
  assert.equal(await getStatus(b.ready.api, `pk-a.test:${portOf(b.ready.api)}`), 403);
});
