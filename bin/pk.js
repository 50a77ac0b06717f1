#!/usr/bin/env node
// The `pk` command. Runs the TypeScript sources directly (Node's type stripping) from a checkout;
// a published package carries the JavaScript emitted by `npm run build` in dist/ instead.
// On a Node older than 22.18 it first re-runs itself with Node 24, fetched once from the npm
// registry into a cache folder (scripts/recent-node.js); so this file must parse on Node 18.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const { reexecWithRecentNode } = await import("../scripts/recent-node.js");
if (!reexecWithRecentNode(fileURLToPath(import.meta.url), process.argv.slice(2))) {
  const dist = new URL("../dist/src/cli/main.js", import.meta.url);
  const { main } = existsSync(dist) ? await import(dist.href) : await import("../src/cli/main.ts");
  process.exitCode = await main(process.argv.slice(2));
}
