// How raft-lin tests name a failing seed: the verdict, the history excerpt, the nemesis and the
// command that replays the run exactly. Shared by raft-lin.test.ts and raft-lin-seeds.slow.test.ts.
import type { RaftLinResult } from "../../src/sim/raft-lin.ts";

export function replay(r: RaftLinResult): string {
  return `pk sim --scenario raft-lin --nodes ${r.nodes} --seed ${r.seed} --ticks ${r.ticks}`;
}

export function explain(r: RaftLinResult): string {
  const f = r.failure;
  if (f === undefined) return `seed ${r.seed}: ok`;
  return [`seed ${r.seed} (${r.nodes} nodes) FAILED, ${f.kind}: ${f.detail}`, ...(f.excerpt ?? []), "nemesis:", ...(f.nemesis ?? []).map((l) => `  ${l}`),
    `replay: ${replay(r)}`].join("\n");
}
