// The `upgrade` subsystem (Evolution layer, issue 16; docs/protocols/upgrade.md, ADR 022): a
// supervised node (`pk node --supervise`) restarts into a newer signed bundle once the bundle
// subsystem has installed it (`bundle-ready`), one core node at a time, and keeps it only if it
// boots and becomes healthy; otherwise its supervisor rolls it back and the rollout stops.
//
//   upgrade/lock            {node, id, version, atMs}, or "free": taken with compare-and-set by the
//                           core node about to restart, released by its new kernel once healthy (or
//                           by its old one after a rollback); older than lockStaleMs it may be taken over
//   upgrade/halt/<address>  {node, reason, atMs}: that bundle failed somewhere; every node refuses it
//
// The part never touches processes or files: it asks the supervisor (SupervisorPort) to restart,
// and tells it when the new code is healthy. Contributors upgrade too, without the lock (they hold
// no vote, and may not write consensus keys), so they never hold back core nodes.
import type { Mode } from "../../core/body/degrade.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { NodeContext } from "../context.ts";
import type { KernelEvent } from "../events.ts";
import { formatDuration } from "../format.ts";
import type { SupervisorPort } from "../ports.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";
import { defineSubsystem, type Subsystem, type SubsystemContext } from "../subsystem.ts";
import type { KvAnswer } from "../subsystem-context.ts";

export const LOCK_KEY = "upgrade/lock";
export const HALT_PREFIX = "upgrade/halt/";
const FREE = "free";
const ID = /^[0-9a-f]{64}$/;
const { haltsShownMax: HALTS_SHOWN, reasonCharsMax: REASON_CHARS } = LIMITS.evolve.upgrade;

export interface UpgradeConfig {
  /** Ticks between two looks at whether to upgrade (and between retries of a KV write). */
  readonly checkEveryTicks: number;
  /** A lock older than this (by the kernel's clock) may be taken over: its holder died mid-upgrade. */
  readonly lockStaleMs: number;
  /** Ticks a leader waits for leadership to move before it restarts anyway. */
  readonly transferWaitTicks: number;
}

export const UPGRADE_DEFAULTS: UpgradeConfig = { checkEveryTicks: 50, lockStaleMs: 300_000, transferWaitTicks: 300 };

interface Lock {
  readonly node: string;
  readonly id: string;
  readonly version: number;
  readonly atMs: number;
}

type Phase =
  | { readonly kind: "idle" }
  | { readonly kind: "transferring"; readonly lock: Lock; readonly needs: string; readonly sinceTick: number; readonly mode: Mode }
  | { readonly kind: "restarting"; readonly lock: Lock }
  | { readonly kind: "confirming"; readonly id: string; readonly version: number; readonly mode: string }
  | { readonly kind: "releasing"; readonly id: string }
  | { readonly kind: "halting"; readonly id: string; readonly reason: string; readonly written: boolean };

const RANK: Readonly<Record<string, number>> = { SOLO: 0, REDUCED: 1, FULL: 2 };

export function parseLock(value: Uint8Array | undefined): Lock | undefined {
  if (value === undefined) return undefined;
  const text = new TextDecoder().decode(value);
  if (text === FREE) return undefined;
  try {
    const v = JSON.parse(text) as Partial<Lock>;
    if (typeof v.node === "string" && typeof v.id === "string" && typeof v.version === "number" && typeof v.atMs === "number") return { node: v.node, id: v.id, version: v.version, atMs: v.atMs };
  } catch {
    // Not a lock: treated as held by nobody, and taken over by compare-and-set on its bytes.
  }
  return undefined;
}

const encode = (value: unknown): Uint8Array => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));

export class UpgradePart implements Subsystem<never> {
  readonly #ctx: SubsystemContext;
  readonly #config: UpgradeConfig;
  readonly #supervisor: SupervisorPort | undefined;
  #phase: Phase = { kind: "idle" };
  /** The newest bundle the bundle subsystem announced as ready (newer than the running code). */
  #ready: { id: string; version: number; node: string } | undefined;
  /** One KV operation at a time. */
  #busy = false;
  #lastTry = -Infinity;
  #note: string | undefined;
  #history: Array<{ what: string; atMs: number }> = [];

  constructor(ctx: SubsystemContext, config: UpgradeConfig = UPGRADE_DEFAULTS) {
    this.#ctx = ctx;
    this.#config = config;
    this.#supervisor = ctx.supervisor;
    const s = this.#supervisor;
    if (s?.trial !== undefined) this.#phase = { kind: "confirming", id: s.trial.id, version: s.trial.version, mode: s.trial.mode };
    else if (s?.rolledBack !== undefined) {
      this.#phase = { kind: "halting", id: s.rolledBack.id, reason: s.rolledBack.reason, written: false };
      this.#log(`rolled back from ${s.rolledBack.id.slice(0, 16)}: ${s.rolledBack.reason}`);
    }
  }

  get phase(): string {
    return this.#phase.kind;
  }

  onEvent(event: KernelEvent): void {
    if (event.type !== "bundle-ready") return;
    const id = event.data["id"], version = event.data["version"];
    const node = event.data["node"];
    if (typeof id === "string" && ID.test(id) && typeof version === "number") this.#ready = { id, version, node: typeof node === "string" ? node : "" };
  }

  #log(what: string): void {
    this.#history.push({ what, atMs: this.#ctx.clock.nowMs() });
    if (this.#history.length > 16) this.#history.shift();
    this.#ctx.emit("upgrade", { what });
  }

  /** Why this node does not upgrade to `id` now, or undefined when it may. */
  refusal(id: string): string | undefined {
    const failed = this.#supervisor?.failed().get(id);
    if (failed !== undefined) return `rolled back here: ${failed}`;
    const halt = this.#ctx.services.kv?.valueLocal(HALT_PREFIX + id);
    if (halt !== undefined) return `halted: ${new TextDecoder().decode(halt).slice(0, REASON_CHARS)}`;
    return undefined;
  }

  tick(tick: number): void {
    const supervisor = this.#supervisor;
    if (supervisor === undefined) return;
    for (const refused of supervisor.refusals()) {
      this.#log(`the supervisor refused ${refused.id.slice(0, 16)}: ${refused.reason}`);
      this.#phase = { kind: "halting", id: refused.id, reason: refused.reason, written: false };
    }
    const phase = this.#phase;
    if (phase.kind === "transferring") return this.#transfer(phase, tick, supervisor);
    if (this.#busy || tick - this.#lastTry < this.#config.checkEveryTicks) return;
    this.#lastTry = tick;
    switch (phase.kind) {
      case "idle": return this.#consider(supervisor);
      case "confirming": return this.#confirm(phase, supervisor);
      case "releasing": return this.#release(phase.id);
      case "halting": return this.#halt(phase);
      case "restarting": return;
    }
  }

  #kv(op: (kv: NonNullable<SubsystemContext["services"]["kv"]>, done: (answer: KvAnswer) => void) => void, then: (answer: KvAnswer) => void): void {
    const kv = this.#ctx.services.kv;
    if (kv === undefined) return;
    this.#busy = true;
    op(kv, (answer) => {
      this.#busy = false;
      then(answer);
    });
  }

  #isCore(): boolean {
    return this.#ctx.members.self.role === "core";
  }

  /** The bundle to upgrade to: the newest ready one that was neither rolled back here nor halted. */
  #candidate(): { id: string; version: number; node: string } | undefined {
    const bundles = this.#ctx.services.bundles;
    if (bundles === undefined) return this.#ready;
    const skip = new Set<string>(this.#supervisor?.failed().keys() ?? []);
    for (const key of this.#ctx.services.kv?.keysLocal(HALT_PREFIX, LIMITS.evolve.upgrade.failedMax) ?? []) skip.add(key.slice(HALT_PREFIX.length));
    return bundles.ready(skip) ?? bundles.ready();
  }

  #consider(supervisor: SupervisorPort): void {
    const ready = this.#candidate();
    this.#ready = ready;
    if (ready === undefined) return;
    const refusal = this.refusal(ready.id);
    if (refusal !== undefined) {
      this.#note = `not upgrading to v${ready.version}: ${refusal}`;
      return;
    }
    const kv = this.#ctx.services.kv;
    if (kv === undefined || kv.leader === "") {
      this.#note = "waiting for a Raft leader";
      return;
    }
    const mode = this.#ctx.mode();
    const lock: Lock = { node: this.#ctx.id, id: ready.id, version: ready.version, atMs: this.#ctx.clock.nowMs() };
    if (!this.#isCore()) {
      // A contributor holds no vote: it restarts when it likes, without the lock.
      this.#restart(supervisor, lock, ready.node, mode);
      return;
    }
    const current = kv.valueLocal(LOCK_KEY);
    const held = parseLock(current);
    if (held !== undefined && held.node !== this.#ctx.id && lock.atMs - held.atMs < this.#config.lockStaleMs) {
      this.#note = `waiting: ${held.node} holds the upgrade lock (v${held.version}, ${formatDuration(lock.atMs - held.atMs)})`;
      return;
    }
    this.#note = held === undefined ? `taking the upgrade lock for v${ready.version}` : `taking over the upgrade lock from ${held.node}`;
    this.#kv((k, done) => k.cas(LOCK_KEY, current, encode(lock), done), (answer) => {
      if (answer.code !== "ok") {
        this.#note = `the upgrade lock was not taken (${answer.code})`;
        return;
      }
      this.#log(`took the upgrade lock for v${lock.version} ${lock.id.slice(0, 16)}`);
      const to = kv.isLeader ? kv.transferLeadership?.() : undefined;
      if (to !== undefined) this.#log(`handing Raft leadership to ${to} before restarting`);
      this.#phase = { kind: "transferring", lock, needs: ready.node, sinceTick: this.#ctx.tick(), mode };
    });
  }

  #transfer(phase: Extract<Phase, { kind: "transferring" }>, tick: number, supervisor: SupervisorPort): void {
    const kv = this.#ctx.services.kv;
    if (kv?.isLeader === true && tick - phase.sinceTick < this.#config.transferWaitTicks) return;
    this.#restart(supervisor, phase.lock, phase.needs, phase.mode);
  }

  #restart(supervisor: SupervisorPort, lock: Lock, needs: string, mode: Mode): void {
    this.#phase = { kind: "restarting", lock };
    this.#note = `restarting into v${lock.version} ${lock.id.slice(0, 16)}`;
    this.#log(this.#note);
    supervisor.restartInto({ id: lock.id, version: lock.version, mode, node: needs });
  }

  /** The new code is on trial: healthy once it sees the mode it had before, a leader, and a linearizable read answers. */
  #confirm(phase: Extract<Phase, { kind: "confirming" }>, supervisor: SupervisorPort): void {
    const mode = this.#ctx.mode();
    if ((RANK[mode] ?? 0) < (RANK[phase.mode] ?? 0)) {
      this.#note = `on trial: mode ${mode}, waiting for ${phase.mode}`;
      return;
    }
    const kv = this.#ctx.services.kv;
    if (kv === undefined || kv.leader === "") {
      this.#note = "on trial: waiting for a Raft leader";
      return;
    }
    this.#note = "on trial: waiting for Raft to catch up";
    this.#kv((k, done) => k.get(LOCK_KEY, done), (answer) => {
      if (answer.code !== "ok" && answer.code !== "not-found") return;
      supervisor.healthy(phase.id);
      this.#log(`healthy on v${phase.version} ${phase.id.slice(0, 16)}`);
      this.#phase = this.#isCore() ? { kind: "releasing", id: phase.id } : { kind: "idle" };
      this.#lastTry = -Infinity;
    });
  }

  /** Releases the lock if this node holds it (compare-and-set: a lock taken over is not touched). */
  #release(id: string, after: Phase = { kind: "idle" }): void {
    const kv = this.#ctx.services.kv;
    if (kv === undefined) return;
    const current = kv.valueLocal(LOCK_KEY);
    const held = parseLock(current);
    if (held === undefined || held.node !== this.#ctx.id) {
      this.#phase = after;
      return;
    }
    this.#kv((k, done) => k.cas(LOCK_KEY, current, encode(FREE), done), (answer) => {
      if (answer.code === "ok" || answer.code === "conflict") {
        this.#log(`released the upgrade lock (${id.slice(0, 16)})`);
        this.#phase = after;
        this.#note = undefined;
      }
    });
  }

  #halt(phase: Extract<Phase, { kind: "halting" }>): void {
    if (!this.#isCore()) {
      this.#phase = { kind: "idle" };
      return;
    }
    if (phase.written) return this.#release(phase.id);
    const halt = { node: this.#ctx.id, reason: phase.reason.slice(0, REASON_CHARS), atMs: this.#ctx.clock.nowMs() };
    this.#note = `halting the rollout of ${phase.id.slice(0, 16)}`;
    this.#kv((k, done) => k.put(HALT_PREFIX + phase.id, encode(halt), done), (answer) => {
      if (answer.code !== "ok") return;
      this.#log(`halted the rollout of ${phase.id.slice(0, 16)}: ${halt.reason}`);
      this.#phase = { ...phase, written: true };
      this.#lastTry = -Infinity;
    });
  }

  /** Everything `upgrade status` shows. */
  status(): string {
    const kv = this.#ctx.services.kv;
    const lock = parseLock(kv?.valueLocal(LOCK_KEY));
    const now = this.#ctx.clock.nowMs();
    const rows: Array<[string, string]> = [
      ["supervised", this.#supervisor === undefined ? "no (pk node --supervise to upgrade)" : "yes"],
      ["phase", this.#phase.kind],
      ["ready", this.#ready === undefined ? "-" : `v${this.#ready.version} ${this.#ready.id.slice(0, 16)}${this.refusal(this.#ready.id) === undefined ? "" : ` (refused: ${this.refusal(this.#ready.id) ?? ""})`}`],
      ["lock", lock === undefined ? "free" : `${lock.node} for v${lock.version} ${lock.id.slice(0, 16)}, ${formatDuration(now - lock.atMs)} ago`],
    ];
    if (this.#note !== undefined) rows.push(["note", this.#note]);
    let out = formatFields(rows);
    const halts = (kv?.keysLocal(HALT_PREFIX, HALTS_SHOWN) ?? []).map((key) => [key.slice(HALT_PREFIX.length, HALT_PREFIX.length + 16), new TextDecoder().decode(kv?.valueLocal(key) ?? new Uint8Array()).slice(0, 200)]);
    out += `\n\n${halts.length === 0 ? "no halted bundles" : formatTable(["HALTED", "WHY"], halts)}`;
    const failed = [...(this.#supervisor?.failed() ?? new Map<string, string>())].map(([id, reason]) => [id.slice(0, 16), reason.slice(0, 200)]);
    if (failed.length > 0) out += `\n\n${formatTable(["ROLLED BACK HERE", "WHY"], failed)}`;
    if (this.#history.length > 0) out += `\n\n${formatTable(["AGO", "WHAT"], this.#history.map((h) => [formatDuration(now - h.atMs), h.what]))}`;
    return out;
  }
}

const upgradeCommand: Command<NodeContext> = {
  name: "upgrade",
  summary: "rolling upgrades into fetched bundles: this node's phase, the cluster's upgrade lock, halted bundles",
  usage: "upgrade status",
  run(args, { kernel }) {
    const [verb = "status", ...rest] = args;
    if (verb !== "status" || rest.length > 0) throw new UsageError("upgrade takes one word: status");
    return kernel.subsystem<UpgradePart>("upgrade").status();
  },
};

export const UPGRADE = defineSubsystem({
  name: "upgrade",
  kinds: {},
  create: (ctx) => new UpgradePart(ctx),
  commands: [upgradeCommand],
});
