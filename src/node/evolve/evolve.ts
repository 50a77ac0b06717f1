// `evolve` (issue 15; docs/protocols/programs.md, "evolve"): gather the node's state, ask a mind
// chosen by the cluster's mode (its own minds when FULL, a frontier mind when REDUCED or SOLO),
// parse the reply strictly, verify the program, run it dry on recorded data, deploy it here, and
// run the [CMD] lines the policy allows (the rest wait for `evolve approve N`). A refused reply is
// sent back with its reason and asked again once. Every step goes to the evolve log: kept here and
// replicated as rows of the gossip topic `evolve.log` under this node's id.
import { decide } from "../../core/evolve/policy.ts";
import { evolvePrompt, retryMessages, stateLines, type EvolveState } from "../../core/evolve/prompt.ts";
import { formatReplyError, parseReply, type Reply } from "../../core/evolve/reply.ts";
import { formatReport } from "../../core/evolve/verdict.ts";
import type { ChatMessage, MindReply } from "../../core/self/minds.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { SubsystemContext } from "../subsystem-context.ts";
import type { DeployOutcome, ProgramsPart } from "./programs.ts";

export const EVOLVE_LOG_TOPIC = "evolve.log";
const EVOLVE = LIMITS.evolve.log;
const utf8 = new TextEncoder();

export interface EvolveStep {
  readonly seq: number;
  readonly atMs: number;
  readonly node: string;
  readonly step: string;
  readonly text: string;
}

export interface Pending {
  readonly n: number;
  readonly line: string;
  readonly reason: string;
}

export interface EvolveOptions {
  readonly dryRun?: boolean;
  /** A reply written by a person (the human as the outside mind): no mind is asked. */
  readonly reply?: string;
  readonly mind?: string;
  readonly goal?: string;
  /** The rollout's canary window, and the share of core nodes in the canary. */
  readonly windowMs?: number;
  readonly canaryShare?: number;
}

export interface EvolveResult {
  readonly ok: boolean;
  readonly deployed: string | undefined;
  readonly refusals: readonly string[];
}

/** Runs a shell line (the [CMD] lines and approvals); the shell's output and whether it succeeded. */
export type RunLine = (line: string) => Promise<{ ok: boolean; output: string }>;

export class Evolver {
  readonly #ctx: SubsystemContext;
  readonly #programs: ProgramsPart;
  readonly #log: EvolveStep[] = [];
  readonly #pending = new Map<number, Pending>();
  #nextPending = 1;
  #seq = 0;
  #busy = false;

  readonly #bootMs: number;

  constructor(ctx: SubsystemContext, programs: ProgramsPart) {
    this.#ctx = ctx;
    this.#programs = programs;
    this.#bootMs = ctx.clock.nowMs();
  }

  get pending(): readonly Pending[] {
    return [...this.#pending.values()];
  }

  /** Every node's steps (this node's earlier boots too) from the gossip topic, oldest first. */
  log(limit: number): EvolveStep[] {
    const topics = this.#ctx.services.topics;
    if (topics === undefined) return this.#log.slice(-limit);
    return this.#rows(topics).map((r) => r.step).sort((a, b) => a.atMs - b.atMs || a.seq - b.seq).slice(-limit);
  }

  #rows(topics: NonNullable<SubsystemContext["services"]["topics"]>): Array<{ key: string; origin: string; step: EvolveStep }> {
    const out: Array<{ key: string; origin: string; step: EvolveStep }> = [];
    for (const row of topics.entries(EVOLVE_LOG_TOPIC)) {
      const step = decodeStep(row.value);
      if (step !== undefined && step.node === row.origin) out.push({ key: row.key, origin: row.origin, step });
    }
    return out;
  }

  state(): EvolveState {
    const ctx = this.#ctx;
    const kv = ctx.services.kv;
    const brain = ctx.services.brain;
    const inferences = brain === undefined ? 0 : Object.values(brain.counters.inferences).reduce((a, b) => a + b, 0);
    const p = this.#programs.prefilterStats;
    return {
      node: ctx.id, mode: ctx.mode(),
      raft: { role: kv === undefined ? "none" : kv.isLeader ? "leader" : "follower", term: kv?.term ?? 0, leader: kv?.leader ?? "" },
      liveNodes: ctx.members.size, memories: ctx.services.memory?.size ?? 0, inferences, uptimeS: Math.round((ctx.clock.nowMs() - this.#bootMs) / 1000),
      programs: this.#programs.list().map((q) => `${q.name} ${q.version} (${q.hook}${q.attached ? "" : ", not attached"})`),
      prefilter: p.program === undefined ? "none" : `${p.program}: ${p.calls} calls, ${p.dropped}/${p.readings} readings dropped`,
      sensors: this.#programs.sensorsText(),
    };
  }

  async evolve(options: EvolveOptions, runLine: RunLine, out: (line: string) => void): Promise<EvolveResult> {
    if (this.#busy) throw new Error("an evolve is running on this node already");
    this.#busy = true;
    try {
      return await this.#evolve(options, runLine, out);
    } finally {
      this.#busy = false;
    }
  }

  async #evolve(options: EvolveOptions, runLine: RunLine, out: (line: string) => void): Promise<EvolveResult> {
    const refusals: string[] = [];
    const state = this.state();
    out("state:");
    for (const line of stateLines(state)) out(`  ${line}`);
    this.#step("state", stateLines(state).join("; "));
    let messages: ChatMessage[] = evolvePrompt(state, options.goal);
    let attempt = 0;
    for (;;) {
      attempt++;
      let text: string;
      let finish: string | undefined;
      if (options.reply !== undefined) {
        text = options.reply;
        out("reply: written by a person (evolve --from)");
        this.#step("reply", `from a person, ${text.length} characters`);
      } else {
        const reply = await this.#ask(messages, options.mind, out);
        text = reply.text;
        finish = reply.finish;
      }
      const outcome = await this.#consider(text, finish, options, runLine, out);
      if (outcome.ok) return { ok: true, deployed: outcome.deployed, refusals };
      refusals.push(outcome.reason);
      out(`refused: ${outcome.reason}`);
      this.#step("refused", outcome.reason);
      if (options.reply !== undefined || attempt >= 2) {
        out("nothing deployed");
        return { ok: false, deployed: undefined, refusals };
      }
      out("asking again once, with the reason");
      messages = retryMessages(messages, text, outcome.reason);
    }
  }

  async #ask(messages: ChatMessage[], mind: string | undefined, out: (line: string) => void): Promise<MindReply> {
    const minds = this.#ctx.services.minds;
    if (minds === undefined) throw new Error("this node has no minds (mind list)");
    const mode = this.#ctx.mode();
    out(`asking a mind (mode ${mode}: ${mind !== undefined ? `${mind}, as asked` : mode === "FULL" ? "the cluster's own minds first" : "a frontier mind first"})`);
    const reply = await minds.ask({ request: { messages, maxTokens: EVOLVE.replyTokensMax }, mind });
    out(`mind: ${reply.mind.name} (${reply.mind.kind}, ${reply.mind.provider}) answered in ${Math.round(reply.latencyMs)} ms`);
    this.#step("mind", `${reply.mind.name} (${reply.mind.kind}) in ${Math.round(reply.latencyMs)} ms, ${reply.text.length} characters`);
    return reply;
  }

  /** One reply: parsed, its program verified, run dry and deployed, its commands run or held. */
  async #consider(text: string, finish: string | undefined, options: EvolveOptions, runLine: RunLine, out: (line: string) => void): Promise<{ ok: true; deployed: string | undefined } | { ok: false; reason: string }> {
    const parsed = parseReply(text, finish);
    if (!parsed.ok) return { ok: false, reason: `${formatReplyError(parsed.error)}${parsed.error.line === undefined ? "" : ` (line ${parsed.error.line})`}` };
    const reply: Reply = parsed.reply;
    out("[ANALYSIS]");
    for (const line of reply.analysis.split("\n")) out(`  ${line}`);
    this.#step("analysis", reply.analysis.slice(0, 2_000));
    // Every command is judged before anything runs: a reply is taken whole or not at all.
    const decisions = reply.commands.map((c) => decide(c));
    let deployed: string | undefined;
    if (reply.code !== undefined) {
      const result: DeployOutcome = await this.#programs.deploy(reply.code, {
        dryRun: options.dryRun === true, ...(options.windowMs === undefined ? {} : { windowMs: options.windowMs }), ...(options.canaryShare === undefined ? {} : { canaryShare: options.canaryShare }),
      });
      if (result.report !== undefined) {
        out("verification:");
        for (const line of formatReport(result.report).split("\n")) out(`  ${line}`);
        this.#step("verify", `${result.report.ok ? "verified" : "refused"} in ${result.report.timings.totalMs.toFixed(1)} ms`);
      }
      if (result.dryRun !== undefined) {
        out(`dry run: ${result.dryRun.ok ? "ok" : `failed (${result.dryRun.error?.kind ?? "?"})`}, gas ${result.dryRun.gas}, ${result.dryRun.ms.toFixed(1)} ms`);
        for (const line of result.dryRun.logs) out(`  ${line.level}: ${line.message}`);
        this.#step("dry-run", `${result.dryRun.ok ? "ok" : result.dryRun.error?.message ?? "failed"}; ${result.dryRun.logs.map((l) => l.message).join(" | ").slice(0, 1_000)}`);
      }
      if (!result.ok) return { ok: false, reason: result.reason ?? "the program was refused" };
      const m = result.manifest;
      deployed = m === undefined ? undefined : `${m.name} ${m.version}`;
      if (options.dryRun === true) out(`dry run only: ${deployed ?? "the program"} is not deployed`);
      else {
        out(`deployed: ${deployed ?? "?"} on this node, its canary: promoted everywhere once healthy for ${Math.round((options.windowMs ?? this.#programs.rollouts.config.windowMs) / 1000)} s, rolled back at the first sign it is worse (rollout status ${m?.name ?? ""})`);
        this.#step("deploy", deployed ?? "?");
      }
    }
    for (const d of decisions) {
      if (!d.allowed) {
        const n = this.#hold(d.line, d.reason ?? "not allowed alone");
        out(`[CMD] ${d.line}: waits for approval (evolve approve ${n}): ${d.reason ?? ""}`);
        continue;
      }
      if (options.dryRun === true) {
        out(`[CMD] ${d.line}: not run (dry run)`);
        continue;
      }
      const result = await runLine(d.line);
      out(`[CMD] ${d.line}`);
      for (const line of result.output.split("\n")) if (line !== "") out(`  ${line}`);
      this.#step("cmd", `${d.line}: ${result.ok ? "ok" : "failed"}; ${result.output.slice(0, 500)}`);
    }
    return { ok: true, deployed: options.dryRun === true ? undefined : deployed };
  }

  /** Runs a held command; undefined when there is no such number. */
  async approve(n: number, runLine: RunLine): Promise<string | undefined> {
    const pending = this.#pending.get(n);
    if (pending === undefined) return undefined;
    this.#pending.delete(n);
    const result = await runLine(pending.line);
    this.#step("approved", `${pending.line}: ${result.ok ? "ok" : "failed"}; ${result.output.slice(0, 500)}`);
    return `${pending.line}\n${result.output}`;
  }

  #hold(line: string, reason: string): number {
    const n = this.#nextPending++;
    this.#pending.set(n, { n, line, reason });
    while (this.#pending.size > EVOLVE.pendingMax) this.#pending.delete(this.#pending.keys().next().value as number);
    this.#step("held", `#${n} ${line}: ${reason}`);
    return n;
  }

  /** Writes one step to the evolve log (the rollouts' audit trail too). */
  record(step: string, text: string): void {
    this.#step(step, text);
  }

  #step(step: string, text: string): void {
    const entry: EvolveStep = { seq: ++this.#seq, atMs: Math.floor(this.#ctx.clock.nowMs()), node: this.#ctx.id, step, text: text.slice(0, EVOLVE.stepCharsMax) };
    this.#log.push(entry);
    const topics = this.#ctx.services.topics;
    if (topics !== undefined) {
      topics.publish(EVOLVE_LOG_TOPIC, `${this.#ctx.id}/${this.#ctx.epoch}.${entry.seq}`, utf8.encode(JSON.stringify(entry)));
      // This node keeps its newest rowsPerNodeMax rows, across its boots: the oldest go.
      const own = this.#rows(topics).filter((r) => r.origin === this.#ctx.id).sort((a, b) => a.step.atMs - b.step.atMs || a.step.seq - b.step.seq);
      for (const r of own.slice(0, Math.max(0, own.length - EVOLVE.rowsPerNodeMax))) topics.publish(EVOLVE_LOG_TOPIC, r.key, undefined);
    }
    if (this.#log.length > EVOLVE.rowsPerNodeMax) this.#log.splice(0, this.#log.length - EVOLVE.rowsPerNodeMax);
  }
}

function decodeStep(bytes: Uint8Array): EvolveStep | undefined {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    if (typeof v.seq !== "number" || typeof v.atMs !== "number" || typeof v.node !== "string" || typeof v.step !== "string" || typeof v.text !== "string") return undefined;
    return { seq: v.seq, atMs: v.atMs, node: v.node, step: v.step.slice(0, 32), text: v.text.slice(0, EVOLVE.stepCharsMax) };
  } catch {
    return undefined;
  }
}
