// The kernel: one per node (DESIGN.md §5). It owns boot, the receive pipeline, the tick loop and
// the flush order; everything else is a subsystem (subsystem.ts) registered in registry.ts. It is
// synchronous and driven from outside — by the node's interval timer in a real process (run.ts),
// by virtual time in the simulator — so the same code runs in both.
//
// Inbound: bytes → size check → header decode → AEAD open → replay check → body decode and schema
// validation → the kind's sender rule → the kind's owner. A packet failing any step is dropped and
// counted by reason; none changes state.
//
// Outbound: subsystems queue store writes, messages and events in the kernel's outbox; at the end
// of every turn (a packet, a tick, a call from the API) the kernel carries them out in order:
// persist (durable writes in one fsynced batch), then send, then apply (Raft's ready), then events
// (published on the bus, then handed to every subsystem), and again while that produced more work.
import { RecordSigner } from "../core/body/trust.ts";
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import { decodeHeader, HEADER_BYTES, TAG_BYTES, type Channel } from "../core/wire/envelope.ts";
import { decodeMessage, encodeMessageShared } from "../core/wire/codec.ts";
import { isIntroMessage, type Message, type MessageType } from "../core/wire/messages.ts";
import { ReplayGuard } from "../core/wire/replay.ts";
import type { Membership } from "./body/membership.ts";
import type { KernelConfig } from "./config.ts";
import { EventBus } from "./events.ts";
import type { KernelPorts, SealPeer, StoreWrite } from "./ports.ts";
import { SUBSYSTEMS } from "./registry.ts";
import { KEY_EPOCH, readNumber, writeNumber } from "./store-values.ts";
import type { Subsystem, SubsystemSpec } from "./subsystem.ts";
import type { Sender, Services, SubsystemContext } from "./subsystem-context.ts";
import { LateMembers } from "./late-members.ts";
import { introduction, isIntroduction, PeerSeal } from "./peer-seal.ts";
import { TaskTable, type Task } from "./tasks.ts";
import { NodeView, type DropReason, type KernelStats } from "./view.ts";

export { KERNEL_DEFAULTS, type KernelConfig } from "./config.ts";
export { DROP_REASONS, type DropReason, type GuardStatus, type KernelStats, type MemberState, type MemberStatus, type ModeChange, type PeerRtt } from "./view.ts";
export type { HostVitals, KernelPorts } from "./ports.ts";
export type { PersistSection } from "./subsystem-context.ts";

export const VERSION = "0.1.0";

/** Rounds of the flush loop per turn; work left after them stays queued for the next turn. */
const FLUSH_ROUNDS_MAX = LIMITS.node.flushRoundsMax;

interface Owner {
  readonly name: string;
  readonly part: Subsystem;
  readonly sender: Sender;
  /** The subsystem's daemon in the task table (its steps count the messages it was given). */
  readonly task: Task | undefined;
}

export class Kernel extends NodeView {
  readonly ports: KernelPorts;
  readonly config: KernelConfig;
  readonly events = new EventBus();
  readonly tasks = new TaskTable();
  readonly stats: KernelStats = {
    dropped: { auth: 0, unknown: 0, denied: 0, decode: 0, replay: 0, oversize: 0 },
    datagram: { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0 },
    stream: { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0 },
    sendFailures: 0,
    requests: 0,
    introductions: 0,
    lastDrop: "",
  };
  /** What subsystems offer each other (filled in as they are built). */
  readonly services: Services = {};
  /** Signs this node's records and checks other writers' (see SubsystemContext.records). */
  readonly records: RecordSigner;
  readonly #specs: readonly SubsystemSpec[];
  readonly #replay = new ReplayGuard();
  readonly #parts = new Map<string, Subsystem>();
  /** The parts with a tick hook, and with an onEvent hook, in registry order (the hot loops). */
  readonly #tickers: Subsystem[] = [];
  readonly #listeners: Subsystem[] = [];
  #owners: Partial<Record<MessageType, Owner>> = {};
  #members: Membership | undefined;
  // The outbox: what subsystems queued this turn, carried out in the flush order.
  #durable: StoreWrite[] = [];
  #lazy: StoreWrite[] = [];
  #outbound: Array<{ to: string; channel: Channel; message: Message; id: string | undefined }> = [];
  readonly #peers = new PeerSeal((to, message) => { this.stats.introductions++; this.#seal(to, "datagram", message, undefined); });
  #emitted: Array<{ type: string; data: Readonly<Record<string, unknown>> }> = [];
  readonly #applyWanted = new Set<Subsystem>();
  #applyScheduled = false;
  #depth = 0;
  #epoch = 0;
  #counter = { datagram: 0, stream: 0 };
  #tick = 0;
  #startedMs = 0;
  #running = false;
  #daemons: { kernel?: Task | undefined; net?: Task | undefined } = {};

  constructor(ports: KernelPorts, config: KernelConfig, specs: readonly SubsystemSpec[] = SUBSYSTEMS as unknown as readonly SubsystemSpec[]) {
    super();
    assert(config.tickMs > 0, "Kernel: tickMs must be positive");
    assert(config.pingTicks > 0 && config.persistTicks > 0, "Kernel: pingTicks and persistTicks must be positive");
    this.ports = ports;
    this.config = config;
    this.#specs = specs;
    this.records = new RecordSigner(ports.identity, ports.identity, { revoked: (id) => this.#members?.isRevoked(id) ?? false });
  }

  get id(): string {
    return this.ports.identity.id;
  }
  get tickCount(): number {
    return this.#tick;
  }
  get epoch(): number {
    return this.#epoch;
  }
  get running(): boolean {
    return this.#running;
  }
  get uptimeMs(): number {
    return this.ports.clock.nowMs() - this.#startedMs;
  }
  /** The registered subsystems' specs, in order (for the shell, the API and metrics). */
  get specs(): readonly SubsystemSpec[] {
    return this.#specs;
  }

  subsystem<T>(name: string): T {
    const part = this.#parts.get(name);
    assert(part !== undefined, `Kernel: no subsystem ${name} (or used before start())`);
    return part as T;
  }

  /**
   * Boots the kernel: bumps the boot epoch durably (peers tell this boot's packets from the last
   * one's), builds every subsystem in registry order — each restores its state from the store
   * before any traffic — then starts listening and joining.
   */
  start(): void {
    assert(!this.#running, "Kernel: start() twice");
    const { store, clock, transport } = this.ports;
    this.#startedMs = clock.nowMs();
    this.#epoch = Math.max((readNumber(store.get(KEY_EPOCH)) ?? 0) + 1, Math.floor(this.#startedMs));
    this.within(() => {
      this.#durable.push({ key: KEY_EPOCH, value: writeNumber(this.#epoch) });
      this.#daemons = { kernel: this.tasks.spawn("kernel", "daemon", 0), net: this.tasks.spawn("net", "daemon", 0) };
      const base = this.#context();
      for (const spec of this.#specs) {
        // Each subsystem's context differs only in whose apply() requestApply asks for.
        const slot: { part?: Subsystem; early: boolean } = { early: false };
        const ctx: SubsystemContext = { ...base, requestApply: () => (slot.part === undefined ? (slot.early = true) : this.#requestApply(slot.part)) };
        const part = spec.create(ctx, this.config);
        slot.part = part;
        if (slot.early) this.#requestApply(part);
        if (this.#members === undefined) this.#members = part as unknown as Membership;
        this.#parts.set(spec.name, part);
        if (part.tick !== undefined) this.#tickers.push(part);
        if (part.onEvent !== undefined) this.#listeners.push(part);
        const task = this.tasks.spawn(spec.name, "daemon", 0);
        for (const [kind, sender] of Object.entries(spec.kinds) as Array<[MessageType, Sender]>) {
          assert(this.#owners[kind] === undefined, `Kernel: message kind ${kind} owned by ${this.#owners[kind]?.name} and ${spec.name}`);
          this.#owners[kind] = { name: spec.name, part, sender, task };
        }
      }
      transport.onPacket((packet, channel, from) => this.receive(packet, channel, from));
      transport.onDrop((reason) => this.#drop(reason, "transport"));
      this.#running = true;
      const members = this.#membersOrThrow();
      this.events.publish(0, "kernel-started", {
        id: this.id, epoch: this.#epoch, incarnation: members.self.incarnation, members: members.size,
        guarded: this.guardStatuses().length, mode: members.mode,
      });
      for (const part of this.#parts.values()) part.start?.();
    });
  }

  /** Graceful leave: SWIM tells the others this node is leaving (they mark it left, not dead). */
  leave(): void {
    if (this.#running) this.within(() => this.#membersOrThrow().leave());
  }

  stop(): void {
    if (!this.#running) return;
    this.within(() => {
      for (const part of this.#parts.values()) part.stop?.();
    });
    this.#running = false;
    for (const task of this.tasks.list()) this.tasks.stop(task.tid);
    this.events.publish(this.#tick, "kernel-stopped", { id: this.id });
  }

  /** The host's event loop was blocked for `ms` (measured by the tick loop): Lifeguard's penalty, Raft's pardon. */
  noteLoopDelay(ms: number): void {
    if (!this.#running) return;
    for (const part of this.#parts.values()) part.noteLoopDelay?.(ms);
  }

  /** Advances every subsystem by one tick and carries out what they produced. */
  tick(): void {
    if (!this.#running) return;
    this.#depth++;
    try {
      const tick = ++this.#tick;
      for (const part of this.#tickers) part.tick!(tick);
      const task = this.#daemons.kernel;
      if (task !== undefined) task.steps++;
    } finally {
      if (--this.#depth === 0) this.#flush();
    }
  }

  /**
   * Handles one inbound packet. Never throws on hostile bytes: a bad packet is a counted drop.
   * Answers whether the packet authenticated (its seal opened), whatever happened to it after:
   * the transport treats a connection whose frames never authenticate as a stranger's.
   */
  receive(packet: Uint8Array, channel: Channel, from: string): boolean {
    if (!this.#running) return false;
    const bound = channel === "datagram" ? LIMITS.datagramBytesMax : LIMITS.frameBytesMax;
    if (packet.length > bound) return this.#refuse("oversize", `${packet.length} bytes on ${channel}`);
    const decoded = decodeHeader(packet);
    if (!decoded.ok) return this.#refuse("decode", decoded.detail);
    const { header } = decoded;
    if (header.channel !== channel) return this.#refuse("decode", "header channel differs from transport channel");
    if (header.sender === this.id) return this.#refuse("replay", "own packet (reflected or replayed)");
    const members = this.#membersOrThrow();
    let pub: Uint8Array | undefined;
    if (!header.intro) {
      // Sealed for an earlier boot of ours: recorded and replayed, or sent before the sender learnt.
      if (header.receiverEpoch !== this.#epoch) return this.#refuse("replay", this.#peers.stale(members, header.sender, header.receiverEpoch, this.#tick));
      pub = members.publicKeyOf(header.sender);
      if (pub === undefined) return this.#refuse("unknown", this.#peers.unknown(members, header.sender, channel, from, this.#tick));
    }
    const body = this.ports.seal.open(packet, header, pub);
    if (body === undefined) return this.#refuse("auth", `tag failed from ${header.sender}`);
    // A replay is no proof of holding a key (anyone on the path can repeat a packet).
    const verdict = this.#replay.check(header.sender, channel, header.epoch, header.counter);
    if (verdict !== "fresh") return this.#refuse("replay", `${verdict} from ${header.sender}`);
    const result = decodeMessage(body);
    if (!result.ok) {
      this.#drop("decode", result.detail);
      return true;
    }
    const stats = this.stats[channel];
    stats.packetsIn++;
    stats.bytesIn += packet.length;
    if (this.#daemons.net !== undefined) this.#daemons.net.steps++;
    if (!header.intro) this.#peers.heard(members, header.sender, header.epoch, this.#tick);
    else if (isIntroduction(header.sender, result.message)) this.#peers.introduced(header.sender);
    // One turn, without a closure per packet (this is the hot path of the simulator).
    this.#depth++;
    try {
      this.#dispatch(header.sender, result.message, header.intro);
    } finally {
      if (--this.#depth === 0) this.#flush();
    }
    return true;
  }

  /** A drop before the packet authenticated. */
  #refuse(reason: DropReason, detail: string): false {
    this.#drop(reason, detail);
    return false;
  }

  protected wake(name: string): void {
    this.#requestApply(this.subsystem(name));
  }

  /** One turn: fn runs, then (outermost turn only) the outbox is flushed. */
  protected within<T>(fn: () => T): T {
    this.#depth++;
    try {
      return fn();
    } finally {
      if (--this.#depth === 0) this.#flush();
    }
  }

  #dispatch(sender: string, message: Message, intro: boolean): void {
    const owner = this.#owners[message.t];
    if (owner === undefined) return this.#drop("decode", `no subsystem owns ${message.t}`);
    const members = this.#membersOrThrow();
    // The cluster key alone (an intro packet) carries the handshake and introductions, nothing else.
    if (intro && owner.sender !== "intro" && !isIntroduction(sender, message)) return this.#drop("denied", `${message.t} in an intro packet from ${sender}`);
    if (owner.sender !== "peer" && owner.sender !== "intro") {
      // From a member SWIM does not know (yet, or again after a restart): dropped; its owner's
      // protocol retries once the member is known.
      const state = members.stateOf(sender);
      if (state === undefined) return this.#drop("denied", `${message.t} from non-member ${sender}`);
      if (owner.sender === "core" && members.roleOf(sender) !== "core") return this.#drop("denied", `${message.t} from non-core ${sender}`);
      if (owner.sender === "leader" && this.services.kv?.leader !== sender) return this.#drop("denied", `${message.t} from non-leader ${sender}`);
    }
    members.heard(sender);
    if (owner.task !== undefined) owner.task.steps++;
    owner.part.step?.(sender, message as never);
  }

  #membersOrThrow(): Membership {
    assert(this.#members !== undefined, "Kernel: membership used before start()");
    return this.#members;
  }

  #context(): SubsystemContext {
    const ports = this.ports;
    const members = new LateMembers(() => this.#membersOrThrow());
    return {
      id: this.id, address: ports.transport.address, store: ports.store, clock: ports.clock, identity: ports.identity, records: this.records, trust: ports.trust, boxes: ports.seal,
      tasks: this.tasks, epoch: this.#epoch, rng: ports.rng, host: ports.host, files: ports.files, defer: ports.defer, self: ports.self, evolve: ports.evolve, bundles: ports.bundles, supervisor: ports.supervisor, activity: () => this.stats.requests,
      members, services: this.services,
      fork: () => ports.rng.fork(),
      tick: () => this.#tick,
      mode: () => this.#membersOrThrow().mode,
      kept: () => [...this.#parts.values()],
      send: (to, channel, message) => {
        const addr = this.#members?.addressOf(to);
        if (addr === undefined) this.stats.sendFailures++;
        else this.#sendOrQueue(addr, channel, message, to);
      },
      sendAddr: (addr, channel, message) => this.#sendOrQueue(addr, channel, message),
      persist: (writes, durable) => {
        (durable ? this.#durable : this.#lazy).push(...writes);
        this.#flushOutsideTurn();
      },
      emit: (type, data) => {
        this.#emitted.push({ type, data });
        this.#flushOutsideTurn();
      },
      drop: (reason, detail) => this.#drop(reason, detail),
      requestApply: () => undefined, // replaced per subsystem in start()
    };
  }

  /**
   * A message goes out at once when no store write waits in the outbox (persist-before-send holds:
   * nothing queued before it is unwritten); behind a queued write it waits for the flush.
   */
  #sendOrQueue(to: string, channel: Channel, message: Message, id?: string): void {
    // A reply address naming this node (a peer's say-so: a ping's `addr`) would only come back as
    // our own packet: not sent, counted.
    if (to === this.ports.transport.address) return void this.stats.sendFailures++;
    if (this.#durable.length === 0 && this.#lazy.length === 0) this.#send(to, channel, message, id);
    else {
      this.#outbound.push({ to, channel, message, id });
      this.#flushOutsideTurn();
    }
  }

  /** What is queued outside any turn (an asynchronous completion) is carried out at once. */
  #flushOutsideTurn(): void {
    if (this.#depth === 0) this.#flush();
  }

  #requestApply(part: Subsystem): void {
    this.#applyWanted.add(part);
    const defer = this.ports.defer;
    if (defer === undefined) {
      if (this.#depth === 0) this.#flush();
      return;
    }
    if (this.#applyScheduled) return;
    this.#applyScheduled = true;
    defer(() => {
      this.#applyScheduled = false;
      this.within(() => undefined);
    });
  }

  /** Persist, then send, then apply, then events; again while that produced more work. */
  #flush(): void {
    this.#depth++;
    try {
      for (let round = 0; round < FLUSH_ROUNDS_MAX && this.#pending(); round++) {
        if (this.#durable.length > 0 || this.#lazy.length > 0) {
          const durable = this.#durable.length > 0;
          const batch = durable ? [...this.#lazy, ...this.#durable] : this.#lazy;
          this.#durable = [];
          this.#lazy = [];
          // One batch: durable writes make the whole batch durable with one fsync.
          this.ports.store.write(batch, { durable });
        }
        if (this.#outbound.length > 0) {
          const outbound = this.#outbound;
          this.#outbound = [];
          for (const out of outbound) this.#send(out.to, out.channel, out.message, out.id);
        }
        if (this.#applyDue()) {
          const wanted = [...this.#applyWanted];
          this.#applyWanted.clear();
          for (const part of wanted) part.apply?.();
        }
        if (this.#emitted.length > 0) {
          const emitted = this.#emitted;
          this.#emitted = [];
          for (const { type, data } of emitted) {
            const event = this.events.publish(this.#tick, type, data);
            for (const part of this.#listeners) part.onEvent!(event);
          }
        }
      }
    } finally {
      this.#depth--;
    }
  }

  /** Apply runs in this flush unless it waits for its deferred turn (group commit). */
  #applyDue(): boolean {
    return this.#running && this.#applyWanted.size > 0 && (this.ports.defer === undefined || !this.#applyScheduled);
  }

  #pending(): boolean {
    return this.#durable.length + this.#lazy.length + this.#outbound.length + this.#emitted.length > 0 || this.#applyDue();
  }

  /** Seals for the member at `to` (the handshake: an intro packet); a member not yet told of us is introduced first. */
  #send(to: string, channel: Channel, message: Message, id?: string): void {
    const members = this.#membersOrThrow();
    const peer = isIntroMessage(message) ? undefined : this.#peers.route(members, to, id, this.#tick);
    if (peer === null) return void this.stats.sendFailures++;
    this.#seal(to, channel, message, peer);
  }

  #seal(to: string, channel: Channel, message: Message, peer: SealPeer | undefined): void {
    // Sealing consumes the encoder's shared bytes at once (no copy per packet).
    let body = encodeMessageShared(message);
    // A frame over the transport's first-frame bound goes behind a small one that authenticates the
    // connection it may open (net.ts): a ping (its ack is an RTT sample), or in an intro our introduction.
    if (channel === "stream" && body.length + HEADER_BYTES + TAG_BYTES > LIMITS.net.firstFrameBytesMax) {
      body = body.slice(); // the small frame's encoding reuses the shared bytes
      this.#seal(to, channel, peer === undefined ? introduction(this.#membersOrThrow()) : { t: "ping", seq: 0, sent: Math.round(this.ports.clock.nowMs() * 1000) }, peer);
    }
    const packet = this.ports.seal.seal(channel, this.#epoch, ++this.#counter[channel], body, peer);
    if (packet.length > (channel === "datagram" ? LIMITS.datagramBytesMax : LIMITS.frameBytesMax)) return void this.stats.sendFailures++;
    this.stats[channel].packetsOut++;
    this.stats[channel].bytesOut += packet.length;
    this.ports.transport.send(to, channel, packet);
  }

  #drop(reason: DropReason, detail: string): void {
    this.stats.dropped[reason]++;
    this.stats.lastDrop = `${reason}: ${detail}`;
  }
}
