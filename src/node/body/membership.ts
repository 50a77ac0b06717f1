// Membership (Body layer): the roster's join handshake admits members into SWIM, which owns the
// member table and failure detection; degrade derives the mode from SWIM's live count. This
// subsystem also keeps the member table in the store (an unsynced cache: SWIM rebuilds it), the
// incarnation (durably, before a refutation is announced), and the push-pulls SWIM alone does not
// do: one soon after joining, and one with a member held dead every reconnect period (serf's
// reconnect, so the two sides of a healed partition find each other again).
import { modeOf, type Mode } from "../../core/body/degrade.ts";
import { Roster } from "../../core/body/roster.ts";
import { Swim, type SwimEvent, type SwimState } from "../../core/body/swim.ts";
import { aliveMessage, claimMessage, EntryChecker, signEntry, type AliveFields, type Claim } from "../../core/body/trust.ts";
import { assert } from "../../core/util/assert.ts";
import { LIMITS } from "../../core/util/limits.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import { entryFromWire, entryToWire, isMemberEntryWire, type MemberEntry, type Role, type RosterMessage, type SwimMessage } from "../../core/wire/messages.ts";
import { KEY_EPOCH, readNumber, writeNumber } from "../store-values.ts";
import { clearEntries, sized } from "./persist.ts";
import type { Members, PersistSection, SubsystemContext } from "../subsystem-context.ts";
import type { KernelConfig } from "../config.ts";
import type { SealPeer, StoreWrite } from "../ports.ts";

export const KEY_INCARNATION = "kernel/incarnation";
const PREFIX_MEMBER = "roster/member/";
/** Mode changes kept for `degrade`. */
const MODE_HISTORY_MAX = LIMITS.node.modeHistoryMax;
/** Ticks after joining at which the node push-pulls with a random member (2 s). */
const JOIN_SYNC_TICKS = 200;
const STATE_RANK: Readonly<Record<SwimState, number>> = { alive: 0, suspect: 1, dead: 2, left: 3 };

export interface ModeChange {
  readonly tick: number;
  readonly mode: Mode;
  readonly previous: Mode;
  readonly alive: number;
}

export interface MemberStatus {
  readonly id: string;
  readonly name: string;
  readonly addr: string;
  readonly role: Role;
  readonly state: SwimState;
  readonly incarnation: number;
  /** Ticks since a packet from the member arrived; undefined when never heard directly. */
  readonly lastHeardTicks: number | undefined;
  readonly self: boolean;
}

export class Membership implements Members {
  /** Believes members' entries only with the owner's certificate and their own signature. */
  readonly checker: EntryChecker;
  readonly roster: Roster;
  readonly swim: Swim;
  readonly #ctx: SubsystemContext;
  readonly #config: KernelConfig;
  #mode: Mode;
  readonly #modeHistory: ModeChange[] = [];
  /** Last tick a packet from each member arrived; bounded by the member table (forgotten members go). */
  readonly #lastHeard = new Map<string, number>();
  /** Members changed since the last persist round. */
  readonly #dirty = new Set<string>();
  #joinSyncTick = -1;
  #loopPenalty = 0;
  #loopPenaltyUntil = 0;

  constructor(ctx: SubsystemContext, config: KernelConfig) {
    this.#ctx = ctx;
    this.#config = config;
    const { store, identity, trust } = ctx;
    const incarnation = (readNumber(store.get(KEY_INCARNATION)) ?? -1) + 1;
    ctx.persist([{ key: KEY_INCARNATION, value: writeNumber(incarnation) }], true);
    this.checker = new EntryChecker(trust.owner, identity, () => ctx.clock.nowMs(), LIMITS.membersMax);
    // The role is the one the owner granted this key, whatever the configuration asks for.
    const granted = this.checker.checkCert(identity.publicKey, trust.cert, identity.id);
    assert(typeof granted !== "string", `Membership: this node's certificate is not valid for the cluster's owner key (${String(granted)})`);
    const self = signEntry(identity, {
      id: identity.id, addr: ctx.address, role: granted.role, name: config.name, incarnation, epoch: ctx.epoch,
    }, trust.cert);
    const checker = this.checker;
    const crypto = {
      idOf: (pub: Uint8Array) => identity.idOf(pub),
      check: (entry: MemberEntry) => checker.check(entry) === undefined,
      signAlive: (fields: AliveFields) => identity.sign(aliveMessage(fields)),
      signClaim: (claim: Claim) => identity.sign(claimMessage(claim)),
      // A revoked member's claims are refused like its entries.
      checkClaim: (claim: Claim, key: Uint8Array, sig: Uint8Array) => !checker.isRevoked(claim.from) && identity.verify(key, claimMessage(claim), sig),
    };
    const swim = new Swim(self, ctx.rng, crypto, config.swim);
    this.swim = swim;
    this.roster = new Roster(self, ctx.rng, { ...identity, sign: (data) => identity.sign(data), verify: (k, d, g) => identity.verify(k, d, g), idOf: crypto.idOf, check: crypto.check }, {
      admit: (entry) => swim.add(entry),
      table: () => swim.table(),
      welcomed: (from, states) => swim.step(from, { t: "swim-sync", reply: false, states }),
    }, { ...config.roster, join: config.join });
    const restored = this.#restore();
    for (const entry of restored) swim.add(entry);
    // A node that knew others before its restart is already in; SWIM's probes announce it. The
    // member table is an unsynced cache: push-pull soon after boot to relearn members it lost.
    if (restored.length > 0) {
      this.roster.rejoin();
      this.#joinSyncTick = JOIN_SYNC_TICKS;
    }
    this.#mode = modeOf(swim.size);
  }

  get self(): MemberEntry {
    return this.swim.self;
  }

  get size(): number {
    return this.swim.size;
  }

  get left(): boolean {
    return this.swim.left;
  }

  get mode(): Mode {
    return this.#mode;
  }

  get modeHistory(): readonly ModeChange[] {
    return this.#modeHistory;
  }

  liveIds(): string[] {
    return this.swim.liveIds();
  }

  stateOf(id: string): SwimState | undefined {
    return this.swim.stateOf(id);
  }

  roleOf(id: string): Role | undefined {
    return this.swim.member(id)?.entry.role;
  }

  publicKeyOf(id: string): Uint8Array | undefined {
    if (id === this.self.id) return this.self.pub;
    // A revoked member's packets no longer open: SWIM then finds it dead, and its entries are refused.
    return this.checker.isRevoked(id) ? undefined : this.swim.keyOf(id);
  }

  revoke(id: string): void {
    if (id !== this.self.id) this.checker.revoke(id);
  }

  isRevoked(id: string): boolean {
    return this.checker.isRevoked(id);
  }

  addressOf(id: string): string | undefined {
    return this.swim.addressOf(id);
  }

  /** The member at an address (SWIM sends to addresses; packets are sealed for members). */
  idAt(addr: string): string | undefined {
    return this.swim.idAt(addr);
  }

  /** The boot epoch member `id`'s entry names; undefined when unknown. */
  epochOf(id: string): number | undefined {
    return this.swim.epochOf(id);
  }

  /** What a packet to member `id` is sealed for: its key and the boot epoch its entry names. */
  sealPeer(id: string): SealPeer | undefined {
    const pub = this.swim.keyOf(id);
    return pub === undefined ? undefined : { id, pub, epoch: this.swim.epochOf(id) as number };
  }

  /** Every member and this node, with roles and states (for Raft's voter management). */
  everyone(): Array<{ id: string; role: Role; state: SwimState }> {
    const out: Array<{ id: string; role: Role; state: SwimState }> = [{ id: this.self.id, role: this.self.role, state: this.swim.left ? "left" : "alive" }];
    for (const member of this.swim.members()) out.push({ id: member.entry.id, role: member.entry.role, state: member.state });
    return out;
  }

  /** Members including this node, for status, `nodes` and the API. */
  statuses(): MemberStatus[] {
    const self = this.swim.self;
    const now = this.#ctx.tick();
    const out: MemberStatus[] = [{
      id: self.id, name: self.name, addr: self.addr, role: self.role, state: this.swim.left ? "left" : "alive",
      incarnation: self.incarnation, lastHeardTicks: 0, self: true,
    }];
    for (const { entry, state } of this.swim.members()) {
      const heard = this.#lastHeard.get(entry.id);
      out.push({
        id: entry.id, name: entry.name, addr: entry.addr, role: entry.role, state, incarnation: entry.incarnation,
        lastHeardTicks: heard === undefined ? undefined : now - heard, self: false,
      });
    }
    return out;
  }

  /** Any authenticated packet from a member (called by the kernel's receive pipeline). */
  heard(id: string): void {
    // SWIM probes first the members nothing was heard from (src/core/body/swim.ts, heard()).
    this.swim.heard(id);
    const heard = this.#lastHeard;
    if (heard.size >= LIMITS.membersMax && !heard.has(id)) {
      // Full: forget senders SWIM no longer holds (forgotten members, strangers), then retry.
      for (const known of heard.keys()) if (this.swim.member(known) === undefined) heard.delete(known);
      if (heard.size >= LIMITS.membersMax) return;
    }
    heard.set(id, this.#ctx.tick());
  }

  start(): void {
    this.roster.startJoin();
    this.#drain();
  }

  step(from: string, message: RosterMessage | SwimMessage): void {
    if (message.t === "hello" || message.t === "challenge" || message.t === "proof" || message.t === "welcome") this.roster.step(from, message);
    else this.swim.step(from, message);
    this.#drain();
  }

  tick(tick: number): void {
    this.roster.tick();
    this.swim.tick();
    if (this.#loopPenaltyUntil !== 0 && tick >= this.#loopPenaltyUntil) {
      this.#loopPenaltyUntil = 0;
      this.#loopPenalty = 0;
      this.swim.setLoopDelayPenalty(0);
    }
    if (tick % this.#config.reconnectTicks === 0) this.#pushPull(this.swim.deadIds());
    if (tick === this.#joinSyncTick) this.#pushPull(this.swim.liveIds());
    this.#drain();
  }

  /** Graceful leave: SWIM tells the others this node is leaving (they mark it left, not dead). */
  leave(): void {
    if (this.swim.left) return;
    this.swim.leave();
    this.#drain();
  }

  /**
   * The host's event loop was blocked for `ms`. Lifeguard: a node whose own loop stalls scales its
   * probe timeouts up for a while, instead of blaming its peers.
   */
  noteLoopDelay(ms: number): void {
    const { swim: config, tickMs } = this.#config;
    // One step per (longest) probe timeout of stall: a stall shorter than that costs no ack.
    const stepMs = config.probeTimeoutTicks * tickMs;
    if (!(ms >= stepMs)) return;
    const penalty = Math.min(LIMITS.swimAwarenessMax - 1, Math.ceil(ms / stepMs));
    this.#loopPenalty = Math.max(penalty, this.#loopPenaltyUntil === 0 ? 0 : this.#loopPenalty);
    this.swim.setLoopDelayPenalty(this.#loopPenalty);
    this.#loopPenaltyUntil = this.#ctx.tick() + 2 * config.probeTicks;
  }

  persist(): StoreWrite[] {
    const batch: StoreWrite[] = [];
    for (const id of this.#dirty) {
      const member = this.swim.member(id);
      batch.push({ key: PREFIX_MEMBER + id, value: member === undefined ? undefined : packValue([entryToWire(member.entry), STATE_RANK[member.state]]) });
    }
    this.#dirty.clear();
    return batch;
  }

  sections(): PersistSection[] {
    const { store } = this.#ctx;
    const members = store.scan(PREFIX_MEMBER, LIMITS.membersMax);
    const incarnation = ([KEY_EPOCH, KEY_INCARNATION] as const).flatMap((key) => {
      const value = store.get(key);
      return value === undefined ? [] : [[key, value] as [string, Uint8Array]];
    });
    return [
      { name: "incarnation", ...sized(incarnation), durable: true },
      {
        name: "members", ...sized(members), durable: false,
        // Forgets the table on disk only: SWIM's live view stays, and is written again as it changes.
        clear: () => {
          this.#dirty.clear();
          return clearEntries(this.#ctx, members);
        },
      },
    ];
  }

  /** Pulls the roster's and SWIM's ready into the outbox (durable incarnation first). */
  #drain(): void {
    const ctx = this.#ctx;
    for (let round = 0; round < LIMITS.node.membershipDrainRoundsMax && (this.roster.hasReady() || this.swim.hasReady()); round++) {
      const roster = this.roster.ready();
      const swim = this.swim.ready();
      let refuted = false;
      for (const event of swim.events) {
        if (event.id === ctx.id) refuted ||= event.type === "member-refuted";
        else this.#dirty.add(event.id);
      }
      // The refutation's incarnation must survive a crash before it is announced: the next boot
      // starts above it, or peers would take the rebooted node's news for old.
      if (refuted) ctx.persist([{ key: KEY_INCARNATION, value: writeNumber(this.swim.incarnation) }], true);
      for (const out of roster.messages) ctx.sendAddr(out.to, out.channel, out.message);
      for (const out of swim.messages) ctx.sendAddr(out.to, out.channel, out.message);
      for (const event of roster.events) {
        if (event.type === "joined") this.#joinSyncTick = ctx.tick() + JOIN_SYNC_TICKS;
        ctx.emit(event.type, event);
      }
      for (const event of swim.events) this.#onSwimEvent(event);
      if (swim.events.length > 0) this.#updateMode();
    }
  }

  #onSwimEvent(event: SwimEvent): void {
    this.#ctx.emit(event.type, event);
  }

  #updateMode(): void {
    const alive = this.swim.size;
    const mode = modeOf(alive);
    if (mode === this.#mode) return;
    const change: ModeChange = { tick: this.#ctx.tick(), mode, previous: this.#mode, alive };
    this.#mode = mode;
    this.#modeHistory.push(change);
    if (this.#modeHistory.length > MODE_HISTORY_MAX) this.#modeHistory.shift();
    this.#ctx.emit("mode-changed", { ...change });
  }

  /** A push-pull of the whole table with one random member of `ids` (bounded: one per call). */
  #pushPull(ids: readonly string[]): void {
    if (ids.length === 0) return;
    const id = ids[this.#ctx.rng.int(ids.length)] as string;
    this.#ctx.send(id, "stream", { t: "swim-sync", reply: true, states: this.swim.table() });
  }

  /** Members remembered as alive or suspect; a bare entry is the format before SWIM, read as alive. */
  #restore(): MemberEntry[] {
    const out: MemberEntry[] = [];
    for (const [, value] of this.#ctx.store.scan(PREFIX_MEMBER, LIMITS.membersMax)) {
      const decoded = unpackValue(value);
      if (isMemberEntryWire(decoded)) out.push(entryFromWire(decoded));
      else if (Array.isArray(decoded) && decoded.length === 2 && isMemberEntryWire(decoded[0]) && (decoded[1] === 0 || decoded[1] === 1)) {
        out.push(entryFromWire(decoded[0]));
      }
    }
    return out.filter((entry) => entry.id !== this.#ctx.id);
  }
}
