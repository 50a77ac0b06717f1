// The entry of `pk` as a single executable application (scripts/sea.sh). The executable is a Node
// binary with this script and one asset injected: app.bin, the built p-kernel package (dist/,
// bin/, web/, package.json and its production node_modules) packed by scripts/sea-pack.cjs. On
// the first run it unpacks that into a cache folder named by the asset's hash
// (PK_SEA_CACHE, else $XDG_CACHE_HOME/pk-sea, else ~/.cache/pk-sea), then runs the CLI from there
// with the executable's own Node: nothing else needs to be installed.
//
// The supervisor (`pk node --supervise`) starts kernels as `process.execPath ENTRY node ...`, ENTRY
// being a package's bin/pk.js (this one's, or an installed bundle's): here that runs the CLI of the
// package ENTRY belongs to, so upgrades into signed bundles work from the executable too.
"use strict";
// CommonJS on purpose: a single executable's injected main script is CommonJS in Node 24.
/* eslint-disable @typescript-eslint/no-require-imports */
const sea = require("node:sea");
const { createHash } = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { gunzipSync } = require("node:zlib");
const { createRequire } = require("node:module");

const MAGIC = "PKSEA1\n";

function cacheRoot() {
  if (process.env.PK_SEA_CACHE) return path.resolve(process.env.PK_SEA_CACHE);
  const base = process.env.XDG_CACHE_HOME && path.isAbsolute(process.env.XDG_CACHE_HOME) ? process.env.XDG_CACHE_HOME : path.join(os.homedir(), ".cache");
  return path.join(base, "pk-sea");
}

function unpack(archive, into) {
  const data = gunzipSync(archive);
  if (data.subarray(0, MAGIC.length).toString("latin1") !== MAGIC) throw new Error("app.bin is not a p-kernel package archive");
  let at = MAGIC.length;
  let files = 0;
  while (at < data.length) {
    const end = data.indexOf(10, at);
    if (end < 0) throw new Error("app.bin: truncated header");
    const header = JSON.parse(data.subarray(at, end).toString("utf8"));
    at = end + 1;
    const rel = header.p;
    if (typeof rel !== "string" || rel === "" || path.isAbsolute(rel) || rel.split("/").some((part) => part === ".." || part === "")) throw new Error(`app.bin: bad path ${JSON.stringify(rel)}`);
    if (!Number.isSafeInteger(header.n) || header.n < 0 || at + header.n > data.length) throw new Error(`app.bin: bad length for ${rel}`);
    const target = path.join(into, rel);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, data.subarray(at, at + header.n), { mode: header.m & 0o777 });
    at += header.n;
    files++;
  }
  return files;
}

function packageDir() {
  const archive = Buffer.from(sea.getRawAsset("app.bin"));
  const hash = createHash("sha256").update(archive).digest("hex").slice(0, 16);
  const dir = path.join(cacheRoot(), hash);
  if (fs.existsSync(path.join(dir, ".complete"))) return dir;
  fs.mkdirSync(cacheRoot(), { recursive: true, mode: 0o700 });
  const temp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(temp, { recursive: true, force: true });
  const files = unpack(archive, temp);
  fs.writeFileSync(path.join(temp, ".complete"), `${files}\n`);
  try {
    fs.renameSync(temp, dir);
  } catch (error) {
    // Another process unpacked it first: use theirs.
    fs.rmSync(temp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(dir, ".complete"))) throw error;
  }
  return dir;
}

async function run() {
  let args = process.argv.slice(2);
  let root = packageDir();
  const entry = args[0];
  if (entry !== undefined && path.isAbsolute(entry) && entry.endsWith(path.join("bin", "pk.js")) && fs.existsSync(entry)) {
    root = path.dirname(path.dirname(entry));
    args = args.slice(1);
  }
  const main = path.join(root, "dist", "src", "cli", "main.js");
  if (!fs.existsSync(main)) throw new Error(`${root} has no built CLI (dist/src/cli/main.js)`);
  const { main: pk } = createRequire(path.join(root, "package.json"))(main);
  process.exitCode = await pk(args);
}

run().catch((error) => {
  process.stderr.write(`pk: ${error && error.stack ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
