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
// Probing: every probe period (probeTicks·LHM) the next member of a shuffled round-robin list is
// pinged; after probeTimeoutTicks·LHM without an ack, ping-req goes to k random members who ping on
// our behalf and answer ack or nack; no ack by the end of the period ⇒ suspect.
import { assert, assertNever } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import { shuffle, type Rng } from "../util/rng.ts";
import { Timeout } from "../util/timeout.ts";
import type { Channel } from "../wire/envelope.ts";
import { entryFromWire, entryToWire, type MemberEntry, type Message, type SwimUpdateWire } from "../wire/messages.ts";

/** All durations in ticks (10 ms each at the kernel's default). */
export interface SwimConfig {
  /** Protocol period T′: one probe per period, scaled by the local health multiplier. */
  readonly probeTicks: number;
  /** Wait for a direct ack before asking helpers; scaled by the local health multiplier. */
  readonly probeTimeoutTicks: number;
  /** Helpers asked to ping indirectly (k). */
  readonly indirectChecks: number;
  /** λ: each update is sent retransmitMult·⌈log10(n+1)⌉ times. */
  readonly retransmitMult: number;
  /** Suspicion minimum = suspicionMult·max(1, log10 n)·probeTicks; K = suspicionMult − 2. */
  readonly suspicionMult: number;
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
 * LAN profile at 10 ms ticks: memberlist's DefaultLANConfig (probe 1 s, timeout 500 ms, 3 indirect
 * checks, retransmit 4, suspicion 4 (max 6×), gossip 200 ms to 3 nodes, push-pull 30 s, gossip to
 * the dead 30 s). Tombstones are kept 5 min.
 */
export const SWIM_LAN: SwimConfig = {
  probeTicks: 100,
  probeTimeoutTicks: 50,
  indirectChecks: 3,
  retransmitMult: 4,
  suspicionMult: 4,
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
  indirectChecks: 3,
  retransmitMult: 4,
  suspicionMult: 6,
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
const STATES: readonly SwimState[] = ["alive", "suspect", "dead", "left"];

/** True when news `update` about a member replaces what is known (`current`). */
export function supersedes(
  current: { readonly state: SwimState; readonly incarnation: number },
  update: { readonly state: SwimState; readonly incarnation: number },
): boolean {
  if (update.incarnation !== current.incarnation) return update.incarnation > current.incarnation;
  return RANK[update.state] > RANK[current.state];
}

/** Signature checks Swim needs: the id must be derived from the key carried in alive news. */
export interface SwimCrypto {
  idOf(publicKey: Uint8Array): string;
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

export interface SwimReady {
  readonly messages: readonly Outbound[];
  readonly events: readonly SwimEvent[];
}

/** What Swim knows about one member (read-only outside this file). */
export interface SwimMember {
  /** The entry; entry.incarnation is the member's incarnation as known here. */
  readonly entry: MemberEntry;
  readonly state: SwimState;
  /** Tick of the last state change. */
  readonly stateTick: number;
}

interface Suspicion {
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
}

interface Member extends SwimMember {
  entry: MemberEntry;
  state: SwimState;
  stateTick: number;
  /** Who declared the current suspect/dead/left state (gossiped along with it). */
  from: string;
  suspicion: Suspicion | undefined;
  /** Times the current news was piggybacked; meaningful while the member is in #news. */
  newsSent: number;
  /** Order in which the news arrived (larger = newer). */
  newsSeq: number;
  /** Position in its news queue's heap; −1 when the member has no news to spread. */
  newsIndex: number;
  /** Which news queue holds it: alive updates (variable size) or the others (fixed size). */
  newsAlive: boolean;
  /** Position in Swim's member array (for uniform sampling); −1 for self. */
  listIndex: number;
  /** Position in the suspects' deadline heap; −1 when not suspect. */
  suspectIndex: number;
  /** Order in which the member was added to #members (the order #tombstoneExpire forgets in). */
  readonly addSeq: number;
}

interface Probe {
  readonly target: Member;
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

/** A decoded update, before it is applied. */
interface Update {
  readonly state: SwimState;
  readonly id: string;
  readonly incarnation: number;
  readonly from: string;
  readonly entry: MemberEntry | undefined;
}

/** Envelope (28 header + 16 tag) around every datagram body. */
const ENVELOPE_BYTES = 44;
/**
 * Bound of a swim datagram body without its updates and addresses: map header 1, "t" 2, tag ≤ 14,
 * "seq" 4 + 5, "target" 7 + 17, "targetAddr" 11, "addr" 5, "updates" 8 + array header 3 = 77.
 */
const FIXED_BYTES_MAX = 80;
const STATE_UPDATE_BYTES_MAX = 42;
/** Alive news too large for what is left of a datagram's budget: skipped at most this many times. */
const ALIVE_SKIPS_MAX = 32;
/** A member table this small is scanned when sampling; above it, members are drawn at random. */
const SAMPLE_SCAN_MAX = 64;
const INCARNATION_MAX = 0xffff_ffff;

/**
 * Bound of one update's MessagePack size: the alive tuple is 2 + the entry (array header 1, id 17,
 * pub 34, role ≤ 12, incarnation ≤ 5, so 69, plus addr and name as MessagePack strings); the others
 * 1 + 1 + 17 + 5 + 17 = 41.
 */
function updateBytesMax(member: Member): number {
  if (member.state !== "alive") return STATE_UPDATE_BYTES_MAX;
  return 2 + 69 + stringBytes(member.entry.addr) + stringBytes(member.entry.name);
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

function addressBytesMax(addr: string): number {
  return stringBytes(addr);
}

function toUpdateWire(member: Member): SwimUpdateWire {
  if (member.state === "alive") return [0, entryToWire(member.entry)];
  return [RANK[member.state] as 1 | 2 | 3, member.entry.id, member.entry.incarnation, member.from];
}

function fromUpdateWire(wire: SwimUpdateWire): Update {
  if (wire[0] === 0) {
    const entry = entryFromWire(wire[1]);
    return { state: "alive", id: entry.id, incarnation: entry.incarnation, from: entry.id, entry };
  }
  return { state: STATES[wire[0]] as SwimState, id: wire[1], incarnation: wire[2], from: wire[3], entry: undefined };
}

export class Swim {
  #self: MemberEntry;
  readonly #rng: Rng;
  readonly #crypto: SwimCrypto;
  readonly #config: SwimConfig;
  /** Every other member, tombstones included. */
  readonly #members = new Map<string, Member>();
  /** Members not dead or left (the "n" of every formula, self excluded). */
  #live = 0;
  /** Self as a news item: its alive update travels through the same queue as everyone else's. */
  readonly #me: Member;
  /**
   * Dead and left members in the order their tombstones expire: (member, stateTick) at each
   * transition to dead or left. An entry is stale once the member's stateTick has moved on.
   */
  #tombstones: { readonly member: Member; readonly tick: number }[] = [];
  #tombstonesHead = 0;
  #addSeq = 0;
  /** Every other member, for uniform sampling (swap-remove, Member.listIndex). */
  readonly #memberList: Member[] = [];
  /**
   * Members with news still to spread (self included): two binary heaps ordered by (newsSent
   * ascending, newsSeq descending), memberlist's TransmitLimitedQueue. Alive news (variable size)
   * and the fixed-size suspect/dead/left news are kept apart so that a full datagram can stop
   * looking for alive news that fits without scanning it all.
   */
  readonly #newsAliveHeap: Member[] = [];
  readonly #newsStateHeap: Member[] = [];
  #newsSeq = 0;
  /** Suspected members, whose suspicion timers run: a binary heap by (deadline, seq). */
  readonly #suspects: Member[] = [];
  #suspicionSeq = 0;
  /** The current probe round: a shuffled list of member ids and the next position in it. */
  #probeList: string[] = [];
  #probeIndex = 0;
  #probe: Probe | undefined;
  readonly #relays = new Map<number, Relay>();
  #seq = 0;
  /** Lifeguard's local health score from missed acks, nacks and refutations: 0..awarenessMax−1. */
  #health = 0;
  /** Score added while the node's own event loop is slow (the node sets it). */
  #loopDelayPenalty = 0;
  #left = false;
  readonly #probeTimer: Timeout;
  readonly #gossipTimer: Timeout;
  readonly #pushPullTimer: Timeout;
  #now = 0;
  #outbox: Outbound[] = [];
  #events: SwimEvent[] = [];

  constructor(self: MemberEntry, rng: Rng, crypto: SwimCrypto, config: SwimConfig) {
    assert(crypto.idOf(self.pub) === self.id, "Swim: self id must derive from the public key");
    assert(config.probeTicks > 0 && config.probeTimeoutTicks > 0, "Swim: probe periods must be positive");
    assert(config.probeTimeoutTicks < config.probeTicks, "Swim: probe timeout must be shorter than the probe period");
    assert(config.indirectChecks >= 0 && config.indirectChecks <= LIMITS.swimIndirectChecksMax, "Swim: indirectChecks out of bounds");
    assert(config.gossipNodes >= 1 && config.gossipNodes <= LIMITS.swimGossipNodesMax, "Swim: gossipNodes out of bounds");
    assert(config.suspicionMult >= 1 && config.suspicionMaxTimeoutMult >= 1, "Swim: suspicion multipliers must be ≥ 1");
    assert(config.tombstoneTicks > 0 && config.retransmitMult > 0, "Swim: tombstoneTicks and retransmitMult must be positive");
    this.#self = self;
    this.#rng = rng;
    this.#crypto = crypto;
    this.#config = config;
    this.#me = { entry: self, state: "alive", stateTick: 0, from: self.id, suspicion: undefined, newsSent: 0, newsSeq: 0,
      newsIndex: -1, newsAlive: true, listIndex: -1, suspectIndex: -1, addSeq: 0 };
    this.#probeTimer = new Timeout("swim-probe", config.probeTicks);
    this.#gossipTimer = new Timeout("swim-gossip", config.gossipTicks);
    this.#pushPullTimer = new Timeout("swim-push-pull", config.pushPullTicks);
    // Spread the first rounds so that nodes started together do not probe in lockstep.
    this.#probeTimer.backoff(rng, config.probeTicks);
    this.#gossipTimer.backoff(rng, config.gossipTicks);
    this.#pushPullTimer.backoff(rng, config.pushPullTicks);
    this.#addNews(this.#me);
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
  get probeTimeoutTicks(): number {
    return this.#config.probeTimeoutTicks * (this.localHealth + 1);
  }

  member(id: string): SwimMember | undefined {
    return this.#members.get(id);
  }

  members(): IterableIterator<SwimMember> {
    return this.#members.values();
  }

  /** Raises local health by `penalty` (0..awarenessMax − 1) while the node's event loop stalls. */
  setLoopDelayPenalty(penalty: number): void {
    assert(Number.isInteger(penalty) && penalty >= 0, "Swim: loop delay penalty must be a non-negative integer");
    this.#loopDelayPenalty = Math.min(LIMITS.swimAwarenessMax - 1, penalty);
  }

  /** Adds a member admitted elsewhere (the join handshake, the store): news alive{incarnation}. */
  add(entry: MemberEntry): void {
    this.#apply({ state: "alive", id: entry.id, incarnation: entry.incarnation, from: entry.id, entry });
  }

  /** Graceful leave: tells the others left{incarnation}, stops probing and answering probes. */
  leave(): void {
    if (this.#left) return;
    this.#left = true;
    this.#me.state = "left";
    this.#me.stateTick = this.#now;
    this.#probe = undefined;
    this.#probeTimer.stop();
    this.#pushPullTimer.stop();
    this.#addNews(this.#me);
    this.#events.push({ type: "member-left", id: this.#self.id, incarnation: this.#self.incarnation });
  }

  step(from: string, message: Message): void {
    switch (message.t) {
      case "swim-ping": return this.#onPing(message.updates, message.seq, message.target, message.addr);
      case "swim-ping-req": return this.#onPingReq(message);
      case "swim-ack": return this.#onAck(message.updates, message.seq);
      case "swim-nack": return this.#onNack(message.updates, message.seq);
      case "swim-gossip": return this.#merge(message.updates, undefined);
      case "swim-sync": return this.#onSync(from, message.reply, message.states);
      case "hello":
      case "challenge":
      case "proof":
      case "welcome":
      case "gossip":
      case "sync":
      case "ping":
      case "ack":
      case "vital":
      case "heal":
        return;
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
    const ready = { messages: this.#outbox, events: this.#events };
    this.#outbox = [];
    this.#events = [];
    return ready;
  }

  hasReady(): boolean {
    return this.#outbox.length > 0 || this.#events.length > 0;
  }

  // ---- Probing ----------------------------------------------------------------------------------

  #probeStart(): void {
    this.#probeTimer.setAfter(this.probePeriodTicks);
    if (this.#left) return;
    const target = this.#probeNext();
    if (target === undefined) return;
    const seq = this.#nextSeq();
    this.#probe = {
      target, seq, startTick: this.#now, timeoutTicks: this.probeTimeoutTicks,
      acked: false, indirect: false, expectedNacks: 0, nacks: 0,
    };
    const addr = this.#self.addr;
    const fixed = FIXED_BYTES_MAX + addressBytesMax(addr);
    // Buddy system: a suspect learns of its suspicion from the probe itself and can refute at once.
    const updates = this.#piggyback(fixed, target.state === "suspect" ? target : undefined);
    this.#send(target.entry.addr, { t: "swim-ping", seq, target: target.entry.id, addr, updates });
  }

  /** Next member of the shuffled round-robin list; a fresh shuffle starts each round. */
  #probeNext(): Member | undefined {
    if (this.#live === 0) return undefined;
    // Each iteration consumes a list position or reshuffles once; two passes cover the whole list.
    for (let attempts = 0; attempts <= 2 * this.#probeList.length + 1; attempts++) {
      if (this.#probeIndex >= this.#probeList.length) {
        this.#probeList = [];
        for (const [id, member] of this.#members) if (isLive(member)) this.#probeList.push(id);
        shuffle(this.#rng, this.#probeList);
        this.#probeIndex = 0;
        if (this.#probeList.length === 0) return undefined;
      }
      const id = this.#probeList[this.#probeIndex++] as string;
      const member = this.#members.get(id);
      if (member !== undefined && isLive(member)) return member;
    }
    return undefined;
  }

  #probeIndirect(probe: Probe): void {
    probe.indirect = true;
    const helpers = this.#randomLive(this.#config.indirectChecks, probe.target);
    const addr = this.#self.addr;
    const target = probe.target.entry;
    const fixed = FIXED_BYTES_MAX + addressBytesMax(addr) + addressBytesMax(target.addr);
    for (const helper of helpers) {
      const updates = this.#piggyback(fixed, undefined);
      this.#send(helper.entry.addr, { t: "swim-ping-req", seq: probe.seq, target: target.id, targetAddr: target.addr, addr, updates });
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
    const target = probe.target;
    if (this.#members.get(target.entry.id) !== target || !isLive(target)) return;
    this.#apply({ state: "suspect", id: target.entry.id, incarnation: target.entry.incarnation, from: this.#self.id, entry: undefined });
  }

  #onPing(updates: readonly SwimUpdateWire[], seq: number, target: string, addr: string): void {
    this.#merge(updates, undefined);
    // A ping meant for a previous owner of this address, or arriving after leave, goes unanswered.
    if (target !== this.#self.id || this.#left) return;
    this.#send(addr, { t: "swim-ack", seq, updates: this.#piggyback(FIXED_BYTES_MAX, undefined) });
  }

  #onPingReq(message: Extract<Message, { t: "swim-ping-req" }>): void {
    this.#merge(message.updates, undefined);
    if (this.#left || message.target === this.#self.id || this.#relays.size >= LIMITS.swimRelaysMax) return;
    const seq = this.#nextSeq();
    this.#relays.set(seq, { originAddr: message.addr, originSeq: message.seq, startTick: this.#now });
    const addr = this.#self.addr;
    const updates = this.#piggyback(FIXED_BYTES_MAX + addressBytesMax(addr), undefined);
    this.#send(message.targetAddr, { t: "swim-ping", seq, target: message.target, addr, updates });
  }

  #onAck(updates: readonly SwimUpdateWire[], seq: number): void {
    this.#merge(updates, undefined);
    const probe = this.#probe;
    if (probe !== undefined && probe.seq === seq) {
      probe.acked = true;
      return;
    }
    const relay = this.#relays.get(seq);
    if (relay === undefined) return;
    this.#relays.delete(seq);
    this.#send(relay.originAddr, { t: "swim-ack", seq: relay.originSeq, updates: this.#piggyback(FIXED_BYTES_MAX, undefined) });
  }

  #onNack(updates: readonly SwimUpdateWire[], seq: number): void {
    this.#merge(updates, undefined);
    const probe = this.#probe;
    if (probe === undefined || probe.seq !== seq || probe.acked || probe.nacks >= probe.expectedNacks) return;
    probe.nacks++;
    // Every helper is reachable and none reached the target: conclusive, so suspect now rather than
    // at the end of the period (an ack arriving later is ignored; the target can refute).
    if (probe.nacks === probe.expectedNacks) this.#probeEnd();
  }

  /**
   * A helper that heard nothing from the target sends a nack at 4/5 of its probe timeout, so that
   * the nack reaches the prober before the prober's period (probe timeout + the same again) ends.
   */
  #relayExpire(): void {
    const nackTicks = Math.max(1, Math.floor((this.#config.probeTimeoutTicks * 4) / 5));
    for (const [seq, relay] of this.#relays) {
      if (this.#now - relay.startTick < nackTicks) continue;
      this.#relays.delete(seq);
      this.#send(relay.originAddr, { t: "swim-nack", seq: relay.originSeq, updates: this.#piggyback(FIXED_BYTES_MAX, undefined) });
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
    if (this.#newsCount() === 0) return;
    const targets = this.#randomLive(this.#config.gossipNodes, undefined, this.#config.gossipToTheDeadTicks);
    for (const target of targets) {
      const updates = this.#piggyback(FIXED_BYTES_MAX, undefined);
      if (updates.length === 0) return;
      this.#send(target.entry.addr, { t: "swim-gossip", updates });
    }
  }

  /**
   * Takes news for one datagram: fewest sends first, then newest (memberlist's TransmitLimitedQueue),
   * within the byte budget left after `fixedBytes`; `first` (the buddy) goes ahead of everything.
   * Costs O(k log m) for k updates out of m: only what is looked at is popped, and after
   * ALIVE_SKIPS_MAX alive updates too large for the rest of the budget, alive news is not looked at.
   */
  #piggyback(fixedBytes: number, first: Member | undefined): SwimUpdateWire[] {
    // Hostile-but-valid addresses (260 three-byte characters, twice) can leave no room at all.
    let budget = Math.max(0, LIMITS.datagramBytesMax - ENVELOPE_BYTES - fixedBytes);
    const out: SwimUpdateWire[] = [];
    if (first !== undefined && updateBytesMax(first) <= budget) {
      out.push(toUpdateWire(first));
      budget -= updateBytesMax(first);
    }
    if (this.#newsCount() === 0) return out;
    const limit = this.#retransmitLimit();
    const alive = this.#newsAliveHeap;
    const states = this.#newsStateHeap;
    // Members popped this time, pushed back at the end (each goes out at most once per datagram).
    const back: Member[] = [];
    let aliveSkips = 0;
    // Walks both heaps in queue order, as a sort of the union would, popping only what it looks at.
    while (out.length < LIMITS.swimUpdatesMax && budget >= STATE_UPDATE_BYTES_MAX) {
      const a = aliveSkips < ALIVE_SKIPS_MAX ? alive[0] : undefined;
      const b = states[0];
      let member: Member;
      if (a !== undefined && (b === undefined || newsBefore(a, b))) member = heapPop(alive, newsBefore, "newsIndex");
      else if (b !== undefined) member = heapPop(states, newsBefore, "newsIndex");
      else break;
      member.newsIndex = -1;
      if (member === first) {
        back.push(member);
        continue;
      }
      const size = updateBytesMax(member);
      if (size > budget) {
        // Only alive news can be too large here (budget ≥ a fixed-size update).
        aliveSkips++;
        back.push(member);
        continue;
      }
      budget -= size;
      out.push(toUpdateWire(member));
      if (++member.newsSent < limit) back.push(member);
    }
    for (const member of back) this.#newsPush(member);
    assert(budget >= 0, "Swim: piggyback exceeded the datagram budget");
    return out;
  }

  #newsCount(): number {
    return this.#newsAliveHeap.length + this.#newsStateHeap.length;
  }

  #addNews(member: Member): void {
    this.#newsRemove(member);
    member.newsSent = 0;
    member.newsSeq = ++this.#newsSeq;
    this.#newsPush(member);
  }

  #newsPush(member: Member): void {
    member.newsAlive = member.state === "alive";
    heapPush(member.newsAlive ? this.#newsAliveHeap : this.#newsStateHeap, member, newsBefore, "newsIndex");
  }

  #newsRemove(member: Member): void {
    if (member.newsIndex < 0) return;
    heapRemove(member.newsAlive ? this.#newsAliveHeap : this.#newsStateHeap, member, newsBefore, "newsIndex");
  }

  #retransmitLimit(): number {
    return this.#config.retransmitMult * Math.ceil(Math.log10(this.size + 1));
  }

  // ---- Push-pull ---------------------------------------------------------------------------------

  #pushPull(): void {
    const [target] = this.#randomLive(1, undefined);
    if (target === undefined) return;
    this.#send(target.entry.addr, { t: "swim-sync", reply: true, states: this.#table() }, "stream");
  }

  #onSync(from: string, reply: boolean, states: readonly SwimUpdateWire[]): void {
    this.#merge(states, from);
    const peer = this.#members.get(from);
    if (reply && peer !== undefined && !this.#left) {
      this.#send(peer.entry.addr, { t: "swim-sync", reply: false, states: this.#table() }, "stream");
    }
  }

  /** The whole table as push-pull states, this node first (a join's welcome carries it). */
  table(): SwimUpdateWire[] {
    return this.#table();
  }

  #table(): SwimUpdateWire[] {
    const out: SwimUpdateWire[] = [toUpdateWire(this.#me)];
    for (const member of this.#members.values()) out.push(toUpdateWire(member));
    return out;
  }

  #pushPullPeriod(): number {
    const n = this.size;
    const scale = n <= 32 ? 1 : 1 + Math.log2(n / 32);
    return Math.ceil(this.#config.pushPullTicks * scale);
  }

  // ---- State changes -----------------------------------------------------------------------------

  /**
   * Applies updates from a datagram, or from a push-pull sent by `syncFrom`. A push-pull's "dead" is
   * taken as a suspicion by the sender (memberlist's mergeState): a whole-table copy may be old,
   * and a suspicion gives the member time to refute.
   */
  #merge(updates: readonly SwimUpdateWire[], syncFrom: string | undefined): void {
    for (const wire of updates) {
      const update = fromUpdateWire(wire);
      if (syncFrom !== undefined && update.state === "dead") {
        this.#apply({ ...update, state: "suspect", from: syncFrom });
      } else {
        this.#apply(update);
      }
    }
  }

  #apply(update: Update): void {
    if (update.id === this.#self.id) return this.#applySelf(update);
    const member = this.#members.get(update.id);
    if (member === undefined) return this.#applyNew(update);
    if (!supersedes({ state: member.state, incarnation: member.entry.incarnation }, update)) {
      if (update.state === "suspect" && member.state === "suspect" && update.incarnation === member.entry.incarnation) {
        this.#confirm(member, update.from);
      }
      return;
    }
    if (update.entry !== undefined) {
      // The id is the hash of the key: alive news cannot swap a member's key.
      if (this.#crypto.idOf(update.entry.pub) !== update.id) return;
      member.entry = update.entry;
    } else {
      member.entry = { ...member.entry, incarnation: update.incarnation };
    }
    const previous = member.state;
    this.#transition(member, update.state, update.from);
    this.#events.push({ type: eventOf(previous, update.state), id: update.id, incarnation: update.incarnation });
  }

  #applyNew(update: Update): void {
    // Only alive news introduces a member: the others carry no address or key.
    if (update.entry === undefined || update.state !== "alive") return;
    if (this.#crypto.idOf(update.entry.pub) !== update.id) return;
    if (this.#members.size + 1 >= LIMITS.membersMax) return;
    const member: Member = {
      entry: update.entry, state: "alive", stateTick: this.#now, from: update.id,
      suspicion: undefined, newsSent: 0, newsSeq: 0, newsIndex: -1, newsAlive: true,
      listIndex: this.#memberList.length, suspectIndex: -1, addSeq: ++this.#addSeq,
    };
    this.#members.set(update.id, member);
    this.#memberList.push(member);
    this.#live++;
    // SWIM §4.3: a joiner goes to a random place in the current round, not at its end.
    const at = this.#probeIndex + this.#rng.int(this.#probeList.length - this.#probeIndex + 1);
    this.#probeList.splice(at, 0, update.id);
    this.#addNews(member);
    this.#events.push({ type: "member-alive", id: update.id, incarnation: update.incarnation });
  }

  /** News about this node: refute any accusation at or above our incarnation. */
  #applySelf(update: Update): void {
    if (this.#left) return;
    const incarnation = this.#self.incarnation;
    const accused = update.state !== "alive" && update.incarnation >= incarnation;
    // Alive news above our incarnation is from a previous life (before a restart): move past it.
    const stale = update.state === "alive" && update.incarnation > incarnation;
    if (!accused && !stale) return;
    assert(update.incarnation < INCARNATION_MAX, "Swim: incarnation space exhausted");
    this.#self = { ...this.#self, incarnation: update.incarnation + 1 };
    this.#me.entry = this.#self;
    this.#addNews(this.#me);
    if (accused) this.#healthAdd(1);
    this.#events.push({ type: "member-refuted", id: this.#self.id, incarnation: this.#self.incarnation });
  }

  #transition(member: Member, state: SwimState, from: string): void {
    const wasLive = isLive(member);
    member.state = state;
    member.stateTick = this.#now;
    member.from = from;
    member.suspicion = undefined;
    if (member.suspectIndex >= 0) heapRemove(this.#suspects, member, suspectBefore, "suspectIndex");
    if (state === "suspect") {
      member.suspicion = this.#suspicionNew(from);
      heapPush(this.#suspects, member, suspectBefore, "suspectIndex");
    }
    if (wasLive !== isLive(member)) this.#live += wasLive ? -1 : 1;
    if (!isLive(member)) this.#tombstones.push({ member, tick: this.#now });
    this.#addNews(member);
    assert(this.#live >= 0 && this.#live <= this.#members.size, "Swim: live count out of range");
  }

  // ---- Suspicion (Lifeguard) ---------------------------------------------------------------------

  #suspicionNew(from: string): Suspicion {
    const n = this.size;
    const minTicks = Math.ceil(this.#config.suspicionMult * Math.max(1, Math.log10(n)) * this.#config.probeTicks);
    const maxTicks = this.#config.suspicionMaxTimeoutMult * minTicks;
    const wanted = Math.min(LIMITS.swimConfirmationsMax, Math.max(0, this.#config.suspicionMult - 2));
    const k = n - 2 < wanted ? 0 : wanted;
    const deadline = this.#now + Swim.suspicionTimeout(minTicks, maxTicks, k, 0);
    return { startTick: this.#now, minTicks, maxTicks, k, accusers: new Set([from]), deadline, seq: ++this.#suspicionSeq };
  }

  /** An independent confirmation shortens the timer and is passed on (memberlist re-gossips it). */
  #confirm(member: Member, from: string): void {
    const suspicion = member.suspicion;
    assert(suspicion !== undefined, "Swim: a suspect has a suspicion timer");
    if (suspicion.accusers.size > suspicion.k || suspicion.accusers.has(from)) return;
    suspicion.accusers.add(from);
    // More confirmations only bring the deadline closer.
    suspicion.deadline = suspicion.startTick +
      Swim.suspicionTimeout(suspicion.minTicks, suspicion.maxTicks, suspicion.k, suspicion.accusers.size - 1);
    heapUp(this.#suspects, member.suspectIndex, suspectBefore, "suspectIndex");
    member.from = from;
    this.#addNews(member);
  }

  /** timeout = max(min, max − (max − min)·log(c + 1)/log(k + 1)), c = confirmations. */
  static suspicionTimeout(minTicks: number, maxTicks: number, k: number, confirmations: number): number {
    if (k < 1) return minTicks;
    const fraction = Math.log(confirmations + 1) / Math.log(k + 1);
    return Math.max(minTicks, Math.floor(maxTicks - (maxTicks - minTicks) * fraction));
  }

  #suspicionExpire(): void {
    const heap = this.#suspects;
    const expired: Member[] = [];
    while (heap.length > 0 && ((heap[0] as Member).suspicion as Suspicion).deadline <= this.#now) {
      expired.push(heapPop(heap, suspectBefore, "suspectIndex"));
    }
    // In the order the suspicions started, whatever their deadlines.
    if (expired.length > 1) expired.sort((a, b) => (a.suspicion as Suspicion).seq - (b.suspicion as Suspicion).seq);
    for (const member of expired) {
      assert(member.suspicion !== undefined && member.state === "suspect", "Swim: suspects are suspect");
      this.#transition(member, "dead", this.#self.id);
      this.#events.push({ type: "member-dead", id: member.entry.id, incarnation: member.entry.incarnation });
    }
  }

  #tombstoneExpire(): void {
    const queue = this.#tombstones;
    const expired: Member[] = [];
    while (this.#tombstonesHead < queue.length) {
      const { member, tick } = queue[this.#tombstonesHead] as { member: Member; tick: number };
      if (this.#now - tick < this.#config.tombstoneTicks) break;
      this.#tombstonesHead++;
      const current = this.#members.get(member.entry.id) === member && !isLive(member) && member.stateTick === tick;
      if (current) expired.push(member);
    }
    if (this.#tombstonesHead > 1024 && this.#tombstonesHead * 2 > queue.length) {
      this.#tombstones = queue.slice(this.#tombstonesHead);
      this.#tombstonesHead = 0;
    }
    // Forgotten in the order they were added, as a scan of #members would.
    if (expired.length > 1) expired.sort((a, b) => a.addSeq - b.addSeq);
    for (const member of expired) {
      this.#members.delete(member.entry.id);
      this.#newsRemove(member);
      // Swap-remove from the member array.
      const list = this.#memberList;
      const last = list.pop() as Member;
      if (last !== member) {
        list[member.listIndex] = last;
        last.listIndex = member.listIndex;
      }
      member.listIndex = -1;
    }
  }

  // ---- Helpers -----------------------------------------------------------------------------------

  /**
   * Up to `count` distinct random live members other than `except`; with `deadTicks`, members dead
   * for less than that count too (gossip to the dead lets them refute).
   */
  #randomLive(count: number, except: Member | undefined, deadTicks = 0): Member[] {
    const list = this.#memberList;
    const eligible = (member: Member): boolean =>
      member !== except && (isLive(member) || (member.state === "dead" && this.#now - member.stateTick < deadTicks));
    const out: Member[] = [];
    // A large table: draw uniformly from the member array, rejecting ineligible and repeated picks,
    // for a bounded number of attempts; whatever is still missing comes from the scan below.
    const liveOthers = this.#live - (except !== undefined && isLive(except) ? 1 : 0);
    if (list.length > SAMPLE_SCAN_MAX && (liveOthers > count || deadTicks > 0)) {
      for (let attempts = 4 * count + 8; attempts > 0 && out.length < count; attempts--) {
        const member = list[this.#rng.int(list.length)] as Member;
        if (eligible(member) && !out.includes(member)) out.push(member);
      }
      if (out.length === count) return out;
    }
    const pool: Member[] = [];
    for (const member of list) if (eligible(member) && !out.includes(member)) pool.push(member);
    // Partial Fisher–Yates: only the places still missing are drawn.
    for (let i = 0; i < pool.length && out.length < count; i++) {
      const j = i + this.#rng.int(pool.length - i);
      const picked = pool[j] as Member;
      pool[j] = pool[i] as Member;
      out.push(picked);
    }
    return out;
  }

  #send(to: string, message: Message, channel: Channel = "datagram"): void {
    this.#outbox.push({ to, channel, message });
  }
}

/** News queue order: fewer sends first, then newer first. */
function newsBefore(a: Member, b: Member): boolean {
  return a.newsSent !== b.newsSent ? a.newsSent < b.newsSent : a.newsSeq > b.newsSeq;
}

/** Suspicion order: earlier deadline first, then earlier start. */
function suspectBefore(a: Member, b: Member): boolean {
  const x = a.suspicion as Suspicion;
  const y = b.suspicion as Suspicion;
  return x.deadline !== y.deadline ? x.deadline < y.deadline : x.seq < y.seq;
}

// Binary heaps of members ordered by `before`, each member's position kept in its field `slot`.

type HeapSlot = "newsIndex" | "suspectIndex";
type Before = (a: Member, b: Member) => boolean;

function heapPush(heap: Member[], member: Member, before: Before, slot: HeapSlot): void {
  member[slot] = heap.length;
  heap.push(member);
  heapUp(heap, member[slot], before, slot);
}

function heapPop(heap: Member[], before: Before, slot: HeapSlot): Member {
  const top = heap[0] as Member;
  heapRemove(heap, top, before, slot);
  return top;
}

function heapRemove(heap: Member[], member: Member, before: Before, slot: HeapSlot): void {
  const at = member[slot];
  assert(heap[at] === member, "Swim: heap index out of date");
  const last = heap.pop() as Member;
  member[slot] = -1;
  if (last === member) return;
  heap[at] = last;
  last[slot] = at;
  heapDown(heap, at, before, slot);
  heapUp(heap, last[slot], before, slot);
}

function heapUp(heap: Member[], at: number, before: Before, slot: HeapSlot): void {
  const member = heap[at] as Member;
  while (at > 0) {
    const parentAt = (at - 1) >> 1;
    const parent = heap[parentAt] as Member;
    if (!before(member, parent)) break;
    heap[at] = parent;
    parent[slot] = at;
    at = parentAt;
  }
  heap[at] = member;
  member[slot] = at;
}

function heapDown(heap: Member[], at: number, before: Before, slot: HeapSlot): void {
  const member = heap[at] as Member;
  const length = heap.length;
  for (;;) {
    const left = 2 * at + 1;
    if (left >= length) break;
    const right = left + 1;
    let child = left;
    if (right < length && before(heap[right] as Member, heap[left] as Member)) child = right;
    const next = heap[child] as Member;
    if (!before(next, member)) break;
    heap[at] = next;
    next[slot] = at;
    at = child;
  }
  heap[at] = member;
  member[slot] = at;
}

function isLive(member: SwimMember): boolean {
  return member.state === "alive" || member.state === "suspect";
}

function eventOf(previous: SwimState, next: SwimState): SwimEvent["type"] {
  switch (next) {
    case "alive": return previous === "suspect" ? "member-refuted" : "member-alive";
    case "suspect": return "member-suspect";
    case "dead": return "member-dead";
    case "left": return "member-left";
    default: return assertNever(next, "Swim: unknown state");
  }
}
