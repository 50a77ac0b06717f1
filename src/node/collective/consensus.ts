// The consensus service of one node: the Raft core (src/core/collective/raft), the key-value state
// machine behind /v1/kv (src/core/collective/kv.ts), the durable Raft log in the Store, client
// requests waiting for their entries, voter management and regeneration (ADR 007, ADR 008).
// Synchronous like the kernel that owns it: the kernel feeds it messages and ticks and calls
// drain(), which carries out Raft's ready in order — persist (one fsynced batch per drain: group
// commit), send, apply, answer clients — and advances.
import { assert } from "../../core/util/assert.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { Rng } from "../../core/util/rng.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import { decodeConfChange, describeConfState, encodeConfChange } from "../../core/collective/raft/confchange.ts";
import { Raft, RAFT_DEFAULTS, type RaftConfig, type RaftStatus, type Ready } from "../../core/collective/raft/raft.ts";
import { NONE, hardStateEqual, type ConfChange, type ConfState, type Entry, type HardState, type Message as RaftMessage, type Snapshot } from "../../core/collective/raft/types.ts";
import { confFromWire, confToWire, ConfStateWireSchema } from "../../core/collective/raft/wire.ts";
import { KvStore, checkKvWrite, decodeKvCommand, encodeKvCommand, type KvCommand, type KvRecord, type KvResultCode } from "../../core/collective/kv.ts";
import type { Store, StoreWrite } from "../ports.ts";
import { TypeCompiler } from "@sinclair/typebox/compiler";

export interface ConsensusConfig {
  readonly raft: Omit<RaftConfig, "id">;
  /** A client request not answered within this many ticks fails as a timeout (outcome unknown). */
  readonly requestTimeoutTicks: number;
  /** Take a snapshot (and drop the log before it) every this many applied entries. */
  readonly snapshotEntries: number;
  /** Entries kept in memory behind a snapshot, so slightly slow followers still get appends. */
  readonly snapshotKeepEntries: number;
  /** Ticks between voter-management rounds on the leader. */
  readonly manageTicks: number;
  /** At most this many voters (odd counts are preferred). */
  readonly votersMax: number;
  /** At most this many learners: every other member reaches the KV through the voters. */
  readonly learnersMax: number;
  /** A learner is promoted once its log is within this many entries of the leader's. */
  readonly promoteLagMax: number;
  /**
   * Write the Raft log through the store's disk thread (writeAsync) so the event loop keeps
   * working during fsyncs; off, every batch is written and fsynced on the event loop.
   */
  readonly diskThread: boolean;
  /**
   * A request that finds no leader waits up to this many ticks for one (an election usually takes
   * a few hundred ms) before it fails as "no-leader": clients do not see the election. 0: fail at once.
   */
  readonly leaderWaitTicks: number;
  /** At most this many requests wait for a leader; beyond, they fail at once. */
  readonly leaderWaitMax: number;
  /** Regeneration (ADR 008): on by default; off, a cluster that lost a majority of voters waits for them. */
  readonly regenerate: boolean;
  /** A majority of voters must have been declared dead this long before the survivors regenerate. */
  readonly regenerateAfterTicks: number;
}

export const CONSENSUS_DEFAULTS: ConsensusConfig = {
  // 10 ms ticks: heartbeat every 30 ms, elections after 150–300 ms of silence.
  raft: { ...RAFT_DEFAULTS, electionTicks: 15, heartbeatTicks: 3 },
  requestTimeoutTicks: 500,
  snapshotEntries: 10_000,
  snapshotKeepEntries: 1_000,
  manageTicks: 50,
  votersMax: 5,
  learnersMax: 16,
  promoteLagMax: 256,
  diskThread: true,
  leaderWaitTicks: 300,
  leaderWaitMax: 4_096,
  regenerate: true,
  regenerateAfterTicks: 3_000,
};

/** What the node tells the service about the cluster and the world. */
export interface ConsensusHost {
  send(to: string, message: RaftMessage): void;
  /** SWIM's view of one member (undefined: unknown). */
  stateOf(id: string): "alive" | "suspect" | "dead" | "left" | undefined;
  /** Every member SWIM knows, this node included (the leader asks every manageTicks). */
  members(): ReadonlyArray<{ readonly id: string; readonly role: "core" | "contributor"; readonly state: "alive" | "suspect" | "dead" | "left" }>;
  event(type: string, data: Record<string, unknown>): void;
  /** Asks for drain() soon: the disk thread finished a batch. May call drain() at once. */
  wake(): void;
  /** Sends this node's regeneration offer to a member (see offer()). */
  sendOffer(to: string, offer: RegenOffer): void;
  /** This node's granted role: a contributor proposes nothing (the leader would refuse it). */
  role(): "core" | "contributor";
}

export type KvOutcomeCode = KvResultCode | "timeout" | "no-leader" | "leader-changed" | "invalid" | "busy" | "forbidden";

export interface KvOutcome {
  readonly code: KvOutcomeCode;
  /** get: the value; cas conflict: the current value; put/delete: the previous value. */
  readonly value?: Uint8Array | undefined;
  readonly revision?: number;
  /** The leader's id when known (for redirects and errors). */
  readonly leader: string;
  readonly detail?: string;
}

export type KvCallback = (outcome: KvOutcome) => void;

/** A survivor's claim during regeneration: how up to date its log is. */
export interface RegenOffer {
  readonly confEpoch: number;
  readonly lastTerm: number;
  readonly lastIndex: number;
}

interface InFlightBatch {
  readonly messages: RaftMessage[];
  /** The last entry (or snapshot) the batch makes durable, reported to Raft when it is. */
  readonly last: { readonly index: number; readonly term: number } | undefined;
  durable: boolean;
}

interface PendingWrite {
  readonly callback: KvCallback;
  readonly deadline: number;
}

interface ReadBatch {
  readonly context: Uint8Array;
  readonly reads: Array<{ key: string; callback: KvCallback }>;
  readonly deadline: number;
  index: number;
}

const KEY_HARD = "raft/hard";
const KEY_SNAP = "raft/snap";
const KEY_META = "raft/meta";
/** [index of the last configuration entry applied]: everything up to it is committed. */
const KEY_CONF = "raft/conf";
const PREFIX_LOG = "raft/log/";
const CONF_CHECK = TypeCompiler.Compile(ConfStateWireSchema);

function logKey(index: number): string {
  return PREFIX_LOG + index.toString(16).padStart(14, "0");
}

export interface ConsensusStats {
  proposals: number;
  applied: number;
  reads: number;
  /** Batches of the Raft log handed to the store. */
  batches: number;
  /** Fsyncs that made them durable (fewer than batches when the disk thread merged some). */
  fsyncs: number;
  persistedEntries: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  confChanges: number;
  regenerations: number;
  timeouts: number;
}

export class Consensus {
  readonly id: string;
  readonly config: ConsensusConfig;
  readonly kv = new KvStore();
  readonly stats: ConsensusStats = {
    proposals: 0, applied: 0, reads: 0, batches: 0, fsyncs: 0, persistedEntries: 0, snapshotsTaken: 0, snapshotsInstalled: 0,
    confChanges: 0, regenerations: 0, timeouts: 0,
  };
  readonly #store: Store;
  readonly #host: ConsensusHost;
  readonly #rng: Rng;
  readonly #origin: string;
  #raft: Raft;
  #tick = 0;
  #seq = 0;
  readonly #writes = new Map<number, PendingWrite>();
  /** Requests that found no leader, waiting for one (#awaitLeader). */
  #awaiting: Array<{ retry: () => void; callback: KvCallback; deadline: number }> = [];
  #readQueue: Array<{ key: string; callback: KvCallback }> = [];
  #proposals: Uint8Array[] = [];
  /** Committed entries waiting until this node's copy is durable (#applyDurable). */
  readonly #toApply: Entry[] = [];
  /** The last entry applied to the key-value state (Raft's own `applied` runs ahead of it). */
  #applied = 0;
  /** Batches handed to the disk thread, oldest first, with the messages waiting for them. */
  readonly #inflight: InFlightBatch[] = [];
  #draining = false;
  #again = false;
  #proposalSeqs: number[] = [];
  readonly #readBatches: ReadBatch[] = [];
  #readSeq = 0;
  /** Log indexes persisted in the store: [first, last] (empty when last < first). */
  #storedFirst = 1;
  #storedLast = 0;
  #lastLead = NONE;
  /** The newest hard state Raft reported, and the last one handed to the store (#persist). */
  #hard: HardState = { term: 0, vote: NONE, commit: 0 };
  #hardWritten: HardState = { term: 0, vote: NONE, commit: 0 };
  #confEpoch = 0;
  #deadMajoritySince = -1;
  readonly #offers = new Map<string, { offer: RegenOffer; tick: number }>();

  constructor(id: string, epoch: number, rng: Rng, store: Store, host: ConsensusHost, config: ConsensusConfig, bootstrap: boolean) {
    this.id = id;
    this.config = config;
    this.#store = store;
    this.#host = host;
    this.#rng = rng;
    this.#origin = `${id}:${epoch}`;
    this.#raft = this.#restore(bootstrap);
    // Committed entries are applied before the node talks to anyone: the state machine is rebuilt
    // from the snapshot and the log at every boot.
    this.drain();
  }

  get raft(): Raft {
    return this.#raft;
  }

  get confEpoch(): number {
    return this.#confEpoch;
  }

  get leader(): string {
    return this.#raft.lead;
  }

  get isLeader(): boolean {
    return this.#raft.role === "leader";
  }

  /** The current Raft term. */
  get term(): number {
    return this.#raft.term;
  }

  status(): RaftStatus {
    return { ...this.#raft.status(), applied: this.#applied };
  }

  // ---- client requests ----------------------------------------------------------------------

  put(key: string, value: Uint8Array, callback: KvCallback): void {
    this.#write({ op: "put", key, value, expected: undefined }, callback);
  }

  delete(key: string, callback: KvCallback): void {
    this.#write({ op: "delete", key, value: undefined, expected: undefined }, callback);
  }

  /** Writes `value` only if the key holds `expected` (undefined: only if absent). */
  cas(key: string, expected: Uint8Array | undefined, value: Uint8Array, callback: KvCallback): void {
    this.#write({ op: "cas", key, value, expected }, callback);
  }

  /**
   * Leader only: hands leadership to the live voter whose log is furthest along (a node about to
   * restart for an upgrade, ADR 022), so the cluster does not wait out an election. Whom, or undefined.
   */
  transferLeadership(): string | undefined {
    if (this.#raft.role !== "leader") return undefined;
    const status = this.#raft.status();
    let best: string | undefined;
    let bestMatch = -1;
    for (const id of status.conf.voters) {
      const pr = status.progress.get(id);
      if (id === this.id || pr === undefined || this.#host.stateOf(id) !== "alive" || pr.match <= bestMatch) continue;
      best = id;
      bestMatch = pr.match;
    }
    if (best === undefined) return undefined;
    this.#raft.transferLeader(best);
    this.#host.wake();
    return best;
  }

  /** A linearizable read: it waits for a ReadIndex confirmation and for the state to catch up. */
  get(key: string, callback: KvCallback): void {
    if (key.length === 0) {
      callback({ code: "invalid", leader: this.leader, detail: "the key is empty" });
      return;
    }
    if (this.#raft.lead === NONE) {
      this.#awaitLeader(() => this.get(key, callback), callback);
      return;
    }
    this.stats.reads++;
    this.#readQueue.push({ key, callback });
  }

  /** Keys under `prefix` in this node's state (may be stale), at most `limit`. */
  keysLocal(prefix: string, limit: number): string[] {
    return this.kv.keys(prefix, limit).map(([key]) => key);
  }

  /** A read of this node's state without confirming leadership (may be stale). */
  getLocal(key: string): KvRecord | undefined {
    return this.kv.get(key);
  }

  /** A key's value in this node's replica (not linearizable). */
  valueLocal(key: string): Uint8Array | undefined {
    return this.kv.get(key)?.value;
  }

  #write(command: Omit<KvCommand, "origin" | "seq">, callback: KvCallback): void {
    if (this.#host.role() !== "core") {
      callback({ code: "forbidden", leader: this.leader, detail: "this node is a contributor: contributors cannot write consensus keys" });
      return;
    }
    const problem = checkKvWrite(command.key, command.value);
    if (problem !== undefined) {
      callback({ code: "invalid", leader: this.leader, detail: problem });
      return;
    }
    if (this.#raft.lead === NONE) {
      this.#awaitLeader(() => this.#write(command, callback), callback);
      return;
    }
    const seq = ++this.#seq;
    // Proposed at the next drain, together with every other write of this event-loop turn: one
    // append per follower and one fsync carry them all.
    this.#proposals.push(encodeKvCommand({ ...command, origin: this.#origin, seq }));
    this.#proposalSeqs.push(seq);
    this.stats.proposals++;
    this.#writes.set(seq, { callback, deadline: this.#tick + this.config.requestTimeoutTicks });
  }

  /** Parks a request until a leader is known (tick() retries it) or leaderWaitTicks pass. */
  #awaitLeader(retry: () => void, callback: KvCallback): void {
    if (this.#awaiting.length >= this.config.leaderWaitMax || this.config.leaderWaitTicks <= 0) {
      callback({ code: "no-leader", leader: NONE, detail: "no leader is known: the cluster is electing or has lost its quorum" });
      return;
    }
    this.#awaiting.push({ retry, callback, deadline: this.#tick + this.config.leaderWaitTicks });
  }

  #retryAwaiting(): void {
    if (this.#awaiting.length === 0) return;
    if (this.#raft.lead !== NONE) {
      const waiting = this.#awaiting;
      this.#awaiting = [];
      for (const w of waiting) w.retry();
      return;
    }
    const expired = this.#awaiting.filter((w) => w.deadline <= this.#tick);
    if (expired.length === 0) return;
    this.#awaiting = this.#awaiting.filter((w) => w.deadline > this.#tick);
    for (const w of expired) w.callback({ code: "no-leader", leader: NONE, detail: `no leader is known after ${this.config.leaderWaitTicks} ticks: the cluster is electing or has lost its quorum` });
  }

  #proposeQueued(): void {
    const proposals = this.#proposals;
    const seqs = this.#proposalSeqs;
    this.#proposals = [];
    this.#proposalSeqs = [];
    const error = this.#raft.proposeMany(proposals);
    if (error === undefined) return;
    const code: KvOutcomeCode = error === "no-leader" ? "no-leader" : "busy";
    for (const seq of seqs) {
      const pending = this.#writes.get(seq);
      if (pending === undefined) continue;
      this.#writes.delete(seq);
      pending.callback({ code, leader: this.leader, detail: `the proposal was refused: ${error}` });
    }
  }

  // ---- driving ------------------------------------------------------------------------------

  step(message: RaftMessage): void {
    this.#raft.step(message);
  }

  tick(): void {
    this.#tick++;
    this.#raft.tick();
    this.#retryAwaiting();
    if (this.#tick % 10 === 0) this.#expire();
    if (this.#tick % this.config.manageTicks === 0) {
      if (this.#raft.role === "leader") this.#manageVoters();
      this.#watchForRegeneration();
    }
  }

  /** The next `ticks` ticks follow a frozen event loop: Raft's election clock does not count them (Raft.pardon). */
  pardon(ticks: number): void {
    this.#raft.pardon(ticks);
  }

  hasReady(): boolean {
    return this.#raft.hasReady() || this.#readQueue.length > 0 || this.#proposals.length > 0 || this.#inflight[0]?.durable === true;
  }

  /** Carries out everything Raft has ready: persist, send, apply, answer; then advance. */
  drain(): void {
    // A store that completes writes at once (the simulator's) calls back into drain through
    // host.wake(): the nested call only asks this one to go round again.
    if (this.#draining) {
      this.#again = true;
      return;
    }
    this.#draining = true;
    try {
      do {
        this.#again = false;
        this.#drainOnce();
      } while (this.#again);
    } finally {
      this.#draining = false;
    }
  }

  #drainOnce(): void {
    this.#releaseDurable();
    if (this.#proposals.length > 0) this.#proposeQueued();
    if (this.#readQueue.length > 0) this.#startReadBatch();
    for (let round = 0; round < LIMITS.node.raftDrainRoundsMax && this.#raft.hasReady(); round++) {
      const rd = this.#raft.ready();
      const messages = coalesce(rd.messages);
      // A leader's appends leave at once, while its own copy is being written (Raft thesis
      // §10.2.1): it counts itself towards commit only when the disk thread reports the entries
      // durable (Raft.persisted). Everything else — votes, acknowledgements — waits for the batch
      // of this ready and of every earlier one to be durable.
      const early = this.#raft.role === "leader" ? messages.filter((m) => m.type === "app" || m.type === "heartbeat") : [];
      for (const m of early) this.#send(m);
      const later = early.length === 0 ? messages : messages.filter((m) => !early.includes(m));
      this.#persist(rd, later);
      if (rd.snapshot !== undefined) this.#installSnapshot(rd.snapshot);
      for (const entry of rd.committed) this.#toApply.push(entry);
      this.#applyDurable();
      for (const rs of rd.readStates) this.#onReadState(rs.index, rs.context);
      this.#raft.advance(rd);
      if (rd.softState !== undefined) this.#onSoftState();
      this.#serveReads();
      this.#maybeSnapshot();
      this.#releaseDurable();
    }
  }

  /**
   * Sends one message. A snapshot goes over a stream that may break without telling us, so its
   * sending is reported as done at once (etcd's ReportSnapshot): the follower then probes from the
   * snapshot's index, and if the snapshot never arrived its rejection makes the leader send it
   * again, instead of waiting in the snapshot state forever.
   */
  #send(m: RaftMessage): void {
    this.#host.send(m.to, m);
    if (m.type === "snap") this.#raft.reportSnapshot(m.to, true);
  }

  /** Batches the disk thread finished, oldest first: send what waited for them, tell Raft. */
  #releaseDurable(): void {
    let released = false;
    while (this.#inflight.length > 0 && this.#inflight[0]!.durable) {
      const batch = this.#inflight.shift()!;
      for (const m of batch.messages) this.#send(m);
      if (batch.last !== undefined) this.#raft.persisted(batch.last.index, batch.last.term);
      released = true;
    }
    if (released) {
      this.#applyDurable();
      this.#serveReads();
    }
  }

  /**
   * Applies committed entries in order, but only those this node has made durable itself: a
   * configuration entry is applied only once it is in the local log for good (so the index
   * #applyConf records can always be replayed at boot), and entries after it wait their turn.
   */
  #applyDurable(): void {
    const durable = this.#raft.log.durable;
    let i = 0;
    for (; i < this.#toApply.length && this.#toApply[i]!.index <= durable; i++) this.#apply(this.#toApply[i]!);
    if (i > 0) this.#toApply.splice(0, i);
  }

  /**
   * Hands a batch to the store's disk thread; `messages` leave once it (and every batch before
   * it) is durable. With nothing to write they leave at once, unless earlier batches are pending.
   */
  #writeThen(writes: StoreWrite[], messages: readonly RaftMessage[], last: { index: number; term: number } | undefined): void {
    if (writes.length === 0 && last === undefined) {
      const tail = this.#inflight[this.#inflight.length - 1];
      if (tail === undefined) for (const m of messages) this.#send(m);
      else tail.messages.push(...messages);
      return;
    }
    const batch: InFlightBatch = { messages: [...messages], last, durable: false };
    this.#inflight.push(batch);
    this.stats.batches++;
    if (!this.config.diskThread) {
      this.#store.write(writes, { durable: true });
      this.stats.fsyncs++;
      batch.durable = true;
      return;
    }
    this.#store.writeAsync(writes, (error, synced) => {
      // A write the disk refused leaves Raft's promises unkept: stop (DESIGN.md §2 rule 5).
      assert(error === undefined, `Consensus: the Raft log could not be written: ${error?.message ?? ""}`);
      // The disk thread may commit several batches with one fsync (group commit): count that once.
      if (synced !== false) this.stats.fsyncs++;
      batch.durable = true;
      this.#host.wake();
    });
  }

  // ---- persistence --------------------------------------------------------------------------

  #restore(bootstrap: boolean): Raft {
    // Every write goes through the store's disk thread (writeAsync): the leader counts itself only
    // for entries the thread reported durable.
    const config: RaftConfig = { ...this.config.raft, id: this.id, asyncStorage: true };
    const hard = readHard(this.#store.get(KEY_HARD));
    const snapshot = readSnapshot(this.#store.get(KEY_SNAP));
    const meta = unpackValue(this.#store.get(KEY_META) ?? new Uint8Array(0));
    if (Array.isArray(meta) && typeof meta[0] === "number") {
      this.#confEpoch = meta[0];
      this.stats.regenerations = typeof meta[1] === "number" ? meta[1] : 0;
    }
    const base = snapshot?.meta.index ?? 0;
    // The state machine starts from the last snapshot; the committed entries after it are
    // applied again by the first drain.
    if (snapshot !== undefined) this.#loadSnapshot(snapshot, "stored");
    const entries: Entry[] = [];
    for (const [key, value] of this.#store.scan(PREFIX_LOG)) {
      const index = Number.parseInt(key.slice(PREFIX_LOG.length), 16);
      const entry = readEntry(index, value);
      if (entry === undefined || index <= base) continue;
      if (index !== base + entries.length + 1) break; // a gap: nothing after it can be trusted
      entries.push(entry);
    }
    this.#storedFirst = base + 1;
    this.#storedLast = base + entries.length;
    if (hard === undefined && snapshot === undefined && entries.length === 0 && bootstrap) {
      // A new cluster: this node is its first voter. The configuration is entry 1 of the log (so
      // it survives restarts like any other entry), committed at once by the single voter.
      const founding: Entry = { term: 1, index: 1, type: "conf", data: encodeConfChange({ changes: [{ type: "add-voter", node: this.id }], transition: "auto" }) };
      const first: HardState = { term: 1, vote: NONE, commit: 1 };
      this.#store.write([{ key: KEY_HARD, value: writeHard(first) }, { key: logKey(1), value: writeEntry(founding) }], { durable: true });
      this.#storedLast = 1;
      this.#host.event("raft-bootstrapped", { id: this.id });
      this.#hard = this.#hardWritten = first;
      return new Raft(config, this.#rng, { hardState: first, entries: [founding] });
    }
    if (hard !== undefined) this.#hard = this.#hardWritten = hard;
    const confIndex = unpackValue(this.#store.get(KEY_CONF) ?? new Uint8Array(0));
    const applied = Array.isArray(confIndex) && typeof confIndex[0] === "number" ? confIndex[0] : 0;
    return new Raft(config, this.#rng, {
      ...(hard !== undefined ? { hardState: { ...hard, commit: Math.min(Math.max(hard.commit, base, applied), base + entries.length) } } : {}),
      ...(snapshot !== undefined ? { snapshot } : {}),
      entries,
    });
  }

  #persist(rd: Ready, messages: readonly RaftMessage[]): void {
    const writes: StoreWrite[] = [];
    if (rd.hardState !== undefined) this.#hard = rd.hardState;
    if (rd.snapshot !== undefined) {
      writes.push({ key: KEY_SNAP, value: writeSnapshot(rd.snapshot) });
      for (let i = this.#storedFirst; i <= this.#storedLast; i++) writes.push({ key: logKey(i), value: undefined });
      this.#storedFirst = rd.snapshot.meta.index + 1;
      this.#storedLast = rd.snapshot.meta.index;
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      const last = rd.entries[rd.entries.length - 1]!.index;
      for (const entry of rd.entries) writes.push({ key: logKey(entry.index), value: writeEntry(entry) });
      // Entries past the new end were overwritten by a new leader: remove what is left of them.
      for (let i = Math.max(last + 1, this.#storedFirst); i <= this.#storedLast; i++) writes.push({ key: logKey(i), value: undefined });
      if (first < this.#storedFirst) this.#storedFirst = first;
      this.#storedLast = last;
      this.stats.persistedEntries += rd.entries.length;
    }
    // The hard state goes with anything that must be durable anyway: a new term or vote (before the
    // vote or answer that depends on it leaves), or entries and snapshots, which carry the newest
    // commit index along. A commit index that moved alone is not worth an fsync (etcd-raft's rule:
    // the log and the term and vote must be durable before the messages that depend on them; the
    // commit index is recovered from the log and the quorum). A node restarted with a stale one
    // re-applies less at boot and learns the rest from the leader; its configuration never falls
    // back, since every applied configuration entry is recorded durably (#applyConf, KEY_CONF).
    if ((rd.mustSync || writes.length > 0) && !hardStateEqual(this.#hard, this.#hardWritten)) {
      writes.unshift({ key: KEY_HARD, value: writeHard(this.#hard) });
      this.#hardWritten = this.#hard;
    }
    // One batch per ready: every proposal, vote and append gathered since the last drain shares
    // one fsync (group commit).
    const lastEntry = rd.entries[rd.entries.length - 1];
    const last = lastEntry !== undefined ? { index: lastEntry.index, term: lastEntry.term }
      : rd.snapshot !== undefined ? { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term } : undefined;
    this.#writeThen(writes, messages, last);
  }

  #maybeSnapshot(): void {
    const applied = this.#applied;
    const base = this.#raft.snapshot?.meta.index ?? 0;
    if (applied - base < this.config.snapshotEntries || this.#raft.log.unstableSnapshot !== undefined) return;
    const snapshot = this.#raft.compact(applied, this.#raft.conf, this.#snapshotData(), this.config.snapshotKeepEntries);
    const keepFrom = this.#raft.log.firstIndex();
    const writes: StoreWrite[] = [{ key: KEY_SNAP, value: writeSnapshot(snapshot) }];
    for (let i = this.#storedFirst; i < keepFrom && i <= this.#storedLast; i++) writes.push({ key: logKey(i), value: undefined });
    // Entries between keepFrom and the snapshot stay in the store too, so a restart rebuilds the
    // same in-memory log; the snapshot at `applied` supersedes them for the state machine.
    this.#storedFirst = Math.max(this.#storedFirst, Math.min(keepFrom, this.#storedLast + 1));
    this.#writeThen(writes, [], undefined);
    this.stats.snapshotsTaken++;
    this.#host.event("raft-snapshot", { index: snapshot.meta.index, bytes: snapshot.data.length });
  }

  #snapshotData(): Uint8Array {
    return packValue([this.kv.snapshot(), this.#confEpoch]);
  }

  #installSnapshot(snapshot: Snapshot): void {
    this.#loadSnapshot(snapshot, "the leader's");
    this.#toApply.length = 0;
    this.stats.snapshotsInstalled++;
    this.#host.event("raft-snapshot-installed", { index: snapshot.meta.index, keys: this.kv.size });
  }

  #loadSnapshot(snapshot: Snapshot, whose: string): void {
    const value = unpackValue(snapshot.data);
    const ok = Array.isArray(value) && value[0] instanceof Uint8Array && this.kv.restore(value[0]);
    assert(ok, `Consensus: ${whose} snapshot at ${snapshot.meta.index} does not decode (a corrupt store, or mismatched versions?)`);
    if (typeof value[1] === "number") this.#confEpoch = Math.max(this.#confEpoch, value[1]);
    this.#applied = snapshot.meta.index;
  }

  // ---- applying -----------------------------------------------------------------------------

  #apply(entry: Entry): void {
    this.stats.applied++;
    this.#applied = entry.index;
    if (entry.type === "conf") {
      this.#applyConf(entry);
      return;
    }
    if (entry.data.length === 0) return; // a new leader's no-op
    const command = decodeKvCommand(entry.data);
    if (command === undefined) {
      this.#host.event("raft-bad-entry", { index: entry.index });
      return;
    }
    const result = this.kv.apply(command, entry.index);
    if (command.origin !== this.#origin) return;
    const pending = this.#writes.get(command.seq);
    if (pending === undefined) return;
    this.#writes.delete(command.seq);
    const value = result.code === "conflict" || command.op !== "cas" ? result.previous : undefined;
    pending.callback({ code: result.code, value, revision: result.revision, leader: this.leader });
  }

  #applyConf(entry: Entry): void {
    const change = decodeConfChange(entry.data);
    if (change === undefined) {
      this.#host.event("raft-bad-entry", { index: entry.index });
      return;
    }
    if (change.reset !== undefined) this.#confEpoch = Math.max(this.#confEpoch, change.reset.epoch);
    const { conf, error } = this.#raft.applyConfChange(change);
    if (error !== undefined) {
      this.#host.event("raft-conf-refused", { index: entry.index, error });
      return;
    }
    this.stats.confChanges++;
    const described = describeConfState(conf);
    // Durably, before anything acts on the new configuration: at boot every entry up to this index
    // counts as committed and is applied again, so a restart never falls back to an older
    // configuration (a founder that came back as the single voter of entry 1 would elect itself
    // alone beside the real cluster). The entry itself is durable (#applyDurable).
    this.#store.write([
      { key: KEY_CONF, value: packValue([entry.index]) },
      { key: KEY_META, value: packValue([this.#confEpoch, this.stats.regenerations]) },
    ], { durable: true });
    this.#host.event("raft-conf-changed", { index: entry.index, conf: described, epoch: this.#confEpoch });
  }

  // ---- reads --------------------------------------------------------------------------------

  #startReadBatch(): void {
    const reads = this.#readQueue;
    this.#readQueue = [];
    const context = new Uint8Array(8);
    new DataView(context.buffer).setFloat64(0, ++this.#readSeq);
    const error = this.#raft.readIndex(context);
    if (error !== undefined) {
      for (const read of reads) read.callback({ code: "no-leader", leader: NONE, detail: "no leader is known" });
      return;
    }
    this.#readBatches.push({ context, reads, deadline: this.#tick + this.config.requestTimeoutTicks, index: -1 });
  }

  #onReadState(index: number, context: Uint8Array): void {
    for (const batch of this.#readBatches) {
      if (batch.index < 0 && equalBytes(batch.context, context)) batch.index = index;
    }
  }

  #serveReads(): void {
    const applied = this.#applied;
    while (this.#readBatches.length > 0) {
      const batch = this.#readBatches[0]!;
      if (batch.index < 0 || batch.index > applied) break;
      this.#readBatches.shift();
      for (const read of batch.reads) {
        const record = this.kv.get(read.key);
        read.callback(record === undefined
          ? { code: "not-found", leader: this.leader }
          : { code: "ok", value: record.value, revision: record.revision, leader: this.leader });
      }
    }
    // A confirmed batch behind an unconfirmed one waits: reads are answered in order.
  }

  #onSoftState(): void {
    const lead = this.#raft.lead;
    if (lead === this.#lastLead) return;
    const previous = this.#lastLead;
    this.#lastLead = lead;
    this.#host.event("raft-leader", { leader: lead, term: this.#raft.term, previous });
    if (previous === NONE) return;
    // Requests that went to (or through) the old leader may be lost with it, or may still commit:
    // their outcome is unknown. Answer them now so clients retry at once instead of timing out.
    this.#failAll("leader-changed", "the leader changed while the request was in flight; its outcome is unknown");
  }

  #failAll(code: KvOutcomeCode, detail: string): void {
    const writes = [...this.#writes.values()];
    this.#writes.clear();
    const batches = this.#readBatches.splice(0);
    for (const w of writes) w.callback({ code, leader: this.leader, detail });
    for (const batch of batches) for (const read of batch.reads) read.callback({ code, leader: this.leader, detail });
  }

  #expire(): void {
    const now = this.#tick;
    for (const [seq, pending] of this.#writes) {
      if (pending.deadline > now) continue;
      this.#writes.delete(seq);
      this.stats.timeouts++;
      pending.callback({ code: "timeout", leader: this.leader, detail: "not committed in time; its outcome is unknown" });
    }
    while (this.#readBatches.length > 0 && this.#readBatches[0]!.deadline <= now) {
      const batch = this.#readBatches.shift()!;
      this.stats.timeouts++;
      for (const read of batch.reads) read.callback({ code: "timeout", leader: this.leader, detail: "leadership not confirmed in time" });
    }
  }

  // ---- voter management (leader) ------------------------------------------------------------

  #manageVoters(): void {
    const raft = this.#raft;
    const status = raft.status();
    const conf = status.conf;
    if (conf.votersOutgoing.length > 0 || status.leadTransferee !== NONE) return;
    const members = new Map(this.#host.members().map((m) => [m.id, m]));
    const healthy = (id: string): boolean => members.get(id)?.state === "alive";
    const gone = (id: string): boolean => {
      const state = members.get(id)?.state;
      return state === "dead" || state === "left";
    };
    const inConf = new Set([...conf.voters, ...conf.learners]);
    const propose = (change: ConfChange, why: string): void => {
      const error = raft.proposeConfChange(change);
      this.#host.event("raft-conf-proposed", { why, changes: change.changes.map((c) => `${c.type} ${c.node}`).join(", "), ...(error ? { error } : {}) });
    };
    // 1. Live members join as learners (they catch up before they may vote), core members first.
    if (conf.learners.length < this.config.learnersMax) {
      const joiner = [...members.values()]
        .filter((m) => !inConf.has(m.id) && m.state === "alive")
        .sort((a, b) => (a.role === b.role ? (a.id < b.id ? -1 : 1) : a.role === "core" ? -1 : 1))[0];
      if (joiner !== undefined) return propose({ changes: [{ type: "add-learner", node: joiner.id }], transition: "auto" }, "new member");
    }
    // 2. Learners that died or left are removed.
    for (const id of conf.learners) {
      if (gone(id) || !members.has(id)) return propose({ changes: [{ type: "remove", node: id }], transition: "auto" }, "learner gone");
    }
    const last = status.lastIndex;
    const caughtUp = conf.learners.filter((id) => {
      const pr = status.progress.get(id);
      return healthy(id) && members.get(id)?.role === "core" && pr !== undefined && pr.recentActive && pr.match + this.config.promoteLagMax >= last;
    });
    // 3. A dead voter is replaced by a caught-up learner, in one joint change.
    const deadVoters = conf.voters.filter((id) => id !== this.id && gone(id));
    const replacement = caughtUp[0];
    if (deadVoters.length > 0 && replacement !== undefined) {
      return propose({ changes: [{ type: "remove", node: deadVoters[0]! }, { type: "add-voter", node: replacement }], transition: "auto" }, "replace dead voter");
    }
    // 4. Contributors never vote.
    const contributor = conf.voters.find((id) => id !== this.id && members.get(id)?.role === "contributor");
    if (contributor !== undefined) return propose({ changes: [{ type: "add-learner", node: contributor }], transition: "auto" }, "contributor");
    // 5. Grow towards votersMax live voters, keeping the count odd.
    const liveVoters = conf.voters.filter((id) => !gone(id)).length;
    let target = Math.min(this.config.votersMax, liveVoters + caughtUp.length);
    if (target % 2 === 0) target--;
    const add = target - liveVoters;
    if (add >= 1 && caughtUp.length >= add) {
      const changes = caughtUp.slice(0, add).map((node) => ({ type: "add-voter" as const, node }));
      return propose({ changes, transition: "auto" }, "grow voters");
    }
  }

  // ---- regeneration (ADR 008) ---------------------------------------------------------------

  /** A survivor's offer arrived (see #watchForRegeneration). */
  onOffer(from: string, offer: RegenOffer): void {
    this.#offers.set(from, { offer, tick: this.#tick });
  }

  offer(): RegenOffer {
    return { confEpoch: this.#confEpoch, lastTerm: this.#raft.log.lastTerm(), lastIndex: this.#raft.log.lastIndex() };
  }

  #watchForRegeneration(): void {
    const conf = this.#raft.conf;
    const voters = [...new Set([...conf.voters, ...conf.votersOutgoing])];
    if (!this.config.regenerate || voters.length === 0 || this.#raft.role === "leader") {
      this.#deadMajoritySince = -1;
      return;
    }
    const host = this.#host;
    const dead = voters.filter((id) => id !== this.id && (host.stateOf(id) === "dead" || host.stateOf(id) === "left"));
    const leaderAlive = this.#raft.lead !== NONE && (this.#raft.lead === this.id || host.stateOf(this.#raft.lead) === "alive");
    if (dead.length === 0 || leaderAlive || !this.#deadMajorityOfSomeHalf(conf, dead)) {
      this.#deadMajoritySince = -1;
      this.#offers.clear();
      return;
    }
    if (this.#deadMajoritySince < 0) this.#deadMajoritySince = this.#tick;
    if (this.#tick - this.#deadMajoritySince < this.config.regenerateAfterTicks) return;
    // Survivors in the configuration compare logs; the most up-to-date (then lowest id) regenerates.
    const survivors = host.members().filter((m) => m.id !== this.id && m.state === "alive" && m.role === "core").map((m) => m.id);
    const mine = this.offer();
    for (const id of survivors) this.#host.sendOffer(id, mine);
    const fresh = (id: string) => {
      const got = this.#offers.get(id);
      return got !== undefined && this.#tick - got.tick <= 3 * this.config.manageTicks ? got.offer : undefined;
    };
    for (const id of survivors) {
      const theirs = fresh(id);
      if (theirs === undefined) return; // wait until every survivor has spoken
      if (theirs.confEpoch > mine.confEpoch) return; // someone already regenerated: follow them
      const better = theirs.lastTerm > mine.lastTerm || (theirs.lastTerm === mine.lastTerm && (theirs.lastIndex > mine.lastIndex || (theirs.lastIndex === mine.lastIndex && id < this.id)));
      if (better) return;
    }
    this.#regenerate(dead);
  }

  #deadMajorityOfSomeHalf(conf: ConfState, dead: readonly string[]): boolean {
    const lost = (half: readonly string[]) => half.length > 0 && half.filter((id) => dead.includes(id)).length >= Math.floor(half.length / 2) + 1;
    return lost(conf.voters) || lost(conf.votersOutgoing);
  }

  #regenerate(dead: readonly string[]): void {
    const epoch = this.#confEpoch + 1;
    const data = encodeConfChange({ changes: [], transition: "auto", reset: { voters: [this.id], epoch } });
    this.#raft.forceNewConfiguration(data);
    this.stats.regenerations++;
    this.#deadMajoritySince = -1;
    this.#offers.clear();
    this.#host.event("raft-regenerated", {
      epoch, dead: dead.join(","), term: this.#raft.term, lastIndex: this.#raft.log.lastIndex(), regenerations: this.stats.regenerations,
    });
  }
}

/**
 * Drops an empty append (it only carries the commit index) when a later append to the same
 * follower in the same batch carries a commit index at least as high: under load a commit is
 * announced by the next batch of entries, not by a message of its own.
 */
function coalesce(messages: readonly RaftMessage[]): RaftMessage[] {
  if (messages.length < 2) return [...messages];
  const keep = messages.map(() => true);
  const laterCommit = new Map<string, number>();
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.type !== "app") continue;
    const later = laterCommit.get(m.to);
    if (m.entries.length === 0 && later !== undefined && later >= m.commit) keep[i] = false;
    laterCommit.set(m.to, Math.max(later ?? 0, m.commit));
  }
  return messages.filter((_, i) => keep[i]);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function writeHard(state: HardState): Uint8Array {
  return packValue([state.term, state.vote, state.commit]);
}

function readHard(bytes: Uint8Array | undefined): HardState | undefined {
  if (bytes === undefined) return undefined;
  const value = unpackValue(bytes);
  if (!Array.isArray(value) || value.length !== 3) return undefined;
  const [term, vote, commit] = value as unknown[];
  if (typeof term !== "number" || typeof vote !== "string" || typeof commit !== "number") return undefined;
  return { term, vote, commit };
}

function writeEntry(entry: Entry): Uint8Array {
  return packValue([entry.term, entry.type === "conf" ? 1 : 0, entry.data]);
}

function readEntry(index: number, bytes: Uint8Array): Entry | undefined {
  if (!Number.isSafeInteger(index) || index < 1) return undefined;
  const value = unpackValue(bytes);
  if (!Array.isArray(value) || value.length !== 3) return undefined;
  const [term, type, data] = value as unknown[];
  if (typeof term !== "number" || (type !== 0 && type !== 1) || !(data instanceof Uint8Array)) return undefined;
  return { term, index, type: type === 1 ? "conf" : "normal", data: data.slice() };
}

function writeSnapshot(snapshot: Snapshot): Uint8Array {
  return packValue([snapshot.meta.index, snapshot.meta.term, confToWire(snapshot.meta.conf), snapshot.data]);
}

function readSnapshot(bytes: Uint8Array | undefined): Snapshot | undefined {
  if (bytes === undefined) return undefined;
  const value = unpackValue(bytes);
  if (!Array.isArray(value) || value.length !== 4) return undefined;
  const [index, term, conf, data] = value as unknown[];
  if (typeof index !== "number" || typeof term !== "number" || !CONF_CHECK.Check(conf) || !(data instanceof Uint8Array)) return undefined;
  return { meta: { index, term, conf: confFromWire(conf) }, data: data.slice() };
}
