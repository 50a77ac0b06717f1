// The MindRouter (src/core/self/minds.ts): policy order by mode and preference, a mind asked for
// by name, backoff after failures, ordering by measured availability and latency, bounds and
// hostile candidates. Property tests with fast-check over random cluster views and histories.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MIND_ROUTER_DEFAULTS, MindRouter, type MindInfo, type MindOutcome } from "../../src/core/self/minds.ts";
import type { Mode } from "../../src/core/body/degrade.ts";

function mind(name: string, kind: "local" | "frontier", node = "n1", embeds = false): MindInfo {
  return { name, provider: kind === "local" ? "openai" : "anthropic", model: name, kind, embeds, node };
}

const names = (list: readonly MindInfo[]): string[] => list.map((m) => `${m.name}@${m.node}`);

test("minds router: FULL puts the cluster's own minds first, REDUCED and SOLO a frontier mind", () => {
  const router = new MindRouter();
  const all = [mind("frontier-a", "frontier"), mind("local-a", "local", "n2"), mind("local-b", "local", "n3")];
  assert.deepEqual(names(router.pick(all, "FULL", {}, 0)), ["local-a@n2", "local-b@n3", "frontier-a@n1"]);
  assert.deepEqual(names(router.pick(all, "REDUCED", {}, 0)), ["frontier-a@n1", "local-a@n2", "local-b@n3"]);
  assert.deepEqual(names(router.pick(all, "SOLO", {}, 0)), ["frontier-a@n1", "local-a@n2", "local-b@n3"]);
  assert.deepEqual(names(router.pick(all, "FULL", { prefer: "frontier" }, 0)), ["frontier-a@n1", "local-a@n2", "local-b@n3"]);
  assert.deepEqual(names(router.pick(all, "SOLO", { prefer: "local" }, 0)), ["local-a@n2", "local-b@n3", "frontier-a@n1"]);
});

test("minds router: among equals, the faster and the more available first; an unmeasured mind gets tried", () => {
  const router = new MindRouter();
  const a = mind("a", "local", "n1");
  const b = mind("b", "local", "n2");
  const c = mind("c", "local", "n3");
  router.pick([a, b, c], "FULL", {}, 0);
  router.observe(a, "ok", 900, 10);
  router.observe(b, "ok", 100, 10);
  // c has no measurement yet: tried first (latency counts 0), then the faster b, then a.
  assert.deepEqual(names(router.pick([a, b, c], "FULL", {}, 20)), ["c@n3", "b@n2", "a@n1"]);
  router.observe(c, "ok", 500, 30);
  assert.deepEqual(names(router.pick([a, b, c], "FULL", {}, 40)), ["b@n2", "c@n3", "a@n1"]);
  // b fails once and then backs off: it is left out until its backoff ends.
  router.observe(b, "server", 50, 50);
  assert.deepEqual(names(router.pick([a, b, c], "FULL", {}, 60)), ["c@n3", "a@n1"]);
  const retryAt = router.statsOf(b)?.retryAtMs ?? 0;
  assert.equal(retryAt, 50 + MIND_ROUTER_DEFAULTS.backoffBaseMs);
  // Back, but less available: 100 / 0.7 = 143 ms expected beats c's 500 still.
  assert.deepEqual(names(router.pick([a, b, c], "FULL", {}, retryAt)), ["b@n2", "c@n3", "a@n1"]);
});

test("minds router: a mind asked for by name or model comes first, even while it backs off", () => {
  const router = new MindRouter();
  const local = mind("llama", "local", "n2");
  const frontier = { ...mind("claude", "frontier"), model: "claude-haiku-4-5" };
  router.pick([local, frontier], "FULL", {}, 0);
  router.observe(frontier, "timeout", 0, 0);
  assert.deepEqual(names(router.pick([local, frontier], "FULL", {}, 1)), ["llama@n2"]);
  assert.deepEqual(names(router.pick([local, frontier], "FULL", { mind: "claude" }, 1)), ["claude@n1", "llama@n2"]);
  assert.deepEqual(names(router.pick([local, frontier], "FULL", { mind: "claude-haiku-4-5" }, 1)), ["claude@n1", "llama@n2"]);
  // A name no candidate has changes nothing.
  assert.deepEqual(names(router.pick([local, frontier], "SOLO", { mind: "gpt" }, 1)), ["llama@n2"]);
});

test("minds router: backoff doubles with consecutive failures up to its maximum, honours retry-after, resets on success", () => {
  const config = { ...MIND_ROUTER_DEFAULTS, backoffBaseMs: 1_000, backoffMaxMs: 10_000 };
  const router = new MindRouter(config);
  const m = mind("m", "local");
  router.pick([m], "FULL", {}, 0);
  const waits: number[] = [];
  let now = 0;
  for (let i = 0; i < 6; i++) {
    router.observe(m, "unreachable", 0, now);
    const at = router.statsOf(m)?.retryAtMs ?? 0;
    waits.push(at - now);
    now = at;
  }
  assert.deepEqual(waits, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
  router.observe(m, "ok", 10, now);
  assert.equal(router.statsOf(m)?.retryAtMs, 0);
  assert.equal(router.statsOf(m)?.consecutiveFailures, 0);
  router.observe(m, "rate-limited", 0, now, 7_500);
  assert.equal(router.statsOf(m)?.retryAtMs, now + 7_500, "the provider's retry-after beats the first backoff");
  router.observe(m, "rate-limited", 0, now, 600_000);
  assert.equal(router.statsOf(m)?.retryAtMs, now + 10_000, "retry-after is capped by the maximum backoff");
});

test("minds router: a cancelled call changes no measurement; a mind never picked is ignored", () => {
  const router = new MindRouter();
  const m = mind("m", "local");
  router.pick([m], "FULL", {}, 0);
  router.observe(m, "cancelled", 5, 100);
  const stats = router.statsOf(m);
  assert.equal(stats?.failures, 0);
  assert.equal(stats?.availability, 1);
  assert.equal(stats?.lastSeenMs, 100);
  router.observe(mind("other", "local"), false, 1, 1);
  assert.equal(router.size, 1);
  router.observe(m, false, 1, 200);
  assert.equal(router.statsOf(m)?.failures, 1);
  assert.equal(router.statsOf(m)?.lastError, undefined);
});

test("minds router: hostile or repeated candidates are dropped, the table stays bounded", () => {
  const router = new MindRouter({ ...MIND_ROUTER_DEFAULTS, mindsMax: 4 });
  const bad = [
    { ...mind("x", "local"), name: "" },
    { ...mind("x", "local"), name: "n".repeat(257) },
    { ...mind("x", "local"), provider: "evil" },
    { ...mind("x", "local"), kind: "remote" },
    { ...mind("x", "local"), embeds: "yes" },
    { ...mind("x", "local"), node: 7 },
    null,
    "mind",
  ] as unknown as MindInfo[];
  assert.deepEqual(router.pick(bad, "FULL", {}, 0), []);
  const good = mind("g", "local");
  assert.deepEqual(names(router.pick([good, good, { ...good }], "FULL", {}, 0)), ["g@n1"]);
  for (let t = 1; t <= 20; t++) router.pick([mind(`m${t}`, "local", `n${t}`)], "FULL", {}, t);
  assert.equal(router.size, 4);
  assert.deepEqual(router.stats().map((s) => s.name).sort(), ["m17", "m18", "m19", "m20"], "the least recently seen are forgotten");
  // A pick with more candidates than the table holds still orders them all.
  const many = Array.from({ length: 10 }, (_, i) => mind(`c${i}`, "local", `k${i}`));
  assert.equal(router.pick(many, "FULL", {}, 30).length, 10);
  assert.equal(router.size, 4);
  assert.throws(() => new MindRouter({ ...MIND_ROUTER_DEFAULTS, alpha: 0 }), RangeError);
});

test("minds router: embeds asks only minds that embed; forgetNode drops a node's minds", () => {
  const router = new MindRouter();
  const all = [mind("a", "local", "n1", true), mind("b", "local", "n2"), mind("c", "frontier", "n2", true)];
  assert.deepEqual(names(router.pick(all, "FULL", { embeds: true }, 0)), ["a@n1", "c@n2"]);
  router.pick(all, "FULL", {}, 0);
  assert.equal(router.forgetNode("n2"), 2);
  assert.deepEqual(router.stats().map((s) => s.name), ["a"]);
  assert.equal(router.forget(all[0] as MindInfo), true);
  assert.equal(router.size, 0);
});

// Property tests over random views of the cluster and random histories of outcomes.

const OUTCOMES: MindOutcome[] = ["ok", "ok", "ok", "timeout", "rate-limited", "server", "unreachable", "cancelled", "malformed", "truncated"];
const arbMinds = fc.uniqueArray(
  fc.record({
    name: fc.constantFrom("a", "b", "c", "d", "e"),
    node: fc.constantFrom("n1", "n2", "n3"),
    kind: fc.constantFrom("local" as const, "frontier" as const),
    embeds: fc.boolean(),
  }),
  { selector: (m) => `${m.node}/${m.name}`, minLength: 1, maxLength: 12 },
).map((list) => list.map((m): MindInfo => ({ ...m, provider: m.kind === "local" ? "openai" : "gemini", model: `model-${m.name}` })));
const arbHistory = fc.array(fc.record({ index: fc.nat(), outcome: fc.constantFrom(...OUTCOMES), latency: fc.integer({ min: 0, max: 5_000 }), advance: fc.integer({ min: 0, max: 5_000 }) }), { maxLength: 60 });
const arbMode = fc.constantFrom<Mode>("FULL", "REDUCED", "SOLO");

function replay(minds: readonly MindInfo[], history: readonly { index: number; outcome: MindOutcome; latency: number; advance: number }[]): { router: MindRouter; now: number } {
  const router = new MindRouter();
  let now = 0;
  router.pick(minds, "FULL", {}, now);
  for (const step of history) {
    now += step.advance;
    router.observe(minds[step.index % minds.length] as MindInfo, step.outcome, step.latency, now);
  }
  return { router, now };
}

test("minds router (property): a pick is the candidates not backing off, each once, the preferred kind first", () => {
  fc.assert(fc.property(arbMinds, arbHistory, arbMode, fc.option(fc.constantFrom("local" as const, "frontier" as const), { nil: undefined }), fc.nat({ max: 20_000 }), (minds, history, mode, prefer, later) => {
    const { router, now } = replay(minds, history);
    const at = now + later;
    const picked = router.pick(minds, mode, { prefer }, at);
    const keys = picked.map((m) => `${m.node}/${m.name}`);
    assert.equal(new Set(keys).size, keys.length, "no mind twice");
    for (const m of minds) {
      const backingOff = (router.statsOf(m)?.retryAtMs ?? 0) > at;
      assert.equal(keys.includes(`${m.node}/${m.name}`), !backingOff, `${m.node}/${m.name} is left out exactly while it backs off`);
    }
    const preferred = prefer ?? (mode === "FULL" ? "local" : "frontier");
    const firstOther = picked.findIndex((m) => m.kind !== preferred);
    if (firstOther >= 0) assert.ok(picked.slice(firstOther).every((m) => m.kind !== preferred), "the preferred kind first");
  }), { numRuns: 300 });
});

test("minds router (property): measurements stay in range and backoff within its bounds", () => {
  fc.assert(fc.property(arbMinds, arbHistory, (minds, history) => {
    const { router, now } = replay(minds, history);
    for (const s of router.stats()) {
      assert.ok(s.availability >= 0 && s.availability <= 1, `availability ${s.availability}`);
      if (s.latencyMs !== undefined) assert.ok(s.latencyMs >= 0 && s.latencyMs <= 5_000, `latency ${s.latencyMs}`);
      assert.ok(s.retryAtMs === 0 || s.retryAtMs - s.lastSeenMs <= MIND_ROUTER_DEFAULTS.backoffMaxMs);
      assert.ok(s.retryAtMs <= now + MIND_ROUTER_DEFAULTS.backoffMaxMs);
      assert.equal(s.successes + s.failures <= history.length, true);
    }
  }), { numRuns: 300 });
});

test("minds router (property): within a kind, a mind that is faster and at least as available never comes after a slower one", () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 10_000 }), { minLength: 2, maxLength: 8 }), arbMode, (latencies, mode) => {
    const router = new MindRouter();
    const minds = latencies.map((_, i) => mind(`m${i}`, "local", `n${i}`));
    router.pick(minds, mode, {}, 0);
    latencies.forEach((latency, i) => router.observe(minds[i] as MindInfo, "ok", latency, 1));
    const order = router.pick(minds, mode, {}, 2).map((m) => latencies[Number(m.name.slice(1))] as number);
    for (let i = 1; i < order.length; i++) assert.ok((order[i - 1] as number) <= (order[i] as number), `latencies in order: ${order}`);
  }), { numRuns: 200 });
});

test("minds router (property): the pick is deterministic — the same history gives the same order", () => {
  fc.assert(fc.property(arbMinds, arbHistory, arbMode, (minds, history, mode) => {
    const one = replay(minds, history);
    const two = replay([...minds].reverse(), history.map((h) => ({ ...h, index: minds.length - 1 - (h.index % minds.length) })));
    assert.deepEqual(one.router.pick(minds, mode, {}, one.now), two.router.pick([...minds].reverse(), mode, {}, two.now));
  }), { numRuns: 200 });
});
