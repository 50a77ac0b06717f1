// Issue 6, acceptance 2, on real processes (`pk up`, 3 nodes): the trained seed model replicates to
// every node; pipeline, tensor-parallel and DKVA inference equal single-node inference within 1e-5
// on 1,000 random inputs; a larger shape (d_model 256, 4 layers, 320 positions: 3.3M parameters)
// likewise, on 300-token decode sessions and 256-token whole sequences; killing a node during a
// stream of requests hangs none and costs only deadline-bounded fallbacks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { createRng } from "../../src/core/util/rng.ts";
import { bearer, startCluster } from "./cluster-helpers.ts";

interface InferAnswer {
  class: number;
  logits: number[];
  mode: "FULL" | "REDUCED" | "SOLO";
  peers: string[];
  dropped: string[];
  tag: string;
  modelVersion: number;
  ms: number;
}

/** The cluster token of the test's cluster (the tests of this file run one after the other). */
let token = "";

async function post(api: string, path: string, body: unknown, timeoutMs = 10_000): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${api}${path}`, {
    method: "POST", headers: { "Content-Type": "application/json", ...bearer(token) }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, json: await response.json() as unknown };
}

async function infer(api: string, body: Record<string, unknown>): Promise<InferAnswer> {
  const { status, json } = await post(api, "/v1/infer", body);
  assert.equal(status, 200, JSON.stringify(json));
  return json as InferAnswer;
}

async function shell(api: string, line: string, timeoutMs = 60_000): Promise<string> {
  const { status, json } = await post(api, "/v1/shell", { line }, timeoutMs);
  assert.equal(status, 200);
  const result = json as { ok: boolean; output: string };
  assert.ok(result.ok, `${line}: ${result.output}`);
  return result.output;
}

function maxDiff(a: readonly number[], b: readonly number[]): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Waits until every node runs the model with this tag. */
async function sameModel(apis: readonly string[], tag: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tags = await Promise.all(apis.map(async (api) => (await infer(api, { values: [0, 0, 0, 0], ids: [0, 1, 2, 3] }).catch(() => undefined))?.tag));
    if (tags.every((t) => t === tag)) return;
    if (Date.now() > deadline) assert.fail(`model ${tag} not on every node within ${timeoutMs} ms: ${tags.join(", ")}`);
    await sleep(100);
  }
}

const MODES = ["pipeline", "tensor", "dkva"] as const;

test("brain on 3 real processes: distributed inference equals one node within 1e-5, also for a 3.3M-parameter shape; a killed node hangs nothing", { timeout: 600_000 }, async (t) => {
  const { cluster, apis } = await startCluster(t, 3);
  token = cluster.token;
  const [a, b, c] = apis as [string, string, string];

  // Train the seed model on node a; it reaches the others through the shared folder.
  const trained = await shell(a, "dtr train 20");
  t.diagnostic(trained.split("\n").slice(-2).join(" | "));
  const match = /held-out accuracy ([\d.]+)% against ([\d.]+)%/.exec(trained);
  assert.ok(match !== null, trained);
  assert.ok(Number(match[1]) > Number(match[2]) + 10, `trained ${match[1]}% must beat the threshold ${match[2]}% clearly`);
  const tag = (await infer(a, { values: [0, 0, 0, 0] })).tag;
  await sameModel(apis, tag, 20_000);

  // 1,000 random inputs, every mode, against local inference on the same node.
  const rng = createRng(6, 1);
  const worst: Record<string, number> = { pipeline: 0, tensor: 0, dkva: 0 };
  for (let i = 0; i < 1000; i++) {
    const values = Array.from({ length: 4 }, () => 6 * rng.next() - 3);
    const local = await infer(a, { mode: "local", values });
    for (const mode of MODES) {
      const answer = await infer(a, { mode, values });
      assert.equal(answer.mode, "FULL", `${mode} #${i}: ${JSON.stringify(answer)}`);
      assert.equal(answer.peers.length, 2);
      worst[mode] = Math.max(worst[mode]!, maxDiff(answer.logits, local.logits));
    }
  }
  t.diagnostic(`seed shape, 1,000 inputs: max |Δlogit| pipeline ${worst.pipeline}, tensor ${worst.tensor}, dkva ${worst.dkva}`);
  for (const mode of MODES) assert.ok(worst[mode]! <= 1e-5, `${mode}: ${worst[mode]}`);
  // Inference at another node.
  assert.match(await shell(b, `infer ${cluster.nodes[2]!.id} 0.5 -1 2 0.3`), /^computed on \S+, the head here; cluster FULL; model v/m);

  // The larger shape: published by node b (13 MB through the shared folder).
  await shell(b, "dtr init large 7");
  const largeTag = (await infer(b, { ids: [1], values: [0.5] })).tag;
  await sameModel(apis, largeTag, 60_000).catch(() => undefined);
  const large = async (api: string) => (await infer(api, { ids: [1], values: [0.5] })).tag;
  const deadline = Date.now() + 60_000;
  while ((await Promise.all(apis.map(large))).some((x) => x !== largeTag)) {
    assert.ok(Date.now() < deadline, "the large model reached every node");
    await sleep(200);
  }
  const tokens = 300;
  const ids = Array.from({ length: tokens }, () => rng.int(64));
  const vals = Array.from({ length: tokens }, () => 2 * rng.next() - 1);
  const largeWorst: Record<string, number> = {};
  const msPerToken: Record<string, number> = {};
  const localSteps: number[][] = [];
  let started = performance.now();
  for (let p = 0; p < tokens; p++) localSteps.push((await infer(a, { mode: "local", session: "ref", ids: [ids[p]], values: [vals[p]] })).logits);
  msPerToken.local = (performance.now() - started) / tokens;
  await post(a, "/v1/infer", { end: true, session: "ref" });
  for (const mode of MODES) {
    let worstHere = 0;
    started = performance.now();
    for (let p = 0; p < tokens; p++) {
      const answer = await infer(a, { mode, session: `s-${mode}`, ids: [ids[p]], values: [vals[p]] });
      assert.equal(answer.mode, "FULL", `${mode} position ${p}`);
      worstHere = Math.max(worstHere, maxDiff(answer.logits, localSteps[p]!));
    }
    msPerToken[mode] = (performance.now() - started) / tokens;
    await post(a, "/v1/infer", { end: true, session: `s-${mode}` });
    largeWorst[mode] = worstHere;
  }
  // Whole sequences of 256 tokens.
  const whole = { ids: ids.slice(0, 256), values: vals.slice(0, 256) };
  const wholeLocal = await infer(a, { mode: "local", ...whole });
  for (const mode of ["pipeline", "tensor"] as const) {
    const answer = await infer(a, { mode, ...whole });
    largeWorst[`${mode} 256`] = maxDiff(answer.logits, wholeLocal.logits);
  }
  t.diagnostic(`large shape: max |Δlogit| ${JSON.stringify(largeWorst)}; ms per decoded token ${JSON.stringify(Object.fromEntries(Object.entries(msPerToken).map(([k, v]) => [k, Number(v.toFixed(2))])))}`);
  for (const [mode, diff] of Object.entries(largeWorst)) assert.ok(diff <= 1e-5, `${mode}: ${diff}`);

  // Back to the seed model; kill node c during a stream of requests from a.
  await shell(a, "dtr init seed");
  await shell(a, "dtr train 5");
  const seedTag = (await infer(a, { values: [0, 0, 0, 0] })).tag;
  await sameModel(apis, seedTag, 20_000);
  const victim = cluster.nodes[2]!;
  let longest = 0;
  const states: Record<string, number> = {};
  let killedAt = -1;
  for (let i = 0; i < 600; i++) {
    if (i === 100) {
      process.kill(victim.pid!, "SIGKILL");
      killedAt = i;
    }
    const values = Array.from({ length: 4 }, () => 6 * rng.next() - 3);
    const mode = MODES[i % 3]!;
    const t0 = performance.now();
    const [local, answer] = await Promise.all([infer(a, { mode: "local", values }), infer(a, { mode, values })]);
    const ms = performance.now() - t0;
    longest = Math.max(longest, ms);
    states[answer.mode] = (states[answer.mode] ?? 0) + 1;
    assert.ok(maxDiff(answer.logits, local.logits) <= 1e-5, `#${i} ${mode}: a fallback answer differs`);
  }
  t.diagnostic(`kill -9 of a node at request ${killedAt} of 600: states ${JSON.stringify(states)}, slowest request ${longest.toFixed(0)} ms`);
  assert.ok((states.REDUCED ?? 0) >= 1, "some requests fell back");
  // The call deadline is 1 s; a request waits on it at most once per peer and layer.
  assert.ok(longest < 3_000, `no request hung: slowest ${longest} ms`);
  void b;
  void c;
});

// Issue 6, fedlearn / moe / ga through the nodes (the poisoned-contributor figures are in
// test/core/brain/federated.test.ts): a federated round over 3 processes publishes an aggregated
// model every node loads; each node trains its own expert and the router's probes decide who
// answers; GA mutations travel as seeds and every node rebuilds the same weights.
test("brain on 3 real processes: federated rounds, MoE routing by probes, GA by mutation seeds", { timeout: 300_000 }, async (t) => {
  const { cluster, apis } = await startCluster(t, 3);
  token = cluster.token;
  const [a, b, c] = apis as [string, string, string];
  await shell(a, "dtr train 10");
  const fl = await shell(a, "fl train 2");
  t.diagnostic(fl.replaceAll("\n", " | "));
  assert.match(fl, /round 2: 3 updates \(0 failed\), fedavg, held-out/);
  const afterFl = (await infer(a, { values: [0, 0, 0, 0] })).tag;
  await sameModel(apis, afterFl, 20_000);
  assert.match(await shell(a, "fl status"), /fedavg/);

  for (const api of apis) assert.match(await shell(api, "moe train 10"), /expert v1 trained/);
  assert.match(await shell(a, "moe probe 30"), /^270 probes answered/);
  const table = await shell(a, "moe");
  t.diagnostic(table.replaceAll("\n", " | "));
  assert.equal(table.split("\n").length, 1 + 9, "3 nodes × 3 classes");
  const routed = await infer(a, { mode: "moe", values: [1.5, -0.5, 2, 0.1] });
  assert.equal(routed.mode, "FULL");
  assert.equal(routed.peers.length, 1);

  // GA: generations on node b; every other node judges the chain (signed by a core node) on its
  // own held-out data and either follows it to b's weights or keeps its own (issue 13: a GA row is
  // applied only when it scores at least as well here).
  const evolved = await shell(b, "ga run 30");
  t.diagnostic(evolved);
  const m = /(\d+) kept: held-out loss ([\d.]+) → ([\d.]+)/.exec(evolved);
  assert.ok(m !== null, evolved);
  assert.ok(Number(m[3]) <= Number(m[2]), "GA never makes the held-out loss worse");
  if (Number(m[1]) > 0) {
    assert.ok(Number(m[3]) < Number(m[2]));
    const tag = (await infer(b, { values: [0, 0, 0, 0] })).tag;
    for (const node of [a, c]) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const ga = await shell(node, "ga");
        const followed = new RegExp(`${m[1]} mutations followed from others`).test(ga) && (await infer(node, { values: [0, 0, 0, 0] })).tag === tag;
        const judgedWorse = /[1-9]\d* heads worse here/.test(ga);
        if (followed || judgedWorse) break;
        assert.ok(Date.now() < deadline, `a node neither followed the GA chain nor judged it worse: ${ga}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    assert.doesNotMatch(await shell(c, "ga"), /[1-9]\d* untrusted/, "a core node's rows are trusted");
  }
});
