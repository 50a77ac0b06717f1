// The kernel: one per node. It wires the protocol cores to the ports of ports.ts and runs them one
// tick at a time (DESIGN.md §5). Everything here is synchronous and driven from outside — by the
// node's interval timer in a real process (run.ts), by virtual time in the simulator — so the same
// code runs in both.
//
// The Body layer (DESIGN.md §7): the roster's join handshake admits members into SWIM, which owns
// membership and failure detection; degrade derives the mode from SWIM's live count; vital spreads
// vital signs; heal keeps guarded tasks running on exactly one node; persist keeps all of it in the
// store, restored before any traffic.
//
// The Collective layer: Raft and the consensus key-value store (consensus.ts), gossip topics
// (src/core/collective/gossip.ts), the shared folder (shared-folder.ts, when the node has a
// files port) and mesh routing (mesh-service.ts) are driven from here too, and so is the Brain
// (brain-service.ts: the replicated model, distributed inference, training, MoE, FL, GA).
//
// Inbound: bytes → size check → header decode → AEAD open → replay check → body decode and schema
// validation → core. A packet failing any step is dropped and counted by reason; none changes
// state. Outbound, per tick: persist, then send, then events (Raft's ordering rule).
import { modeOf, type Mode } from "../core/body/degrade.ts";
import { Heal, HEAL_DEFAULTS, taskFromWire, taskToWire, type GuardedTask, type HealConfig, type HealMembership } from "../core/body/heal.ts";
import { Roster, ROSTER_DEFAULTS, type Outbound, type RosterConfig } from "../core/body/roster.ts";
import { Swim, SWIM_LAN, type SwimConfig, type SwimEvent, type SwimState } from "../core/body/swim.ts";
import { VITAL_DEFAULTS, vitalFromWire, vitalToWire, Vitals, type VitalConfig, type VitalSample, type VitalSigns } from "../core/body/vital.ts";
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import type { Rng } from "../core/util/rng.ts";
import { decodeHeader, type Channel } from "../core/wire/envelope.ts";
import { decodeMessage, encodeMessage, packValue, unpackValue } from "../core/wire/codec.ts";
import {
  entryFromWire, entryToWire, isGuardedTaskWire, isMemberEntryWire, type MemberEntry, type Message, type Role,
} from "../core/wire/messages.ts";
import { ReplayGuard } from "../core/wire/replay.ts";
import { raftFromWire, raftToWire } from "../core/collective/raft/wire.ts";
import { Consensus, CONSENSUS_DEFAULTS, type ConsensusConfig, type KvCallback } from "./collective/consensus.ts";
import { SharedFolder } from "./collective/shared-folder.ts";
import { MeshService, MESH_SERVICE_DEFAULTS, type MeshServiceConfig } from "./collective/mesh.ts";
import { BrainService, BRAIN_DEFAULTS, type BrainConfig } from "./brain/service.ts";
import { Gossip, GOSSIP_DEFAULTS, makeRow, type GossipConfig, type GossipPeers, type GossipRow } from "../core/collective/gossip.ts";
import { EventBus } from "./events.ts";
import type { Clock, Identity, Seal, SharedFolderPort, Store, StoreWrite, Transport } from "./ports.ts";
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
  readonly swim: SwimConfig;
  readonly vital: VitalConfig;
  readonly heal: HealConfig;
  /** Ticks between RTT probes to a random member (for `net`). */
  readonly pingTicks: number;
  /** Ticks between writes of changed members and the vitals window to the store. */
  readonly persistTicks: number;
  /**
   * Ticks between push-pulls with one member this node holds dead (serf's reconnect): SWIM alone
   * never probes the dead again, so without it two sides of a healed partition stay apart.
   */
  readonly reconnectTicks: number;
  /** Raft, the /v1/kv state machine, voter management and regeneration (src/node/consensus.ts). */
  readonly consensus: ConsensusConfig;
  /** Gossip topics (src/core/collective/gossip.ts). */
  readonly gossip: GossipConfig;
  /** Mesh routing (src/node/mesh-service.ts): neighbours, and the core's timers. */
  readonly mesh: MeshServiceConfig;
  /** The Brain (src/node/brain-service.ts): deadlines, peers, local data, training. */
  readonly brain: BrainConfig;
}

export const KERNEL_DEFAULTS: Omit<KernelConfig, "name" | "join"> = {
  role: "core",
  tickMs: 10,
  roster: ROSTER_DEFAULTS,
  swim: SWIM_LAN,
  vital: VITAL_DEFAULTS,
  heal: HEAL_DEFAULTS,
  pingTicks: 250,
  persistTicks: 100,
  reconnectTicks: 1000,
  consensus: CONSENSUS_DEFAULTS,
  // A joiner or a node back from a long partition catches up on the stream channel.
  gossip: { ...GOSSIP_DEFAULTS, catchUpBytes: 192 * 1024 },
  mesh: MESH_SERVICE_DEFAULTS,
  brain: BRAIN_DEFAULTS,
};

/** What the host measures about itself for vital signs; the simulator has none. */
export interface HostVitals {
  sample(): Omit<VitalSigns, "uptimeMs">;
}

export interface KernelPorts {
  readonly transport: Transport;
  readonly store: Store;
  readonly clock: Clock;
  readonly seal: Seal;
  readonly identity: Identity;
  readonly rng: Rng;
  readonly host?: HostVitals;
  /**
   * Runs `fn` once the current batch of I/O callbacks is done (setImmediate in a real node). The
   * kernel defers Raft's ready to it, so every packet and request of one event-loop turn shares one
   * fsync (group commit). Without it (the simulator) the kernel drains at once.
   */
  readonly defer?: (fn: () => void) => void;
  /** The /shared/ folder on disk; without it (the simulator) the shared folder is off. */
  readonly files?: SharedFolderPort;
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

export type MemberState = SwimState;

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

export interface ModeChange {
  readonly tick: number;
  readonly mode: Mode;
  readonly previous: Mode;
  readonly alive: number;
}

export interface GuardStatus {
  readonly task: GuardedTask;
  /** Set while this node runs it. */
  readonly running: { readonly tid: number; readonly runs: number; readonly lastOutput: string } | undefined;
}

/** A persisted section of local state, for `persist list` and `persist clear`. */
export interface PersistSection {
  readonly name: "incarnation" | "members" | "guarded" | "vitals";
  readonly keys: number;
  readonly bytes: number;
  readonly durable: boolean;
}

const KEY_EPOCH = "kernel/epoch";
const KEY_INCARNATION = "kernel/incarnation";
const PREFIX_MEMBER = "roster/member/";
const PREFIX_GUARD = "heal/task/";
const PREFIX_GOSSIP_ROW = "gossip/row/";
const KEY_GOSSIP_WATERMARKS = "gossip/watermarks";
/** This node's own gossip version, written durably before a write of its leaves the node. */
const KEY_GOSSIP_SELF = "gossip/self";
const KEY_VITALS = "vital/history";
/** Mode changes kept for `degrade`. */
const MODE_HISTORY_MAX = 32;
/** Vital samples persisted at most this often (every persistTicks · VITAL_PERSIST_EVERY). */
const VITAL_PERSIST_EVERY = 10;
/** Ticks after joining at which the node push-pulls with a random member (2 s). */
const JOIN_SYNC_TICKS = 200;
const STATE_RANK: Readonly<Record<SwimState, number>> = { alive: 0, suspect: 1, dead: 2, left: 3 };

/** Runs one guarded task's command; returns its output (the node wires it to the shell). */
export type GuardRunner = (command: string) => string;

interface Guarded {
  readonly task: Task;
  readonly record: GuardedTask;
  nextTick: number;
  runs: number;
  lastOutput: string;
}

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
  /** Runs guarded tasks' commands; unset, a guarded task runs but does nothing. */
  guardRunner: GuardRunner | undefined;

  readonly #replay = new ReplayGuard();
  #roster: Roster | undefined;
  #swim: Swim | undefined;
  readonly #vitals: Vitals;
  #heal: Heal | undefined;
  #consensus: Consensus | undefined;
  #gossip: Gossip | undefined;
  #sharedFolder: SharedFolder | undefined;
  #mesh: MeshService | undefined;
  #brain: BrainService | undefined;
  /** Gossip rows changed (or forgotten) since the last persist, by row id. */
  readonly #dirtyRows = new Map<string, GossipRow | undefined>();
  /** SWIM's live ids for the gossip core, built at most once per tick and only when asked. */
  #liveCache: string[] | undefined;
  #drainScheduled = false;
  readonly #lastHeard = new Map<string, number>();
  /** Members SWIM declared dead or left, until they come back (heal syncs with them then). */
  readonly #gone = new Set<string>();
  #mode: Mode = "SOLO";
  readonly #modeHistory: ModeChange[] = [];
  #epoch = 0;
  #counter = { datagram: 0, stream: 0 };
  #tick = 0;
  #startedMs = 0;
  #pingSeq = 0;
  #running = false;
  #loopPenaltyUntil = 0;
  #loopPenalty = 0;
  #joinSyncTick = -1;
  #persistRounds = 0;
  /** Members changed since the last persist, written in one batch every persistTicks. */
  readonly #dirtyMembers = new Set<string>();
  readonly #guarded = new Map<string, Guarded>();
  #daemons: { kernel?: Task | undefined; swim?: Task | undefined; net?: Task | undefined } = {};
  readonly #membership: HealMembership = {
    liveIds: () => this.swim.liveIds(),
    liveCount: () => this.swim.size - 1,
    isGone: (id) => {
      const state = this.swim.stateOf(id);
      return state === "dead" || state === "left";
    },
  };

  constructor(ports: KernelPorts, config: KernelConfig) {
    assert(config.tickMs > 0, "Kernel: tickMs must be positive");
    assert(config.pingTicks > 0 && config.persistTicks > 0, "Kernel: pingTicks and persistTicks must be positive");
    this.ports = ports;
    this.config = config;
    this.#vitals = new Vitals(config.vital);
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

  get swim(): Swim {
    assert(this.#swim !== undefined, "Kernel: swim used before start()");
    return this.#swim;
  }

  get heal(): Heal {
    assert(this.#heal !== undefined, "Kernel: heal used before start()");
    return this.#heal;
  }

  get consensus(): Consensus {
    assert(this.#consensus !== undefined, "Kernel: consensus used before start()");
    return this.#consensus;
  }

  /** The shared folder, when this node has one (a files port). */
  get sharedFolder(): SharedFolder | undefined {
    return this.#sharedFolder;
  }

  get mesh(): MeshService {
    assert(this.#mesh !== undefined, "Kernel: mesh used before start()");
    return this.#mesh;
  }

  get brain(): BrainService {
    assert(this.#brain !== undefined, "Kernel: brain used before start()");
    return this.#brain;
  }

  get gossip(): Gossip {
    assert(this.#gossip !== undefined, "Kernel: gossip used before start()");
    return this.#gossip;
  }

  get vitals(): Vitals {
    return this.#vitals;
  }

  /** This node's entry as SWIM holds it (its incarnation rises when it refutes). */
  get self(): MemberEntry {
    return this.swim.self;
  }

  get mode(): Mode {
    return this.#mode;
  }

  /** Mode changes, oldest first (at most MODE_HISTORY_MAX). */
  get modeHistory(): readonly ModeChange[] {
    return this.#modeHistory;
  }

  get uptimeMs(): number {
    return this.ports.clock.nowMs() - this.#startedMs;
  }

  /**
   * Boots the kernel: restores local state from the store before any network traffic (members,
   * guarded tasks, the vitals window), bumps the boot epoch and incarnation durably (so peers can
   * tell this boot's packets and news from the last one's), then starts listening and joining.
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
    const swim = new Swim(self, this.ports.rng, identity, this.config.swim);
    this.#swim = swim;
    const roster = new Roster(self, this.ports.rng, identity, {
      admit: (entry) => swim.add(entry),
      table: () => swim.table(),
      welcomed: (from, states) => swim.step(from, { t: "swim-sync", reply: false, states }),
    }, { ...this.config.roster, join: this.config.join });
    this.#roster = roster;
    const restored = this.#restoreMembers();
    for (const entry of restored) swim.add(entry);
    // A node that knew others before its restart is already in; SWIM's probes announce it.
    if (restored.length > 0) {
      roster.rejoin();
      // The member table is an unsynced cache: push-pull soon after boot to relearn members it
      // lost (a restarted node could not even answer the Raft leader until it knew it again).
      this.#joinSyncTick = JOIN_SYNC_TICKS;
    }
    const heal = new Heal(this.id, this.config.heal);
    heal.restore(this.#restoreGuarded());
    this.#heal = heal;
    this.#vitals.restore(this.#restoreVitals());
    this.#mode = modeOf(swim.size);
    this.#vitals.sample(0, this.#ownVitals());

    this.#daemons = {
      kernel: this.tasks.spawn("kernel", "daemon", 0),
      swim: this.tasks.spawn("swim", "daemon", 0),
      net: this.tasks.spawn("net", "daemon", 0),
    };
    transport.onPacket((packet, channel, from) => this.receive(packet, channel, from));
    transport.onDrop((reason) => this.#drop(reason, "transport"));
    this.#running = true;
    this.events.publish(0, "kernel-started", {
      id: this.id, epoch: this.#epoch, incarnation, members: swim.size, guarded: heal.list().length, mode: this.#mode,
    });
    const files = this.ports.files;
    if (files !== undefined) {
      this.#sharedFolder = new SharedFolder(this.id, files, store, {
        send: (to, message) => this.#sendTo(to, "stream", message),
        event: (type, data) => {
          this.events.publish(this.#tick, type, data);
          if (type === "sfs-file-updated" && typeof data.path === "string") this.#brain?.onFileChanged(data.path);
        },
        membership: { liveIds: () => this.swim.liveIds() },
        nowMs: () => Math.floor(this.ports.clock.nowMs()),
      });
    }
    const gossip = new Gossip(this.id, this.ports.rng.fork(), this.config.gossip);
    gossip.restore(...this.#restoreGossip());
    this.#gossip = gossip;
    // Raft restores its log and rebuilds the key-value state before any traffic (it is
    // built after kernel-started is published, so that event stays the first one). A node started
    // with no one to join founds a new cluster (if it has no Raft state yet).
    this.#consensus = new Consensus(this.id, this.#epoch, this.ports.rng.fork(), store, {
      send: (to, message) => this.#sendTo(to, "stream", raftToWire(message)),
      members: () => this.#consensusMembers(),
      stateOf: (id) => (id === this.id ? (this.swim.left ? "left" : "alive") : this.swim.stateOf(id)),
      event: (type, data) => this.events.publish(this.#tick, type, data),
      wake: () => this.#requestDrain(),
      sendOffer: (to, offer) => this.#sendTo(to, "stream", { t: "raft-offer", epoch: offer.confEpoch, lt: offer.lastTerm, li: offer.lastIndex }),
    }, this.config.consensus, this.config.join.length === 0);
    this.#mesh = new MeshService(this.id, this.ports.rng.fork(), {
      send: (to, message) => this.#sendTo(to, "datagram", message),
      liveIds: () => this.swim.liveIds(),
      tick: () => this.#tick,
      nowMs: () => this.ports.clock.nowMs(),
    }, this.config.mesh);
    const brain = new BrainService({
      id: this.id,
      send: (to, message) => this.#sendTo(to, "stream", message),
      liveIds: () => this.swim.liveIds().filter((id) => this.swim.stateOf(id) === "alive").sort(),
      tick: () => this.#tick,
      nowMs: () => this.ports.clock.nowMs(),
      event: (type, data) => this.events.publish(this.#tick, type, data),
      folder: () => this.#sharedFolder,
      gossipGet: (topic, key) => this.gossip.get(topic, key)?.value,
      gossipPublish: (topic, key, value) => this.topicPublish(topic, key, value),
      isLeader: () => this.consensus.isLeader,
      ...(this.ports.defer === undefined ? {} : { defer: this.ports.defer }),
    }, this.ports.rng.fork(), this.config.brain);
    this.#brain = brain;
    roster.startJoin();
    this.#flush();
  }

  /** Graceful leave: SWIM tells the others this node is leaving (they mark it left, not dead). */
  leave(): void {
    if (!this.#running || this.swim.left) return;
    this.swim.leave();
    this.#flush();
  }

  stop(): void {
    if (!this.#running) return;
    this.#persist(true);
    this.#running = false;
    for (const task of this.tasks.list()) this.tasks.stop(task.tid);
    this.events.publish(this.#tick, "kernel-stopped", { id: this.id });
  }

  /**
   * The host's event loop was blocked for `ms` (measured by the tick loop). Lifeguard: a node whose
   * own loop stalls scales its probe timeouts up for a while, instead of blaming its peers.
   */
  noteLoopDelay(ms: number): void {
    if (!this.#running || !(ms > 0)) return;
    // One step per (longest) probe timeout of stall: a stall shorter than that costs no ack.
    const stepMs = this.config.swim.probeTimeoutTicks * this.config.tickMs;
    if (ms < stepMs) return;
    const penalty = Math.min(LIMITS.swimAwarenessMax - 1, Math.ceil(ms / stepMs));
    this.#loopPenalty = Math.max(penalty, this.#loopPenaltyUntil === 0 ? 0 : this.#loopPenalty);
    this.swim.setLoopDelayPenalty(this.#loopPenalty);
    this.#loopPenaltyUntil = this.#tick + 2 * this.config.swim.probeTicks;
  }

  /** Advances every core by one tick and carries out what they produced. */
  tick(): void {
    if (!this.#running) return;
    this.#tick++;
    const swim = this.swim;
    this.roster.tick();
    swim.tick();
    this.heal.tick(this.#membership);
    if (this.#loopPenaltyUntil !== 0 && this.#tick >= this.#loopPenaltyUntil) {
      this.#loopPenaltyUntil = 0;
      this.#loopPenalty = 0;
      swim.setLoopDelayPenalty(0);
    }
    if (this.#tick % this.config.vital.periodTicks === 0) this.#vitalRound();
    if (this.#tick % this.config.pingTicks === 0) this.#sendPing();
    if (this.#tick % this.config.reconnectTicks === 0) this.#reconnect();
    if (this.#tick === this.#joinSyncTick) this.#joinSync();
    if (this.#tick % this.config.persistTicks === 0) this.#persist(false);
    this.#runGuarded();
    this.consensus.tick();
    this.#drainConsensus();
    this.#sharedFolder?.tick();
    this.mesh.tick();
    this.brain.tick();
    this.#liveCache = undefined;
    this.gossip.tick(Math.floor(this.ports.clock.nowMs()), this.#peersView());
    if (this.gossip.hasReady()) this.#flushGossip();
    const kernelTask = this.#daemons.kernel;
    if (kernelTask !== undefined) kernelTask.steps++;
    if (this.roster.hasReady() || swim.hasReady() || this.heal.hasReady()) this.#flush();
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

  // ---- Consensus key-value API (callbacks run inside a later drain; see ports.defer) ---------

  kvGet(key: string, callback: KvCallback): void {
    this.consensus.get(key, callback);
    this.#requestDrain();
  }

  kvPut(key: string, value: Uint8Array, callback: KvCallback): void {
    this.consensus.put(key, value, callback);
    this.#requestDrain();
  }

  kvCas(key: string, expected: Uint8Array | undefined, value: Uint8Array, callback: KvCallback): void {
    this.consensus.cas(key, expected, value, callback);
    this.#requestDrain();
  }

  kvDelete(key: string, callback: KvCallback): void {
    this.consensus.delete(key, callback);
    this.#requestDrain();
  }

  // ---- Gossip topics ------------------------------------------------------------------------

  /** Writes a gossip row (or deletes it when value is undefined); an error string when refused. */
  topicPublish(topic: string, key: string, value: Uint8Array | undefined): string | undefined {
    const result = value === undefined ? this.gossip.delete(topic, key) : this.gossip.publish(topic, key, value);
    if (!result.ok) return result.error;
    // The version must survive a crash before any peer hears of it (as SWIM's incarnation does):
    // a node that came back below it would reuse versions its peers already hold.
    this.ports.store.write([{ key: KEY_GOSSIP_SELF, value: writeNumber(this.gossip.selfVersion) }], { durable: true });
    this.#flushGossip();
    return undefined;
  }

  #flushGossip(): void {
    const ready = this.gossip.ready();
    for (const row of ready.changed) this.#dirtyRows.set(row.id, row);
    for (const row of ready.forgotten) this.#dirtyRows.set(row.id, undefined);
    for (const outbound of ready.messages) this.#sendTo(outbound.to, outbound.channel, outbound.message);
    for (const event of ready.events) this.events.publish(this.#tick, event.type, event);
  }

  /** SWIM's live members for the gossip core, without building the list unless a peer is picked. */
  #peersView(): GossipPeers {
    const live = (): string[] => (this.#liveCache ??= this.swim.liveIds());
    return { length: this.swim.size - 1, at: (i) => live()[i] };
  }

  #restoreGossip(): [GossipRow[], Array<[string, number]>] {
    const rows: GossipRow[] = [];
    for (const [, value] of this.ports.store.scan(PREFIX_GOSSIP_ROW, this.config.gossip.rowsMax)) {
      const v = unpackValue(value);
      if (!Array.isArray(v) || v.length !== 7) continue;
      const [topic, key, data, wall, logical, origin, version] = v as unknown[];
      if (typeof topic !== "string" || typeof key !== "string" || !(data === null || data instanceof Uint8Array)) continue;
      if (typeof wall !== "number" || typeof logical !== "number" || typeof origin !== "string" || typeof version !== "number") continue;
      rows.push(makeRow(topic, key, data === null ? undefined : data.slice(), wall, logical, origin, version));
    }
    const marks = unpackValue(this.ports.store.get(KEY_GOSSIP_WATERMARKS) ?? new Uint8Array(0));
    const watermarks: Array<[string, number]> = Array.isArray(marks)
      ? (marks as unknown[]).filter((m): m is [string, number] => Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "number")
      : [];
    const self = readNumber(this.ports.store.get(KEY_GOSSIP_SELF));
    if (self !== undefined) watermarks.push([this.id, self]);
    return [rows, watermarks];
  }

  #requestDrain(): void {
    const defer = this.ports.defer;
    if (defer === undefined) {
      this.#drainConsensus();
      return;
    }
    if (this.#drainScheduled) return;
    this.#drainScheduled = true;
    defer(() => {
      this.#drainScheduled = false;
      this.#drainConsensus();
    });
  }

  #drainConsensus(): void {
    const consensus = this.#consensus;
    // Not yet built (its own boot-time drain wakes us) or stopped: nothing to do.
    if (!this.#running || consensus === undefined) return;
    if (consensus.hasReady()) consensus.drain();
  }

  /** Every member with its role and state, this node included, for voter management. */
  #consensusMembers(): Array<{ id: string; role: Role; state: SwimState }> {
    const swim = this.swim;
    const out: Array<{ id: string; role: Role; state: SwimState }> = [{ id: this.id, role: this.config.role, state: swim.left ? "left" : "alive" }];
    for (const member of swim.members()) out.push({ id: member.entry.id, role: member.entry.role, state: member.state });
    return out;
  }

  /** Members including this node, for status, `nodes` and the API. */
  memberStatuses(): MemberStatus[] {
    const swim = this.swim;
    const self = swim.self;
    const out: MemberStatus[] = [{
      id: self.id, name: self.name, addr: self.addr, role: self.role, state: swim.left ? "left" : "alive",
      incarnation: self.incarnation, lastHeardTicks: 0, self: true,
    }];
    for (const member of swim.members()) {
      const { entry } = member;
      const heard = this.#lastHeard.get(entry.id);
      out.push({
        id: entry.id, name: entry.name, addr: entry.addr, role: entry.role, state: member.state,
        incarnation: entry.incarnation,
        lastHeardTicks: heard === undefined ? undefined : this.#tick - heard,
        self: false,
      });
    }
    return out;
  }

  /** Latest vital signs of this node and of every member heard from, with their age in ticks. */
  vitalTable(): Array<{ id: string; name: string; state: MemberState; ageTicks: number | undefined; signs: VitalSigns | undefined }> {
    const own = this.#vitals.latest();
    return this.memberStatuses().map((member) => {
      const sample = member.self ? own : this.#vitals.peer(member.id);
      return {
        id: member.id, name: member.name, state: member.state,
        ageTicks: sample === undefined ? undefined : this.#tick - sample.tick,
        signs: sample?.signs,
      };
    });
  }

  // ---- Guarded tasks ------------------------------------------------------------------------------

  /** Defines a guarded task owned by this node; returns an error text or undefined. */
  guard(name: string, command: string, everyTicks: number): string | undefined {
    const error = this.heal.define(name, command, everyTicks, this.#membership);
    this.#flush();
    return error;
  }

  unguard(name: string): string | undefined {
    const error = this.heal.remove(name, this.#membership);
    this.#flush();
    return error;
  }

  guardStatuses(): GuardStatus[] {
    return this.heal.list().map((task) => {
      const running = this.#guarded.get(task.name);
      return {
        task,
        running: running === undefined ? undefined : { tid: running.task.tid, runs: running.runs, lastOutput: running.lastOutput },
      };
    });
  }

  // ---- Persist ------------------------------------------------------------------------------------

  persistSections(): PersistSection[] {
    const { store } = this.ports;
    const section = (name: PersistSection["name"], entries: Array<[string, Uint8Array]>, durable: boolean): PersistSection => ({
      name, keys: entries.length, bytes: entries.reduce((sum, [key, value]) => sum + key.length + value.length, 0), durable,
    });
    const single = (key: string): Array<[string, Uint8Array]> => {
      const value = store.get(key);
      return value === undefined ? [] : [[key, value]];
    };
    return [
      section("incarnation", [...single(KEY_EPOCH), ...single(KEY_INCARNATION)], true),
      section("members", store.scan(PREFIX_MEMBER, LIMITS.membersMax), false),
      section("guarded", store.scan(PREFIX_GUARD, LIMITS.guardedTasksMax * 2), true),
      section("vitals", single(KEY_VITALS), false),
    ];
  }

  /**
   * Forgets a persisted section: guarded tasks and vitals on disk and in memory; members on disk
   * only (SWIM's live view stays, and is written again as it changes). The epoch and incarnation
   * cannot be cleared: they only ever rise, or peers would take this node's new packets and news
   * for replays.
   */
  persistClear(name: "members" | "guarded" | "vitals"): number {
    const { store } = this.ports;
    let keys: string[];
    switch (name) {
      case "members":
        keys = store.scan(PREFIX_MEMBER, LIMITS.membersMax).map(([key]) => key);
        this.#dirtyMembers.clear();
        break;
      case "guarded":
        keys = store.scan(PREFIX_GUARD, LIMITS.guardedTasksMax * 2).map(([key]) => key);
        this.heal.clear();
        break;
      case "vitals":
        keys = store.get(KEY_VITALS) === undefined ? [] : [KEY_VITALS];
        this.#vitals.clear();
        break;
    }
    if (keys.length > 0) store.write(keys.map((key) => ({ key, value: undefined })), { durable: true });
    this.events.publish(this.#tick, "persist-cleared", { section: name, keys: keys.length });
    return keys.length;
  }

  // ---- Inside -------------------------------------------------------------------------------------

  #dispatch(sender: string, message: Message): void {
    this.#lastHeard.set(sender, this.#tick);
    const task = this.#daemons.swim;
    if (task !== undefined) task.steps++;
    switch (message.t) {
      case "ping":
        this.#sendTo(sender, "datagram", { t: "ack", seq: message.seq, sent: message.sent });
        break;
      case "ack":
        this.#onAck(sender, message.sent);
        break;
      case "hello":
      case "challenge":
      case "proof":
      case "welcome":
        this.roster.step(sender, message);
        break;
      case "vital":
        if (this.swim.stateOf(sender) !== undefined) this.#vitals.record(sender, this.#tick, vitalFromWire(message));
        break;
      case "heal":
        if (this.swim.stateOf(sender) !== undefined) this.heal.step(sender, message.reply, message.tasks);
        break;
      case "raft": {
        // From a member SWIM does not know (yet, or again after a restart): ignored; Raft retries.
        if (this.swim.stateOf(sender) === undefined) return;
        const decoded = raftFromWire(message, sender);
        if (!decoded.ok) return this.#drop("decode", decoded.detail);
        if (decoded.message.to !== this.id) return this.#drop("decode", `raft for ${decoded.message.to}`);
        this.consensus.step(decoded.message);
        this.#requestDrain();
        return;
      }
      case "raft-offer":
        if (this.swim.stateOf(sender) !== undefined) this.consensus.onOffer(sender, { confEpoch: message.epoch, lastTerm: message.lt, lastIndex: message.li });
        return;
      case "sfs-digest":
      case "sfs-sums":
      case "sfs-entries":
      case "sfs-get":
      case "sfs-chunk":
        if (this.swim.stateOf(sender) !== undefined) this.#sharedFolder?.step(sender, message);
        return;
      case "brain":
        if (this.swim.stateOf(sender) !== undefined) this.brain.step(sender, message);
        return;
      case "mesh-update":
      case "mesh-req":
      case "mesh-data":
        if (this.swim.stateOf(sender) !== undefined) this.mesh.step(sender, message);
        return;
      case "gossip":
        // From a member SWIM does not know yet (a mass join): ignored, as heal and vital are.
        if (this.swim.stateOf(sender) === undefined) return;
        this.gossip.step(sender, message);
        if (this.gossip.hasReady()) this.#flushGossip();
        return;
      default:
        this.swim.step(sender, message);
    }
    if (this.roster.hasReady() || this.swim.hasReady() || this.heal.hasReady()) this.#flush();
  }

  #liveIds(): string[] {
    return this.swim.liveIds();
  }

  #ownVitals(): VitalSigns {
    const host = this.ports.host?.sample() ?? { load1: 0, rssBytes: 0, heapUsedBytes: 0, loopDelayP99Ms: 0 };
    return { ...host, uptimeMs: Math.max(0, this.uptimeMs) };
  }

  #vitalRound(): void {
    const signs = this.#ownVitals();
    this.#vitals.sample(this.#tick, signs);
    const message = vitalToWire(signs);
    for (const id of this.#vitals.targets(this.#liveIds())) this.#sendTo(id, "datagram", message);
  }

  #sendPing(): void {
    const live = this.#liveIds();
    if (live.length === 0) return;
    const id = live[this.ports.rng.int(live.length)] as string;
    const sent = Math.round(this.ports.clock.nowMs() * 1000);
    this.#pingSeq = (this.#pingSeq + 1) >>> 0;
    this.#sendTo(id, "datagram", { t: "ping", seq: this.#pingSeq, sent: Math.max(0, sent) });
  }

  /**
   * A push-pull with a random member held dead (not one that left). If it is alive after all (a
   * partition healed), it refutes its death on reading our table and answers with its own, which
   * brings its side back into our view; its probes then carry the rest. Bounded: one per period.
   */
  /**
   * A push-pull with a random live member a little after joining. The seed's welcome is its table
   * at that moment; members that joined at about the same time (a whole cluster starting at once)
   * are learned here rather than at the first periodic push-pull, up to 30 s later.
   */
  #joinSync(): void {
    const live = this.#liveIds();
    if (live.length === 0) return;
    const id = live[this.ports.rng.int(live.length)] as string;
    this.#sendTo(id, "stream", { t: "swim-sync", reply: true, states: this.swim.table() });
  }

  #reconnect(): void {
    const dead = this.swim.deadIds();
    if (dead.length === 0) return;
    const id = dead[this.ports.rng.int(dead.length)] as string;
    this.#sendTo(id, "stream", { t: "swim-sync", reply: true, states: this.swim.table() });
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

  /** Starts and stops guarded tasks to match what heal says this node runs, and runs those due. */
  #runGuarded(): void {
    const wanted = this.heal.running();
    if (wanted.length === 0 && this.#guarded.size === 0) return;
    const names = new Set<string>();
    for (const record of wanted) {
      names.add(record.name);
      const current = this.#guarded.get(record.name);
      if (current !== undefined && current.record === record) continue;
      if (current !== undefined) this.#stopGuarded(current, "redefined");
      const task = this.tasks.spawn(`guard:${record.name}`, "guarded", this.#tick);
      if (task === undefined) continue;
      this.#guarded.set(record.name, { task, record, nextTick: this.#tick, runs: 0, lastOutput: "" });
      this.events.publish(this.#tick, "guard-started", { name: record.name, epoch: record.epoch, tid: task.tid });
    }
    for (const running of [...this.#guarded.values()]) {
      if (!names.has(running.record.name)) {
        this.#stopGuarded(running, "owner changed or removed");
        continue;
      }
      if (this.#tick < running.nextTick) continue;
      running.nextTick = this.#tick + running.record.everyTicks;
      running.runs++;
      running.task.steps++;
      const runner = this.guardRunner;
      if (runner !== undefined) running.lastOutput = runner(running.record.command).slice(0, 200);
    }
  }

  #stopGuarded(running: Guarded, reason: string): void {
    this.#guarded.delete(running.record.name);
    this.tasks.stop(running.task.tid);
    this.tasks.reap(running.task.tid);
    this.events.publish(this.#tick, "guard-stopped", { name: running.record.name, epoch: running.record.epoch, reason });
  }

  #sendTo(id: string, channel: Channel, message: Message): void {
    const addr = this.swim.addressOf(id);
    if (addr === undefined) {
      this.stats.sendFailures++;
      return;
    }
    this.#send({ to: addr, channel, message });
  }

  /** Persist, then send, then publish events; again while handling events produced more work. */
  #flush(): void {
    this.#flushOnce();
    for (let round = 0; round < 4 && (this.roster.hasReady() || this.swim.hasReady() || this.heal.hasReady()); round++) this.#flushOnce();
  }

  #flushOnce(): void {
    const roster = this.roster.ready();
    const swim = this.swim.ready();
    const heal = this.heal.ready();
    let refuted = false;
    for (const event of swim.events) {
      if (event.id === this.id) refuted ||= event.type === "member-refuted";
      else this.#dirtyMembers.add(event.id);
    }
    // The refutation's incarnation must survive a crash before it is announced: the next boot
    // starts above it, or peers would take the rebooted node's news for old.
    const writes: StoreWrite[] = [];
    if (refuted) writes.push({ key: KEY_INCARNATION, value: writeNumber(this.swim.incarnation) });
    for (const task of heal.changed) writes.push({ key: PREFIX_GUARD + task.name, value: packValue(taskToWire(task)) });
    if (writes.length > 0) this.ports.store.write(writes, { durable: true });

    for (const outbound of roster.messages) this.#send(outbound);
    for (const outbound of swim.messages) this.#send(outbound);
    for (const outbound of heal.messages) this.#sendTo(outbound.to, "stream", { t: "heal", reply: outbound.reply, tasks: outbound.tasks });

    for (const event of roster.events) {
      if (event.type === "joined") this.#joinSyncTick = this.#tick + JOIN_SYNC_TICKS;
      this.events.publish(this.#tick, event.type, event);
    }
    for (const event of swim.events) this.#onSwimEvent(event);
    for (const event of heal.events) this.events.publish(this.#tick, event.type, event);
    if (swim.events.length > 0) this.#updateMode();
  }

  #onSwimEvent(event: SwimEvent): void {
    this.events.publish(this.#tick, event.type, event);
    if (event.id === this.id) return;
    switch (event.type) {
      case "member-alive":
        // A member back from the dead (a healed partition, a restart) compares guarded-task tables
        // with us at once, so the sides converge in one exchange rather than one sync period. New
        // members are not sent anything: they ask on their own sync, and a mass join would
        // otherwise cost n² messages.
        if (this.#gone.delete(event.id) && this.heal.list().length > 0) this.heal.syncWith(event.id);
        // The shared folder compares manifests with every member that comes alive (its clusters
        // are small: files are copied to every node).
        this.#sharedFolder?.core.syncWith(event.id);
        break;
      case "member-dead":
      case "member-left":
        this.#sharedFolder?.core.peerGone(event.id);
        this.mesh.memberGone(event.id);
        this.brain.memberGone(event.id);
        if (this.#gone.size < LIMITS.membersMax) this.#gone.add(event.id);
        this.#vitals.forget(event.id);
        this.rtt.delete(event.id);
        break;
      case "member-suspect":
      case "member-refuted":
        break;
    }
  }

  #updateMode(): void {
    const alive = this.swim.size;
    const mode = modeOf(alive);
    if (mode === this.#mode) return;
    const change: ModeChange = { tick: this.#tick, mode, previous: this.#mode, alive };
    this.#mode = mode;
    this.#modeHistory.push(change);
    if (this.#modeHistory.length > MODE_HISTORY_MAX) this.#modeHistory.shift();
    this.events.publish(this.#tick, "mode-changed", { ...change });
  }

  /**
   * Writes the members changed since the last call (and, every VITAL_PERSIST_EVERY calls or when
   * `all`, the vitals window) in one batch. Not durable: members are a cache SWIM rebuilds, and the
   * vitals window is history, so losing the last second of either in a crash costs nothing.
   */
  #persist(all: boolean): void {
    const batch: StoreWrite[] = [];
    for (const id of this.#dirtyMembers) {
      const member = this.swim.member(id);
      if (member === undefined) batch.push({ key: PREFIX_MEMBER + id, value: undefined });
      else batch.push({ key: PREFIX_MEMBER + id, value: packValue([entryToWire(member.entry), STATE_RANK[member.state]]) });
    }
    this.#dirtyMembers.clear();
    for (const [id, row] of this.#dirtyRows) {
      batch.push({ key: PREFIX_GOSSIP_ROW + id, value: row === undefined ? undefined : packValue([row.topic, row.key, row.value ?? null, row.wall, row.logical, row.origin, row.version]) });
    }
    if (this.#dirtyRows.size > 0) batch.push({ key: KEY_GOSSIP_WATERMARKS, value: packValue(this.gossip.watermarks()) });
    this.#dirtyRows.clear();
    if (all || ++this.#persistRounds % VITAL_PERSIST_EVERY === 0) {
      const history = this.#vitals.history();
      if (history.length > 0) {
        const rows = history.map((sample) => {
          const wire = vitalToWire(sample.signs);
          return [sample.tick - this.#tick, wire.up, wire.load, wire.rss, wire.heap, wire.lag];
        });
        batch.push({ key: KEY_VITALS, value: packValue(rows) });
      }
    }
    if (batch.length > 0) this.ports.store.write(batch, { durable: false });
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

  /**
   * Members remembered as alive or suspect (the dead and the departed stay forgotten). Values are
   * [entry, state rank]; a bare entry is the format before SWIM, read as alive.
   */
  #restoreMembers(): MemberEntry[] {
    const out: MemberEntry[] = [];
    for (const [, value] of this.ports.store.scan(PREFIX_MEMBER, LIMITS.membersMax)) {
      const decoded = unpackValue(value);
      if (isMemberEntryWire(decoded)) out.push(entryFromWire(decoded));
      else if (Array.isArray(decoded) && decoded.length === 2 && isMemberEntryWire(decoded[0]) && (decoded[1] === 0 || decoded[1] === 1)) {
        out.push(entryFromWire(decoded[0]));
      }
    }
    return out.filter((entry) => entry.id !== this.id);
  }

  #restoreGuarded(): GuardedTask[] {
    const out: GuardedTask[] = [];
    for (const [, value] of this.ports.store.scan(PREFIX_GUARD, LIMITS.guardedTasksMax * 2)) {
      const decoded = unpackValue(value);
      if (isGuardedTaskWire(decoded)) out.push(taskFromWire(decoded));
    }
    return out;
  }

  /** The vitals window, its ticks made relative to this boot's tick 0 (so they read as past). */
  #restoreVitals(): VitalSample[] {
    const value = this.ports.store.get(KEY_VITALS);
    if (value === undefined) return [];
    const rows = unpackValue(value);
    if (!Array.isArray(rows)) return [];
    const out: VitalSample[] = [];
    for (const row of rows.slice(-LIMITS.vitalHistoryMax)) {
      if (!Array.isArray(row) || row.length !== 6 || !row.every((x) => typeof x === "number" && Number.isFinite(x))) continue;
      const [age, up, load, rss, heap, lag] = row as number[];
      out.push({ tick: age as number, signs: vitalFromWire({ t: "vital", up: up as number, load: load as number, rss: rss as number, heap: heap as number, lag: lag as number }) });
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
