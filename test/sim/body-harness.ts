// Helpers for the Body layer's simulator tests (body.test.ts, body.slow.test.ts).
import type { SimCluster } from "../../src/sim/cluster.ts";
import type { KernelEvent } from "../../src/node/events.ts";

export const PROBE_TICKS = 100;

/** Every event of every node, with the node's index, from now on. */
export function record(cluster: SimCluster): Array<{ node: number; event: KernelEvent }> {
  const out: Array<{ node: number; event: KernelEvent }> = [];
  for (const node of cluster.nodes) node.kernel.events.subscribe((event) => out.push({ node: node.index, event }));
  return out;
}

/** The SWIM state of node `subject` as node `observer` sees it. */
export function stateAt(cluster: SimCluster, observer: number, subject: number): string | undefined {
  const id = cluster.nodes[subject]?.kernel.id ?? "";
  return cluster.nodes[observer]?.kernel.swim.member(id)?.state;
}

/** Ticks until `done` holds, at most `limit` ticks; returns the ticks it took, or −1. */
export function runUntil(cluster: SimCluster, limit: number, done: () => boolean): number {
  for (let i = 0; i < limit; i++) {
    if (done()) return i;
    cluster.tick();
  }
  return done() ? limit : -1;
}

/** The indexes of the live nodes running a guarded task. */
export function runners(cluster: SimCluster): number[] {
  return cluster.nodes.filter((n) => n.alive && n.kernel.guardStatuses().some((s) => s.running !== undefined)).map((n) => n.index);
}
