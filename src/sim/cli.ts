// `pk sim`: runs the cluster simulator and prints its result. A failing run prints its seed and the
// command that replays it exactly. `--scenario swim-scale` runs the SWIM scale scenario instead
// (src/sim/swim-scale.ts: Swim cores only, --nodes default 1000; --ticks, --faults, --seal do not apply).
import { parseArgs } from "node:util";
import { SimCluster, type FaultProfile } from "./cluster.ts";

const USAGE = "usage: pk sim [--scenario cluster|swim-scale] [--nodes N] [--seed S] [--ticks T] [--faults none|lossy|random] [--seal sim|real] [--json]";

export interface SimRunReport {
  readonly ok: boolean;
  readonly result: Record<string, unknown>;
}

/** Runs one simulation; returns the report instead of throwing, so a failure keeps its seed. */
export function simulate(options: { nodes: number; seed: number; ticks: number; faults: FaultProfile; seal: "sim" | "real" }): SimRunReport {
  const started = performance.now();
  let cluster: SimCluster | undefined;
  try {
    cluster = new SimCluster({ nodes: options.nodes, seed: options.seed, faults: options.faults, seal: options.seal });
    cluster.run(options.ticks);
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
        ticks: { type: "string", default: "1000" },
        faults: { type: "string", default: "none" },
        seal: { type: "string", default: "sim" },
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
  const nodes = integer(values.nodes ?? (scenario === "swim-scale" ? "1000" : "3"), scenario === "swim-scale" ? 3 : 1, 100_000);
  const ticks = integer(values.ticks, 0, 100_000_000);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer(values.seed, 0, Number.MAX_SAFE_INTEGER);
  const faults = values.faults;
  const seal = values.seal;
  const problems = [
    scenario !== "cluster" && scenario !== "swim-scale" ? "--scenario must be cluster or swim-scale" : "",
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
  const report = scenario === "swim-scale"
    ? (await import("./swim-scale.ts")).runSwimScale({ nodes, seed })
    : simulate({ nodes, seed, ticks, faults: faults as FaultProfile, seal: seal as "sim" | "real" });
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

function integer(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= min && value <= max ? value : undefined;
}
