// The gossip-topic core (src/core/collective/gossip.ts, docs/protocols/gossip.md): the LWW order,
// convergence under any delivery order (property), HLC last-writer-wins, tombstones and their
// collection without resurrection in the documented scenarios, byte budgets and bounded digests,
// 20 nodes under 5% loss, subscriptions, and the bounds on what a peer may send (its own origin,
// versions, horizons: the "attack" tests). Every network run carries its seed in its messages.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Gossip, GOSSIP_DEFAULTS, makeRow, rowBeats, rowBytesMax, rowWire, selfVersionFloor, VERSION_MAX, type GossipConfig, type GossipRow } from "../../src/core/collective/gossip.ts";
import type { GossipMessage } from "../../src/core/collective/gossip-wire.ts";
import { compareHlc } from "../../src/core/util/hlc.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { packValue } from "../../src/core/wire/codec.ts";
import { BASE_MS, bytes, core, deltaOf, describe, fingerprint, gid, GossipNet, rowBy, signerOf, TEST_CONFIG } from "./gossip-harness.ts";

const A = gid(0);
const B = gid(1);
/** A key and a signature of the right sizes (for messages refused before any check). */
const NOSIG = [new Uint8Array(32), new Uint8Array(64)] as const;

test("rowBeats is a strict total order (antisymmetric, transitive, total on distinct rows)", () => {
  const row = fc.record({
    wall: fc.integer({ min: 0, max: 3 }), logical: fc.integer({ min: 0, max: 2 }), origin: fc.constantFrom(A, B, gid(2)),
    version: fc.integer({ min: 1, max: 3 }), value: fc.option(fc.uint8Array({ maxLength: 2 }), { nil: undefined }),
  }).map((r) => makeRow("t", "k", r.value, r.wall, r.logical, r.origin, r.version));
  fc.assert(fc.property(row, row, row, (a, b, c) => {
    const same = describe(a) === describe(b);
    assert.equal(rowBeats(a, a), false, "irreflexive");
    if (same) assert.equal(rowBeats(a, b) || rowBeats(b, a), false);
    else assert.equal(rowBeats(a, b) !== rowBeats(b, a), true, `exactly one of ${describe(a)} / ${describe(b)} wins`);
    if (rowBeats(a, b) && rowBeats(b, c)) assert.ok(rowBeats(a, c), "transitive");
  }), { numRuns: 3000 });
});

/** The join the table must reach: for each key, the winning row among every write made. */
function expectedTable(writes: readonly GossipRow[]): string {
  const best = new Map<string, GossipRow>();
  for (const row of writes) {
    const known = best.get(row.id);
    if (known === undefined || rowBeats(row, known)) best.set(row.id, row);
  }
  return JSON.stringify([...best.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map(describe));
}

test("merge: concurrent writes under loss, duplication and reordering converge to the LWW join (property)", () => {
  const op = fc.record({
    node: fc.nat(3), tick: fc.nat(40), del: fc.boolean(), key: fc.nat(4), topic: fc.constantFrom("a", "b"), v: fc.nat(255),
  });
  fc.assert(fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), fc.array(fc.integer({ min: -3000, max: 3000 }), { minLength: 4, maxLength: 4 }),
    fc.nat(1_000_000), (ops, skewMs, seed) => {
      const net = new GossipNet({ n: 4, seed, loss: 0.3, duplicate: 0.2, delayMax: 12, skewMs, config: { ...TEST_CONFIG, periodTicks: 5 } });
      const writes: GossipRow[] = [];
      const sorted = [...ops].sort((x, y) => x.tick - y.tick);
      let next = 0;
      for (let t = 0; t <= 40; t++) {
        while (next < sorted.length && (sorted[next] as (typeof sorted)[number]).tick === t) {
          const o = sorted[next++] as (typeof sorted)[number];
          const g = net.nodes[o.node] as Gossip;
          const result = o.del ? g.delete(o.topic, `k${o.key}`) : g.publish(o.topic, `k${o.key}`, new Uint8Array([o.v]));
          assert.ok(result.ok, `seed ${seed}`);
          writes.push(result.row);
          net.drain(o.node);
        }
        net.tick();
      }
      net.run(100);
      net.loss = 0;
      net.runUntil(() => net.converged(), 2_000, "convergence");
      const expected = expectedTable(writes);
      for (const g of net.nodes) assert.equal(fingerprint(g), expected, `seed ${seed}: node ${g.selfId} holds the join of all writes`);
    }), { numRuns: 60 });
});

test("merge: delivering the same deltas in any order, twice, gives the same table (idempotent, commutative)", () => {
  // Capture every message a 3-node run sends, then replay them into fresh nodes in shuffled orders.
  const net = new GossipNet({ n: 3, seed: 5 });
  for (let i = 0; i < 3; i++) for (let k = 0; k < 4; k++) (net.nodes[i] as Gossip).publish("t", `k${(i * 3 + k) % 5}`, new Uint8Array([i, k]));
  (net.nodes[1] as Gossip).delete("t", "k2");
  net.runUntil(() => net.converged(), 1_000, "convergence");
  const target = fingerprint(net.nodes[0] as Gossip);
  const deltas = net.sent.filter((s) => s.message.r.length > 0).map((s) => ({ from: net.ids[s.from] as string, message: s.message }));
  fc.assert(fc.property(fc.nat(1_000_000), (seed) => {
    const rng = createRng(seed);
    const sink = core(9, createRng(seed, 2));
    sink.tick(BASE_MS, []);
    // Every node's own writes first-hand (deltas from origin sources), then all captured deltas twice, shuffled.
    const order = [...deltas, ...deltas];
    for (let k = order.length - 1; k > 0; k--) {
      const j = rng.int(k + 1);
      [order[k], order[j]] = [order[j] as (typeof order)[number], order[k] as (typeof order)[number]];
    }
    // Deltas that start above the sink's watermark are skipped (gaps); replaying rounds until no
    // progress models anti-entropy asking again.
    for (let round = 0; round < 10; round++) for (const d of order) sink.step(d.from, { ...d.message, h: 3, d: [] });
    assert.equal(fingerprint(sink), target, `seed ${seed}`);
  }), { numRuns: 30 });
});

test("LWW by HLC: the larger stamp wins whatever the arrival order, and causality is kept", () => {
  // A's clock runs 1 s ahead of B's.
  const net = new GossipNet({ n: 2, seed: 11, skewMs: [1000, 0] });
  net.run(5);
  const a = net.nodes[0] as Gossip;
  const b = net.nodes[1] as Gossip;
  // Concurrent writes: B, cut off, writes 300 ms after A in real time, but its stamp is lower.
  net.isolated.add(1);
  const wa = a.publish("t", "k", bytes("from A"));
  net.run(30);
  const wb = b.publish("t", "k", bytes("from B, concurrent"));
  assert.ok(wa.ok && wb.ok && wb.row.wall < wa.row.wall);
  net.isolated.delete(1);
  net.runUntil(() => net.converged(), 500, "convergence");
  assert.equal(new TextDecoder().decode(b.get("t", "k")?.value), "from A", "the larger stamp wins");
  // B has seen A's row, so its clock moved past A's stamp: B's next write to k wins everywhere.
  assert.ok(compareHlc(b.clock, wa.row) > 0);
  const w = b.publish("t", "k", bytes("from B, after seeing A"));
  assert.ok(w.ok && rowBeats(w.row, wa.row));
  net.runUntil(() => net.converged(), 500, "convergence");
  assert.equal(new TextDecoder().decode(a.get("t", "k")?.value), "from B, after seeing A");
  // Concurrent writes without causality: the larger HLC wins even though it arrives first.
  const c = core(5, createRng(1));
  c.tick(BASE_MS, []);
  const late = rowBy(0, "t", "x", bytes("late stamp"), BASE_MS + 50, 0, 1);
  const early2 = rowBy(1, "t", "x", bytes("early stamp"), BASE_MS + 10, 0, 1);
  c.step(A, deltaOf([late]));
  c.step(B, deltaOf([early2]));
  assert.equal(new TextDecoder().decode(c.get("t", "x")?.value), "late stamp");
  // Equal stamps: the larger origin id wins.
  const [low, high] = [A, B].sort();
  const tieLow = makeRow("t", "y", bytes("low"), BASE_MS, 3, low as string, 2);
  const tieHigh = makeRow("t", "y", bytes("high"), BASE_MS, 3, high as string, 2);
  assert.ok(rowBeats(tieHigh, tieLow) && !rowBeats(tieLow, tieHigh));
});

test("HLC: a row stamped beyond maxClockOffsetMs is refused, then accepted once the clock catches up", () => {
  const net = new GossipNet({ n: 2, seed: 13, skewMs: [10_000, 0] });
  net.run(3);
  assert.ok((net.nodes[0] as Gossip).publish("t", "k", bytes("ahead")).ok);
  net.run(100);
  const b = net.nodes[1] as Gossip;
  assert.equal(b.get("t", "k"), undefined, "10 s ahead: refused");
  assert.ok(b.stats().skewed > 0);
  net.runUntil(() => b.get("t", "k") !== undefined, 1_000, "acceptance once within 5 s"); // 5 s = 500 ticks
  assert.ok(net.converged());
});

/** Grace 2,000 ticks; nodes restored (so not fresh) or past their fresh window. */
function tombstoneNet(seed: number, n = 5): GossipNet {
  const net = new GossipNet({ n, seed });
  net.run(1_100); // past the fresh window (grace / 2)
  return net;
}

test("tombstones: a delete removes the key everywhere and is collected after the grace period", () => {
  const net = tombstoneNet(17);
  const [n0, n2] = [net.nodes[0] as Gossip, net.nodes[2] as Gossip];
  assert.ok(n0.publish("t", "k", bytes("v")).ok && n0.publish("t", "keep", bytes("w")).ok);
  net.runUntil(() => net.nodes.every((g) => g.get("t", "k") !== undefined), 300, "spread");
  assert.ok(n2.delete("t", "k").ok);
  net.runUntil(() => net.nodes.every((g) => g.get("t", "k") === undefined), 300, "delete spread");
  assert.ok(net.nodes.every((g) => g.stats().tombstones === 1));
  net.run(TEST_CONFIG.tombstoneGraceTicks + 100);
  for (const g of net.nodes) {
    assert.equal(g.stats().tombstones, 0, "collected");
    assert.equal(g.rows().length, 1, "only `keep` remains");
    assert.ok(g.stats().tombstonesCollected === 1);
  }
  assert.equal(net.events.length, 0, "no reset in normal operation");
});

test("tombstones: a late copy of the deleted row cannot resurrect it after collection (the per-origin floor)", () => {
  const net = tombstoneNet(19);
  const n0 = net.nodes[0] as Gossip;
  const live = n0.publish("t", "k", bytes("old"));
  assert.ok(live.ok);
  net.runUntil(() => net.converged(), 300, "spread");
  assert.ok((net.nodes[3] as Gossip).delete("t", "k").ok);
  net.run(TEST_CONFIG.tombstoneGraceTicks + 200);
  assert.ok(net.nodes.every((g) => g.rows().length === 0), "tombstone collected everywhere");
  // The delta a slow network still holds: n0's row, version 1, from 0.
  const r = live.row;
  const stale: GossipMessage = { t: "gossip", h: 1, n: 1, d: [], r: [[r.origin, 0, 1, [rowWire(r)]]], g: [] };
  for (let i = 1; i < net.nodes.length; i++) (net.nodes[i] as Gossip).step(A, stale);
  net.run(200);
  assert.ok(net.nodes.every((g) => g.get("t", "k") === undefined && g.rows().length === 0), "not resurrected");
});

test("tombstones: a node away for less than the grace period gets the tombstone and sends nothing back", () => {
  const net = tombstoneNet(23);
  assert.ok((net.nodes[0] as Gossip).publish("t", "k", bytes("v")).ok);
  net.runUntil(() => net.converged(), 300, "spread");
  net.isolated.add(4);
  assert.ok((net.nodes[1] as Gossip).delete("t", "k").ok);
  net.run(TEST_CONFIG.tombstoneGraceTicks / 2);
  assert.ok((net.nodes[4] as Gossip).get("t", "k") !== undefined, "the isolated node still holds the row");
  net.isolated.delete(4);
  net.runUntil(() => net.converged(), 300, "convergence after return");
  assert.ok(net.nodes.every((g) => g.get("t", "k") === undefined));
  net.run(TEST_CONFIG.tombstoneGraceTicks + 200);
  assert.ok(net.nodes.every((g) => g.rows().length === 0), "collected everywhere, nothing resurrected");
  assert.equal(net.events.length, 0);
});

test("tombstones: a node away beyond the grace period is reset by the collection horizon, not the others", () => {
  const net = tombstoneNet(29);
  const [n0, n1] = [net.nodes[0] as Gossip, net.nodes[1] as Gossip];
  assert.ok(n0.publish("t", "k", bytes("v")).ok && n1.publish("t", "other", bytes("x")).ok);
  net.runUntil(() => net.converged(), 300, "spread");
  net.isolated.add(4);
  assert.ok(n1.delete("t", "k").ok);
  assert.ok(n0.publish("t", "later", bytes("y")).ok);
  net.run(TEST_CONFIG.tombstoneGraceTicks + 300);
  assert.ok(net.nodes.slice(0, 4).every((g) => g.rows().length === 2), "others collected the tombstone");
  assert.ok((net.nodes[4] as Gossip).get("t", "k") !== undefined, "the stale node still holds k");
  net.isolated.delete(4);
  net.runUntil(() => net.converged(), 1_000, "convergence after return");
  assert.ok(net.nodes.every((g) => g.get("t", "k") === undefined), "k stays deleted everywhere");
  assert.ok(net.nodes.every((g) => g.get("t", "other") !== undefined && g.get("t", "later") !== undefined));
  const resets = net.events.filter((e) => e.event.type === "gossip-reset");
  assert.ok(resets.length >= 1 && resets.every((e) => e.node === 4), `only the stale node resets: ${JSON.stringify(resets)}`);
});

test("tombstones: a fresh node joining after collection gets the table without a reset", () => {
  const net = tombstoneNet(31, 4);
  for (let i = 0; i < 4; i++) assert.ok((net.nodes[i] as Gossip).publish("t", `k${i}`, bytes(`v${i}`)).ok);
  net.runUntil(() => net.converged(), 300, "spread");
  assert.ok((net.nodes[2] as Gossip).delete("t", "k0").ok);
  net.run(TEST_CONFIG.tombstoneGraceTicks + 200);
  net.add();
  net.runUntil(() => net.converged(), 500, "the joiner converges");
  assert.equal((net.nodes[4] as Gossip).rows().length, 3);
  assert.equal(net.events.length, 0, "no reset");
});

test("budget: rows of the largest size travel, every message fits its budget, a datagram never exceeds 1,200 bytes", () => {
  const net = new GossipNet({ n: 6, seed: 37, loss: 0.05 });
  net.run(3);
  const n0 = net.nodes[0] as Gossip;
  const bigKey = "k".repeat(GOSSIP_DEFAULTS.keyBytesMax - 4);
  for (let i = 0; i < 60; i++) assert.ok(n0.publish("topic/with.a-long_name", `${bigKey}${i.toString().padStart(4, "0")}`, new Uint8Array(GOSSIP_DEFAULTS.valueBytesMax).fill(i)).ok);
  assert.equal(n0.publish("t", "k", new Uint8Array(GOSSIP_DEFAULTS.valueBytesMax + 1)).ok, false, "value bound");
  assert.equal(n0.publish("t", "é".repeat(65), new Uint8Array(1)).ok, false, "key bound in UTF-8 bytes");
  net.runUntil(() => net.converged(), 3_000, "convergence of 60 rows of ~770 bytes");
  assert.ok(net.largestBody <= GOSSIP_DEFAULTS.budgetBytes, `largest body ${net.largestBody}`);
  assert.ok(net.sent.some((s) => s.message.r.length > 0 && s.bytes > 700), "a message carried a near-largest row");
  // A budget that cannot hold the largest row is refused at construction.
  const tight: GossipConfig = { ...GOSSIP_DEFAULTS, budgetBytes: rowBytesMax(GOSSIP_DEFAULTS) };
  assert.throws(() => new Gossip(A, signerOf(0), createRng(1), tight));
});

test("digests are bounded: a joiner discovers 60 origins through 24-entry digests", () => {
  const net = new GossipNet({ n: 60, seed: 41 });
  net.run(2);
  for (let i = 0; i < 60; i++) assert.ok((net.nodes[i] as Gossip).publish("vital", gid(i), new Uint8Array([i])).ok);
  net.runUntil(() => net.converged(), 2_000, "60 origins converge");
  const j = net.add();
  const ticks = net.runUntil(() => net.converged(), 3_000, "the joiner discovers every origin");
  assert.equal((net.nodes[j] as Gossip).stats().origins, 60);
  for (const s of net.sent) {
    if (s.message.h === 0) assert.ok(s.message.d.length <= GOSSIP_DEFAULTS.digestEntriesMax, "SYN digest bound");
    assert.ok(s.message.d.length <= GOSSIP_DEFAULTS.digestEntriesMax + 2 * GOSSIP_DEFAULTS.priorityEntriesMax, "answer digest bound");
  }
  assert.ok(ticks / TEST_CONFIG.periodTicks < 40, `joiner took ${ticks / TEST_CONFIG.periodTicks} periods`);
});

test("20 nodes under 5% loss converge, with writes and deletes from everyone", () => {
  for (const seed of [43, 44]) {
    const net = new GossipNet({ n: 20, seed, loss: 0.05, duplicate: 0.01 });
    const rng = createRng(seed, 9);
    for (let t = 0; t < 300; t++) {
      if (t % 3 === 0) {
        const i = rng.int(20);
        const g = net.nodes[i] as Gossip;
        const key = `k${rng.int(30)}`;
        assert.ok((rng.chance(0.2) ? g.delete("t", key) : g.publish("t", key, new Uint8Array([t & 0xff]))).ok);
      }
      net.tick();
    }
    const ticks = net.runUntil(() => net.converged(), 2_000, "convergence");
    assert.ok(ticks / TEST_CONFIG.periodTicks <= 20, `seed ${seed}: converged ${ticks / TEST_CONFIG.periodTicks} periods after the last write`);
    assert.ok((net.nodes[0] as Gossip).rows().length > 10, `seed ${seed}`);
  }
});

test("subscriptions: a subscriber sees its topic's changes, local and remote; the queue is bounded", () => {
  const net = new GossipNet({ n: 2, seed: 47, config: { ...TEST_CONFIG, subscriptionQueueMax: 4, subscriptionsMax: 2 } });
  net.run(2);
  const [a, b] = [net.nodes[0] as Gossip, net.nodes[1] as Gossip];
  const sub = b.subscribe("a");
  assert.ok(sub !== undefined);
  assert.ok(a.publish("a", "x", bytes("1")).ok && a.publish("b", "y", bytes("2")).ok);
  net.runUntil(() => b.get("a", "x") !== undefined && b.get("b", "y") !== undefined, 300, "spread");
  assert.ok(a.delete("a", "x").ok);
  net.runUntil(() => b.get("a", "x") === undefined, 300, "delete spread");
  const seen = sub.take();
  assert.deepEqual(seen.map((c) => [c.topic, c.key, c.value === undefined ? null : new TextDecoder().decode(c.value)]), [["a", "x", "1"], ["a", "x", null]]);
  // Local writes too; the bound drops the oldest and counts it.
  for (let i = 0; i < 10; i++) assert.ok(b.publish("a", `k${i}`, new Uint8Array([i])).ok);
  assert.equal(sub.size, 4);
  assert.equal(sub.dropped, 6);
  assert.deepEqual(sub.take(2).map((c) => c.key), ["k6", "k7"]);
  assert.deepEqual(sub.take().map((c) => c.key), ["k8", "k9"]);
  assert.ok(b.stats().subscriptionDrops === 6);
  // Bounded subscriptions; close frees a slot and stops delivery.
  const second = b.subscribe("b");
  assert.ok(second !== undefined);
  assert.equal(b.subscribe("c"), undefined, "subscriptionsMax");
  sub.close();
  assert.ok(b.publish("a", "after", bytes("z")).ok);
  assert.equal(sub.size, 0);
  assert.ok(b.subscribe("c") !== undefined);
});

test("bounds: topics, keys per topic and rows are refused beyond their limits; invalid deltas are counted, never thrown", () => {
  const g = core(0, createRng(3), { ...TEST_CONFIG, topicsMax: 2, keysPerTopicMax: 3, rowsMax: 5 });
  g.tick(BASE_MS, []);
  assert.ok(g.publish("t1", "a", bytes("1")).ok && g.publish("t2", "a", bytes("1")).ok);
  assert.equal(g.publish("t3", "a", bytes("1")).ok, false, "topicsMax");
  assert.ok(g.publish("t1", "b", bytes("1")).ok && g.publish("t1", "c", bytes("1")).ok);
  assert.equal(g.publish("t1", "d", bytes("1")).ok, false, "keysPerTopicMax");
  assert.ok(g.publish("t2", "b", bytes("1")).ok);
  assert.equal(g.publish("t2", "c", bytes("1")).ok, false, "rowsMax");
  assert.ok(g.publish("t1", "a", bytes("2")).ok, "overwriting a key needs no room");
  assert.equal(g.publish("bad topic", "a", bytes("1")).ok, false);
  assert.equal(g.publish("t1", "\ud800", bytes("1")).ok, false, "lone surrogate");
  const bad: GossipMessage[] = [
    { t: "gossip", h: 3, n: 0, d: [[B, 1]], r: [], g: [] },
    { t: "gossip", h: 1, n: 0, d: [], r: [[B, 5, 2, []]], g: [] },
    { t: "gossip", h: 1, n: 0, d: [], r: [[B, 0, 5, [[3, "t", "k", null, 1, 0, ...NOSIG], [2, "t", "j", null, 1, 0, ...NOSIG]]]], g: [] },
    { t: "gossip", h: 1, n: 0, d: [], r: [[B, 0, 5, [[6, "t", "k", null, 1, 0, ...NOSIG]]]], g: [] },
    { t: "gossip", h: 1, n: 0, d: [], r: [[B, 0, 5, [[1, "t", "k", new Uint8Array(GOSSIP_DEFAULTS.valueBytesMax + 1), 1, 0, ...NOSIG]]]], g: [] },
    { t: "gossip", h: 1, n: 0, d: [], r: [[B, 0, 5, [[1, "t", "k", null, BASE_MS, 0xffff_fff0, ...NOSIG]]]], g: [] },
  ];
  for (const m of bad) g.step(B, m);
  assert.equal(g.stats().invalid, bad.length);
  // A full table refuses a remote new key and asks again later rather than skipping it.
  g.step(B, deltaOf([rowBy(1, "t1", "z", bytes("r"), BASE_MS, 0, 1)]));
  assert.equal(g.get("t1", "z"), undefined);
  assert.equal(g.watermark(B), 0, "the watermark did not pass the refused row");
  assert.ok(g.stats().tableFull >= 1);
});

test("a node that lost its store does not take its own rows back: a peer showing it behind moves it to its own floor, and its new writes are written again above it", () => {
  const net = new GossipNet({ n: 3, seed: 53 });
  net.run(2);
  for (let i = 0; i < 5; i++) assert.ok((net.nodes[0] as Gossip).publish("t", `k${i}`, new Uint8Array([i])).ok);
  net.runUntil(() => net.converged(), 300, "spread");
  // Node 0 restarts with an empty store (same id): the node layer (topics.ts) gives the core its
  // floor, since the store holds no own version.
  const reborn = core(0, createRng(99));
  const floor = selfVersionFloor(net.physicalMs(0));
  assert.ok(floor > 5 && floor <= VERSION_MAX / 2);
  reborn.restore([], [], floor);
  net.nodes[0] = reborn;
  // It writes before hearing from anyone: version 1, which its peers already hold from its old life.
  reborn.tick(net.physicalMs(0), net.peersOf(0));
  const early = reborn.publish("t", "k0", bytes("new"));
  assert.ok(early.ok && early.row.version === 1);
  net.runUntil(() => reborn.stats().renumbers === 1, 300, "a peer shows it behind on itself");
  assert.ok(reborn.selfVersion > floor, "its sequence moved to its own floor, not to a peer's value");
  assert.deepEqual(net.events.filter((e) => e.event.type === "gossip-renumbered").map((e) => [e.node, (e.event as { rows: number }).rows]), [[0, 1]]);
  net.runUntil(() => [1, 2].every((i) => new TextDecoder().decode((net.nodes[i] as Gossip).get("t", "k0")?.value) === "new"), 300, "the early write reaches the others");
  assert.equal(reborn.get("t", "k1"), undefined, "its old rows are not taken back from peers");
  assert.deepEqual([...(net.nodes[1] as Gossip).get("t", "k1")?.value ?? []], [1], "the others keep them");
  const w = reborn.publish("t", "k2", bytes("later"));
  assert.ok(w.ok && w.row.version === floor + 2);
  net.runUntil(() => new TextDecoder().decode((net.nodes[2] as Gossip).get("t", "k2")?.value) === "later", 300, "later writes spread");
  net.run(100);
  assert.equal(reborn.stats().renumbers, 1, "once");
});

test("attack: a peer claiming more of a node's origin than it wrote moves a node without its own version only to that node's floor, once", () => {
  const g = core(0, createRng(10));
  g.restore([], [], 1_000_000);
  g.tick(BASE_MS, [B]);
  g.step(B, { t: "gossip", h: 0, n: 1, d: [[A, VERSION_MAX - 1]], r: [], g: [] });
  assert.equal(g.selfVersion, 1_000_000, "its own floor, not the claimed value");
  g.step(B, { t: "gossip", h: 3, n: 0, d: [], r: [[A, 0, VERSION_MAX, []]], g: [] });
  assert.equal(g.selfVersion, 1_000_000, "no further move");
  assert.equal(g.stats().ownOrigin, 2);
  const w = g.publish("t", "k", bytes("v"));
  assert.ok(w.ok && w.row.version === 1_000_001);
});

test("attack: only a member trusted with it (a core node) can tell a node it lost its store: a contributor's claim moves nothing", () => {
  const C = gid(2);
  const g = new Gossip(A, signerOf(0), createRng(11), TEST_CONFIG, { trusted: (id) => id === C });
  g.restore([], [], 1_000_000);
  g.tick(BASE_MS, [B, C]);
  g.step(B, { t: "gossip", h: 0, n: 1, d: [[A, 500]], r: [], g: [] });
  assert.equal(g.selfVersion, 0, "the contributor's word is counted, not followed");
  assert.equal(g.stats().ownOrigin, 1);
  g.step(C, { t: "gossip", h: 0, n: 1, d: [[A, 500]], r: [], g: [] });
  assert.equal(g.selfVersion, 1_000_000, "a core node's moves it to its own floor");
});

test("attack: a contributor's range or horizon for another origin moves nothing; its signed rows are taken; the origin's later rows still arrive", () => {
  const C = gid(2);
  const g = new Gossip(A, signerOf(0), createRng(12), TEST_CONFIG, { trusted: (id) => id === C });
  g.tick(BASE_MS, [B, C]);
  // B (a contributor) says C wrote nothing up to 2^53−2, and that C's tombstones were collected.
  g.step(B, { t: "gossip", h: 3, n: 0, d: [], r: [[C, 0, VERSION_MAX - 1, []]], g: [[C, VERSION_MAX - 1, BASE_MS, 0]] });
  assert.equal(g.watermark(C), 0, "a range no signature covers is not believed from a contributor");
  assert.equal(g.stats().untrusted, 2);
  // B relays one of C's signed rows: taken, the watermark stays (the range comes from a trusted member).
  g.step(B, deltaOf([rowBy(2, "t", "k2", bytes("two"), BASE_MS, 0, 2)], 0, 2));
  assert.equal(new TextDecoder().decode(g.get("t", "k2")?.value), "two");
  assert.equal(g.watermark(C), 0);
  // C's own range moves it, with the rows.
  g.step(C, deltaOf([rowBy(2, "t", "k1", bytes("one"), BASE_MS, 0, 1), rowBy(2, "t", "k3", bytes("three"), BASE_MS, 0, 3)], 0, 3));
  assert.equal(g.watermark(C), 3);
  assert.equal(new TextDecoder().decode(g.get("t", "k1")?.value), "one");
  assert.equal(new TextDecoder().decode(g.get("t", "k3")?.value), "three");
});

test("attack: a forged delta [victim, 0, 2^53−1, []] no longer stops the victim's writes (own-origin deltas are refused and counted)", () => {
  const victim = core(0, createRng(7));
  victim.tick(BASE_MS, [B]);
  assert.ok(victim.publish("t", "k", bytes("mine")).ok);
  victim.step(B, { t: "gossip", h: 3, n: 0, d: [], r: [[A, 0, Number.MAX_SAFE_INTEGER, []]], g: [] });
  // A forged row of the victim's own origin, and a digest claiming more of it than it wrote.
  victim.step(B, { t: "gossip", h: 3, n: 0, d: [], r: [[A, 1, 9, [[5, "t", "k", bytes("evil"), BASE_MS + 1, 0, ...NOSIG]]]], g: [] });
  victim.step(B, { t: "gossip", h: 0, n: 1, d: [[A, 1_000_000]], r: [], g: [] });
  assert.equal(victim.selfVersion, 1, "no peer moves the victim's own version");
  assert.equal(new TextDecoder().decode(victim.get("t", "k")?.value), "mine");
  assert.equal(victim.stats().ownOrigin, 3, "each counted");
  const w = victim.publish("t", "k2", bytes("still writing"));
  assert.ok(w.ok, w.ok ? "" : w.error);
  assert.equal(w.row.version, 2);
  // The victim's answer to the digest asks for nothing of its own origin.
  const answers = victim.ready().messages;
  for (const out of answers) assert.ok(!out.message.d.some(([origin, version]) => origin === A && version < 2), "no request for its own rows");
});

test("attack: versions above LIMITS.gossip.versionMax are dropped and counted; the origin's real rows still arrive", () => {
  const C = gid(2);
  const g = core(0, createRng(8));
  g.tick(BASE_MS, [B]);
  g.step(B, { t: "gossip", h: 3, n: 0, d: [], r: [[C, 0, Number.MAX_SAFE_INTEGER, []]], g: [] });
  g.step(B, { t: "gossip", h: 0, n: 1, d: [[C, VERSION_MAX + 1]], r: [], g: [] });
  g.step(B, { t: "gossip", h: 3, n: 0, d: [], r: [], g: [[C, VERSION_MAX + 1, BASE_MS, 0]] });
  assert.equal(g.watermark(C), 0, "the forged range did not move C's watermark");
  assert.equal(g.stats().highVersions, 3);
  g.step(B, deltaOf([rowBy(2, "t", "k", bytes("real"), BASE_MS, 0, 1)]));
  assert.equal(new TextDecoder().decode(g.get("t", "k")?.value), "real", "C's real first row is taken");
});

test("attack: a collection horizon for the victim's own origin, or stamped far ahead of every clock, does not reset its table", () => {
  const C = gid(2);
  const D = gid(3);
  const g = core(0, createRng(9));
  // Restored with rows: not fresh, so it honours horizons at once.
  g.restore([rowBy(2, "t", "c", bytes("kept"), BASE_MS - 1_000, 0, 1)], [[A, 4], [C, 1]]);
  g.tick(BASE_MS, [B]);
  g.step(B, { t: "gossip", h: 3, n: 0, d: [], r: [], g: [[D, 5, BASE_MS + 365 * 24 * 3600 * 1000, 0]] });
  g.step(B, { t: "gossip", h: 3, n: 0, d: [], r: [], g: [[A, 99, BASE_MS, 0]] });
  assert.equal(g.stats().resets, 0, "no reset");
  assert.equal(new TextDecoder().decode(g.get("t", "c")?.value), "kept");
  assert.equal(g.stats().skewed, 1);
  assert.equal(g.stats().ownOrigin, 1);
  // The horizon is not kept either: the node never tells peers about it.
  g.step(B, { t: "gossip", h: 0, n: 1, d: [[D, 0], [A, 0]], r: [], g: [] });
  for (const out of g.ready().messages) assert.deepEqual(out.message.g, []);
});

test("catch-up: rows that overflow a datagram travel on the stream channel with the catch-up budget", () => {
  const config = { ...GOSSIP_DEFAULTS, catchUpBytes: 64 * 1024 };
  const [AA, BB, DD, EE] = [gid(10), gid(11), gid(13), gid(14)];
  const a = core(10, createRng(1), config);
  const b = core(11, createRng(2), config);
  a.tick(1_000_000, []);
  b.tick(1_000_000, []);
  for (let i = 0; i < 3_000; i++) assert.equal(a.publish("t", `k${i}`, new TextEncoder().encode(`v${i}`)).ok, true);
  a.ready();
  b.syncWith(AA);
  const syn = b.ready().messages;
  assert.equal(syn.length, 1);
  // Exchange until `a` owes `b` its rows (b learns of a's origin first, then asks for it).
  let toA = syn[0]!.message;
  let answer: ReturnType<Gossip["ready"]>["messages"] = [];
  for (let hop = 0; hop < 2 && answer.every((m) => m.channel !== "stream"); hop++) {
    a.step(BB, toA);
    answer = a.ready().messages;
    assert.equal(answer.length, 1);
    if (answer[0]!.channel === "stream") break;
    b.step(AA, answer[0]!.message);
    const next = b.ready().messages;
    assert.equal(next.length, 1);
    toA = next[0]!.message;
  }
  assert.equal(answer[0]!.channel, "stream", "the owed rows overflow a datagram");
  assert.ok(packValue(answer[0]!.message).length > 1_200 && packValue(answer[0]!.message).length <= 64 * 1024);
  b.step(AA, answer[0]!.message);
  // Rows of ~120 bytes (100 of them the writer's key and signature): about 530 in 64 KiB.
  assert.ok(b.size > 400, `one exchange carried ${b.size} rows`);
  assert.equal(a.stats().catchUps, 1);
  // With catch-up off (the core's default) the same owed rows are answered in one datagram.
  const d = core(13, createRng(4), GOSSIP_DEFAULTS);
  d.tick(1_000_000, []);
  for (let i = 0; i < 3_000; i++) d.publish("t", `k${i}`, new TextEncoder().encode(`v${i}`));
  d.ready();
  const e = core(14, createRng(5), GOSSIP_DEFAULTS);
  e.tick(1_000_000, []);
  e.syncWith(DD);
  let toD = e.ready().messages[0]!.message;
  for (let hop = 0; hop < 2; hop++) {
    d.step(EE, toD);
    const out = d.ready().messages;
    for (const m of out) {
      assert.equal(m.channel, "datagram");
      assert.ok(packValue(m.message).length <= 1_200);
    }
    if (out.length === 0) break;
    e.step(DD, out[0]!.message);
    const next = e.ready().messages;
    if (next.length === 0) break;
    toD = next[0]!.message;
  }
  assert.ok(e.size > 0 && e.size < 100, `a datagram exchange carried only ${e.size} rows`);
});
