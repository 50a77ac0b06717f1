// `npm run bench -- dmn [--seconds S] [--pairs P] [--rate R] [--memories M]`: does the Default Mode
// Network's idle work show in the foreground's latency? (issue 14, acceptance 5.) Three real nodes
// (node 1 with a local model of fixed latency, for summaries), the memory seeded with M memories
// (a fifth of them near-duplicates, for consolidation), PK_DMN_EVERY_MS=2000 so the DMN keeps
// working through a run. Then P pairs of phases of S seconds, DMN off and on in alternating order:
// in each, every node takes a light foreground load of R requests/s (under the DMN's idle bound of
// 2/s, or it would stand aside) alternating POST /v1/infer and PUT /v1/kv; the latency of each is
// summarised per phase kind, with the DMN work done during the "on" phases (jobs by outcome).
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { Workspace } from "./procs.ts";
import { request, shell, startSelfCluster, summary, type SelfCluster } from "./self-cluster.ts";

const TOPICS = ["the backup", "the garage Pi", "piano lessons", "the wifi", "the solar panels", "grandma's visit", "the car service", "the compost", "the router", "the cat's vet"];

async function seed(cluster: SelfCluster, memories: number): Promise<void> {
  const api = cluster.nodes[0]!.api;
  for (let i = 0; i < memories; i++) {
    const topic = TOPICS[i % TOPICS.length]!;
    // A fifth repeat an earlier memory almost word for word: the consolidation's work.
    const text = i % 5 === 4 ? `note ${i - 1}: ${TOPICS[(i - 1) % TOPICS.length]} needs attention on day ${(i - 1) % 28}` : `note ${i}: ${topic} needs attention on day ${i % 28}`;
    const { status } = await request(cluster, api, "POST", "/v1/memory", { text, speaker: `user${i % 4}` });
    if (status !== 201) throw new Error(`seeding memory ${i}: HTTP ${status}`);
  }
}

async function dmnJobs(cluster: SelfCluster): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const node of cluster.nodes) {
    const response = await fetch(`${node.api}/metrics`, { headers: { Authorization: `Bearer ${cluster.token}` } });
    for (const line of (await response.text()).split("\n")) {
      const m = /^pk_dmn_jobs_total\{job="(\w+)",outcome="(\w+)"\} (\d+)/.exec(line);
      if (m !== null) out[`${m[1]}.${m[2]}`] = (out[`${m[1]}.${m[2]}`] ?? 0) + Number(m[3]);
      const busy = /^pk_dmn_busy_seconds_total ([\d.e+-]+)/.exec(line);
      if (busy !== null) out["busySeconds"] = (out["busySeconds"] ?? 0) + Number(busy[1]);
      const longest = /^pk_dmn_longest_slice_seconds ([\d.e+-]+)/.exec(line);
      if (longest !== null) out["longestSliceMs"] = Math.max(out["longestSliceMs"] ?? 0, Math.round(Number(longest[1]) * 1e4) / 10);
    }
  }
  return out;
}

/** One phase: every node gets `rate` requests/s for `seconds`, alternating infer and kv. */
async function phase(cluster: SelfCluster, seconds: number, rate: number, salt: string): Promise<{ infer: number[]; kv: number[]; failed: number }> {
  const infer: number[] = [];
  const kv: number[] = [];
  let failed = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(cluster.nodes.map(async (node, n) => {
    let i = 0;
    while (performance.now() < end) {
      const next = performance.now() + (1000 / rate) * (0.5 + Math.random());
      try {
        if (i % 2 === 0) {
          const r = await request(cluster, node.api, "POST", "/v1/infer", { values: [Math.random(), Math.random(), Math.random(), Math.random()] });
          if (r.status === 200) infer.push(r.ms);
          else failed++;
        } else {
          const started = performance.now();
          const response = await fetch(`${node.api}/v1/kv/bench-${salt}-${n}-${i % 16}`, {
            method: "PUT", headers: { Authorization: `Bearer ${cluster.token}` }, body: `v${i}`, signal: AbortSignal.timeout(30_000),
          });
          await response.arrayBuffer();
          if (response.status === 200) kv.push(performance.now() - started);
          else failed++;
        }
      } catch {
        failed++;
      }
      i++;
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
    }
  }));
  return { infer, kv, failed };
}

export async function run(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: { seconds: { type: "string", default: "40" }, pairs: { type: "string", default: "1" }, rate: { type: "string", default: "1.5" }, memories: { type: "string", default: "1500" } },
    strict: true,
  });
  const seconds = Number(values.seconds);
  const pairs = Number(values.pairs);
  const rate = Number(values.rate);
  const memories = Number(values.memories);
  const ws = new Workspace("dmn");
  try {
    const cluster = await startSelfCluster(ws, { nodes: 3, minds: [0], mindLatencyMs: 30, env: { PK_DMN_EVERY_MS: "2000" } });
    await seed(cluster, memories);
    const results = { off: { infer: [] as number[], kv: [] as number[], failed: 0 }, on: { infer: [] as number[], kv: [] as number[], failed: 0 } };
    const work: Record<string, number> = {};
    for (let p = 0; p < pairs; p++) {
      for (const kind of p % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
        for (const node of cluster.nodes) await shell(cluster, node.api, `dmn ${kind}`);
        const before = await dmnJobs(cluster);
        const r = await phase(cluster, seconds, rate, `${p}${kind}`);
        results[kind].infer.push(...r.infer);
        results[kind].kv.push(...r.kv);
        results[kind].failed += r.failed;
        if (kind === "on") {
          const after = await dmnJobs(cluster);
          for (const [k, v] of Object.entries(after)) {
            if (k === "longestSliceMs") work[k] = Math.max(work[k] ?? 0, v);
            else if (v - (before[k] ?? 0) > 0) work[k] = Math.round(((work[k] ?? 0) + v - (before[k] ?? 0)) * 1000) / 1000;
          }
        }
      }
    }
    const off = { infer: summary(results.off.infer), kv: summary(results.off.kv), failed: results.off.failed };
    const on = { infer: summary(results.on.infer), kv: summary(results.on.kv), failed: results.on.failed };
    const leaderDmn = await shell(cluster, cluster.nodes[0]!.api, "dmn");
    return {
      bench: "dmn", nodes: 3, memories, seconds, pairs, ratePerNode: rate, off, on,
      p99Ratio: { infer: Math.round((on.infer.p99 / off.infer.p99) * 100) / 100, kv: Math.round((on.kv.p99 / off.kv.p99) * 100) / 100 },
      p50Ratio: { infer: Math.round((on.infer.p50 / off.infer.p50) * 100) / 100, kv: Math.round((on.kv.p50 / off.kv.p50) * 100) / 100 },
      dmnWorkDuringOn: work,
      node1Dmn: leaderDmn.split("\n").slice(0, 6),
    };
  } finally {
    await ws.close(10_000);
  }
}
