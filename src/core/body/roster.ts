// The roster: who is in the cluster. A sans-IO core (step / tick / ready) that admits new nodes
// through a join handshake and spreads membership by gossip, so every node learns every other
// after `--join`. It does not detect failures; SWIM (issue 3) takes that over and every member
// here is "alive" once admitted.
//
// Join handshake (docs/protocols/membership.md):
//   joiner → seed   hello     { entry }                 datagram
//   seed   → joiner challenge { nonce }                 datagram, nonce fresh from the seeded Rng
//   joiner → seed   proof     { entry, nonce, sig }     sig = Ed25519 over joinTranscript()
//   seed   → joiner welcome   { members }               stream: the seed's whole table
// Every packet is already sealed with the cluster key, which proves the token; the proof adds
// possession of the identity key that the node id is derived from.
//
// Dissemination: every gossipTicks a datagram to one random member carries the sender's own entry
// and the newest changes, each change retransmitted retransmitMult·⌈log10(n+1)⌉ times (SWIM's
// piggybacking); every syncTicks·scale a full-table push-pull over the stream channel repairs what
// gossip missed, scale = 1 + log2(n/32) for n > 32 (memberlist's push-pull scaling).
import { assert, assertNever } from "../util/assert.ts";
import { bytesEqual } from "../util/bytes.ts";
import { LIMITS } from "../util/limits.ts";
import type { Rng } from "../util/rng.ts";
import { Timeout } from "../util/timeout.ts";
import type { Channel } from "../wire/envelope.ts";
import type { MemberEntry, Message } from "../wire/messages.ts";

export interface RosterConfig {
  readonly gossipTicks: number;
  readonly syncTicks: number;
  readonly joinRetryTicks: number;
  readonly retransmitMult: number;
  /** Addresses of nodes to join through; empty for the first node of a cluster. */
  readonly join: readonly string[];
}

export const ROSTER_DEFAULTS: Omit<RosterConfig, "join"> = {
  gossipTicks: 20,
  syncTicks: 3000,
  joinRetryTicks: 100,
  retransmitMult: 4,
};

/** Signature checks the roster needs; the node passes its Identity port. */
export interface RosterCrypto {
  sign(data: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
  idOf(publicKey: Uint8Array): string;
}

export interface Member {
  entry: MemberEntry;
  /** Tick at which this node last received a packet from the member; -1 if never directly. */
  lastHeardTick: number;
  /** Times the current news about this member has been gossiped. */
  newsSent: number;
  /** Index of the member's current news in the news log, or -1 when there is none to spread. */
  newsPosition: number;
}

export interface Outbound {
  /** Destination address ("host:port"). */
  readonly to: string;
  readonly channel: Channel;
  readonly message: Message;
}

export type RosterEvent =
  | { readonly type: "member-joined"; readonly id: string; readonly addr: string }
  | { readonly type: "member-updated"; readonly id: string; readonly addr: string; readonly incarnation: number }
  | { readonly type: "joined"; readonly via: string; readonly members: number }
  | { readonly type: "join-refused"; readonly from: string; readonly reason: string };

export interface RosterReady {
  readonly messages: readonly Outbound[];
  readonly events: readonly RosterEvent[];
  /** Entries whose stored copy must be rewritten (the node persists them, not durably). */
  readonly changed: readonly MemberEntry[];
}

interface Pending {
  readonly nonce: Uint8Array;
  readonly entry: MemberEntry;
  readonly expiresTick: number;
}

const TRANSCRIPT_PREFIX = new TextEncoder().encode("p-kernel/v1/join");

/** What a joiner signs: the domain, the seed's nonce, its own id and the seed's id. */
export function joinTranscript(nonce: Uint8Array, joinerId: string, seedId: string): Uint8Array {
  const ids = new TextEncoder().encode(`${joinerId}>${seedId}`);
  const out = new Uint8Array(TRANSCRIPT_PREFIX.length + nonce.length + ids.length);
  out.set(TRANSCRIPT_PREFIX, 0);
  out.set(nonce, TRANSCRIPT_PREFIX.length);
  out.set(ids, TRANSCRIPT_PREFIX.length + nonce.length);
  return out;
}

/**
 * Upper bound of one entry's MessagePack size as a wire tuple: array header 1, id 17, pub 34,
 * addr 2 + length, role ≤ 12, name 2 + 3·length (UTF-8), incarnation ≤ 5.
 */
export function entryBytesMax(entry: MemberEntry): number {
  return 73 + entry.addr.length + entry.name.length * 3;
}

/** Gossip datagram body budget: datagram bound less envelope (28 header + 16 tag) and framing. */
const GOSSIP_BODY_BUDGET = LIMITS.datagramBytesMax - 44 - 19;

export class Roster {
  readonly #self: MemberEntry;
  readonly #rng: Rng;
  readonly #crypto: RosterCrypto;
  readonly #config: RosterConfig;
  readonly #members = new Map<string, Member>();
  /** The members again, as an array for O(1) random choice. Invariant: same set as #members. */
  readonly #list: Member[] = [];
  /**
   * The news log: members in the order their news arrived, newest last. An element whose index is
   * not its member's newsPosition is stale (the news was spent or superseded). The retransmit limit
   * is evaluated at send time against the current size (as memberlist does), so news added while
   * the cluster was small is not cut short once it has grown.
   */
  #newsOrder: Member[] = [];
  /** Members with news still to spread. Invariant: count of members with newsPosition >= 0. */
  #newsCount = 0;
  readonly #pending = new Map<string, Pending>();
  readonly #gossip: Timeout;
  readonly #sync: Timeout;
  readonly #joinRetry: Timeout;
  #joined: boolean;
  #now = 0;
  #outbox: Outbound[] = [];
  #events: RosterEvent[] = [];
  #changed: MemberEntry[] = [];

  constructor(self: MemberEntry, rng: Rng, crypto: RosterCrypto, config: RosterConfig) {
    assert(crypto.idOf(self.pub) === self.id, "Roster: self id must derive from the public key");
    assert(config.gossipTicks > 0 && config.syncTicks > 0, "Roster: periods must be positive");
    this.#self = self;
    this.#rng = rng;
    this.#crypto = crypto;
    this.#config = config;
    this.#gossip = new Timeout("gossip", config.gossipTicks);
    this.#sync = new Timeout("sync", config.syncTicks);
    this.#joinRetry = new Timeout("join-retry", config.joinRetryTicks);
    // Spread the first rounds so that nodes started together do not gossip in lockstep.
    this.#gossip.backoff(rng, config.gossipTicks);
    this.#sync.backoff(rng, config.syncTicks);
    this.#joined = config.join.length === 0;
    if (!this.#joined) this.#joinRetry.start();
  }

  get self(): MemberEntry {
    return this.#self;
  }

  get joined(): boolean {
    return this.#joined;
  }

  /** Members other than this node, in insertion order. */
  members(): IterableIterator<Member> {
    return this.#members.values();
  }

  get size(): number {
    return this.#members.size + 1;
  }

  member(id: string): Member | undefined {
    return this.#members.get(id);
  }

  /** Restores members remembered from a previous run, before any network traffic. */
  restore(entries: readonly MemberEntry[]): void {
    for (const entry of entries) {
      if (entry.id === this.#self.id || this.#crypto.idOf(entry.pub) !== entry.id) continue;
      this.#insert(entry);
    }
    // A node that knew others before its restart announces itself to them, joined or not.
    if (this.#members.size > 0) this.#joined = true;
  }

  /** Records that an authenticated packet arrived from `id`. */
  heard(id: string): void {
    const member = this.#members.get(id);
    if (member !== undefined) member.lastHeardTick = this.#now;
  }

  step(sender: string, message: Message): void {
    switch (message.t) {
      case "hello": return this.#onHello(sender, message.entry);
      case "challenge": return this.#onChallenge(sender, message.nonce);
      case "proof": return this.#onProof(sender, message.entry, message.nonce, message.sig);
      case "welcome": return this.#onWelcome(sender, message.members);
      case "gossip": return this.#merge(message.members);
      case "sync": return this.#onSync(sender, message.reply, message.members);
      case "ping":
      case "ack":
      case "swim-ping":
      case "swim-ping-req":
      case "swim-ack":
      case "swim-nack":
      case "swim-gossip":
      case "swim-sync":
        return;
      default:
        return assertNever(message, "Roster: unhandled message");
    }
  }

  tick(): void {
    this.#now++;
    this.#gossip.tick();
    this.#sync.tick();
    this.#joinRetry.tick();
    if (this.#joinRetry.fired()) {
      this.#joinRetry.reset();
      this.#sendHello();
    }
    if (this.#gossip.fired()) {
      this.#gossip.reset();
      this.#sendGossip();
    }
    if (this.#sync.fired()) {
      this.#sync.setAfter(this.#syncPeriod());
      this.#sendSync();
    }
    if (this.#pending.size > 0 && (this.#now & 63) === 0) this.#expirePending();
  }

  /** Sends the first hello at once instead of waiting for the retry timer. */
  startJoin(): void {
    if (!this.#joined) this.#sendHello();
  }

  ready(): RosterReady {
    const ready = { messages: this.#outbox, events: this.#events, changed: this.#changed };
    this.#outbox = [];
    this.#events = [];
    this.#changed = [];
    return ready;
  }

  hasReady(): boolean {
    return this.#outbox.length > 0 || this.#events.length > 0 || this.#changed.length > 0;
  }

  #sendHello(): void {
    for (const to of this.#config.join) this.#outbox.push({ to, channel: "datagram", message: { t: "hello", entry: this.#self } });
  }

  #onHello(sender: string, entry: MemberEntry): void {
    if (entry.id !== sender || this.#crypto.idOf(entry.pub) !== entry.id) {
      this.#events.push({ type: "join-refused", from: sender, reason: "id does not match public key" });
      return;
    }
    if (!this.#pending.has(entry.id) && this.#pending.size >= LIMITS.handshakesMax) {
      this.#events.push({ type: "join-refused", from: sender, reason: "too many handshakes in progress" });
      return;
    }
    const nonce = new Uint8Array(16);
    for (let i = 0; i < 16; i += 4) {
      const word = this.#rng.nextU32();
      nonce[i] = word & 0xff;
      nonce[i + 1] = (word >>> 8) & 0xff;
      nonce[i + 2] = (word >>> 16) & 0xff;
      nonce[i + 3] = word >>> 24;
    }
    this.#pending.set(entry.id, { nonce, entry, expiresTick: this.#now + LIMITS.handshakeTicksMax });
    this.#outbox.push({ to: entry.addr, channel: "datagram", message: { t: "challenge", nonce } });
  }

  #onChallenge(seedId: string, nonce: Uint8Array): void {
    const sig = this.#crypto.sign(joinTranscript(nonce, this.#self.id, seedId));
    const seed = this.#members.get(seedId);
    const targets = seed !== undefined ? [seed.entry.addr] : this.#config.join;
    for (const to of targets) {
      this.#outbox.push({ to, channel: "datagram", message: { t: "proof", entry: this.#self, nonce, sig } });
    }
  }

  #onProof(sender: string, entry: MemberEntry, nonce: Uint8Array, sig: Uint8Array): void {
    const pending = this.#pending.get(sender);
    if (pending === undefined || entry.id !== sender || !bytesEqual(pending.nonce, nonce)) {
      this.#events.push({ type: "join-refused", from: sender, reason: "no matching challenge" });
      return;
    }
    this.#pending.delete(sender);
    if (!bytesEqual(pending.entry.pub, entry.pub) || !this.#crypto.verify(entry.pub, joinTranscript(nonce, sender, this.#self.id), sig)) {
      this.#events.push({ type: "join-refused", from: sender, reason: "bad signature" });
      return;
    }
    this.#merge([entry]);
    this.#outbox.push({ to: entry.addr, channel: "stream", message: { t: "welcome", members: this.#table() } });
  }

  #onWelcome(sender: string, members: readonly MemberEntry[]): void {
    this.#merge(members);
    if (!this.#joined) {
      this.#joined = true;
      this.#joinRetry.stop();
      this.#events.push({ type: "joined", via: sender, members: this.size });
    }
  }

  #onSync(sender: string, reply: boolean, members: readonly MemberEntry[]): void {
    this.#merge(members);
    const peer = this.#members.get(sender);
    if (reply && peer !== undefined) {
      this.#outbox.push({ to: peer.entry.addr, channel: "stream", message: { t: "sync", reply: false, members: this.#table() } });
    }
  }

  /**
   * Applies entries heard from peers: unknown ids are added, higher incarnations replace, and every
   * change is passed on as news, however it was learned (as memberlist does). Not re-spreading what
   * a welcome or sync taught was tried: early joiners then missed later ones, because only the
   * seed spread those and most receivers already knew them from their own welcome.
   */
  #merge(entries: readonly MemberEntry[]): void {
    for (const entry of entries) {
      if (entry.id === this.#self.id) continue;
      const known = this.#members.get(entry.id);
      if (known !== undefined && entry.incarnation <= known.entry.incarnation) continue;
      // The id is the hash of the key: an entry cannot claim another node's id.
      if (this.#crypto.idOf(entry.pub) !== entry.id) continue;
      let member: Member;
      if (known === undefined) {
        if (this.#members.size + 1 >= LIMITS.membersMax) continue;
        member = this.#insert(entry);
        this.#events.push({ type: "member-joined", id: entry.id, addr: entry.addr });
      } else {
        known.entry = entry;
        member = known;
        this.#events.push({ type: "member-updated", id: entry.id, addr: entry.addr, incarnation: entry.incarnation });
      }
      this.#changed.push(entry);
      this.#addNews(member);
    }
  }

  #insert(entry: MemberEntry): Member {
    const member: Member = { entry, lastHeardTick: -1, newsSent: 0, newsPosition: -1 };
    this.#members.set(entry.id, member);
    this.#list.push(member);
    return member;
  }

  #randomMember(): Member | undefined {
    if (this.#list.length === 0) return undefined;
    return this.#list[this.#rng.int(this.#list.length)];
  }

  #sendGossip(): void {
    const target = this.#randomMember();
    if (target === undefined) return;
    const members: MemberEntry[] = [this.#self];
    let bytes = entryBytesMax(this.#self);
    // Newest changes first: walk the news log from its end, skipping stale positions.
    const order = this.#newsOrder;
    const limit = this.#retransmitLimit();
    for (let i = order.length - 1; i >= 0 && members.length < LIMITS.gossipEntriesMax; i--) {
      const member = order[i] as Member;
      if (member.newsPosition !== i) {
        // Stale news at the end of the log is dropped for good, so later walks do not skip it again.
        if (i === order.length - 1) order.pop();
        continue;
      }
      const size = entryBytesMax(member.entry);
      if (bytes + size > GOSSIP_BODY_BUDGET) break;
      bytes += size;
      members.push(member.entry);
      if (++member.newsSent >= limit) {
        member.newsPosition = -1;
        this.#newsCount--;
        if (i === order.length - 1) order.pop();
      }
    }
    this.#compactNews();
    this.#outbox.push({ to: target.entry.addr, channel: "datagram", message: { t: "gossip", members } });
  }

  #addNews(member: Member): void {
    if (member.newsPosition < 0) this.#newsCount++;
    member.newsSent = 0;
    member.newsPosition = this.#newsOrder.length;
    this.#newsOrder.push(member);
  }

  /** Drops stale positions once they outnumber live ones; amortised O(1) per change. */
  #compactNews(): void {
    if (this.#newsOrder.length < 64 || this.#newsOrder.length < 2 * this.#newsCount) return;
    const order: Member[] = [];
    for (let i = 0; i < this.#newsOrder.length; i++) {
      const member = this.#newsOrder[i] as Member;
      if (member.newsPosition !== i) continue;
      member.newsPosition = order.length;
      order.push(member);
    }
    this.#newsOrder = order;
  }

  #sendSync(): void {
    const target = this.#randomMember();
    if (target === undefined) return;
    this.#outbox.push({ to: target.entry.addr, channel: "stream", message: { t: "sync", reply: true, members: this.#table() } });
  }

  #table(): MemberEntry[] {
    const out: MemberEntry[] = [this.#self];
    for (const member of this.#members.values()) out.push(member.entry);
    return out;
  }

  #retransmitLimit(): number {
    return this.#config.retransmitMult * Math.ceil(Math.log10(this.size + 1));
  }

  #syncPeriod(): number {
    const n = this.size;
    const scale = n <= 32 ? 1 : 1 + Math.log2(n / 32);
    return Math.ceil(this.#config.syncTicks * scale);
  }

  #expirePending(): void {
    for (const [id, pending] of this.#pending) {
      if (pending.expiresTick <= this.#now) this.#pending.delete(id);
    }
  }
}
