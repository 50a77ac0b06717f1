// The kernel: one per node. It wires the protocol cores to the ports of ports.ts and runs them one
// tick at a time (DESIGN.md §5). Everything here is synchronous and driven from outside — by the
// node's interval timer in a real process (run.ts), by virtual time in the simulator — so the same
// code runs in both.
//
// Inbound: bytes → size check → header decode → AEAD open → replay check → body decode and schema
// validation → core. A packet failing any step is dropped and counted by reason; none changes
// state. Outbound, per tick: persist, then send, then events (Raft's ordering rule).
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import type { Rng } from "../core/util/rng.ts";
import { Roster, ROSTER_DEFAULTS, type Outbound, type RosterConfig } from "../core/body/roster.ts";
import { decodeHeader, type Channel } from "../core/wire/envelope.ts";
import { decodeMessage, encodeMessage, packValue, unpackValue } from "../core/wire/codec.ts";
import { entryFromWire, entryToWire, isMemberEntryWire, type MemberEntry, type Message, type Role } from "../core/wire/messages.ts";
import { ReplayGuard } from "../core/wire/replay.ts";
import { EventBus } from "./events.ts";
import type { Clock, Identity, Seal, Store, StoreWrite, Transport } from "./ports.ts";
import { TaskTable, type Task } from "./tasks.ts";

export const VERSION = "0.1.0";

export type DropReason = "auth" | "decode" | "replay" | "oversize";
export const DROP_REASONS: readonly DropReason[] = ["auth", "decode", "replay", "oversize"];

export interface KernelConfig {
  readonly name: string;
  readonly role: Role;
  /** Wall-clock milliseconds per tick; the simulator uses it to stamp virtual time. */
  readonly tickMs: number;
  readonly join: readonly string[];
  readonly roster: Omit<RosterConfig, "join">;
  /** Ticks between RTT probes to a random member (for `net`). */
  readonly pingTicks: number;
  /** Ticks between writes of changed members to the store. */
  readonly persistTicks: number;
}

export const KERNEL_DEFAULTS: Omit<KernelConfig, "name" | "join"> = {
  role: "core",
  tickMs: 10,
  roster: ROSTER_DEFAULTS,
  pingTicks: 250,
  persistTicks: 100,
};

export interface KernelPorts {
  readonly transport: Transport;
  readonly store: Store;
  readonly clock: Clock;
  readonly seal: Seal;
  readonly identity: Identity;
  readonly rng: Rng;
}

export interface ChannelStats {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
}

export interface KernelStats {
  readonly dropped: Record<DropReason, number>;
  readonly datagram: ChannelStats;
  readonly stream: ChannelStats;
  /** Outbound messages not sent: no address, or larger than the channel allows. */
  sendFailures: number;
  /** Last drop, for `net`: reason and a short detail. */
  lastDrop: string;
}

export interface PeerRtt {
  /** Smoothed round-trip time in milliseconds (EWMA, α = 1/8 as in TCP's SRTT). */
  srttMs: number;
  samples: number;
}

export type MemberState = "alive" | "suspect" | "dead" | "left";

export interface MemberStatus {
  readonly id: string;
  readonly name: string;
  readonly addr: string;
  readonly role: Role;
  readonly state: MemberState;
  readonly incarnation: number;
  /** Ticks since a packet from the member arrived; undefined when never heard directly. */
  readonly lastHeardTicks: number | undefined;
  readonly self: boolean;
}

const KEY_EPOCH = "kernel/epoch";
const KEY_INCARNATION = "kernel/incarnation";
const PREFIX_MEMBER = "roster/member/";

export class Kernel {
  readonly ports: KernelPorts;
  readonly config: KernelConfig;
  readonly events = new EventBus();
  readonly tasks = new TaskTable();
  readonly stats: KernelStats = {
    dropped: { auth: 0, decode: 0, replay: 0, oversize: 0 },
    datagram: { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0 },
    stream: { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0 },
    sendFailures: 0,
    lastDrop: "",
  };
  readonly rtt = new Map<string, PeerRtt>();

  readonly #replay = new ReplayGuard();
  #roster: Roster | undefined;
  #epoch = 0;
  #counter = { datagram: 0, stream: 0 };
  #tick = 0;
  #startedMs = 0;
  #pingSeq = 0;
  #running = false;
  /** Members changed since the last persist, written in one batch every persistTicks. */
  readonly #dirtyMembers = new Map<string, MemberEntry>();
  #daemons: { kernel?: Task | undefined; roster?: Task | undefined; net?: Task | undefined } = {};

  constructor(ports: KernelPorts, config: KernelConfig) {
    assert(config.tickMs > 0, "Kernel: tickMs must be positive");
    assert(config.pingTicks > 0, "Kernel: pingTicks must be positive");
    this.ports = ports;
    this.config = config;
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

  get roster(): Roster {
    assert(this.#roster !== undefined, "Kernel: roster used before start()");
    return this.#roster;
  }

  get uptimeMs(): number {
    return this.ports.clock.nowMs() - this.#startedMs;
  }

  /**
   * Boots the kernel: restores local state from the store before any network traffic, bumps the
   * boot epoch and incarnation durably (so peers can tell this boot's packets and news from the
   * last one's), then starts listening and joining.
   */
  start(): void {
    assert(!this.#running, "Kernel: start() twice");
    const { store, clock, identity, transport } = this.ports;
    this.#startedMs = clock.nowMs();
    const lastEpoch = readNumber(store.get(KEY_EPOCH)) ?? 0;
    this.#epoch = Math.max(lastEpoch + 1, Math.floor(this.#startedMs));
    const incarnation = (readNumber(store.get(KEY_INCARNATION)) ?? -1) + 1;
    store.write([
      { key: KEY_EPOCH, value: writeNumber(this.#epoch) },
      { key: KEY_INCARNATION, value: writeNumber(incarnation) },
    ], { durable: true });

    const self: MemberEntry = {
      id: identity.id,
      pub: identity.publicKey,
      addr: transport.address,
      role: this.config.role,
      name: this.config.name,
      incarnation,
    };
    const roster = new Roster(self, this.ports.rng, identity, { ...this.config.roster, join: this.config.join });
    roster.restore(this.#restoreMembers());
    this.#roster = roster;

    this.#daemons = {
      kernel: this.tasks.spawn("kernel", "daemon", 0),
      roster: this.tasks.spawn("roster", "daemon", 0),
      net: this.tasks.spawn("net", "daemon", 0),
    };
    transport.onPacket((packet, channel, from) => this.receive(packet, channel, from));
    transport.onDrop((reason) => this.#drop(reason, "transport"));
    this.#running = true;
    this.events.publish(0, "kernel-started", { id: this.id, epoch: this.#epoch, incarnation, members: roster.size });
    roster.startJoin();
    this.#flush();
  }

  stop(): void {
    if (!this.#running) return;
    this.#persistMembers();
    this.#running = false;
    for (const task of this.tasks.list()) this.tasks.stop(task.tid);
    this.events.publish(this.#tick, "kernel-stopped", { id: this.id });
  }

  /** Advances every core by one tick and carries out what they produced. */
  tick(): void {
    if (!this.#running) return;
    this.#tick++;
    const roster = this.roster;
    roster.tick();
    if (this.#tick % this.config.pingTicks === 0) this.#sendPing();
    if (this.#tick % this.config.persistTicks === 0) this.#persistMembers();
    const kernelTask = this.#daemons.kernel;
    if (kernelTask !== undefined) kernelTask.steps++;
    if (roster.hasReady()) this.#flush();
  }

  /** Handles one inbound packet. Never throws on hostile bytes: a bad packet is a counted drop. */
  receive(packet: Uint8Array, channel: Channel, _from: string): void {
    if (!this.#running) return;
    const bound = channel === "datagram" ? LIMITS.datagramBytesMax : LIMITS.frameBytesMax;
    if (packet.length > bound) return this.#drop("oversize", `${packet.length} bytes on ${channel}`);
    const decoded = decodeHeader(packet);
    if (!decoded.ok) return this.#drop("decode", decoded.detail);
    const { header } = decoded;
    if (header.channel !== channel) return this.#drop("decode", "header channel differs from transport channel");
    const body = this.ports.seal.open(packet, header.sender, header.epoch);
    if (body === undefined) return this.#drop("auth", `tag failed from ${header.sender}`);
    // Our own packets reflected back (or replayed to us) are never fresh.
    if (header.sender === this.id) return this.#drop("replay", "own packet");
    const verdict = this.#replay.check(header.sender, channel, header.epoch, header.counter);
    if (verdict !== "fresh") return this.#drop("replay", `${verdict} from ${header.sender}`);
    const result = decodeMessage(body);
    if (!result.ok) return this.#drop("decode", result.detail);
    const stats = this.stats[channel];
    stats.packetsIn++;
    stats.bytesIn += packet.length;
    const netTask = this.#daemons.net;
    if (netTask !== undefined) netTask.steps++;
    this.#dispatch(header.sender, result.message);
  }

  /** Members including this node, for status, `nodes` and the API. */
  memberStatuses(): MemberStatus[] {
    const roster = this.roster;
    const self = roster.self;
    const out: MemberStatus[] = [{
      id: self.id, name: self.name, addr: self.addr, role: self.role, state: "alive",
      incarnation: self.incarnation, lastHeardTicks: 0, self: true,
    }];
    for (const member of roster.members()) {
      const { entry } = member;
      out.push({
        id: entry.id, name: entry.name, addr: entry.addr, role: entry.role, state: "alive",
        incarnation: entry.incarnation,
        lastHeardTicks: member.lastHeardTick < 0 ? undefined : this.#tick - member.lastHeardTick,
        self: false,
      });
    }
    return out;
  }

  #dispatch(sender: string, message: Message): void {
    const roster = this.roster;
    roster.heard(sender);
    const task = this.#daemons.roster;
    if (task !== undefined) task.steps++;
    switch (message.t) {
      case "ping":
        this.#sendTo(sender, "datagram", { t: "ack", seq: message.seq, sent: message.sent });
        break;
      case "ack":
        this.#onAck(sender, message.sent);
        break;
      default:
        roster.step(sender, message);
    }
    if (roster.hasReady()) this.#flush();
  }

  #sendPing(): void {
    const members = this.roster.size - 1;
    if (members === 0) return;
    let n = this.ports.rng.int(members);
    for (const member of this.roster.members()) {
      if (n-- > 0) continue;
      const sent = Math.round(this.ports.clock.nowMs() * 1000);
      this.#pingSeq = (this.#pingSeq + 1) >>> 0;
      this.#sendTo(member.entry.id, "datagram", { t: "ping", seq: this.#pingSeq, sent: Math.max(0, sent) });
      return;
    }
  }

  #onAck(sender: string, sentMicros: number): void {
    const rttMs = (this.ports.clock.nowMs() * 1000 - sentMicros) / 1000;
    if (!(rttMs >= 0) || rttMs > 60_000) return;
    const known = this.rtt.get(sender);
    if (known === undefined) this.rtt.set(sender, { srttMs: rttMs, samples: 1 });
    else {
      known.srttMs += (rttMs - known.srttMs) / 8;
      known.samples++;
    }
  }

  #sendTo(id: string, channel: Channel, message: Message): void {
    const addr = this.roster.member(id)?.entry.addr;
    if (addr === undefined) {
      this.stats.sendFailures++;
      return;
    }
    this.#send({ to: addr, channel, message });
  }

  /** Persist, then send, then publish events. */
  #flush(): void {
    const ready = this.roster.ready();
    for (const entry of ready.changed) this.#dirtyMembers.set(entry.id, entry);
    for (const outbound of ready.messages) this.#send(outbound);
    for (const event of ready.events) this.events.publish(this.#tick, event.type, event);
  }

  /**
   * Writes the members changed since the last call, in one batch. Not durable: the roster is a
   * cache that gossip rebuilds, so losing the last second of it in a crash costs nothing.
   */
  #persistMembers(): void {
    if (this.#dirtyMembers.size === 0) return;
    const batch: StoreWrite[] = [];
    for (const entry of this.#dirtyMembers.values()) batch.push({ key: PREFIX_MEMBER + entry.id, value: packValue(entryToWire(entry)) });
    this.#dirtyMembers.clear();
    this.ports.store.write(batch, { durable: false });
  }

  #send(outbound: Outbound): void {
    const { channel } = outbound;
    const body = encodeMessage(outbound.message);
    const counter = ++this.#counter[channel];
    const packet = this.ports.seal.seal(channel, this.#epoch, counter, body);
    const bound = channel === "datagram" ? LIMITS.datagramBytesMax : LIMITS.frameBytesMax;
    if (packet.length > bound) {
      this.stats.sendFailures++;
      return;
    }
    const stats = this.stats[channel];
    stats.packetsOut++;
    stats.bytesOut += packet.length;
    this.ports.transport.send(outbound.to, channel, packet);
  }

  #drop(reason: DropReason, detail: string): void {
    this.stats.dropped[reason]++;
    this.stats.lastDrop = `${reason}: ${detail}`;
  }

  #restoreMembers(): MemberEntry[] {
    const out: MemberEntry[] = [];
    for (const [, value] of this.ports.store.scan(PREFIX_MEMBER, LIMITS.membersMax)) {
      const decoded = unpackValue(value);
      if (isMemberEntryWire(decoded)) out.push(entryFromWire(decoded));
    }
    return out;
  }
}

function readNumber(bytes: Uint8Array | undefined): number | undefined {
  if (bytes === undefined || bytes.length !== 8) return undefined;
  const value = new DataView(bytes.buffer, bytes.byteOffset, 8).getFloat64(0);
  return Number.isSafeInteger(value) ? value : undefined;
}

function writeNumber(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, value);
  return out;
}

