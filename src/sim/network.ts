// The simulated network: every node's Transport, in one process, in virtual time (DESIGN.md §2.3;
// aesthetics rules 4–5; TigerBeetle's packet_simulator, FoundationDB's clogging).
//
// Time is counted in ticks. A packet sent at tick `now` is scheduled for a delivery tick >= now + 1
// in a min-heap keyed by (tick, send sequence); `deliverDue(t)` pops everything due by t, in that
// order, and calls the receivers' handlers synchronously. Every random choice (delay, loss,
// duplication, reordering) is drawn from the network's own Rng, so one seed and one sequence of
// calls give one run, bit for bit; `traceHash` fingerprints it.
//
// The cluster runner's loop is:
//   for (let t = 1; t <= ticks; t++) { network.deliverDue(t); for (const node of live) node.tick(); }
// Sends made while handling a packet or in tick() are stamped with the current tick.
//
// Channels follow the Transport port's contract:
// - datagrams may be lost, duplicated, reordered and delayed;
// - stream frames model one TCP connection per directed pair (from, to): never lost at random,
//   never duplicated, delivered in send order (a delayed frame holds the later ones back, as TCP's
//   head-of-line blocking does). A partition, a block, a crash of the receiver or a restart of
//   either end breaks the connection: the frames in flight on it are dropped, and frames sent
//   afterwards travel on a new connection. (Frames a sender wrote before it crashed still arrive,
//   as the data in a dead process's socket buffers does.) A receiver therefore sees, per peer, an
//   in-order stream with gaps only where a connection broke.
//
// Partitions and blocks are checked when a packet is sent and again when it arrives (a packet in
// flight when a partition starts is lost). Clogging (FoundationDB's "swizzle-clogging") holds every
// packet to or from an address until the clog lifts, without losing it.
import type { Transport } from "../node/ports.ts";
import type { Channel } from "../core/wire/envelope.ts";
import type { Rng } from "../core/util/rng.ts";
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import { MinHeap } from "./heap.ts";
import { ByteSlab } from "./slab.ts";
import { Fingerprint } from "./fingerprint.ts";

/** Extra ticks added to a packet's minimum delay, on top of `minDelayTicks`. */
export type Jitter =
  | { readonly kind: "none" }
  /** Uniform on the integers [0, maxTicks]. */
  | { readonly kind: "uniform"; readonly maxTicks: number }
  /** Exponential with the given mean, rounded down and capped at maxTicks (a long-tailed link). */
  | { readonly kind: "exponential"; readonly meanTicks: number; readonly maxTicks: number };

/** The faults of one directed link, or the network's defaults. Probabilities are in [0, 1]. */
export interface LinkFaults {
  /** Smallest delivery delay; >= 1, so nothing sent during a tick is delivered in that tick. */
  readonly minDelayTicks: number;
  readonly jitter: Jitter;
  /** Datagrams only: probability a datagram is lost. */
  readonly lossRate: number;
  /** Datagrams only: probability a datagram is delivered twice (the copy has its own delay). */
  readonly duplicateRate: number;
  /** Probability a packet is held back by 1..reorderDelayTicksMax extra ticks. */
  readonly reorderRate: number;
  readonly reorderDelayTicksMax: number;
}

export const PERFECT_LINK: LinkFaults = {
  minDelayTicks: 1,
  jitter: { kind: "none" },
  lossRate: 0,
  duplicateRate: 0,
  reorderRate: 0,
  reorderDelayTicksMax: 0,
};

/** Why the network dropped a packet. */
export const DROP_CAUSES = [
  /** Random datagram loss. */
  "loss",
  /** A symmetric partition separates sender and receiver. */
  "partition",
  /** An asymmetric block cuts the sender→receiver direction. */
  "block",
  /** The receiver's endpoint is closed (crashed) or was never opened when the packet arrived. */
  "crashed",
  /** Sent to an address the network has never heard of. */
  "unreachable",
  /** A stream frame of a connection that broke (partition, block or crash of either end). */
  "connection",
  /** Larger than LIMITS.datagramBytesMax (datagram) or LIMITS.frameBytesMax (stream frame). */
  "oversize",
  /** The network already holds inFlightPacketsMax packets. */
  "overflow",
  /** Sent through an endpoint after it was closed. */
  "closed",
] as const;

export type DropCause = (typeof DROP_CAUSES)[number];

export interface NetworkStats {
  /** send() calls, whatever became of them. */
  readonly sent: number;
  readonly delivered: number;
  /** Extra copies scheduled by duplication. */
  readonly duplicated: number;
  /** Packets held back by a clog when they were sent or when they came due. */
  readonly clogged: number;
  readonly dropped: Readonly<Record<DropCause, number>>;
  /** Packets scheduled and not yet delivered or dropped. */
  readonly inFlight: number;
}

/** One delivery or drop, for golden traces and debugging; only produced when a tracer is set. */
export interface TraceEvent {
  readonly tick: number;
  readonly from: string;
  readonly to: string;
  readonly channel: Channel;
  readonly bytes: number;
  /** undefined for a delivery. */
  readonly dropped: DropCause | undefined;
}

export interface SimNetworkOptions {
  /** The network's own stream of randomness: pass `rootRng.fork()`. */
  readonly rng: Rng;
  /** Default faults of every link; per-link overrides come from setLinkFaults(). */
  readonly faults?: Partial<LinkFaults>;
  /** Bound on packets in flight; further sends are dropped as "overflow". */
  readonly inFlightPacketsMax?: number;
}

/** Default bound on packets in flight: 4 Mi (~0.5 GiB of packet records at most). */
export const IN_FLIGHT_PACKETS_MAX = LIMITS.sim.inFlightPacketsMax;
/** Addresses one network can know (endpoints, and addresses named by partitions or clogs). */
export const ADDRESSES_MAX = LIMITS.sim.addressesMax;
/** Symmetric partitions in force at once. */
export const PARTITIONS_MAX = LIMITS.sim.partitionsMax;
/** Directed pairs that have ever carried a stream frame (one small record each). */
export const CONNECTIONS_MAX = LIMITS.sim.connectionsMax;
/** Longest delay one packet may be given, in ticks (bounds jitter and reorder settings). */
export const DELAY_TICKS_MAX = LIMITS.sim.delayTicksMax;

const DATAGRAM = 0;
const STREAM = 1;
const CHANNELS: readonly Channel[] = ["datagram", "stream"];
/** Packets due further ahead than this are not copied into slab memory (see #copy). */
const SLAB_DELAY_TICKS_MAX = LIMITS.sim.slabDelayTicksMax;
/** Directed pair keys: from * ADDRESSES_MAX + to, exact in a double (2^42 < 2^53). */
const PAIR_STRIDE = ADDRESSES_MAX;

/** A packet on its way. Plain fields, one shape, so V8 keeps the hot path monomorphic. */
class Packet {
  /** Send sequence number: the heap's tie-break, kept when a clog defers the packet. */
  readonly seq: number;
  readonly from: number;
  readonly to: number;
  readonly channel: number;
  /** The network's own copy of the bytes (a view into a slab, or a buffer of its own). */
  readonly bytes: Uint8Array;
  /** Stream frames: the connection (pair generation) the frame was sent on. */
  readonly generation: number;
  /** Stream frames: the endpoints' incarnations at send; a restart of either end resets the connection. */
  readonly fromIncarnation: number;
  readonly toIncarnation: number;

  constructor(seq: number, from: number, to: number, channel: number, bytes: Uint8Array, generation: number, fromIncarnation: number, toIncarnation: number) {
    this.seq = seq;
    this.from = from;
    this.to = to;
    this.channel = channel;
    this.bytes = bytes;
    this.generation = generation;
    this.fromIncarnation = fromIncarnation;
    this.toIncarnation = toIncarnation;
  }

  /** This packet with a buffer of its own, so that it no longer pins a slab. */
  withOwnBytes(): Packet {
    return new Packet(this.seq, this.from, this.to, this.channel, this.bytes.slice(), this.generation, this.fromIncarnation, this.toIncarnation);
  }
}

/** The state of the stream connection of one directed pair. */
interface Connection {
  /** Bumped whenever the connection breaks; frames of older generations are dropped. */
  generation: number;
  /** Latest delivery tick scheduled on this connection: later frames may not arrive earlier. */
  lastTick: number;
  /** A clog deferred a frame of this connection to this tick: no later frame may arrive before it. */
  heldUntil: number;
}

/** A symmetric partition: side[address] is 1 or 2; absent addresses are on `restSide` (0: neither). */
interface Partition {
  readonly side: Map<number, 1 | 2>;
  readonly restSide: 0 | 2;
}

type PacketHandler = (packet: Uint8Array, channel: Channel, from: string) => void;
type DropHandler = (reason: "oversize" | "decode") => void;

/**
 * One node's view of the network: the Transport port. Created by SimNetwork.createEndpoint; after
 * close() (a crash) the address may be opened again by a new endpoint (a restart).
 */
export class SimEndpoint implements Transport {
  readonly address: string;
  /** The address's index in its network. */
  readonly index: number;
  /** How many endpoints were opened at this address before this one. */
  readonly incarnation: number;
  readonly #send: (from: SimEndpoint, to: string, channel: Channel, packet: Uint8Array) => void;
  #packetHandler: PacketHandler | undefined;
  #dropHandler: DropHandler | undefined;
  #closed = false;

  constructor(
    address: string,
    index: number,
    incarnation: number,
    send: (from: SimEndpoint, to: string, channel: Channel, packet: Uint8Array) => void,
  ) {
    this.address = address;
    this.index = index;
    this.incarnation = incarnation;
    this.#send = send;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Fire and forget. The network copies the bytes: the caller may reuse its buffer at once. */
  send(to: string, channel: Channel, packet: Uint8Array): void {
    this.#send(this, to, channel, packet);
  }

  onPacket(handler: PacketHandler): void {
    this.#packetHandler = handler;
  }

  onDrop(handler: DropHandler): void {
    this.#dropHandler = handler;
  }

  /** A crash, or a clean stop: everything addressed here is dropped from now on. */
  close(): Promise<void> {
    this.closeNow();
    return Promise.resolve();
  }

  /** close() without the promise, for the synchronous simulator loop. Idempotent. */
  closeNow(): void {
    if (this.#closed) return;
    this.#closed = true;
  }

  /** Hands an arriving packet to the handler. Called by the network; tests may inject bytes. */
  receive(packet: Uint8Array, channel: Channel, from: string): void {
    if (this.#closed) return;
    this.#packetHandler?.(packet, channel, from);
  }

  /**
   * Reports a packet the transport refused. The network calls it on the sender for an oversize
   * send (the real adapters report oversize and undecodable inbound frames the same way).
   */
  refuse(reason: "oversize" | "decode"): void {
    this.#dropHandler?.(reason);
  }
}

export class SimNetwork {
  readonly #rng: Rng;
  readonly #inFlightMax: number;
  #defaults: LinkFaults;
  /** Per directed pair: the caller's partial overrides, and the overrides resolved over the defaults. */
  readonly #linkOverrides = new Map<number, Partial<LinkFaults>>();
  readonly #linkFaults = new Map<number, LinkFaults>();

  readonly #heap = new MinHeap<Packet>();
  readonly #slab = new ByteSlab();
  #now = 0;
  /** The next send sequence number. */
  #seq = 0;

  readonly #indexOf = new Map<string, number>();
  readonly #addresses: string[] = [];
  /** The current endpoint at each address index, open or closed. */
  readonly #endpoints: Array<SimEndpoint | undefined> = [];
  /** Endpoints ever opened per address index (the next endpoint's incarnation). */
  readonly #incarnations: number[] = [];
  /** Tick until which each address is clogged (0: not clogged). */
  readonly #clogUntil: number[] = [];
  /** The largest clog deadline set: once now passes it, no clog checks are needed. */
  #clogHorizon = 0;

  readonly #partitions: Partition[] = [];
  readonly #blocks = new Set<number>();
  readonly #connections = new Map<number, Connection>();

  #sent = 0;
  #delivered = 0;
  #duplicated = 0;
  #clogged = 0;
  readonly #dropped: Record<DropCause, number> = zeroDrops();

  /** Folded over every delivery; 64 bits make an accidental match of two different runs negligible. */
  readonly #fingerprint = new Fingerprint();

  #tracer: ((event: TraceEvent) => void) | undefined;

  constructor(options: SimNetworkOptions) {
    this.#rng = options.rng;
    this.#inFlightMax = options.inFlightPacketsMax ?? IN_FLIGHT_PACKETS_MAX;
    assert(Number.isInteger(this.#inFlightMax) && this.#inFlightMax > 0, "SimNetwork: inFlightPacketsMax must be a positive integer");
    this.#defaults = resolveFaults(PERFECT_LINK, options.faults ?? {});
  }

  /** The tick of the last deliverDue() call: sends are stamped with it. */
  get now(): number {
    return this.#now;
  }

  /** Packets delivered so far. */
  get delivered(): number {
    return this.#delivered;
  }

  /** A 64-bit fingerprint (16 hex digits) of every delivery so far: tick, from, to, channel, bytes. */
  get traceHash(): string {
    return this.#fingerprint.hex();
  }

  get stats(): NetworkStats {
    return {
      sent: this.#sent,
      delivered: this.#delivered,
      duplicated: this.#duplicated,
      clogged: this.#clogged,
      dropped: { ...this.#dropped },
      inFlight: this.#heap.size,
    };
  }

  /** The earliest tick at which a packet is due, or undefined when nothing is in flight. */
  get nextDueTick(): number | undefined {
    return this.#heap.size > 0 ? this.#heap.peekKey() : undefined;
  }

  get defaultFaults(): LinkFaults {
    return this.#defaults;
  }

  /** Calls `tracer` for every delivery and drop (slows the network; for golden traces and debugging). */
  setTracer(tracer: ((event: TraceEvent) => void) | undefined): void {
    this.#tracer = tracer;
  }

  /**
   * Opens the endpoint at `address`. An address whose previous endpoint was closed may be opened
   * again (a restart); datagrams still in flight to it are delivered to the new endpoint, as UDP
   * would, while stream frames of the old connections are dropped.
   */
  createEndpoint(address: string): SimEndpoint {
    assert(address.length > 0 && address.length <= LIMITS.addressCharsMax, `SimNetwork: bad address "${address.slice(0, 40)}"`);
    const index = this.#register(address);
    const previous = this.#endpoints[index];
    assert(previous === undefined || previous.closed, `SimNetwork: ${address} already has an open endpoint`);
    const incarnation = this.#incarnations[index] as number;
    this.#incarnations[index] = incarnation + 1;
    const endpoint = new SimEndpoint(
      address,
      index,
      incarnation,
      (from, to, channel, packet) => this.#send(from, to, channel, packet),
    );
    this.#endpoints[index] = endpoint;
    return endpoint;
  }

  /** The current endpoint at an address (open or closed), if one was ever created. */
  endpoint(address: string): SimEndpoint | undefined {
    const index = this.#indexOf.get(address);
    return index === undefined ? undefined : this.#endpoints[index];
  }

  /** Replaces the default faults of every link without an override of its own for that field. */
  setFaults(faults: Partial<LinkFaults>): void {
    this.#defaults = resolveFaults(PERFECT_LINK, faults);
    for (const [pair, overrides] of this.#linkOverrides) this.#linkFaults.set(pair, resolveFaults(this.#defaults, overrides));
  }

  /** Overrides the faults of the directed link from → to (fields not given follow the defaults). */
  setLinkFaults(from: string, to: string, faults: Partial<LinkFaults>): void {
    const pair = this.#register(from) * PAIR_STRIDE + this.#register(to);
    this.#linkOverrides.set(pair, faults);
    this.#linkFaults.set(pair, resolveFaults(this.#defaults, faults));
  }

  clearLinkFaults(from: string, to: string): void {
    const pair = this.#register(from) * PAIR_STRIDE + this.#register(to);
    this.#linkOverrides.delete(pair);
    this.#linkFaults.delete(pair);
  }

  /**
   * Cuts every link between groupA and groupB, both ways. Without groupB, groupA is cut from every
   * other address, including ones created later. Partitions add up until heal().
   */
  partition(groupA: readonly string[], groupB?: readonly string[]): void {
    assert(this.#partitions.length < PARTITIONS_MAX, `SimNetwork: more than ${PARTITIONS_MAX} partitions at once`);
    const side = new Map<number, 1 | 2>();
    for (const address of groupA) side.set(this.#register(address), 1);
    for (const address of groupB ?? []) {
      const index = this.#register(address);
      assert(side.get(index) !== 1, `SimNetwork.partition: ${address} is on both sides`);
      side.set(index, 2);
    }
    this.#partitions.push({ side, restSide: groupB === undefined ? 2 : 0 });
  }

  /** Cuts only the direction from → to (an asymmetric partition). */
  block(from: string, to: string): void {
    this.#blocks.add(this.#register(from) * PAIR_STRIDE + this.#register(to));
  }

  unblock(from: string, to: string): void {
    this.#blocks.delete(this.#register(from) * PAIR_STRIDE + this.#register(to));
  }

  /** Removes every partition and block. Clogs run out by themselves (or unclog()). */
  heal(): void {
    this.#partitions.length = 0;
    this.#blocks.clear();
  }

  /** Holds every packet to or from `address` until tick `untilTick` (extends, never shortens). */
  clog(address: string, untilTick: number): void {
    assert(Number.isInteger(untilTick) && untilTick >= 0, "SimNetwork.clog: untilTick must be a tick");
    const index = this.#register(address);
    if (untilTick > (this.#clogUntil[index] as number)) this.#clogUntil[index] = untilTick;
    if (untilTick > this.#clogHorizon) this.#clogHorizon = untilTick;
  }

  unclog(address: string): void {
    const index = this.#indexOf.get(address);
    if (index !== undefined) this.#clogUntil[index] = 0;
  }

  /** True when a packet from → to would be cut now by a partition or a block. */
  isCut(from: string, to: string): boolean {
    const a = this.#indexOf.get(from);
    const b = this.#indexOf.get(to);
    return a !== undefined && b !== undefined && this.#cutCause(a, b) !== undefined;
  }

  /**
   * Delivers, in (tick, send order), every packet due by tick `now`, calling the receivers' handlers
   * synchronously. `now` never goes back. A handler that throws leaves the remaining due packets
   * queued; calling deliverDue(now) again resumes.
   */
  deliverDue(now: number): void {
    assert(now >= this.#now, `SimNetwork.deliverDue: time went back from ${this.#now} to ${now}`);
    this.#now = now;
    const heap = this.#heap;
    while (heap.size > 0 && heap.peekKey() <= now) {
      const tick = heap.peekKey();
      const packet = heap.pop() as Packet;
      const from = packet.from;
      const to = packet.to;

      // A clog defers the packet to the clog's end, keeping its send sequence as tie-break. A
      // deferred stream frame holds its connection: a later frame of it scheduled before the hold
      // ends is deferred behind it (even when the clog was lifted early or time jumped past it).
      let deferTo = 0;
      if (now < this.#clogHorizon) {
        const until = Math.max(this.#clogUntil[from] as number, this.#clogUntil[to] as number);
        if (until > now) deferTo = until;
      }
      const connection = packet.channel === STREAM ? this.#connections.get(from * PAIR_STRIDE + to) : undefined;
      const onConnection = connection !== undefined && packet.generation === connection.generation;
      if (onConnection && connection.heldUntil > tick && connection.heldUntil > deferTo) deferTo = connection.heldUntil;
      if (deferTo > tick) {
        this.#clogged++;
        if (onConnection) {
          if (connection.heldUntil < deferTo) connection.heldUntil = deferTo;
          if (connection.lastTick < deferTo) connection.lastTick = deferTo;
        }
        heap.push(deferTo, packet.seq, deferTo - now > SLAB_DELAY_TICKS_MAX ? packet.withOwnBytes() : packet);
        continue;
      }

      const endpoint = this.#endpoints[to];
      if (endpoint === undefined || endpoint.closed) {
        if (packet.channel === STREAM) this.#breakConnection(from, to);
        this.#drop(packet, "crashed");
        continue;
      }
      if (this.#partitions.length > 0 || this.#blocks.size > 0) {
        const cause = this.#cutCause(from, to);
        if (cause !== undefined) {
          if (packet.channel === STREAM) this.#breakConnection(from, to);
          this.#drop(packet, cause);
          continue;
        }
      }
      if (packet.channel === STREAM) {
        if (
          connection === undefined ||
          packet.generation !== connection.generation ||
          packet.toIncarnation !== endpoint.incarnation ||
          packet.fromIncarnation !== (this.#incarnations[from] as number) - 1
        ) {
          this.#drop(packet, "connection");
          continue;
        }
      }

      this.#delivered++;
      this.#fold(now, from, to, packet.channel, packet.bytes);
      if (this.#tracer !== undefined) this.#trace(packet, undefined);
      endpoint.receive(packet.bytes, CHANNELS[packet.channel] as Channel, this.#addresses[from] as string);
    }
  }

  // --- sending (the hot path) ---

  #send(sender: SimEndpoint, toAddress: string, channelName: Channel, bytes: Uint8Array): void {
    this.#sent++;
    const channel = channelName === "datagram" ? DATAGRAM : STREAM;
    const from = sender.index;
    if (sender.closed) return this.#dropAtSend("closed");
    if (bytes.length > (channel === DATAGRAM ? LIMITS.datagramBytesMax : LIMITS.frameBytesMax)) {
      sender.refuse("oversize");
      return this.#dropAtSend("oversize");
    }
    const to = this.#indexOf.get(toAddress);
    if (to === undefined) return this.#dropAtSend("unreachable");
    if (this.#partitions.length > 0 || this.#blocks.size > 0) {
      const cause = this.#cutCause(from, to);
      if (cause !== undefined) {
        if (channel === STREAM) this.#breakConnection(from, to);
        return this.#dropAtSend(cause);
      }
    }
    if (this.#heap.size >= this.#inFlightMax) return this.#dropAtSend("overflow");

    const faults = this.#linkFaults.size > 0 ? (this.#linkFaults.get(from * PAIR_STRIDE + to) ?? this.#defaults) : this.#defaults;
    const rng = this.#rng;
    if (channel === DATAGRAM && faults.lossRate > 0 && rng.next() < faults.lossRate) return this.#dropAtSend("loss");

    let tick = this.#now + this.#delay(faults);
    if (this.#now < this.#clogHorizon) tick = this.#clampToClog(from, to, tick);

    if (channel === STREAM) {
      const pair = from * PAIR_STRIDE + to;
      let connection = this.#connections.get(pair);
      if (connection === undefined) {
        assert(this.#connections.size < CONNECTIONS_MAX, `SimNetwork: more than ${CONNECTIONS_MAX} stream connections`);
        connection = { generation: 0, lastTick: 0, heldUntil: 0 };
        this.#connections.set(pair, connection);
      }
      if (tick < connection.lastTick) tick = connection.lastTick;
      connection.lastTick = tick;
      const toIncarnation = (this.#incarnations[to] as number) - 1;
      const copy = this.#copy(bytes, tick - this.#now);
      this.#heap.push(tick, this.#seq, new Packet(this.#seq++, from, to, STREAM, copy, connection.generation, sender.incarnation, toIncarnation));
      return;
    }

    this.#heap.push(tick, this.#seq, new Packet(this.#seq++, from, to, DATAGRAM, this.#copy(bytes, tick - this.#now), 0, 0, 0));
    if (faults.duplicateRate > 0 && rng.next() < faults.duplicateRate && this.#heap.size < this.#inFlightMax) {
      this.#duplicated++;
      let dupTick = this.#now + this.#delay(faults);
      if (this.#now < this.#clogHorizon) dupTick = this.#clampToClog(from, to, dupTick);
      this.#heap.push(dupTick, this.#seq, new Packet(this.#seq++, from, to, DATAGRAM, this.#copy(bytes, dupTick - this.#now), 0, 0, 0));
    }
  }

  /**
   * The network's own copy of a packet's bytes (the sender may reuse its buffer at once). Packets
   * due soon go into slab memory; one held back for long gets a buffer of its own, so that it does
   * not pin a whole slab.
   */
  #copy(bytes: Uint8Array, delayTicks: number): Uint8Array {
    return delayTicks > SLAB_DELAY_TICKS_MAX ? bytes.slice() : this.#slab.copy(bytes);
  }

  /** Ticks from send to delivery: min + jitter (+ a reordering hold-back). */
  #delay(faults: LinkFaults): number {
    let delay = faults.minDelayTicks;
    const jitter = faults.jitter;
    const rng = this.#rng;
    if (jitter.kind === "uniform") {
      if (jitter.maxTicks > 0) delay += Math.floor(rng.next() * (jitter.maxTicks + 1));
    } else if (jitter.kind === "exponential") {
      // Inverse CDF; 1 - u is in (0, 1], so the log is finite. V8's Math.log is its own fdlibm
      // port, identical on every platform, so the draw replays exactly.
      const extra = Math.floor(-Math.log(1 - rng.next()) * jitter.meanTicks);
      delay += extra < jitter.maxTicks ? extra : jitter.maxTicks;
    }
    if (faults.reorderRate > 0 && rng.next() < faults.reorderRate) {
      delay += 1 + Math.floor(rng.next() * faults.reorderDelayTicksMax);
    }
    return delay;
  }

  #clampToClog(from: number, to: number, tick: number): number {
    const until = Math.max(this.#clogUntil[from] as number, this.#clogUntil[to] as number);
    if (until > this.#now) {
      this.#clogged++;
      if (tick < until) return until;
    }
    return tick;
  }

  #cutCause(from: number, to: number): "partition" | "block" | undefined {
    for (const partition of this.#partitions) {
      const a = partition.side.get(from) ?? partition.restSide;
      const b = partition.side.get(to) ?? partition.restSide;
      if (a !== 0 && b !== 0 && a !== b) return "partition";
    }
    if (this.#blocks.size > 0 && this.#blocks.has(from * PAIR_STRIDE + to)) return "block";
    return undefined;
  }

  #breakConnection(from: number, to: number): void {
    const connection = this.#connections.get(from * PAIR_STRIDE + to);
    if (connection !== undefined) {
      // Frames of the old generation are dropped when they come due: the new connection need
      // not wait for them.
      connection.generation++;
      connection.lastTick = 0;
      connection.heldUntil = 0;
    }
  }

  #register(address: string): number {
    const known = this.#indexOf.get(address);
    if (known !== undefined) return known;
    const index = this.#addresses.length;
    assert(index < ADDRESSES_MAX, `SimNetwork: more than ${ADDRESSES_MAX} addresses`);
    this.#indexOf.set(address, index);
    this.#addresses.push(address);
    this.#endpoints.push(undefined);
    this.#incarnations.push(0);
    this.#clogUntil.push(0);
    return index;
  }

  #dropAtSend(cause: DropCause): void {
    this.#dropped[cause]++;
  }

  #drop(packet: Packet, cause: DropCause): void {
    this.#dropped[cause]++;
    if (this.#tracer !== undefined) this.#trace(packet, cause);
  }

  #trace(packet: Packet, dropped: DropCause | undefined): void {
    this.#tracer?.({
      tick: this.#now,
      from: this.#addresses[packet.from] as string,
      to: this.#addresses[packet.to] as string,
      channel: CHANNELS[packet.channel] as Channel,
      bytes: packet.bytes.length,
      dropped,
    });
  }

  /** Folds one delivery into the trace fingerprint. Addresses enter as indices (creation order). */
  #fold(tick: number, from: number, to: number, channel: number, bytes: Uint8Array): void {
    const trace = this.#fingerprint;
    trace.word(tick >>> 0);
    trace.word(Math.floor(tick / 0x1_0000_0000));
    trace.word(from);
    trace.word(to);
    trace.word(channel);
    trace.word(bytes.length);
    trace.bytes(bytes);
  }
}

/** Validates `overrides` and lays them over `base`. */
export function resolveFaults(base: LinkFaults, overrides: Partial<LinkFaults>): LinkFaults {
  const faults: LinkFaults = { ...base, ...overrides };
  assert(Number.isInteger(faults.minDelayTicks) && faults.minDelayTicks >= 1 && faults.minDelayTicks <= DELAY_TICKS_MAX,
    `LinkFaults: minDelayTicks must be an integer in [1, ${DELAY_TICKS_MAX}], got ${faults.minDelayTicks}`);
  for (const name of ["lossRate", "duplicateRate", "reorderRate"] as const) {
    const p = faults[name];
    assert(p >= 0 && p <= 1, `LinkFaults: ${name} must be in [0, 1], got ${p}`);
  }
  assert(Number.isInteger(faults.reorderDelayTicksMax) && faults.reorderDelayTicksMax >= 0 && faults.reorderDelayTicksMax <= DELAY_TICKS_MAX,
    `LinkFaults: reorderDelayTicksMax must be an integer in [0, ${DELAY_TICKS_MAX}]`);
  assert(faults.reorderRate === 0 || faults.reorderDelayTicksMax >= 1, "LinkFaults: reorderRate > 0 needs reorderDelayTicksMax >= 1");
  const jitter = faults.jitter;
  if (jitter.kind !== "none") {
    assert(Number.isInteger(jitter.maxTicks) && jitter.maxTicks >= 0 && jitter.maxTicks <= DELAY_TICKS_MAX,
      `Jitter: maxTicks must be an integer in [0, ${DELAY_TICKS_MAX}]`);
  }
  if (jitter.kind === "exponential") assert(jitter.meanTicks > 0, "Jitter: meanTicks must be positive");
  return faults;
}

/**
 * Draws a random fault profile from the seed (TigerBeetle's "swarm" options): each run of the
 * simulator exercises a different mix of delay, loss, duplication and reordering.
 */
export function randomFaults(rng: Rng): LinkFaults {
  const jitterKind = rng.int(3);
  const jitter: Jitter = jitterKind === 0
    ? { kind: "none" }
    : jitterKind === 1
      ? { kind: "uniform", maxTicks: rng.int(20) }
      : { kind: "exponential", meanTicks: 1 + rng.int(10), maxTicks: 50 + rng.int(150) };
  return resolveFaults(PERFECT_LINK, {
    minDelayTicks: 1 + rng.int(5),
    jitter,
    lossRate: rng.chance(0.3) ? 0 : rng.next() * 0.2,
    duplicateRate: rng.chance(0.5) ? 0 : rng.next() * 0.05,
    reorderRate: rng.chance(0.5) ? 0 : rng.next() * 0.1,
    reorderDelayTicksMax: 1 + rng.int(20),
  });
}

function zeroDrops(): Record<DropCause, number> {
  const drops = {} as Record<DropCause, number>;
  for (const cause of DROP_CAUSES) drops[cause] = 0;
  return drops;
}
