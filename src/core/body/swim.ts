// SWIM failure detection with Lifeguard, as a sans-IO core (step / tick / ready).
//
// Sources: SWIM (Das, Gupta, Motivala, DSN 2002) §3–4: probe rounds, ping-req through k members,
// suspicion with incarnation numbers, infection-style piggybacked dissemination, round-robin over
// a shuffled list. Lifeguard (Dadgar, Phillips, Currey, arXiv 1707.00788): nacks, the local health
// multiplier (LHA-Probe), suspicion timeouts that shrink with independent confirmations
// (LHA-Suspicion) and the buddy system. hashicorp/memberlist for the formulas and defaults
// (research/anchors-distributed.md §2). Protocol description: docs/protocols/swim.md.
//
// Member states and precedence (an update overrides the stored state when it is newer):
//   (incarnation, rank) compared lexicographically, rank alive 0 < suspect 1 < dead 2 < left 3.
// That is SWIM's rule list: alive{i} beats suspect/alive{j < i}; suspect{i} beats alive{j ≤ i} and
// suspect{j < i}; dead/left{i} beat everything with j ≤ i (left being final at equal i). Only the
// member raises its own incarnation: when it hears it is suspect, dead or left, it refutes with
// alive{accused + 1}. Dead and left members stay as tombstones for tombstoneTicks so that stale
// alive news with an old incarnation cannot bring them back.
//
// Probing: every probe period (probeTicks·LHM) the member at the head of the probe queue is
// pinged and goes to its tail; any packet heard from a member (of any layer: heard()) sends it to
// the tail too, so the queue's head is the member neither probed nor heard from for longest, and a
// member that falls silent is probed by every observer within n − 1 periods (SWIM's shuffled
// round-robin allows 2(n − 1) − 1; ADR 024). After probeTimeoutTicks·LHM without an ack, ping-req
// goes to k random members who ping on our behalf and answer ack or nack; no ack by the end of the
// period ⇒ suspect.
//
// Tables: a member's identity (id, key, address, role, name) lives once in a SwimDirectory, which
// maps ids to small integer slots; the per-member state is kept in typed arrays indexed by slot
// (state u8, incarnation u32, state tick f64, list positions), with Maps only for what few members
// have (news to spread, suspicion timers, accusers, identities that differ from the directory's).
// About 25 bytes per member, so that the simulator can run 10,000 cores that each know 10,000
// members (src/sim/swim-scale.ts) with one shared directory.
import { assert, assertNever } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import { Outbox, type Ready } from "../util/outbox.ts";
import { bytesEqual } from "../util/bytes.ts";
import type { Rng } from "../util/rng.ts";
import { Timeout } from "../util/timeout.ts";
import { HEADER_BYTES, TAG_BYTES, type Channel } from "../wire/envelope.ts";
import type { AliveFields, Claim } from "./trust.ts";
import { entryFromWire, entryToWire, isSwimMessage, type MemberEntry, type MemberEntryWire, type Message, type Role, type SwimUpdateWire } from "../wire/messages.ts";

/** All durations in ticks (10 ms each at the kernel's default). */
export interface SwimConfig {
  /** Protocol period T′: one probe per period, scaled by the local health multiplier. */
  readonly probeTicks: number;
  /** Wait for a direct ack before asking helpers; scaled by the local health multiplier. */
  readonly probeTimeoutTicks: number;
  /**
   * Floor of the adaptive probe timeout. Below probeTimeoutTicks, the wait for an ack follows the
   * measured round-trip time as TCP's retransmission timer does (srtt + 4·rttvar, RFC 6298),
   * between this floor and probeTimeoutTicks; equal to it, the timeout is fixed (memberlist).
   */
  readonly probeTimeoutMinTicks: number;
  /** Helpers asked to ping indirectly (k). */
  readonly indirectChecks: number;
  /** λ: each update is sent retransmitMult·⌈log10(n+1)⌉ times. */
  readonly retransmitMult: number;
  /** Suspicion minimum = suspicionMult·max(1, log10 n)·probeTicks (may be fractional). */
  readonly suspicionMult: number;
  /** Lifeguard's K: independent confirmations that bring the timeout down to the minimum. */
  readonly suspicionConfirmations: number;
  /**
   * On hearing a new suspicion from another member, probe the suspect at once (direct, then
   * indirect) instead of waiting for its turn in the round: a failed probe is an independent
   * confirmation, an answered one lets the suspect refute through the buddy system.
   */
  readonly confirmProbes: boolean;
  /** Suspicion maximum = suspicionMaxTimeoutMult · minimum. */
  readonly suspicionMaxTimeoutMult: number;
  /** Gossip period: piggyback-only datagrams while there is news. */
  readonly gossipTicks: number;
  /** Members gossiped to per gossip period. */
  readonly gossipNodes: number;
  /** A member declared dead is still gossiped to for this long, so that it may refute. */
  readonly gossipToTheDeadTicks: number;
  /** Push-pull full-state sync period for n ≤ 32; scaled by 1 + log2(n/32) above. */
  readonly pushPullTicks: number;
  /** How long dead and left members are kept before they are forgotten. */
  readonly tombstoneTicks: number;
}

/**
 * memberlist's DefaultLANConfig at 10 ms ticks (probe 1 s, timeout 500 ms, 3 indirect checks,
 * retransmit 4, suspicion 4 with K = 2 (max 6×), gossip 200 ms to 3 nodes, push-pull 30 s, gossip
 * to the dead 30 s), tombstones kept 5 min. The reference SWIM_LAN departs from.
 */
export const SWIM_MEMBERLIST_LAN: SwimConfig = {
  probeTicks: 100,
  probeTimeoutTicks: 50,
  probeTimeoutMinTicks: 50,
  indirectChecks: 3,
  retransmitMult: 4,
  suspicionMult: 4,
  suspicionConfirmations: 2,
  confirmProbes: false,
  suspicionMaxTimeoutMult: 6,
  gossipTicks: 20,
  gossipNodes: 3,
  gossipToTheDeadTicks: 3000,
  pushPullTicks: 3000,
  tombstoneTicks: 30_000,
};

/**
 * p-kernel's LAN profile: memberlist's timings (SWIM_MEMBERLIST_LAN) with confirmation probes and a
 * suspicion minimum of 2·max(1, log10 n) probe periods instead of 4 (ADR 006). A real failure is
 * confirmed by K = 2 other members within about one probe period, so the minimum applies; a live
 * member answers the confirmation probes and refutes, and an unconfirmed suspicion still waits
 * six times the minimum.
 */
export const SWIM_LAN: SwimConfig = {
  probeTicks: 100,
  probeTimeoutTicks: 50,
  probeTimeoutMinTicks: 10,
  indirectChecks: 3,
  retransmitMult: 4,
  suspicionMult: 2,
  suspicionConfirmations: 2,
  confirmProbes: true,
  suspicionMaxTimeoutMult: 6,
  gossipTicks: 20,
  gossipNodes: 3,
  gossipToTheDeadTicks: 3000,
  pushPullTicks: 3000,
  tombstoneTicks: 30_000,
};

/**
 * WAN profile at 10 ms ticks: memberlist's DefaultWANConfig (probe 5 s, timeout 3 s, suspicion 6,
 * gossip 500 ms to 4 nodes, push-pull 60 s, gossip to the dead 60 s). Tombstones are kept 10 min.
 */
export const SWIM_WAN: SwimConfig = {
  probeTicks: 500,
  probeTimeoutTicks: 300,
  probeTimeoutMinTicks: 50,
  indirectChecks: 3,
  retransmitMult: 4,
  suspicionMult: 6,
  suspicionConfirmations: 4,
  confirmProbes: true,
  suspicionMaxTimeoutMult: 6,
  gossipTicks: 50,
  gossipNodes: 4,
  gossipToTheDeadTicks: 6000,
  pushPullTicks: 6000,
  tombstoneTicks: 60_000,
};

export type SwimState = "alive" | "suspect" | "dead" | "left";

/** Rank of a state at equal incarnation (see the header). */
const RANK: Readonly<Record<SwimState, 0 | 1 | 2 | 3>> = { alive: 0, suspect: 1, dead: 2, left: 3 };

/** True when news `update` about a member replaces what is known (`current`). */
export function supersedes(
  current: { readonly state: SwimState; readonly incarnation: number },
  update: { readonly state: SwimState; readonly incarnation: number },
): boolean {
  if (update.incarnation !== current.incarnation) return update.incarnation > current.incarnation;
  return RANK[update.state] > RANK[current.state];
}

/**
 * Identity checks SWIM needs: the id a key maps to, whether a member's entry is believed (its
 * owner-signed certificate and its own signature, src/core/body/trust.ts; a refusal is counted by
 * the checker), this node's signature over its own entry when its incarnation moves, and the
 * signatures on claims about members' states (suspect, dead, left: trust.ts claimMessage).
 */
export interface SwimCrypto {
  idOf(publicKey: Uint8Array): string;
  check(entry: MemberEntry): boolean;
  signAlive(fields: AliveFields): Uint8Array;
  /** This node's signature over a claim it makes. */
  signClaim(claim: Claim): Uint8Array;
  /** Whether `sig` over the claim is its maker's, whose key SWIM holds as `key`. */
  checkClaim(claim: Claim, key: Uint8Array, sig: Uint8Array): boolean;
}

/** A claim as SWIM keeps and relays it: who made it, about which incarnation, and the signature. */
interface HeldClaim {
  readonly from: string;
  readonly incarnation: number;
  readonly sig: Uint8Array;
}

export interface Outbound {
  /** Destination address ("host:port"). */
  readonly to: string;
  readonly channel: Channel;
  readonly message: Message;
}

export type SwimEvent = {
  readonly type: "member-alive" | "member-suspect" | "member-dead" | "member-left" | "member-refuted";
  readonly id: string;
  readonly incarnation: number;
};

export type SwimReady = Ready<Outbound, SwimEvent>;

/** What Swim knows about one member (read-only outside this file). */
export interface SwimMember {
  /** The entry; entry.incarnation is the member's incarnation as known here. */
  readonly entry: MemberEntry;
  readonly state: SwimState;
  /** Tick of the last state change. */
  readonly stateTick: number;
}

/**
 * Member identities by slot, for Swim's compact tables: id ↔ slot, and each member's key, address,
 * role, name and incarnation as first seen here. A Swim core keeps its per-member state in typed
 * arrays indexed by these slots. In a node there is one Swim and its directory is private; the
 * simulator's scale scenario shares one directory between all its cores, so that 10,000 cores
 * each knowing 10,000 members hold the 10,000 identities once (docs/protocols/swim.md, "Tables").
 *
 * Slots are reference-counted: every core that knows a member (or is the member) holds one
 * reference; a slot whose last reference goes is freed with its id, and reused. The fields are
 * read by Swim on the hot path and must not be written from outside.
 */
export class SwimDirectory {
  /** Member ids by slot; "" for a free slot. */
  readonly ids: string[] = [];
  readonly pubs: Uint8Array[] = [];
  readonly addrs: string[] = [];
  readonly roles: Role[] = [];
  readonly names: string[] = [];
  readonly incarnations: number[] = [];
  /** The boot epoch, certificate and signature of each slot's entry at `incarnations[slot]`. */
  readonly epochs: number[] = [];
  readonly certs: Uint8Array[] = [];
  readonly sigs: Uint8Array[] = [];
  /** Bound of the MessagePack size of each slot's alive update (updateBytesMax). */
  readonly aliveBytes: number[] = [];
  readonly #slots = new Map<string, number>();
  /**
   * The bytes of the identities (keys, certificates, signatures) as views into shared chunks of
   * DIRECTORY_CHUNK_BYTES: a Uint8Array of its own per copy costs an ArrayBuffer each (and beyond
   * 64 bytes a backing store off the heap), which is most of what a 1,000-node simulation's
   * garbage collector walks. A chunk goes once no identity views it; a freed slot's bytes stay
   * until then (at most a chunk per identity held, in the worst case).
   */
  #chunk = new Uint8Array(DIRECTORY_CHUNK_BYTES);
  #chunkUsed = 0;
  readonly #refs: number[] = [];
  readonly #free: number[] = [];
  readonly #max: number;

  /** At most `maxSlots` identities at once (LIMITS.membersMax by default). */
  constructor(maxSlots: number = LIMITS.membersMax) {
    assert(Number.isInteger(maxSlots) && maxSlots >= 1, "SwimDirectory: maxSlots must be a positive integer");
    this.#max = maxSlots;
  }

  /** Identities held. */
  get size(): number {
    return this.#slots.size;
  }

  /** One past the largest slot handed out so far: the length a core's tables need. */
  get slots(): number {
    return this.ids.length;
  }

  slotOf(id: string): number | undefined {
    return this.#slots.get(id);
  }

  /**
   * The slot of `entry.id`, holding `entry`'s identity when the id is new (the caller has checked
   * that the id derives from the key); undefined when the directory is full. Until a core takes a
   * reference, the slot stays (the simulator fills a shared directory this way before the cores
   * start, with the `knowAll` option).
   */
  add(entry: MemberEntry): number | undefined {
    return this.intern(entryToWire(entry));
  }

  /** add() from the entry's wire form; bytes are copied (the decoder's are views into a packet). */
  intern(entry: MemberEntryWire): number | undefined {
    const id = entry[0];
    const known = this.#slots.get(id);
    if (known !== undefined) return known;
    if (this.#slots.size >= this.#max) return undefined;
    const slot = this.#free.length > 0 ? this.#free.pop() as number : this.ids.length;
    this.ids[slot] = id;
    this.pubs[slot] = this.#copy(entry[1]);
    this.addrs[slot] = entry[2];
    this.roles[slot] = entry[3];
    this.names[slot] = entry[4];
    this.incarnations[slot] = entry[5];
    this.epochs[slot] = entry[6];
    this.certs[slot] = this.#copy(entry[7]);
    this.sigs[slot] = this.#copy(entry[8]);
    this.aliveBytes[slot] = aliveBytesOf(entry[2], entry[4]);
    this.#refs[slot] = 0;
    this.#slots.set(id, slot);
    return slot;
  }

  /** A copy of `bytes` in the current chunk. */
  #copy(bytes: Uint8Array): Uint8Array {
    const length = bytes.length;
    if (length > DIRECTORY_CHUNK_BYTES >>> 3) return bytes.slice();
    if (this.#chunkUsed + length > DIRECTORY_CHUNK_BYTES) {
      this.#chunk = new Uint8Array(DIRECTORY_CHUNK_BYTES);
      this.#chunkUsed = 0;
    }
    const at = this.#chunkUsed;
    const copy = this.#chunk.subarray(at, at + length);
    copy.set(bytes);
    this.#chunkUsed = at + length;
    return copy;
  }

  /** Swim's bookkeeping: a core now knows (or is) the member in `slot`. */
  retain(slot: number): void {
    assert(this.ids[slot] !== undefined && this.ids[slot] !== "", "SwimDirectory: retain of a free slot");
    this.#refs[slot] = (this.#refs[slot] as number) + 1;
  }

  /** Swim's bookkeeping: a core has forgotten the member in `slot`; the last one frees the slot. */
  release(slot: number): void {
    const refs = (this.#refs[slot] as number) - 1;
    assert(refs >= 0, "SwimDirectory: release without retain");
    this.#refs[slot] = refs;
    if (refs > 0) return;
    this.#slots.delete(this.ids[slot] as string);
    this.ids[slot] = "";
    this.pubs[slot] = EMPTY_KEY;
    this.certs[slot] = EMPTY_KEY;
    this.sigs[slot] = EMPTY_KEY;
    this.addrs[slot] = "";
    this.names[slot] = "";
    this.#free.push(slot);
  }
}

const EMPTY_KEY = new Uint8Array(0);
/** Bytes per chunk of a directory's identity bytes (about 22 identities). */
const DIRECTORY_CHUNK_BYTES = 4096;
/** #queueNext of a slot that is not in the probe queue. */
const NOT_QUEUED = -2;
/** In place of a claim's signature where none is held (it verifies nowhere). */
const EMPTY_SIG = new Uint8Array(64);

export interface SwimOptions {
  /** Where member identities are kept; several cores in one process may share one. Default: a private one. */
  readonly directory?: SwimDirectory;
  /**
   * Start knowing every member already in the directory as alive, at the directory's incarnation,
   * with no news to spread about them: the steady state of a cluster whose join news has drained
   * (the scale scenario, src/sim/swim-scale.ts). The directory's entries are trusted (not checked).
   */
  readonly knowAll?: boolean;
  /**
   * Initial length of the per-member tables, in slots (default: the directory's slots, at least
   * 16). They grow (doubling) when a member with a larger slot arrives; a simulator that shares a
   * directory sizes them once for every member it will ever add.
   */
  readonly tableSlots?: number;
}

/** A member's identity where it differs from the directory's copy (a new address, say). */
interface Identity {
  readonly pub: Uint8Array;
  readonly addr: string;
  readonly role: Role;
  readonly name: string;
  readonly cert: Uint8Array;
  readonly aliveBytes: number;
}

/** A member with news to spread, in one of the two news heaps. */
interface News {
  readonly slot: number;
  /** Times the current news was piggybacked. */
  sent: number;
  /** Order in which the news arrived (larger = newer). */
  seq: number;
  /** Which heap holds it: alive updates (variable size) or the others (fixed size). */
  alive: boolean;
  /** Position in its heap; −1 while popped. */
  index: number;
}

interface Suspicion {
  readonly slot: number;
  readonly startTick: number;
  readonly minTicks: number;
  readonly maxTicks: number;
  /** Confirmations wanted for the minimum timeout (Lifeguard's K); 0 ⇒ minimum at once. */
  readonly k: number;
  /** Who has said so, the first accuser included. Invariant: size ≤ k + 1. */
  readonly accusers: Set<string>;
  /** Tick at which the suspect is declared dead: startTick + the timeout for the confirmations so far. */
  deadline: number;
  /** Order in which suspicions started (ties on the deadline expire in this order). */
  readonly seq: number;
  /** Position in the suspects' deadline heap; −1 once out of it. */
  index: number;
  /** Set once the last-chance probe has started; `deadline` then bounds the probe. */
  lastChance: boolean;
  /** While lastChance: the death is declared no earlier than this (the timeout proper). */
  declareAt: number;
}

interface Probe {
  readonly slot: number;
  readonly id: string;
  readonly seq: number;
  readonly startTick: number;
  readonly timeoutTicks: number;
  acked: boolean;
  indirect: boolean;
  expectedNacks: number;
  nacks: number;
}

interface Relay {
  readonly originAddr: string;
  readonly originSeq: number;
  readonly startTick: number;
}

interface Tombstone {
  readonly slot: number;
  readonly id: string;
  readonly tick: number;
}

// Member states in the tables: the wire's state code + 1, 0 for a slot this core does not know.
const UNKNOWN = 0;
const ALIVE = 1;
const SUSPECT = 2;
const DEAD = 3;
const LEFT = 4;
type Code = typeof ALIVE | typeof SUSPECT | typeof DEAD | typeof LEFT;
const CODE_STATES: readonly SwimState[] = ["alive", "alive", "suspect", "dead", "left"];

/** Envelope (36 header + 16 tag) around every datagram body. */
const ENVELOPE_BYTES = HEADER_BYTES + TAG_BYTES;
/** Bound of a swim datagram body without its updates and addresses (LIMITS: the sum). */
const FIXED_BYTES_MAX = LIMITS.swimFixedBytesMax;
const STATE_UPDATE_BYTES_MAX = LIMITS.swimStateUpdateBytesMax;
/** Initial length of a private directory's tables (they double as members arrive). */
const TABLE_SLOTS_MIN = 16;

/**
 * Bound of an alive update's MessagePack size: 2 + the entry (array header 1, id 17, pub 34,
 * role ≤ 12, incarnation ≤ 5, epoch ≤ 9, certificate 2 + 82, signature 2 + 64, so 228, plus addr
 * and name as MessagePack strings). The other updates are at most 1 + 1 + 17 + 5 + 17 + 66 = 107
 * (STATE_UPDATE_BYTES_MAX).
 */
function aliveBytesOf(addr: string, name: string): number {
  return 2 + 228 + stringBytes(addr) + stringBytes(name);
}

/** MessagePack size of a string: header (1, 2 or 3 bytes) and its UTF-8 bytes. */
function stringBytes(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code >= 0xd800 && code <= 0xdfff ? 2 : 3;
  }
  return bytes + (bytes < 32 ? 1 : bytes < 256 ? 2 : 3);
}

function isLive(code: number): boolean {
  return code === ALIVE || code === SUSPECT;
}

export class Swim {
  #self: MemberEntry;
  /** alive or left (after leave()). */
  #selfCode: typeof ALIVE | typeof LEFT = ALIVE;
  #selfAliveBytes: number;
  readonly #selfSlot: number;
  readonly #rng: Rng;
  readonly #crypto: SwimCrypto;
  readonly #config: SwimConfig;
  readonly #dir: SwimDirectory;
  // Per-member state by directory slot (self excluded: its slot stays UNKNOWN here).
  #state: Uint8Array;
  #incarnation: Uint32Array;
  /** Boot epoch and signature of each member's alive entry at #incarnation (what #wire relays). */
  #epoch: Float64Array;
  #sig: Uint8Array[] = [];
  /** Tick of the last state change. */
  #stateTick: Float64Array;
  /** Position in #list. */
  #listAt: Int32Array;
  /** Every known member (tombstones included), for uniform sampling (swap-remove). */
  #list: Uint32Array;
  #listLength = 0;
  /** Members known (#list's length). */
  #known = 0;
  /** Members not dead or left (the "n" of every formula, self excluded). */
  #live = 0;
  /** Who declared a member's current suspect/dead/left state, signed (gossiped along with it). */
  readonly #claims = new Map<number, HeldClaim>();
  /** This node's signed leave, once it left. */
  #leaveSig: Uint8Array = EMPTY_KEY;
  /** Identities that differ from the directory's copy. */
  readonly #identities = new Map<number, Identity>();
  /** Slot by address (idAt), built on first use. */
  #byAddr: Map<string, number> | undefined;
  /**
   * Members with news still to spread (self included): two binary heaps ordered by (sent
   * ascending, seq descending), memberlist's TransmitLimitedQueue. Alive news (variable size)
   * and the fixed-size suspect/dead/left news are kept apart so that a full datagram can stop
   * looking for alive news that fits without scanning it all.
   */
  readonly #news = new Map<number, News>();
  readonly #newsAliveHeap: News[] = [];
  readonly #newsStateHeap: News[] = [];
  #newsSeq = 0;
  /** Suspicion timers by slot, and the same as a binary heap by (deadline, seq). */
  readonly #suspicions = new Map<number, Suspicion>();
  readonly #suspects: Suspicion[] = [];
  #suspicionSeq = 0;
  /** Dead and left members in the order their tombstones expire; stale once the member moved on. */
  #tombstones: Tombstone[] = [];
  #tombstonesHead = 0;
  /**
   * The probe order: the live members in a queue (a doubly linked list by slot), the one neither
   * probed nor heard from for longest at the head. Each probe period takes the head and moves it
   * to the tail; any message from a member moves it to the tail too (docs/adr/024-swim-speed.md).
   * A member that goes silent only moves up, so every observer probes it within n − 1 periods.
   * −2 in #queueNext: not queued; −1: none (end of the queue).
   */
  #queueNext: Int32Array;
  #queuePrev: Int32Array;
  #queueHead = -1;
  #queueTail = -1;
  /** Slots forgotten since the last probe start; their directory references go back then. */
  #unreleased: number[] = [];
  #probe: Probe | undefined;
  /** Confirmation probes in flight, by seq (at most LIMITS.swimConfirmProbesMax). */
  readonly #confirms = new Map<number, Probe>();
  readonly #relays = new Map<number, Relay>();
  #seq = 0;
  /** Lifeguard's local health score from missed acks, nacks and refutations: 0..awarenessMax−1. */
  #health = 0;
  /** Score added while the node's own event loop is slow (the node sets it). */
  #loopDelayPenalty = 0;
  /** Smoothed round-trip time of direct probes and its variation, in ticks. */
  #srtt = 0;
  #rttvar = 0;
  #rttSamples = 0;
  #left = false;
  readonly #probeTimer: Timeout;
  readonly #gossipTimer: Timeout;
  readonly #pushPullTimer: Timeout;
  #now = 0;
  readonly #out = new Outbox<Outbound, SwimEvent>();
  /**
   * Accusations about this node it could not refute (its incarnation is at the end of its space);
   * claims refused: no valid signature of their maker (`claimsRefused`), or a leave said by someone
   * other than the member (`leavesForged`).
   */
  readonly stats = { incarnationExhausted: 0, claimsRefused: 0, leavesForged: 0 };

  constructor(self: MemberEntry, rng: Rng, crypto: SwimCrypto, config: SwimConfig, options: SwimOptions = {}) {
    assert(crypto.idOf(self.pub) === self.id, "Swim: self id must derive from the public key");
    assert(config.probeTicks > 0 && config.probeTimeoutTicks > 0, "Swim: probe periods must be positive");
    assert(config.probeTimeoutTicks < config.probeTicks, "Swim: probe timeout must be shorter than the probe period");
    assert(config.probeTimeoutMinTicks >= 1 && config.probeTimeoutMinTicks <= config.probeTimeoutTicks, "Swim: probeTimeoutMinTicks out of bounds");
    assert(config.indirectChecks >= 0 && config.indirectChecks <= LIMITS.swimIndirectChecksMax, "Swim: indirectChecks out of bounds");
    assert(config.gossipNodes >= 1 && config.gossipNodes <= LIMITS.swimGossipNodesMax, "Swim: gossipNodes out of bounds");
    assert(config.suspicionMult >= 1 && config.suspicionMaxTimeoutMult >= 1, "Swim: suspicion multipliers must be ≥ 1");
    assert(config.tombstoneTicks > 0 && config.retransmitMult > 0, "Swim: tombstoneTicks and retransmitMult must be positive");
    this.#self = self;
    this.#selfAliveBytes = aliveBytesOf(self.addr, self.name);
    this.#rng = rng;
    this.#crypto = crypto;
    this.#config = config;
    const dir = options.directory ?? new SwimDirectory();
    this.#dir = dir;
    const selfSlot = dir.add(self);
    assert(selfSlot !== undefined, "Swim: the member directory is full");
    dir.retain(selfSlot);
    this.#selfSlot = selfSlot;
    const slots = Math.max(TABLE_SLOTS_MIN, dir.slots, options.tableSlots ?? 0);
    this.#state = new Uint8Array(slots);
    this.#incarnation = new Uint32Array(slots);
    this.#epoch = new Float64Array(slots);
    this.#stateTick = new Float64Array(slots);
    this.#listAt = new Int32Array(slots);
    this.#list = new Uint32Array(slots);
    this.#queueNext = new Int32Array(slots).fill(NOT_QUEUED);
    this.#queuePrev = new Int32Array(slots).fill(NOT_QUEUED);
    if (options.knowAll === true) {
      assert(dir.size <= LIMITS.membersMax, "Swim: directory larger than LIMITS.membersMax");
      for (let slot = 0; slot < dir.slots; slot++) {
        if (slot === selfSlot || dir.ids[slot] === "") continue;
        dir.retain(slot);
        this.#state[slot] = ALIVE;
        this.#incarnation[slot] = dir.incarnations[slot] as number;
        this.#epoch[slot] = dir.epochs[slot] as number;
        this.#sig[slot] = dir.sigs[slot] as Uint8Array;
        this.#listAt[slot] = this.#listLength;
        this.#list[this.#listLength++] = slot;
        this.#known++;
        this.#live++;
      }
      // A random probe order, so that cores that start alike do not probe in lockstep.
      const order = this.#list.slice(0, this.#listLength);
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        const tmp = order[i] as number;
        order[i] = order[j] as number;
        order[j] = tmp;
      }
      for (const slot of order) this.#queuePush(slot);
    }
    this.#probeTimer = new Timeout("swim-probe", config.probeTicks);
    this.#gossipTimer = new Timeout("swim-gossip", config.gossipTicks);
    this.#pushPullTimer = new Timeout("swim-push-pull", config.pushPullTicks);
    // Spread the first rounds so that nodes started together do not probe in lockstep.
    this.#probeTimer.backoff(rng, config.probeTicks);
    this.#gossipTimer.backoff(rng, config.gossipTicks);
    // The first push-pull falls anywhere in one push-pull period (pushPullTicks for a core that
    // starts alone; scaled with n for one that starts knowing many, as memberlist staggers it).
    this.#pushPullTimer.backoff(rng, this.#pushPullPeriod());
    this.#addNews(selfSlot);
  }

  get self(): MemberEntry {
    return this.#self;
  }

  get incarnation(): number {
    return this.#self.incarnation;
  }

  /** Members believed alive or suspect, this node included. */
  get size(): number {
    return this.#live + 1;
  }

  get left(): boolean {
    return this.#left;
  }

  /** Lifeguard's local health multiplier minus one: 0 (healthy) .. awarenessMax − 1. */
  get localHealth(): number {
    return Math.min(LIMITS.swimAwarenessMax - 1, this.#health + this.#loopDelayPenalty);
  }

  /** The current probe period, scaled by local health. */
  get probePeriodTicks(): number {
    return this.#config.probeTicks * (this.localHealth + 1);
  }

  /** The current direct-probe timeout, scaled by local health. */
  /** The current direct-probe timeout: adaptive to the measured RTT, scaled by local health. */
  get probeTimeoutTicks(): number {
    return this.#baseTimeout() * (this.localHealth + 1);
  }

  #baseTimeout(): number {
    const { probeTimeoutTicks: max, probeTimeoutMinTicks: min } = this.#config;
    if (min >= max || this.#rttSamples === 0) return max;
    return Math.min(max, Math.max(min, Math.ceil(this.#srtt + 4 * this.#rttvar) + 1));
  }

  /** A direct ack after `rtt` ticks (RFC 6298's estimator, α = 1/8, β = 1/4). */
  #rttSample(rtt: number): void {
    if (this.#rttSamples === 0) {
      this.#srtt = rtt;
      this.#rttvar = rtt / 2;
    } else {
      this.#rttvar += (Math.abs(this.#srtt - rtt) - this.#rttvar) / 4;
      this.#srtt += (rtt - this.#srtt) / 8;
    }
    this.#rttSamples++;
  }

  /** What is known about member `id` (a fresh view object; self is not a member). */
  member(id: string): SwimMember | undefined {
    const slot = this.#knownSlot(id);
    if (slot === undefined) return undefined;
    return this.#view(slot);
  }

  /** The slot of a member this core knows (self excluded), or undefined. */
  #knownSlot(id: string): number | undefined {
    const slot = this.#dir.slotOf(id);
    return slot === undefined || slot === this.#selfSlot || slot >= this.#state.length || this.#state[slot] === UNKNOWN ? undefined : slot;
  }

  /** Ids of the live (alive or suspect) members, self excluded; no view objects. */
  liveIds(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.#listLength; i++) {
      const slot = this.#list[i] as number;
      if (isLive(this.#state[slot] as number)) out.push(this.#dir.ids[slot] as string);
    }
    return out;
  }

  /** Ids of the members held dead (not left), without building views. */
  deadIds(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.#listLength; i++) {
      const slot = this.#list[i] as number;
      if (this.#state[slot] === DEAD) out.push(this.#dir.ids[slot] as string);
    }
    return out;
  }

  /** The member's state, without building a view; undefined when unknown. */
  stateOf(id: string): SwimState | undefined {
    const slot = this.#knownSlot(id);
    if (slot === undefined) return undefined;
    return CODE_STATES[this.#state[slot] as number];
  }

  /** Where the member is reached, without building a view; undefined when unknown. */
  addressOf(id: string): string | undefined {
    const slot = this.#knownSlot(id);
    if (slot === undefined) return undefined;
    return this.#addr(slot);
  }

  /**
   * The member SWIM reaches at `addr` (the live one if several entries name it), for the node's
   * seal: packets are sealed for a member, and SWIM sends to addresses. Built on first use and
   * kept up to date from then on.
   */
  idAt(addr: string): string | undefined {
    if (this.#byAddr === undefined) {
      this.#byAddr = new Map();
      for (let i = 0; i < this.#listLength; i++) this.#indexAddr(this.#list[i] as number);
    }
    const slot = this.#byAddr.get(addr);
    return slot === undefined ? undefined : this.#dir.ids[slot];
  }

  /** A member's public key, without building a view; undefined when unknown. */
  keyOf(id: string): Uint8Array | undefined {
    const slot = this.#knownSlot(id);
    if (slot === undefined) return undefined;
    if (this.#identities.size > 0) {
      const identity = this.#identities.get(slot);
      if (identity !== undefined) return identity.pub;
    }
    return this.#dir.pubs[slot];
  }

  /** The boot epoch in a member's current entry; undefined when unknown. */
  epochOf(id: string): number | undefined {
    const slot = this.#knownSlot(id);
    if (slot === undefined) return undefined;
    return this.#epoch[slot];
  }

  #indexAddr(slot: number): void {
    const index = this.#byAddr;
    if (index === undefined) return;
    const addr = this.#addr(slot);
    const holder = index.get(addr);
    // A live member wins an address over a dead one (a restarted process with a new key).
    if (holder === undefined || holder === slot || !isLive(this.#state[holder] as number) || isLive(this.#state[slot] as number)) index.set(addr, slot);
  }

  #unindexAddr(slot: number, addr: string): void {
    if (this.#byAddr !== undefined && this.#byAddr.get(addr) === slot) this.#byAddr.delete(addr);
  }

  /** Every known member, tombstones included (fresh view objects). */
  *members(): IterableIterator<SwimMember> {
    for (let i = 0; i < this.#listLength; i++) yield this.#view(this.#list[i] as number);
  }

  /** Raises local health by `penalty` (0..awarenessMax − 1) while the node's event loop stalls. */
  setLoopDelayPenalty(penalty: number): void {
    assert(Number.isInteger(penalty) && penalty >= 0, "Swim: loop delay penalty must be a non-negative integer");
    this.#loopDelayPenalty = Math.min(LIMITS.swimAwarenessMax - 1, penalty);
  }

  /** Adds a member admitted elsewhere (the join handshake, the store): news alive{incarnation}. */
  add(entry: MemberEntry): void {
    this.#apply(ALIVE, entry.id, entry.incarnation, entry.id, entryToWire(entry), undefined);
  }

  /** Graceful leave: tells the others left{incarnation}, stops probing and answering probes. */
  leave(): void {
    if (this.#left) return;
    this.#left = true;
    this.#selfCode = LEFT;
    this.#leaveSig = this.#crypto.signClaim({ leave: true, id: this.#self.id, incarnation: this.#self.incarnation, from: this.#self.id });
    this.#probe = undefined;
    this.#probeTimer.stop();
    this.#pushPullTimer.stop();
    this.#addNews(this.#selfSlot);
    this.#out.emit({ type: "member-left", id: this.#self.id, incarnation: this.#self.incarnation });
  }

  /**
   * Evidence that member `id` is up: an authenticated packet from it, of any layer (the node calls
   * this for every packet; step() for SWIM's own). It moves to the back of the probe queue, so
   * that probes go first to the members nothing has been heard from.
   */
  heard(id: string): void {
    const slot = this.#dir.slotOf(id);
    if (slot !== undefined && slot < this.#queueNext.length) this.#queueTouch(slot);
  }

  /** A message from an authenticated sender; anything but SWIM's own is ignored. */
  step(from: string, message: Message): void {
    if (!isSwimMessage(message)) return;
    this.heard(from);
    switch (message.t) {
      case "swim-ping": return this.#onPing(message.updates, message.seq, message.target, message.addr);
      case "swim-ping-req": return this.#onPingReq(message);
      case "swim-ack": return this.#onAck(message.updates, message.seq);
      case "swim-nack": return this.#onNack(message.updates, message.seq);
      case "swim-gossip": return this.#merge(message.updates, false);
      case "swim-sync": return this.#onSync(from, message.reply, message.states);
      default:
        return assertNever(message, "Swim: unhandled message");
    }
  }

  tick(): void {
    this.#now++;
    this.#probeTimer.tick();
    this.#gossipTimer.tick();
    this.#pushPullTimer.tick();
    const probe = this.#probe;
    if (probe !== undefined && !probe.acked && !probe.indirect && this.#now - probe.startTick >= probe.timeoutTicks) {
      this.#probeIndirect(probe);
    }
    if (this.#probeTimer.fired()) {
      this.#probeEnd();
      this.#probeStart();
    }
    if (this.#confirms.size > 0) this.#confirmTick();
    if (this.#gossipTimer.fired()) {
      this.#gossipTimer.reset();
      this.#gossip();
    }
    if (this.#pushPullTimer.fired()) {
      this.#pushPullTimer.setAfter(this.#pushPullPeriod());
      this.#pushPull();
    }
    if (this.#suspects.length > 0) this.#suspicionExpire();
    if (this.#relays.size > 0) this.#relayExpire();
    if ((this.#now & 63) === 0) this.#tombstoneExpire();
  }

  ready(): SwimReady {
    return this.#out.take();
  }

  hasReady(): boolean {
    return this.#out.hasReady();
  }

  // ---- Tables ------------------------------------------------------------------------------------

  #view(slot: number): SwimMember {
    const dir = this.#dir;
    const identity = this.#identities.size > 0 ? this.#identities.get(slot) : undefined;
    const entry: MemberEntry = {
      id: dir.ids[slot] as string,
      pub: identity?.pub ?? dir.pubs[slot] as Uint8Array,
      addr: identity?.addr ?? dir.addrs[slot] as string,
      role: identity?.role ?? dir.roles[slot] as Role,
      name: identity?.name ?? dir.names[slot] as string,
      incarnation: this.#incarnation[slot] as number,
      epoch: this.#epoch[slot] as number,
      cert: identity?.cert ?? dir.certs[slot] as Uint8Array,
      sig: this.#sig[slot] ?? EMPTY_KEY,
    };
    return { entry, state: CODE_STATES[this.#state[slot] as number] as SwimState, stateTick: this.#stateTick[slot] as number };
  }

  #addr(slot: number): string {
    if (this.#identities.size > 0) {
      const identity = this.#identities.get(slot);
      if (identity !== undefined) return identity.addr;
    }
    return this.#dir.addrs[slot] as string;
  }

  /** Bound of the MessagePack size of the update that describes `slot` now. */
  #updateBytes(slot: number): number {
    if (slot === this.#selfSlot) return this.#selfCode === ALIVE ? this.#selfAliveBytes : STATE_UPDATE_BYTES_MAX;
    if (this.#state[slot] !== ALIVE) return STATE_UPDATE_BYTES_MAX;
    if (this.#identities.size > 0) {
      const identity = this.#identities.get(slot);
      if (identity !== undefined) return identity.aliveBytes;
    }
    return this.#dir.aliveBytes[slot] as number;
  }

  /** The update that describes `slot` now (self included). */
  #wire(slot: number): SwimUpdateWire {
    if (slot === this.#selfSlot) {
      const self = this.#self;
      return this.#selfCode === ALIVE ? [0, entryToWire(self)] : [3, self.id, self.incarnation, self.id, this.#leaveSig];
    }
    const dir = this.#dir;
    const id = dir.ids[slot] as string;
    const code = this.#state[slot] as number;
    const incarnation = this.#incarnation[slot] as number;
    if (code !== ALIVE) {
      const claim = this.#claims.get(slot);
      return claim === undefined ? [(code - 1) as 1 | 2 | 3, id, incarnation, id, EMPTY_SIG] : [(code - 1) as 1 | 2 | 3, id, claim.incarnation, claim.from, claim.sig];
    }
    const identity = this.#identities.size > 0 ? this.#identities.get(slot) : undefined;
    const epoch = this.#epoch[slot] as number;
    const sig = this.#sig[slot] as Uint8Array;
    if (identity !== undefined) return [0, [id, identity.pub, identity.addr, identity.role, identity.name, incarnation, epoch, identity.cert, sig]];
    return [0, [id, dir.pubs[slot] as Uint8Array, dir.addrs[slot] as string, dir.roles[slot] as Role, dir.names[slot] as string, incarnation, epoch, dir.certs[slot] as Uint8Array, sig]];
  }

  /** Records the identity alive news carried, apart from the directory's copy only where it differs. */
  #setIdentity(slot: number, entry: MemberEntryWire): void {
    const dir = this.#dir;
    if (this.#byAddr !== undefined) {
      const before = this.#addr(slot);
      if (before !== entry[2]) this.#unindexAddr(slot, before);
    }
    this.#epoch[slot] = entry[6];
    // The directory's copy when it is the same signature (a member first seen here, mostly).
    const dirSig = dir.sigs[slot] as Uint8Array;
    this.#sig[slot] = bytesEqual(entry[8], dirSig) ? dirSig : entry[8].slice();
    const samePub = bytesEqual(entry[1], dir.pubs[slot] as Uint8Array);
    const sameCert = bytesEqual(entry[7], dir.certs[slot] as Uint8Array);
    if (samePub && sameCert && entry[2] === dir.addrs[slot] && entry[3] === dir.roles[slot] && entry[4] === dir.names[slot]) {
      if (this.#identities.size > 0) this.#identities.delete(slot);
      this.#indexAddr(slot);
      return;
    }
    this.#identities.set(slot, {
      pub: samePub ? dir.pubs[slot] as Uint8Array : entry[1].slice(), addr: entry[2], role: entry[3], name: entry[4],
      cert: sameCert ? dir.certs[slot] as Uint8Array : entry[7].slice(),
      aliveBytes: aliveBytesOf(entry[2], entry[4]),
    });
    this.#indexAddr(slot);
  }

  /** Makes room in the tables for `slot`. */
  #reserve(slot: number): void {
    const length = this.#state.length;
    if (slot < length) return;
    const slots = Math.max(slot + 1, this.#dir.slots, 2 * length);
    this.#state = grow(new Uint8Array(slots), this.#state);
    this.#incarnation = grow(new Uint32Array(slots), this.#incarnation);
    this.#epoch = grow(new Float64Array(slots), this.#epoch);
    this.#stateTick = grow(new Float64Array(slots), this.#stateTick);
    this.#listAt = grow(new Int32Array(slots), this.#listAt);
    this.#list = grow(new Uint32Array(slots), this.#list);
    this.#queueNext = grow(new Int32Array(slots).fill(NOT_QUEUED), this.#queueNext);
    this.#queuePrev = grow(new Int32Array(slots).fill(NOT_QUEUED), this.#queuePrev);
  }

  /** Forgets a tombstone: its slot goes back to the directory at the next probe round. */
  #forget(slot: number): void {
    this.#state[slot] = UNKNOWN;
    this.#incarnation[slot] = 0;
    this.#epoch[slot] = 0;
    this.#sig[slot] = EMPTY_KEY;
    this.#stateTick[slot] = 0;
    this.#claims.delete(slot);
    this.#unindexAddr(slot, this.#addr(slot));
    if (this.#identities.size > 0) this.#identities.delete(slot);
    this.#newsRemove(slot);
    // Swap-remove from the member list.
    const at = this.#listAt[slot] as number;
    const last = this.#list[--this.#listLength] as number;
    this.#list[at] = last;
    this.#listAt[last] = at;
    this.#known--;
    this.#unreleased.push(slot);
  }

  // ---- Probing ----------------------------------------------------------------------------------

  #probeStart(): void {
    this.#probeTimer.setAfter(this.probePeriodTicks);
    if (this.#left) return;
    const slot = this.#probeNext();
    if (slot < 0) return;
    const seq = this.#nextSeq();
    const id = this.#dir.ids[slot] as string;
    this.#probe = {
      slot, id, seq, startTick: this.#now, timeoutTicks: this.probeTimeoutTicks,
      acked: false, indirect: false, expectedNacks: 0, nacks: 0,
    };
    const addr = this.#self.addr;
    const fixed = FIXED_BYTES_MAX + stringBytes(addr);
    // Buddy system: a suspect learns of its suspicion from the probe itself and can refute at once.
    const updates = this.#piggyback(fixed, this.#state[slot] === SUSPECT ? slot : -1);
    this.#send(this.#addr(slot), { t: "swim-ping", seq, target: id, addr, updates });
  }

  /**
   * The member to probe now: the head of the probe queue, which moves to the tail (−1 if none).
   * The slots forgotten since the last probe go back to the directory here.
   */
  #probeNext(): number {
    if (this.#unreleased.length > 0) {
      for (const slot of this.#unreleased) this.#dir.release(slot);
      this.#unreleased = [];
    }
    const slot = this.#queueHead;
    if (slot < 0) return -1;
    assert(isLive(this.#state[slot] as number), "Swim: the probe queue holds live members only");
    this.#queueTouch(slot);
    return slot;
  }

  /** Appends a member that became live to the probe queue. */
  #queuePush(slot: number): void {
    if (this.#queueNext[slot] !== NOT_QUEUED) return;
    this.#queuePrev[slot] = this.#queueTail;
    this.#queueNext[slot] = -1;
    if (this.#queueTail >= 0) this.#queueNext[this.#queueTail] = slot;
    else this.#queueHead = slot;
    this.#queueTail = slot;
  }

  /** Takes a member that stopped being live out of the probe queue. */
  #queueRemove(slot: number): void {
    const next = this.#queueNext[slot] as number;
    if (next === NOT_QUEUED) return;
    const prev = this.#queuePrev[slot] as number;
    if (prev >= 0) this.#queueNext[prev] = next;
    else this.#queueHead = next;
    if (next >= 0) this.#queuePrev[next] = prev;
    else this.#queueTail = prev;
    this.#queueNext[slot] = NOT_QUEUED;
    this.#queuePrev[slot] = NOT_QUEUED;
  }

  /** A live member was probed or heard from: to the tail of the probe queue. */
  #queueTouch(slot: number): void {
    if (this.#queueTail === slot || this.#queueNext[slot] === NOT_QUEUED) return;
    this.#queueRemove(slot);
    this.#queuePush(slot);
  }

  #probeIndirect(probe: Probe): void {
    probe.indirect = true;
    const helpers = this.#randomLive(this.#config.indirectChecks, probe.slot);
    const addr = this.#self.addr;
    const targetAddr = this.#addr(probe.slot);
    const fixed = FIXED_BYTES_MAX + stringBytes(addr) + stringBytes(targetAddr);
    for (const helper of helpers) {
      const updates = this.#piggyback(fixed, -1);
      this.#send(this.#addr(helper), { t: "swim-ping-req", seq: probe.seq, target: probe.id, targetAddr, addr, updates });
    }
    probe.expectedNacks = helpers.length;
  }

  /** The period is over: an acked probe improves local health, a silent target becomes suspect. */
  #probeEnd(): void {
    const probe = this.#probe;
    if (probe === undefined) return;
    this.#probe = undefined;
    if (probe.acked) {
      this.#healthAdd(-1);
      return;
    }
    // Lifeguard: missing nacks mean this node is the slow one; all nacks in means the target is.
    this.#healthAdd(probe.expectedNacks > 0 ? probe.expectedNacks - probe.nacks : 1);
    const slot = probe.slot;
    if (this.#dir.ids[slot] !== probe.id || !isLive(this.#state[slot] as number)) return;
    this.#apply(SUSPECT, probe.id, this.#incarnation[slot] as number, this.#self.id, undefined, this.#ownClaim(slot));
  }

  #onPing(updates: readonly SwimUpdateWire[], seq: number, target: string, addr: string): void {
    this.#merge(updates, false);
    // A ping meant for a previous owner of this address, or arriving after leave, goes unanswered.
    if (target !== this.#self.id || this.#left) return;
    this.#send(addr, { t: "swim-ack", seq, updates: this.#piggyback(FIXED_BYTES_MAX, -1) });
  }

  #onPingReq(message: Extract<Message, { t: "swim-ping-req" }>): void {
    this.#merge(message.updates, false);
    if (this.#left || message.target === this.#self.id || this.#relays.size >= LIMITS.swimRelaysMax) return;
    const seq = this.#nextSeq();
    this.#relays.set(seq, { originAddr: message.addr, originSeq: message.seq, startTick: this.#now });
    const addr = this.#self.addr;
    const updates = this.#piggyback(FIXED_BYTES_MAX + stringBytes(addr), -1);
    this.#send(message.targetAddr, { t: "swim-ping", seq, target: message.target, addr, updates });
  }

  #onAck(updates: readonly SwimUpdateWire[], seq: number): void {
    this.#merge(updates, false);
    const probe = this.#probe?.seq === seq ? this.#probe : this.#confirms.get(seq);
    if (probe !== undefined) {
      // Only an answer before the helpers were asked is a clean round trip to the target.
      if (!probe.acked && !probe.indirect) this.#rttSample(this.#now - probe.startTick);
      probe.acked = true;
      return;
    }
    const relay = this.#relays.get(seq);
    if (relay === undefined) return;
    this.#relays.delete(seq);
    this.#send(relay.originAddr, { t: "swim-ack", seq: relay.originSeq, updates: this.#piggyback(FIXED_BYTES_MAX, -1) });
  }

  #onNack(updates: readonly SwimUpdateWire[], seq: number): void {
    this.#merge(updates, false);
    const confirm = this.#confirms.get(seq);
    const probe = confirm ?? (this.#probe?.seq === seq ? this.#probe : undefined);
    if (probe === undefined || probe.acked || probe.nacks >= probe.expectedNacks) return;
    probe.nacks++;
    // Every helper is reachable and none reached the target: conclusive, so suspect now rather than
    // at the end of the period (an ack arriving later is ignored; the target can refute).
    if (probe.nacks === probe.expectedNacks) {
      if (confirm !== undefined) this.#confirmEnd(confirm);
      else this.#probeEnd();
    }
  }

  /**
   * A new suspicion heard from another member: probe the suspect now, out of turn. Each member does
   * so with probability 2K/(n − 2), so that about 2K members check, whatever the cluster's size.
   */
  #confirmStart(slot: number, always = false): boolean {
    if (!this.#config.confirmProbes || this.#left || this.#confirms.size >= LIMITS.swimConfirmProbesMax) return false;
    const checkers = this.size - 2;
    const wanted = 2 * this.#config.suspicionConfirmations;
    if (!always && checkers > wanted && this.#rng.int(checkers) >= wanted) return false;
    if (this.#probe?.slot === slot) return false;
    for (const probe of this.#confirms.values()) if (probe.slot === slot) return false;
    const seq = this.#nextSeq();
    const id = this.#dir.ids[slot] as string;
    const probe: Probe = {
      slot, id, seq, startTick: this.#now, timeoutTicks: this.probeTimeoutTicks, acked: false, indirect: false, expectedNacks: 0, nacks: 0,
    };
    this.#confirms.set(seq, probe);
    const addr = this.#self.addr;
    this.#send(this.#addr(slot), { t: "swim-ping", seq, target: id, addr, updates: this.#piggyback(FIXED_BYTES_MAX + stringBytes(addr), slot) });
    return true;
  }

  #confirmTick(): void {
    const period = this.probePeriodTicks;
    for (const probe of [...this.#confirms.values()]) {
      const elapsed = this.#now - probe.startTick;
      if (!probe.acked && !probe.indirect && elapsed >= probe.timeoutTicks) this.#probeIndirect(probe);
      if (probe.acked || elapsed >= period) this.#confirmEnd(probe);
    }
  }

  /** A confirmation probe is over: unanswered, this node confirms the suspicion as its own. */
  #confirmEnd(probe: Probe): void {
    this.#confirms.delete(probe.seq);
    const slot = probe.slot;
    if (probe.acked) {
      // The suspect answered its last-chance probe: it is alive, whatever we missed. Give its
      // refutation time to arrive before judging again.
      const suspicion = this.#suspicions.get(slot);
      if (suspicion?.lastChance === true && suspicion.index >= 0 && this.#dir.ids[slot] === probe.id) {
        suspicion.lastChance = false;
        suspicion.deadline = this.#now + suspicion.minTicks;
        heapRemove(this.#suspects, suspicion, suspectBefore);
        heapPush(this.#suspects, suspicion, suspectBefore);
      }
      return;
    }
    if (this.#dir.ids[slot] !== probe.id || this.#state[slot] !== SUSPECT) return;
    this.#apply(SUSPECT, probe.id, this.#incarnation[slot] as number, this.#self.id, undefined, this.#ownClaim(slot));
    const suspicion = this.#suspicions.get(slot);
    if (suspicion?.lastChance === true && suspicion.index >= 0) {
      // The last probe failed: the death is due at the timeout proper, or now if that has passed.
      suspicion.deadline = Math.max(this.#now, suspicion.declareAt);
      heapRemove(this.#suspects, suspicion, suspectBefore);
      heapPush(this.#suspects, suspicion, suspectBefore);
    }
  }

  /**
   * A helper that heard nothing from the target sends a nack at 4/5 of its probe timeout, so that
   * the nack reaches the prober before the prober's period (probe timeout + the same again) ends.
   */
  #relayExpire(): void {
    const nackTicks = Math.max(1, Math.floor((this.#baseTimeout() * 4) / 5));
    for (const [seq, relay] of this.#relays) {
      if (this.#now - relay.startTick < nackTicks) continue;
      this.#relays.delete(seq);
      this.#send(relay.originAddr, { t: "swim-nack", seq: relay.originSeq, updates: this.#piggyback(FIXED_BYTES_MAX, -1) });
    }
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  #healthAdd(delta: number): void {
    this.#health = Math.max(0, Math.min(LIMITS.swimAwarenessMax - 1, this.#health + delta));
  }

  // ---- Dissemination ----------------------------------------------------------------------------

  #gossip(): void {
    if (this.#news.size === 0) return;
    const targets = this.#randomLive(this.#config.gossipNodes, -1, this.#config.gossipToTheDeadTicks);
    for (const target of targets) {
      const updates = this.#piggyback(FIXED_BYTES_MAX, -1);
      if (updates.length === 0) return;
      this.#send(this.#addr(target), { t: "swim-gossip", updates });
    }
  }

  /**
   * Takes news for one datagram: fewest sends first, then newest (memberlist's TransmitLimitedQueue),
   * within the byte budget left after `fixedBytes`; slot `first` (the buddy; −1 for none) goes ahead
   * of everything. Costs O(k log m) for k updates out of m: only what is looked at is popped, and
   * after LIMITS.swimAliveSkipsMax alive updates too large for the rest of the budget, alive news is not
   * looked at.
   */
  #piggyback(fixedBytes: number, first: number): SwimUpdateWire[] {
    // Hostile-but-valid addresses (260 three-byte characters, twice) can leave no room at all.
    let budget = Math.max(0, LIMITS.datagramBytesMax - ENVELOPE_BYTES - fixedBytes);
    const out: SwimUpdateWire[] = [];
    if (first >= 0 && this.#updateBytes(first) <= budget) {
      out.push(this.#wire(first));
      budget -= this.#updateBytes(first);
    }
    if (this.#news.size === 0) return out;
    const limit = this.#retransmitLimit();
    const alive = this.#newsAliveHeap;
    const states = this.#newsStateHeap;
    // News popped this time, pushed back at the end (each goes out at most once per datagram).
    const back: News[] = [];
    let aliveSkips = 0;
    // Walks both heaps in queue order, as a sort of the union would, popping only what it looks at.
    while (out.length < LIMITS.swimUpdatesMax && budget >= STATE_UPDATE_BYTES_MAX) {
      const a = aliveSkips < LIMITS.swimAliveSkipsMax ? alive[0] : undefined;
      const b = states[0];
      let news: News;
      if (a !== undefined && (b === undefined || newsBefore(a, b))) news = heapPop(alive, newsBefore);
      else if (b !== undefined) news = heapPop(states, newsBefore);
      else break;
      if (news.slot === first) {
        back.push(news);
        continue;
      }
      const size = this.#updateBytes(news.slot);
      if (size > budget) {
        // Only alive news can be too large here (budget ≥ a fixed-size update).
        aliveSkips++;
        back.push(news);
        continue;
      }
      budget -= size;
      out.push(this.#wire(news.slot));
      if (++news.sent < limit) back.push(news);
      else this.#news.delete(news.slot);
    }
    for (const news of back) this.#newsPush(news);
    assert(budget >= 0, "Swim: piggyback exceeded the datagram budget");
    return out;
  }

  /** `slot` has news (again): it goes out first, λ·⌈log10(n+1)⌉ times. */
  #addNews(slot: number): void {
    let news = this.#news.get(slot);
    if (news === undefined) {
      news = { slot, sent: 0, seq: 0, alive: true, index: -1 };
      this.#news.set(slot, news);
    } else if (news.index >= 0) {
      heapRemove(news.alive ? this.#newsAliveHeap : this.#newsStateHeap, news, newsBefore);
    }
    news.sent = 0;
    news.seq = ++this.#newsSeq;
    this.#newsPush(news);
  }

  #newsPush(news: News): void {
    news.alive = news.slot === this.#selfSlot ? this.#selfCode === ALIVE : this.#state[news.slot] === ALIVE;
    heapPush(news.alive ? this.#newsAliveHeap : this.#newsStateHeap, news, newsBefore);
  }

  #newsRemove(slot: number): void {
    const news = this.#news.get(slot);
    if (news === undefined) return;
    if (news.index >= 0) heapRemove(news.alive ? this.#newsAliveHeap : this.#newsStateHeap, news, newsBefore);
    this.#news.delete(slot);
  }

  #retransmitLimit(): number {
    return this.#config.retransmitMult * Math.ceil(Math.log10(this.size + 1));
  }

  // ---- Push-pull ---------------------------------------------------------------------------------

  #pushPull(): void {
    const [target] = this.#randomLive(1, -1);
    if (target === undefined) return;
    this.#send(this.#addr(target), { t: "swim-sync", reply: true, states: this.table() }, "stream");
  }

  #onSync(from: string, reply: boolean, states: readonly SwimUpdateWire[]): void {
    this.#merge(states, true);
    const peer = this.#dir.slotOf(from);
    if (reply && peer !== undefined && peer < this.#state.length && this.#state[peer] !== UNKNOWN && !this.#left) {
      this.#send(this.#addr(peer), { t: "swim-sync", reply: false, states: this.table() }, "stream");
    }
  }

  /** The whole table as push-pull states, this node first (a join's welcome carries it). */
  table(): SwimUpdateWire[] {
    const out: SwimUpdateWire[] = [this.#wire(this.#selfSlot)];
    for (let i = 0; i < this.#listLength; i++) out.push(this.#wire(this.#list[i] as number));
    return out;
  }

  #pushPullPeriod(): number {
    const n = this.size;
    const scale = n <= 32 ? 1 : 1 + Math.log2(n / 32);
    return Math.ceil(this.#config.pushPullTicks * scale);
  }

  // ---- State changes -----------------------------------------------------------------------------

  /**
   * Applies updates from a datagram, or from a push-pull (`sync`). A push-pull's "dead" is taken as
   * a suspicion (memberlist's mergeState): a whole-table copy may be old, and a suspicion gives the
   * member time to refute. A claim carries its maker's signature, checked in #apply.
   */
  #merge(updates: readonly SwimUpdateWire[], sync: boolean): void {
    for (const wire of updates) {
      if (wire[0] === 0) {
        const entry = wire[1];
        this.#apply(ALIVE, entry[0], entry[5], entry[0], entry, undefined);
      } else {
        const code = sync && wire[0] === 2 ? SUSPECT : (wire[0] + 1) as Code;
        this.#apply(code, wire[1], wire[2], wire[3], undefined, { from: wire[3], incarnation: wire[2], sig: wire[4] }, false);
      }
    }
  }

  /** This node's own accusation of the member at `slot`, at the incarnation held. */
  #ownClaim(slot: number): HeldClaim {
    const id = this.#dir.ids[slot] as string;
    const incarnation = this.#incarnation[slot] as number;
    const from = this.#self.id;
    return { from, incarnation, sig: this.#crypto.signClaim({ leave: false, id, incarnation, from }) };
  }

  /**
   * The state a claim may put its subject in, or undefined when it is not believed (counted): only
   * the member itself says it left; an accusation needs its maker's valid signature, and only a
   * core member's makes the subject dead (another's is a suspicion, which the subject refutes).
   * `code` is what the update says; the signature is checked later, only if it would change state.
   */
  #claimCode(code: Code, id: string, claim: HeldClaim): Code | undefined {
    if (code === LEFT) {
      if (claim.from !== id) {
        this.stats.leavesForged++;
        return undefined;
      }
      return LEFT;
    }
    if (code !== DEAD || claim.from === this.#self.id) return code;
    const maker = this.#knownSlot(claim.from);
    const role = maker === undefined ? undefined : (this.#identities.size > 0 ? this.#identities.get(maker)?.role : undefined) ?? this.#dir.roles[maker];
    return role === "core" ? DEAD : SUSPECT;
  }

  /** Whether the claim carries its maker's signature (its maker known to this node). */
  #claimSigned(code: Code, id: string, claim: HeldClaim): boolean {
    const key = claim.from === this.#self.id ? this.#self.pub : this.keyOf(claim.from);
    const ok = key !== undefined && claim.sig.length === EMPTY_SIG.length
      && this.#crypto.checkClaim({ leave: code === LEFT, id, incarnation: claim.incarnation, from: claim.from }, key, claim.sig);
    if (!ok) this.stats.claimsRefused++;
    return ok;
  }

  /**
   * One update: state `code` at `incarnation` for member `id`, said by `from`; alive news carries
   * the entry, any other news the signed claim (`signed`: made by this node just now, not checked).
   */
  #apply(code: Code, id: string, incarnation: number, from: string, entry: MemberEntryWire | undefined, claim: HeldClaim | undefined, signed = true): void {
    if (claim !== undefined) {
      const believed = this.#claimCode(code, id, claim);
      if (believed === undefined) return;
      code = believed;
    }
    if (id === this.#self.id) return this.#applySelf(code, incarnation, entry, claim, signed);
    const slot = this.#dir.slotOf(id);
    if (slot === undefined || slot >= this.#state.length || this.#state[slot] === UNKNOWN) {
      return this.#applyNew(code, id, incarnation, entry);
    }
    const current = this.#state[slot] as number;
    const known = this.#incarnation[slot] as number;
    // supersedes(): (incarnation, rank) compared lexicographically.
    if (incarnation !== known ? incarnation < known : code <= current) {
      if (code === SUSPECT && current === SUSPECT && incarnation === known && claim !== undefined && this.#newAccuser(slot, from)) {
        if (signed || this.#claimSigned(code, id, claim)) this.#confirm(slot, claim);
      }
      return;
    }
    if (entry !== undefined) {
      // Believed only with the member's own signature and the owner's certificate (and the id is
      // the hash of the key: alive news cannot swap a member's key).
      if (!this.#crypto.check(entryFromWire(entry))) return;
      this.#setIdentity(slot, entry);
    } else if (incarnation > known) {
      // Nobody can accuse an incarnation of a member we have not seen it sign: the claim may be
      // about a later life we have not heard of yet, and we would relay it, signed for that
      // incarnation, against every life up to it. It is dropped; the subject's alive news comes.
      return;
    }
    if (claim !== undefined && !signed && !this.#claimSigned(code, id, claim)) return;
    this.#incarnation[slot] = incarnation;
    this.#transition(slot, code, claim);
    this.#out.emit({ type: eventOf(current, code), id, incarnation });
    if (code === SUSPECT && from !== this.#self.id) this.#confirmStart(slot);
  }

  /** Whether `from` would be a new accuser of the suspect at `slot` (a confirmation). */
  #newAccuser(slot: number, from: string): boolean {
    const suspicion = this.#suspicions.get(slot);
    return suspicion !== undefined && suspicion.accusers.size <= suspicion.k && !suspicion.accusers.has(from);
  }

  #applyNew(code: Code, id: string, incarnation: number, entry: MemberEntryWire | undefined): void {
    // Only alive news introduces a member: the others carry no address or key.
    if (entry === undefined || code !== ALIVE) return;
    if (this.#known + 1 >= LIMITS.membersMax) return;
    if (!this.#crypto.check(entryFromWire(entry))) return;
    const slot = this.#dir.intern(entry);
    if (slot === undefined) return;
    this.#dir.retain(slot);
    this.#reserve(slot);
    this.#state[slot] = ALIVE;
    this.#incarnation[slot] = incarnation;
    this.#stateTick[slot] = this.#now;
    this.#setIdentity(slot, entry);
    this.#listAt[slot] = this.#listLength;
    this.#list[this.#listLength++] = slot;
    this.#known++;
    this.#live++;
    this.#queuePush(slot);
    this.#addNews(slot);
    this.#out.emit({ type: "member-alive", id, incarnation });
  }

  /**
   * News about this node: refute any accusation at or above our incarnation. Our incarnation only
   * moves on our own signature: alive news of ours above it (a previous life, before a store was
   * lost) is believed only when it verifies, and an accusation above it is taken as one of ours
   * now (nobody saw us sign a higher one). At the end of the incarnation space we stop refuting,
   * counted, instead of failing (a peer's bytes reach here).
   */
  #applySelf(code: Code, incarnation: number, entry: MemberEntryWire | undefined, claim: HeldClaim | undefined, signed: boolean): void {
    if (this.#left) return;
    const mine = this.#self.incarnation;
    // An accusation moves our incarnation only with its maker's signature.
    const accused = code !== ALIVE && incarnation >= mine && (claim === undefined || signed || this.#claimSigned(code, this.#self.id, claim));
    // Alive news above our incarnation is from a previous life (before a restart): move past it.
    const stale = code === ALIVE && incarnation > mine && entry !== undefined && this.#crypto.check(entryFromWire(entry));
    if (accused && incarnation > mine) incarnation = mine;
    if (!accused && !stale) {
      // An accusation older than our incarnation: whoever still holds it missed our refutation.
      // Spread our alive news again (once at a time), so the ack to a buddy probe carries it.
      if (code !== ALIVE && !this.#news.has(this.#selfSlot)) this.#addNews(this.#selfSlot);
      return;
    }
    if (incarnation >= LIMITS.swimIncarnationMax) {
      this.stats.incarnationExhausted++;
      return;
    }
    const fields = { ...this.#self, incarnation: incarnation + 1 };
    this.#self = { ...fields, sig: this.#crypto.signAlive(fields) };
    this.#addNews(this.#selfSlot);
    if (accused) this.#healthAdd(1);
    this.#out.emit({ type: "member-refuted", id: this.#self.id, incarnation: this.#self.incarnation });
  }

  #transition(slot: number, code: Code, claim: HeldClaim | undefined): void {
    const wasLive = isLive(this.#state[slot] as number);
    this.#state[slot] = code;
    this.#stateTick[slot] = this.#now;
    // The signature is copied out of the packet it came in (the decoder hands out views).
    if (code !== ALIVE && claim !== undefined) this.#claims.set(slot, { ...claim, sig: claim.sig.slice() });
    else if (this.#claims.size > 0) this.#claims.delete(slot);
    if (this.#suspicions.size > 0) {
      const old = this.#suspicions.get(slot);
      if (old !== undefined) {
        if (old.index >= 0) heapRemove(this.#suspects, old, suspectBefore);
        this.#suspicions.delete(slot);
      }
    }
    if (code === SUSPECT) {
      const suspicion = this.#suspicionNew(slot, claim?.from ?? this.#self.id);
      this.#suspicions.set(slot, suspicion);
      heapPush(this.#suspects, suspicion, suspectBefore);
    }
    const live = isLive(code);
    if (wasLive !== live) {
      this.#live += wasLive ? -1 : 1;
      if (live) this.#queuePush(slot);
      else this.#queueRemove(slot);
    }
    if (!live) this.#tombstones.push({ slot, id: this.#dir.ids[slot] as string, tick: this.#now });
    this.#addNews(slot);
    assert(this.#live >= 0 && this.#live <= this.#known, "Swim: live count out of range");
  }

  // ---- Suspicion (Lifeguard) ---------------------------------------------------------------------

  #suspicionNew(slot: number, from: string): Suspicion {
    const n = this.size;
    const minTicks = Math.ceil(this.#config.suspicionMult * Math.max(1, Math.log10(n)) * this.#config.probeTicks);
    const maxTicks = this.#config.suspicionMaxTimeoutMult * minTicks;
    const wanted = Math.min(LIMITS.swimConfirmationsMax, this.#config.suspicionConfirmations);
    const k = n - 2 < wanted ? 0 : wanted;
    const deadline = this.#now + Swim.suspicionTimeout(minTicks, maxTicks, k, 0);
    return { slot, startTick: this.#now, minTicks, maxTicks, k, accusers: new Set([from]), deadline, seq: ++this.#suspicionSeq, index: -1, lastChance: false, declareAt: 0 };
  }

  /** An independent confirmation shortens the timer and is passed on (memberlist re-gossips it). */
  #confirm(slot: number, claim: HeldClaim): void {
    const suspicion = this.#suspicions.get(slot);
    assert(suspicion !== undefined, "Swim: a suspect has a suspicion timer");
    if (suspicion.accusers.size > suspicion.k || suspicion.accusers.has(claim.from)) return;
    suspicion.accusers.add(claim.from);
    // More confirmations only bring the deadline closer (during a last-chance probe, the moment
    // of the declaration; the probe keeps its own bound).
    const due = suspicion.startTick + Swim.suspicionTimeout(suspicion.minTicks, suspicion.maxTicks, suspicion.k, suspicion.accusers.size - 1);
    if (suspicion.lastChance) suspicion.declareAt = due;
    else if (suspicion.index >= 0) {
      suspicion.deadline = due;
      heapUp(this.#suspects, suspicion.index, suspectBefore);
    }
    this.#claims.set(slot, { ...claim, sig: claim.sig.slice() });
    this.#addNews(slot);
  }

  /** timeout = max(min, max − (max − min)·log(c + 1)/log(k + 1)), c = confirmations. */
  static suspicionTimeout(minTicks: number, maxTicks: number, k: number, confirmations: number): number {
    if (k < 1) return minTicks;
    const fraction = Math.log(confirmations + 1) / Math.log(k + 1);
    return Math.max(minTicks, Math.floor(maxTicks - (maxTicks - minTicks) * fraction));
  }

  #suspicionExpire(): void {
    const heap = this.#suspects;
    const expired: Suspicion[] = [];
    // Before declaring a death, one last probe of its own, which carries the suspicion (buddy
    // system): a suspect that is alive after all (it stalled, or this node missed its refutation)
    // answers with its newer incarnation; a dead one fails the probe, direct and indirect. The
    // probe starts `lead` ticks (two probe timeouts) before the timeout ends, so that a failure is
    // known when it does; the death is then declared at the timeout, or when the probe fails if
    // later, and at most a probe period after it started. Without confirmation probes
    // (memberlist's behaviour) the death is declared at the timeout.
    const lastChance = this.#config.confirmProbes && !this.#left;
    const lead = lastChance ? Math.min(this.probePeriodTicks, 2 * this.probeTimeoutTicks) : 0;
    while (heap.length > 0) {
      const top = heap[0] as Suspicion;
      if (top.deadline - (top.lastChance ? 0 : lead) > this.#now) break;
      const suspicion = heapPop(heap, suspectBefore);
      if (lastChance && !suspicion.lastChance) {
        suspicion.lastChance = true;
        suspicion.declareAt = suspicion.deadline;
        suspicion.deadline = this.#now + this.probePeriodTicks;
        heapPush(heap, suspicion, suspectBefore);
        this.#confirmStart(suspicion.slot, true);
        continue;
      }
      expired.push(suspicion);
    }
    // In the order the suspicions started, whatever their deadlines.
    if (expired.length > 1) expired.sort((a, b) => a.seq - b.seq);
    for (const suspicion of expired) {
      const slot = suspicion.slot;
      assert(this.#suspicions.get(slot) === suspicion && this.#state[slot] === SUSPECT, "Swim: suspects are suspect");
      this.#transition(slot, DEAD, this.#ownClaim(slot));
      this.#out.emit({ type: "member-dead", id: this.#dir.ids[slot] as string, incarnation: this.#incarnation[slot] as number });
    }
    // A death this node declared goes out at once, not at the next gossip period: the members that
    // have not declared it yet learn it now (ADR 024).
    if (expired.length > 0) this.#gossip();
  }

  #tombstoneExpire(): void {
    const queue = this.#tombstones;
    while (this.#tombstonesHead < queue.length) {
      const { slot, id, tick } = queue[this.#tombstonesHead] as Tombstone;
      if (this.#now - tick < this.#config.tombstoneTicks) break;
      this.#tombstonesHead++;
      const state = this.#state[slot] as number;
      const current = this.#dir.ids[slot] === id && (state === DEAD || state === LEFT) && this.#stateTick[slot] === tick;
      if (current) this.#forget(slot);
    }
    if (this.#tombstonesHead > 1024 && this.#tombstonesHead * 2 > queue.length) {
      this.#tombstones = queue.slice(this.#tombstonesHead);
      this.#tombstonesHead = 0;
    }
  }

  // ---- Helpers -----------------------------------------------------------------------------------

  /**
   * Up to `count` distinct random live members other than slot `except` (−1: none); with
   * `deadTicks`, members dead for less than that count too (gossip to the dead lets them refute).
   */
  #randomLive(count: number, except: number, deadTicks = 0): number[] {
    const list = this.#list;
    const length = this.#listLength;
    const state = this.#state;
    const eligible = (slot: number): boolean => {
      if (slot === except) return false;
      const code = state[slot] as number;
      return isLive(code) || (code === DEAD && this.#now - (this.#stateTick[slot] as number) < deadTicks);
    };
    const out: number[] = [];
    // A large table: draw uniformly from the member list, rejecting ineligible and repeated picks,
    // for a bounded number of attempts; whatever is still missing comes from the scan below.
    const liveOthers = this.#live - (except >= 0 && isLive(state[except] as number) ? 1 : 0);
    if (length > LIMITS.swimSampleScanMax && (liveOthers > count || deadTicks > 0)) {
      for (let attempts = 4 * count + 8; attempts > 0 && out.length < count; attempts--) {
        const slot = list[this.#rng.int(length)] as number;
        if (eligible(slot) && !out.includes(slot)) out.push(slot);
      }
      if (out.length === count) return out;
    }
    const pool: number[] = [];
    for (let i = 0; i < length; i++) {
      const slot = list[i] as number;
      if (eligible(slot) && !out.includes(slot)) pool.push(slot);
    }
    // Partial Fisher–Yates: only the places still missing are drawn.
    for (let i = 0; i < pool.length && out.length < count; i++) {
      const j = i + this.#rng.int(pool.length - i);
      const picked = pool[j] as number;
      pool[j] = pool[i] as number;
      out.push(picked);
    }
    return out;
  }

  #send(to: string, message: Message, channel: Channel = "datagram"): void {
    this.#out.send({ to, channel, message });
  }
}

/** `into` (the longer array) with `from` copied to its start. */
function grow<T extends { set(from: ArrayLike<number>): void }>(into: T, from: ArrayLike<number>): T {
  into.set(from);
  return into;
}

/** News queue order: fewer sends first, then newer first. */
function newsBefore(a: News, b: News): boolean {
  return a.sent !== b.sent ? a.sent < b.sent : a.seq > b.seq;
}

/** Suspicion order: earlier deadline first, then earlier start. */
function suspectBefore(a: Suspicion, b: Suspicion): boolean {
  return a.deadline !== b.deadline ? a.deadline < b.deadline : a.seq < b.seq;
}

// Binary heaps ordered by `before`, each item's position kept in its `index` (−1 when out).

interface Indexed {
  index: number;
}

function heapPush<T extends Indexed>(heap: T[], item: T, before: (a: T, b: T) => boolean): void {
  item.index = heap.length;
  heap.push(item);
  heapUp(heap, item.index, before);
}

function heapPop<T extends Indexed>(heap: T[], before: (a: T, b: T) => boolean): T {
  const top = heap[0] as T;
  heapRemove(heap, top, before);
  return top;
}

function heapRemove<T extends Indexed>(heap: T[], item: T, before: (a: T, b: T) => boolean): void {
  const at = item.index;
  assert(heap[at] === item, "Swim: heap index out of date");
  const last = heap.pop() as T;
  item.index = -1;
  if (last === item) return;
  heap[at] = last;
  last.index = at;
  heapDown(heap, at, before);
  heapUp(heap, last.index, before);
}

function heapUp<T extends Indexed>(heap: T[], at: number, before: (a: T, b: T) => boolean): void {
  const item = heap[at] as T;
  while (at > 0) {
    const parentAt = (at - 1) >> 1;
    const parent = heap[parentAt] as T;
    if (!before(item, parent)) break;
    heap[at] = parent;
    parent.index = at;
    at = parentAt;
  }
  heap[at] = item;
  item.index = at;
}

function heapDown<T extends Indexed>(heap: T[], at: number, before: (a: T, b: T) => boolean): void {
  const item = heap[at] as T;
  const length = heap.length;
  for (;;) {
    const left = 2 * at + 1;
    if (left >= length) break;
    const right = left + 1;
    let child = left;
    if (right < length && before(heap[right] as T, heap[left] as T)) child = right;
    const next = heap[child] as T;
    if (!before(next, item)) break;
    heap[at] = next;
    next.index = at;
    at = child;
  }
  heap[at] = item;
  item.index = at;
}

function eventOf(previous: number, next: Code): SwimEvent["type"] {
  switch (next) {
    case ALIVE: return previous === SUSPECT ? "member-refuted" : "member-alive";
    case SUSPECT: return "member-suspect";
    case DEAD: return "member-dead";
    case LEFT: return "member-left";
    default: return assertNever(next, "Swim: unknown state");
  }
}
