// The commit path of the consensus store (docs/adr/023-commit-path.md) inside whole kernels in the
// simulator: one durable write per batch of entries (a commit index that moved alone is not
// fsynced), and a node restarted with a stored commit index behind what it applied keeps every
// configuration it applied (the configuration-rollback regression of raft-lin seeds 7/5, 56/3…).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimCluster } from "../../src/sim/cluster.ts";
import { SimStore } from "../../src/sim/disk.ts";
import { KERNEL_DEFAULTS } from "../../src/node/kernel.ts";
import type { KvOutcome } from "../../src/node/collective/consensus.ts";
import { unpackValue } from "../../src/core/wire/codec.ts";
import { describeConfState } from "../../src/core/collective/raft/confchange.ts";

const utf8 = new TextEncoder();

function cluster(nodes: number, seed: number): SimCluster {
  return new SimCluster({ nodes, seed, kernel: { consensus: { ...KERNEL_DEFAULTS.consensus } } });
}

function leaderIndex(c: SimCluster): number {
  return c.nodes.findIndex((n) => n.alive && n.kernel.consensus.isLeader);
}

function runUntil(c: SimCluster, ticks: number, check: () => boolean): number {
  for (let i = 0; i < ticks; i++) {
    if (check()) return i;
    c.tick();
  }
  assert.fail(`condition not reached within ${ticks} ticks`);
}

function formed(c: SimCluster): boolean {
  const lead = leaderIndex(c);
  if (lead < 0) return false;
  const conf = c.nodes[lead]!.kernel.consensus.status().conf;
  return conf.voters.length === c.nodes.length && conf.votersOutgoing.length === 0
    && c.nodes.every((n) => n.kernel.consensus.status().applied === c.nodes[lead]!.kernel.consensus.status().commit);
}

test("commit path: one durable write per entry on every node, not two (the commit index rides along)", (t) => {
  const c = cluster(3, 21);
  runUntil(c, 3_000, () => formed(c));
  const lead = leaderIndex(c);
  const before = c.nodes.map((n) => ({ ...n.kernel.consensus.stats }));
  const writes = 100;
  for (let i = 0; i < writes; i++) {
    // One write at a time, as a single client would: no batching can hide a second fsync.
    let outcome: KvOutcome | undefined;
    c.nodes[lead]!.kernel.kvPut(`k${i}`, utf8.encode(`v${i}`), (o) => (outcome = o));
    runUntil(c, 200, () => outcome !== undefined);
    assert.equal(outcome!.code, "ok", `write ${i}`);
  }
  // Let the last commit reach the followers.
  runUntil(c, 200, () => c.nodes.every((n) => n.kernel.consensus.kv.get(`k${writes - 1}`) !== undefined));
  const perEntry = c.nodes.map((n, i) => {
    const entries = n.kernel.consensus.stats.persistedEntries - before[i]!.persistedEntries;
    const fsyncs = n.kernel.consensus.stats.fsyncs - before[i]!.fsyncs;
    assert.ok(entries >= writes, `node ${i} persisted the ${writes} entries (${entries})`);
    return fsyncs / entries;
  });
  t.diagnostic(`fsyncs per entry, one write at a time: ${perEntry.map((x) => x.toFixed(2)).join(", ")} (leader node ${lead})`);
  // Writing the commit index whenever it moved cost about 2 per entry on every node.
  for (const [i, x] of perEntry.entries()) assert.ok(x <= 1.1, `node ${i}: ${x.toFixed(2)} fsyncs per entry`);
});

test("commit path: a voter restarted with a stored commit index behind its last applied configuration keeps that configuration", (t) => {
  let checked = 0;
  for (const seed of [31, 32, 33, 34, 35, 36]) {
    const c = cluster(3, seed);
    runUntil(c, 3_000, () => formed(c));
    // Every node applied the whole configuration history (learners, promotions, the joint state and
    // its leaving). Power loss on each node in turn, then a look at what its disk kept.
    for (const victim of [0, 1, 2]) {
      const applied = describeConfState(c.nodes[victim]!.kernel.consensus.status().conf);
      c.crash(victim);
      const disk = SimStore.recover(c.nodes[victim]!.disk);
      const hard = unpackValue(disk.get("raft/hard")!) as [number, string, number];
      const conf = unpackValue(disk.get("raft/conf")!) as [number];
      disk.close();
      c.restart(victim);
      // Restored from the disk alone, before any message: the configuration it had applied.
      assert.equal(describeConfState(c.nodes[victim]!.kernel.consensus.status().conf), applied, `seed ${seed} node ${victim}`);
      if (hard[2] < conf[0]) checked++;
      runUntil(c, 2_000, () => formed(c));
    }
  }
  // The case that matters happened: the stored commit index was behind the last configuration
  // entry applied (a commit index that moved alone is not written), so the configuration came back
  // from raft/conf, not from the commit index.
  t.diagnostic(`${checked} restarts with the stored commit index behind the last applied configuration entry`);
  assert.ok(checked > 0, "no restart found its stored commit index behind its last applied configuration");
});
