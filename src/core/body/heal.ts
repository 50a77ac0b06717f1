// heal: guarded tasks, a sans-IO core. A guarded task is a shell command run every `everyTicks` by
// exactly one node, its owner. Its definition is replicated to every node; when SWIM declares the
// owner dead (or it left), the lowest-id live core node adopts the task and starts it. Protocol:
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
// Trust. Every record names its writer as its owner (a definition, an adoption and a removal are
// all written by the node they name) and carries that writer's Ed25519 public key and signature
// over its canonical bytes (healRecordBody), so it verifies wherever it is relayed, its writer alive
// or long gone: nobody can put a record in another node's name, nor change a signed one. A peer's
// record is checked only when it would replace what this node holds; one that fails is dropped and
// counted (the signer counts by reason, Heal.stats() counts `signatureRefused`), the rest of the
// message is still taken. A record naming this node that verifies is one this node wrote (before
// it lost its store): it is taken back. Only core members write records (a contributor's task would
// run on a core survivor): a contributor defines, removes and adopts nothing, and a record whose
// owner the membership knows as a contributor is dropped. Epochs up to LIMITS.guardEpochTakenMax
// are taken as they come, and above it only up to guardEpochStepMax above the record held, so the
// upper half of the epoch space stays for the changes nodes make themselves (define, remove,
// adopt: one epoch each) and no writer can use it up in one message.
import { assert } from "../util/assert.ts";
import { fromHex } from "../util/bytes.ts";
import { LIMITS } from "../util/limits.ts";
import { Outbox, type Ready } from "../util/outbox.ts";
import { Timeout } from "../util/timeout.ts";
import type { GuardedTaskWire, Role } from "../wire/messages.ts";

export interface GuardedTask {
  readonly name: string;
  readonly command: string;
  readonly everyTicks: number;
  /** The node that runs the task, and the record's writer: its key signed it. */
  readonly owner: string;
  readonly epoch: number;
  readonly removed: boolean;
  /** The owner's Ed25519 public key (32 bytes; its id is the key's SHA-256 prefix). */
  readonly pub: Uint8Array;
  /** The owner's signature over healRecordBody (64 bytes; empty only in a record of the previous format read from the store). */
  readonly sig: Uint8Array;
}

/** The fields a record's writer signs: all of them but the key and the signature. */
export type GuardedTaskFields = Omit<GuardedTask, "pub" | "sig">;

/**
 * Signs this node's records and checks other writers' (the node's RecordSigner, trust.ts, is one;
 * tests may use it over the simulator's stand-in identity). check() answers undefined for a good
 * signature, else the reason, and counts the refusal itself.
 */
export interface HealSigner {
  readonly publicKey: Uint8Array;
  sign(kind: "heal", body: Uint8Array): Uint8Array;
  check(kind: "heal", writer: string, pub: Uint8Array, body: Uint8Array, signature: Uint8Array): string | undefined;
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
  /**
   * The role the owner key granted a member (this node's own included); undefined when unknown.
   * Only core members write guarded tasks (a contributor's would run on a core survivor once it
   * is gone). Without it every writer is taken for core.
   */
  roleOf?(id: string): Role | undefined;
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
  /** A peer sent a record naming this node as owner that this node never signed: dropped (every node drops it). */
  | { readonly type: "guard-refused"; readonly name: string; readonly from: string; readonly epoch: number; readonly command: string };

/** Peer records refused (docs/protocols/heal.md, "Trust"). */
export interface HealStats {
  /** Records whose epoch is beyond what may be taken from a peer (LIMITS.guardEpochTakenMax, guardEpochStepMax). */
  epochRefused: number;
  /** Newer records whose owner's signature does not verify (another key, a changed field): dropped. */
  signatureRefused: number;
  /** Of those, the ones naming this node as owner (a record in its name it never wrote). */
  ownerRefused: number;
  /** Unsigned records of other owners read from the store (the previous format): dropped at boot. */
  unsignedDropped: number;
  /** Newer records whose owner this node knows as a contributor: dropped (only core members write guarded tasks). */
  roleRefused: number;
}

export interface HealReady extends Ready<HealOutbound, HealEvent> {
  /** Records to write to the store (durably: a guarded task must survive power loss). */
  readonly changed: readonly GuardedTask[];
}

export function taskToWire(task: GuardedTask): GuardedTaskWire {
  return [task.name, task.command, task.everyTicks, task.owner, task.epoch, task.removed, task.pub, task.sig];
}

/** The decoder hands out byte fields as views into the packet; a kept record gets its own copies. */
/** The record's fields as the wire holds them, without copies (to compare with the one held). */
function taskFromWireView(wire: GuardedTaskWire): GuardedTaskFields {
  return { name: wire[0], command: wire[1], everyTicks: wire[2], owner: wire[3], epoch: wire[4], removed: wire[5] };
}

export function taskFromWire(wire: GuardedTaskWire): GuardedTask {
  return { name: wire[0], command: wire[1], everyTicks: wire[2], owner: wire[3], epoch: wire[4], removed: wire[5], pub: wire[6].slice(), sig: wire[7].slice() };
}

const encoder = new TextEncoder();

/**
 * The canonical bytes of a record, which its owner signs (RecordSigner prefixes "p-kernel/v1/heal"):
 *
 *   name length (u8) ‖ name (ASCII) ‖ command length (u16 BE) ‖ command (UTF-8) ‖ everyTicks (u32 BE)
 *   ‖ owner (8 bytes) ‖ epoch (u32 BE) ‖ removed (u8: 0 or 1)
 *
 * Every field is bounded by the wire schema (name ≤ 64 characters, command ≤ 1,024 characters, so
 * ≤ 3,072 bytes), so the lengths fit their prefixes and the encoding is unambiguous.
 */
export function healRecordBody(task: GuardedTaskFields): Uint8Array {
  const name = encoder.encode(task.name);
  const command = encoder.encode(task.command);
  assert(name.length <= 0xff && command.length <= 0xffff, "healRecordBody: name or command beyond its length prefix");
  const out = new Uint8Array(1 + name.length + 2 + command.length + 4 + 8 + 4 + 1);
  const view = new DataView(out.buffer);
  let at = 0;
  out[at++] = name.length;
  out.set(name, at);
  at += name.length;
  view.setUint16(at, command.length);
  at += 2;
  out.set(command, at);
  at += command.length;
  view.setUint32(at, task.everyTicks);
  at += 4;
  out.set(fromHex(task.owner) ?? new Uint8Array(8), at);
  at += 8;
  view.setUint32(at, task.epoch);
  at += 4;
  out[at] = task.removed ? 1 : 0;
  return out;
}

/**
 * True when a peer's record at `epoch` may be taken over one held at `held` (0: none): freely up to
 * LIMITS.guardEpochTakenMax, above it at most guardEpochStepMax above the held one (see the header).
 */
export function epochTakeable(epoch: number, held: number): boolean {
  return epoch <= LIMITS.guardEpochTakenMax || epoch - held <= LIMITS.guardEpochStepMax;
}

/** True when record `a` wins over record `b` of the same task (see the header). */
export function taskBeats(a: GuardedTaskFields, b: GuardedTaskFields): boolean {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch;
  if (a.owner !== b.owner) return a.owner < b.owner;
  if (a.removed !== b.removed) return a.removed;
  if (a.everyTicks !== b.everyTicks) return a.everyTicks < b.everyTicks;
  return a.command < b.command;
}

const CONTRIBUTOR_ERROR = "this node is a contributor: only core nodes define or remove guarded tasks";

export class Heal {
  readonly #self: string;
  readonly #records: HealSigner;
  readonly #config: HealConfig;
  readonly #tasks = new Map<string, GuardedTask>();
  readonly #sync: Timeout;
  #settled = false;
  #running: GuardedTask[] | undefined;
  #now = 0;
  readonly #out = new Outbox<HealOutbound, HealEvent, { changed: GuardedTask }>({ changed: [] });
  readonly #stats: HealStats = { epochRefused: 0, signatureRefused: 0, ownerRefused: 0, unsignedDropped: 0, roleRefused: 0 };

  /** `records` signs this node's records (its key must be `self`'s) and checks peers'. */
  constructor(self: string, records: HealSigner, config: HealConfig = HEAL_DEFAULTS) {
    assert(config.syncTicks > 0 && config.settleTicks >= 0, "Heal: config out of bounds");
    this.#self = self;
    this.#records = records;
    this.#config = config;
    this.#sync = new Timeout("heal-sync", config.syncTicks);
    this.#sync.start();
  }

  /**
   * Records from the store, before any traffic (this node wrote or checked them: not checked again).
   * An unsigned record (written by the previous format) is signed again when this node owns it (it
   * is stored again, in the new format, at the next drain) and dropped, counted, when another node
   * does: its owner signs it again at its own boot and it comes back by sync; one whose owner never
   * comes back is gone.
   */
  restore(tasks: readonly GuardedTask[]): void {
    for (const stored of tasks) {
      let task = stored;
      if (task.sig.length === 0) {
        if (task.owner !== this.#self) {
          this.#stats.unsignedDropped++;
          continue;
        }
        task = this.#signed(task);
        this.#out.add("changed", task);
      }
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
    if (membership.roleOf?.(this.#self) === "contributor") return CONTRIBUTOR_ERROR;
    const known = this.#tasks.get(name);
    if (known === undefined && this.#tasks.size >= LIMITS.guardedTasksMax && !this.#evictRemoved()) {
      return `at most ${LIMITS.guardedTasksMax} guarded tasks`;
    }
    const epoch = (known?.epoch ?? 0) + 1;
    if (epoch > LIMITS.guardEpochMax) return "epoch space exhausted";
    const task = this.#signed({ name, command, everyTicks, owner: this.#self, epoch, removed: false });
    this.#set(task);
    this.#out.emit({ type: "guard-defined", name, owner: this.#self, epoch });
    this.#broadcast([task], membership);
    return undefined;
  }

  /** Removes a task everywhere (a removal record with a higher epoch). */
  remove(name: string, membership: HealMembership): string | undefined {
    if (membership.roleOf?.(this.#self) === "contributor") return CONTRIBUTOR_ERROR;
    const known = this.#tasks.get(name);
    if (known === undefined || known.removed) return `no guarded task ${JSON.stringify(name)}`;
    if (known.epoch >= LIMITS.guardEpochMax) return "epoch space exhausted";
    const task = this.#signed({ ...known, epoch: known.epoch + 1, removed: true, owner: this.#self });
    this.#set(task);
    this.#out.emit({ type: "guard-removed", name, epoch: task.epoch });
    this.#broadcast([task], membership);
    return undefined;
  }

  /**
   * A peer's records; `reply` asks for ours back. A record is checked (its epoch, its owner's role
   * when `membership` knows it, then its owner's signature) only when it would replace the one
   * held: one held already, or older, costs nothing.
   */
  step(from: string, reply: boolean, tasks: readonly GuardedTaskWire[], membership?: HealMembership): void {
    this.#settled = true;
    for (const wire of tasks) {
      const known = this.#tasks.get(wire[0]);
      if (known !== undefined ? !taskBeats(taskFromWireView(wire), known) : this.#tasks.size >= LIMITS.guardedTasksMax) continue;
      if (!epochTakeable(wire[4], known?.epoch ?? 0)) {
        this.#stats.epochRefused++;
        continue;
      }
      if (membership?.roleOf?.(wire[3]) === "contributor") {
        this.#stats.roleRefused++;
        continue;
      }
      const task = taskFromWire(wire);
      if (this.#records.check("heal", task.owner, task.pub, healRecordBody(task), task.sig) !== undefined) {
        // Not its owner's: a record in another node's name, or a signed one changed on the way.
        this.#stats.signatureRefused++;
        if (task.owner === this.#self) {
          this.#stats.ownerRefused++;
          this.#out.emit({ type: "guard-refused", name: task.name, from, epoch: task.epoch, command: task.command });
        }
        continue;
      }
      this.#set(task);
    }
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

  /**
   * Tasks whose owner is gone go to the lowest-id live core node (a node whose role is unknown
   * counts as core); if that is this one, it adopts. A contributor adopts nothing.
   */
  #adopt(membership: HealMembership): void {
    let lowest = this.#self;
    let adopted: GuardedTask[] | undefined;
    let lowestKnown = false;
    for (const task of this.#tasks.values()) {
      if (task.removed || task.owner === this.#self || !membership.isGone(task.owner)) continue;
      if (!lowestKnown) {
        if (membership.roleOf?.(this.#self) === "contributor") return;
        for (const id of membership.liveIds()) if (id < lowest && membership.roleOf?.(id) !== "contributor") lowest = id;
        lowestKnown = true;
      }
      if (lowest !== this.#self || task.epoch >= LIMITS.guardEpochMax) continue;
      const next = this.#signed({ ...task, owner: this.#self, epoch: task.epoch + 1 });
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

  /** A record of this node's, signed by it (every record it writes names it as owner). */
  #signed(fields: GuardedTaskFields): GuardedTask {
    assert(fields.owner === this.#self, "Heal: a record this node signs names it as owner");
    const { name, command, everyTicks, owner, epoch, removed } = fields;
    const task = { name, command, everyTicks, owner, epoch, removed };
    return { ...task, pub: this.#records.publicKey, sig: this.#records.sign("heal", healRecordBody(task)) };
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
