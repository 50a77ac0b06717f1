// The Brain's trust rules (issue 13) in a whole-cluster simulation — two core nodes and a
// contributor, the shared folder on, the real node code:
//   - a contributor cannot publish a model (dtr init, dtr train, fl train, ga run answer an error),
//     nor make a core node train for it (a training request from it is refused);
//   - a model file signed by the contributor, or unsigned, reaches every node's folder and is
//     refused by every node (counted as untrusted), the model in use stays; one signed by a core
//     node loads everywhere;
//   - distributed inference audits the contributor's answers: an honest contributor is never
//     flagged; once it answers wrong it is caught, its share is computed by the coordinator (the
//     answer still equals local inference), it is announced (`brain-cheater`), counted, and sent no
//     more work;
//   - GA rows signed by the contributor are followed by nobody; a core evolver's chain is adopted by
//     a node only when its head scores at least as well on that node's held-out data.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hash } from "node:crypto";
import { SimCluster } from "../../src/sim/cluster.ts";
import { ORGANISM_MODEL } from "../../src/sim/organism.ts";
import { BRAIN_DEFAULTS, GA_TOPIC, MODEL_PATH, type InferOutcome } from "../../src/node/brain/service.ts";
import { encodeModelFile, encodeSignedModelFile, type ModelFileHeader } from "../../src/core/brain/model-file.ts";
import { initParams, SEED_CONFIG } from "../../src/core/brain/transformer.ts";
import { applyMutation, encodeGaRow, gaRowMessage } from "../../src/core/brain/ga.ts";
import { weightsTag } from "../../src/core/brain/parallel.ts";
import { generateSensorData } from "../../src/core/brain/data.ts";
import type { BrainMessage } from "../../src/core/brain/brain-wire.ts";
import { createRng } from "../../src/core/util/rng.ts";
import type { Kernel } from "../../src/node/kernel.ts";

const WAIT_TICKS = 3_000;
const sha256 = (bytes: Uint8Array): Uint8Array => new Uint8Array(hash("sha256", bytes, "buffer"));

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function cluster(seed: number): Promise<{ c: SimCluster; until: (done: () => boolean) => Promise<boolean>; settle: <T>(p: Promise<T>) => Promise<T> }> {
  const c = new SimCluster({
    nodes: 3, seed, faults: "lossy", sharedFolder: true, roles: ["core", "core", "contributor"],
    // GA off (it changes the weights on its own); a quarter of the runs with the contributor audited.
    kernel: { brain: { ...BRAIN_DEFAULTS, gaEveryTicks: 0, spotCheckFraction: 0.25 } },
  });
  const until = async (done: () => boolean): Promise<boolean> => {
    for (let i = 0; i <= WAIT_TICKS; i++) {
      if (done()) return true;
      await c.runAsync(1);
    }
    return false;
  };
  /** Runs the simulation until the promise settles. */
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    let out: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    p.then((value) => { out = { ok: true, value }; }, (error: unknown) => { out = { ok: false, error }; });
    assert.ok(await until(() => out !== undefined), "settled in time");
    if (!out!.ok) throw out!.error;
    return out!.value;
  };
  const live = (k: Kernel): number => k.swim.liveIds().filter((id) => k.swim.stateOf(id) === "alive").length;
  assert.ok(await until(() => c.nodes.every((n) => live(n.kernel) === 2 && n.kernel.sharedFolder?.booted === true)), "the cluster formed");
  return { c, until, settle };
}

async function write(k: Kernel, bytes: Uint8Array): Promise<string | undefined> {
  const folder = k.sharedFolder!;
  const staged = await folder.files.stageBytes(bytes);
  const local = folder.core.localWrite(MODEL_PATH, staged.info, staged.temp);
  if (!local.ok) await folder.files.discardStaged(staged.temp);
  return folder.wait(local);
}

test("brain trust (sim): a contributor publishes nothing; a model file signed by a contributor or unsigned is refused everywhere; a core node's loads", async () => {
  const { c, until, settle } = await cluster(7);
  const [n0, n1, n2] = c.nodes.map((n) => n.kernel) as [Kernel, Kernel, Kernel];
  await settle(n0.brain.init(ORGANISM_MODEL, 1));
  const first = n0.brain.model.tag;
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.model.tag === first)), "a core node's model reaches every node");

  // The contributor's commands answer a clear error, and nothing is written.
  await assert.rejects(settle(n2.brain.init(ORGANISM_MODEL, 2)), /contributor.*only core nodes publish models/);
  await assert.rejects(settle(n2.brain.train(1)), /contributor/);
  await assert.rejects(settle(n2.brain.federated(1)), /contributor/);
  assert.throws(() => n2.brain.evolve(1), /contributor/);
  assert.equal(n2.brain.model.tag, first);
  // Nor can it make a core node train (that holds the node's event loop for up to 20 epochs): a
  // training request is served to a core coordinator only.
  const trainReq = { t: "train-req", requestId: 0, round: 1, epochs: 20, seed: 5, params: n0.brain.model.params } as const;
  const refused = await settle(n2.brain.call(n0.id, trainReq, 200));
  assert.equal(refused.t, "error");
  assert.match(refused.t === "error" ? `${refused.code}: ${refused.message}` : "", /^forbidden: only a core member/);
  assert.equal(n0.brain.counters.trainRefused, 1);
  assert.equal((await settle(n1.brain.call(n0.id, { ...trainReq, epochs: 1 }, 200))).t, "train-res", "a core coordinator is served");
  assert.equal(n0.brain.counters.trainRefused, 1);

  // A model the contributor signs itself, written into the shared folder: every node refuses it.
  const params = initParams(ORGANISM_MODEL, createRng(99, 2));
  const header = (origin: string): ModelFileHeader => ({
    config: ORGANISM_MODEL, version: 7, tag: weightsTag(ORGANISM_MODEL, params), createdMs: 0, origin, kind: "trained",
  });
  const contributor = c.nodes[2]!.identity;
  const byContributor = encodeSignedModelFile(header(contributor.id), params, { id: contributor.id, sign: (m) => contributor.sign(m) }, sha256);
  // Through a core node's folder: the signature is judged, not who carried the bytes. The others
  // read it when it arrives; the writer's own folder announces no change, so it reads it as at boot.
  assert.equal(await settle(write(n1, byContributor)), undefined);
  await settle(n1.brain.load());
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.counters.modelUntrusted === 1)), "refused by every node");
  for (const n of c.nodes) {
    assert.equal(n.kernel.brain.model.tag, first, "the model in use stays");
    assert.match(n.kernel.brain.counters.lastModelError, /a contributor: only core nodes publish/);
    assert.ok(n.kernel.events.since(0).some((e) => e.type === "brain-model-rejected" && e.data.untrusted === "role"));
  }
  // An unsigned file (the format before signatures), claiming a core origin: refused too.
  assert.equal(await settle(write(n1, encodeModelFile(header(n0.id), params))), undefined);
  await settle(n1.brain.load());
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.counters.modelUntrusted === 2)));
  for (const n of c.nodes) {
    assert.equal(n.kernel.brain.model.tag, first);
    assert.match(n.kernel.brain.counters.lastModelError, /^unsigned/);
  }

  // The other core node publishes: it loads everywhere, the contributor included.
  await settle(n1.brain.init(ORGANISM_MODEL, 3));
  const second = n1.brain.model.tag;
  assert.notEqual(second, first);
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.model.tag === second)), "a core node's model loads everywhere");
  for (const n of c.nodes) {
    assert.equal(n.kernel.brain.counters.modelUntrusted, 2);
    assert.equal(n.kernel.brain.model.header.origin, n1.id);
  }
});

test("brain trust (sim): a contributor answering distributed inference wrong is caught by a spot check, announced, and sent no more work", async () => {
  const { c, until, settle } = await cluster(8);
  const [n0, , n2] = c.nodes.map((n) => n.kernel) as [Kernel, Kernel, Kernel];
  const brain = n0.brain;
  await settle(brain.init(ORGANISM_MODEL, 5));
  const tag = brain.model.tag;
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.model.tag === tag)));
  assert.deepEqual(brain.peers(), [c.nodes[1]!.kernel.id, n2.id].sort());
  const inputs = generateSensorData(createRng(8, 0x696e), 12).map((x) => ({ ids: x.ids, values: Float32Array.from(x.values) }));
  const local = await Promise.all(inputs.map((x) => settle(brain.infer("local", x.ids, x.values))));
  const check = (o: InferOutcome, k: number): void => assert.ok(maxAbsDiff(o.logits, local[k]!.logits) <= 1e-5, `max |Δlogit| ${maxAbsDiff(o.logits, local[k]!.logits)}`);

  // Honest: audited, never flagged, in every mode.
  for (const mode of ["pipeline", "tensor", "dkva"] as const) {
    for (let k = 0; k < inputs.length; k++) check(await settle(brain.infer(mode, inputs[k]!.ids, inputs[k]!.values)), k);
  }
  assert.ok(brain.counters.audited > 0 && brain.counters.checked > 0, `audited ${brain.counters.audited}`);
  assert.equal(brain.counters.caught, 0);

  // The contributor starts answering wrong: well-formed, finite, off in one element.
  const worker = n2.brain.model.worker;
  const honest = worker.handle.bind(worker);
  worker.handle = (msg: BrainMessage): BrainMessage => {
    const res = honest(msg);
    if (res.t === "stage-res") res.hidden.data[res.hidden.data.length - 1]! += 0.5;
    if (res.t === "tp-res") res.partial.data[res.partial.data.length - 1]! += 0.5;
    return res;
  };
  let caughtAt = -1;
  for (let n = 0; n < 40 && caughtAt < 0; n++) {
    const k = n % inputs.length;
    const o = await settle(brain.infer(n % 2 === 0 ? "pipeline" : "tensor", inputs[k]!.ids, inputs[k]!.values));
    if (brain.counters.caught > 0) {
      caughtAt = n;
      check(o, k); // the wrong share was recomputed here: the answer is still right
      assert.ok(o.dropped.includes(n2.id));
    }
  }
  assert.ok(caughtAt >= 0, "caught within 40 runs at a quarter audited");
  assert.equal(brain.counters.caught, 1);
  assert.deepEqual(brain.cheaters, [n2.id]);
  const event = n0.events.since(0).find((e) => e.type === "brain-cheater");
  assert.equal(event?.data.id, n2.id);
  assert.ok(!brain.peers().includes(n2.id), "no longer a peer for distributed inference");

  // No more work for it, whatever the mode; the answers stay right.
  const served = n2.brain.counters.requestsServed;
  for (const mode of ["pipeline", "tensor", "dkva"] as const) {
    for (let k = 0; k < 4; k++) {
      const o = await settle(brain.infer(mode, inputs[k]!.ids, inputs[k]!.values));
      check(o, k);
      assert.ok(!o.peers.includes(n2.id));
    }
  }
  // Asked by name, it is dropped before any request goes out.
  const at = await settle(brain.inferAt(n2.id, inputs[0]!.ids, inputs[0]!.values));
  assert.deepEqual(at.dropped, [n2.id]);
  check(at, 0);
  assert.equal(n2.brain.counters.requestsServed, served, "the cheater was sent nothing more");
  assert.equal(brain.counters.caught, 1);
});

test("brain trust (sim): GA rows are followed only from core evolvers, and only when the chain's head scores at least as well here", async () => {
  const { c, until, settle } = await cluster(9);
  const [n0, n1, n2] = c.nodes.map((n) => n.kernel) as [Kernel, Kernel, Kernel];
  await settle(n0.brain.init(SEED_CONFIG, 1));
  const base = n0.brain.model;
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.model.tag === base.tag)));
  const row = (by: number, mutation: { seed: number; sigma: number }): Uint8Array => {
    const mutant = applyMutation(base.params, mutation);
    const identity = c.nodes[by]!.identity;
    const unsigned = { ...mutation, tag: weightsTag(base.cfg, mutant), loss: 0, origin: identity.id };
    return encodeGaRow({ ...unsigned, signature: identity.sign(gaRowMessage(base.tag, unsigned)) });
  };

  // A row the contributor signs, carried by a core node's topic: nobody follows it.
  assert.equal(n1.topicPublish(GA_TOPIC, base.tag, row(2, { seed: 42, sigma: 0.01 })), undefined);
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.ga.untrusted === 1)), "refused as untrusted everywhere");
  for (const n of c.nodes) {
    assert.equal(n.kernel.brain.model.tag, base.tag);
    assert.equal(n.kernel.brain.ga.followed, 0);
    assert.match(n.kernel.brain.ga.lastError, /a contributor/);
  }

  // A core node's row whose mutation is far too large: each node scores it worse and keeps its weights.
  assert.equal(n0.topicPublish(GA_TOPIC, base.tag, row(0, { seed: 43, sigma: 0.5 })), undefined);
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.ga.worse === 1)), "judged worse everywhere");
  for (const n of c.nodes) {
    assert.equal(n.kernel.brain.model.tag, base.tag);
    assert.equal(n.kernel.brain.ga.followed, 0);
  }

  // A core node's row that is better on every node's data (searched here): every node adopts it.
  const better = (m: { seed: number; sigma: number }): boolean => c.nodes.every((n) => n.kernel.brain.heldOutLoss(applyMutation(base.params, m))! <= n.kernel.brain.heldOutLoss()!);
  let good: { seed: number; sigma: number } | undefined;
  for (let seed = 1; seed <= 200 && good === undefined; seed++) if (better({ seed, sigma: 0.01 })) good = { seed, sigma: 0.01 };
  assert.ok(good !== undefined, "a mutation better everywhere exists");
  assert.equal(n0.topicPublish(GA_TOPIC, base.tag, row(0, good)), undefined);
  const next = weightsTag(base.cfg, applyMutation(base.params, good));
  assert.ok(await until(() => c.nodes.every((n) => n.kernel.brain.model.tag === next)), "adopted everywhere");
  for (const n of c.nodes) {
    assert.equal(n.kernel.brain.ga.followed, 1);
    assert.equal(n.kernel.brain.chainLength, 1);
    assert.equal(n.kernel.brain.model.header.kind, "evolved");
  }

  // The core evolver's own generations: a node adopts the chain's head only if it is no worse on its data.
  const start = n0.brain.model;
  const before = new Map([n1, n2].map((k) => [k, k.brain.heldOutLoss()!]));
  const evolved = n0.brain.evolve(20);
  assert.ok(evolved.kept > 0 && evolved.after < evolved.before, JSON.stringify(evolved));
  const head = n0.brain.model;
  assert.ok(await until(() => [n1, n2].every((k) => k.brain.model.tag === head.tag || k.brain.ga.worse === 2)));
  for (const k of [n1, n2]) {
    const theirs = k.brain.heldOutLoss(head.params)!;
    if (k.brain.model.tag === head.tag) {
      assert.ok(theirs <= before.get(k)!, "adopted: no worse here");
      assert.equal(k.brain.ga.followed, 1 + evolved.kept);
    } else {
      assert.ok(theirs > before.get(k)!, "kept its weights: the head scored worse here");
      assert.equal(k.brain.model.tag, start.tag);
      assert.match(k.brain.ga.lastError, /worse than/);
    }
  }
});
