// `npm run bench -- NAME [args...]`: runs bench/NAME.ts, which prints one JSON object on stdout.
// Each run's JSON is also saved as bench-results/NAME.json (gitignored; PK_BENCH_RESULTS moves
// the folder), with the arguments and the time it was taken: `npm run bench -- report` turns the
// saved runs into one HTML page (bench/report.ts).
import { mkdirSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
/** Modules here that are not benchmarks: this runner, and the helpers benchmarks import. */
const NOT_BENCHMARKS = new Set(["run.ts", "procs.ts", "self-cluster.ts"]);
/** Commands that read saved results instead of measuring: their output is not saved. */
const NOT_SAVED = new Set(["report"]);
const names = readdirSync(here).filter((f) => f.endsWith(".ts") && !NOT_BENCHMARKS.has(f)).map((f) => f.slice(0, -3)).sort();
const [name, ...args] = process.argv.slice(2);
if (name === undefined || !names.includes(name)) {
  process.stderr.write(`${name === undefined ? "Missing benchmark name" : `Unknown benchmark "${name}"`}\nusage: npm run bench -- NAME [args]\nbenchmarks: ${names.join(", ")}\n`);
  process.exit(2);
}
const bench = (await import(join(here, `${name}.ts`))) as { run(args: string[]): Promise<unknown> };
const started = new Date();
const result = await bench.run(args);
process.stdout.write(`${JSON.stringify(result, undefined, 2)}\n`);
if (!NOT_SAVED.has(name)) {
  const folder = resolve(process.env["PK_BENCH_RESULTS"] ?? join(here, "..", "bench-results"));
  try {
    mkdirSync(folder, { recursive: true });
    const path = join(folder, `${name}.json`);
    const saved = { bench: name, args, savedAt: new Date().toISOString(), startedAt: started.toISOString(), result };
    writeFileSync(`${path}.tmp`, `${JSON.stringify(saved, undefined, 2)}\n`);
    renameSync(`${path}.tmp`, path);
    process.stderr.write(`saved to ${path}\n`);
  } catch (error) {
    process.stderr.write(`bench: the result was not saved: ${(error as Error).message}\n`);
  }
}
