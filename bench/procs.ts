// Child processes for the benchmarks that run clusters on loopback (bench/swim.ts, bench/raft.ts):
// a registry that kills every process started however the benchmark ends, a scratch folder
// removed likewise, free ports, and starting a `pk node` and waiting for its ready line.
// Not a benchmark itself: it has no run().
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { portFree } from "../src/cli/main.ts";
import { provisionOwnerKey } from "../src/adapters/trust-files.ts";

export const PK_BIN = fileURLToPath(new URL("../bin/pk.js", import.meta.url));
export const HOST = "127.0.0.1";
/** Ports are picked here, below Linux's ephemeral range, so no outgoing connection takes one between a kill and its restart. */
const PORT_RANGE = { from: 20_000, to: 30_000 };
const TAIL_LINES = 20;

// ---------------------------------------------------------------------------------------------
// Processes

export interface Child {
  readonly proc: ChildProcess;
  /** The last lines of its stdout and stderr, for error messages. */
  readonly tail: string[];
  /** Set when it exited: "code N" or "signal S". */
  exit: string | undefined;
  readonly exited: Promise<void>;
}

export interface StartOptions {
  /** The child's environment; this process's by default. */
  readonly env?: NodeJS.ProcessEnv;
  /** Called with each line of its stdout and stderr and the moment (performance.now()) it arrived. */
  readonly onLine?: (line: string, at: number) => void;
}

/** Every process the benchmark starts, so that each is killed however the benchmark ends. */
export class Processes {
  readonly #live = new Set<ChildProcess>();

  start(command: string, args: readonly string[], options: StartOptions = {}): Child {
    const { env, onLine } = options;
    const proc = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...(env !== undefined ? { env } : {}) });
    this.#live.add(proc);
    const tail: string[] = [];
    let markExited: () => void = () => undefined;
    const exited = new Promise<void>((resolve) => {
      markExited = resolve;
    });
    const child: Child = { proc, tail, exit: undefined, exited };
    const done = (exit: string): void => {
      child.exit ??= exit;
      this.#live.delete(proc);
      markExited();
    };
    proc.on("error", (error) => done(`spawn failed: ${error.message}`));
    proc.on("exit", (code, signal) => done(signal !== null ? `signal ${signal}` : `code ${code}`));
    for (const stream of [proc.stdout, proc.stderr]) {
      if (stream === null) continue;
      createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => {
        const at = performance.now();
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        onLine?.(line, at);
      });
    }
    return child;
  }

  killAllSync(): void {
    for (const proc of this.#live) {
      try {
        proc.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }

  /** SIGKILLs those of `children` still running and waits (at most timeoutMs) until they exited. */
  async stop(children: ReadonlyArray<Child | undefined>, timeoutMs: number): Promise<void> {
    for (const child of children) {
      if (child !== undefined && child.exit === undefined) child.proc.kill("SIGKILL");
    }
    await Promise.race([Promise.all(children.map((child) => child?.exited)), sleep(timeoutMs, undefined, { ref: false })]);
  }

  async stopAll(timeoutMs: number): Promise<void> {
    this.killAllSync();
    const deadline = performance.now() + timeoutMs;
    while (this.#live.size > 0 && performance.now() < deadline) await sleep(20);
  }
}

/** SIGKILLs `child` if there is one; returns the moment just before the signal. */
export function sigkill(child: Child | undefined): number {
  const at = performance.now();
  child?.proc.kill("SIGKILL");
  return at;
}

export function describeExit(what: string, child: Child): string {
  return `${what} exited (${child.exit ?? "?"}); its last output:\n${child.tail.map((line) => `  ${line}`).join("\n")}`;
}

/** What `ready` resolves with; throws if `child` exits first, or after timeoutMs. */
export function waitReady<T>(child: Child, what: string, ready: Promise<T>, timeoutMs: number): Promise<T> {
  return Promise.race([
    ready,
    child.exited.then((): never => {
      throw new Error(describeExit(what, child));
    }),
    sleep(timeoutMs, undefined, { ref: false }).then((): never => {
      throw new Error(`${what} was not ready within ${timeoutMs / 1000} s; its last output:\n${child.tail.map((line) => `  ${line}`).join("\n")}`);
    }),
  ]);
}

/**
 * A fresh temporary folder and the registry of the processes started, both cleaned up however the
 * benchmark ends: close() on return or throw; on SIGINT or SIGTERM every process is killed, the
 * folder removed and the benchmark exits (130, 143); at exit every process still running is killed.
 */
export class Workspace {
  readonly procs = new Processes();
  readonly dir: string;
  readonly #onSignal: (signal: NodeJS.Signals) => void;
  readonly #onExit: () => void;

  /**
   * `bench` names the folder (pk-bench-BENCH-…) and prefixes the message on a signal; it is made in
   * `root` (an existing folder: a tmpfs such as /dev/shm for a fast disk), the system's temporary folder by default.
   */
  constructor(bench: string, root: string = tmpdir()) {
    this.dir = mkdtempSync(join(root, `pk-bench-${bench}-`));
    this.#onSignal = (signal) => {
      process.stderr.write(`${bench}: ${signal}, stopping every process started\n`);
      this.procs.killAllSync();
      rmSync(this.dir, { recursive: true, force: true });
      process.exit(signal === "SIGINT" ? 130 : 143);
    };
    this.#onExit = () => this.procs.killAllSync();
    process.once("SIGINT", this.#onSignal);
    process.once("SIGTERM", this.#onSignal);
    process.once("exit", this.#onExit);
  }

  /** Stops every process (waiting at most timeoutMs), removes the folder and the handlers. */
  async close(timeoutMs: number): Promise<void> {
    await this.procs.stopAll(timeoutMs);
    rmSync(this.dir, { recursive: true, force: true });
    process.off("SIGINT", this.#onSignal);
    process.off("SIGTERM", this.#onSignal);
    process.off("exit", this.#onExit);
  }
}

// ---------------------------------------------------------------------------------------------
// Ports

export async function freePort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const port = PORT_RANGE.from + Math.floor(Math.random() * (PORT_RANGE.to - PORT_RANGE.from));
    if (taken.has(port)) continue;
    if (await portFree(HOST, port)) {
      taken.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${PORT_RANGE.from}-${PORT_RANGE.to}`);
}

/** For each of `count` members, a free port for each of `roles`, picked in order. */
export async function freePorts<Role extends string>(taken: Set<number>, count: number, roles: readonly Role[]): Promise<Array<Record<Role, number>>> {
  const ports: Array<Record<Role, number>> = [];
  for (let i = 0; i < count; i++) {
    const member: Partial<Record<Role, number>> = {};
    for (const role of roles) member[role] = await freePort(taken);
    ports.push(member as Record<Role, number>);
  }
  return ports;
}

// ---------------------------------------------------------------------------------------------
// p-kernel nodes

export interface PkNodeOptions {
  readonly name: string;
  readonly data: string;
  /** host:port of its peer transport. */
  readonly listen: string;
  /** host:port of its HTTP API. */
  readonly api: string;
  readonly token: string;
  /** The listen address of the node to join through; none for the first node. */
  readonly join: string | undefined;
}

/**
 * The command line of a `pk node`, in the argv shape `pk up` records in cluster.json. As `pk up`
 * does, it puts the token in the node's data folder (DATA/token, mode 0600, created here): a token
 * never goes on a command line, and the node reads that file on every start; and the owner key.
 */
export function pkNodeArgv(node: PkNodeOptions): string[] {
  mkdirSync(node.data, { recursive: true, mode: 0o700 });
  writeFileSync(join(node.data, "token"), `${node.token}\n`, { mode: 0o600 });
  // As pk up does: the cluster's owner key (made once beside the nodes' folders) in each node's
  // folder, so every node certifies itself core (docs/protocols/trust.md).
  provisionOwnerKey(dirname(node.data), node.data);
  return [
    process.execPath, PK_BIN, "node", "--data", node.data, "--listen", node.listen, "--api", node.api,
    "--name", node.name, ...(node.join !== undefined ? ["--join", node.join] : []),
  ];
}

/**
 * Starts a `pk node` (creating its data folder) and returns it at once, with `ready`: its id once it
 * printed its ready line. `ready` rejects if it exits first, prints none within timeoutMs, or, with
 * `knownId` not "", comes back as another id than that. `env` is its environment (default this process's).
 */
export function startPkNode(
  procs: Processes, what: string, data: string, argv: readonly string[], knownId: string, timeoutMs: number, env?: NodeJS.ProcessEnv,
): { child: Child; ready: Promise<string> } {
  mkdirSync(data, { recursive: true, mode: 0o700 });
  let ready: (id: string) => void = () => undefined;
  const readyId = new Promise<string>((resolve) => {
    ready = resolve;
  });
  const child = procs.start(argv[0] as string, argv.slice(1), {
    ...(env === undefined ? {} : { env }),
    onLine: (line) => {
      if (!line.startsWith("{")) return;
      try {
        const parsed = JSON.parse(line) as { ready?: unknown; id?: unknown };
        if (parsed.ready === true && typeof parsed.id === "string") ready(parsed.id);
      } catch {
        // Not the ready line.
      }
    },
  });
  return {
    child,
    ready: waitReady(child, what, readyId, timeoutMs).then((id) => {
      if (knownId !== "" && knownId !== id) throw new Error(`${what} came back as ${id}, not ${knownId}`);
      return id;
    }),
  };
}
