// `pk sim --scenario replica-scale [--nodes N] [--seed S] [--loss P] [--origins O] [--json]`: runs
// src/sim/replica-scale.ts and prints its JSON (one line with --json, indented otherwise). Exit 0
// when every bound holds, 1 (with the replay command on stderr) when one does not, 2 on bad options.
// cli.ts parses the options (strings, as node:util parseArgs gives them) and calls this.
import { runReplicaScale } from "./replica-scale.ts";

export interface ReplicaScaleCommandValues {
  readonly nodes?: string | undefined;
  readonly seed?: string | undefined;
  readonly loss?: string | undefined;
  readonly origins?: string | undefined;
  readonly json?: boolean | undefined;
}

const USAGE = "usage: pk sim --scenario replica-scale [--nodes N (2..100000, default 1000)] [--seed S] [--loss P (0..0.5, default 0.05)] [--origins O (default min(N, 1000))] [--json]";

export function runReplicaScaleCommand(
  values: ReplicaScaleCommandValues,
  out: (text: string) => void = (text) => process.stdout.write(text),
  err: (text: string) => void = (text) => process.stderr.write(text),
): number {
  const nodes = integer(values.nodes ?? "1000", 2, 100_000);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer(values.seed, 0, Number.MAX_SAFE_INTEGER);
  const loss = values.loss === undefined ? 0.05 : /^(0(\.\d+)?|\.\d+)$/.test(values.loss) ? Number(values.loss) : Number.NaN;
  const origins = values.origins === undefined ? undefined : integer(values.origins, 1, 100_000);
  const problems = [
    nodes === undefined ? "--nodes must be an integer from 2 to 100000" : "",
    seed === undefined ? "--seed must be a non-negative integer" : "",
    !(loss >= 0 && loss <= 0.5) ? "--loss must be a probability from 0 to 0.5" : "",
    values.origins !== undefined && origins === undefined ? "--origins must be a positive integer" : "",
  ].filter((p) => p !== "");
  if (problems.length > 0 || nodes === undefined || seed === undefined) {
    err(`pk sim: ${problems[0]}\n${USAGE}\n`);
    return 2;
  }
  const report = runReplicaScale({ nodes, seed, loss, ...(origins !== undefined ? { origins } : {}) });
  out(`${values.json === true ? JSON.stringify(report.result) : JSON.stringify(report.result, null, 2)}\n`);
  if (!report.ok) {
    const replay = `pk sim --scenario replica-scale --nodes ${nodes} --seed ${seed} --loss ${loss}${origins !== undefined ? ` --origins ${origins}` : ""}`;
    err(`pk sim: replica-scale FAILED with seed ${seed}; replay: ${replay}\n`);
    return 1;
  }
  return 0;
}

function integer(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= min && value <= max ? value : undefined;
}
