// `pk node --supervise ...` (docs/protocols/upgrade.md, ADR 022): a small process that runs the
// kernel as its child — from the bundle DATA/bundles/current names, else from the code it was
// started from — with the same arguments, restarts it into a newer bundle when the kernel asks,
// and rolls the restart back when the new code does not boot or does not become healthy in time.
//
// The child gets an IPC channel (src/adapters/supervisor-link.ts); when the supervisor dies the
// channel closes and the child exits, so killing the supervisor kills the node. SIGTERM/SIGINT to
// the supervisor stop the child gracefully, then the supervisor exits.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, lstatSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { packageRoot } from "../adapters/bundle-files.ts";
import { isBundleId, UpgradeFiles, type Trial } from "../adapters/upgrade-files.ts";

export interface SuperviseOptions {
  /** Milliseconds the new code has to say it is up (its ready message). */
  readonly bootTimeoutMs: number;
  /** Milliseconds from its ready message to its healthy message. */
  readonly healthTimeoutMs: number;
  /** Milliseconds `npm ci --omit=dev` may take in a bundle whose lockfile differs from this code's. */
  readonly depsTimeoutMs: number;
  /** Milliseconds a stopping child has before it is killed. */
  readonly stopTimeoutMs: number;
  /** Crashes (exits not asked for) within crashWindowMs after which the supervisor gives up. */
  readonly crashesMax: number;
  readonly crashWindowMs: number;
}

export const SUPERVISE_DEFAULTS: SuperviseOptions = {
  bootTimeoutMs: 60_000, healthTimeoutMs: 90_000, depsTimeoutMs: 600_000, stopTimeoutMs: 10_000, crashesMax: 5, crashWindowMs: 60_000,
};

/** The environment variables the supervisor sets for its child (never inherited from its own). */
const OWN_VARS = ["PK_SUPERVISED", "PK_UPGRADE_TRIAL", "PK_UPGRADE_ROLLED_BACK"];

type Outcome =
  | { readonly kind: "exit"; readonly how: string }
  | { readonly kind: "restart"; readonly id: string; readonly version: number; readonly mode: string }
  | { readonly kind: "trial-failed"; readonly reason: string };

function log(line: string): void {
  process.stderr.write(`pk supervise: ${line}\n`);
}

/** Options from the environment (PK_UPGRADE_BOOT_MS, PK_UPGRADE_HEALTH_MS: tests shorten them). */
export function superviseOptions(env: Readonly<Record<string, string | undefined>>): SuperviseOptions {
  const ms = (name: string, fallback: number): number => {
    const v = Number(env[name]);
    return Number.isInteger(v) && v >= 1_000 && v <= 3_600_000 ? v : fallback;
  };
  return { ...SUPERVISE_DEFAULTS, bootTimeoutMs: ms("PK_UPGRADE_BOOT_MS", SUPERVISE_DEFAULTS.bootTimeoutMs), healthTimeoutMs: ms("PK_UPGRADE_HEALTH_MS", SUPERVISE_DEFAULTS.healthTimeoutMs) };
}

export class Supervisor {
  readonly #args: readonly string[];
  readonly #files: UpgradeFiles;
  readonly #options: SuperviseOptions;
  readonly #ownRoot = packageRoot();
  #child: ChildProcess | undefined;
  #stopping = false;
  #crashes: number[] = [];

  constructor(args: readonly string[], dataDir: string, options: SuperviseOptions) {
    this.#args = args;
    this.#files = new UpgradeFiles(dataDir);
    this.#options = options;
  }

  async run(): Promise<number> {
    let stopped: () => void = () => undefined;
    const stopSignal = new Promise<void>((resolve) => (stopped = resolve));
    const onSignal = (signal: NodeJS.Signals): void => {
      log(`${signal}, stopping the node`);
      this.#stopping = true;
      stopped();
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    // A supervisor started again while a trial was on (it died mid-upgrade) keeps judging it.
    let trial = this.#files.pending();
    let rolledBack: { id: string; reason: string } | undefined;
    for (;;) {
      const child = this.#start(trial, rolledBack);
      rolledBack = undefined;
      const outcome = await Promise.race([this.#watch(child, trial), stopSignal.then((): Outcome => ({ kind: "exit", how: "stopping" }))]);
      if (this.#stopping) {
        await this.#stop(child);
        return 0;
      }
      if (outcome.kind === "restart") {
        const stoppedAt = Date.now();
        await this.#stop(child);
        trial = { id: outcome.id, version: outcome.version, mode: outcome.mode, atMs: Date.now() };
        this.#files.beginTrial(trial);
        log(`stopped the node in ${Date.now() - stoppedAt} ms; starting v${outcome.version} ${outcome.id.slice(0, 16)} on trial`);
        continue;
      }
      if (outcome.kind === "trial-failed" && trial !== undefined) {
        await this.#stop(child);
        log(`v${trial.version} ${trial.id.slice(0, 16)} failed (${outcome.reason}); rolling back to ${this.#files.previous()?.slice(0, 16) ?? "the supervisor's own code"}`);
        this.#files.rollBack(trial.id, outcome.reason, Date.now());
        rolledBack = { id: trial.id, reason: outcome.reason };
        trial = undefined;
        continue;
      }
      // The node exited by itself (a broken invariant, a crash): started again, unless it keeps crashing.
      const now = Date.now();
      this.#crashes = [...this.#crashes.filter((t) => now - t < this.#options.crashWindowMs), now];
      if (this.#crashes.length >= this.#options.crashesMax) {
        log(`the node exited ${this.#crashes.length} times within ${this.#options.crashWindowMs / 1000} s (last: ${outcome.kind === "exit" ? outcome.how : outcome.reason}); giving up`);
        return 1;
      }
      log(`the node exited (${outcome.kind === "exit" ? outcome.how : outcome.reason}); starting it again`);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }

  /** The entry point of the code to run: the current bundle's, else this code's own. */
  #entry(): string {
    const current = this.#files.current();
    if (current !== undefined) {
      const bin = join(this.#files.dir, current, "bin", "pk.js");
      if (existsSync(bin)) return bin;
      log(`DATA/bundles/current names ${current.slice(0, 16)}, which is not installed here; running this code`);
    }
    return join(this.#ownRoot, "bin", "pk.js");
  }

  #start(trial: Trial | undefined, rolledBack: { id: string; reason: string } | undefined): ChildProcess {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of OWN_VARS) delete env[name];
    env["PK_SUPERVISED"] = "1";
    if (trial !== undefined) env["PK_UPGRADE_TRIAL"] = JSON.stringify(trial);
    if (rolledBack !== undefined) env["PK_UPGRADE_ROLLED_BACK"] = JSON.stringify(rolledBack);
    const entry = this.#entry();
    const child = spawn(process.execPath, [entry, "node", ...this.#args], { stdio: ["ignore", "inherit", "inherit", "ipc"], env });
    this.#child = child;
    log(`started the node (pid ${child.pid ?? "?"}) from ${entry}${trial === undefined ? "" : `, on trial for ${this.#options.bootTimeoutMs / 1000} s to boot and ${this.#options.healthTimeoutMs / 1000} s to become healthy`}`);
    return child;
  }

  /** Resolves with what ends this child's run: its exit, a restart it asked for, or a failed trial. */
  #watch(child: ChildProcess, trial: Trial | undefined): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      let preparing = false;
      const finish = (outcome: Outcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.off("message", onMessage);
        resolve(outcome);
      };
      let onTrial = trial !== undefined;
      if (trial !== undefined) timer = setTimeout(() => finish({ kind: "trial-failed", reason: `no ready message within ${this.#options.bootTimeoutMs / 1000} s` }), this.#options.bootTimeoutMs);
      child.once("exit", (code, signal) => {
        const how = signal === null ? `exit code ${code ?? "?"}` : `signal ${signal}`;
        finish(onTrial ? { kind: "trial-failed", reason: `the new code exited (${how}) ${Date.now() - started} ms after its start` } : { kind: "exit", how });
      });
      const onMessage = (message: unknown): void => {
        const m = message as Record<string, unknown> | null;
        if (m === null || typeof m !== "object") return;
        if (m["t"] === "ready" && onTrial && trial !== undefined) {
          clearTimeout(timer);
          log(`v${trial.version} is up after ${Date.now() - started} ms; waiting for it to be healthy`);
          timer = setTimeout(() => finish({ kind: "trial-failed", reason: `not healthy within ${this.#options.healthTimeoutMs / 1000} s of its start` }), this.#options.healthTimeoutMs);
        } else if (m["t"] === "healthy" && onTrial && trial !== undefined && m["id"] === trial.id) {
          clearTimeout(timer);
          onTrial = false;
          this.#files.confirm();
          log(`v${trial.version} ${trial.id.slice(0, 16)} is healthy, ${Date.now() - trial.atMs} ms after the restart was asked for; kept`);
        } else if (m["t"] === "restart" && !onTrial && !preparing) {
          const id = m["id"], version = m["version"], mode = m["mode"], needs = m["node"];
          if (typeof id !== "string" || !isBundleId(id) || typeof version !== "number" || typeof mode !== "string") return;
          preparing = true;
          void this.#prepare(id, typeof needs === "string" ? needs : "").then((problem) => {
            preparing = false;
            if (problem === undefined) return finish({ kind: "restart", id, version, mode: mode.slice(0, 16) });
            log(`not restarting into ${id.slice(0, 16)}: ${problem}`);
            this.#files.recordFailed(id, problem, Date.now());
            if (child.connected) child.send({ t: "refused", id, reason: problem });
          });
        }
      };
      child.on("message", onMessage);
    });
  }

  /** Makes the bundle runnable while the old code still runs: its dependencies. A problem, or undefined. */
  async #prepare(id: string, needs: string): Promise<string | undefined> {
    if (this.#files.failed().some((f) => f.id === id)) return "it was rolled back here before";
    const node = nodeSatisfies(process.versions.node, needs);
    if (node !== undefined) return node;
    const dir = join(this.#files.dir, id);
    if (!existsSync(join(dir, "bin", "pk.js")) || !existsSync(join(dir, "package.json"))) return `${dir} is not an installed bundle`;
    const modules = join(dir, "node_modules");
    if (exists(modules)) return undefined;
    const theirs = readOr(join(dir, "package-lock.json"));
    const ours = readOr(join(this.#ownRoot, "package-lock.json"));
    const ownModules = join(this.#ownRoot, "node_modules");
    if (theirs !== undefined && ours !== undefined && theirs.equals(ours) && existsSync(ownModules)) {
      symlinkSync(ownModules, modules, "dir");
      log(`${id.slice(0, 16)}: the same package-lock.json as this code: its node_modules linked to ${ownModules}`);
      return undefined;
    }
    log(`${id.slice(0, 16)}: its package-lock.json differs from this code's: npm ci --omit=dev in ${dir} (at most ${this.#options.depsTimeoutMs / 1000} s)`);
    return await npmCi(dir, this.#options.depsTimeoutMs);
  }

  /** SIGTERM, then SIGKILL after stopTimeoutMs; resolves once the child is gone. */
  async #stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), this.#options.stopTimeoutMs);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Whether Node `version` (e.g. "24.1.0") meets a bundle's range: ">=MAJOR[.MINOR[.PATCH]]", the only
 * form `pk bundle` writes; a problem, or undefined. An empty range (an older kernel did not say) passes.
 */
export function nodeSatisfies(version: string, range: string): string | undefined {
  if (range === "") return undefined;
  const want = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  if (want === null) return `it needs Node ${range.slice(0, 64)}, a range this supervisor cannot read`;
  const have = version.split(".").map((n) => Number.parseInt(n, 10));
  for (let i = 0; i < 3; i++) {
    const a = have[i] ?? 0, b = Number(want[i + 1] ?? 0);
    if (a > b) return undefined;
    if (a < b) return `it needs Node ${range}, this is ${version}`;
  }
  return undefined;
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function readOr(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

/** `npm ci --omit=dev` in `dir`, its output as progress lines on stderr; a problem, or undefined. */
function npmCi(dir: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env: process.env });
    for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on("line", (line) => log(`npm: ${line.slice(0, 300)}`));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      resolve(`npm ci could not run: ${error.message}`);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        log(`npm ci done in ${Math.round((Date.now() - started) / 1000)} s`);
        resolve(undefined);
      } else resolve(signal === "SIGKILL" ? `npm ci took over ${timeoutMs / 1000} s` : `npm ci failed (${signal ?? `exit code ${code ?? "?"}`})`);
    });
  });
}
