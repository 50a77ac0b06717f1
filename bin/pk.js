#!/usr/bin/env node
// The `pk` command. Runs the TypeScript sources directly (Node's type stripping) from a checkout;
// a published package carries the JavaScript emitted by `npm run build` in dist/ instead.
import { existsSync } from "node:fs";
const dist = new URL("../dist/src/cli/main.js", import.meta.url);
const { main } = existsSync(dist) ? await import(dist.href) : await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
