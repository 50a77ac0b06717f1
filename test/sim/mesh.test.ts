// Mesh routing inside whole kernels in the simulator (issue 5, mesh): the node picks its own links,
// a member it cannot reach directly is reached through a relay (`route ping` over two hops), the
// route table shows the relay, and when the relay dies the traffic moves to another one within the
// stated bound. The core's own topologies (lines, rings, count-to-infinity) are test/core/mesh.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimCluster } from "../../src/sim/cluster.ts";
import type { EchoResult } from "../../src/node/collective/mesh.ts";

function runUntil(c: SimCluster, ticks: number, check: () => boolean): number {
  for (let i = 0; i < ticks; i++) {
    if (check()) return i;
    c.tick();
  }
  assert.fail(`condition not reached within ${ticks} ticks`);
}

/** An echo through the mesh from node `from` to node `to`; ticks the cluster until it answers. */
function ping(c: SimCluster, from: number, to: number): EchoResult {
  let result: EchoResult | undefined;
  c.nodes[from]!.kernel.mesh.echo(c.nodes[to]!.kernel.id, 300, (r) => { result = r; });
  runUntil(c, 400, () => result !== undefined);
  return result!;
}

function cut(c: SimCluster, a: number, b: number): void {
  c.network.block(c.nodes[a]!.address, c.nodes[b]!.address);
  c.network.block(c.nodes[b]!.address, c.nodes[a]!.address);
}

test("mesh in the kernel: a member with no direct link is reached through a relay, and the relay shows in the table", () => {
  const c = new SimCluster({ nodes: 3, seed: 31 });
  runUntil(c, 3_000, () => c.nodes.every((n) => n.kernel.swim.size === 3));
  cut(c, 0, 2);
  const [a, b, cc] = c.nodes.map((n) => n.kernel);
  // SWIM keeps node 2 alive at node 0 through indirect probes; the mesh finds the path through node 1.
  runUntil(c, 3_000, () => a!.mesh.core.nextHop(cc!.id) === b!.id && a!.mesh.core.metric(cc!.id) === 2);
  const echo = ping(c, 0, 2);
  assert.equal(echo.ok, true, echo.error);
  assert.equal(echo.hops, 2, "the request went through the relay");
  assert.ok(b!.mesh.stats.dataForwarded >= 2, "the relay forwarded the request and the reply");
  // The link to the unreachable member was tried and given up (no mesh message ever came back).
  runUntil(c, 2_000, () => !a!.mesh.links().some((l) => l.id === cc!.id));
  assert.equal(a!.swim.stateOf(cc!.id), "alive");
  // The shell shows it.
  const shown = c.nodes[0]!.kernel.mesh.routes().find((r) => r.destination === cc!.id);
  assert.equal(shown?.nextHop, b!.id);
});

test("mesh in the kernel: killing the relay moves the route to another relay within the bound", () => {
  const c = new SimCluster({ nodes: 4, seed: 32 });
  runUntil(c, 3_000, () => c.nodes.every((n) => n.kernel.swim.size === 4));
  cut(c, 0, 3);
  const k = c.nodes.map((n) => n.kernel);
  runUntil(c, 3_000, () => k[0]!.mesh.core.metric(k[3]!.id) === 2);
  const relay = k[0]!.mesh.core.nextHop(k[3]!.id)!;
  const relayIndex = k.findIndex((n) => n.id === relay);
  const other = relayIndex === 1 ? 2 : 1;
  assert.ok(relayIndex === 1 || relayIndex === 2);
  assert.equal(ping(c, 0, 3).ok, true);
  c.crash(relayIndex);
  // Bound: SWIM's detection (suspect then dead) plus the mesh's part, a few update rounds; the
  // route through the survivor also comes by a seqno request or the next full dump (≤ 4 s).
  // Each end reroutes when its own SWIM declares the relay dead, and the echo's reply comes back
  // the other way: wait for both directions (the ends detect at different ticks).
  const dead = runUntil(c, 3_000, () => k[0]!.swim.stateOf(relay) === "dead" && k[3]!.swim.stateOf(relay) === "dead");
  const moved = runUntil(c, 1_000, () => k[0]!.mesh.core.nextHop(k[3]!.id) === k[other]!.id && k[3]!.mesh.core.nextHop(k[0]!.id) === k[other]!.id);
  const echo = ping(c, 0, 3);
  assert.equal(echo.ok, true, echo.error);
  assert.equal(echo.hops, 2);
  console.log(`relay ${relayIndex} killed: dead at both ends after ${dead} ticks, rerouted ${moved} ticks later`);
});
