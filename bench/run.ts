// `npm run bench -- NAME [args...]`: runs bench/NAME.ts, which prints one JSON object on stdout.
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
/** Modules here that are not benchmarks: this runner, and the helpers benchmarks import. */
const NOT_BENCHMARKS = new Set(["run.ts", "procs.ts", "self-cluster.ts"]);
const names = readdirSync(here).filter((f) => f.endsWith(".ts") && !NOT_BENCHMARKS.has(f)).map((f) => f.slice(0, -3)).sort();
const [name, ...args] = process.argv.slice(2);
if (name === undefined || !names.includes(name)) {
  process.stderr.write(`${name === undefined ? "Missing benchmark name" : `Unknown benchmark "${name}"`}\nusage: npm run bench -- NAME [args]\nbenchmarks: ${names.join(", ")}\n`);
  process.exit(2);
}
const bench = (await import(join(here, `${name}.ts`))) as { run(args: string[]): Promise<unknown> };
const result = await bench.run(args);
process.stdout.write(`${JSON.stringify(result, undefined, 2)}\n`);
