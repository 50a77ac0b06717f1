// Issue 16, acceptance 2, on five real supervised `pk node --supervise` processes under a steady
// write load (/v1/kv PUTs on every node, each acknowledged key read back at the end):
//   - a signed bundle of this checkout with a higher version (`pk bundle --version N`, signed with
//     the founder's owner key) is installed on one node; it spreads, and every node restarts into
//     it one at a time under the cluster's upgrade lock (docs/protocols/upgrade.md): every node
//     runs the new version, no acknowledged write is lost, and no write fails (answers whose
//     outcome is unknown — a 504, LEADER_CHANGED, a connection cut mid-request — are counted
//     apart; a refusal that says nothing was done — 503 NO_LEADER/BUSY/SHUTTING_DOWN, a refused connection — is
//     retried on another node, as a client does, and counted);
//   - then a validly signed release that cannot boot (its CLI throws on import): the first node
//     that tries it is rolled back by its supervisor, writes upgrade/halt/<address>, and every node
//     still runs the previous version.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hash, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BundleFiles } from "../../src/adapters/bundle-files.ts";
import { identityFromPrivateKey } from "../../src/adapters/identity.ts";
import { decodeBundleFile, makeRelease, packBundle, unpackBundle } from "../../src/core/evolve/bundle.ts";
import { toHex } from "../../src/core/util/bytes.ts";
import { bearer, pk } from "./cluster-helpers.ts";
import { alive, converged, kill9, shell, Swarm, until, type SwarmNode, freePort } from "./self-helpers.ts";

const sha256 = (d: Uint8Array): Uint8Array => new Uint8Array(hash("sha256", d, "buffer"));
const GOOD_VERSION = 1_000;
const BAD_VERSION = 1_001;


interface Load {
  ok: number;
  failed: number;
  unknown: number;
  /** Answers that said nothing was done (503 NO_LEADER, BUSY or SHUTTING_DOWN, a refused connection), retried on another node. */
  retried: number;
  /** The retried answers by kind (NO_LEADER, BUSY, SHUTTING_DOWN, ECONNREFUSED). */
  retriedBy: Record<string, number>;
  failures: string[];
  /** Acknowledged keys and their values. */
  acked: Map<string, string>;
}

/** Writers PUT unique keys round robin over the nodes until stopped. */
function startLoad(nodes: readonly SwarmNode[], token: string, writers = 4): { load: Load; stop(): Promise<void> } {
  const load: Load = { ok: 0, failed: 0, unknown: 0, retried: 0, retriedBy: {}, failures: [], acked: new Map() };
  let running = true;
  const note = (line: string): void => {
    if (load.failures.length < 20) load.failures.push(line);
  };
  const writer = async (w: number): Promise<void> => {
    let at = w;
    for (let i = 0; running; i++) {
      const key = `up-${w}-${i}`, value = `v${i}`;
      for (let attempt = 0; ; attempt++) {
        const node = nodes[at++ % nodes.length] as SwarmNode;
        let verdict: "ok" | "unknown" | "retry" | "failed";
        let detail = "";
        let kind = "";
        try {
          const response = await fetch(`${node.api}/v1/kv/${key}`, { method: "PUT", headers: bearer(token), body: value, signal: AbortSignal.timeout(10_000) });
          const text = await response.text();
          detail = `${response.status} ${text.slice(0, 160)}`;
          if (response.ok) verdict = "ok";
          else if (response.status === 504 || /LEADER_CHANGED/.test(text)) verdict = "unknown";
          else if (response.status === 503 && /NO_LEADER|BUSY|SHUTTING_DOWN/.test(text)) {
            verdict = "retry";
            kind = /NO_LEADER|BUSY|SHUTTING_DOWN/.exec(text)?.[0] ?? "";
          }
          else verdict = "failed";
        } catch (error) {
          const code = (error as { cause?: { code?: string } }).cause?.code;
          detail = `${String(error).slice(0, 120)} ${code ?? ""}`;
          // A refused connection: the node is restarting, nothing was sent. Anything else may have been applied.
          verdict = code === "ECONNREFUSED" ? "retry" : "unknown";
          kind = code ?? "";
        }
        if (verdict === "retry" && attempt < 50 && running) {
          load.retried++;
          load.retriedBy[kind] = (load.retriedBy[kind] ?? 0) + 1;
          await sleep(100);
          continue;
        }
        if (verdict === "ok") {
          load.ok++;
          load.acked.set(key, value);
        } else if (verdict === "unknown") {
          load.unknown++;
          note(`${node.name} ${key}: ${detail} (unknown outcome)`);
        } else {
          load.failed++;
          note(`${node.name} ${key}: ${detail} (failed)`);
        }
        break;
      }
    }
  };
  const all = Array.from({ length: writers }, (_, w) => writer(w));
  return { load, stop: async () => { running = false; await Promise.all(all); } };
}

test("rolling upgrade of 5 supervised nodes into a signed bundle under write load; a bundle that cannot boot is rolled back and halts the rollout (issue 16)", { timeout: 900_000 }, async (t) => {
  const swarm = new Swarm(t);
  const ports = async (): Promise<string[]> => ["--listen", `127.0.0.1:${await freePort()}`, "--api", `127.0.0.1:${await freePort()}`, "--supervise"];
  const n1 = await swarm.start("n1", { flags: await ports() });
  const rest: SwarmNode[] = [];
  for (const name of ["n2", "n3", "n4", "n5"]) rest.push(await swarm.start(name, { join: n1, flags: await ports() }));
  const all = [n1, ...rest];
  await converged(all, 5, 60_000);
  const sh = async (node: SwarmNode, line: string): Promise<string> => {
    const r = await shell(node.api, line, swarm.token, 30_000);
    assert.ok(r.ok, `${node.name}: ${line}: ${r.output}`);
    return r.output;
  };
  const running = async (node: SwarmNode): Promise<number | undefined> => {
    try {
      const m = /running\s+v(\d+)/.exec(await sh(node, "bundle status"));
      return m === null ? undefined : Number(m[1]);
    } catch {
      return undefined; // restarting
    }
  };
  // Five voters before the load starts (the leader promotes caught-up learners).
  await until("five Raft voters", async () => {
    const config = /voters=\(([^)]*)\)(&&)?/.exec(await sh(n1, "raft"));
    return config !== null && config[2] === undefined && (config[1] ?? "").trim().split(/\s+/).length === 5;
  }, 60_000, 250);

  // The release: this checkout, built and signed with the founder's owner key.
  const file = join(swarm.dir, "good.pkb");
  const built = await pk(["bundle", "--version", String(GOOD_VERSION), "--key", join(n1.data, "owner.key"), "--out", file, "--install", n1.data], 300_000);
  assert.equal(built.code, 0, built.stderr);
  const goodId = /bundle v\d+ ([0-9a-f]{64})/.exec(built.stdout)?.[1] ?? "";
  t.diagnostic(built.stdout.trim().split("\n").slice(0, 4).join(" | "));

  const load = startLoad(all, swarm.token);
  // A failing test stops its writers too (they would retry refused connections forever).
  t.after(() => load.stop());
  await sleep(3_000);
  const started = Date.now();
  assert.match(await sh(n1, "bundle scan"), /held\s+v1000/);
  const upgradedAt = new Map<string, number>();
  // Every node is looked at every round: how many are away (not answering, or booting) at once.
  let awayMax = 0;
  await until("every node on the new version", async () => {
    const versions = await Promise.all(all.map((node) => running(node)));
    awayMax = Math.max(awayMax, versions.filter((v) => v === undefined).length);
    all.forEach((node, i) => {
      if (!upgradedAt.has(node.name) && versions[i] === GOOD_VERSION) upgradedAt.set(node.name, Date.now() - started);
    });
    return upgradedAt.size === all.length;
  }, 480_000, 250);
  t.diagnostic(`nodes away at once, at most: ${awayMax}`);
  assert.ok(awayMax <= 1, `one node at a time restarts: ${awayMax} were away at once`);
  const order = [...upgradedAt].sort((a, b) => a[1] - b[1]);
  t.diagnostic(`upgraded (s since the bundle was added on n1): ${order.map(([n, ms]) => `${n} ${(ms / 1000).toFixed(1)}`).join(", ")}`);
  // Each node's own figure, from its supervisor's log: restart asked for → healthy.
  for (const node of all) {
    const m = await until(`${node.name}'s supervisor keeping v1000`, () => /v1000 [0-9a-f]{16} is healthy, (\d+) ms after the restart was asked for/.exec(readFileSync(node.err, "utf8")) ?? undefined, 120_000, 250);
    t.diagnostic(`${node.name}: restart → healthy ${(Number(m[1]) / 1000).toFixed(1)} s`);
  }
  for (const node of all) await until(`${node.name} idle again`, async () => /phase\s+idle/.test(await sh(node, "upgrade status")), 30_000, 250);
  t.diagnostic(`after the upgrade: writes ok ${load.load.ok}, failed ${load.load.failed}, unknown ${load.load.unknown}, retried ${load.load.retried}`);

  // A validly signed release that cannot boot: the good one with a CLI that throws on import.
  const decoded = decodeBundleFile(new Uint8Array(readFileSync(file)));
  assert.ok(decoded.ok);
  const files = unpackBundle(decoded.value.stream);
  assert.ok(files.ok);
  const broken = files.value.map((f) => (f.path === "dist/src/cli/main.js" ? { ...f, data: new TextEncoder().encode("throw new Error(\"this release cannot boot\");\nexport {};\n") } : f));
  const packed = packBundle(broken);
  assert.ok(packed.ok);
  const owner = identityFromPrivateKey(createPrivateKey({ key: readFileSync(join(n1.data, "owner.key")), format: "pem" }));
  const made = makeRelease({ stream: packed.value, version: BAD_VERSION, nowMs: Date.now(), targetsTtlMs: 86_400_000, rootTtlMs: 86_400_000, rootVersion: 1, node: ">=22.18", name: "p-kernel broken", owner }, { sha256 });
  const badId = toHex(made.targets.address);
  const n3 = all[2] as SwarmNode;
  await new BundleFiles(n3.data).install(badId, made.release, packed.value);
  const badAt = Date.now();
  await sh(n3, "bundle scan");
  const halted = await until("the broken bundle halted", async () => {
    for (const node of all) {
      try {
        if ((await sh(node, "upgrade status")).includes(`${badId.slice(0, 16)}  `) && /HALTED/.test(await sh(node, "upgrade status"))) return node;
      } catch {
        // restarting
      }
    }
    return undefined;
  }, 240_000, 500);
  t.diagnostic(`the broken bundle was halted ${((Date.now() - badAt) / 1000).toFixed(1)} s after it was added (seen on ${halted.name})`);
  // Every node comes to hold it, refuses it, and still runs the good version.
  // What the last look found on a node that was not there yet: what to read when this times out.
  let lagging = "";
  try {
    await until("every node holding v1001 and refusing it", async () => {
      for (const node of all) {
        const bundle = await sh(node, "bundle status");
        if (!/held\s+.*v1001/.test(bundle)) {
          lagging = `${node.name} does not hold v1001:\n${bundle}`;
          return false;
        }
        const upgrade = await sh(node, "upgrade status");
        if (!/refused: (halted|rolled back here)/.test(upgrade)) {
          lagging = `${node.name} does not refuse v1001:\n${upgrade}`;
          return false;
        }
      }
      return true;
    }, 120_000, 500);
  } catch (error) {
    t.diagnostic(lagging);
    throw error;
  }
  await sleep(5_000);
  const rolledBack: string[] = [];
  for (const node of all) {
    assert.equal(await running(node), GOOD_VERSION, `${node.name} runs v1000`);
    const status = await sh(node, "upgrade status");
    if (/ROLLED BACK HERE/.test(status)) rolledBack.push(node.name);
  }
  assert.equal(rolledBack.length, 1, `exactly one node tried the broken bundle: ${rolledBack.join(", ")}`);
  const err = readFileSync((all.find((n) => n.name === rolledBack[0]) as SwarmNode).err, "utf8");
  assert.match(err, /failed \(the new code exited/);
  t.diagnostic(`rolled back by itself on ${rolledBack[0] ?? "?"}; the others refused it (upgrade/halt/${badId.slice(0, 16)}…)`);
  assert.match(await sh(n1, `upgrade status`), /lock\s+free/);

  await load.stop();
  // A supervised kernel dies with its supervisor, even one killed with SIGKILL.
  const n5 = all[4] as SwarmNode;
  const kernelPid = Number(readFileSync(join(n5.data, "pid"), "utf8").trim());
  assert.ok(alive(kernelPid) && kernelPid !== n5.child.pid);
  await kill9(n5.child);
  await until("n5's kernel gone with its supervisor", () => !alive(kernelPid), 10_000, 50);
  const { ok, failed, unknown, retried, retriedBy, failures, acked } = load.load;
  t.diagnostic(`writes: ok ${ok}, failed ${failed}, unknown outcome ${unknown}, retried after a refusal ${retried} (${JSON.stringify(retriedBy)})`);
  if (failures.length > 0) t.diagnostic(failures.join("\n"));
  assert.equal(failed, 0, failures.join("\n"));
  // Every acknowledged write is there.
  let lost = 0;
  for (const [key, value] of acked) {
    const response = await fetch(`${n1.api}/v1/kv/${key}`, { headers: bearer(swarm.token), signal: AbortSignal.timeout(10_000) });
    const text = await response.text();
    if (!(response.ok && text === value)) {
      lost++;
      if (lost <= 5) t.diagnostic(`lost ${key}: wanted ${value.slice(0, 40)}, read ${response.status} ${text.slice(0, 80)}`);
    }
  }
  t.diagnostic(`acknowledged writes read back: ${acked.size - lost} of ${acked.size}`);
  assert.equal(lost, 0);
  assert.ok(goodId.length === 64);
});
