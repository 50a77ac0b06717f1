import { test } from "node:test";
import assert from "node:assert/strict";
import { issueCert } from "../../src/core/body/trust.ts";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { createSeal, makeToken } from "../../src/adapters/seal.ts";
import { modeOf } from "../../src/core/body/degrade.ts";
import { AssertionFailure } from "../../src/core/util/assert.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { createNodeShell } from "../../src/node/commands.ts";
import { formatDuration } from "../../src/node/format.ts";
import { Kernel, KERNEL_DEFAULTS } from "../../src/node/kernel.ts";
import type { Store, StoreWrite, Transport } from "../../src/node/ports.ts";
import { formatTable, Shell, tokenize, UsageError } from "../../src/node/shell.ts";

test("tokenize: words, quotes and escapes", () => {
  assert.deepEqual(tokenize("  status  "), { ok: true, tokens: ["status"] });
  assert.deepEqual(tokenize(""), { ok: true, tokens: [] });
  assert.deepEqual(tokenize("a 'b c' \"d e\""), { ok: true, tokens: ["a", "b c", "d e"] });
  assert.deepEqual(tokenize("x a\"b c\"d"), { ok: true, tokens: ["x", "ab cd"] });
  assert.deepEqual(tokenize("say \"a \\\"q\\\" \\\\ z\""), { ok: true, tokens: ["say", "a \"q\" \\ z"] });
  assert.deepEqual(tokenize("'it''s'"), { ok: true, tokens: ["its"] });
  assert.deepEqual(tokenize("a\\ b c"), { ok: true, tokens: ["a b", "c"] });
  assert.deepEqual(tokenize("''"), { ok: true, tokens: [""] }, "an empty quoted word is a word");
  assert.deepEqual(tokenize("single 'x'\t\"y\""), { ok: true, tokens: ["single", "x", "y"] });
  const open = tokenize("echo 'oops");
  assert.equal(open.ok, false);
  assert.match(open.ok ? "" : open.error, /unterminated ' quote at column 6/);
  assert.equal(tokenize("echo \"oops").ok, false);
  assert.equal(tokenize("echo oops\\").ok, false);
});

function toyShell(): Shell<{ greeting: string }> {
  const shell = new Shell({ greeting: "hello" });
  shell.registerCommand({
    name: "greet",
    summary: "greet someone",
    usage: "greet NAME",
    run(args, ctx) {
      if (args.length !== 1) throw new UsageError("needs exactly one NAME");
      return `${ctx.greeting}, ${args[0]}`;
    },
  });
  shell.registerCommand({
    name: "fail",
    summary: "always fails",
    usage: "fail",
    run() {
      throw new Error("disk on fire");
    },
  });
  shell.registerCommand({
    name: "broken",
    summary: "breaks an invariant",
    usage: "broken",
    run() {
      throw new AssertionFailure("invariant");
    },
  });
  return shell;
}

test("shell: runs commands with context and quoted arguments", () => {
  const shell = toyShell();
  assert.deepEqual(shell.execute("greet 'Ada Lovelace'"), { ok: true, output: "hello, Ada Lovelace" });
  assert.deepEqual(shell.execute("   "), { ok: true, output: "" });
});

test("shell: unknown command gives a one-line error plus the usage", () => {
  const result = toyShell().execute("frobnicate now");
  assert.equal(result.ok, false);
  const lines = result.output.split("\n");
  assert.equal(lines.length, 2);
  assert.equal(lines[0], "unknown command \"frobnicate\"");
  assert.match(lines[1] ?? "", /^usage: COMMAND .*commands: broken, fail, greet/);
});

test("shell: bad arguments give the error and the command's usage", () => {
  assert.deepEqual(toyShell().execute("greet"), { ok: false, output: "greet: needs exactly one NAME\nusage: greet NAME" });
  assert.deepEqual(toyShell().execute("fail"), { ok: false, output: "fail: failed: disk on fire" });
  assert.equal(toyShell().execute("greet 'unterminated").ok, false);
});

test("shell: a broken invariant is not swallowed", () => {
  assert.throws(() => toyShell().execute("broken"), AssertionFailure);
});

test("shell: line length is bounded", () => {
  const shell = toyShell();
  const long = `greet ${"x".repeat(LIMITS.shellLineCharsMax)}`;
  const result = shell.execute(long);
  assert.equal(result.ok, false);
  assert.match(result.output, /line too long/);
  assert.equal(shell.execute(`greet ${"x".repeat(LIMITS.shellLineCharsMax - 6)}`).ok, true);
});

test("shell: registration rejects bad and duplicate names; completions by prefix", () => {
  const shell = toyShell();
  assert.throws(() => shell.registerCommand({ name: "Greet", summary: "", usage: "", run: () => "" }), AssertionFailure);
  assert.throws(() => shell.registerCommand({ name: "greet", summary: "", usage: "", run: () => "" }), AssertionFailure);
  assert.deepEqual(shell.completions("g"), ["greet"]);
  assert.deepEqual(shell.completions(""), ["broken", "fail", "greet"]);
  assert.deepEqual(shell.completions("z"), []);
});

test("formatTable aligns columns; formatDuration is readable", () => {
  assert.equal(formatTable(["A", "LONGER"], [["xyz", "1"], ["q", "22"]]), "A    LONGER\nxyz  1\nq    22");
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(12_345), "12.3s");
  assert.equal(formatDuration(3 * 3600_000 + 4 * 60_000 + 5_000), "3h04m05s");
});

test("degrade: mode from alive count", () => {
  assert.equal(modeOf(1), "SOLO");
  assert.equal(modeOf(2), "REDUCED");
  assert.equal(modeOf(3), "FULL");
  assert.equal(modeOf(500), "FULL");
  assert.throws(() => modeOf(0), AssertionFailure);
});

// --- the built-in commands over a real Kernel (real identity and seal; in-memory transport and store)

function memoryStore(): Store {
  const map = new Map<string, Uint8Array>();
  return {
    get: (key) => map.get(key),
    scan: (prefix, limit = Infinity) => [...map.entries()].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)).slice(0, limit),
    write(batch: readonly StoreWrite[]) {
      for (const { key, value } of batch) if (value === undefined) map.delete(key); else map.set(key, value);
    },
    writeAsync(batch: readonly StoreWrite[], done: (error?: Error) => void) {
      this.write(batch, { durable: true });
      done();
    },
    close() {},
  };
}

function loopTransport(address: string): Transport {
  return {
    address,
    send() {},
    onPacket() {},
    onDrop() {},
    close: async () => {},
  };
}

function kernel(): Kernel {
  const identity = createIdentityFromSeed(new Uint8Array(32).fill(7));
  const owner = createIdentityFromSeed(new Uint8Array(32).fill(8));
  const trust = { owner: owner.publicKey, cert: issueCert(owner, identity.publicKey, { role: "core", issuedMs: 0, expiresMs: 0 }), ownerKey: owner };
  const k = new Kernel(
    { transport: loopTransport("127.0.0.1:7401"), store: memoryStore(), clock: { nowMs: () => 1_767_225_600_000 }, seal: createSeal(makeToken(), identity), identity, trust, rng: createRng(1) },
    { ...KERNEL_DEFAULTS, name: "n1", join: [] },
  );
  k.start();
  for (let i = 0; i < 5; i++) k.tick();
  return k;
}

test("commands: help lists every command with its summary; help CMD shows usage", () => {
  const shell = createNodeShell(kernel());
  const help = shell.execute("help");
  assert.equal(help.ok, true);
  for (const name of ["help", "ver", "mem", "ps", "status", "nodes", "net", "exit"]) {
    assert.match(help.output, new RegExp(`^  ${name} +\\S`, "m"), `help lists ${name}`);
  }
  assert.deepEqual(shell.execute("help nodes"), { ok: true, output: "nodes — the member table\nusage: nodes [--json]" });
  const missing = shell.execute("help nope");
  assert.equal(missing.ok, false);
  assert.match(missing.output, /^help: no command "nope"\nusage: help \[COMMAND\]$/);
});

test("commands: status, nodes, ps, net, ver, mem, exit", () => {
  const k = kernel();
  const shell = createNodeShell(k);
  const status = shell.execute("status");
  assert.equal(status.ok, true);
  assert.match(status.output, new RegExp(`^id +${k.id}$`, "m"));
  assert.match(status.output, /^mode +SOLO$/m);
  assert.match(status.output, /^members +1 alive \/ 1$/m);
  assert.match(status.output, /^tick +5$/m);

  const nodes = shell.execute("nodes").output.split("\n");
  assert.match(nodes[0] ?? "", /^ID +NAME +ADDRESS +ROLE +STATE +INC +LAST HEARD$/);
  assert.match(nodes[1] ?? "", new RegExp(`^${k.id} +n1 +127\\.0\\.0\\.1:7401 +core +alive +0 +self$`));

  const ps = shell.execute("ps").output;
  assert.match(ps, /^TID +NAME +KIND +STATE +STEPS +UPTIME$/m);
  assert.match(ps, /^1 +kernel +daemon +running +5 +50ms$/m);

  const net = shell.execute("net").output;
  assert.match(net, /^drops +auth 0 +unknown 0 +denied 0 +decode 0 +replay 0 +oversize 0$/m);
  assert.match(net, /^datagram +0 +0 +0 +0$/m);
  assert.match(net, /rtt: no samples yet/);

  assert.match(shell.execute("ver").output, /^p-kernel +0\.\d+\.\d+\nnode +v\d+/);
  assert.match(shell.execute("mem").output, /^rss +\d+\.\d MiB$/m);
  assert.match(shell.execute("exit").output, /interactive shell/);
  assert.deepEqual(shell.execute("status now"), { ok: false, output: "status: takes no arguments, got \"now\"\nusage: status" });
});

test("commands: vital, degrade, guard, heal, persist on a single node", () => {
  const k = kernel();
  const shell = createNodeShell(k);
  k.guardRunner = (command) => shell.execute(command).output;

  const vital = shell.execute("vital");
  assert.equal(vital.ok, true);
  assert.match(vital.output, /^ID +NAME +STATE +UPTIME +LOAD +RSS +HEAP +LOOP P99 +HEARD$/m);
  assert.match(vital.output, new RegExp(`^${k.id} +n1 +alive `, "m"));
  assert.match(shell.execute("vital history").output, /^AGO +UPTIME/m);

  const degrade = shell.execute("degrade").output;
  assert.match(degrade, /^mode +SOLO$/m);
  assert.match(degrade, /^alive +1 /m);

  // A guarded task on a lone node runs here once heal has settled (no peers: at once).
  assert.match(shell.execute("guard beat 0.05 ver").output, /^guarded beat: "ver" every 0\.05s/);
  for (let i = 0; i < 20; i++) k.tick();
  const heal = shell.execute("heal list").output;
  assert.match(heal, new RegExp(`^beat +${k.id} +self +1 +0\\.05s +yes \\(\\d+ runs\\) +ver$`, "m"));
  assert.match(shell.execute("ps").output, /^\d+ +guard:beat +guarded +running /m);
  assert.match(k.guardStatuses()[0]?.running?.lastOutput ?? "", /^p-kernel/, "the command ran in the shell");

  // Bad input is a usage error, never a crash.
  for (const line of ["guard", "guard x", "guard bad/name 1 ver", "guard x -1 ver", "guard x 1e9 ver", "guard x 1 guard y 1 ver", "guard rm nope", "persist clear epoch", "persist frob", "heal now", "vital now"]) {
    const result = shell.execute(line);
    assert.equal(result.ok, false, line);
  }

  const persisted = shell.execute("persist list").output;
  assert.match(persisted, /^incarnation +2 +\d+ +yes/m);
  assert.match(persisted, /^guarded +1 +\d+ +yes/m);
  assert.match(shell.execute("persist clear guarded").output, /^cleared guarded: 1 key$/);
  assert.match(shell.execute("persist list").output, /^guarded +0 +0 /m);
  assert.match(shell.execute("heal").output, /^no guarded tasks/);
  for (let i = 0; i < 3; i++) k.tick();
  assert.doesNotMatch(shell.execute("ps").output, /guard:beat +guarded +running/, "the task stopped with its record");

  assert.match(shell.execute("guard beat 1 ver").output, /guarded beat/);
  assert.match(shell.execute("guard rm beat").output, /^removed beat$/);
  assert.match(shell.execute("heal").output, /^no guarded tasks/);
});

test("commands: raft, kv, topic, spawn on a single node that founded its cluster", async () => {
  const k = kernel();
  const shell = createNodeShell(k);
  // The founder elects itself once its election timeout passes (no defer port: drains at once).
  for (let i = 0; i < 40 && !k.consensus.isLeader; i++) k.tick();
  assert.equal(k.consensus.isLeader, true);
  const raft = shell.execute("raft").output;
  assert.match(raft, /^state +leader$/m);
  assert.match(raft, new RegExp(`^config +voters=\\(${k.id}\\)$`, "m"));
  assert.match(raft, /^config epoch +0 \(0 regenerations here; regeneration on\)$/m);

  assert.deepEqual(await shell.executeAsync("kv put greeting hello"), { ok: true, output: `ok (revision ${k.consensus.status().commit})` });
  assert.deepEqual(await shell.executeAsync("kv get greeting"), { ok: true, output: "hello" });
  assert.match((await shell.executeAsync("kv cas greeting nope world")).output, /^kv: failed: compare failed: the key holds "hello"$/);
  assert.match((await shell.executeAsync("kv cas greeting hello world")).output, /^ok \(revision \d+\)$/);
  assert.match(shell.execute("kv list").output, /^greeting +\d+ +5 +"world"$/m);
  assert.match((await shell.executeAsync("kv del greeting")).output, /^deleted/);
  assert.match((await shell.executeAsync("kv get greeting")).output, /no such key/);

  assert.match(shell.execute("topic pub sensors temp 21.5").output, /^published \(version 1\)/);
  assert.match(shell.execute("topic get sensors").output, /^temp +"21\.5" +[0-9a-f]{16} +1$/m);
  assert.match(shell.execute("topic list").output, /^sensors +gossip +1 keys +-$/m);
  assert.match(shell.execute("topic del sensors temp").output, /^deleted/);
  assert.match(shell.execute("topic get sensors temp").output, /^no such key$/);
  assert.match(shell.execute("spawn stat").output, /^this node +leader, applied \d+ of commit \d+$/m);
  for (const line of ["kv", "kv get", "kv put k", "kv frob x", "topic", "topic pub a b", "topic pub 'bad topic' k v", "topic sub t 0", "topic sub t 99", "spawn", "raft now"]) {
    assert.equal((await shell.executeAsync(line)).ok, false, line);
  }
});

test("commands: infer, dtr, dkva, moe, fl, ga and route on a single node", async () => {
  const k = kernel();
  const shell = createNodeShell(k);
  for (let i = 0; i < 40 && !k.consensus.isLeader; i++) k.tick();
  assert.match((await shell.executeAsync("dtr stat")).output, /^model +v0 init, tag [0-9a-f]{16}$/m);
  assert.match((await shell.executeAsync("dtr stat")).output, /715 parameters/);
  assert.match((await shell.executeAsync("infer 0.5 -1 2 0.3")).output, /^(normal|alert|critical) \(normal [\d.]+%, alert [\d.]+%, critical [\d.]+%\)\ncomputed on this node only \(local inference\); cluster (FULL|REDUCED|SOLO); model v0/);
  // Alone, every distributed mode runs on this node only and equals local inference.
  const local = (await shell.executeAsync("dtr infer local 1 2 3 4")).output.split("\n")[0];
  for (const mode of ["pipeline", "tensor", "dkva"]) {
    const out = (await shell.executeAsync(`dtr infer ${mode} 1 2 3 4`)).output;
    assert.equal(out.split("\n")[0], local, mode);
    assert.match(out, new RegExp(`^${mode}: no peer to split with, computed on this node only; cluster `, "m"));
  }
  // Without a shared folder (the simulator's kernel) a trained model stays on this node.
  const trained = (await shell.executeAsync("dtr train 3")).output;
  assert.match(trained, /held-out accuracy [\d.]+% against [\d.]+% for the best single-feature threshold/);
  assert.match(trained, /published model v1/);
  assert.match((await shell.executeAsync("dtr stat")).output, /^model +v1 trained/m);
  assert.match((await shell.executeAsync("ga run 5")).output, /^5 generations, \d+ kept: held-out loss [\d.]+ → [\d.]+$/);
  assert.match((await shell.executeAsync("ga")).output, /^here +5 generations run/m);
  assert.match((await shell.executeAsync("dkva")).output, /^peers +none \(a DKVA inference runs on this node alone\)$/m);
  assert.match((await shell.executeAsync("moe")).output, /no probes yet/);
  assert.match((await shell.executeAsync("moe probe 5")).output, /^15 probes answered$/);
  assert.match((await shell.executeAsync("fl status")).output, /no rounds/);
  assert.match((await shell.executeAsync("route")).output, /^mesh +on, seqno \d+$/m);
  for (const line of ["infer", "infer 1 2 3", "infer 1 2 3 x", "dtr infer warp 1 2 3 4", "dtr train 0", "dtr init huge", "moe probe -1", "fl train 1000", "ga run 0", "route ping", "route ping nobody", "dtr frob"]) {
    assert.equal((await shell.executeAsync(line)).ok, false, line);
  }
});

test("commands: every command that reports answers LINE --json with one JSON document; the others say they cannot", async () => {
  const k = kernel();
  const shell = createNodeShell(k);
  for (let i = 0; i < 40 && !k.consensus.isLeader; i++) k.tick();
  assert.equal((await shell.executeAsync("kv put colour blue")).ok, true);
  const lines = ["help", "ver", "mem", "ps", "status", "nodes", "net", "raft", "kv get colour", "kv get absent", "kv list", "vital", "vital history", "degrade", "infer 0.5 -1 2 0.3", "sfs status"];
  let parsed = 0;
  for (const line of lines) {
    const answer = await shell.executeAsync(`${line} --json`);
    if (line === "sfs status" && !answer.ok) continue; // the simulator's kernel has no files port
    assert.equal(answer.ok, true, `${line}: ${answer.output}`);
    const value = JSON.parse(answer.output) as Record<string, unknown>;
    assert.equal(typeof value, "object", line);
    parsed++;
  }
  assert.ok(parsed >= lines.length - 1, `${parsed} documents parsed`);
  const colour = JSON.parse((await shell.executeAsync("kv get colour --json")).output) as { key: string; found: boolean; value: string; revision: number };
  assert.deepEqual({ ...colour, revision: typeof colour.revision }, { key: "colour", found: true, value: "blue", revision: "number" });
  assert.equal(JSON.parse((await shell.executeAsync("kv get absent --json")).output).found, false);
  const status = JSON.parse((await shell.executeAsync("status --json")).output) as { id: string; mode: string };
  assert.equal(status.id, k.id);
  const inferred = JSON.parse((await shell.executeAsync("infer 0.5 -1 2 0.3 --json")).output) as { ran: string; clusterMode: string; where: string };
  assert.equal(inferred.ran, "local");
  assert.equal(inferred.clusterMode, k.mode);
  assert.match(inferred.where, /^computed on this node only/);
  // Bad arguments with --json are the same clear error; a command without --json output says so.
  assert.match((await shell.executeAsync("kv get --json")).output, /^kv: get takes one KEY/);
  const none = await shell.executeAsync("exit --json");
  assert.deepEqual(none, { ok: false, output: "exit has no --json output" });
});
