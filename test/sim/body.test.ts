// The Body layer in the cluster simulator, on the real kernel: SWIM wired in (death detected and
// spread, no false deaths under asymmetric partitions), degrade's mode events, heal's guarded tasks
// (adopted once after a crash) and persist (state restored from the simulated disk before any
// traffic). The long runs (a simulated hour with stalls, a partition healing) are
// body.slow.test.ts. Fixed seeds; a failure names its seed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimCluster } from "../../src/sim/cluster.ts";
import { PROBE_TICKS, record, runners, runUntil, stateAt } from "./body-harness.ts";

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
