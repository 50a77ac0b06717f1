// The roster's door: the join handshake that admits a node into the cluster. A sans-IO core (step /
// tick / ready). It only decides who may enter; what the members are and whether they are alive is
// SWIM's (swim.ts), which the kernel feeds with what the handshake admits.
//
// Join handshake (docs/protocols/membership.md):
//   joiner → seed   hello     { entry }                 datagram
//   seed   → joiner challenge { nonce }                 datagram, nonce fresh from the seeded Rng
//   joiner → seed   proof     { entry, nonce, sig }     sig = Ed25519 over joinTranscript()
//   seed   → joiner welcome   { states }                stream: the seed's SWIM table
// Every packet is already sealed with the cluster key, which proves the token; the hello's entry
// must carry a certificate of the cluster's owner key for its role and the node's own signature
// (src/core/body/trust.ts); the proof adds possession of the identity key the node id derives from.
import { assert, assertNever } from "../util/assert.ts";
import { bytesEqual } from "../util/bytes.ts";
import { LIMITS } from "../util/limits.ts";
import { Outbox, type Ready } from "../util/outbox.ts";
import type { Rng } from "../util/rng.ts";
import { Timeout } from "../util/timeout.ts";
import type { Channel } from "../wire/envelope.ts";
import { isRosterMessage, type MemberEntry, type Message, type SwimUpdateWire } from "../wire/messages.ts";

export interface RosterConfig {
  readonly joinRetryTicks: number;
  /** Addresses of nodes to join through; empty for the first node of a cluster. */
  readonly join: readonly string[];
}

export const ROSTER_DEFAULTS: Omit<RosterConfig, "join"> = {
  joinRetryTicks: 100,
};

/** Signature checks the roster needs; the node passes its Identity port. */
export interface RosterCrypto {
  sign(data: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
  idOf(publicKey: Uint8Array): string;
  /** Whether an entry is believed: the owner's certificate for its role and its own signature (trust.ts). */
  check(entry: MemberEntry): boolean;
}

export interface Outbound {
  /** Destination address ("host:port"). */
  readonly to: string;
  readonly channel: Channel;
  readonly message: Message;
}

export type RosterEvent =
  | { readonly type: "member-admitted"; readonly id: string; readonly addr: string }
  | { readonly type: "joined"; readonly via: string; readonly members: number }
  | { readonly type: "join-refused"; readonly from: string; readonly reason: string };

/**
 * What the handshake asks of the membership it admits into: the seed adds a proven joiner and
 * sends it the whole table; the joiner merges the table it is welcomed with.
 */
export interface RosterMembership {
  admit(entry: MemberEntry): void;
  table(): SwimUpdateWire[];
  welcomed(from: string, states: SwimUpdateWire[]): void;
}

export type RosterReady = Ready<Outbound, RosterEvent>;

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

export class Roster {
  readonly #self: MemberEntry;
  readonly #rng: Rng;
  readonly #crypto: RosterCrypto;
  readonly #membership: RosterMembership;
  readonly #config: RosterConfig;
  readonly #pending = new Map<string, Pending>();
  readonly #joinRetry: Timeout;
  #joined: boolean;
  #now = 0;
  readonly #out = new Outbox<Outbound, RosterEvent>();

  constructor(self: MemberEntry, rng: Rng, crypto: RosterCrypto, membership: RosterMembership, config: RosterConfig) {
    assert(crypto.idOf(self.pub) === self.id, "Roster: self id must derive from the public key");
    assert(config.joinRetryTicks > 0, "Roster: joinRetryTicks must be positive");
    this.#self = self;
    this.#rng = rng;
    this.#crypto = crypto;
    this.#membership = membership;
    this.#config = config;
    this.#joinRetry = new Timeout("join-retry", config.joinRetryTicks);
    this.#joined = config.join.length === 0;
    if (!this.#joined) this.#joinRetry.start();
  }

  get self(): MemberEntry {
    return this.#self;
  }

  get joined(): boolean {
    return this.#joined;
  }

  /** A node that remembers members from a previous run is already in: it need not join again. */
  rejoin(): void {
    this.#joined = true;
    this.#joinRetry.stop();
  }

  /** A message from an authenticated sender; anything but the handshake's is not the roster's. */
  step(sender: string, message: Message): void {
    if (!isRosterMessage(message)) return;
    switch (message.t) {
      case "hello": return this.#onHello(sender, message.entry);
      case "challenge": return this.#onChallenge(sender, message.nonce);
      case "proof": return this.#onProof(sender, message.entry, message.nonce, message.sig);
      case "welcome": return this.#onWelcome(sender, message.states);
      default:
        return assertNever(message, "Roster: unhandled message");
    }
  }

  tick(): void {
    this.#now++;
    this.#joinRetry.tick();
    if (this.#joinRetry.fired()) {
      this.#joinRetry.reset();
      this.#sendHello();
    }
    if (this.#pending.size > 0 && (this.#now & 63) === 0) this.#expirePending();
  }

  /** Sends the first hello at once instead of waiting for the retry timer. */
  startJoin(): void {
    if (!this.#joined) this.#sendHello();
  }

  ready(): RosterReady {
    return this.#out.take();
  }

  hasReady(): boolean {
    return this.#out.hasReady();
  }

  #sendHello(): void {
    for (const to of this.#config.join) this.#out.send({ to, channel: "datagram", message: { t: "hello", entry: this.#self } });
  }

  #onHello(sender: string, entry: MemberEntry): void {
    if (entry.id !== sender || this.#crypto.idOf(entry.pub) !== entry.id) {
      this.#out.emit({ type: "join-refused", from: sender, reason: "id does not match public key" });
      return;
    }
    // Only a key the cluster's owner granted a role enters, and only with an entry it signed.
    if (!this.#crypto.check(entry)) {
      this.#out.emit({ type: "join-refused", from: sender, reason: "no valid certificate or signature" });
      return;
    }
    if (!this.#pending.has(entry.id) && this.#pending.size >= LIMITS.handshakesMax) {
      this.#out.emit({ type: "join-refused", from: sender, reason: "too many handshakes in progress" });
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
    this.#out.send({ to: entry.addr, channel: "datagram", message: { t: "challenge", nonce } });
  }

  /** The proof goes to every join address: only the seed holding this nonce accepts it. */
  #onChallenge(seedId: string, nonce: Uint8Array): void {
    if (this.#joined) return;
    const sig = this.#crypto.sign(joinTranscript(nonce, this.#self.id, seedId));
    for (const to of this.#config.join) {
      this.#out.send({ to, channel: "datagram", message: { t: "proof", entry: this.#self, nonce, sig } });
    }
  }

  #onProof(sender: string, entry: MemberEntry, nonce: Uint8Array, sig: Uint8Array): void {
    const pending = this.#pending.get(sender);
    if (pending === undefined || entry.id !== sender || !bytesEqual(pending.nonce, nonce)) {
      this.#out.emit({ type: "join-refused", from: sender, reason: "no matching challenge" });
      return;
    }
    this.#pending.delete(sender);
    if (!bytesEqual(pending.entry.pub, entry.pub) || !this.#crypto.verify(entry.pub, joinTranscript(nonce, sender, this.#self.id), sig) || !this.#crypto.check(entry)) {
      this.#out.emit({ type: "join-refused", from: sender, reason: "bad signature" });
      return;
    }
    this.#membership.admit(entry);
    this.#out.emit({ type: "member-admitted", id: entry.id, addr: entry.addr });
    this.#out.send({ to: entry.addr, channel: "stream", message: { t: "welcome", states: this.#membership.table() } });
  }

  #onWelcome(sender: string, states: SwimUpdateWire[]): void {
    this.#membership.welcomed(sender, states);
    if (!this.#joined) {
      this.#joined = true;
      this.#joinRetry.stop();
      this.#out.emit({ type: "joined", via: sender, members: states.length });
    }
  }

  #expirePending(): void {
    for (const [id, pending] of this.#pending) {
      if (pending.expiresTick <= this.#now) this.#pending.delete(id);
    }
  }
}
