// The kernel's own shell commands: help, ver, mem, ps, status, nodes, net, exit. Every other
// command is a subsystem's (its spec's `commands`, registry.ts). Each answers plain aligned text.
import { programsTable } from "./evolve/commands.ts";
import type { Mode } from "../core/body/degrade.ts";
import { LIMITS } from "../core/util/limits.ts";
import { WIRE_VERSION } from "../core/wire/envelope.ts";
import type { HostStats, NodeContext } from "./context.ts";
import { formatDuration, mib } from "./format.ts";
import { VERSION, type Kernel } from "./kernel.ts";
import { formatFields, formatTable, Shell, UsageError, type Command } from "./shell.ts";
import { DROP_REASONS, type MemberStatus, type NodeView } from "./view.ts";

export type { HostStats, NodeContext } from "./context.ts";

/** Rows `nodes` prints before it summarises the rest. */
export const NODES_ROWS_MAX = LIMITS.shell.nodesRowsMax;
/** Peers `net` lists RTTs for. */
export const RTT_ROWS_MAX = LIMITS.shell.rttRowsMax;

/** Members counted alive (alive or suspect, this node included), all known, and the kernel's mode. */
export function membership(kernel: NodeView): { alive: number; total: number; mode: Mode } {
  const members = kernel.memberStatuses();
  const alive = members.filter((member) => member.state === "alive" || member.state === "suspect").length;
  return { alive, total: members.length, mode: kernel.mode };
}

export function createNodeShell(kernel: Kernel, host: () => HostStats | undefined = () => undefined): Shell<NodeContext> {
  const shell = new Shell<NodeContext>({ kernel, host });
  for (const command of [...BUILTINS, ...kernel.specs.flatMap((spec) => spec.commands ?? [])]) shell.registerCommand(command);
  return shell;
}

function noArgs(args: readonly string[]): void {
  if (args.length > 0) throw new UsageError(`takes no arguments, got ${JSON.stringify(args[0]?.slice(0, 40))}`);
}

function lastHeard(member: MemberStatus, tickMs: number): string {
  if (member.self) return "self";
  if (member.lastHeardTicks === undefined) return "never";
  return `${formatDuration(member.lastHeardTicks * tickMs)} ago`;
}

const help: Command<NodeContext> = {
  name: "help",
  summary: "list the commands, or show one command's usage",
  usage: "help [COMMAND]",
  run(args, { shell }) {
    if (args.length > 1) throw new UsageError("takes at most one command name");
    const name = args[0];
    if (name !== undefined) {
      const command = shell.command(name);
      if (command === undefined) throw new UsageError(`no command ${JSON.stringify(name.slice(0, 40))}`);
      return `${command.name} — ${command.summary}\nusage: ${command.usage}${command.json === undefined ? "" : " [--json]"}`;
    }
    const commands = shell.commands();
    const width = Math.max(...commands.map((command) => command.name.length));
    return ["commands:", ...commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}${command.json === undefined ? "" : " [--json]"}`),
      "\"help COMMAND\" shows its usage; [--json]: COMMAND ... --json answers one JSON document (pk shell --json -c LINE)"].join("\n");
  },
  json(args, { shell }) {
    if (args.length > 0) throw new UsageError("help --json takes no command name");
    return { commands: shell.commands().map((c) => ({ name: c.name, summary: c.summary, usage: c.usage, json: c.json !== undefined })) };
  },
};

const ver: Command<NodeContext> = {
  name: "ver",
  summary: "p-kernel, Node.js and wire versions",
  usage: "ver",
  run(args) {
    noArgs(args);
    return formatFields([
      ["p-kernel", VERSION],
      ["node", process.version],
      ["platform", `${process.platform}/${process.arch}`],
      ["wire", `v${WIRE_VERSION}`],
    ]);
  },
  json(args) {
    noArgs(args);
    return { pkernel: VERSION, node: process.version, platform: process.platform, arch: process.arch, wire: WIRE_VERSION };
  },
};

const mem: Command<NodeContext> = {
  name: "mem",
  summary: "memory of this node's process",
  usage: "mem",
  run(args) {
    noArgs(args);
    const usage = process.memoryUsage();
    return formatFields([
      ["rss", mib(usage.rss)],
      ["heap used", mib(usage.heapUsed)],
      ["heap total", mib(usage.heapTotal)],
      ["external", mib(usage.external)],
      ["array buffers", mib(usage.arrayBuffers)],
    ]);
  },
  json(args) {
    noArgs(args);
    const usage = process.memoryUsage();
    return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed, heapTotalBytes: usage.heapTotal, externalBytes: usage.external, arrayBuffersBytes: usage.arrayBuffers };
  },
};

const ps: Command<NodeContext> = {
  name: "ps",
  summary: "the task table, and the programs (runs, errors, gas, memory)",
  usage: "ps",
  run(args, { kernel }) {
    noArgs(args);
    const tickMs = kernel.config.tickMs;
    const rows = kernel.tasks.list().map((task) => [
      String(task.tid), task.name, task.kind, task.state, String(task.steps),
      formatDuration((kernel.tickCount - task.startedTick) * tickMs),
    ]);
    const tasks = formatTable(["TID", "NAME", "KIND", "STATE", "STEPS", "UPTIME"], rows);
    const programs = kernel.programs.list();
    return programs.length === 0 ? tasks : `${tasks}\n\n${programsTable(programs)}`;
  },
  json(args, { kernel }) {
    noArgs(args);
    const tickMs = kernel.config.tickMs;
    return {
      tasks: kernel.tasks.list().map((task) => ({
        tid: task.tid, name: task.name, kind: task.kind, state: task.state, steps: task.steps, uptimeMs: (kernel.tickCount - task.startedTick) * tickMs,
      })),
      programs: kernel.programs.list(),
    };
  },
};

const status: Command<NodeContext> = {
  name: "status",
  summary: "this node: id, role, mode, members, tick",
  usage: "status",
  run(args, { kernel, host }) {
    noArgs(args);
    const self = kernel.self;
    const { alive, total, mode } = membership(kernel);
    const fields: [string, string][] = [
      ["id", kernel.id],
      ["name", self.name === "" ? "-" : self.name],
      ["role", self.role],
      ["mode", mode],
      ["uptime", formatDuration(kernel.uptimeMs)],
      ["members", `${alive} alive / ${total}`],
      ["tick", String(kernel.tickCount)],
      ["epoch", String(kernel.epoch)],
    ];
    const measured = host();
    if (measured !== undefined) {
      fields.push(["loop delay", `p50 ${measured.loopDelayP50Ms.toFixed(2)}ms  p99 ${measured.loopDelayP99Ms.toFixed(2)}ms  max ${measured.loopDelayMaxMs.toFixed(2)}ms`]);
      fields.push(["ticks skipped", String(measured.ticksSkipped)]);
    }
    return formatFields(fields);
  },
  json(args, { kernel, host }) {
    noArgs(args);
    const self = kernel.self;
    const { alive, total, mode } = membership(kernel);
    const measured = host();
    return {
      id: kernel.id, name: self.name, role: self.role, mode, uptimeMs: Math.round(kernel.uptimeMs),
      members: { alive, total }, tick: kernel.tickCount, epoch: kernel.epoch,
      loop: measured === undefined ? null : {
        delayP50Ms: measured.loopDelayP50Ms, delayP99Ms: measured.loopDelayP99Ms, delayMaxMs: measured.loopDelayMaxMs, ticksSkipped: measured.ticksSkipped,
      },
    };
  },
};

const nodes: Command<NodeContext> = {
  name: "nodes",
  summary: "the member table",
  usage: "nodes",
  run(args, { kernel }) {
    noArgs(args);
    const [self, ...others] = kernel.memberStatuses();
    others.sort((a, b) => (a.name === b.name ? (a.id < b.id ? -1 : 1) : a.name < b.name ? -1 : 1));
    const members = self === undefined ? others : [self, ...others];
    const shown = members.slice(0, NODES_ROWS_MAX);
    const rows = shown.map((member) => [
      member.id, member.name === "" ? "-" : member.name, member.addr, member.role, member.state,
      String(member.incarnation), lastHeard(member, kernel.config.tickMs),
    ]);
    const table = formatTable(["ID", "NAME", "ADDRESS", "ROLE", "STATE", "INC", "LAST HEARD"], rows);
    const rest = members.length - shown.length;
    return rest > 0 ? `${table}\n... and ${rest} more (${members.length} members)` : table;
  },
  json(args, { kernel }) {
    noArgs(args);
    const tickMs = kernel.config.tickMs;
    const members = kernel.memberStatuses();
    return {
      self: kernel.id,
      total: members.length,
      members: members.slice(0, NODES_ROWS_MAX).map((member) => ({
        id: member.id, name: member.name, addr: member.addr, role: member.role, state: member.state, incarnation: member.incarnation,
        lastHeardMs: member.lastHeardTicks === undefined ? null : member.lastHeardTicks * tickMs,
      })),
    };
  },
};

const net: Command<NodeContext> = {
  name: "net",
  summary: "traffic, drops and round-trip times",
  usage: "net",
  run(args, { kernel }) {
    noArgs(args);
    const { stats } = kernel;
    const channels = formatTable(["CHANNEL", "PKTS IN", "PKTS OUT", "BYTES IN", "BYTES OUT"], (["datagram", "stream"] as const).map((channel) => {
      const c = stats[channel];
      return [channel, String(c.packetsIn), String(c.packetsOut), String(c.bytesIn), String(c.bytesOut)];
    }));
    const head = formatFields([
      ["address", kernel.self.addr],
      ["drops", DROP_REASONS.map((reason) => `${reason} ${stats.dropped[reason]}`).join("  ")],
      ["last drop", stats.lastDrop === "" ? "-" : stats.lastDrop],
      ["send failures", String(stats.sendFailures)],
      ["introductions", String(stats.introductions)],
    ]);
    const peers = [...kernel.rtt.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    const names = new Map(kernel.memberStatuses().map((member) => [member.id, member.name]));
    const rttRows = peers.slice(0, RTT_ROWS_MAX).map(([id, rtt]) => [id, names.get(id) || "-", `${rtt.srttMs.toFixed(3)}ms`, String(rtt.samples)]);
    const rtt = rttRows.length === 0 ? "rtt: no samples yet" : formatTable(["PEER", "NAME", "SRTT", "SAMPLES"], rttRows);
    return `${head}\n\n${channels}\n\n${rtt}`;
  },
  json(args, { kernel }) {
    noArgs(args);
    const { stats } = kernel;
    return {
      address: kernel.self.addr,
      channels: Object.fromEntries((["datagram", "stream"] as const).map((channel) => [channel, { ...stats[channel] }])),
      dropped: { ...stats.dropped }, lastDrop: stats.lastDrop, sendFailures: stats.sendFailures, introductions: stats.introductions,
      rtt: [...kernel.rtt.entries()].slice(0, RTT_ROWS_MAX).map(([id, rtt]) => ({ id, srttMs: rtt.srttMs, samples: rtt.samples })),
    };
  },
};

const exit: Command<NodeContext> = {
  name: "exit",
  summary: "leave the interactive shell (pk shell); Ctrl-D does the same",
  usage: "exit",
  run(args) {
    noArgs(args);
    return "exit closes the interactive shell (pk shell); there is nothing to close here and the node keeps running";
  },
};

const BUILTINS: readonly Command<NodeContext>[] = [help, ver, mem, ps, status, nodes, net, exit];
