// heal: guarded tasks, a sans-IO core. A guarded task is a shell command run every `everyTicks` by
// exactly one node, its owner. Its definition is replicated to every node; when SWIM declares the
// owner dead (or it left), the lowest-id live node adopts the task and starts it. Protocol:
// docs/protocols/heal.md.
//
// Records form a total order per name: the higher `epoch` wins, then the lower owner id, then
// removal over presence, then the smaller command. Every change (define, adoption, removal) raises
// the epoch, so a node that learns a newer record of a task it runs stops it. That is the fence:
// when a partition heals, both sides' records meet, the larger wins everywhere, and only its owner
// keeps running the task. A node that has just booted runs nothing until it has compared tables
// with a peer or `settleTicks` have passed, so a restarted owner does not resume a task adopted in
// its absence.
//
// Trust. Records are not signed, so a peer's record is bounded as a value before it is taken:
// (1) a record naming this node as owner is one only this node writes (a definition, removal or
// adoption names its writer), so a peer's newer one is a forgery (or this node lost its store): it
// is refused, never run, and answered one epoch above with this node's own record of the task, or a
// removal when it holds none, which wins over it everywhere; (2) epochs up
// to LIMITS.guardEpochTakenMax are taken as they come, and above it only up to guardEpochStepMax
// above the record held, so the upper half of the epoch space stays for the changes nodes make
// themselves (define, remove, adopt: one epoch each) and a peer cannot use it up in one message.
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import { Outbox, type Ready } from "../util/outbox.ts";
import { Timeout } from "../util/timeout.ts";
import type { GuardedTaskWire } from "../wire/messages.ts";

export interface GuardedTask {
  readonly name: string;
  readonly command: string;
  readonly everyTicks: number;
  readonly owner: string;
  readonly epoch: number;
  readonly removed: boolean;
}

export interface HealConfig {
  /** Ticks between whole-table exchanges with one random live member. */
  readonly syncTicks: number;
  /** Ticks after boot before tasks run without having heard a peer's table. */
  readonly settleTicks: number;
}

export const HEAL_DEFAULTS: HealConfig = { syncTicks: 500, settleTicks: 300 };

/** What heal reads of the membership (SWIM's view on this node). */
export interface HealMembership {
  /** Live members (alive or suspect), this node excluded. */
  liveIds(): readonly string[];
  /** How many there are (cheap). */
  liveCount(): number;
  /** True once the member is declared dead or has left. */
  isGone(id: string): boolean;
}

export interface HealOutbound {
  /** Member id; the kernel resolves the address. */
  readonly to: string;
  readonly reply: boolean;
  readonly tasks: GuardedTaskWire[];
}

export type HealEvent =
  | { readonly type: "guard-defined"; readonly name: string; readonly owner: string; readonly epoch: number }
  | { readonly type: "guard-removed"; readonly name: string; readonly epoch: number }
  | { readonly type: "guard-adopted"; readonly name: string; readonly from: string; readonly epoch: number }
  /** A peer sent a record naming this node as owner that it never wrote; this node's own record (or a removal) replaced it. */
  | { readonly type: "guard-refused"; readonly name: string; readonly from: string; readonly epoch: number; readonly command: string };

/** Peer records refused (docs/protocols/heal.md, "Trust"). */
export interface HealStats {
  /** Records whose epoch is beyond what may be taken from a peer (LIMITS.guardEpochTakenMax, guardEpochStepMax). */
  epochRefused: number;
  /** Newer records naming this node as owner that it never wrote: refused and replaced. */
  ownerRefused: number;
}

export interface HealReady extends Ready<HealOutbound, HealEvent> {
  /** Records to write to the store (durably: a guarded task must survive power loss). */
  readonly changed: readonly GuardedTask[];
}

export function taskToWire(task: GuardedTask): GuardedTaskWire {
  return [task.name, task.command, task.everyTicks, task.owner, task.epoch, task.removed];
}

export function taskFromWire(wire: GuardedTaskWire): GuardedTask {
  return { name: wire[0], command: wire[1], everyTicks: wire[2], owner: wire[3], epoch: wire[4], removed: wire[5] };
}

/**
 * True when a peer's record at `epoch` may be taken over one held at `held` (0: none): freely up to
 * LIMITS.guardEpochTakenMax, above it at most guardEpochStepMax above the held one (see the header).
 */
export function epochTakeable(epoch: number, held: number): boolean {
  return epoch <= LIMITS.guardEpochTakenMax || epoch - held <= LIMITS.guardEpochStepMax;
}

/** True when record `a` wins over record `b` of the same task (see the header). */
export function taskBeats(a: GuardedTask, b: GuardedTask): boolean {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch;
  if (a.owner !== b.owner) return a.owner < b.owner;
  if (a.removed !== b.removed) return a.removed;
  if (a.everyTicks !== b.everyTicks) return a.everyTicks < b.everyTicks;
  return a.command < b.command;
}

export class Heal {
  readonly #self: string;
  readonly #config: HealConfig;
  readonly #tasks = new Map<string, GuardedTask>();
  readonly #sync: Timeout;
  #settled = false;
  #running: GuardedTask[] | undefined;
  #now = 0;
  readonly #out = new Outbox<HealOutbound, HealEvent, { changed: GuardedTask }>({ changed: [] });
  readonly #stats: HealStats = { epochRefused: 0, ownerRefused: 0 };

  constructor(self: string, config: HealConfig = HEAL_DEFAULTS) {
    assert(config.syncTicks > 0 && config.settleTicks >= 0, "Heal: config out of bounds");
    this.#self = self;
    this.#config = config;
    this.#sync = new Timeout("heal-sync", config.syncTicks);
    this.#sync.start();
  }

  /** Records from the store, before any traffic. */
  restore(tasks: readonly GuardedTask[]): void {
    for (const task of tasks) {
      const known = this.#tasks.get(task.name);
      if (known === undefined ? this.#tasks.size < LIMITS.guardedTasksMax : taskBeats(task, known)) this.#tasks.set(task.name, task);
      this.#running = undefined;
    }
  }

  stats(): HealStats {
    return { ...this.#stats };
  }

  get settled(): boolean {
    return this.#settled;
  }

  list(): GuardedTask[] {
    return [...this.#tasks.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): GuardedTask | undefined {
    return this.#tasks.get(name);
  }

  /** Tasks this node should be running now (the same array until something changes). */
  running(): readonly GuardedTask[] {
    if (!this.#settled) return [];
    this.#running ??= this.list().filter((task) => !task.removed && task.owner === this.#self);
    return this.#running;
  }

  /** Defines (or redefines) a task owned by this node. Returns an error text, or undefined. */
  define(name: string, command: string, everyTicks: number, membership: HealMembership): string | undefined {
    const known = this.#tasks.get(name);
    if (known === undefined && this.#tasks.size >= LIMITS.guardedTasksMax && !this.#evictRemoved()) {
      return `at most ${LIMITS.guardedTasksMax} guarded tasks`;
    }
    const epoch = (known?.epoch ?? 0) + 1;
    if (epoch > LIMITS.guardEpochMax) return "epoch space exhausted";
    const task: GuardedTask = { name, command, everyTicks, owner: this.#self, epoch, removed: false };
    this.#set(task);
    this.#out.emit({ type: "guard-defined", name, owner: this.#self, epoch });
    this.#broadcast([task], membership);
    return undefined;
  }

  /** Removes a task everywhere (a removal record with a higher epoch). */
  remove(name: string, membership: HealMembership): string | undefined {
    const known = this.#tasks.get(name);
    if (known === undefined || known.removed) return `no guarded task ${JSON.stringify(name)}`;
    if (known.epoch >= LIMITS.guardEpochMax) return "epoch space exhausted";
    const task: GuardedTask = { ...known, epoch: known.epoch + 1, removed: true, owner: this.#self };
    this.#set(task);
    this.#out.emit({ type: "guard-removed", name, epoch: task.epoch });
    this.#broadcast([task], membership);
    return undefined;
  }

  /**
   * A peer's records; `reply` asks for ours back. `membership` is needed only to tell every live
   * member of the answer to a refused record naming this node; without it the answer spreads by sync.
   */
  step(from: string, reply: boolean, tasks: readonly GuardedTaskWire[], membership?: HealMembership): void {
    this.#settled = true;
    let answers: GuardedTask[] | undefined;
    for (const wire of tasks) {
      const task = taskFromWire(wire);
      const known = this.#tasks.get(task.name);
      if (known !== undefined ? !taskBeats(task, known) : this.#tasks.size >= LIMITS.guardedTasksMax) continue;
      if (!epochTakeable(task.epoch, known?.epoch ?? 0)) {
        this.#stats.epochRefused++;
        continue;
      }
      if (task.owner === this.#self) {
        // Only this node writes records that name it: a newer one from a peer was never written
        // here. It is not run. One epoch above it, this node's own record (when it holds one) or
        // else a removal replaces it everywhere.
        this.#stats.ownerRefused++;
        if (task.epoch >= LIMITS.guardEpochMax) continue;
        const answer: GuardedTask = known?.owner === this.#self
          ? { ...known, epoch: task.epoch + 1 }
          : { ...task, epoch: task.epoch + 1, removed: true };
        this.#set(answer);
        this.#out.emit({ type: "guard-refused", name: task.name, from, epoch: task.epoch, command: task.command });
        (answers ??= []).push(answer);
        continue;
      }
      this.#set(task);
    }
    if (answers !== undefined && membership !== undefined) this.#broadcast(answers, membership);
    if (reply) this.#out.send({ to: from, reply: false, tasks: this.#table() });
  }

  /** Cheap when there is nothing to do: the live list is only read on a sync or an adoption. */
  tick(membership: HealMembership): void {
    this.#now++;
    this.#sync.tick();
    if (!this.#settled && (this.#now >= this.#config.settleTicks || membership.liveCount() === 0)) this.#settled = true;
    if (this.#sync.fired()) {
      this.#sync.reset();
      const live = membership.liveIds();
      if (live.length > 0) {
        // Deterministic choice from the tick count: the core has no Rng of its own to spend.
        const to = live[Math.floor(this.#now / this.#config.syncTicks) % live.length] as string;
        this.#out.send({ to, reply: true, tasks: this.#table() });
      }
    }
    if (this.#tasks.size > 0) this.#adopt(membership);
  }

  /** Asks a member for its table at once (after a join, or when a member comes back). */
  syncWith(id: string): void {
    this.#out.send({ to: id, reply: true, tasks: this.#table() });
  }

  clear(): void {
    this.#running = undefined;
    this.#tasks.clear();
  }

  ready(): HealReady {
    return this.#out.take();
  }

  hasReady(): boolean {
    return this.#out.hasReady();
  }

  /** Tasks whose owner is gone go to the lowest-id live node; if that is this one, it adopts. */
  #adopt(membership: HealMembership): void {
    let lowest = this.#self;
    let adopted: GuardedTask[] | undefined;
    let lowestKnown = false;
    for (const task of this.#tasks.values()) {
      if (task.removed || task.owner === this.#self || !membership.isGone(task.owner)) continue;
      if (!lowestKnown) {
        for (const id of membership.liveIds()) if (id < lowest) lowest = id;
        lowestKnown = true;
      }
      if (lowest !== this.#self || task.epoch >= LIMITS.guardEpochMax) continue;
      const next: GuardedTask = { ...task, owner: this.#self, epoch: task.epoch + 1 };
      this.#set(next);
      this.#out.emit({ type: "guard-adopted", name: task.name, from: task.owner, epoch: next.epoch });
      (adopted ??= []).push(next);
    }
    if (adopted !== undefined) this.#broadcast(adopted, membership);
  }

  #broadcast(tasks: readonly GuardedTask[], membership: HealMembership): void {
    const wire = tasks.map(taskToWire);
    for (const to of membership.liveIds()) this.#out.send({ to, reply: false, tasks: wire });
  }

  #set(task: GuardedTask): void {
    this.#running = undefined;
    this.#tasks.set(task.name, task);
    this.#out.add("changed", task);
  }

  /**
   * Forgets one removal record to make room: the table (removals included) must fit one message.
   * A peer still holding the removed task's older record could bring it back; that is the price
   * of a bounded table, paid only when it is full.
   */
  #evictRemoved(): boolean {
    for (const [name, task] of this.#tasks) {
      if (!task.removed) continue;
      this.#running = undefined;
      this.#tasks.delete(name);
      return true;
    }
    return false;
  }

  #table(): GuardedTaskWire[] {
    return [...this.#tasks.values()].map(taskToWire);
  }
}
