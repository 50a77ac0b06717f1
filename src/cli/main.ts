// `pk`, the command line (DESIGN.md §8): node, up, down, shell, sim. bin/pk.js calls main() and
// exits with the code it returns: 0 done, 1 failed, 2 bad usage.
//
// `pk up` starts N detached `pk node` processes on loopback and records them in D/cluster.json
// (mode 0600: it holds the cluster token), each with the exact argument vector that restarts it;
// `pk down` stops the processes listed there. `pk shell` is a readline front end to
// POST /v1/shell.
//
// A token is never taken on a command line (every user of the machine can read those, in ps and
// /proc): `--token` is refused; `pk node` reads --token-file or PK_TOKEN, `pk up` hands each node
// the token in its data folder (DATA/token, mode 0600), and `pk shell` reads cluster.json.
import { spawn } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readlinkSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { ValueErrorType } from "@sinclair/typebox/errors";
import { loadOrCreateIdentity } from "../adapters/identity.ts";
import { provisionOwnerKey } from "../adapters/trust-files.ts";
import { makeToken } from "../adapters/seal.ts";
import { LIMITS } from "../core/util/limits.ts";
import { CONSENSUS_DEFAULTS } from "../node/collective/consensus.ts";
import { VERSION } from "../node/kernel.ts";
import { NodeStartError, parseHostPort, runNode, type RunningNode } from "../node/run.ts";
import { statusOf, type NodeStatusBody } from "../node/api.ts";
import { connectSupervisor } from "../adapters/supervisor-link.ts";
import { Supervisor, superviseOptions } from "./supervise.ts";
import { BUNDLE_USAGE, bundleCommand } from "./bundle.ts";
import { SERVICE_USAGE, service } from "./service.ts";
import { contributionFromFlags } from "../node/body/contribution.ts";
import { stderrProgress, StreamedProgress } from "./progress.ts";
import { SFS_USAGE, sfsCommand } from "./sfs.ts";

/** Nodes `pk up` starts at most: a local cluster, not a load test. */
export const UP_NODES_MAX = LIMITS.cli.upNodesMax;
/** Milliseconds `pk up` waits for each node to answer GET /v1/status. */
export const UP_READY_TIMEOUT_MS = 15_000;
/**
 * Seconds `pk up` waits, by default, for the cluster to form: every node sees every other alive,
 * and the Raft configuration holds its voters (see formation()).
 */
export const UP_FORM_TIMEOUT_S = 60;
/** Milliseconds between two looks at the forming cluster. */
const FORM_POLL_MS = 200;
/** Milliseconds `pk down` waits after SIGTERM before SIGKILL. */
export const DOWN_GRACE_MS = 5_000;
/** Milliseconds `pk down` waits for stopped nodes to be reaped (to vanish from the process table). */
const REAP_WAIT_MS = 5_000;
/** Lines kept in ~/.pk_history. */
export const HISTORY_LINES_MAX = LIMITS.cli.historyLinesMax;
/** Milliseconds one shell request may take. */
const SHELL_REQUEST_TIMEOUT_MS = 30_000;
const DEFAULT_DIR = ".pk";
const DEFAULT_API = "http://127.0.0.1:7501";
const LISTEN_BASE_PORT = 7400;
const API_BASE_PORT = 7500;

const USAGE = `usage: pk COMMAND [OPTIONS]

commands:
  up     [--nodes N] [--dir D] [--detach] [--base-port P] [--timeout S]
                                            start a local cluster (default 3 nodes, data in ./.pk),
                                            wait until it has formed (every node sees every other
                                            alive, Raft has its voters; at most S seconds, 60),
                                            then open the shell on its first node; node i listens
                                            on P+i and serves its API on P+100+i (P = 7400) when free
  down   [--dir D] [--json]                 stop the cluster started by pk up
  node   --data DIR [--listen HOST:PORT] [--advertise HOST:PORT] [--api HOST:PORT]
         [--join HOST:PORT]... [--token-file FILE] [--public-name HOST[:PORT]]...
         [--role core|contributor] [--name NAME] [--owner-key FILE] [--invite-file FILE]
         [--no-regenerate] [--no-discover] [--discover-port P]
         [--mind URL#MODEL]... [--mind-embed-model M] [--mind-key-file F] [--mind-name N]
         [--supervise] [--contribute auto|always|charging|never] [--cpu-cap PERCENT]
         [--memory-cap MIB] [--bandwidth-cap KIBPS] [--min-battery PERCENT]
                                            run one node in the foreground; --advertise is
                                            the address peers reach it at (required when
                                            --listen is 0.0.0.0 or [::]); --no-regenerate
                                            keeps a cluster that lost most voters waiting
                                            for them instead of regenerating (ADR 008);
                                            without --join a node finds its cluster (same
                                            token) by multicast beacon on the LAN unless
                                            --no-discover; the token comes from --token-file,
                                            else PK_TOKEN, else DIR/token; --public-name is a
                                            name (besides loopback and the --api address)
                                            browsers may reach the API by;
                                            --mind is a local model server this
                                            node serves to the swarm (Ollama,
                                            llama.cpp, vLLM: its OpenAI-compatible
                                            URL); provider keys in the environment
                                            (OPENAI_API_KEY, ANTHROPIC_API_KEY,
                                            GEMINI_API_KEY) add frontier minds;
                                            --supervise runs it under a supervisor
                                            that restarts it into newer signed
                                            bundles one core node at a time and
                                            rolls back one that does not boot or
                                            become healthy (docs/protocols/upgrade.md);
                                            --contribute: auto (default: a machine
                                            with a battery works for others only
                                            while charging and above --min-battery,
                                            20%), always, charging, never; the caps
                                            bound the work it takes for others
                                            (ADR 027, docs/guides/)
  shell  [--api URL] [--token-file FILE] [--dir D] [-c LINE [--json]]
                                            attach the shell to a running node (the token:
                                            --token-file, else PK_TOKEN, else D/cluster.json);
                                            -c runs one line; --json prints its report as one
                                            JSON document (help lists the commands that have
                                            one), an error as {"ok":false,"error"} with exit 1
  dashboard [--api URL] [--token-file FILE] [--dir D] [--json]
                                            print the dashboard's URL with a one-time login
  sim    ...                                run the deterministic simulator
${BUNDLE_USAGE}
${SFS_USAGE}
${SERVICE_USAGE.replace(/^usage:\n/, "").replaceAll("  pk service", "  service")}
                                            run a node as a systemd service (a Pi, a server)
  help                                      show this text

options: --help, --version [--json]
--json (down, dashboard, shell -c, bundle, sfs, version; sim): one JSON document on stdout, an error
as {"ok":false,"error":...} with a non-zero exit; progress then goes to stderr as JSON lines
(PK_PROGRESS=off silences it; =lines, =bar force a form; docs/protocols/progress.md)`;

// ---------------------------------------------------------------------------------------------
// Entry

class UsageFailure extends Error {
  override name = "UsageFailure";
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
        throw new UsageFailure("missing command");
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(`${USAGE}\n`);
        return 0;
      case "--version":
      case "-V":
      case "version":
        if (rest.includes("--json")) return printJson({ pkernel: VERSION, node: process.version, platform: process.platform, arch: process.arch }, 0);
        process.stdout.write(`pk ${VERSION} (p-kernel, node ${process.version})\n`);
        return 0;
      case "node":
        return await nodeCommand(rest);
      case "up":
        return await upCommand(rest);
      case "down":
        return await downCommand(rest);
      case "shell":
        return await shellCommand(rest);
      case "dashboard":
        return await dashboardCommand(rest);
      case "sim":
        return await simCommand(rest);
      case "bundle":
        return await bundleCommand(rest, { usage: (m) => new UsageFailure(m), failure: (m) => new CliFailure(m) });
      case "sfs":
        return await sfsCommand(rest, {
          cluster(dir) {
            const cluster = readCluster(dir);
            if (cluster === undefined) return `no cluster in ${dir} (no cluster.json; pk up makes one)`;
            return { token: cluster.token, nodes: cluster.nodes.filter((n) => livePids(n).length > 0).map((n) => ({ id: n.id, name: n.name, api: n.api, data: n.data })) };
          },
          runLine: (api, token, line, idleMs, out) => runLine(api, token, line, idleMs, out),
          usage: (m) => new UsageFailure(m),
          failure: (m) => new CliFailure(m),
        });
      case "service":
        return await service(rest);
      default:
        throw new UsageFailure(`unknown command ${JSON.stringify(command.slice(0, 40))}`);
    }
  } catch (error) {
    // With --json an error is a JSON document on stdout too (the message stays on stderr).
    const json = rest.includes("--json");
    if (json && (error instanceof UsageFailure || isParseArgsError(error) || error instanceof CliFailure || error instanceof NodeStartError)) {
      printJson({ ok: false, error: (error as Error).message }, 1);
    }
    if (error instanceof UsageFailure || isParseArgsError(error)) {
      process.stderr.write(`pk${command !== undefined && !command.startsWith("-") ? ` ${command.slice(0, 40)}` : ""}: ${(error as Error).message}\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof CliFailure || error instanceof NodeStartError) {
      process.stderr.write(`pk ${command ?? ""}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

/** An expected failure: one line on stderr, exit code 1. */
class CliFailure extends Error {
  override name = "CliFailure";
}

function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_");
}

function parse<T extends ParseArgsConfig["options"]>(args: string[], options: T, allowPositionals = false) {
  refuseTokenArgument(args, options);
  return parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals });
}

/** Refuses `--token T` / `--token=T`: a command line is readable by every user of the machine. */
function refuseTokenArgument(args: string[], options: ParseArgsConfig["options"]): void {
  const { tokens } = parseArgs({ args, options: { ...options, token: { type: "string" } }, strict: false, allowPositionals: true, tokens: true });
  if (tokens.some((token) => token.kind === "option" && token.name === "token")) {
    throw new UsageFailure("--token is not accepted: a command line is readable by every user of this machine (ps, /proc); " +
      "give the token with --token-file FILE (mode 0600) or the environment variable PK_TOKEN");
  }
}

/** The token in `path` (pk node and pk shell --token-file): one line, its surrounding space trimmed. */
function readTokenFile(path: string): string {
  let text: string;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new CliFailure(`--token-file ${path} is not a regular file`);
    if (stat.size > LIMITS.api.tokenFileBytesMax) throw new CliFailure(`--token-file ${path} is over ${LIMITS.api.tokenFileBytesMax} bytes: it should hold just the token`);
    if ((stat.mode & 0o077) !== 0) {
      process.stderr.write(`pk: warning: --token-file ${path} is readable by other users (mode ${(stat.mode & 0o777).toString(8)}); chmod 600 it\n`);
    }
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof CliFailure) throw error;
    throw new CliFailure(`cannot read --token-file ${path}: ${(error as Error).message}`);
  }
  const token = text.trim();
  if (token === "") throw new CliFailure(`--token-file ${path} is empty`);
  if (/\s/.test(token)) throw new CliFailure(`--token-file ${path} holds more than the token (whitespace inside)`);
  return token;
}

// ---------------------------------------------------------------------------------------------
// pk node

async function nodeCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {
    data: { type: "string" },
    listen: { type: "string" },
    advertise: { type: "string" },
    api: { type: "string" },
    join: { type: "string", multiple: true },
    "token-file": { type: "string" },
    "public-name": { type: "string", multiple: true },
    role: { type: "string" },
    "owner-key": { type: "string" },
    "invite-file": { type: "string" },
    name: { type: "string" },
    "no-regenerate": { type: "boolean" },
    "no-discover": { type: "boolean" },
    "discover-port": { type: "string" },
    mind: { type: "string", multiple: true },
    "mind-model": { type: "string" },
    "mind-embed-model": { type: "string" },
    "mind-key-file": { type: "string" },
    "mind-name": { type: "string" },
    supervise: { type: "boolean" },
    contribute: { type: "string" },
    "cpu-cap": { type: "string" },
    "memory-cap": { type: "string" },
    "bandwidth-cap": { type: "string" },
    "min-battery": { type: "string" },
  });
  if (values.help === true) return printUsage();
  if (values.data === undefined) throw new UsageFailure("--data DIR is required");
  const contribution = contributionFromFlags({
    contribute: values.contribute, cpuCap: values["cpu-cap"], memoryCap: values["memory-cap"], bandwidthCap: values["bandwidth-cap"], minBattery: values["min-battery"],
  });
  if (typeof contribution === "string") throw new UsageFailure(contribution);
  if (values.supervise === true) {
    // The supervisor runs the node as its child, with the same arguments (src/cli/supervise.ts).
    return await new Supervisor(args.filter((a) => a !== "--supervise"), resolve(values.data), superviseOptions(process.env)).run();
  }
  const supervisor = connectSupervisor(resolve(values.data));
  const role = values.role ?? "core";
  if (role !== "core" && role !== "contributor") throw new UsageFailure(`--role must be core or contributor, got ${JSON.stringify(role)}`);
  const token = values["token-file"] !== undefined ? readTokenFile(values["token-file"]) : undefined;
  const invite = values["invite-file"] !== undefined ? readInviteFile(values["invite-file"]) : process.env["PK_INVITE"]?.trim() || undefined;
  const node = await runNode({
    data: values.data,
    role,
    join: values.join ?? [],
    ownProcess: true,
    regenerate: values["no-regenerate"] !== true,
    discover: values["no-discover"] !== true,
    ...(values["discover-port"] !== undefined ? { discoverPort: parsePort(values["discover-port"], "--discover-port") } : {}),
    ...(values.listen !== undefined ? { listen: values.listen } : {}),
    ...(values.advertise !== undefined ? { advertise: values.advertise } : {}),
    ...(values.api !== undefined ? { api: values.api } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(invite !== undefined ? { invite } : {}),
    ...(values["owner-key"] !== undefined ? { ownerKey: values["owner-key"] } : {}),
    ...(values["public-name"] !== undefined ? { publicNames: values["public-name"] } : {}),
    ...(values.name !== undefined ? { name: values.name } : {}),
    minds: { mind: values.mind, mindModel: values["mind-model"], mindEmbedModel: values["mind-embed-model"], mindKeyFile: values["mind-key-file"], mindName: values["mind-name"] },
    ...(supervisor !== undefined ? { supervisor } : {}),
    contribution,
  });
  supervisor?.ready();
  // A node that joins a cluster shows how far it is until it is a member and has caught up.
  const watch = (values.join ?? []).length > 0 || invite !== undefined ? watchJoin(node) : undefined;
  await node.stopped;
  watch?.stop();
  return 0;
}

/** Milliseconds between two looks at a joining node. */
const JOIN_POLL_MS = 100;
/**
 * Milliseconds a node may stay a member outside the Raft configuration before the join display
 * ends: a cluster whose voters and learners are full keeps the newest members out of Raft.
 */
const JOIN_MEMBER_ONLY_MS = 60_000;
/** Milliseconds the join display lasts at most (it never spams a node's log). */
const JOIN_WATCH_MS = 10 * 60_000;

/**
 * Where a joining node is, in stages (docs/protocols/progress.md): 0 reaching the cluster; 1 a
 * member (SWIM sees another member alive); 2 in the Raft configuration with a leader; 3 caught up
 * (it has applied every entry the leader had committed when it joined the configuration).
 */
export function joinStage(status: NodeStatusBody, caughtUpTo: number | undefined): { stage: number; text: string } {
  const others = status.members.filter((m) => m.id !== status.id && m.state === "alive").length;
  if (others === 0) return { stage: 0, text: "reaching the cluster" };
  const raft = status.raft;
  const inConfiguration = raft.voters.includes(status.id) || raft.learners.includes(status.id);
  if (!inConfiguration || raft.leader === null) return { stage: 1, text: `member, ${others + 1} alive, not in Raft yet` };
  const target = caughtUpTo ?? raft.commitIndex;
  if (raft.appliedIndex < target || target === 0) return { stage: 2, text: `${raft.state}, applied ${raft.appliedIndex}/${target}` };
  return { stage: 3, text: `${raft.state}, caught up at entry ${raft.appliedIndex}, ${others + 1} alive, mode ${status.mode}` };
}

function watchJoin(node: RunningNode): { stop(): void } {
  const bar = stderrProgress("join", "stages", 3);
  let caughtUpTo: number | undefined;
  const started = Date.now();
  let memberSince: number | undefined;
  const timer = setInterval(() => {
    const status = statusOf(node.kernel);
    if (caughtUpTo === undefined && (status.raft.voters.includes(status.id) || status.raft.learners.includes(status.id)) && status.raft.commitIndex > 0) {
      caughtUpTo = status.raft.commitIndex;
    }
    const { stage, text } = joinStage(status, caughtUpTo);
    bar.update(stage, 3, text);
    memberSince = stage === 1 ? (memberSince ?? Date.now()) : undefined;
    if (stage === 3) {
      clearInterval(timer);
      bar.finish("joined");
    } else if (memberSince !== undefined && Date.now() - memberSince > JOIN_MEMBER_ONLY_MS) {
      clearInterval(timer);
      bar.finish("a member, outside the Raft configuration (its voters and learners are full)");
    } else if (Date.now() - started > JOIN_WATCH_MS) {
      clearInterval(timer);
      bar.finish(`not caught up after ${JOIN_WATCH_MS / 60_000} min (see pk shell -c raft)`);
    }
  }, JOIN_POLL_MS);
  return {
    stop() {
      clearInterval(timer);
      bar.finish("stopped before it had joined");
    },
  };
}

/** An invite code from a file (it carries the cluster token: never on a command line). */
function readInviteFile(path: string): string {
  try {
    const stat = statSync(path);
    if (!stat.isFile() || stat.size > LIMITS.trust.inviteCodeCharsMax) throw new CliFailure(`--invite-file ${path} is not a file holding an invite code`);
    return readFileSync(path, "utf8").trim();
  } catch (error) {
    if (error instanceof CliFailure) throw error;
    throw new CliFailure(`cannot read --invite-file ${path}: ${(error as Error).message}`);
  }
}

function parsePort(value: string, what: string): number {
  const port = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || port < 1 || port > 65535) throw new UsageFailure(`${what} must be a port number in 1-65535, got ${JSON.stringify(value.slice(0, 40))}`);
  return port;
}

function printUsage(): number {
  process.stdout.write(`${USAGE}\n`);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// cluster.json

const ClusterNodeSchema = Type.Object({
  id: Type.String(),
  /** null once `pk down` stopped it. */
  pid: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { expected: "a positive integer or null" }),
  listen: Type.String(),
  api: Type.String(),
  data: Type.String(),
  argv: Type.Array(Type.String(), { minItems: 2, expected: "an array of at least 2 strings (the node's command line)" }),
  name: Type.Optional(Type.String()),
  state: Type.Optional(Type.Union([Type.Literal("running"), Type.Literal("stopped")], { expected: "\"running\" or \"stopped\"" })),
});
const ClusterFileSchema = Type.Object({
  token: Type.String({ minLength: 1, expected: "a non-empty string" }),
  nodes: Type.Array(ClusterNodeSchema, { maxItems: UP_NODES_MAX, expected: `an array of at most ${UP_NODES_MAX} nodes` }),
});
export type ClusterNode = Static<typeof ClusterNodeSchema>;
export type ClusterFile = Static<typeof ClusterFileSchema>;
const ClusterFileCheck = TypeCompiler.Compile(ClusterFileSchema);

/**
 * The first thing wrong with a would-be cluster file, as "where: what", e.g.
 * `nodes[0].pid: expected a positive integer or null, got "12"` or `token: missing`.
 */
function clusterFileProblem(value: unknown): string | undefined {
  const error = ClusterFileCheck.Errors(value).First();
  if (error === undefined) return undefined;
  // JSON pointer "/nodes/0/pid" → "nodes[0].pid"; the root is "the file".
  const where = error.path === ""
    ? "the file"
    : error.path.slice(1).split("/").map((part) => part.replaceAll("~1", "/").replaceAll("~0", "~"))
      .map((part, i) => (/^[0-9]+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`)).join("");
  if (error.type === ValueErrorType.ObjectRequiredProperty) return `${where}: missing`;
  const expected: unknown = error.schema["expected"];
  const what = typeof expected === "string" ? `expected ${expected}` : error.message.replace(/^Expected/, "expected");
  const shown = JSON.stringify(error.value) ?? String(error.value);
  return `${where}: ${what}, got ${shown.length > 40 ? `${shown.slice(0, 40)}…` : shown}`;
}

function clusterPath(dir: string): string {
  return join(dir, "cluster.json");
}

/** The cluster file in `dir`, undefined if there is none; a malformed one is an error. */
export function readCluster(dir: string): ClusterFile | undefined {
  const path = clusterPath(dir);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliFailure(`cannot read ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliFailure(`${path} is not valid JSON; move it away to start over`);
  }
  if (!ClusterFileCheck.Check(parsed)) {
    throw new CliFailure(`${path} is not a cluster file (${clusterFileProblem(parsed) ?? "invalid"}); move it away to start over`);
  }
  return parsed;
}

function writeCluster(dir: string, cluster: ClusterFile): void {
  const path = clusterPath(dir);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(cluster, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

// ---------------------------------------------------------------------------------------------
// Processes

/**
 * Whether `pid` is a live process running the node of `dataDir`. On Linux the command line is
 * checked too, so a pid reused by an unrelated process after a crash is never signalled; a zombie
 * (exited, not yet reaped) counts as gone.
 */
export function isNodeProcess(pid: number, dataDir: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (process.platform !== "linux") return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return false;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (cmdline.includes(dataDir)) return true;
    return dataArgResolved(pid, cmdline) === resolve(dataDir);
  } catch {
    // /proc unreadable (hardened kernels): trust kill(pid, 0).
    return existsSync(`/proc/${pid}`) || !existsSync("/proc/self");
  }
}

/** A `pk node` process's --data resolved against its working directory (a node started by hand with a relative path). */
function dataArgResolved(pid: number, cmdline: readonly string[]): string | undefined {
  if (!cmdline.includes("node")) return undefined;
  const at = cmdline.findIndex((arg) => arg === "--data" || arg.startsWith("--data="));
  const arg = cmdline[at];
  const given = arg === undefined ? undefined : arg.startsWith("--data=") ? arg.slice("--data=".length) : cmdline[at + 1];
  if (given === undefined || given === "") return undefined;
  try {
    return resolve(readlinkSync(`/proc/${pid}/cwd`), given);
  } catch {
    return undefined;
  }
}

/** The pid a node wrote to DATA/pid when it started (src/node/run.ts), if any. */
function pidFileOf(dataDir: string): number | undefined {
  try {
    const text = readFileSync(join(dataDir, "pid"), "utf8").trim();
    return /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The live processes of a node of cluster.json: the one `pk up` started (its recorded pid) and the
 * one that wrote DATA/pid at start, which differs when the node was restarted by hand from its
 * argv; each checked by isNodeProcess, so a stale pid reused by another process is never listed.
 */
export function livePids(node: Pick<ClusterNode, "pid" | "data">): number[] {
  const pids = new Set<number>();
  for (const pid of [node.pid, pidFileOf(node.data)]) {
    if (pid !== null && pid !== undefined && isNodeProcess(pid, node.data)) pids.add(pid);
  }
  return [...pids];
}

function pkBinPath(): string {
  for (const relative of ["../../bin/pk.js", "../../../bin/pk.js"]) {
    const path = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new CliFailure("cannot find bin/pk.js next to this installation");
}

/** Whether both TCP and UDP can bind host:port right now. */
export async function portFree(host: string, port: number): Promise<boolean> {
  const tcp = await new Promise<boolean>((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => done(true)));
  });
  if (!tcp) return false;
  return new Promise<boolean>((done) => {
    const socket = createSocket("udp4");
    socket.once("error", () => {
      socket.close();
      done(false);
    });
    socket.bind({ address: host, port, exclusive: true }, () => socket.close(() => done(true)));
  });
}

/** A port free for both TCP and UDP that the OS picked. */
async function osPort(host: string, taken: ReadonlySet<number>): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((done, fail) => {
      const server = createServer();
      server.once("error", fail);
      server.listen({ host, port: 0 }, () => {
        const address = server.address();
        const chosen = typeof address === "object" && address !== null ? address.port : 0;
        server.close(() => done(chosen));
      });
    });
    if (port > 0 && !taken.has(port) && await portFree(host, port)) return port;
  }
  throw new CliFailure("the OS offered no free port usable for both TCP and UDP");
}

async function pickPort(host: string, preferred: readonly number[], taken: Set<number>): Promise<number> {
  for (const port of preferred) {
    if (port > 0 && port <= 65535 && !taken.has(port) && await portFree(host, port)) {
      taken.add(port);
      return port;
    }
  }
  const port = await osPort(host, taken);
  taken.add(port);
  return port;
}

interface RaftSummary {
  readonly state: string;
  readonly term: number;
  readonly leader: string | null;
  readonly voters: readonly string[];
  readonly learners: readonly string[];
}

interface StatusSummary {
  readonly id: string;
  readonly members: ReadonlyArray<{ readonly id: string; readonly state: string }>;
  readonly raft?: RaftSummary;
}

async function fetchStatus(api: string, token: string | undefined, timeoutMs = 2_000): Promise<StatusSummary> {
  const response = await fetch(`${api}/v1/status`, {
    headers: token === undefined ? {} : { Authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = await response.json() as unknown;
  if (!response.ok) throw new Error(errorMessage(body) ?? `HTTP ${response.status}`);
  const id = (body as { id?: unknown }).id;
  const members = (body as { members?: unknown }).members;
  if (typeof id !== "string" || !Array.isArray(members)) throw new Error("GET /v1/status answered an unexpected body");
  const raft = (body as { raft?: Partial<RaftSummary> | null }).raft;
  const raftOk = typeof raft === "object" && raft !== null && typeof raft.state === "string" && typeof raft.term === "number" &&
    (raft.leader === null || typeof raft.leader === "string") && Array.isArray(raft.voters) && Array.isArray(raft.learners);
  return { id, members: members as StatusSummary["members"], ...(raftOk ? { raft: raft as RaftSummary } : {}) };
}

function errorMessage(body: unknown): string | undefined {
  const message = (body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof message === "string" ? message : undefined;
}

function tail(path: string, lines: number): string {
  try {
    const text = readFileSync(path, "utf8");
    return text.trimEnd().split("\n").slice(-lines).map((line) => `    ${line}`).join("\n");
  } catch {
    return "";
  }
}

// ---------------------------------------------------------------------------------------------
// Formation: when `pk up` hands the cluster over

/** What `pk up` saw of one node while the cluster forms; status undefined when it did not answer. */
export interface NodeLook {
  readonly status: StatusSummary | undefined;
  /** The `config` line of the node's `raft` command: "voters=(a b c)", "voters=(a b c)&&(a)" while joint. */
  readonly config: string | undefined;
}

/** Voters and learners the leader's voter management settles at for `cores` core nodes. */
export function settledConfiguration(cores: number): { voters: number; learners: number } {
  let voters = Math.min(CONSENSUS_DEFAULTS.votersMax, cores);
  if (voters % 2 === 0) voters--;
  return { voters: Math.max(voters, 0), learners: Math.min(cores - Math.max(voters, 0), CONSENSUS_DEFAULTS.learnersMax) };
}

/**
 * Whether a local cluster of the core nodes `ids` has formed, and how far it got, for people:
 * "3/3 alive, raft voters 1/3, learners 2/0, leader n1". Formed: every node answers and sees
 * every node alive; one leader, named by every node of the configuration; the configuration out
 * of any joint state, with the voters the leader grows it to (votersMax, kept odd; 3 for 3 nodes)
 * and the others as learners, and every voter holding that same configuration — so losing any
 * one node of 3 leaves a majority of voters that elects a new leader.
 */
export function formation(ids: readonly string[], looks: readonly NodeLook[], names: ReadonlyMap<string, string> = new Map()): { formed: boolean; summary: string } {
  const n = ids.length;
  const want = settledConfiguration(n);
  const name = (id: string): string => names.get(id) ?? id.slice(0, 8);
  const known = new Set(ids);
  const answering = looks.filter((look) => look.status !== undefined);
  const alive = looks.length === 0 ? 0 : Math.min(...looks.map((look) => look.status?.members.filter((m) => m.state === "alive" && known.has(m.id)).length ?? 0));
  const leaderLook = answering
    .filter((look) => look.status?.raft?.state === "leader")
    .sort((a, b) => (b.status?.raft?.term ?? 0) - (a.status?.raft?.term ?? 0))[0];
  const raft = leaderLook?.status?.raft;
  const parts = [`${alive}/${n} alive`];
  if (answering.length < n) parts.push(`${n - answering.length} not answering`);
  if (raft === undefined || leaderLook?.status === undefined) {
    parts.push("raft: no leader yet");
    return { formed: false, summary: parts.join(", ") };
  }
  const leader = leaderLook.status.id;
  const joint = leaderLook.config === undefined || /&&|learners_next/.test(leaderLook.config);
  const voters = [...raft.voters].sort();
  const inConfiguration = new Set([...raft.voters, ...raft.learners]);
  const followers = answering.filter((look) => inConfiguration.has(look.status?.id ?? ""));
  const following = followers.filter((look) => look.status?.raft?.leader === leader).length;
  const votersAgree = answering
    .filter((look) => raft.voters.includes(look.status?.id ?? ""))
    .every((look) => look.config !== undefined && !/&&|learners_next/.test(look.config) &&
      JSON.stringify([...(look.status?.raft?.voters ?? [])].sort()) === JSON.stringify(voters));
  parts.push(`raft voters ${raft.voters.length}/${want.voters}${joint ? " (changing)" : ""}`);
  if (want.learners > 0 || raft.learners.length > 0) parts.push(`learners ${raft.learners.length}/${want.learners}`);
  parts.push(`leader ${name(leader)} (term ${raft.term})`);
  if (following < inConfiguration.size) parts.push(`${following}/${inConfiguration.size} follow it`);
  const formed = answering.length === n && alive === n && !joint && raft.voters.length === want.voters &&
    raft.learners.length === want.learners && following === inConfiguration.size && votersAgree;
  return { formed, summary: parts.join(", ") };
}

/** One look at a node: its status and, if it votes or leads, its Raft configuration line. */
async function lookAt(api: string, token: string): Promise<NodeLook> {
  let status: StatusSummary;
  try {
    status = await fetchStatus(api, token, 1_000);
  } catch {
    return { status: undefined, config: undefined };
  }
  if (status.raft === undefined || (status.raft.state !== "leader" && status.raft.state !== "follower")) return { status, config: undefined };
  const answer = await runLine(api, token, "raft", 2_000);
  const config = answer.ok ? /^config\s+(.*)$/m.exec(answer.output)?.[1]?.trim() : undefined;
  return { status, config };
}

/**
 * Waits until the cluster has formed (see formation()), showing progress on stderr (one line
 * rewritten in place on a terminal, else a line per change). Throws a CliFailure at `timeoutMs`,
 * or as soon as `exited` names a node process that ended.
 */
async function waitFormed(
  nodes: ReadonlyArray<{ readonly id: string; readonly name: string; readonly api: string; readonly log: string }>,
  token: string, timeoutMs: number, exited: () => { name: string; log: string; how: string } | undefined,
): Promise<string> {
  const started = Date.now();
  const ids = nodes.map((node) => node.id);
  const names = new Map(nodes.map((node) => [node.id, node.name]));
  const tty = process.stderr.isTTY === true;
  let shown = "";
  const clear = (): void => {
    if (tty && shown !== "") process.stderr.write("\r\x1b[K");
  };
  for (;;) {
    const looks = await Promise.all(nodes.map((node) => lookAt(node.api, token)));
    const { formed, summary } = formation(ids, looks, names);
    if (formed) {
      clear();
      return summary;
    }
    const gone = exited();
    if (gone !== undefined) {
      clear();
      throw new CliFailure(`node ${gone.name} exited (${gone.how}) while the cluster formed; see ${gone.log}\n${tail(gone.log, 10)}`);
    }
    const waited = Date.now() - started;
    if (waited > timeoutMs) {
      clear();
      throw new CliFailure(`the cluster did not form within ${timeoutMs / 1000} s (${summary})`);
    }
    if (summary !== shown) {
      process.stderr.write(tty ? `\r\x1b[Kwaiting for the cluster to form: ${summary}` : `waiting for the cluster to form: ${summary}\n`);
      shown = summary;
    }
    await sleep(FORM_POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// pk up

async function upCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {
    nodes: { type: "string", short: "n" },
    dir: { type: "string" },
    detach: { type: "boolean" },
    "base-port": { type: "string" },
    timeout: { type: "string" },
  });
  if (values.help === true) return printUsage();
  const timeoutS = Number(values.timeout ?? UP_FORM_TIMEOUT_S);
  if (values.timeout !== undefined && (!/^[0-9]+(\.[0-9]+)?$/.test(values.timeout) || !(timeoutS > 0) || timeoutS > 3_600)) {
    throw new UsageFailure(`--timeout must be a number of seconds in (0, 3600], got ${JSON.stringify(values.timeout.slice(0, 40))}`);
  }
  // Node i prefers listen port base + i and API port base + 100 + i (7401…, 7501… by default).
  const base = values["base-port"] === undefined ? LISTEN_BASE_PORT : parsePort(values["base-port"], "--base-port");
  if (base + 100 + UP_NODES_MAX > 65535) throw new UsageFailure(`--base-port must leave room for ${UP_NODES_MAX} nodes: at most ${65535 - 100 - UP_NODES_MAX}`);
  const count = Number(values.nodes ?? "3");
  if (!Number.isInteger(count) || count < 1 || count > UP_NODES_MAX) {
    throw new UsageFailure(`--nodes must be an integer from 1 to ${UP_NODES_MAX}, got ${JSON.stringify(values.nodes)}`);
  }
  const dir = resolve(values.dir ?? DEFAULT_DIR);
  const detach = values.detach === true;
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  const existing = readCluster(dir);
  if (existing !== undefined) {
    const alive = existing.nodes.filter((node) => livePids(node).length > 0);
    if (alive.length > 0) {
      process.stdout.write(`a cluster is already running in ${dir}: ${alive.length} of ${existing.nodes.length} nodes alive (stop it with: pk down --dir ${dir})\n`);
      const first = alive[0];
      if (first !== undefined) await printDashboard(first.api, existing.token);
      if (detach || first === undefined) return 0;
      return interactiveShell(first.api, existing.token, dir);
    }
  }

  const token = existing?.token ?? makeToken();
  const bin = pkBinPath();
  const host = "127.0.0.1";
  const taken = new Set<number>();
  const planned: Array<{ name: string; data: string; listen: string; api: string; argv: string[]; log: string }> = [];
  for (let i = 1; i <= count; i++) {
    const before = existing?.nodes[i - 1];
    const previousListen = before === undefined ? 0 : safePort(before.listen);
    const previousApi = before === undefined ? 0 : safePort(before.api.replace(/^https?:\/\//, ""));
    const listenPort = await pickPort(host, [previousListen, base + i], taken);
    const apiPort = await pickPort(host, [previousApi, base + (API_BASE_PORT - LISTEN_BASE_PORT) + i], taken);
    const name = `n${i}`;
    const data = join(dir, name);
    const listen = `${host}:${listenPort}`;
    const first = planned[0];
    // No token in argv (readable by every user): the node reads DATA/token, written below, and
    // so does a node restarted by hand from this argv.
    const argv = [
      process.execPath, bin, "node", "--data", data, "--listen", listen, "--api", `${host}:${apiPort}`,
      "--name", name, ...(first !== undefined ? ["--join", first.listen] : ["--no-discover"]),
      // One machine's nodes share its battery: on an unplugged laptop they must not decline each
      // other's work (ADR 027's policy is for a machine lent to a cluster of others).
      "--contribute", "always",
    ];
    planned.push({ name, data, listen, api: `http://${host}:${apiPort}`, argv, log: join(data, "node.log") });
  }

  const started = Date.now();
  const children: Array<{ pid: number; exited: { code: number | null; signal: string | null } | undefined }> = [];
  // Each node's identity is made (or read) here, so readiness below can insist on the right id: a
  // port answered by some other process or node must not pass for the node just started.
  const expectedIds: string[] = [];
  // The nodes get the token from DATA/token alone: a PK_TOKEN in pk up's environment (another
  // cluster's, perhaps) would take precedence over it, so it is not passed on.
  const env = { ...process.env };
  delete env["PK_TOKEN"];
  for (const plan of planned) {
    mkdirSync(plan.data, { recursive: true, mode: 0o700 });
    expectedIds.push(loadOrCreateIdentity(plan.data).id);
    writeTokenFile(join(plan.data, "token"), token);
    // Every node pk up starts is core and keeps the cluster's owner key (DIR/owner.key, made once).
    provisionOwnerKey(dir, plan.data);
    const fd = openSync(plan.log, "a", 0o600);
    try {
      const child = spawn(plan.argv[0] as string, plan.argv.slice(1), { detached: true, stdio: ["ignore", fd, fd], env });
      const record: (typeof children)[number] = { pid: child.pid ?? 0, exited: undefined };
      child.on("error", () => {
        record.exited = { code: null, signal: "spawn failed" };
      });
      child.on("exit", (code, signal) => {
        record.exited = { code, signal };
      });
      child.unref();
      children.push(record);
    } finally {
      closeSync(fd);
    }
  }

  const stopStarted = async (): Promise<void> => {
    for (const [i, child] of children.entries()) {
      const data = planned[i]?.data;
      if (child.pid > 0 && data !== undefined && isNodeProcess(child.pid, data)) process.kill(child.pid, "SIGTERM");
    }
    await sleep(500);
    for (const [i, child] of children.entries()) {
      const data = planned[i]?.data;
      if (child.pid > 0 && data !== undefined && isNodeProcess(child.pid, data)) process.kill(child.pid, "SIGKILL");
    }
  };

  let ids: string[];
  try {
    ids = await Promise.all(planned.map(async (plan, i) => {
      const deadline = Date.now() + UP_READY_TIMEOUT_MS;
      let lastError = "no answer yet";
      for (;;) {
        const exited = children[i]?.exited;
        if (exited !== undefined) {
          throw new CliFailure(`node ${plan.name} exited (${exited.signal ?? `code ${exited.code}`}) before it was ready; see ${plan.log}\n${tail(plan.log, 10)}`);
        }
        if (Date.now() > deadline) {
          throw new CliFailure(`node ${plan.name} did not answer ${plan.api}/v1/status within ${UP_READY_TIMEOUT_MS / 1000} s (${lastError}); see ${plan.log}\n${tail(plan.log, 10)}`);
        }
        try {
          const { id } = await fetchStatus(plan.api, undefined, 1_000);
          if (id === expectedIds[i]) return id;
          lastError = `${plan.api} is answered by node ${id}, not by ${plan.name} (${expectedIds[i] ?? "?"})`;
        } catch (error) {
          lastError = (error as Error).message;
        }
        await sleep(100);
      }
    }));
  } catch (error) {
    await stopStarted();
    throw error;
  }

  const cluster: ClusterFile = {
    token,
    nodes: planned.map((plan, i) => ({
      id: ids[i] ?? "", pid: children[i]?.pid ?? 0, listen: plan.listen, api: plan.api, data: plan.data,
      argv: plan.argv, name: plan.name, state: "running",
    })),
  };
  writeCluster(dir, cluster);
  const rows = cluster.nodes.map((node) => `  ${node.name ?? ""}  ${node.id}  pid ${node.pid}  listen ${node.listen}  api ${node.api}`);
  process.stdout.write(`started ${count} node${count === 1 ? "" : "s"} in ${Date.now() - started} ms (${join(dir, "cluster.json")})\n${rows.join("\n")}\n`);

  // Hand over a formed cluster, not processes that merely answer: until every node sees the
  // others and the leader has made them voters, the first node is the only voter, and losing it
  // leaves no leader.
  const formedSummary = await waitFormed(
    planned.map((plan, i) => ({ id: ids[i] ?? "", name: plan.name, api: plan.api, log: plan.log })), token, timeoutS * 1000,
    () => {
      const i = children.findIndex((child) => child.exited !== undefined);
      const child = children[i];
      const plan = planned[i];
      return child?.exited === undefined || plan === undefined ? undefined
        : { name: plan.name, log: plan.log, how: child.exited.signal ?? `code ${child.exited.code}` };
    },
  ).catch((error: unknown) => {
    if (!(error instanceof CliFailure)) throw error;
    throw new CliFailure(`${error.message}\nits nodes are still running: look with pk shell --dir ${dir} -c "raft", ` +
      `logs in ${join(dir, "n*", "node.log")}; stop them with: pk down --dir ${dir}`);
  });
  process.stdout.write(`cluster formed ${Date.now() - started} ms after start: ${formedSummary}\n`);
  const firstNode = cluster.nodes[0];
  if (firstNode !== undefined) await printDashboard(firstNode.api, token);
  if (detach) {
    process.stdout.write(`stop it with: pk down --dir ${dir}\n`);
    return 0;
  }
  const first = cluster.nodes[0];
  const code = first === undefined ? 0 : await interactiveShell(first.api, token, dir);
  process.stdout.write(`the cluster is still running; stop it with: npm run pk -- down${values.dir !== undefined ? ` --dir ${dir}` : ""}  (or: pk down --dir ${dir})\n`);
  return code;
}

/** Writes the cluster token to a node's DATA/token, mode 0600 (also when the file was there). */
function writeTokenFile(path: string, token: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/**
 * A one-time dashboard login from the node at `api` (POST /v1/login-code): the URL that logs a
 * browser in, as notebook servers print one; undefined with the reason when the node refused.
 */
async function loginUrl(api: string, token: string): Promise<{ url: string; expiresInS: number } | { error: string }> {
  try {
    const response = await fetch(`${api}/v1/login-code`, { method: "POST", headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5_000) });
    const body = await response.json() as { url?: unknown; expiresInS?: unknown };
    if (!response.ok) return { error: errorMessage(body) ?? `HTTP ${response.status}` };
    if (typeof body.url !== "string" || typeof body.expiresInS !== "number") return { error: "unexpected answer to POST /v1/login-code" };
    return { url: body.url, expiresInS: body.expiresInS };
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message;
    return { error: cause ?? (error as Error).message };
  }
}

async function printDashboard(api: string, token: string): Promise<void> {
  const login = await loginUrl(api, token);
  if ("error" in login) {
    process.stderr.write(`pk: no dashboard login from ${api}: ${login.error}\n`);
    return;
  }
  process.stdout.write(`dashboard: ${login.url}  (a one-time login, valid ${Math.round(login.expiresInS / 60)} min; a new one: pk dashboard)\n`);
}

function safePort(hostPort: string): number {
  try {
    return parseHostPort(hostPort, "address").port;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------------------------
// pk down

async function downCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { dir: { type: "string" }, json: { type: "boolean" } });
  if (values.help === true) return printUsage();
  const json = values.json === true;
  const dir = resolve(values.dir ?? DEFAULT_DIR);
  const cluster = readCluster(dir);
  if (cluster === undefined) {
    if (json) return printJson({ ok: true, dir, cluster: false, stopped: [] }, 0);
    process.stdout.write(`no cluster in ${dir} (no cluster.json); nothing to stop\n`);
    return 0;
  }
  // Each node's live processes: the one pk up started, or the one restarted by hand (DATA/pid).
  const running = cluster.nodes.map((node) => ({ node, pids: livePids(node) })).filter((entry) => entry.pids.length > 0);
  for (const entry of running) signal(entry.pids, "SIGTERM");
  let left = await waitGone(running, DOWN_GRACE_MS);
  if (left.length > 0) {
    process.stderr.write(`pk down: ${left.length} node(s) still running after ${DOWN_GRACE_MS / 1000} s, sending SIGKILL\n`);
    for (const entry of left) signal(entry.pids, "SIGKILL");
    left = await waitGone(left, 2_000);
  }
  // Exited nodes are zombies until their parent (init, for nodes pk up started) reaps them; wait a
  // little for that so that on return no pid of the cluster exists any more.
  await waitReaped(running.flatMap((entry) => (left.includes(entry) ? [] : entry.pids)), REAP_WAIT_MS);
  const stillRunning = new Set(left.map((entry) => entry.node.id));
  writeCluster(dir, {
    token: cluster.token,
    nodes: cluster.nodes.map((node) => (stillRunning.has(node.id) ? node : { ...node, pid: null, state: "stopped" })),
  });
  if (left.length > 0) {
    throw new CliFailure(`could not stop ${left.map(({ node, pids }) => `${node.name ?? node.id} (pid ${pids.join(", ")})`).join(", ")}`);
  }
  if (json) return printJson({ ok: true, dir, cluster: true, stopped: running.map(({ node }) => ({ id: node.id, name: node.name ?? null })) }, 0);
  process.stdout.write(running.length === 0 ? `no node of ${dir} was running\n` : `stopped ${running.length} node${running.length === 1 ? "" : "s"}\n`);
  return 0;
}

function signal(pids: readonly number[], name: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }
}

async function waitReaped(pids: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const exists = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code !== "ESRCH";
    }
  };
  let left = pids.filter(exists);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(50);
    left = left.filter(exists);
  }
}

interface NodeProcesses {
  readonly node: ClusterNode;
  readonly pids: readonly number[];
}

/** The entries of which some process still runs after up to `timeoutMs`. */
async function waitGone(entries: readonly NodeProcesses[], timeoutMs: number): Promise<NodeProcesses[]> {
  const deadline = Date.now() + timeoutMs;
  const runs = (entry: NodeProcesses): boolean => entry.pids.some((pid) => isNodeProcess(pid, entry.node.data));
  let left = entries.filter(runs);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(50);
    left = left.filter(runs);
  }
  return left;
}

// ---------------------------------------------------------------------------------------------
// pk shell

interface ShellAnswer {
  readonly ok: boolean;
  readonly output: string;
}

/**
 * Runs one line on the node. With `out`, the answer is streamed (one JSON object per line) and what
 * the command says as it goes (chat) is handed to `out` at once; the node then has as long as the
 * stream keeps moving (an idle bound, not a total one).
 */
async function runLine(api: string, token: string | undefined, line: string, timeoutMs = SHELL_REQUEST_TIMEOUT_MS, out?: (chunk: string) => void): Promise<ShellAnswer> {
  let response: Response;
  const abort = new AbortController();
  let idle = setTimeout(() => abort.abort(new Error(`no answer in ${timeoutMs / 1000} s`)), timeoutMs);
  const moved = (): void => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(new Error(`the answer stalled for ${timeoutMs / 1000} s`)), timeoutMs);
  };
  try {
    try {
      response = await fetch(`${api}/v1/shell`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }) },
        body: JSON.stringify(out === undefined ? { line } : { line, stream: true }),
        signal: abort.signal,
      });
    } catch (error) {
      const cause = (error as { cause?: { message?: string } }).cause?.message;
      return { ok: false, output: `node unreachable at ${api}: ${cause ?? (error as Error).message}` };
    }
    let body: unknown;
    try {
      if (out !== undefined && response.ok && (response.headers.get("content-type") ?? "").startsWith("application/x-ndjson") && response.body !== null) {
        body = await readStreamedAnswer(response.body, out, moved);
      } else body = await response.json();
    } catch (error) {
      return { ok: false, output: abort.signal.aborted ? `node ${api}: ${(abort.signal.reason as Error).message}` : `node answered HTTP ${response.status} without JSON (${(error as Error).message})` };
    }
    if (!response.ok) return { ok: false, output: errorMessage(body) ?? `HTTP ${response.status}` };
    const { ok, output } = body as { ok?: unknown; output?: unknown };
    if (typeof ok !== "boolean" || typeof output !== "string") return { ok: false, output: "node answered an unexpected body" };
    return { ok, output };
  } finally {
    clearTimeout(idle);
  }
}

/** Reads a streamed shell answer: {"out"} lines to `out`, the last line's object returned. */
async function readStreamedAnswer(stream: ReadableStream<Uint8Array>, out: (chunk: string) => void, moved: () => void): Promise<unknown> {
  const decoder = new TextDecoder();
  let buffered = "";
  let last: unknown;
  for await (const piece of stream) {
    moved();
    buffered += decoder.decode(piece, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim() === "") continue;
      const object = JSON.parse(line) as { out?: unknown };
      if (typeof object.out === "string") out(object.out);
      else last = object;
    }
    if (buffered.length > LIMITS.httpBodyBytesMax) throw new Error("a streamed line is too long");
  }
  if (last === undefined) throw new Error("the stream ended without the answer");
  return last;
}

/**
 * The node `pk shell` and `pk dashboard` talk to and their credential: --api, else a running node
 * of D/cluster.json, else the default; the token from --token-file, else PK_TOKEN, else cluster.json.
 */
function target(values: { api?: string | undefined; "token-file"?: string | undefined; dir?: string | undefined }): { api: string; token: string | undefined; dir: string } {
  let api = values.api;
  let token = values["token-file"] !== undefined ? readTokenFile(values["token-file"]) : process.env["PK_TOKEN"]?.trim() || undefined;
  const dir = resolve(values.dir ?? DEFAULT_DIR);
  if (api === undefined || token === undefined) {
    const cluster = readCluster(dir);
    if (cluster !== undefined) {
      token ??= cluster.token;
      if (api === undefined) {
        const node = cluster.nodes.find((n) => livePids(n).length > 0) ?? cluster.nodes[0];
        api = node?.api;
      }
    }
  }
  api = (api ?? DEFAULT_API).replace(/\/+$/, "");
  if (!/^https?:\/\/[^\s/]+$/.test(api)) throw new UsageFailure(`--api must be a base URL like ${DEFAULT_API}, got ${JSON.stringify(api.slice(0, 80))}`);
  return { api, token, dir };
}

async function shellCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {
    api: { type: "string" },
    "token-file": { type: "string" },
    dir: { type: "string" },
    c: { type: "string", short: "c" },
    json: { type: "boolean" },
  });
  if (values.help === true) return printUsage();
  const json = values.json === true;
  if (json && values.c === undefined) throw new UsageFailure("--json goes with -c LINE");
  const { api, token, dir } = target(values);
  if (values.c !== undefined) {
    // Progress the command streams (pk-progress/1 lines) is drawn on stderr; with --json its other
    // streamed text goes to stderr too, so stdout holds the one JSON document.
    const streamed = new StreamedProgress((chunk) => (json ? process.stderr : process.stdout).write(chunk), (task, unit, total) => stderrProgress(task, unit, total, json));
    const answer = await runLine(api, token, json ? `${values.c} --json` : values.c, SHELL_REQUEST_TIMEOUT_MS, (chunk) => streamed.push(chunk));
    streamed.end(answer.ok ? "done" : "failed");
    if (json) return printJsonAnswer(answer);
    (answer.ok ? process.stdout : process.stderr).write(answer.output === "" ? "" : `${answer.output}\n`);
    return answer.ok ? 0 : 1;
  }
  return interactiveShell(api, token, dir);
}

/**
 * `pk shell --json -c LINE`: the node's JSON document on stdout, or {"ok": false, "error"} and
 * exit 1 (a failed command, an unreachable node, a command without --json output).
 */
function printJsonAnswer(answer: ShellAnswer): number {
  let document: unknown;
  if (answer.ok) {
    try {
      document = JSON.parse(answer.output);
    } catch {
      return printJson({ ok: false, error: "the node answered text, not JSON", output: answer.output.slice(0, 4096) }, 1);
    }
    return printJson(document, 0);
  }
  return printJson({ ok: false, error: answer.output }, 1);
}

/** One JSON document on stdout (`--json`), and the exit code. */
function printJson(value: unknown, code: number): number {
  process.stdout.write(`${JSON.stringify(value)}\n`);
  return code;
}

// ---------------------------------------------------------------------------------------------
// pk dashboard

async function dashboardCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {
    api: { type: "string" },
    "token-file": { type: "string" },
    dir: { type: "string" },
    json: { type: "boolean" },
  });
  if (values.help === true) return printUsage();
  const { api, token, dir } = target(values);
  if (token === undefined) throw new CliFailure(`no token: no cluster file in ${dir}; give it with --token-file FILE or PK_TOKEN`);
  const login = await loginUrl(api, token);
  if ("error" in login) throw new CliFailure(`no dashboard login from ${api}: ${login.error}`);
  if (values.json === true) return printJson({ url: login.url, expiresInS: login.expiresInS }, 0);
  process.stdout.write(`${login.url}\n`);
  return 0;
}

function loadHistory(path: string): string[] {
  try {
    const lines = readFileSync(path, "utf8").split("\n").filter((line) => line !== "" && line.length <= LIMITS.shellLineCharsMax);
    // readline keeps the newest first; the file keeps the oldest first.
    return lines.slice(-HISTORY_LINES_MAX).reverse();
  } catch {
    return [];
  }
}

function saveHistory(path: string, history: readonly string[]): void {
  try {
    const lines = history.slice(0, HISTORY_LINES_MAX).filter((line) => !line.includes("\n")).reverse();
    writeFileSync(path, lines.length === 0 ? "" : `${lines.join("\n")}\n`, { mode: 0o600 });
  } catch {
    // History is a convenience: a read-only home must not break the shell.
  }
}

async function interactiveShell(api: string, token: string | undefined, _dir: string): Promise<number> {
  let status: StatusSummary;
  try {
    status = await fetchStatus(api, token, 5_000);
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message;
    throw new CliFailure(`cannot reach a node at ${api}: ${cause ?? (error as Error).message}`);
  }
  const help = await runLine(api, token, "help");
  const names = help.ok ? [...help.output.matchAll(/^ {2}([a-z][a-z0-9-]*) {2,}/gm)].map((match) => match[1] as string) : [];
  const terminal = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const historyPath = join(homedir(), ".pk_history");
  const rl: Interface = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal,
    historySize: HISTORY_LINES_MAX,
    removeHistoryDuplicates: true,
    ...(terminal ? { history: loadHistory(historyPath) } : {}),
    completer: (line: string): [string[], string] => {
      const words = line.trimStart().split(/\s+/);
      if (words.length === 1) {
        const word = words[0] ?? "";
        const hits = [...names, "exit"].filter((name, i, all) => name.startsWith(word) && all.indexOf(name) === i);
        return [hits, word];
      }
      if (words.length === 2 && words[0] === "help") {
        const word = words[1] ?? "";
        return [names.filter((name) => name.startsWith(word)), word];
      }
      return [[], line];
    },
  });
  let history: readonly string[] = [];
  rl.on("history", (lines: string[]) => {
    history = lines;
  });
  rl.on("SIGINT", () => {
    // Ctrl-C abandons the line being typed, as in a login shell; Ctrl-D or exit leaves.
    rl.write(null, { ctrl: true, name: "e" });
    rl.write(null, { ctrl: true, name: "u" });
    process.stdout.write("^C\n");
    rl.prompt();
  });
  rl.setPrompt(`pk:${status.id.slice(0, 8)}> `);
  if (terminal) {
    process.stdout.write(`connected to ${status.id} at ${api}; "help" lists commands, "exit" or Ctrl-D leaves\n`);
    rl.prompt();
  }
  let failures = 0;
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === "exit" || line === "quit") break;
    if (line !== "") {
      const streamed = new StreamedProgress((chunk) => process.stdout.write(chunk), (task, unit, total) => stderrProgress(task, unit, total));
      const answer = await runLine(api, token, line, SHELL_REQUEST_TIMEOUT_MS, (chunk) => streamed.push(chunk));
      streamed.end(answer.ok ? "done" : "failed");
      if (!answer.ok) failures++;
      if (answer.output !== "") process.stdout.write(`${answer.output}\n`);
    }
    if (terminal) rl.prompt();
  }
  rl.close();
  if (terminal) {
    saveHistory(historyPath, history);
    process.stdout.write("\n");
  }
  return terminal || failures === 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// pk sim

async function simCommand(args: string[]): Promise<number> {
  // Loaded on demand, so the CLI works while the simulator is absent or being rebuilt.
  const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  const url = new URL(`../sim/cli${extension}`, import.meta.url);
  let module: { runSimCommand?: unknown };
  try {
    module = await import(url.href) as { runSimCommand?: unknown };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "ERR_MODULE_NOT_FOUND" && String((error as Error).message).includes(fileURLToPath(url))) {
      process.stderr.write("pk sim: simulator not available\n");
      return 1;
    }
    throw error;
  }
  const run = module.runSimCommand;
  if (typeof run !== "function") {
    process.stderr.write("pk sim: simulator not available (src/sim/cli has no runSimCommand)\n");
    return 1;
  }
  const code: unknown = await (run as (argv: string[]) => unknown)(args);
  return typeof code === "number" ? code : 0;
}
