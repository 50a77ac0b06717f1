// Progress of every long operation, driven on a pseudo-terminal (util-linux `script`, no native
// addon): a long simulation, a node joining, training, a shared-folder transfer and a bundle
// fetch each draw a bar redrawn in place with a rate (and, while the work lasts, the time left)
// and finish it; off a terminal `pk` writes plain lines; with --json one document on stdout.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createPrivateKey, hash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BundleFiles } from "../../src/adapters/bundle-files.ts";
import { identityFromPrivateKey } from "../../src/adapters/identity.ts";
import { makeRelease, packBundle } from "../../src/core/evolve/bundle.ts";
import { toHex } from "../../src/core/util/bytes.ts";
import { BIN, shellLine, startCluster } from "./cluster-helpers.ts";

const HAS_SCRIPT = spawnSync("script", ["--version"], { encoding: "utf8" }).status === 0;
const sha256 = (d: Uint8Array): Uint8Array => new Uint8Array(hash("sha256", d, "buffer"));

/** A command line for `script -c`: every word single-quoted. */
function commandLine(args: readonly string[]): string {
  return [process.execPath, BIN, ...args].map((word) => `'${word.replaceAll("'", "'\\''")}'`).join(" ");
}

interface Pty {
  readonly output: () => string;
  readonly exited: Promise<number | null>;
  kill(): void;
}

/** Runs `pk ARGS` on a pseudo-terminal; its output (stdout and stderr, as the terminal shows them). */
function onPty(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Pty {
  const child = spawn("script", ["-qfec", commandLine(args), "/dev/null"], { env: { ...env, PK_PROGRESS: "" }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => { out += chunk; });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => { out += chunk; });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return {
    output: () => out,
    exited,
    kill() {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // gone
      }
    },
  };
}

async function finished(pty: Pty, what: string, ms = 120_000): Promise<string> {
  const timer = setTimeout(() => pty.kill(), ms);
  const code = await pty.exited;
  clearTimeout(timer);
  assert.equal(code, 0, `${what} on a pty exited ${code}:\n${pty.output().slice(-2000)}`);
  return pty.output();
}

/** The bar's frames: each redraw begins with \r and clears the rest of the line. */
function frames(out: string, label: string): string[] {
  return out.split("\r").filter((f) => f.startsWith(`${label} `) && f.includes("\x1b[K"));
}

/**
 * Asserts the bar of `label` was drawn in place, at least once with a rate and the time left while
 * the work went on (`left`: always; "if-long": when it lasted over a second, as a fast transfer may
 * end before a second report; false: a join's few stages), and finished at 100% with its rate.
 */
function assertBar(t: TestContext, out: string, label: string, unit: string, left: boolean | "if-long"): void {
  const all = frames(out, label);
  assert.ok(all.length >= 2, `${label}: ${all.length} frames in\n${JSON.stringify(out.slice(-1500))}`);
  const rate = String.raw`[\d,.]+ ${unit === "bytes" ? "(?:B|KiB|MiB|GiB)" : unit}/s`;
  const going = all.filter((f) => new RegExp(String.raw`^${label} +\d+% \[[#.]+\] [\d,.]+(?: [KMG]iB)?/[\d,.]+ ${unit === "bytes" ? "(?:B|KiB|MiB|GiB)" : unit}  ${rate}  (?:[\d.]+ s|\d+ min \d\d s) left`).test(f));
  const last = all[all.length - 1]!;
  const seconds = Number(/(?:done|joined) in ([\d.]+) s/.exec(last)?.[1] ?? "0");
  if (left === true || (left === "if-long" && seconds > 1)) {
    assert.ok(going.length >= 1, `${label}: no frame with a rate and the time left among\n${all.slice(0, 8).join("\n")}`);
  }
  assert.match(last, new RegExp(String.raw`^${label} 100% \[#{8,20}\] .*  ${rate}  (done|joined) in [\d.]+ s`), `${label}'s last frame, in\n${JSON.stringify(out.slice(-3000))}`);
  // The terminal turns the bar's final \n into \r\n.
  assert.ok(out.includes(`${last}\r\n`) || out.includes(`${last}\n`), "the finished bar ends its line");
  t.diagnostic(`${label}: ${all.length} frames, ${going.length} with the time left; last: ${last.replace(/\x1b\[K\s*$/, "")}`);
}

test("pk sim: a bar on a terminal, plain lines off it, JSON lines with --json", { skip: !HAS_SCRIPT && "no util-linux script here", timeout: 120_000 }, async (t) => {
  const pty = onPty(["sim", "--ticks", "8000", "--seed", "3"]);
  assertBar(t, await finished(pty, "pk sim"), "sim", "ticks", true);

  const plain = spawnSync(process.execPath, [BIN, "sim", "--ticks", "2000", "--seed", "3"], { encoding: "utf8", timeout: 60_000, env: { ...process.env, PK_PROGRESS: "" } });
  assert.equal(plain.status, 0, plain.stderr);
  assert.ok(!plain.stderr.includes("\r") && !plain.stderr.includes("\x1b"), "no terminal control off a terminal");
  assert.match(plain.stderr, /^sim: 2,000\/2,000 ticks \(100%\), [\d,.]+ ticks\/s, done in [\d.]+ s$/m);

  const json = spawnSync(process.execPath, [BIN, "sim", "--ticks", "2000", "--seed", "3", "--json"], { encoding: "utf8", timeout: 60_000 });
  assert.equal(json.status, 0, json.stderr);
  const document = JSON.parse(json.stdout) as { seed: number };
  assert.equal(document.seed, 3);
  const progress = json.stderr.trim().split("\n").map((line) => JSON.parse(line) as { progress: string; finished?: boolean; done: number });
  assert.ok(progress.length >= 1);
  assert.deepEqual([progress.at(-1)?.progress, progress.at(-1)?.finished, progress.at(-1)?.done], ["sim", true, 2000]);
});

test("on a 2-node cluster: joining, training, shared-folder transfers (sfs wait, pk sfs put/get) and a bundle fetch show progress; --json answers parse", { skip: !HAS_SCRIPT && "no util-linux script here", timeout: 300_000 }, async (t) => {
  const { dir, cluster, apis } = await startCluster(t, 2);
  const [n1, n2] = cluster.nodes;
  assert.ok(n1 !== undefined && n2 !== undefined);
  const token = cluster.token;
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });

  // Joining: a third node, with the owner key, shows its stages until it has caught up.
  const n3 = join(dir, "n3");
  const joiner = onPty(["node", "--data", n3, "--join", n1.listen, "--token-file", tokenFile, "--owner-key", join(dir, "owner.key"), "--no-discover", "--name", "n3"]);
  t.after(() => {
    joiner.kill();
    try {
      process.kill(Number(readFileSync(join(n3, "pid"), "utf8").trim()), "SIGKILL");
    } catch {
      // not started, or gone
    }
  });
  for (let i = 0; i < 600 && !/joined in/.test(joiner.output()); i++) await sleep(100);
  assertBar(t, joiner.output(), "join", "stages", false);
  assert.match(joiner.output(), /join 100% .*joined in [\d.]+ s(?: {2}|\x1b\[K\r?\n {2})(learner|follower), caught up at entry \d+/);
  joiner.kill();

  // Training: dtr train streams its steps.
  const train = onPty(["shell", "--dir", dir, "-c", "dtr train 15"]);
  const trained = await finished(train, "dtr train");
  assertBar(t, trained, "train", "steps", true);
  assert.match(trained, /published model v\d+/);

  // A shared-folder transfer: 64 MiB put in n1's folder, followed on n2 as it arrives.
  // Written beside the folder and renamed in: a rescan never sees half of it.
  writeFileSync(join(n1.data, "big.tmp"), randomBytes(64 * 1024 * 1024));
  const follow = onPty(["shell", "--api", n2.api, "--token-file", tokenFile, "-c", "sfs wait big.bin"]);
  for (let i = 0; i < 600 && !/not in the manifest yet/.test(follow.output()); i++) await sleep(50);
  assert.match(follow.output(), /not in the manifest yet/);
  renameSync(join(n1.data, "big.tmp"), join(n1.data, "shared", "big.bin"));
  assert.equal((await shellLine(n1.api, "sfs sync", token)).ok, true);
  const sfsOut = await finished(follow, "sfs wait");
  assertBar(t, sfsOut, "sfs-fetch", "bytes", "if-long");
  assert.match(sfsOut, /\/shared\/big\.bin is here: 67108864 bytes/);

  // pk sfs put / get: a local file into /shared/ through n1's data folder, followed reaching n2;
  // then out again from n2.
  const original = randomBytes(24 * 1024 * 1024);
  writeFileSync(join(dir, "put.bin"), original);
  const putOut = await finished(onPty(["sfs", "put", join(dir, "put.bin"), "/shared/put.bin", "--dir", dir]), "pk sfs put");
  assertBar(t, putOut, "put n1", "bytes", "if-long");
  assert.match(putOut, /put \/shared\/put\.bin: 25165824 bytes, on n1, n2\r?\n/);
  const getOut = await finished(onPty(["sfs", "get", "/shared/put.bin", join(dir, "got.bin"), "--dir", dir, "--node", "n2"]), "pk sfs get");
  assertBar(t, getOut, "get n2", "bytes", "if-long");
  assert.ok(readFileSync(join(dir, "got.bin")).equals(original), "the file came back as it went in");

  // A bundle fetch: n2 waits for the next fetch; an 8 MiB bundle signed by the owner key appears on n1.
  const waiter = onPty(["shell", "--api", n2.api, "--token-file", tokenFile, "-c", "bundle wait"]);
  for (let i = 0; i < 100 && !/waiting for a newer bundle/.test(waiter.output()); i++) await sleep(100);
  const owner = identityFromPrivateKey(createPrivateKey({ key: readFileSync(join(dir, "owner.key")), format: "pem" }));
  const packed = packBundle([
    { path: "dist/src/cli/main.js", mode: 0o644, data: randomBytes(8 * 1024 * 1024) },
    { path: "package.json", mode: 0o644, data: new TextEncoder().encode("{\"name\":\"p-kernel\"}") },
  ]);
  assert.ok(packed.ok);
  const made = makeRelease({
    stream: packed.value, version: Math.floor(Date.now() / 1000), nowMs: Date.now(), targetsTtlMs: 86_400_000, rootTtlMs: 86_400_000,
    rootVersion: 1, node: ">=22.18", name: "p-kernel progress test", owner,
  }, { sha256 });
  mkdirSync(join(n1.data, "bundles"), { recursive: true });
  await new BundleFiles(n1.data).install(toHex(made.targets.address), made.release, packed.value);
  assert.equal((await shellLine(n1.api, "bundle scan", token)).ok, true);
  const bundleOut = await finished(waiter, "bundle wait");
  assertBar(t, bundleOut, "bundle-fetch", "chunks", "if-long");
  assert.match(bundleOut, /fetched v\d+: \d+ chunks/);

  // --json: every reporting command answers one document through pk shell --json -c.
  const lines = ["help", "ver", "mem", "ps", "status", "nodes", "net", "raft", "kv get nothing-here", "vital", "degrade", "infer 0.5 -1 2 0.3", "bundle status", "sfs status", "sfs stat big.bin", "sfs list"];
  for (const line of lines) {
    const r = spawnSync(process.execPath, [BIN, "shell", "--api", apis[0]!, "--token-file", tokenFile, "--json", "-c", line], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, `${line}: ${r.stderr}`);
    assert.equal(typeof JSON.parse(r.stdout), "object", line);
  }
  const failed = spawnSync(process.execPath, [BIN, "shell", "--api", apis[0]!, "--token-file", tokenFile, "--json", "-c", "kv get"], { encoding: "utf8", timeout: 30_000 });
  assert.equal(failed.status, 1);
  assert.equal((JSON.parse(failed.stdout) as { ok: boolean }).ok, false);
  t.diagnostic(`${lines.length} commands answered --json`);
});

test("pk's own commands with --json print one JSON document, errors included", { timeout: 60_000 }, () => {
  const run = (...args: string[]): { code: number | null; value: Record<string, unknown> } => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 30_000 });
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 1, `pk ${args.join(" ")}: one line on stdout, got ${JSON.stringify(r.stdout)}`);
    return { code: r.status, value: JSON.parse(lines[0]!) as Record<string, unknown> };
  };
  const version = run("version", "--json");
  assert.equal(version.code, 0);
  assert.match(String(version.value["pkernel"]), /^\d+\.\d+\.\d+/);
  const down = run("down", "--dir", join(tmpdir(), "pk-progress-no-cluster"), "--json");
  assert.deepEqual([down.code, down.value["cluster"], down.value["stopped"]], [0, false, []]);
  const unreachable = run("shell", "--api", "http://127.0.0.1:9", "--json", "-c", "status");
  assert.equal(unreachable.code, 1);
  assert.equal(unreachable.value["ok"], false);
  assert.match(String(unreachable.value["error"]), /unreachable/);
  const usage = run("bundle", "verify", "--json");
  assert.equal(usage.code, 2);
  assert.deepEqual(Object.keys(usage.value).sort(), ["error", "ok"]);
  const missing = run("bundle", "verify", join(tmpdir(), "pk-progress-no-such.pkb"), "--owner-pub", join(tmpdir(), "pk-progress-no-such.pub"), "--json");
  assert.equal(missing.code, 1);
  assert.equal(missing.value["ok"], false);
});
