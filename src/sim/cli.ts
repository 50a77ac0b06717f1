// `pk sim`: runs the cluster simulator and prints its result. A failing run prints its seed and the
// command that replays it exactly. `--scenario swim-scale` runs the SWIM scale scenario instead
// (src/sim/swim-scale.ts: Swim cores only, --nodes default 1000; --ticks, --faults, --seal do not apply).
// `--scenario raft-lin` checks the consensus key-value store for linearizability under faults
// (src/sim/raft-lin.ts) for --seeds N seeds from --seed S on (S, S+1, ...); --nodes 3 or 5 (by
// default even seeds run 3 nodes, odd seeds 5), --ticks is the workload's length; --faults and
// --seal do not apply (the scenario draws its own). One line per seed, then a summary.
// `--mutation local-reads` breaks the store on purpose (reads skip ReadIndex), to see a failure.
// `--scenario organism` runs the whole organism (src/sim/organism.ts): --nodes (default 3) kernels
// with the shared folder on their simulated disks and the Brain, --faults lossy by default: a file
// reaches every node, distributed inference in every mode equals local inference, a node crashes
// (REDUCED, still equal; the file still reaches the others) and restarts from its disk. The same
// seed prints the same report; --ticks and --seal do not apply.
import { parseArgs } from "node:util";
import { stderrProgress } from "../cli/progress.ts";
import { SimCluster, type FaultProfile } from "./cluster.ts";

const USAGE = "usage: pk sim [--scenario cluster|swim-scale|raft-lin|replica-scale|organism] [--nodes N] [--seed S] [--seeds N] [--ticks T] [--faults none|lossy|random] [--seal sim|real] [--mutation local-reads] [--loss P] [--origins N] [--json]";

export interface SimRunReport {
  readonly ok: boolean;
  readonly result: Record<string, unknown>;
}

/** Runs one simulation; returns the report instead of throwing, so a failure keeps its seed. */
export function simulate(
  options: { nodes: number; seed: number; ticks: number; faults: FaultProfile; seal: "sim" | "real" },
  progress?: (ticks: number) => void,
): SimRunReport {
  const started = performance.now();
  let cluster: SimCluster | undefined;
  try {
    cluster = new SimCluster({ nodes: options.nodes, seed: options.seed, faults: options.faults, seal: options.seal });
    // In slices, so a long run reports its progress (the same ticks, the same result).
    const slice = Math.max(1, Math.ceil(options.ticks / 1000));
    for (let done = 0; done < options.ticks;) {
      const n = Math.min(slice, options.ticks - done);
      cluster.run(n);
      done += n;
      progress?.(done);
    }
    const result = cluster.result();
    // Every packet in a simulated cluster is legitimate: a decode or auth drop is a bug.
    const bad = result.kernelDrops.auth + result.kernelDrops.decode;
    const wallMs = Math.round(performance.now() - started);
    return {
      ok: bad === 0,
      result: { ...result, wallMs, ...(bad === 0 ? {} : { error: `${bad} legitimate packets were dropped as auth or decode` }) },
    };
  } catch (error) {
    return {
      ok: false,
      result: {
        seed: options.seed, nodes: options.nodes, ticks: cluster?.now ?? 0,
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        wallMs: Math.round(performance.now() - started),
      },
    };
  }
}

export async function runSimCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        scenario: { type: "string", default: "cluster" },
        nodes: { type: "string" },
        seed: { type: "string" },
        seeds: { type: "string" },
        mutation: { type: "string" },
        loss: { type: "string" },
        origins: { type: "string" },
        ticks: { type: "string" },
        faults: { type: "string" },
        seal: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    process.stderr.write(`pk sim: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const scenario = values.scenario;
  if (scenario === "raft-lin") return runRaftLinCommand(values);
  if (scenario === "replica-scale") return (await import("./replica-scale-cli.ts")).runReplicaScaleCommand(values);
  if (scenario === "organism") return runOrganismCommand(values);
  if (values.loss !== undefined || values.origins !== undefined) {
    process.stderr.write(`pk sim: --loss and --origins are for --scenario replica-scale\n${USAGE}\n`);
    return 2;
  }
  const nodes = integer(values.nodes ?? (scenario === "swim-scale" ? "1000" : "3"), scenario === "swim-scale" ? 3 : 1, 100_000);
  const ticks = integer(values.ticks ?? "1000", 0, 100_000_000);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer(values.seed, 0, Number.MAX_SAFE_INTEGER);
  const faults = values.faults ?? "none";
  const seal = values.seal ?? "sim";
  const problems = [
    scenario !== "cluster" && scenario !== "swim-scale" ? "--scenario must be cluster, swim-scale, raft-lin, replica-scale or organism" : "",
    values.seeds !== undefined || values.mutation !== undefined ? "--seeds and --mutation are for --scenario raft-lin" : "",
    nodes === undefined ? `--nodes must be an integer from ${scenario === "swim-scale" ? 3 : 1} to 100000` : "",
    ticks === undefined ? "--ticks must be a non-negative integer" : "",
    seed === undefined ? "--seed must be a non-negative integer" : "",
    faults !== "none" && faults !== "lossy" && faults !== "random" ? "--faults must be none, lossy or random" : "",
    seal !== "sim" && seal !== "real" ? "--seal must be sim or real" : "",
  ].filter((p) => p !== "");
  if (problems.length > 0 || nodes === undefined || ticks === undefined || seed === undefined) {
    process.stderr.write(`pk sim: ${problems[0]}\n${USAGE}\n`);
    return 2;
  }
  let report: SimRunReport;
  if (scenario === "swim-scale") report = (await import("./swim-scale.ts")).runSwimScale({ nodes, seed });
  else {
    const bar = stderrProgress("sim", "ticks", ticks, values.json);
    report = simulate({ nodes, seed, ticks, faults: faults as FaultProfile, seal: seal as "sim" | "real" }, (done) => bar.update(done));
    bar.finish(report.ok ? "done" : "failed");
  }
  if (values.json) process.stdout.write(`${JSON.stringify(report.result)}\n`);
  else {
    for (const [key, value] of Object.entries(report.result)) process.stdout.write(`${key.padEnd(16)} ${JSON.stringify(value)}\n`);
  }
  if (!report.ok && scenario === "swim-scale") {
    process.stderr.write(`pk sim: FAILED with seed ${seed}; replay: pk sim --scenario swim-scale --nodes ${nodes} --seed ${seed}\n`);
    return 1;
  }
  if (!report.ok) {
    process.stderr.write(`pk sim: FAILED with seed ${seed}; replay: pk sim --nodes ${nodes} --seed ${seed} --ticks ${ticks} --faults ${faults} --seal ${seal}\n`);
    return 1;
  }
  return 0;
}

/** `pk sim --scenario raft-lin`: one line per seed (JSON with --json), a summary, exit 1 on any failure. */
async function runRaftLinCommand(values: {
  nodes?: string | undefined; seed?: string | undefined; seeds?: string | undefined; ticks?: string | undefined; mutation?: string | undefined; json?: boolean | undefined;
}): Promise<number> {
  const { runRaftLin, RAFT_LIN_DEFAULTS } = await import("./raft-lin.ts");
  const nodes = values.nodes === undefined ? undefined : values.nodes === "3" ? 3 : values.nodes === "5" ? 5 : 0;
  const first = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer(values.seed, 0, Number.MAX_SAFE_INTEGER);
  const seeds = integer(values.seeds ?? "1", 1, 10_000_000);
  const ticks = integer(values.ticks ?? String(RAFT_LIN_DEFAULTS.ticks), 1, 10_000_000);
  const problems = [
    nodes === 0 ? "--nodes must be 3 or 5 for raft-lin" : "",
    first === undefined ? "--seed must be a non-negative integer" : "",
    seeds === undefined ? "--seeds must be a positive integer" : "",
    ticks === undefined ? "--ticks must be a positive integer" : "",
    values.mutation !== undefined && values.mutation !== "local-reads" ? "--mutation must be local-reads" : "",
  ].filter((p) => p !== "");
  const mutation = values.mutation === "local-reads" ? "local-reads" : undefined;
  if (problems.length > 0 || first === undefined || seeds === undefined || ticks === undefined || nodes === 0) {
    process.stderr.write(`pk sim: ${problems[0]}\n${USAGE}\n`);
    return 2;
  }
  const started = performance.now();
  const failures: string[] = [];
  let ok = 0;
  let unknown = 0;
  const bar = stderrProgress("raft-lin", "seeds", seeds, values.json === true);
  for (let seed = first; seed < first + seeds; seed++) {
    const n = nodes ?? (seed % 2 === 0 ? 3 : 5);
    const report = runRaftLin({ seed, nodes: n, ticks, ...(mutation !== undefined ? { mutation } : {}) });
    const r = report.result;
    ok += r.ok;
    unknown += r.unknown;
    bar.interrupt();
    if (values.json === true) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      process.stdout.write(`seed ${seed} nodes ${n}: ${report.ok ? "ok" : `FAILED (${r.failure?.kind})`}, ${r.ops} operations ` +
        `(${r.ok} ok, ${r.unknown} unknown; ${r.failed} refused), ${r.leaderChanges} leader changes, ${r.crashes} crashes, ` +
        `${r.partitions} partitions, checker ${r.checkerMs} ms, trace ${r.traceHash}\n`);
    }
    if (!report.ok) {
      const replay = `pk sim --scenario raft-lin --nodes ${n} --seed ${seed} --ticks ${ticks}${mutation !== undefined ? ` --mutation ${mutation}` : ""}`;
      failures.push(`seed ${seed}: ${r.failure?.kind}; replay: ${replay}`);
      const lines = [`pk sim: raft-lin FAILED with seed ${seed}: ${r.failure?.detail ?? ""}`, ...(r.failure?.excerpt ?? []),
        ...(r.failure?.nemesis !== undefined ? ["nemesis:", ...r.failure.nemesis.map((line) => `  ${line}`)] : []), `replay: ${replay}`];
      process.stderr.write(`${lines.join("\n")}\n`);
    }
    bar.update(seed - first + 1, seeds, `seed ${seed} ${report.ok ? "ok" : "FAILED"}`);
  }
  bar.finish(failures.length === 0 ? "done" : `${failures.length} failed`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (seeds > 1 || failures.length > 0) {
    process.stderr.write(`raft-lin: ${seeds} seeds from ${first}, ${failures.length} failed; ${ok} definite and ${unknown} unknown operations in ${seconds} s\n`);
    for (const failure of failures) process.stderr.write(`  ${failure}\n`);
  }
  return failures.length === 0 ? 0 : 1;
}

/** `pk sim --scenario organism`: the report (one JSON line with --json), exit 1 on any failure with its replay. */
async function runOrganismCommand(values: {
  nodes?: string | undefined; seed?: string | undefined; faults?: string | undefined; ticks?: string | undefined; seal?: string | undefined;
  seeds?: string | undefined; mutation?: string | undefined; loss?: string | undefined; origins?: string | undefined; json?: boolean | undefined;
}): Promise<number> {
  const nodes = integer(values.nodes ?? "3", 2, 16);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer(values.seed, 0, Number.MAX_SAFE_INTEGER);
  const faults = values.faults ?? "lossy";
  const problems = [
    nodes === undefined ? "--nodes must be an integer from 2 to 16 for organism" : "",
    seed === undefined ? "--seed must be a non-negative integer" : "",
    faults !== "none" && faults !== "lossy" && faults !== "random" ? "--faults must be none, lossy or random" : "",
    [values.ticks, values.seal, values.seeds, values.mutation, values.loss, values.origins].some((v) => v !== undefined)
      ? "--ticks, --seal, --seeds, --mutation, --loss and --origins are not for --scenario organism" : "",
  ].filter((p) => p !== "");
  if (problems.length > 0 || nodes === undefined || seed === undefined) {
    process.stderr.write(`pk sim: ${problems[0]}\n${USAGE}\n`);
    return 2;
  }
  const { runOrganism } = await import("./organism.ts");
  const started = performance.now();
  const report = await runOrganism({ seed, nodes, faults: faults as FaultProfile });
  if (values.json === true) process.stdout.write(`${JSON.stringify(report.result)}\n`);
  else {
    for (const [key, value] of Object.entries(report.result)) process.stdout.write(`${key.padEnd(16)} ${JSON.stringify(value)}\n`);
  }
  process.stderr.write(`organism seed ${seed}: ${report.ok ? "ok" : "FAILED"} in ${Math.round(performance.now() - started)} ms\n`);
  if (!report.ok) {
    process.stderr.write(`pk sim: organism FAILED with seed ${seed}; replay: pk sim --scenario organism --nodes ${nodes} --seed ${seed} --faults ${faults}\n`);
    return 1;
  }
  return 0;
}

function integer(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= min && value <= max ? value : undefined;
}
