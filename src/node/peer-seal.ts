// Whom a packet is sealed for (docs/protocols/wire.md "Keys", docs/adr/012-trust.md). Packets go
// under the key of the pair (sender, receiver) and name the receiver's boot epoch, so the kernel
// needs, for every send, the receiver's key and current epoch, and, for every packet in, the
// sender's key. Both come from SWIM's signed entries; this table adds what the entries lag behind:
//
// - the newest epoch each member's own authenticated packets carried (a restarted member speaks
//   before its new entry has reached us);
// - which members have sent us a packet under our pair key since this boot: they know our key
//   and our epoch. During the first INTRO_WINDOW_TICKS after boot (while our alive news is still
//   spreading), to any other member we first send an introduction — an intro packet (cluster key)
//   carrying nothing but our own signed entry, as a one-update swim-gossip — once, so a member
//   that has not learned of us yet can open what follows. After that window introductions are
//   only sent when asked for (below): a settled cluster pays nothing for them.
//
// A member may forget us (its tombstone of us expired, its store was lost). Its drop of our packet
// ("unknown") is answered with its own introduction, to the datagram's source address, at most
// once per INTRO_TICKS per address; an introduction from a member is taken to mean it may not know
// us, so we introduce ourselves again before our next packet to it.
//
// Everything is bounded by LIMITS.membersMax entries per map; a full map forgets members SWIM no
// longer holds, then drops its oldest (the cost is an extra introduction, never a wrong key).
import { LIMITS } from "../core/util/limits.ts";
import { entryToWire, type Message, type MessageOf } from "../core/wire/messages.ts";
import type { Membership } from "./body/membership.ts";
import type { SealPeer } from "./ports.ts";

/** Ticks between two introductions to one member (or answers to one address): the rate limit. */
export const INTRO_TICKS = LIMITS.node.introTicks;
/** Ticks after boot during which we introduce ourselves, unasked, to each member once. */
export const INTRO_WINDOW_TICKS = LIMITS.node.introWindowTicks;

export class PeerSeal {
  /** Sends an intro packet (the kernel's seal and transport). */
  readonly #sendIntro: (to: string, message: Message) => void;
  /** Tick of the last packet under our pair key, by member. */
  readonly #heard = new Map<string, number>();
  /** Tick we last introduced ourselves, by member. */
  readonly #introduced = new Map<string, number>();
  /** Members that introduced themselves since they last heard from us: they are owed ours. */
  readonly #owed = new Set<string>();
  /** Tick we last answered an unknown sender at an address with our introduction. */
  readonly #answered = new Map<string, number>();
  /** Newest epoch a member's authenticated packets carried, where it is newer than its entry's. */
  readonly #epochs = new Map<string, number>();
  constructor(sendIntro: (to: string, message: Message) => void) {
    this.#sendIntro = sendIntro;
  }

  /** An authenticated packet under the pair key arrived from `id`, sent in its boot `epoch`. */
  heard(members: Membership, id: string, epoch: number, tick: number): void {
    bounded(this.#heard, members, id).set(id, tick);
    if (epoch > (members.epochOf(id) ?? 0)) bounded(this.#epochs, members, id).set(id, epoch);
    else if (this.#epochs.size > 0) this.#epochs.delete(id);
  }

  /** The receiver of a packet to `addr` (to member `id` when the sender knows it), or null for no member. */
  target(members: Membership, addr: string, id: string | undefined): SealPeer | null {
    const to = id ?? members.idAt(addr);
    if (to === undefined) return null;
    const peer = members.sealPeer(to);
    if (peer === undefined) return null;
    const newer = this.#epochs.size > 0 ? this.#epochs.get(to) : undefined;
    return newer !== undefined && newer > peer.epoch ? { ...peer, epoch: newer } : peer;
  }

  /** Member `id` introduced itself: it may not know us (a restart, a lost store, a forgotten tombstone). */
  introduced(id: string): void {
    this.#heard.delete(id);
    if (this.#owed.size < LIMITS.membersMax) this.#owed.add(id);
  }

  /**
   * A packet from `sender`, which we hold no entry for: a datagram is answered with our
   * introduction (its source is the sender's address), at most once per INTRO_TICKS per address.
   * Returns the drop's detail.
   */
  unknown(members: Membership, sender: string, channel: "datagram" | "stream", from: string, tick: number): string {
    if (channel === "datagram") this.#answer(members, from, from, tick);
    return `no entry for ${sender}`;
  }

  /**
   * A packet from `sender` sealed for another boot of ours (a replay, or a member that holds our
   * old epoch: we restarted while cut off from it). A member we know is told our current entry at
   * its address, at most once per INTRO_TICKS. Returns the drop's detail.
   */
  stale(members: Membership, sender: string, epoch: number, tick: number): string {
    const addr = members.addressOf(sender);
    if (addr !== undefined) this.#answer(members, sender, addr, tick);
    return `sealed for boot ${epoch} by ${sender}`;
  }

  /** Our introduction to `addr`, unless one went for `key` (an address or a member) within INTRO_TICKS. */
  #answer(members: Membership, key: string, addr: string, tick: number): void {
    const last = this.#answered.get(key);
    if (last !== undefined && tick - last < INTRO_TICKS) return;
    bounded(this.#answered, members, key).set(key, tick);
    this.#sendIntro(addr, introduction(members));
  }

  /** The receiver to seal for (see target), introducing ourselves first when it may not know us. */
  route(members: Membership, addr: string, id: string | undefined, tick: number): SealPeer | null {
    const peer = this.target(members, addr, id);
    if (peer !== null && this.introduce(members, peer.id, tick)) this.#sendIntro(addr, introduction(members));
    return peer;
  }

  /** Whether to introduce ourselves to `id` before a packet under the pair key (and note it). */
  introduce(members: Membership, id: string, tick: number): boolean {
    // A member we hold dead is introduced to even when we heard it before (we talk to it only to
    // reconnect: it may have restarted since, holding us dead, or forgotten us, or our old epoch).
    const dead = members.stateOf(id) === "dead";
    if (this.#heard.has(id) && !dead) return false;
    const last = this.#introduced.get(id);
    // Owed (it introduced itself to us), or a member we hold dead.
    const owed = this.#owed.has(id) || dead;
    if (!owed && (tick >= INTRO_WINDOW_TICKS || last !== undefined)) return false;
    if (owed && last !== undefined && tick - last < INTRO_TICKS) return false;
    this.#owed.delete(id);
    bounded(this.#introduced, members, id).set(id, tick);
    return true;
  }
}

/** The introduction: our signed entry, alone, as SWIM news. */
export function introduction(members: Membership): MessageOf<"swim-gossip"> {
  return { t: "swim-gossip", updates: [[0, entryToWire(members.self)]] };
}

/** Whether an intro packet's message is an introduction by its own sender (all an intro may carry besides the handshake). */
export function isIntroduction(sender: string, message: Message): boolean {
  if (message.t !== "swim-gossip" || message.updates.length !== 1) return false;
  const update = message.updates[0];
  return update !== undefined && update[0] === 0 && update[1][0] === sender;
}

/** `map`, with room for `id`: when full, members SWIM no longer holds are forgotten first. */
function bounded<V>(map: Map<string, V>, members: Membership, id: string): Map<string, V> {
  if (map.size >= LIMITS.membersMax && !map.has(id)) {
    for (const known of map.keys()) if (members.stateOf(known) === undefined) map.delete(known);
    if (map.size >= LIMITS.membersMax) map.delete(map.keys().next().value as string);
  }
  return map;
}
