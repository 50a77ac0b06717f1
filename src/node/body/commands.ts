// Shell commands of the Body layer: vital, degrade, guard, heal, persist.
import { LIMITS } from "../../core/util/limits.ts";
import type { NodeContext } from "../context.ts";
import { formatDuration, mib } from "../format.ts";
import type { PersistSection } from "../subsystem-context.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";

/** Rows `vital` prints before it summarises the rest. */
const VITAL_ROWS_MAX = LIMITS.shell.vitalRowsMax;
const GUARD_NAME = /^[A-Za-z0-9._-]+$/;

export const vital: Command<NodeContext> = {
  name: "vital",
  summary: "vital signs of every member (uptime, load, memory, event-loop delay)",
  usage: "vital [history]",
  run(args, { kernel }) {
    const tickMs = kernel.config.tickMs;
    if (args[0] === "history") {
      if (args.length > 1) throw new UsageError("history takes no arguments");
      const history = kernel.vitals.history().slice(-20);
      if (history.length === 0) return "no samples yet";
      return formatTable(["AGO", "UPTIME", "LOAD", "RSS", "HEAP", "LOOP P99"], history.map((sample) => [
        formatDuration((kernel.tickCount - sample.tick) * tickMs), formatDuration(sample.signs.uptimeMs), sample.signs.load1.toFixed(2),
        mib(sample.signs.rssBytes), mib(sample.signs.heapUsedBytes), `${sample.signs.loopDelayP99Ms.toFixed(1)}ms`,
      ]));
    }
    if (args.length > 0) throw new UsageError(`unknown argument ${JSON.stringify(args[0]?.slice(0, 40))}`);
    const rows = kernel.vitalTable();
    const shown = rows.slice(0, VITAL_ROWS_MAX).map((row) => {
      const signs = row.signs;
      return [
        row.id, row.name === "" ? "-" : row.name, row.state,
        signs === undefined ? "-" : formatDuration(signs.uptimeMs),
        signs === undefined ? "-" : signs.load1.toFixed(2),
        signs === undefined ? "-" : mib(signs.rssBytes),
        signs === undefined ? "-" : mib(signs.heapUsedBytes),
        signs === undefined ? "-" : `${signs.loopDelayP99Ms.toFixed(1)}ms`,
        row.ageTicks === undefined ? "never" : `${formatDuration(row.ageTicks * tickMs)} ago`,
      ];
    });
    const table = formatTable(["ID", "NAME", "STATE", "UPTIME", "LOAD", "RSS", "HEAP", "LOOP P99", "HEARD"], shown);
    return rows.length > shown.length ? `${table}\n... and ${rows.length - shown.length} more` : table;
  },
  json(args, { kernel }) {
    const tickMs = kernel.config.tickMs;
    if (args[0] === "history") {
      if (args.length > 1) throw new UsageError("history takes no arguments");
      return { history: kernel.vitals.history().slice(-20).map((sample) => ({ agoMs: (kernel.tickCount - sample.tick) * tickMs, ...sample.signs })) };
    }
    if (args.length > 0) throw new UsageError(`unknown argument ${JSON.stringify(args[0]?.slice(0, 40))}`);
    const rows = kernel.vitalTable();
    return {
      total: rows.length,
      members: rows.slice(0, VITAL_ROWS_MAX).map((row) => ({
        id: row.id, name: row.name, state: row.state, signs: row.signs ?? null, heardMsAgo: row.ageTicks === undefined ? null : row.ageTicks * tickMs,
      })),
    };
  },
};

export const degrade: Command<NodeContext> = {
  name: "degrade",
  summary: "the cluster mode (FULL ≥ 3 alive, REDUCED 2, SOLO 1) and its recent changes",
  usage: "degrade",
  run(args, { kernel }) {
    if (args.length > 0) throw new UsageError("takes no arguments");
    const alive = kernel.swim.size;
    const head = formatFields([["mode", kernel.mode], ["alive", `${alive} (this node included; suspects count as alive)`]]);
    const history = kernel.modeHistory;
    if (history.length === 0) return `${head}\nno mode changes since boot`;
    const rows = history.slice().reverse().map((change) => [
      `${formatDuration((kernel.tickCount - change.tick) * kernel.config.tickMs)} ago`, change.previous, change.mode, String(change.alive),
    ]);
    return `${head}\n\n${formatTable(["WHEN", "FROM", "TO", "ALIVE"], rows)}`;
  },
  json(args, { kernel }) {
    if (args.length > 0) throw new UsageError("takes no arguments");
    return {
      mode: kernel.mode, alive: kernel.swim.size,
      changes: kernel.modeHistory.slice().reverse().map((change) => ({
        agoMs: (kernel.tickCount - change.tick) * kernel.config.tickMs, from: change.previous, to: change.mode, alive: change.alive,
      })),
    };
  },
};

export const guard: Command<NodeContext> = {
  name: "guard",
  summary: "define a guarded task: a command one node runs every N seconds, adopted when its owner dies",
  usage: "guard NAME SECONDS COMMAND...  |  guard PROGRAM (a task program, every its period)  |  guard rm NAME",
  run(input, { kernel }) {
    // One argument: a task program, run by `exec` every its period wherever the guard puts it.
    if (input.length === 1 && input[0] !== "rm") {
      if (!kernel.programs.exists(input[0]!)) throw new UsageError(`no program ${JSON.stringify(input[0]!.slice(0, 48))}; usage: guard NAME SECONDS COMMAND... or guard PROGRAM`);
      return kernel.programs.guardArgs(input[0]!).then((args) => defineGuard(kernel, args));
    }
    return defineGuard(kernel, input);
  },
};

/** `guard` with its arguments: a guarded task defined (or removed), or a UsageError. */
function defineGuard(kernel: NodeContext["kernel"], args: readonly string[]): string {
    if (args[0] === "rm") {
      if (args.length !== 2) throw new UsageError("guard rm takes one task name");
      const error = kernel.unguard(args[1] as string);
      if (error !== undefined) throw new UsageError(error);
      return `removed ${args[1]}`;
    }
    const [name, seconds, ...command] = args;
    if (name === undefined || seconds === undefined || command.length === 0) throw new UsageError("needs NAME SECONDS COMMAND...");
    if (name.length > LIMITS.guardNameCharsMax || !GUARD_NAME.test(name)) {
      throw new UsageError(`task name must be 1–${LIMITS.guardNameCharsMax} of A-Z a-z 0-9 . _ -`);
    }
    const every = Number(seconds);
    const everyTicks = Math.round((every * 1000) / kernel.config.tickMs);
    if (!Number.isFinite(every) || everyTicks < 1 || everyTicks > LIMITS.guardEveryTicksMax) {
      throw new UsageError(`SECONDS must be a number from ${kernel.config.tickMs / 1000} to ${(LIMITS.guardEveryTicksMax * kernel.config.tickMs) / 1000}`);
    }
    const line = command.map((word) => (/[\s"'\\]/.test(word) ? JSON.stringify(word) : word)).join(" ");
    if (line.length > LIMITS.guardCommandCharsMax) throw new UsageError(`command longer than ${LIMITS.guardCommandCharsMax} characters`);
    if (command[0] === "guard") throw new UsageError("a guarded task may not define guarded tasks");
    const error = kernel.guard(name, line, everyTicks);
    if (error !== undefined) throw new UsageError(error);
    return `guarded ${name}: "${line}" every ${every}s, owned by this node`;
}

export const heal: Command<NodeContext> = {
  name: "heal",
  summary: "guarded tasks: owner, adoption epoch, and whether this node runs them",
  usage: "heal [list]",
  run(args, { kernel }) {
    if (args.length > 1 || (args.length === 1 && args[0] !== "list")) throw new UsageError("usage: heal [list]");
    const names = new Map(kernel.memberStatuses().map((member) => [member.id, member]));
    const rows = kernel.guardStatuses().filter((status) => !status.task.removed).map(({ task, running }) => {
      const owner = names.get(task.owner);
      return [
        task.name, task.owner, owner === undefined ? "unknown" : owner.self ? "self" : owner.state, String(task.epoch),
        `${(task.everyTicks * kernel.config.tickMs) / 1000}s`, running === undefined ? "-" : `yes (${running.runs} runs)`, task.command,
      ];
    });
    if (rows.length === 0) return `no guarded tasks${kernel.heal.settled ? "" : " (still comparing tables with peers)"}`;
    return formatTable(["NAME", "OWNER", "OWNER STATE", "EPOCH", "EVERY", "RUNNING HERE", "COMMAND"], rows);
  },
};

const SECTIONS = ["members", "guarded", "vitals"] as const;

function formatSections(sections: readonly PersistSection[]): string {
  return formatTable(["SECTION", "KEYS", "BYTES", "DURABLE"], sections.map((section) => [
    section.name, String(section.keys), String(section.bytes), section.durable ? "yes (fsync)" : "no (rebuilt by peers)",
  ]));
}

export const persist: Command<NodeContext> = {
  name: "persist",
  summary: "local state kept in the store and restored at boot",
  usage: `persist list  |  persist clear ${SECTIONS.join("|")}`,
  run(args, { kernel }) {
    const [sub, section, ...rest] = args;
    if (sub === undefined || sub === "list") {
      if (section !== undefined) throw new UsageError("persist list takes no arguments");
      return formatSections(kernel.persistSections());
    }
    if (sub !== "clear") throw new UsageError(`unknown subcommand ${JSON.stringify(sub.slice(0, 40))}`);
    if (rest.length > 0 || section === undefined || !(SECTIONS as readonly string[]).includes(section)) {
      throw new UsageError(`persist clear needs one of: ${SECTIONS.join(", ")} (the epoch and incarnation are never cleared)`);
    }
    const removed = kernel.persistClear(section);
    if (typeof removed === "string") throw new UsageError(removed);
    return `cleared ${section}: ${removed} key${removed === 1 ? "" : "s"}`;
  },
};

