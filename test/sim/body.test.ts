// The Body layer in the cluster simulator, on the real kernel: SWIM wired in (death detected and
// spread, no false deaths under stalls and loss, asymmetric partitions), degrade's mode events,
// heal's guarded tasks (adopted once after a crash, one copy after a partition heals) and persist
// (state restored from the simulated disk before any traffic). Fixed seeds; a failure names its seed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimCluster } from "../../src/sim/cluster.ts";
import type { KernelEvent } from "../../src/node/events.ts";

const PROBE_TICKS = 100;

/** Every event of every node, with the node's index, from now on. */
function record(cluster: SimCluster): Array<{ node: number; event: KernelEvent }> {
  const out: Array<{ node: number; event: KernelEvent }> = [];
  for (const node of cluster.nodes) node.kernel.events.subscribe((event) => out.push({ node: node.index, event }));
  return out;
}

function stateAt(cluster: SimCluster, observer: number, subject: number): string | undefined {
  const id = cluster.nodes[subject]?.kernel.id ?? "";
  return cluster.nodes[observer]?.kernel.swim.member(id)?.state;
}

function runUntil(cluster: SimCluster, limit: number, done: () => boolean): number {
  for (let i = 0; i < limit; i++) {
    if (done()) return i;
    cluster.tick();
  }
  return done() ? limit : -1;
}

test("swim in the kernel: a crashed member is suspected, then dead at every survivor", () => {
  const firsts: number[] = [];
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const cluster = new SimCluster({ nodes: 10, seed, faults: "none" });
    cluster.run(1500);
    assert.notEqual(cluster.result().convergedAtTick, null, `seed ${seed}: not converged`);
    const events = record(cluster);
    const victim = cluster.nodes[7]?.kernel.id;
    const crashedAt = cluster.now;
    cluster.crash(7);
    const took = runUntil(cluster, 6000, () => cluster.nodes.every((n) => n.index === 7 || stateAt(cluster, n.index, 7) === "dead"));
    assert.ok(took >= 0, `seed ${seed}: the crash was not declared everywhere`);
    const suspected = events.find((e) => e.event.type === "member-suspect" && e.event.data["id"] === victim);
    assert.ok(suspected !== undefined, `seed ${seed}: never suspected`);
    // Nodes never restarted tick in step with the cluster, so event ticks are cluster ticks.
    firsts.push((suspected.event.tick - crashedAt) / PROBE_TICKS);
    // No one else was suspected for long enough to die.
    assert.equal(events.filter((e) => e.event.type === "member-dead" && e.event.data["id"] !== victim).length, 0, `seed ${seed}: false death`);
    assert.equal(cluster.nodes[0]?.kernel.mode, "FULL");
  }
  const mean = firsts.reduce((a, b) => a + b, 0) / firsts.length;
  assert.ok(mean < 3, `first suspicion after ${mean.toFixed(2)} probe periods on average`);
});

test("degrade: FULL → REDUCED → SOLO as members die, FULL again when they return, each change an event", () => {
  const cluster = new SimCluster({ nodes: 3, seed: 40, faults: "none" });
  cluster.run(800);
  const node0 = cluster.nodes[0]?.kernel;
  assert.ok(node0 !== undefined);
  assert.equal(node0.mode, "FULL");
  const events = record(cluster);
  cluster.crash(2);
  assert.ok(runUntil(cluster, 8000, () => node0.mode === "REDUCED") >= 0, "REDUCED after one death");
  cluster.crash(1);
  assert.ok(runUntil(cluster, 8000, () => node0.mode === "SOLO") >= 0, "SOLO after two");
  cluster.restart(1);
  cluster.restart(2);
  assert.ok(runUntil(cluster, 8000, () => node0.mode === "FULL") >= 0, "FULL once both are back");
  const changes = events.filter((e) => e.node === 0 && e.event.type === "mode-changed").map((e) => e.event.data["mode"]);
  assert.deepEqual(changes.slice(0, 2), ["REDUCED", "SOLO"]);
  assert.equal(changes[changes.length - 1], "FULL");
  assert.deepEqual(node0.modeHistory.map((c) => c.mode).slice(-changes.length), changes, "`degrade` shows the same changes");
});

test("swim: stalled nodes (2 probe periods, once a minute) and 10% loss give no false death in a simulated hour (n = 100)", { timeout: 600_000 }, () => {
  const seed = 77;
  const cluster = new SimCluster({
    nodes: 100, seed, faults: "none", clockSkew: false,
    // Vital signs are not what this test is about: one round a minute keeps the run short.
    kernel: { vital: { periodTicks: 6000, fanout: 4, historyMax: 10 } },
  });
  cluster.run(3000);
  assert.notEqual(cluster.result().convergedAtTick, null, `seed ${seed}: not converged`);
  cluster.network.setFaults({ lossRate: 0.1 });
  const events = record(cluster);
  const hour = 360_000;
  const stallers = [3, 31, 59, 87];
  for (let t = 0; t < hour; t += 100) {
    // Each staller freezes for two probe periods once a minute, at its own offset.
    for (const [k, index] of stallers.entries()) {
      if ((t + k * 1500) % 6000 === 0) cluster.stall(index, 2 * PROBE_TICKS);
    }
    cluster.run(100);
  }
  const deaths = events.filter((e) => e.event.type === "member-dead");
  const suspicions = events.filter((e) => e.event.type === "member-suspect").length;
  const refutations = events.filter((e) => e.event.type === "member-refuted" && e.event.data["id"] === cluster.nodes[e.node]?.kernel.id).length;
  process.stdout.write(`# seed ${seed}: 1 simulated hour, n=100, 10% loss, ${stallers.length} stallers: suspicions ${suspicions}, refutations ${refutations}, deaths ${deaths.length}\n`);
  assert.equal(deaths.length, 0, `seed ${seed}: false deaths: ${JSON.stringify(deaths.slice(0, 5))}`);
  for (const node of cluster.nodes) assert.equal(node.kernel.swim.size, 100, `seed ${seed}: node ${node.index} lost members`);
});

test("swim: an asymmetric partition (nodes that can hear but not speak) does not kill the healthy side", () => {
  for (const seed of [51, 52]) {
    const cluster = new SimCluster({ nodes: 12, seed, faults: "none" });
    cluster.run(1500);
    const events = record(cluster);
    const mute = [9, 10, 11];
    const healthy = cluster.nodes.filter((n) => !mute.includes(n.index));
    for (const m of mute) for (const other of cluster.nodes) if (other.index !== m) cluster.network.block(cluster.nodes[m]?.address ?? "", other.address);
    cluster.run(6000);
    for (const observer of healthy) {
      for (const subject of healthy) {
        if (observer === subject) continue;
        assert.equal(stateAt(cluster, observer.index, subject.index), "alive", `seed ${seed}: ${observer.index} sees ${subject.index} as not alive`);
      }
      for (const m of mute) assert.equal(stateAt(cluster, observer.index, m), "dead", `seed ${seed}: mute node ${m} is not dead at ${observer.index}`);
    }
    const healthyIds = new Set(healthy.map((n) => n.kernel.id));
    const falseDeaths = events.filter((e) => e.event.type === "member-dead" && healthyIds.has(e.event.data["id"] as string) && healthyIds.has(cluster.nodes[e.node]?.kernel.id ?? ""));
    assert.equal(falseDeaths.length, 0, `seed ${seed}`);
  }
});

test("heal: after the owner crashes, exactly one survivor runs the guarded task, promptly", () => {
  for (const seed of [61, 62, 63]) {
    const cluster = new SimCluster({ nodes: 5, seed, faults: "lossy" });
    cluster.run(1500);
    const owner = cluster.nodes[3]?.kernel;
    assert.ok(owner !== undefined);
    assert.equal(owner.guard("beat", "ver", 50), undefined);
    cluster.run(300);
    for (const node of cluster.nodes) assert.equal(node.kernel.heal.get("beat")?.owner, owner.id, `seed ${seed}: replicated to ${node.index}`);
    assert.deepEqual(runners(cluster), [3]);
    const events = record(cluster);
    cluster.crash(3);
    const survivors = cluster.nodes.filter((n) => n.index !== 3);
    assert.ok(runUntil(cluster, 8000, () => survivors.every((n) => stateAt(cluster, n.index, 3) === "dead")) >= 0, `seed ${seed}`);
    const firstDead = events.find((e) => e.event.type === "member-dead")?.event.tick ?? 0;
    const startedAt = events.find((e) => e.event.type === "guard-started")?.event.tick;
    assert.ok(startedAt !== undefined, `seed ${seed}: nobody adopted`);
    assert.ok(startedAt - firstDead <= 100, `seed ${seed}: adopted ${startedAt - firstDead} ticks after the first dead`);
    cluster.run(500);
    const running = runners(cluster);
    assert.equal(running.length, 1, `seed ${seed}: runners ${JSON.stringify(running)}`);
    const epochs = new Set(survivors.map((n) => n.kernel.heal.get("beat")?.epoch));
    assert.equal(epochs.size, 1, `seed ${seed}: every survivor agrees on the epoch`);
  }
});

test("heal: when a partition heals, exactly one copy keeps running", () => {
  for (const seed of [71, 72]) {
    const cluster = new SimCluster({ nodes: 6, seed, faults: "none" });
    cluster.run(1500);
    assert.equal(cluster.nodes[1]?.kernel.guard("job", "ver", 100), undefined);
    cluster.run(300);
    const addresses = cluster.nodes.map((n) => n.address);
    // Node 1 (the owner) ends up on the small side; the other side declares it dead and adopts.
    cluster.network.partition(addresses.slice(0, 2), addresses.slice(2));
    cluster.run(8000);
    const during = runners(cluster);
    assert.equal(during.length, 2, `seed ${seed}: one copy per side during the partition: ${JSON.stringify(during)}`);
    cluster.network.heal();
    cluster.run(6000);
    assert.equal(runners(cluster).length, 1, `seed ${seed}: copies after the heal: ${JSON.stringify(runners(cluster))}`);
    const records = new Set(cluster.nodes.map((n) => JSON.stringify(n.kernel.heal.get("job"))));
    assert.equal(records.size, 1, `seed ${seed}: every node holds the same record`);
  }
});

test("persist: a restarted node restores members, guarded tasks and vitals before any traffic, and refutes its stale death", () => {
  const cluster = new SimCluster({ nodes: 4, seed: 90, faults: "none" });
  cluster.run(1500);
  const node = cluster.nodes[2];
  assert.ok(node !== undefined);
  assert.equal(cluster.nodes[0]?.kernel.guard("keep", "ver", 100), undefined);
  cluster.run(1500);
  const incarnation = node.kernel.self.incarnation;
  cluster.crash(2);
  assert.ok(runUntil(cluster, 8000, () => stateAt(cluster, 0, 2) === "dead") >= 0);
  // Boot it but hold its network: what it knows now came from the disk alone.
  cluster.network.partition([node.address], cluster.nodes.filter((n) => n !== node).map((n) => n.address));
  cluster.restart(2);
  const kernel = node.kernel;
  assert.equal(kernel.self.incarnation, incarnation + 1);
  assert.equal(kernel.swim.size, 4, "members restored from the store");
  assert.equal(kernel.heal.get("keep")?.owner, cluster.nodes[0]?.kernel.id, "guarded task restored (durable)");
  assert.ok(kernel.vitals.history().length > 0, "vitals window restored");
  cluster.network.heal();
  assert.ok(runUntil(cluster, 6000, () => cluster.nodes.every((n) => n === node || stateAt(cluster, n.index, 2) === "alive")) >= 0, "back alive everywhere");
  for (const other of cluster.nodes) {
    if (other === node) continue;
    assert.ok((other.kernel.swim.member(kernel.id)?.entry.incarnation ?? 0) >= incarnation + 1);
  }
});

function runners(cluster: SimCluster): number[] {
  return cluster.nodes.filter((n) => n.alive && n.kernel.guardStatuses().some((s) => s.running !== undefined)).map((n) => n.index);
}
