// Issue 16, acceptance 1, on five real `pk node` processes under a steady load of /v1/infer (sensor
// readings, through the prefilter) and /v1/kv (writes and reads) on every node:
//   - a good prefilter is deployed on n1 as the canary, promoted after its window, and then runs
//     on every node;
//   - four bad versions of it are each rolled back by the leader, with the rule that caught them:
//     one that throws on live traffic, one that leaks memory, one whose probe() slows down, and
//     one that lowers the Brain's held-out accuracy; the canary returns to the good version;
//   - no node restarts, and the load sees no failed request (answers whose outcome is unknown, a
//     KV timeout or a leader change, are counted apart);
//   - a model update that loses held-out accuracy is rolled back (the old weights published again);
//   - a canary whose node is killed is rolled back, not promoted blind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { bearer } from "./cluster-helpers.ts";
import { converged, kill9, shell, Swarm, until, type SwarmNode } from "./self-helpers.ts";

const OUTLIERS = readFileSync(new URL("../fixtures/programs/outliers.ts", import.meta.url), "utf8");
/** The fixture's source, as text: between the template literal's backquotes. */
const BASE = (() => {
  const start = OUTLIERS.indexOf("`// @pk-program");
  const end = OUTLIERS.indexOf("`;", start);
  return OUTLIERS.slice(start + 1, end).replaceAll("\\`", "`").replaceAll("\\${", "${");
})();

/** A version of the outlier prefilter: the manifest's version, extra code in prefilter(), and a probe(). */
function version(v: string, options: { extra?: string; probe?: string; capabilities?: string; imports?: string; limits?: string } = {}): string {
  let src = BASE.replace("\"version\":\"1.0.0\"", `"version":"${v}"`);
  if (options.capabilities !== undefined) src = src.replace("\"capabilities\":{\"log\":true,\"kv\":true}", `"capabilities":${options.capabilities}`);
  if (options.limits !== undefined) src = src.replace("\"hook\":\"sensor.prefilter\"", `"hook":"sensor.prefilter","limits":${options.limits}`);
  src = src.replace("import { kv, log, type Reading } from \"pk:program\";", `import { ${options.imports ?? "kv, log"}, type Reading, type ProbeResult } from "pk:program";`);
  src = src.replace("export function prefilter(readings: readonly Reading[]): readonly Reading[] {\n", `export function prefilter(readings: readonly Reading[]): readonly Reading[] {\n${options.extra ?? ""}`);
  return `${src}\nexport function probe(): ProbeResult {\n${options.probe ?? "  return { ok: true };"}\n}\n`;
}

function reply(analysis: string, code: string): string {
  return `[ANALYSIS]\n${analysis}\n\n[CODE]\n\`\`\`ts\n${code}\n\`\`\`\n\n[CMD]\n`;
}

const GOOD = version("1.0.0");
const BAD = [
  {
    name: "throws", rule: /errors: \d+ of \d+ runs failed \(throw/,
    // Fine on the dry run's recorded batch; throws on the live calls (one reading per sensor).
    code: version("1.1.0", { extra: "  if (readings.length <= 4) throw new Error(\"no history to judge one reading by\");\n" }),
  },
  {
    name: "leaks memory", rule: /memory: peak/,
    // Keeps more each run: what a leak looks like from outside a fresh runtime.
    code: version("1.2.0", {
      capabilities: "{\"log\":true,\"kv\":true,\"files\":true}", imports: "files, kv, log",
      extra: "  const n = Number(files.read(\"n\") ?? \"0\") + 1;\n  files.write(\"n\", String(n));\n  const hoard: string[] = [];\n  for (let i = 0; i < n * 400; i++) hoard.push(`${i}:`.padEnd(200, \"x\"));\n  log.info(`holding ${hoard.length}`);\n",
      limits: "{\"memoryBytes\":33554432,\"gas\":20000,\"wallMs\":2000}",
    }),
  },
  {
    name: "slows its probe", rule: /probe slowed: [\d.]+ ms against [\d.]+ ms/,
    code: version("1.3.0", { probe: "  let x = 1;\n  for (let i = 0; i < 3000000; i++) x = (x * 31 + i) % 1000003;\n  return { ok: x >= 0 };", limits: "{\"gas\":20000,\"wallMs\":5000}" }),
  },
  {
    name: "lowers held-out accuracy", rule: /accuracy: held-out [\d.]+% with it, [\d.]+% without/,
    // Keeps only temperature: the Brain loses three of its four readings.
    code: version("1.4.0", { extra: "  if (readings.length > 4) return readings.filter((r) => r.sensor === \"temperature\");\n" }),
  },
] as const;

interface Load {
  ok: number;
  failed: number;
  unknown: number;
  failures: string[];
}

/** /v1/infer and /v1/kv on every node, round robin, until stopped. */
function startLoad(nodes: readonly SwarmNode[], token: string): { load: Load; stop(): Promise<void> } {
  const load: Load = { ok: 0, failed: 0, unknown: 0, failures: [] };
  let running = true;
  const written = new Set<string>(), unsure = new Set<string>();
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const node = nodes[(i + w) % nodes.length] as SwarmNode;
      // Workers 0-3 ask the Brain (through the prefilter); 4 and 5 write and read the KV.
      const op = w < 4 ? 0 : 1 + (i % 2);
      try {
        const response = op === 0
          ? await fetch(`${node.api}/v1/infer`, { method: "POST", headers: { ...bearer(token), "Content-Type": "application/json" }, body: JSON.stringify({ values: [Math.sin(i), Math.cos(i), 0.1 * (i % 7), -0.2] }), signal: AbortSignal.timeout(10_000) })
          : op === 1
            ? await fetch(`${node.api}/v1/kv/load-${w}-${i % 50}`, { method: "PUT", headers: bearer(token), body: `v${i}`, signal: AbortSignal.timeout(10_000) })
            : await fetch(`${node.api}/v1/kv/load-${w}-${(i - 1) % 50}`, { headers: bearer(token), signal: AbortSignal.timeout(10_000) });
        const text = await response.text();
        const key = `load-${w}-${(op === 1 ? i : i - 1) % 50}`;
        if (op === 1) (response.ok ? written : unsure).add(key);
        if (response.ok) load.ok++;
        // An unknown outcome: a timeout or a leader change, or a read of a key whose write had one.
        else if (response.status === 504 || /LEADER_CHANGED/.test(text) || (op === 2 && response.status === 404 && unsure.has(key) && !written.has(key))) load.unknown++;
        else {
          load.failed++;
          if (load.failures.length < 10) load.failures.push(`${op} ${node.name}: ${response.status} ${text.slice(0, 200)}`);
        }
      } catch (error) {
        if (op === 1) unsure.add(`load-${w}-${i % 50}`);
        load.unknown++;
        if (load.failures.length < 10) load.failures.push(`${op} ${node.name}: ${String(error).slice(0, 200)} (unknown outcome)`);
      }
    }
  };
  const workers = [0, 1, 2, 3, 4, 5].map((w) => worker(w));
  return { load, stop: async () => { running = false; await Promise.all(workers); } };
}

test("rollout on 5 real processes under load: a good prefilter promoted everywhere, four bad versions each rolled back, no failed request (issue 16)", { timeout: 900_000 }, async (t) => {
  const swarm = new Swarm(t);
  const n1 = await swarm.start("n1");
  const n2 = await swarm.start("n2", { join: n1 });
  const n3 = await swarm.start("n3", { join: n1 });
  const n4 = await swarm.start("n4", { join: n1 });
  const n5 = await swarm.start("n5", { join: n1 });
  const all = [n1, n2, n3, n4, n5];
  await converged(all, 5, 60_000);
  const sh = async (node: SwarmNode, line: string): Promise<string> => {
    const r = await shell(node.api, line, swarm.token, 120_000);
    assert.ok(r.ok, `${node.name}: ${line}: ${r.output}`);
    return r.output;
  };
  // A trained model, so that held-out accuracy means something; it reaches every node.
  const trained = await sh(n1, "dtr train 8");
  t.diagnostic(trained.split("\n").at(-1) ?? "");
  const tag = /tag ([0-9a-f]{16})/.exec(await sh(n1, "dtr stat"))?.[1];
  assert.ok(tag !== undefined);
  await until("every node has the trained model", async () => (await Promise.all(all.map((n) => sh(n, "dtr stat")))).every((s) => s.includes(tag)), 60_000, 250);

  const { load, stop } = startLoad(all, swarm.token);
  t.after(stop);
  const pids = all.map((n) => n.child.pid);
  const programsOn = async (node: SwarmNode): Promise<string> => sh(node, "programs");
  const runs = async (v: string, why: string): Promise<void> => {
    await until(why, async () => (await Promise.all(all.map(programsOn))).every((out) => new RegExp(`^outliers +${v.replaceAll(".", "\\.")} +sensor`, "m").test(out)), 60_000, 200);
  };

  // The good version: canary on n1, promoted after its window, then on every node.
  const put = async (name: string, text: string): Promise<string> => {
    const path = `rollout/${name}.txt`;
    await sh(n1, `write ${path} '${text.replaceAll("'", "'\"'\"'")}'`);
    return `/shared/${path}`;
  };
  let t0 = Date.now();
  const deployed = await sh(n1, `evolve --from ${await put("good", reply("Outliers from a loose probe: drop them.", GOOD))} --window 6`);
  assert.match(deployed, /deployed: outliers 1\.0\.0 on this node, its canary/);
  const first = await until("outliers 1.0.0 decided", async () => {
    const s = await sh(n1, "rollout status outliers");
    return /: (promoted|rolled-back)\n/.test(s) ? s : undefined;
  }, 90_000, 200);
  assert.match(first, /outliers 1\.0\.0 \(a new program\): promoted/, first);
  const promotedMs = Date.now() - t0;
  await runs("1.0.0", "every node runs outliers 1.0.0");
  const everywhereMs = Date.now() - t0;
  const status = await sh(n2, "rollout status outliers");
  assert.match(status, /outliers 1\.0\.0 \(a new program\): promoted/);
  assert.match(status, /decided by [0-9a-f]{16} .*healthy for \d+ s: \d+ runs, 0 failed/);
  t.diagnostic(`good: promoted ${promotedMs} ms after the deploy (window 6 s), on all 5 nodes after ${everywhereMs} ms`);

  for (const bad of BAD) {
    t0 = Date.now();
    const out = await sh(n1, `evolve --from ${await put(bad.name.replaceAll(" ", "-"), reply(`A new version that ${bad.name}.`, bad.code))} --window 60`);
    const v = /deployed: outliers (\d+\.\d+\.\d+) on this node/.exec(out)?.[1];
    assert.ok(v !== undefined, out);
    let last = "";
    const decided = await until(`${v} (${bad.name}) rolled back`, async () => {
      last = await sh(n1, "rollout status outliers");
      return last.includes(`outliers ${v} replacing 1.0.0: rolled-back`) ? last : undefined;
    }, 60_000, 100).catch((error: unknown) => assert.fail(`${String(error)}\n${last}`));
    const rolledBackMs = Date.now() - t0;
    assert.match(decided, bad.rule, decided);
    await runs("1.0.0", `every node runs outliers 1.0.0 again after ${v}`);
    const backMs = Date.now() - t0;
    t.diagnostic(`${bad.name} (${v}): rolled back ${rolledBackMs} ms after the deploy, every node on 1.0.0 after ${backMs} ms: ${decided.split("\n")[2] ?? ""}`);
  }

  // A model update goes through the same watch: untrained weights (dtr init) lose held-out
  // accuracy on every node, and the leader publishes the trained weights again.
  t0 = Date.now();
  await sh(n2, "dtr init seed 99");
  const restored = new RegExp(`^model +v\\d+ restored( by \\S+)?, tag ${tag}`, "m");
  await until("the trained weights are back on every node", async () => (await Promise.all(all.map((n) => sh(n, "dtr stat")))).every((s) => restored.test(s)), 60_000, 200);
  t.diagnostic(`model: untrained weights rolled back, the trained ones on all 5 nodes after ${Date.now() - t0} ms`);

  await stop();
  t.diagnostic(`load: ${load.ok} ok, ${load.failed} failed, ${load.unknown} unknown outcome${load.failures.length === 0 ? "" : `: ${load.failures.join(" | ")}`}`);
  assert.equal(load.failed, 0, load.failures.join("\n"));
  assert.ok(load.ok > 500, `the load ran (${load.ok} requests)`);
  // No node restarted: the same processes, still running.
  assert.deepEqual(all.map((n) => n.child.pid), pids);
  for (const n of all) assert.equal(n.child.exitCode, null, `${n.name} is still running`);
  // A record whose approver did not sign it (written straight into the KV) runs nowhere and is rolled back.
  const current = await (await fetch(`${n1.api}/v1/kv/${encodeURIComponent("rollout/outliers")}`, { headers: bearer(swarm.token) })).json() as Record<string, unknown>;
  const { decidedMs: _ms, decidedBy: _by, reason: _why, ...undecided } = current;
  const forged = { ...undecided, version: "1.6.0", canary: [n2.id], startedMs: Date.now(), phase: "canary" };
  const source = version("1.6.0", { extra: "  if (readings.length > 0) throw new Error(\"forged\");\n" });
  for (const [key, body] of [["psrc/outliers", source], ["rollout/outliers", JSON.stringify(forged)]] as const) {
    const r = await fetch(`${n1.api}/v1/kv/${encodeURIComponent(key)}`, { method: "PUT", headers: bearer(swarm.token), body });
    assert.equal(r.status, 200, await r.text());
  }
  const refused = await until("the forged record rolled back", async () => {
    const s = await sh(n1, "rollout status outliers");
    return s.includes("outliers 1.6.0 replacing 1.0.0: rolled-back") ? s : undefined;
  }, 30_000, 100);
  assert.match(refused, /refused: the approver's signature does not verify/, refused);
  assert.match(await programsOn(n2), /^outliers +1\.0\.0 +sensor/m, "n2 never ran the forged version");

  // A canary whose node dies is not promoted blind: the leader rolls it back.
  const last = await put("orphan", reply("A version whose canary dies.", version("1.7.0")));
  await until("the reply reaches n5's folder", async () => (await shell(n5.api, `cat ${last}`, swarm.token)).ok, 20_000, 200);
  assert.match(await sh(n5, `evolve --from ${last} --window 300`), /deployed: outliers 1\.7\.0 on this node/);
  await kill9(n5.child);
  const orphan = await until("1.7.0 rolled back after its canary died", async () => {
    const s = await sh(n1, "rollout status outliers");
    return s.includes("outliers 1.7.0 replacing 1.0.0: rolled-back") ? s : undefined;
  }, 60_000, 200);
  assert.match(orphan, /the canary node is gone/, orphan);

  // The audit trail, replicated: every decision is a step of the evolve log on another node.
  const steps = [/model +model v1: held-out [\d.]+% against [\d.]+% for v0, on \d nodes: kept/, /model +model v2: held-out [\d.]+% against [\d.]+% for v1, on \d nodes: rolled back, v1's weights published again as v3/,
    /rollout +outliers 1\.0\.0: canary on 1 node/, /promoted +outliers 1\.0\.0: promoted everywhere/, /rollback +outliers 1\.1\.0: rolled back to 1\.0\.0: errors/, /rollback +outliers 1\.6\.0: rolled back to 1\.0\.0: refused/];
  let log = "";
  await until("n3's evolve log holds every decision", async () => {
    log = await sh(n3, "evolve log 400");
    return steps.every((step) => step.test(log));
  }, 20_000, 250).catch(() => assert.fail(`missing from n3's evolve log: ${steps.filter((step) => !step.test(log)).join(", ")}\n${log}`));
});
