// `npm run bench -- sim [--nodes N] [--ticks T] [--seed S]`: the simulator at scale. Runs the same
// seed twice, each in its own process (so the two runs share nothing but the code), and prints the
// wall time of each, the simulated throughput, and whether the two traceHashes agree.
// Target (issue 2): 1,000 nodes for 10,000 ticks in under 60 s on a 2-core machine.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";

const pk = fileURLToPath(new URL("../bin/pk.js", import.meta.url));
const execFileAsync = promisify(execFile);

export async function run(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: { nodes: { type: "string", default: "1000" }, ticks: { type: "string", default: "10000" }, seed: { type: "string", default: "1" } },
    strict: true,
  });
  const argv = [pk, "sim", "--nodes", values.nodes, "--ticks", values.ticks, "--seed", values.seed, "--json"];
  const results = [];
  // One after the other: two simultaneous runs on a 2-core machine would each measure half a machine.
  for (let i = 0; i < 2; i++) {
    const { stdout } = await execFileAsync(process.execPath, argv, { maxBuffer: 1 << 20 });
    results.push(JSON.parse(stdout) as { traceHash: string; wallMs: number; messages: number; ticks: number; nodes: number; convergedAtTick: number | null; membersKnown: unknown });
  }
  const [a, b] = results as [typeof results[0], typeof results[0]];
  const nodeTicks = a.nodes * a.ticks;
  return {
    bench: "sim",
    nodes: a.nodes,
    ticks: a.ticks,
    seed: Number(values.seed),
    wallMs: [a.wallMs, b.wallMs],
    targetMs: 60_000,
    ratioToTarget: Math.max(a.wallMs, b.wallMs) / 60_000,
    nodeTicksPerSecond: Math.round(nodeTicks / (a.wallMs / 1000)),
    messagesPerSecond: Math.round(a.messages / (a.wallMs / 1000)),
    messages: a.messages,
    traceHash: [a.traceHash, b.traceHash],
    deterministic: a.traceHash === b.traceHash && a.messages === b.messages,
    convergedAtTick: a.convergedAtTick,
    membersKnown: a.membersKnown,
  };
}
