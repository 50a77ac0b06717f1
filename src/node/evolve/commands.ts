// Shell commands of the Evolution layer (issue 15): exec, kill, programs, evolve. `ps` lists the
// programs beside the task table, and `guard NAME` guards a task program (src/node/commands.ts,
// src/node/body/commands.ts).
import { normalizeSharedPath } from "../../core/collective/sfs-path.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { NodeContext } from "../context.ts";
import { formatTable, UsageError, type Command, type CommandContext } from "../shell.ts";
import type { RunOutcome } from "../../core/evolve/run.ts";
import { judge } from "../../core/evolve/rollout.ts";
import type { ProgramView } from "./programs.ts";

const text = new TextDecoder("utf-8", { fatal: false });

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(0)} KiB`;
}

/** The programs table of `ps` and `programs`. */
export function programsTable(programs: readonly ProgramView[]): string {
  return formatTable(["PROGRAM", "VERSION", "HOOK", "RUNS", "ERRORS", "GAS LAST", "GAS TOTAL", "MEMORY PEAK", "LAST ERROR"], programs.map((p) => {
    const errors = Object.values(p.stats.failures).reduce((a, b) => a + (b ?? 0), 0);
    return [p.name, p.track === "canary" ? `${p.version} (canary)` : p.version, `${p.hook}${p.attached ? "" : " (not attached)"}`, String(p.stats.runs), String(errors),
      `${p.stats.gasLast}/${p.limits.gas}`, String(p.stats.gasTotal), kib(p.stats.memoryPeak), (p.stats.lastError ?? "-").slice(0, 60)];
  }));
}

/** A run as the shell shows it: the program's log, then its result or its failure. */
export function describeRun(outcome: RunOutcome & { readonly program: string }): string {
  const lines = outcome.logs.map((l) => `${l.level}: ${l.message}`);
  if (!outcome.ok) lines.push(`${outcome.program}: failed (${outcome.error?.kind ?? "?"}): ${outcome.error?.message ?? ""}`);
  else if (typeof outcome.result === "string") lines.push(outcome.result);
  else if (outcome.result !== undefined) lines.push(JSON.stringify(outcome.result).slice(0, 2_000));
  lines.push(`(${outcome.program}: gas ${outcome.gas}, ${kib(outcome.memoryBytes)} heap, ${outcome.ms.toFixed(1)} ms)`);
  return lines.join("\n");
}

const exec: Command<NodeContext> = {
  name: "exec",
  summary: "run a program once (a command program with its arguments; any other runs its hook now)",
  usage: "exec PROGRAM [ARGS...]",
  async run(args, { kernel }) {
    const [name, ...rest] = args;
    if (name === undefined) throw new UsageError("needs a PROGRAM (ps lists them)");
    return describeRun(await kernel.programs.exec(name, rest));
  },
};

const kill: Command<NodeContext> = {
  name: "kill",
  summary: "stop a program and remove it from the cluster (its KV namespace stays)",
  usage: "kill PROGRAM",
  async run(args, { kernel }) {
    if (args.length !== 1) throw new UsageError("takes one PROGRAM");
    return kernel.programs.kill(args[0]!);
  },
};

const programs: Command<NodeContext> = {
  name: "programs",
  summary: "the programs held here: hook, runs, errors, gas, memory; with a name, its recent log",
  usage: "programs [PROGRAM]",
  run(args, { kernel }) {
    const list = kernel.programs.list();
    if (args.length === 0) return list.length === 0 ? "no programs (evolve, or evolve --from FILE)" : programsTable(list);
    const p = list.find((q) => q.name === args[0]);
    if (p === undefined) throw new UsageError(`no program ${JSON.stringify(args[0]!.slice(0, 48))} here`);
    return `${programsTable([p])}\n${p.logs.length === 0 ? "no log lines" : p.logs.join("\n")}`;
  },
};

async function runLine(ctx: CommandContext<NodeContext>, line: string): Promise<{ ok: boolean; output: string }> {
  const result = await ctx.shell.executeAsync(line);
  return { ok: result.ok, output: result.output };
}

const evolve: Command<NodeContext> = {
  name: "evolve",
  summary: "ask a mind what to change, verify its program, run it dry, deploy it here (the Evolution layer)",
  usage: "evolve [dry-run] [--mind NAME] [--from /shared/PATH] [--window SECONDS] [--canary SHARE] [GOAL...] | evolve log [N] | evolve approve N | evolve pending",
  async run(args, ctx) {
    const { kernel } = ctx;
    const evolver = kernel.evolver;
    const [sub] = args;
    if (sub === "log") {
      const n = args[1] === undefined ? 40 : Number(args[1]);
      if (!Number.isInteger(n) || n < 1 || n > LIMITS.evolve.log.rowsPerNodeMax * 16) throw new UsageError("log takes a count of steps");
      const steps = evolver.log(n);
      if (steps.length === 0) return "the evolve log is empty";
      return steps.map((s) => `${new Date(s.atMs).toISOString()} ${s.node.slice(0, 8)} ${s.step.padEnd(9)} ${s.text.replaceAll("\n", " ").slice(0, 300)}`).join("\n");
    }
    if (sub === "approve") {
      const n = Number(args[1]);
      if (args.length !== 2 || !Number.isInteger(n)) throw new UsageError("approve takes one number (evolve pending lists them)");
      const done = await evolver.approve(n, (line) => runLine(ctx, line));
      if (done === undefined) throw new UsageError(`no command #${n} waits for approval`);
      return done;
    }
    if (sub === "pending") {
      const pending = evolver.pending;
      return pending.length === 0 ? "nothing waits for approval" : formatTable(["N", "COMMAND", "WHY IT WAITS"], pending.map((p) => [String(p.n), p.line, p.reason]));
    }
    let dryRun = false;
    let mind: string | undefined;
    let from: string | undefined;
    let windowMs: number | undefined;
    let canaryShare: number | undefined;
    const goal: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      if (a === "dry-run" || a === "--dry-run") dryRun = true;
      else if (a === "--mind") mind = args[++i] ?? "";
      else if (a === "--from") from = args[++i] ?? "";
      else if (a === "--window") {
        const seconds = Number(args[++i]);
        if (!Number.isFinite(seconds) || seconds < 1 || seconds * 1000 > LIMITS.evolve.rollout.windowMsMax) throw new UsageError(`--window takes the canary's seconds, 1 to ${LIMITS.evolve.rollout.windowMsMax / 1000}`);
        windowMs = Math.round(seconds * 1000);
      } else if (a === "--canary") {
        const share = Number(args[++i]);
        if (!Number.isFinite(share) || share < 0 || share > 1) throw new UsageError("--canary takes the share of core nodes that run the new version first, 0 to 1 (0: this node alone)");
        canaryShare = share;
      }
      else goal.push(a);
    }
    if (mind === "") throw new UsageError("--mind needs a NAME (mind list)");
    let reply: string | undefined;
    if (from !== undefined) {
      const folder = kernel.sharedFolder;
      if (folder === undefined) throw new UsageError("--from reads a file of /shared/, and this node has no shared folder");
      const path = normalizeSharedPath(from);
      if (!path.ok) throw new UsageError(`--from ${from}: ${path.error}`);
      reply = text.decode(await folder.files.read(path.path, LIMITS.evolve.reply.replyBytesMax + 1));
      // Refused early and plainly when it cannot be a reply at all; parseReply says why in detail.
      if (reply.length === 0) throw new UsageError(`--from ${from}: the file is empty`);
    }
    // Streamed as it goes when the caller takes a stream (pk shell); the answer holds the rest.
    const lines: string[] = [];
    const stream = ctx.stream;
    const out = (line: string): void => {
      if (stream !== undefined) stream.out(`${line}\n`);
      else lines.push(line);
    };
    const options = { dryRun, ...(windowMs === undefined ? {} : { windowMs }), ...(canaryShare === undefined ? {} : { canaryShare }), ...(mind === undefined ? {} : { mind }), ...(reply === undefined ? {} : { reply }), ...(goal.length === 0 ? {} : { goal: goal.join(" ") }) };
    const result = await evolver.evolve(options, (line) => runLine(ctx, line), out);
    lines.push(result.ok ? (result.deployed === undefined ? "evolve: done" : `evolve: ${result.deployed} deployed`) : `refused (${result.refusals.length} ${result.refusals.length === 1 ? "reply" : "replies"}), nothing deployed`);
    if (!result.ok) throw new EvolveRefused(lines.join("\n"));
    return lines.join("\n");
  },
};

const ago = (ms: number): string => (ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`);

const rollout: Command<NodeContext> = {
  name: "rollout",
  summary: "program rollouts: canaries, their health against the version they replace, promote or roll back",
  usage: "rollout list | rollout status NAME | rollout promote NAME | rollout rollback NAME",
  async run(args, { kernel }) {
    const rollouts = kernel.programs.rollouts;
    const [sub, name] = args;
    const now = rollouts.nowMs();
    if (sub === undefined || sub === "list") {
      const rows = rollouts.names().map((n) => rollouts.held(n)).filter((h) => h !== undefined).map(({ record: r, untrusted }) => [
        r.name, r.version, r.from?.version ?? "(new)", untrusted === undefined ? r.phase : `${r.phase} (refused)`, r.canary.map((c) => c.slice(0, 8)).join(","),
        ago(now - r.startedMs), (untrusted ?? r.reason ?? judge(r, rollouts.health(), now, rollouts.config).reason).slice(0, 100),
      ]);
      const refused = [...rollouts.refused].map(([k, v]) => `${v} ${k}`).join(", ");
      const model = rollouts.modelVerdict();
      const modelLine = model === undefined ? "" : `\nmodel v${model.version}: ${model.verdict}: ${model.reason}`;
      return `${rows.length === 0 ? "no rollouts (evolve, or evolve --from FILE, starts one)" : formatTable(["PROGRAM", "VERSION", "FROM", "PHASE", "CANARY", "STARTED", "REASON"], rows)}${modelLine}${refused === "" ? "" : `\nrefused records and health rows: ${refused}`}`;
    }
    if (name === undefined || args.length !== 2) throw new UsageError("takes a program's NAME (rollout list shows them)");
    const held = rollouts.held(name);
    if (held === undefined) throw new UsageError(`no rollout of ${JSON.stringify(name.slice(0, 48))} (rollout list)`);
    const r = held.record;
    if (sub === "promote" || sub === "rollback") {
      if (!rollouts.core) throw new UsageError("only a core node decides a rollout");
      return rollouts.decide(name, sub, `by hand on ${kernel.id}`);
    }
    if (sub !== "status") throw new UsageError(`unknown subcommand ${JSON.stringify(sub.slice(0, 32))}: list, status, promote, rollback`);
    const health = rollouts.health().filter((h) => h.name === name);
    const lines = [
      `${r.name} ${r.version}${r.from === null ? " (a new program)" : ` replacing ${r.from.version}`}: ${r.phase}${held.untrusted === undefined ? "" : ` (refused: ${held.untrusted})`}`,
      `approved by ${r.approver}, started ${ago(now - r.startedMs)} ago, window ${Math.round(r.windowMs / 1000)} s, canary ${r.canary.join(", ")}`,
      r.phase === "canary" ? `now: ${judge(r, rollouts.health(), now, rollouts.config).reason}` : `decided by ${r.decidedBy ?? "?"} ${ago(now - (r.decidedMs ?? now))} ago: ${r.reason ?? ""}`,
    ];
    const table = formatTable(["NODE", "VERSION", "ROLE", "RUNS", "FAILED", "MEMORY PEAK", "PROBE", "ACCURACY", "LOOP DELAY"], health.map((h) => [
      h.node.slice(0, 8), h.version, r.canary.includes(h.node) && h.version === r.version ? "canary" : "baseline", String(h.runs), String(h.failures), kib(h.memoryPeak),
      h.probe === null ? "-" : `${h.probe.runs} (${h.probe.failed} failed) ${h.probe.msAvg.toFixed(1)} ms`,
      h.accuracy === null ? "-" : `${(100 * h.accuracy.with).toFixed(1)}% (without ${(100 * h.accuracy.without).toFixed(1)}%)`, `${h.loopDelayMs.toFixed(0)} ms`,
    ]));
    return `${lines.join("\n")}\n\n${health.length === 0 ? "no health rows yet" : table}`;
  },
};

/** A refused evolve fails the shell line (exit status), with the whole transcript as its output. */
export class EvolveRefused extends Error {}

export const EVOLVE_COMMANDS = [exec, kill, programs, evolve, rollout];
