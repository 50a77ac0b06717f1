// Guarded tasks (Body layer): heal (src/core/body/heal.ts) keeps each replicated task definition
// running on exactly one node — its owner, or the survivor that adopted it — and this subsystem
// runs the ones this node holds: a task per guarded command in the task table, its command run
// every everyTicks through the runner the node installs (the shell). Records are durable before
// they are sent. Each record is signed by its owner (the node's RecordSigner, ctx.records): heal
// checks peers' records with it, and its refusals show in /metrics (pk_records_refused_total).
import { Heal, taskFromWire, taskToWire, type GuardedTask, type HealConfig, type HealMembership } from "../../core/body/heal.ts";
import { LIMITS } from "../../core/util/limits.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import { isGuardedTaskWire, isUnsignedGuardedTaskWire, type MessageOf } from "../../core/wire/messages.ts";
import type { KernelEvent } from "../events.ts";
import type { PersistSection, SubsystemContext } from "../subsystem-context.ts";
import type { Task } from "../tasks.ts";
import { clearEntries, sized } from "./persist.ts";

const PREFIX_GUARD = "heal/task/";
/** Characters of a guarded command's last output kept for `heal`. */
const GUARD_OUTPUT_MAX = LIMITS.node.guardOutputCharsMax;

/** Runs one guarded task's command; returns its output (the node wires it to the shell). */
export type GuardRunner = (command: string) => string;

export interface GuardStatus {
  readonly task: GuardedTask;
  /** Set while this node runs it. */
  readonly running: { readonly tid: number; readonly runs: number; readonly lastOutput: string } | undefined;
}

interface Running {
  readonly task: Task;
  readonly record: GuardedTask;
  nextTick: number;
  runs: number;
  lastOutput: string;
}

export class Guard {
  readonly heal: Heal;
  /** Runs guarded tasks' commands; unset, a guarded task runs but does nothing. */
  runner: GuardRunner | undefined;
  readonly #ctx: SubsystemContext;
  readonly #running = new Map<string, Running>();
  /** Members SWIM declared dead or left, until they come back (heal syncs with them then). */
  readonly #gone = new Set<string>();
  readonly #membership: HealMembership;

  constructor(ctx: SubsystemContext, config: HealConfig) {
    this.#ctx = ctx;
    this.heal = new Heal(ctx.id, ctx.records, config);
    this.heal.restore(this.#restore());
    this.#membership = {
      liveIds: () => ctx.members.liveIds(),
      liveCount: () => ctx.members.size - 1,
      isGone: (id) => {
        const state = ctx.members.stateOf(id);
        return state === "dead" || state === "left";
      },
      roleOf: (id) => (id === ctx.id ? ctx.members.self.role : ctx.members.roleOf(id)),
    };
  }

  step(from: string, message: MessageOf<"heal">): void {
    this.heal.step(from, message.reply, message.tasks, this.#membership);
    this.#drain();
  }

  tick(): void {
    this.heal.tick(this.#membership);
    this.#drain();
    this.#run();
  }

  onEvent(event: KernelEvent): void {
    const id = String(event.data.id);
    if (id === this.#ctx.id) return;
    if (event.type === "member-dead" || event.type === "member-left") {
      if (this.#gone.size < LIMITS.membersMax) this.#gone.add(id);
    } else if (event.type === "member-alive") {
      // A member back from the dead (a healed partition, a restart) compares tables with us at
      // once, so the sides converge in one exchange. New members are not sent anything: they ask
      // on their own sync, and a mass join would otherwise cost n² messages.
      if (this.#gone.delete(id) && this.heal.list().length > 0) {
        this.heal.syncWith(id);
        this.#drain();
      }
    }
  }

  /** Defines a guarded task owned by this node; returns an error text or undefined. */
  define(name: string, command: string, everyTicks: number): string | undefined {
    const error = this.heal.define(name, command, everyTicks, this.#membership);
    this.#drain();
    return error;
  }

  remove(name: string): string | undefined {
    const error = this.heal.remove(name, this.#membership);
    this.#drain();
    return error;
  }

  statuses(): GuardStatus[] {
    return this.heal.list().map((task) => {
      const running = this.#running.get(task.name);
      return { task, running: running === undefined ? undefined : { tid: running.task.tid, runs: running.runs, lastOutput: running.lastOutput } };
    });
  }

  sections(): PersistSection[] {
    const entries = this.#ctx.store.scan(PREFIX_GUARD, LIMITS.guardedTasksMax * 2);
    return [{
      name: "guarded", ...sized(entries), durable: true,
      clear: () => {
        this.heal.clear();
        return clearEntries(this.#ctx, entries);
      },
    }];
  }

  #drain(): void {
    const ctx = this.#ctx;
    for (let round = 0; round < LIMITS.node.guardDrainRoundsMax && this.heal.hasReady(); round++) {
      const ready = this.heal.ready();
      if (ready.changed.length > 0) ctx.persist(ready.changed.map((task) => ({ key: PREFIX_GUARD + task.name, value: packValue(taskToWire(task)) })), true);
      for (const out of ready.messages) ctx.send(out.to, "stream", { t: "heal", reply: out.reply, tasks: out.tasks });
      for (const event of ready.events) ctx.emit(event.type, event);
    }
  }

  /** Starts and stops guarded tasks to match what heal says this node runs, and runs those due. */
  #run(): void {
    const wanted = this.heal.running();
    if (wanted.length === 0 && this.#running.size === 0) return;
    const tick = this.#ctx.tick();
    const names = new Set<string>();
    for (const record of wanted) {
      names.add(record.name);
      const current = this.#running.get(record.name);
      if (current !== undefined && current.record === record) continue;
      if (current !== undefined) this.#stop(current, "redefined");
      const task = this.#ctx.tasks.spawn(`guard:${record.name}`, "guarded", tick);
      if (task === undefined) continue;
      this.#running.set(record.name, { task, record, nextTick: tick, runs: 0, lastOutput: "" });
      this.#ctx.emit("guard-started", { name: record.name, epoch: record.epoch, tid: task.tid });
    }
    for (const running of [...this.#running.values()]) {
      if (!names.has(running.record.name)) {
        this.#stop(running, "owner changed or removed");
        continue;
      }
      if (tick < running.nextTick) continue;
      running.nextTick = tick + running.record.everyTicks;
      running.runs++;
      running.task.steps++;
      if (this.runner !== undefined) running.lastOutput = this.runner(running.record.command).slice(0, GUARD_OUTPUT_MAX);
    }
  }

  #stop(running: Running, reason: string): void {
    this.#running.delete(running.record.name);
    this.#ctx.tasks.stop(running.task.tid);
    this.#ctx.tasks.reap(running.task.tid);
    this.#ctx.emit("guard-stopped", { name: running.record.name, epoch: running.record.epoch, reason });
  }

  /** The stored records; those of the previous format come unsigned (heal signs its own again, drops the rest). */
  #restore(): GuardedTask[] {
    const out: GuardedTask[] = [];
    const unsigned = new Uint8Array(0);
    for (const [, value] of this.#ctx.store.scan(PREFIX_GUARD, LIMITS.guardedTasksMax * 2)) {
      const decoded = unpackValue(value);
      if (isGuardedTaskWire(decoded)) out.push(taskFromWire(decoded));
      else if (isUnsignedGuardedTaskWire(decoded)) out.push(taskFromWire([...decoded, unsigned, unsigned]));
    }
    return out;
  }
}
