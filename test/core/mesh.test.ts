// Mesh routing core (src/core/collective/mesh.ts), driven through the deterministic network of
// mesh-harness.ts: delivery through relays on a line and a ring, rerouting around a dead relay,
// no count-to-infinity (RFC 8966 §2.4–2.5: the feasibility condition), partition and heal, bounds
// at 200 nodes, and the wire schemas under hostile bytes. Every assertion message carries the seed.
//
// Timing. δ = per-message delay, 1..3 ticks here (δmax = 3). Triggered updates leave at the tick
// the change happens (the harness delivers before it ticks the cores), so news crosses one hop in
// ≤ δmax. The bounds below follow from that and from the timers of MESH_DEFAULTS (docs/protocols/mesh.md,
// "Bounds"): update interval U = 400, route expiry 3.5·U = 1,400, sweep 10, request timeout 50.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { feasible, Mesh, MESH_DEFAULTS, routeExpiryTicks, seqnoNewer } from "../../src/core/collective/mesh.ts";
import { MESH_LIMITS, validateMesh, type MeshMessage, type MeshRouteWire } from "../../src/core/collective/mesh-wire.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { packValue, unpackValue } from "../../src/core/wire/codec.ts";
import { ENVELOPE_BYTES, line, meshId, MeshSim, randomGraph, ring } from "./mesh-harness.ts";

const INF = MESH_LIMITS.metricInfinity;
const DELTA_MAX = 3;
const U = MESH_DEFAULTS.updateIntervalTicks;
const EXPIRY = routeExpiryTicks(U);
const SWEEP = MESH_DEFAULTS.sweepTicks;

function payload(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

// ---- rules -----------------------------------------------------------------------------------

test("mesh: seqno order is modulo 2^16 and feasibility is strict", () => {
  assert.ok(seqnoNewer(1, 0));
  assert.ok(seqnoNewer(0, 0xffff), "wraps");
  assert.ok(!seqnoNewer(5, 5));
  assert.ok(!seqnoNewer(0, 1));
  assert.ok(seqnoNewer(0x7fff, 0) && !seqnoNewer(0x8000, 0), "half the space is newer");
  const fd = { seqno: 10, metric: 3 };
  assert.ok(feasible(undefined, 10, 99), "no FD yet: anything");
  assert.ok(feasible(fd, 10, 2), "same seqno, smaller metric");
  assert.ok(!feasible(fd, 10, 3), "same seqno, equal metric is not feasible");
  assert.ok(!feasible(fd, 9, 0), "older seqno is never feasible");
  assert.ok(feasible(fd, 11, 200), "newer seqno: any metric");
  assert.ok(feasible(fd, 9, INF), "a retraction always is");
});

// ---- delivery through relays -------------------------------------------------------------------

test("mesh: a line of 10 routes every node to every other through relays", () => {
  const times: number[] = [];
  for (const seed of [1, 2, 3]) {
    const n = 10;
    const sim = new MeshSim({ n, seed });
    line(sim);
    // Bound: the dumps leave at tick 1; each route crosses one hop per ≤ δmax (triggered updates),
    // and the farthest node is n − 1 hops away: 1 + (n − 1)·δmax = 28 ticks.
    const bound = 1 + (n - 1) * DELTA_MAX;
    assert.ok(sim.run(bound, () => sim.converged()), `seed ${seed}: line not converged within ${bound} ticks`);
    times.push(sim.now);
    for (let a = 0; a < n; a++) {
      for (let b = 0; b < n; b++) if (a !== b) assert.equal(sim.send(a, b, payload(`${a}>${b}`)), "sent", `seed ${seed}: ${a}→${b}`);
    }
    sim.run((n - 1) * DELTA_MAX);
    for (let a = 0; a < n; a++) {
      for (let b = 0; b < n; b++) {
        if (a === b) continue;
        const got = sim.delivered(a, b);
        assert.equal(got.length, 1, `seed ${seed}: ${a}→${b} delivered ${got.length} times`);
        assert.equal(got[0]?.hops, Math.abs(a - b), `seed ${seed}: ${a}→${b} hop count`);
        assert.equal(new TextDecoder().decode(got[0]?.payload), `${a}>${b}`);
      }
    }
    const end = sim.delivered(0, 9)[0];
    assert.equal(end?.hops, 9, "end to end: 9 hops");
    const relayed = sim.nodes.reduce((sum, m) => sum + m.stats.dataForwarded, 0);
    let expected = 0;
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) expected += Math.abs(a - b) - 1;
    assert.equal(relayed, expected, `seed ${seed}: every packet relayed by each node between its ends`);
  }
  console.log(`mesh line n=10: converged at tick ${Math.min(...times)}–${Math.max(...times)} (bound ${1 + 9 * DELTA_MAX}), seeds 1–3`);
});

test("mesh: a ring of 12 without chords, and with a ring link missing, delivers between all pairs", () => {
  const times: number[] = [];
  for (const seed of [1, 2, 3]) {
    const n = 12;
    const sim = new MeshSim({ n, seed });
    ring(sim);
    // On a ring a longer route may arrive first and be replaced; the shortest one crosses
    // ≤ n/2 hops: 1 + (n/2)·δmax = 19 ticks.
    const bound = 1 + (n / 2) * DELTA_MAX;
    assert.ok(sim.run(bound, () => sim.converged()), `seed ${seed}: ring not converged within ${bound} ticks`);
    times.push(sim.now);
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) sim.send(a, b, payload("x"));
    sim.run(n * DELTA_MAX);
    for (let a = 0; a < n; a++) {
      for (let b = 0; b < n; b++) {
        if (a === b) continue;
        const d = Math.min((a - b + n) % n, (b - a + n) % n);
        assert.deepEqual(sim.delivered(a, b).map((x) => x.hops), [d], `seed ${seed}: ${a}→${b}`);
      }
    }
    // Take one ring link away for good: the ring is a line of 12; everything still arrives.
    sim.cut(0, n - 1);
    assert.ok(sim.run(10 * n * DELTA_MAX, () => sim.converged()), `seed ${seed}: not converged after the cut`);
    sim.send(0, n - 1, payload("around"));
    sim.run(n * DELTA_MAX);
    assert.deepEqual(sim.delivered(0, n - 1).map((x) => x.hops), [1, n - 1], `seed ${seed}: 0→11 went around the ring`);
  }
  console.log(`mesh ring n=12: converged at tick ${Math.min(...times)}–${Math.max(...times)} (bound ${1 + 6 * DELTA_MAX}), seeds 1–3`);
});

// ---- rerouting around a dead relay ----------------------------------------------------------------

/**
 * Reroute bound (no loss). When relay R dies, its neighbours learn it after T_detect. A node that
 * loses its route retracts it at once; nodes whose alternative is not feasible retract in turn
 * (≤ h_r hops), the first with an unfeasible alternative sends a seqno request to the destination
 * (≤ h_q hops), which raises its seqno and sends a triggered update back (≤ h_u hops). Every step
 * is immediate, so reroute ≤ T_detect + (h_r + h_q + h_u)·δmax; on a ring of N with one node dead
 * the survivors form a line, each h ≤ N − 2: bound = T_detect + 3(N − 2)·δmax.
 */
function rerouteBound(n: number, detect: number): number {
  return detect + 3 * (n - 2) * DELTA_MAX;
}

test("mesh: killing a relay on a ring of 12 reroutes within T_detect + 3(N − 2)·δmax, loop-free throughout", () => {
  const n = 12;
  const detect = 20;
  const bound = rerouteBound(n, detect);
  const pairTimes: number[] = [];
  const fullTimes: number[] = [];
  for (let seed = 1; seed <= 10; seed++) {
    const sim = new MeshSim({ n, seed, detectTicks: detect });
    ring(sim);
    assert.ok(sim.run(100, () => sim.converged()), `seed ${seed}: initial convergence`);
    assert.deepEqual(sim.path(0, 4), [1, 2, 3, 4], `seed ${seed}: 0→4 goes through relay 2`);
    const killedAt = sim.now;
    sim.kill(2);
    let rerouted = -1;
    const done = sim.run(bound, () => {
      sim.assertLoopFree();
      const path = sim.path(0, 4);
      if (rerouted < 0 && Array.isArray(path) && !path.includes(2)) rerouted = sim.now - killedAt;
      return sim.converged();
    });
    assert.ok(done, `seed ${seed}: not reconverged within ${bound} ticks of the kill`);
    assert.ok(rerouted >= detect, `seed ${seed}: rerouted before the death was detected`);
    pairTimes.push(rerouted);
    fullTimes.push(sim.now - killedAt);
    sim.send(0, 4, payload("around"));
    sim.run(n * DELTA_MAX);
    assert.deepEqual(sim.delivered(0, 4).map((x) => x.hops), [8], `seed ${seed}: 0→4 around the ring`);
  }
  console.log(`mesh ring n=12, relay killed, T_detect ${detect}: 0→4 rerouted after ${Math.min(...pairTimes)}–${Math.max(...pairTimes)} ticks, ` +
    `every route after ${Math.min(...fullTimes)}–${Math.max(...fullTimes)} (bound ${bound}), seeds 1–10`);
});

test("mesh: with 5% loss a killed relay is routed around within one update interval of the lossless bound", () => {
  // Loss adds waits: a lost triggered update is repeated after 10 and 20 ticks and carried by the
  // next full dump (≤ U); a lost seqno request is resent every 50 ticks, 6 times. Over these seeds
  // every route is back within U + the lossless bound.
  const n = 12;
  const bound = U + rerouteBound(n, 0);
  const times: number[] = [];
  for (let seed = 1; seed <= 20; seed++) {
    const sim = new MeshSim({ n, seed, loss: 0.05 });
    ring(sim);
    assert.ok(sim.run(2 * U, () => sim.converged()), `seed ${seed}: initial convergence`);
    const killedAt = sim.now;
    sim.kill(2);
    const done = sim.run(bound, () => {
      sim.assertLoopFree();
      return sim.converged();
    });
    assert.ok(done, `seed ${seed}: not reconverged within ${bound} ticks with 5% loss`);
    times.push(sim.now - killedAt);
  }
  times.sort((a, b) => a - b);
  console.log(`mesh ring n=12, relay killed, 5% loss: every route back after ${times[0]}–${times[times.length - 1]} ticks ` +
    `(median ${times[times.length >> 1]}; bound ${bound}), seeds 1–20`);
});

// ---- no count-to-infinity -------------------------------------------------------------------------

/** Tracks, per node, the largest finite metric it advertises for `dest` from now on. */
function watchMetrics(sim: MeshSim, dest: number): { max: Map<number, number>; finiteAfter: (tick: number) => number } {
  const max = new Map<number, number>();
  let lastFinite = -1;
  sim.onSend = (from, _to, message: MeshMessage) => {
    if (message.t !== "mesh-update") return;
    for (const [id, , metric] of message.u) {
      if (id !== sim.id(dest) || metric >= INF) continue;
      max.set(from, Math.max(max.get(from) ?? 0, metric));
      lastFinite = sim.now;
    }
  };
  return { max, finiteAfter: (tick) => (lastFinite >= tick ? lastFinite : -1) };
}

test("mesh: no count-to-infinity on a line A–B–C when C dies: retracted, never re-learned, metrics never grow", () => {
  // Lossless bound: B learns at T_detect and retracts at once; A hears it ≤ δmax later.
  // With loss the retraction may be lost, but B never again advertises a finite route to C, so A's
  // route expires at the latest 3.5·U after its last refresh (≤ δmax after the death), found by the
  // next sweep: bound = T_detect + δmax + 3.5·U + sweep = 1,413 + T_detect.
  const detect = 5;
  for (const loss of [0, 0.05]) {
    const seeds = loss === 0 ? [1, 2, 3] : Array.from({ length: 20 }, (_, i) => i + 1);
    const gone: number[] = [];
    for (const seed of seeds) {
      const sim = new MeshSim({ n: 3, seed, loss, detectTicks: detect });
      line(sim);
      assert.ok(sim.run(2 * U, () => sim.converged()), `seed ${seed}: initial convergence`);
      const [A, B, C] = [0, 1, 2];
      const original = new Map([[A, sim.node(A).metric(sim.id(C))], [B, sim.node(B).metric(sim.id(C))]]);
      assert.deepEqual([...original.values()], [2, 1], `seed ${seed}: original metrics`);
      const watch = watchMetrics(sim, C);
      const killedAt = sim.now;
      sim.kill(C);
      const bound = loss === 0 ? detect + DELTA_MAX : detect + DELTA_MAX + EXPIRY + SWEEP;
      const retracted = sim.run(bound, () => sim.node(A).nextHop(sim.id(C)) === undefined && sim.node(B).nextHop(sim.id(C)) === undefined);
      assert.ok(retracted, `seed ${seed} loss ${loss}: route to C not retracted within ${bound} ticks`);
      gone.push(sim.now - killedAt);
      const retractedAt = sim.now;
      // Long after: through the route expiry, the retraction hold and several full dumps.
      sim.run(3 * EXPIRY, () => {
        sim.assertLoopFree();
        assert.equal(sim.node(A).nextHop(sim.id(C)), undefined, `seed ${seed}: A re-learned C at ${sim.now}`);
        assert.equal(sim.node(B).nextHop(sim.id(C)), undefined, `seed ${seed}: B re-learned C at ${sim.now}`);
        return false;
      });
      for (const [node, metric] of watch.max) {
        assert.ok(metric <= (original.get(node) ?? 0), `seed ${seed}: node ${node} advertised C at metric ${metric} > ${original.get(node)}`);
      }
      assert.equal(watch.finiteAfter(retractedAt + DELTA_MAX + 1), -1, `seed ${seed}: a finite route to C was advertised after the retraction`);
      assert.equal(sim.node(A).metric(sim.id(C)), INF);
    }
    console.log(`mesh line A–B–C, C dies, loss ${loss * 100}%: route to C gone everywhere ${Math.min(...gone)}–${Math.max(...gone)} ticks after ` +
      `(T_detect ${detect}; bound ${loss === 0 ? detect + DELTA_MAX : detect + DELTA_MAX + EXPIRY + SWEEP}), no metric above the original`);
  }
});

test("mesh: no count-to-infinity in a loop: a ring of 6 loses its destination", () => {
  // The classic failure of plain distance vector: in a loop, neighbours keep re-learning a dead
  // destination from each other with ever larger metrics. Here every node's advertised metric stays
  // at most what it was, and every route goes within the bound (lossless: the retraction crosses
  // at most N − 2 hops; lossy: each hop may have to wait for the route expiry).
  const n = 6;
  const dest = 0;
  for (const loss of [0, 0.05]) {
    const times: number[] = [];
    for (let seed = 1; seed <= 10; seed++) {
      const sim = new MeshSim({ n, seed, loss });
      ring(sim);
      assert.ok(sim.run(2 * U, () => sim.converged()), `seed ${seed}: initial convergence`);
      const original = new Map<number, number>();
      for (let i = 1; i < n; i++) original.set(i, sim.node(i).metric(sim.id(dest)));
      const watch = watchMetrics(sim, dest);
      const killedAt = sim.now;
      sim.kill(dest);
      const bound = loss === 0 ? (n - 2) * DELTA_MAX : Math.ceil(n / 2) * (DELTA_MAX + EXPIRY + SWEEP);
      const gone = () => sim.nodes.every((m, i) => i === dest || m.nextHop(sim.id(dest)) === undefined);
      assert.ok(sim.run(bound, () => {
        sim.assertLoopFree();
        return gone();
      }), `seed ${seed} loss ${loss}: not every route to the dead node retracted within ${bound} ticks`);
      times.push(sim.now - killedAt);
      sim.run(2 * EXPIRY, () => {
        assert.ok(gone(), `seed ${seed}: a route to the dead node came back at ${sim.now}`);
        return false;
      });
      for (const [node, metric] of watch.max) {
        assert.ok(metric <= (original.get(node) ?? 0), `seed ${seed}: node ${node} advertised ${metric} > ${original.get(node)}`);
      }
    }
    console.log(`mesh ring n=6, destination dies, loss ${loss * 100}%: retracted everywhere after ${Math.min(...times)}–${Math.max(...times)} ticks; ` +
      "no node advertised a metric above its original");
  }
});

// ---- partition and heal -------------------------------------------------------------------------

test("mesh: a partition retracts the routes across it; healing brings them back", () => {
  const n = 12;
  for (const seed of [1, 2, 3]) {
    const sim = new MeshSim({ n, seed, detectTicks: 10 });
    ring(sim);
    assert.ok(sim.run(100, () => sim.converged()), `seed ${seed}: initial convergence`);
    // Two cuts split the ring into {0..5} and {6..11}.
    sim.cut(5, 6);
    sim.cut(11, 0);
    const cutAt = sim.now;
    const loopFreeConverged = () => {
      sim.assertLoopFree();
      return sim.converged();
    };
    assert.ok(sim.run(rerouteBound(n, 10), loopFreeConverged), `seed ${seed}: partition not reflected within ${rerouteBound(n, 10)} ticks`);
    const split = sim.now - cutAt;
    assert.equal(sim.node(0).nextHop(sim.id(6)), undefined, `seed ${seed}: 0 still routes to the other side`);
    assert.equal(sim.send(0, 6, payload("lost")), "no-route");
    assert.equal(sim.node(0).stats.dropNoRoute, 1);
    // Heal through one link only: the routes come back longer than before (0→11 is now 11 hops
    // instead of 1), which the feasibility distances left from before refuse until the
    // destinations raise their seqnos: the seqno requests at work.
    sim.run(50);
    const healAt = sim.now;
    const seqno11 = sim.node(11).seqno;
    sim.restore(5, 6);
    assert.ok(sim.run(rerouteBound(n, 10), loopFreeConverged), `seed ${seed}: not healed within ${rerouteBound(n, 10)} ticks`);
    const healed = sim.now - healAt;
    assert.equal(sim.node(0).metric(sim.id(11)), 11, `seed ${seed}: 0→11 around`);
    sim.send(0, 11, payload("home"));
    sim.run(n * DELTA_MAX);
    assert.deepEqual(sim.delivered(0, 11).map((x) => x.hops), [11], `seed ${seed}: delivered after the heal`);
    assert.ok(seqnoNewer(sim.node(11).seqno, seqno11), `seed ${seed}: node 11 was not asked for a newer seqno`);
    sim.restore(11, 0);
    assert.ok(sim.run(rerouteBound(n, 10), loopFreeConverged), `seed ${seed}: ring not restored`);
    assert.equal(sim.node(0).metric(sim.id(11)), 1);
    if (seed === 1) console.log(`mesh ring n=12 partition (T_detect 10): split reflected after ${split} ticks, healed after ${healed} (bound ${rerouteBound(n, 10)})`);
  }
});

test("mesh: random link failures and repairs on 20 nodes with 5% loss: loop-free at every tick, shortest paths after", () => {
  // 15 random cuts or repairs, 1–60 ticks apart, links sensed after 5 ticks. Loop freedom is checked
  // after every tick (every pair's next-hop chain); once the topology is quiet, every node must
  // route along shortest paths again within 2·U (measured: well under one interval).
  const times: number[] = [];
  for (let seed = 1; seed <= 10; seed++) {
    const sim = new MeshSim({ n: 20, seed, loss: 0.05, detectTicks: 5 });
    const rng = createRng(seed, 77);
    randomGraph(sim, rng, 15, 3);
    assert.ok(sim.run(2 * U, () => sim.converged()), `seed ${seed}: initial convergence`);
    const links = sim.links();
    for (let k = 0; k < 15; k++) {
      const link = links[rng.int(links.length)]!;
      if (sim.linked(link.a, link.b)) sim.cut(link.a, link.b);
      else sim.restore(link.a, link.b);
      sim.run(1 + rng.int(60), () => {
        sim.assertLoopFree();
        return false;
      });
    }
    const quietAt = sim.now;
    const done = sim.run(2 * U, () => {
      sim.assertLoopFree();
      return sim.converged();
    });
    assert.ok(done, `seed ${seed}: not converged within ${2 * U} ticks of the last change`);
    times.push(sim.now - quietAt);
  }
  console.log(`mesh 20 nodes, 15 random link changes, 5% loss: shortest paths everywhere ${Math.min(...times)}–${Math.max(...times)} ticks after the last one (seeds 1–10)`);
});

// ---- bounds -------------------------------------------------------------------------------------

test("mesh: a 200-node random graph converges to shortest paths; updates fit a datagram; tables bounded", () => {
  const seed = 3;
  const n = 200;
  const sim = new MeshSim({ n, seed });
  randomGraph(sim, createRng(seed, 9), 100, 4);
  let converged = false;
  sim.run(2 * U, () => (sim.now % 10 === 0 ? (converged = sim.converged()) : false));
  assert.ok(converged, `seed ${seed}: not converged within ${2 * U} ticks`);
  const convergedAt = sim.now;
  sim.assertLoopFree();
  const degreeMax = Math.max(...sim.nodes.map((m) => m.neighbours().length));
  for (const m of sim.nodes) {
    assert.equal(m.destinationCount, n - 1, `seed ${seed}: ${m.id} holds ${m.destinationCount} destinations`);
    assert.ok(m.routeCount <= (n - 1) * m.neighbours().length, `seed ${seed}: ${m.id} holds ${m.routeCount} routes`);
  }
  const sentAtConvergence = sim.sent;
  sim.run(U);
  const steadyFrom = sim.sent;
  sim.run(2 * U); // steady state: two rounds of full dumps
  // Full dumps only: per node and period, ⌈(1 + routes not through that neighbour)/40⌉ updates
  // per neighbour; periods are drawn in [U − jitter, U], U − jitter/2 on average.
  let dumpMessages = 0;
  for (const m of sim.nodes) {
    for (const nb of m.neighbours()) {
      const entries = 1 + m.routes().filter((r) => r.nextHop !== nb.id).length;
      dumpMessages += Math.ceil(entries / MESH_LIMITS.updateEntriesMax);
    }
  }
  const steady = ((sim.sent - steadyFrom) / (2 * U)) * (U - MESH_DEFAULTS.updateJitterTicks / 2);
  assert.ok(steady <= dumpMessages * 1.1, `steady state ${steady} messages per period, full dumps ${dumpMessages}`);
  const largest = sim.bytesMax["mesh-update"] ?? 0;
  assert.ok(largest <= LIMITS.datagramBytesMax, `largest update ${largest} B`);
  const routesMax = Math.max(...sim.nodes.map((m) => m.routeCount));
  console.log(`mesh random graph n=200 (degree ≤ ${degreeMax}): converged at tick ${convergedAt} with ${sentAtConvergence} messages; ` +
    `steady state ${(steady / n).toFixed(1)} messages per node per period (full dumps alone: ${(dumpMessages / n).toFixed(1)}); ` +
    `largest update ${largest} B with envelope; ≤ ${routesMax} route entries per node`);

  // The same graph with small tables: they stay within their bounds, and what is held routes.
  const small = new MeshSim({ n, seed, config: { destinationsMax: 50, routesMax: 120 } });
  randomGraph(small, createRng(seed, 9), 100, 4);
  small.run(U);
  for (const m of small.nodes) {
    assert.ok(m.destinationCount <= 50 && m.routeCount <= 120, `${m.id}: ${m.destinationCount} destinations, ${m.routeCount} routes`);
  }
  assert.ok(small.nodes.some((m) => m.stats.tableFull > 0), "the bounds were never reached");
});

test("mesh: the largest update and data messages fit a datagram with the kernel's envelope", () => {
  const entries: MeshRouteWire[] = Array.from({ length: MESH_LIMITS.updateEntriesMax }, (_, i) => [meshId(0xfffff - i), 0xffff, INF - 1]);
  const update: MeshMessage = { t: "mesh-update", iv: MESH_LIMITS.intervalTicksMax, n: 0xffff_ffff, q: true, u: entries };
  const data: MeshMessage = { t: "mesh-data", d: [meshId(1), meshId(2), 255, 255, new Uint8Array(MESH_LIMITS.payloadBytesMax).fill(0xff)] };
  const updateBytes = packValue(update).length + ENVELOPE_BYTES;
  const dataBytes = packValue(data).length + ENVELOPE_BYTES;
  console.log(`mesh worst-case datagrams: update of ${MESH_LIMITS.updateEntriesMax} entries ${updateBytes} B, data with a ${MESH_LIMITS.payloadBytesMax}-byte payload ${dataBytes} B`);
  assert.ok(updateBytes <= 1040, `update ${updateBytes} B (documented bound 1,040)`);
  assert.ok(dataBytes <= 1125, `data ${dataBytes} B (documented bound 1,125)`);
  assert.ok(validateMesh(unpackValue(packValue(update))).ok);
  assert.ok(validateMesh(unpackValue(packValue(data))).ok);
  assert.equal(validateMesh(unpackValue(packValue({ ...update, u: [...entries, entries[0]] }))).ok, false, "41 entries refused");
  // A full dump of many destinations goes out in chunks of updateEntriesMax.
  const mesh = new Mesh(meshId(0), createRng(1), MESH_DEFAULTS);
  mesh.linkUp(meshId(1), 1);
  mesh.linkUp(meshId(2), 1);
  const routes: MeshRouteWire[] = Array.from({ length: 100 }, (_, i) => [meshId(100 + i), 7, 3]);
  for (let i = 0; i < routes.length; i += 40) mesh.step(meshId(1), { t: "mesh-update", iv: 400, n: i, q: false, u: routes.slice(i, i + 40) });
  mesh.ready();
  mesh.linkDown(meshId(2));
  mesh.linkUp(meshId(2), 1);
  mesh.tick();
  const dump = mesh.ready().messages.filter((m) => m.to === meshId(2));
  assert.deepEqual(dump.map((m) => (m.message.t === "mesh-update" ? m.message.u.length : -1)), [40, 40, 21], "self + 100 routes in 3 updates");
});

// ---- the core on its own ----------------------------------------------------------------------------

test("mesh: data without a route or past its hop limit is dropped and counted; oversize refused", () => {
  const a = new Mesh(meshId(0), createRng(1), { ...MESH_DEFAULTS, ttl: 2 });
  assert.equal(a.send(meshId(9), payload("x")), "no-route");
  assert.equal(a.stats.dropNoRoute, 1);
  assert.equal(a.send(meshId(9), new Uint8Array(MESH_LIMITS.payloadBytesMax + 1)), "too-large");
  assert.equal(a.send(meshId(0), payload("me")), "delivered");
  // A relay with a route forwards with ttl − 1; at ttl 1 it drops.
  const relay = new Mesh(meshId(1), createRng(2), MESH_DEFAULTS);
  relay.linkUp(meshId(2), 1);
  relay.step(meshId(2), { t: "mesh-update", iv: 400, n: 1, q: false, u: [[meshId(2), 5, 0], [meshId(3), 5, 1]] });
  relay.ready();
  relay.step(meshId(0), { t: "mesh-data", d: [meshId(0), meshId(3), 2, 0, payload("p")] });
  const out = relay.ready().messages;
  assert.deepEqual(out.map((m) => [m.to, m.message.t === "mesh-data" ? m.message.d.slice(0, 4) : undefined]), [[meshId(2), [meshId(0), meshId(3), 1, 1]]]);
  relay.step(meshId(0), { t: "mesh-data", d: [meshId(0), meshId(3), 1, 0, payload("p")] });
  assert.equal(relay.ready().messages.length, 0);
  assert.equal(relay.stats.dropTtl, 1);
  relay.step(meshId(0), { t: "mesh-data", d: [meshId(0), meshId(8), 5, 0, payload("p")] });
  assert.equal(relay.stats.dropNoRoute, 1);
});

test("mesh: updates from non-neighbours are ignored; an overtaken update is stale", () => {
  const m = new Mesh(meshId(0), createRng(1), MESH_DEFAULTS);
  m.step(meshId(5), { t: "mesh-update", iv: 400, n: 1, q: false, u: [[meshId(5), 1, 0]] });
  assert.equal(m.stats.notNeighbour, 1);
  assert.equal(m.nextHop(meshId(5)), undefined);
  m.linkUp(meshId(1), 1);
  m.step(meshId(1), { t: "mesh-update", iv: 400, n: 10, q: false, u: [[meshId(7), 3, 2]] });
  assert.equal(m.metric(meshId(7)), 3);
  // A retraction sent before (n = 9) and delivered after: ignored.
  m.step(meshId(1), { t: "mesh-update", iv: 400, n: 9, q: false, u: [[meshId(7), 3, INF]] });
  assert.equal(m.stats.stale, 1);
  assert.equal(m.nextHop(meshId(7)), meshId(1));
  // The real retraction (n = 11), then the finite update it overtook (n = 10 again): stays retracted.
  m.step(meshId(1), { t: "mesh-update", iv: 400, n: 11, q: false, u: [[meshId(7), 3, INF]] });
  assert.equal(m.nextHop(meshId(7)), undefined);
  m.step(meshId(1), { t: "mesh-update", iv: 400, n: 10, q: false, u: [[meshId(7), 3, 2]] });
  assert.equal(m.nextHop(meshId(7)), undefined);
});

test("mesh: a destination asked for a newer seqno raises it; a restarted node moves past its old seqno", () => {
  const m = new Mesh(meshId(0), createRng(1), MESH_DEFAULTS, { seqno: 100 });
  m.linkUp(meshId(1), 1);
  m.tick();
  m.ready();
  m.step(meshId(1), { t: "mesh-req", r: [meshId(0), 105, 10] });
  assert.equal(m.seqno, 105);
  m.tick();
  const sent = m.ready().messages.flatMap((o) => (o.message.t === "mesh-update" ? o.message.u : []));
  assert.ok(sent.some(([id, seqno, metric]) => id === meshId(0) && seqno === 105 && metric === 0), "the new seqno goes out at once");
  // Our own route echoed with a seqno above ours (a previous life): jump past it.
  m.step(meshId(1), { t: "mesh-update", iv: 400, n: 1, q: false, u: [[meshId(0), 300, 2]] });
  assert.equal(m.seqno, 301);
});

// ---- hostile bytes --------------------------------------------------------------------------------

test("mesh wire: validation is total on random and mutated bytes, and a core takes any valid message", () => {
  const valid = packValue({ t: "mesh-update", iv: 400, n: 7, q: false, u: [[meshId(1), 5, 2], [meshId(2), 65535, 65535]] });
  const data = packValue({ t: "mesh-data", d: [meshId(1), meshId(2), 64, 3, new Uint8Array([1, 2, 3])] });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
    validateMesh(unpackValue(bytes));
  }), { numRuns: 20_000 });
  for (const base of [valid, data]) {
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(base.length), (flips, cut) => {
      const mutated = base.slice(0, Math.max(1, cut));
      for (const [i, v] of flips) if (i < mutated.length) mutated[i] = v;
      const result = validateMesh(unpackValue(mutated));
      if (result.ok) assert.ok(result.message.t.startsWith("mesh-"));
    }), { numRuns: 20_000 });
  }
  const bad: unknown[] = [
    { t: "mesh-update", iv: 0, n: 1, q: false, u: [] },
    { t: "mesh-update", iv: 400, n: -1, q: false, u: [] },
    { t: "mesh-update", iv: 400, n: 1, q: false, u: [["XYZ", 1, 1]] },
    { t: "mesh-update", iv: 400, n: 1, q: false, u: [[meshId(1), 70000, 1]] },
    { t: "mesh-req", r: [meshId(1), 1, 0] },
    { t: "mesh-data", d: [meshId(1), meshId(2), 0, 0, new Uint8Array(1)] },
    { t: "mesh-data", d: [meshId(1), meshId(2), 1, 0, new Uint8Array(MESH_LIMITS.payloadBytesMax + 1)] },
    { t: "swim-gossip", updates: [] },
    [1, 2],
    null,
  ];
  for (const value of bad) assert.equal(validateMesh(unpackValue(packValue(value))).ok, false, JSON.stringify(value));

  // Any sequence of valid messages from neighbours and strangers, interleaved with ticks and link
  // changes, leaves a core consistent and within its bounds.
  const id = fc.integer({ min: 0, max: 7 }).map(meshId);
  const route = fc.tuple(id, fc.integer({ min: 0, max: 0xffff }), fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constant(INF), fc.integer({ min: 0, max: INF })));
  const message = fc.oneof(
    fc.record({ t: fc.constant("mesh-update" as const), iv: fc.integer({ min: 1, max: 0xffff }), n: fc.nat(0xffff_ffff), q: fc.boolean(), u: fc.array(route, { maxLength: 40 }) }),
    fc.record({ t: fc.constant("mesh-req" as const), r: fc.tuple(id, fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 1, max: 255 })) }),
    fc.record({ t: fc.constant("mesh-data" as const), d: fc.tuple(id, id, fc.integer({ min: 1, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 16 })) }),
  );
  const action = fc.oneof(
    fc.tuple(fc.constant("step" as const), id, message),
    fc.tuple(fc.constant("tick" as const), fc.integer({ min: 1, max: 500 })),
    fc.tuple(fc.constant("up" as const), id, fc.integer({ min: 1, max: 10 })),
    fc.tuple(fc.constant("down" as const), id),
  );
  fc.assert(fc.property(fc.array(action, { maxLength: 60 }), fc.integer(), (actions, seed) => {
    const m = new Mesh(meshId(0), createRng(seed), { ...MESH_DEFAULTS, destinationsMax: 4, routesMax: 6 });
    for (const a of actions) {
      if (a[0] === "step") {
        assert.ok(validateMesh(unpackValue(packValue(a[2]))).ok);
        m.step(a[1], a[2]);
      } else if (a[0] === "tick") {
        for (let t = 0; t < a[1]; t++) m.tick();
      } else if (a[0] === "up") {
        m.linkUp(a[1], a[2]);
      } else {
        m.linkDown(a[1]);
      }
      for (const out of m.ready().messages) {
        assert.ok(packValue(out.message).length + ENVELOPE_BYTES <= LIMITS.datagramBytesMax);
        assert.ok(validateMesh(unpackValue(packValue(out.message))).ok, JSON.stringify(out.message));
      }
      assert.ok(m.destinationCount <= 4 && m.routeCount <= 6);
      for (const view of m.routes()) {
        if (view.nextHop !== undefined) assert.ok(m.neighbours().some((x) => x.id === view.nextHop), "next hop is a neighbour");
      }
    }
  }), { numRuns: 500 });
});
