// `node scripts/launch.js COMMAND [ARGS...]`: runs COMMAND with a Node.js recent enough for
// p-kernel (>= 22.18; see scripts/recent-node.js). The npm scripts go through it, so `npm test`,
// `npm run bench`, ... work on a machine whose `node` is 18 or 20: npm runs them with that node,
// and this fetches Node 24 once (from the npm registry) and runs the command with it.
//   COMMAND "node": that recent node itself, e.g. `launch.js node --test "test/**/*.test.ts"`.
//   any other COMMAND (tsc, eslint): found on PATH (npm puts node_modules/.bin there), with the
//   recent node's folder first on PATH so the tool's `#!/usr/bin/env node` runs that node.
// Where the running Node is recent enough, nothing is fetched and COMMAND runs as it is.
//
// Plain JavaScript that Node 18 parses.
import { dirname } from "node:path";
import { ensureRecentNode, runAndExit } from "./recent-node.js";

const [command, ...args] = process.argv.slice(2);
if (command === undefined) {
  process.stderr.write("usage: node scripts/launch.js COMMAND [ARGS...]   (COMMAND node: a Node.js >= 22.18)\n");
  process.exit(2);
}
let node;
try {
  node = ensureRecentNode();
} catch (error) {
  process.stderr.write(`pk: ${error.message}\n`);
  process.exit(1);
}
const switched = node !== process.execPath;
runAndExit(command === "node" ? node : command, args, switched ? dirname(node) : undefined);
