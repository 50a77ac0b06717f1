import { test } from "node:test";
import assert from "node:assert/strict";
import { createRng, type Rng } from "../../../src/core/util/rng.ts";
import { MOE_PROBE_PLAN_MAX, MoeRouter } from "../../../src/core/brain/moe.ts";

/** A simulated expert node: answers class c correctly with probability acc[c], else a wrong class. */
function answer(rng: Rng, acc: readonly number[], trueClass: number): number {
  if (rng.next() < (acc[trueClass] as number)) return trueClass;
  return (trueClass + 1 + rng.int(2)) % 3;
}

function probeRounds(router: MoeRouter, rng: Rng, nodes: Record<string, readonly number[]>, rounds: number, perNode: number): void {
  for (let r = 0; r < rounds; r++) {
    for (const p of router.planProbes(rng, Object.keys(nodes), perNode)) {
      router.recordProbe(p.node, p.probeClass, answer(rng, nodes[p.node] as readonly number[], p.probeClass));
    }
  }
}

function routeCounts(router: MoeRouter, rng: Rng, gateClass: number, live: string[], times: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < times; i++) {
    const node = router.route(gateClass, live, rng);
    assert.ok(node !== undefined);
    counts.set(node, (counts.get(node) ?? 0) + 1);
  }
  return counts;
}

const experts = {
  a: [0.95, 0.55, 0.5], // best at class 0
  b: [0.5, 0.95, 0.55], // best at class 1
  c: [0.6, 0.5, 0.9], // best at class 2
};

test("moe: after probing, each class is routed to the node measured best at it", () => {
  for (const seed of [1, 2, 3]) {
    const rng = createRng(seed);
    const router = new MoeRouter();
    probeRounds(router, rng, experts, 6, 30); // 60 probes per (node, class)
    const live = ["a", "b", "c"];
    for (const [cls, best] of [[0, "a"], [1, "b"], [2, "c"]] as const) {
      const counts = routeCounts(router, rng, cls, live, 300);
      assert.ok((counts.get(best) ?? 0) >= 270, `seed ${seed} class ${cls}: ${JSON.stringify([...counts])}`);
    }
  }
});

test("moe: a node that is bad at everything cannot win, whatever it might claim", () => {
  // There is no API through which a node states its accuracy: only the router's probes count.
  const router = new MoeRouter();
  const methods = Object.getOwnPropertyNames(MoeRouter.prototype).filter((m) => m !== "constructor").sort();
  assert.deepEqual(methods, ["decide", "forget", "planProbes", "recordProbe", "route", "size", "table"]);
  const rng = createRng(7);
  const nodes = { ...experts, liar: [0.2, 0.2, 0.2] };
  probeRounds(router, rng, nodes, 6, 30);
  // Garbage answers count as wrong, not as errors.
  router.recordProbe("liar", 0, NaN);
  router.recordProbe("liar", 1, 99);
  for (const cls of [0, 1, 2]) {
    const counts = routeCounts(router, rng, cls, ["a", "b", "c", "liar"], 300);
    assert.equal(counts.get("liar") ?? 0, 0, `class ${cls}: ${JSON.stringify([...counts])}`);
  }
});

test("moe: a dead node is never routed to, however good it was", () => {
  const rng = createRng(11);
  const router = new MoeRouter();
  probeRounds(router, rng, experts, 6, 30);
  for (const cls of [0, 1, 2]) {
    const counts = routeCounts(router, rng, cls, ["b", "c"], 200);
    assert.equal(counts.get("a") ?? 0, 0);
  }
  const counts0 = routeCounts(router, rng, 0, ["b", "c"], 200);
  assert.ok((counts0.get("c") ?? 0) > (counts0.get("b") ?? 0), "c (0.6) beats b (0.5) at class 0 once a is gone");
  assert.equal(router.route(0, [], rng), undefined);
});

test("moe: UCB1 scores, untried-first, and the fallbacks", () => {
  const rng = createRng(3);
  const router = new MoeRouter();
  // a: 100 probes of class 0, 90 correct. b: 1 probe, wrong. t = 101.
  for (let i = 0; i < 100; i++) router.recordProbe("a", 0, i < 90 ? 0 : 1);
  router.recordProbe("b", 0, 2);
  const d = router.decide(0, ["a", "b"], rng);
  // ucb_a = 0.9 + √(2 ln 101 / 100) ≈ 1.204; ucb_b = 0 + √(2 ln 101) ≈ 3.04: UCB explores b.
  assert.deepEqual(d, { node: "b", reason: "ucb", ucb: Math.sqrt(2 * Math.log(101)) });
  // A node never probed for the class ranks first.
  assert.deepEqual(router.decide(0, ["a", "b", "fresh"], rng), { node: "fresh", reason: "untried", ucb: Infinity });
  // No live node has a class-2 probe: fall back to accuracy pooled over classes.
  for (let i = 0; i < 50; i++) router.recordProbe("b", 1, 1);
  const pooled = router.decide(2, ["a", "b"], rng);
  assert.equal(pooled?.reason, "pooled-ucb");
  assert.equal(pooled?.node, "b"); // b: 50/51 pooled vs a: 90/100
  // Nothing known about any live node: uniform choice.
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const r = router.decide(1, ["x", "y", "z"], rng);
    assert.equal(r?.reason, "random");
    seen.add(r?.node ?? "");
  }
  assert.deepEqual([...seen].sort(), ["x", "y", "z"]);
  assert.throws(() => router.decide(3, ["a"], rng), RangeError);
  assert.throws(() => router.recordProbe("a", -1, 0), RangeError);
});

test("moe: table rows are hand-checkable and forget drops a node", () => {
  const router = new MoeRouter({ classes: 2 });
  router.recordProbe("n2", 0, 0);
  router.recordProbe("n1", 0, 0);
  router.recordProbe("n1", 0, 1);
  router.recordProbe("n1", 0, 0);
  const rows = router.table();
  assert.deepEqual(rows, [
    { node: "n1", class: 0, probes: 3, correct: 2, accuracy: 2 / 3, ucb: 2 / 3 + Math.sqrt((2 * Math.log(4)) / 3) },
    { node: "n1", class: 1, probes: 0, correct: 0, accuracy: null, ucb: null },
    { node: "n2", class: 0, probes: 1, correct: 1, accuracy: 1, ucb: 1 + Math.sqrt(2 * Math.log(4)) },
    { node: "n2", class: 1, probes: 0, correct: 0, accuracy: null, ucb: null },
  ]);
  router.forget("n1");
  assert.deepEqual(router.table().map((r) => r.node), ["n2", "n2"]);
  assert.equal(router.decide(0, ["n1", "n2"], createRng(1))?.node, "n1"); // untried again
});

test("moe: the sliding window forgets old probes, so a node that degrades loses its lead", () => {
  const router = new MoeRouter({ window: 10 });
  for (let i = 0; i < 10; i++) router.recordProbe("a", 0, 0);
  assert.equal(router.table()[0]?.accuracy, 1);
  for (let i = 0; i < 10; i++) router.recordProbe("a", 0, 1);
  assert.deepEqual(router.table()[0], { node: "a", class: 0, probes: 10, correct: 0, accuracy: 0, ucb: Math.sqrt((2 * Math.log(10)) / 10) });
  for (let i = 0; i < 4; i++) router.recordProbe("a", 0, 0);
  assert.equal(router.table()[0]?.correct, 4);
  assert.equal(router.table()[0]?.probes, 10);
});

test("moe: at most nodesMax nodes are tracked, evicting the least recently probed", () => {
  const router = new MoeRouter({ nodesMax: 2 });
  router.recordProbe("a", 0, 0);
  router.recordProbe("b", 0, 0);
  router.recordProbe("a", 1, 1);
  router.recordProbe("c", 0, 0);
  assert.equal(router.size, 2);
  assert.deepEqual([...new Set(router.table().map((r) => r.node))], ["a", "c"]);
});

test("moe: planProbes balances classes per node, favours the least-measured, and is bounded", () => {
  const rng = createRng(5);
  const router = new MoeRouter();
  const plan = router.planProbes(rng, ["a", "b", "a"], 9);
  assert.equal(plan.length, 18); // duplicates in the live list are ignored
  for (const node of ["a", "b"]) {
    const perClass = [0, 1, 2].map((c) => plan.filter((p) => p.node === node && p.probeClass === c).length);
    assert.deepEqual(perClass, [3, 3, 3]);
  }
  assert.notDeepEqual(plan.map((p) => p.node), [...new Array<string>(9).fill("a"), ...new Array<string>(9).fill("b")]);
  for (let i = 0; i < 5; i++) router.recordProbe("a", 0, 0);
  const next = router.planProbes(rng, ["a"], 4);
  assert.equal(next.filter((p) => p.probeClass === 0).length, 0);
  assert.throws(() => router.planProbes(rng, ["a", "b"], MOE_PROBE_PLAN_MAX), RangeError);
});
