// The Raft consensus core (Ongaro & Ousterhout 2014, Ongaro's thesis 2014), a sans-IO state
// machine in the shape of etcd-raft (DESIGN.md §2): the node calls
//
//   tick()            on every clock tick (election and heartbeat timeouts are counted in ticks)
//   step(message)     for every message received (or a local one: propose, readIndex, campaign…)
//   ready()           to collect what to persist, send and apply, in that order
//   advance(ready)    once it has done so
//
// It never touches a socket, a disk or a clock, and draws its randomized timeouts from the injected
// Rng, so a simulation replays exactly. Features: pre-vote (thesis §9.6), check-quorum, leader
// stickiness, log replication with the consistency check, conflict resolution with fast backtracking
// and flow control (probe/replicate/snapshot, bounded in-flight window), commit of current-term
// entries only (§5.4.2), ReadIndex and lease reads (§6.4), snapshots, joint consensus (§4.3),
// learners, leadership transfer (§3.10). docs/protocols/raft.md describes the messages.
import { assert } from "../../util/assert.ts";
import type { Rng } from "../../util/rng.ts";
import { applyConfChange, decodeConfChange, encodeConfChange, isJoint } from "./confchange.ts";
import { RaftLog } from "./log.ts";
import { Config, Progress, type ProgressState, type VoteResult } from "./progress.ts";
import {
  EMPTY_CONF, NONE, entrySize, hardStateEqual, message,
  type ConfChange, type ConfState, type Entry, type HardState, type Message, type MessageType,
  type NodeId, type RaftRole, type ReadState, type Snapshot, type SnapshotMeta,
} from "./types.ts";

export interface RaftConfig {
  readonly id: NodeId;
  /** Followers start an election after a random timeout in [electionTicks, 2·electionTicks). */
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** "safe": ReadIndex confirms leadership with a heartbeat round; "lease": trusts the check-quorum lease (bounded clock drift). */
  readonly readOnly: "safe" | "lease";
  /** Bytes of entries per append message (at least one entry is always sent). */
  readonly maxMsgBytes: number;
  /** Appends in flight per follower in the replicate state, and their bytes. */
  readonly maxInflight: number;
  readonly maxInflightBytes: number;
  /** Proposals are refused while this many bytes are uncommitted (a leader without quorum). */
  readonly maxUncommittedBytes: number;
  /** Bytes of committed entries handed out per ready. */
  readonly maxApplyBytes: number;
  /**
   * The node persists asynchronously (a disk thread): it calls persisted(index, term) once entries
   * are durable, and the leader counts itself towards commit only then. Off, advance() implies it.
   */
  readonly asyncStorage?: boolean;
}

export const RAFT_DEFAULTS: Omit<RaftConfig, "id"> = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  readOnly: "safe",
  maxMsgBytes: 1 << 20,
  maxInflight: 256,
  maxInflightBytes: 16 << 20,
  maxUncommittedBytes: 64 << 20,
  maxApplyBytes: 16 << 20,
};

export interface RaftInit {
  readonly hardState?: HardState;
  /** The last snapshot this node persisted (its configuration is the starting one). */
  readonly snapshot?: Snapshot;
  /** Persisted entries after the snapshot. */
  readonly entries?: readonly Entry[];
  /** The configuration of a brand-new cluster (no snapshot): the founding voters. */
  readonly conf?: ConfState;
}

export interface SoftState {
  readonly lead: NodeId;
  readonly role: RaftRole;
}

/** What the node must do, in order: persist (hardState, snapshot, entries), send, apply. */
export interface Ready {
  readonly softState: SoftState | undefined;
  readonly hardState: HardState | undefined;
  /** A snapshot from the leader: persist it and restore the state machine from it. */
  readonly snapshot: Snapshot | undefined;
  /** Append to the durable log; the first entry's index truncates anything persisted at or after it. */
  readonly entries: readonly Entry[];
  /** Send after persisting. */
  readonly messages: readonly Message[];
  /** Apply in order; call applyConfChange for "conf" entries. */
  readonly committed: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /** Whether the persisted part needs an fsync (a new hard state or entries). */
  readonly mustSync: boolean;
}

export type ProposeError = "no-leader" | "not-leader" | "transferring" | "too-large" | "conf-pending" | "conf-invalid" | "removed";

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly recentActive: boolean;
  readonly inflight: number;
  readonly learner: boolean;
  readonly pendingSnapshot: number;
  /** No append will be sent until a response or the next heartbeat (probe sent, window full, or snapshot). */
  readonly paused: boolean;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: RaftRole;
  readonly term: number;
  readonly vote: NodeId;
  readonly lead: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly conf: ConfState;
  readonly leadTransferee: NodeId;
  /** Followers' progress; only on the leader. */
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
}

interface ReadRequest {
  readonly index: number;
  readonly from: NodeId;
  readonly context: Uint8Array;
  readonly acks: Set<NodeId>;
}

/** Marks a vote request sent on a leadership transfer: it bypasses leader stickiness. */
const CAMPAIGN_TRANSFER = new Uint8Array([0x74]);

export class Raft {
  readonly id: NodeId;
  readonly #config: RaftConfig;
  readonly #rng: Rng;
  readonly log: RaftLog;

  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: RaftRole = "follower";

  #conf: Config;
  #progress = new Map<NodeId, Progress>();
  #votes = new Map<NodeId, boolean>();
  #msgs: Message[] = [];
  #readStates: ReadState[] = [];
  #reads: ReadRequest[] = [];
  /** Read requests that arrived before the leader committed an entry of its term. */
  #pendingReads: Message[] = [];
  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  /** Ticks still to run that do not count toward the election timeout or check-quorum (pardon()). */
  #pardoned = 0;
  #randomizedElectionTimeout = 0;
  #pendingConfIndex = 0;
  #uncommittedBytes = 0;
  #leadTransferee: NodeId = NONE;
  /** The latest snapshot the node took (or received), sent to followers that fell behind it. */
  #snapshot: Snapshot | undefined;
  #prevSoft: SoftState;
  #prevHard: HardState;

  constructor(config: RaftConfig, rng: Rng, init: RaftInit = {}) {
    assert(config.id !== NONE, "Raft: id must not be empty");
    assert(config.heartbeatTicks >= 1 && config.electionTicks > config.heartbeatTicks, "Raft: electionTicks must exceed heartbeatTicks ≥ 1");
    this.id = config.id;
    this.#config = config;
    this.#rng = rng;
    const snapMeta: SnapshotMeta = init.snapshot?.meta ?? { index: 0, term: 0, conf: init.conf ?? EMPTY_CONF };
    const hard = init.hardState ?? { term: 0, vote: NONE, commit: 0 };
    this.log = new RaftLog(snapMeta, init.entries ?? [], Math.max(hard.commit, snapMeta.index), snapMeta.index);
    this.#snapshot = init.snapshot;
    this.#conf = new Config(snapMeta.conf);
    this.term = hard.term;
    this.vote = hard.vote;
    this.#becomeFollower(this.term, NONE);
    this.#prevSoft = { lead: NONE, role: "follower" };
    this.#prevHard = this.hardState;
  }

  get hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  get conf(): ConfState {
    return this.#conf.toConfState();
  }

  get config(): RaftConfig {
    return this.#config;
  }

  /** A voter that is not a learner: it may campaign. */
  get promotable(): boolean {
    return this.#conf.isVoter(this.id) && this.log.unstableSnapshot === undefined;
  }

  get leadTransferee(): NodeId {
    return this.#leadTransferee;
  }

  // ---------------------------------------------------------------------------------------------
  // Driving the core

  tick(): void {
    // A pardoned tick says nothing about the peers: the election clock stands still.
    if (this.role === "leader" && this.#config.readOnly === "lease") this.#pardoned = 0;
    const counts = this.#pardoned === 0;
    if (!counts) this.#pardoned--;
    if (this.role === "leader") this.#tickHeartbeat(counts);
    else this.#tickElection(counts);
  }

  /**
   * The host was frozen (its event loop blocked) and is about to run `ticks` missed ticks: they do
   * not count toward the election timeout or check-quorum, since what the peers sent meanwhile is
   * not read yet. Liveness only (an election waits longer), except for a leader with lease reads,
   * whose lease is wall time since it heard a quorum: there a pardon is refused.
   */
  pardon(ticks: number): void {
    if (this.role === "leader" && this.#config.readOnly === "lease") return;
    this.#pardoned = Math.max(this.#pardoned, Math.max(0, Math.floor(ticks)));
  }

  /** Starts an election now (a local "hup"). */
  campaign(): void {
    this.step(message({ type: "hup", from: this.id }));
  }

  /** Appends `data` through the leader. Returns an error when it is certain to fail here. */
  propose(data: Uint8Array): ProposeError | undefined {
    return this.#propose([{ term: 0, index: 0, type: "normal", data }]);
  }

  /** Appends several commands as one proposal: one append message per follower carries them all. */
  proposeMany(data: readonly Uint8Array[]): ProposeError | undefined {
    if (data.length === 0) return undefined;
    return this.#propose(data.map((d) => ({ term: 0, index: 0, type: "normal" as const, data: d })));
  }

  proposeConfChange(change: ConfChange): ProposeError | undefined {
    return this.#propose([{ term: 0, index: 0, type: "conf", data: encodeConfChange(change) }]);
  }

  /** Asks for a linearizable read point; it comes back as a ReadState carrying `context`. */
  readIndex(context: Uint8Array): ProposeError | undefined {
    if (this.role !== "leader" && this.lead === NONE) return "no-leader";
    this.step(message({ type: "read-index", from: this.id, context }));
    return undefined;
  }

  transferLeader(to: NodeId): void {
    this.step(message({ type: "transfer-leader", from: to, to: this.lead }));
  }

  reportUnreachable(id: NodeId): void {
    this.step(message({ type: "unreachable", from: id }));
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.step(message({ type: "snap-status", from: id, reject: !ok }));
  }

  #propose(entries: Entry[]): ProposeError | undefined {
    if (this.role === "leader") {
      return this.#leaderPropose(entries);
    }
    if (this.lead === NONE) return "no-leader";
    this.#send(message({ type: "prop", to: this.lead, entries }));
    return undefined;
  }

  /** Takes one message from the network (term > 0) or from this node (term 0). */
  step(m: Message): void {
    if (m.term === 0) {
      // local message, or a proposal/read forwarded by a follower
    } else if (m.term > this.term) {
      if (m.type === "vote" || m.type === "prevote") {
        const force = m.context !== undefined && m.context.length === 1 && m.context[0] === CAMPAIGN_TRANSFER[0];
        const inLease = this.#config.checkQuorum && this.lead !== NONE && this.#electionElapsed < this.#config.electionTicks;
        // Leader stickiness: while we hear from a leader, a disruptive candidate gets no vote and
        // does not bump our term (thesis §4.2.3).
        if (!force && inLease) return;
      }
      if (m.type === "prevote") {
        // A pre-vote never changes our term.
      } else if (m.type === "prevote-resp" && !m.reject) {
        // Granted pre-votes carry the future term; the term changes when the real election starts.
      } else if (m.type === "app" || m.type === "heartbeat" || m.type === "snap") {
        this.#becomeFollower(m.term, m.from);
      } else {
        this.#becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.#config.checkQuorum || this.#config.preVote) && (m.type === "heartbeat" || m.type === "app")) {
        // A stale leader (cut off by a partition) learns our term and steps down; without this a
        // node partitioned away with pre-vote on could never disturb it, and never rejoin.
        this.#send(message({ type: "app-resp", to: m.from }));
      } else if (m.type === "prevote") {
        this.#send(message({ type: "prevote-resp", to: m.from, term: this.term, reject: true }));
      }
      return;
    }

    switch (m.type) {
      case "hup":
        this.#hup(false);
        return;
      case "vote":
      case "prevote": {
        const canVote = this.vote === m.from || (this.vote === NONE && this.lead === NONE) || (m.type === "prevote" && m.term > this.term);
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          // The response carries the request's term: for a pre-vote that is the future term.
          this.#send(message({ type: m.type === "vote" ? "vote-resp" : "prevote-resp", to: m.from, term: m.term }));
          if (m.type === "vote") {
            this.#electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.#send(message({ type: m.type === "vote" ? "vote-resp" : "prevote-resp", to: m.from, term: this.term, reject: true }));
        }
        return;
      }
      default:
        break;
    }
    switch (this.role) {
      case "leader": this.#stepLeader(m); break;
      case "candidate":
      case "pre-candidate": this.#stepCandidate(m); break;
      case "follower": this.#stepFollower(m); break;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Ready / advance

  hasReady(): boolean {
    if (this.#msgs.length > 0 || this.#readStates.length > 0) return true;
    if (this.log.unstableSnapshot !== undefined || this.log.stable < this.log.lastIndex()) return true;
    if (this.log.hasNextCommitted()) return true;
    if (!hardStateEqual(this.hardState, this.#prevHard)) return true;
    return this.lead !== this.#prevSoft.lead || this.role !== this.#prevSoft.role;
  }

  /** Collects the work for the node. Messages and read states are handed out once. */
  ready(): Ready {
    const hard = this.hardState;
    const hardChanged = !hardStateEqual(hard, this.#prevHard);
    const soft = { lead: this.lead, role: this.role };
    const softChanged = soft.lead !== this.#prevSoft.lead || soft.role !== this.#prevSoft.role;
    const entries = this.log.unstableEntries();
    const committed = this.log.nextCommitted(this.#config.maxApplyBytes);
    if (committed.length > 0) {
      this.log.applying = committed[committed.length - 1]!.index;
      if (this.role === "leader") this.#reduceUncommitted(committed);
    }
    const rd: Ready = {
      softState: softChanged ? soft : undefined,
      hardState: hardChanged ? hard : undefined,
      snapshot: this.log.unstableSnapshot,
      entries,
      messages: this.#msgs,
      committed,
      readStates: this.#readStates,
      mustSync: entries.length > 0 || (hardChanged && (hard.term !== this.#prevHard.term || hard.vote !== this.#prevHard.vote)) || this.log.unstableSnapshot !== undefined,
    };
    this.#msgs = [];
    this.#readStates = [];
    if (softChanged) this.#prevSoft = soft;
    if (hardChanged) this.#prevHard = hard;
    return rd;
  }

  /** The node persisted, sent and applied everything in `rd`. */
  /**
   * Asynchronous storage: entries up to `index` (of `term`) are durable. A leader now counts
   * itself towards their commit.
   */
  persisted(index: number, term: number): void {
    if (this.log.term(index) !== term) return; // overwritten meanwhile by a newer leader's entries
    this.log.durable = Math.max(this.log.durable, index);
    if (this.role !== "leader") return;
    const self = this.#progress.get(this.id);
    if (self === undefined || !self.maybeUpdate(index)) return;
    if (this.#maybeCommit()) this.#broadcastAppend();
  }

  advance(rd: Ready): void {
    if (this.#config.asyncStorage !== true && rd.entries.length > 0) this.log.durable = Math.max(this.log.durable, rd.entries[rd.entries.length - 1]!.index);
    if (this.#config.asyncStorage !== true && rd.snapshot !== undefined) this.log.durable = Math.max(this.log.durable, rd.snapshot.meta.index);
    if (rd.snapshot !== undefined) this.log.snapshotApplied(rd.snapshot.meta.index);
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      this.log.stableTo(last.index, last.term);
    }
    if (rd.committed.length > 0) {
      this.log.applied = Math.max(this.log.applied, rd.committed[rd.committed.length - 1]!.index);
    }
    if (rd.snapshot !== undefined) this.#snapshot = rd.snapshot;
    // Leave a joint configuration once it is applied (ConfChangeTransitionAuto).
    if (this.role === "leader" && this.#conf.autoLeave && this.#conf.joint && this.#pendingConfIndex <= this.log.applied) {
      this.#leaderPropose([{ term: 0, index: 0, type: "conf", data: encodeConfChange({ changes: [], transition: "auto" }) }]);
    }
  }

  /**
   * Applies a committed configuration change (called by the node while applying its entry).
   * Returns the new configuration, or an error for a change that cannot apply (it is skipped).
   */
  applyConfChange(change: ConfChange): { conf: ConfState; error?: string } {
    const result = applyConfChange(this.#conf.toConfState(), change);
    if (!result.ok) return { conf: this.conf, error: result.error };
    this.#switchConf(result.conf);
    return { conf: result.conf };
  }

  /**
   * The node took a snapshot of its state machine at `index` (≤ applied) with configuration `conf`;
   * entries up to `index - keep` are dropped from memory and it is sent to followers that need it.
   */
  compact(index: number, conf: ConfState, data: Uint8Array, keep = 0): Snapshot {
    assert(index <= this.log.applied, `Raft: snapshot at ${index} beyond applied ${this.log.applied}`);
    const term = this.log.term(index);
    assert(term !== undefined, `Raft: snapshot at compacted index ${index}`);
    const snapshot: Snapshot = { meta: { index, term, conf }, data };
    this.#snapshot = snapshot;
    const keepFrom = Math.max(this.log.snapshotMeta.index, index - keep);
    if (keepFrom > this.log.snapshotMeta.index) {
      const keepTerm = this.log.term(keepFrom)!;
      // The compaction point's configuration is only used for restarts from memory; the sendable
      // snapshot above carries the true one.
      this.log.compact({ index: keepFrom, term: keepTerm, conf: keepFrom === index ? conf : this.log.snapshotMeta.conf });
    }
    return snapshot;
  }

  get snapshot(): Snapshot | undefined {
    return this.#snapshot;
  }

  /**
   * Regeneration (ADR 008), outside Raft's safety argument: this node declares its whole log
   * committed and appends `data` (an encoded reset ConfChange) at a new term, as etcd's
   * --force-new-cluster does. The node applies it like any conf entry and, as the only voter,
   * elects itself. Only for a survivor whose configuration lost a majority of voters for good.
   */
  forceNewConfiguration(data: Uint8Array): void {
    assert(this.role !== "leader", "Raft: a leader does not regenerate");
    const term = Math.max(this.term, this.log.lastTerm()) + 1;
    const entry: Entry = { term, index: this.log.lastIndex() + 1, type: "conf", data };
    this.log.commitTo(this.log.lastIndex());
    this.#becomeFollower(term, NONE);
    this.log.append([entry]);
    this.log.commitTo(entry.index);
  }

  status(): RaftStatus {
    const progress = new Map<NodeId, ProgressStatus>();
    if (this.role === "leader") {
      for (const [id, pr] of this.#progress) {
        progress.set(id, {
          match: pr.match, next: pr.next, state: pr.state, recentActive: pr.recentActive,
          inflight: pr.inflights.count, learner: pr.isLearner, pendingSnapshot: pr.pendingSnapshot, paused: pr.isPaused(),
        });
      }
    }
    return {
      id: this.id, role: this.role, term: this.term, vote: this.vote, lead: this.lead,
      commit: this.log.committed, applied: this.log.applied, lastIndex: this.log.lastIndex(), firstIndex: this.log.firstIndex(),
      conf: this.conf, leadTransferee: this.#leadTransferee, progress,
    };
  }

  /** Ticks since the last heartbeat from the leader (followers) or the last quorum check (leader). */
  get electionElapsed(): number {
    return this.#electionElapsed;
  }

  /** For tests: pin the randomized election timeout. */
  setRandomizedElectionTimeout(ticks: number): void {
    this.#randomizedElectionTimeout = ticks;
  }

  // ---------------------------------------------------------------------------------------------
  // Roles

  #reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#randomizedElectionTimeout = this.#config.electionTicks + this.#rng.int(this.#config.electionTicks);
    this.#leadTransferee = NONE;
    this.#votes.clear();
    this.#progress = new Map();
    const last = this.log.lastIndex();
    for (const id of this.#conf.allNodes()) {
      const pr = this.#newProgress(id, last + 1);
      if (id === this.id) pr.match = this.#selfMatch(last);
      this.#progress.set(id, pr);
    }
    this.#pendingConfIndex = 0;
    this.#uncommittedBytes = 0;
    this.#reads = [];
    this.#pendingReads = [];
  }

  /** What the leader may count for itself: everything with synchronous storage, the durable part otherwise. */
  #selfMatch(last: number): number {
    return this.#config.asyncStorage === true ? Math.min(last, this.log.durable) : last;
  }

  #newProgress(id: NodeId, next: number): Progress {
    const learner = !this.#conf.isVoter(id);
    return new Progress(next, learner, this.#config.maxInflight, this.#config.maxInflightBytes, false);
  }

  #becomeFollower(term: number, lead: NodeId): void {
    this.#reset(term);
    this.lead = lead;
    this.role = "follower";
  }

  #becomeCandidate(): void {
    assert(this.role !== "leader", "Raft: leader cannot become candidate");
    this.#reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  #becomePreCandidate(): void {
    assert(this.role !== "leader", "Raft: leader cannot become pre-candidate");
    // Neither the term nor the vote changes: a pre-vote must not disturb anyone (thesis §9.6).
    this.#votes.clear();
    this.lead = NONE;
    this.role = "pre-candidate";
  }

  #becomeLeader(): void {
    assert(this.role === "candidate", "Raft: only a candidate becomes leader");
    this.#reset(this.term);
    this.lead = this.id;
    this.role = "leader";
    const self = this.#progress.get(this.id);
    if (self !== undefined) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // Conf changes in the uncommitted tail may exist; assume the worst until they are applied.
    this.#pendingConfIndex = this.log.lastIndex();
    // A no-op entry of the new term: committing it commits every earlier entry (§5.4.2) and lets
    // the leader serve reads.
    const ok = this.#appendEntries([{ term: 0, index: 0, type: "normal", data: new Uint8Array(0) }]);
    assert(ok, "Raft: the new leader's empty entry must be accepted");
  }

  #tickElection(counts: boolean): void {
    if (counts) this.#electionElapsed++;
    if (this.promotable && this.#electionElapsed >= this.#randomizedElectionTimeout) {
      this.#electionElapsed = 0;
      this.step(message({ type: "hup", from: this.id }));
    }
  }

  #tickHeartbeat(counts: boolean): void {
    this.#heartbeatElapsed++;
    if (counts) this.#electionElapsed++;
    if (this.#electionElapsed >= this.#config.electionTicks) {
      this.#electionElapsed = 0;
      if (this.#config.checkQuorum) this.step(message({ type: "check-quorum", from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === "leader" && this.#leadTransferee !== NONE) this.#leadTransferee = NONE;
    }
    if (this.role !== "leader") return;
    if (this.#heartbeatElapsed >= this.#config.heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.step(message({ type: "beat", from: this.id }));
    }
  }

  #hup(transfer: boolean): void {
    if (this.role === "leader") return;
    if (!this.promotable) return;
    // A conf change committed but not applied could change who votes: wait until it is applied.
    for (let i = this.log.applied + 1; i <= this.log.committed; i++) {
      if (this.log.entry(i)?.type === "conf") return;
    }
    if (this.#config.preVote && !transfer) this.#campaign("pre");
    else this.#campaign(transfer ? "transfer" : "election");
  }

  #campaign(kind: "pre" | "election" | "transfer"): void {
    let term: number;
    let type: MessageType;
    if (kind === "pre") {
      this.#becomePreCandidate();
      type = "prevote";
      term = this.term + 1;
    } else {
      this.#becomeCandidate();
      type = "vote";
      term = this.term;
    }
    if (this.#poll(this.id, true) === "won") {
      // A single-voter cluster wins at once.
      if (kind === "pre") this.#campaign("election");
      else this.#becomeLeader();
      return;
    }
    const context = kind === "transfer" ? CAMPAIGN_TRANSFER : undefined;
    for (const id of this.#conf.allVoters()) {
      if (id === this.id) continue;
      this.#send(message({ type, to: id, term, index: this.log.lastIndex(), logTerm: this.log.lastTerm(), ...(context ? { context } : {}) }));
    }
  }

  #poll(id: NodeId, granted: boolean): VoteResult {
    if (!this.#votes.has(id)) this.#votes.set(id, granted);
    return this.#conf.vote(this.#votes);
  }

  // ---------------------------------------------------------------------------------------------
  // Leader

  #stepLeader(m: Message): void {
    switch (m.type) {
      case "beat":
        this.#broadcastHeartbeat();
        return;
      case "check-quorum":
        if (!this.#quorumActive()) {
          this.#becomeFollower(this.term, NONE);
        }
        for (const [id, pr] of this.#progress) if (id !== this.id) pr.recentActive = false;
        return;
      case "prop":
        this.#leaderPropose([...m.entries]);
        return;
      case "read-index":
        this.#leaderReadIndex(m);
        return;
      default:
        break;
    }
    const pr = this.#progress.get(m.from);
    if (pr === undefined) return;
    switch (m.type) {
      case "app-resp":
        this.#onAppendResponse(m, pr);
        return;
      case "heartbeat-resp": {
        pr.recentActive = true;
        pr.probeSent = false;
        if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirstOne();
        // A probing follower gets an append even when it is caught up: its answer is what moves it
        // back to replicate (otherwise it would stay in probe until the next proposal).
        if (pr.match < this.log.lastIndex() || pr.state === "probe") this.#sendAppend(m.from);
        if (this.#config.readOnly === "safe" && m.context !== undefined) this.#onReadAck(m.from, m.context);
        return;
      }
      case "snap-status":
        if (pr.state !== "snapshot") return;
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for the follower's append response (or the next heartbeat) before probing.
        pr.probeSent = true;
        return;
      case "unreachable":
        if (pr.state === "replicate") pr.becomeProbe();
        return;
      case "transfer-leader": {
        if (pr.isLearner) return;
        const to = m.from;
        if (this.#leadTransferee !== NONE) {
          if (this.#leadTransferee === to) return;
          this.#leadTransferee = NONE;
        }
        if (to === this.id) return;
        this.#electionElapsed = 0;
        this.#leadTransferee = to;
        if (pr.match === this.log.lastIndex()) this.#send(message({ type: "timeout-now", to }));
        else this.#sendAppend(to);
        return;
      }
      default:
        return;
    }
  }

  #leaderPropose(entries: Entry[]): ProposeError | undefined {
    if (!this.#progress.has(this.id)) return "removed";
    if (this.#leadTransferee !== NONE) return "transferring";
    let pendingConfIndex = this.#pendingConfIndex;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.type !== "conf") continue;
      const change = decodeConfChange(entry.data);
      let refusal: ProposeError | undefined;
      if (change === undefined) refusal = "conf-invalid";
      // A reset enters a log only through forceNewConfiguration (regeneration, on the survivor
      // itself); proposed, from anywhere, it would hand the configuration to whoever wrote it.
      else if (change.reset !== undefined) refusal = "conf-invalid";
      else if (pendingConfIndex > this.log.applied) refusal = "conf-pending";
      else {
        const joint = isJoint(this.conf);
        if (joint && change.changes.length > 0) refusal = "conf-invalid";
        else if (!joint && change.changes.length === 0) refusal = "conf-invalid";
        else if (!applyConfChange(this.conf, change).ok) refusal = "conf-invalid";
      }
      if (refusal !== undefined) {
        if (entries.length === 1) return refusal;
        entries[i] = { term: 0, index: 0, type: "normal", data: new Uint8Array(0) };
      } else {
        pendingConfIndex = this.log.lastIndex() + i + 1;
      }
    }
    if (!this.#appendEntries(entries)) return "too-large";
    // Only a change that made it into the log is pending.
    this.#pendingConfIndex = pendingConfIndex;
    this.#broadcastAppend();
    return undefined;
  }

  #appendEntries(entries: Entry[]): boolean {
    let bytes = 0;
    for (const e of entries) bytes += e.data.length;
    // An empty entry (a new leader's no-op) is always accepted, so leadership can make progress.
    if (this.#uncommittedBytes > 0 && bytes > 0 && this.#uncommittedBytes + bytes > this.#config.maxUncommittedBytes) return false;
    this.#uncommittedBytes += bytes;
    let index = this.log.lastIndex();
    const stamped = entries.map((e) => ({ term: this.term, index: ++index, type: e.type, data: e.data }));
    this.log.append(stamped);
    // With synchronous storage the node persists this ready before it handles any acknowledgement,
    // so the leader may count itself now; with a disk thread it counts itself in persisted().
    if (this.#config.asyncStorage !== true) this.#progress.get(this.id)?.maybeUpdate(this.log.lastIndex());
    this.#maybeCommit();
    return true;
  }

  #reduceUncommitted(committed: readonly Entry[]): void {
    let bytes = 0;
    for (const e of committed) bytes += e.data.length;
    this.#uncommittedBytes = Math.max(0, this.#uncommittedBytes - bytes);
  }

  #maybeCommit(): boolean {
    const index = this.#conf.committed((id) => this.#progress.get(id)?.match ?? 0);
    if (!Number.isFinite(index)) return false;
    if (!this.log.maybeCommit(index, this.term)) return false;
    this.#releasePendingReads();
    return true;
  }

  #onAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      let hint = m.rejectHint;
      if (m.logTerm > 0) hint = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.#sendAppend(m.from);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    // A probe answered at the match index we already knew (a caught-up follower) also ends the probe.
    if (pr.maybeUpdate(m.index) || (pr.state === "probe" && pr.match === m.index)) {
      if (pr.state === "probe") pr.becomeReplicate();
      else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === "replicate") pr.inflights.freeLE(m.index);
      if (this.#maybeCommit()) {
        this.#broadcastAppend();
      } else if (wasPaused) {
        this.#sendAppend(m.from);
      }
      // Fill the window: there may be more than one message's worth to send.
      while (this.#maybeSendAppend(m.from, false)) { /* keep sending */ }
      if (m.from === this.#leadTransferee && pr.match === this.log.lastIndex()) {
        this.#send(message({ type: "timeout-now", to: m.from }));
      }
    }
  }

  #sendAppend(to: NodeId): void {
    this.#maybeSendAppend(to, true);
  }

  /** Sends entries (or a snapshot) to `to` if its progress allows. */
  #maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.#progress.get(to);
    if (pr === undefined || to === this.id || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const entries = prevTerm === undefined ? undefined : this.log.slice(pr.next, this.log.lastIndex() + 1, this.#config.maxMsgBytes);
    if (prevTerm === undefined || entries === undefined) {
      // The follower needs entries we compacted: send the snapshot.
      if (!pr.recentActive) return false;
      const snapshot = this.#snapshot;
      if (snapshot === undefined || snapshot.meta.index < this.log.firstIndex() - 1) return false;
      pr.becomeSnapshot(snapshot.meta.index);
      this.#send(message({ type: "snap", to, snapshot }));
      return true;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const e of entries) bytes += entrySize(e);
    this.#send(message({ type: "app", to, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed }));
    pr.sentEntries(entries.length, bytes, entries.length > 0 ? entries[entries.length - 1]!.index : prevIndex);
    return true;
  }

  #broadcastAppend(): void {
    for (const id of this.#progress.keys()) if (id !== this.id) this.#sendAppend(id);
  }

  #broadcastHeartbeat(context?: Uint8Array): void {
    for (const [id, pr] of this.#progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it has: it may not have those entries.
      const commit = Math.min(pr.match, this.log.committed);
      this.#send(message({ type: "heartbeat", to: id, commit, ...(context ? { context } : {}) }));
    }
  }

  #quorumActive(): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const [id, pr] of this.#progress) {
      if (pr.isLearner) continue;
      votes.set(id, id === this.id || pr.recentActive);
    }
    return this.#conf.vote(votes) === "won";
  }

  #committedInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  #leaderReadIndex(m: Message): void {
    const context = m.context ?? new Uint8Array(0);
    const voters = this.#conf.allVoters();
    if (voters.length === 1 && voters[0] === this.id) {
      this.#answerRead(m.from, this.log.committed, context);
      return;
    }
    // A new leader does not know the commit index until it commits an entry of its term (§6.4).
    if (!this.#committedInCurrentTerm()) {
      this.#pendingReads.push(m);
      return;
    }
    if (this.#config.readOnly === "lease") {
      this.#answerRead(m.from, this.log.committed, context);
      return;
    }
    const key = hex(context);
    if (!this.#reads.some((r) => hex(r.context) === key)) {
      this.#reads.push({ index: this.log.committed, from: m.from, context, acks: new Set([this.id]) });
    }
    this.#broadcastHeartbeat(context);
  }

  #onReadAck(from: NodeId, context: Uint8Array): void {
    const key = hex(context);
    const at = this.#reads.findIndex((r) => hex(r.context) === key);
    if (at < 0) return;
    const request = this.#reads[at]!;
    request.acks.add(from);
    const votes = new Map<NodeId, boolean>();
    for (const id of request.acks) votes.set(id, true);
    if (this.#conf.vote(votes) !== "won") return;
    // Reads queued before this one are confirmed by the same heartbeat round.
    const done = this.#reads.splice(0, at + 1);
    for (const r of done) this.#answerRead(r.from, r.index, r.context);
  }

  #answerRead(from: NodeId, index: number, context: Uint8Array): void {
    if (from === this.id || from === NONE) this.#readStates.push({ index, context });
    else this.#send(message({ type: "read-index-resp", to: from, index, context }));
  }

  #releasePendingReads(): void {
    if (this.#pendingReads.length === 0 || !this.#committedInCurrentTerm()) return;
    const pending = this.#pendingReads;
    this.#pendingReads = [];
    for (const m of pending) this.#leaderReadIndex(m);
  }

  // ---------------------------------------------------------------------------------------------
  // Candidate and follower

  #stepCandidate(m: Message): void {
    const myResponse: MessageType = this.role === "pre-candidate" ? "prevote-resp" : "vote-resp";
    switch (m.type) {
      case "app":
        this.#becomeFollower(m.term, m.from);
        this.#handleAppend(m);
        return;
      case "heartbeat":
        this.#becomeFollower(m.term, m.from);
        this.#handleHeartbeat(m);
        return;
      case "snap":
        this.#becomeFollower(m.term, m.from);
        this.#handleSnapshot(m);
        return;
      default:
        break;
    }
    if (m.type !== myResponse) return;
    const result = this.#poll(m.from, !m.reject);
    if (result === "won") {
      if (this.role === "pre-candidate") this.#campaign("election");
      else {
        this.#becomeLeader();
        this.#broadcastAppend();
      }
    } else if (result === "lost") {
      this.#becomeFollower(this.term, NONE);
    }
  }

  #stepFollower(m: Message): void {
    switch (m.type) {
      case "prop":
        if (this.lead !== NONE) this.#send({ ...m, to: this.lead });
        return;
      case "app":
        this.#electionElapsed = 0;
        this.lead = m.from;
        this.#handleAppend(m);
        return;
      case "heartbeat":
        this.#electionElapsed = 0;
        this.lead = m.from;
        this.#handleHeartbeat(m);
        return;
      case "snap":
        this.#electionElapsed = 0;
        this.lead = m.from;
        this.#handleSnapshot(m);
        return;
      case "transfer-leader":
        if (this.lead !== NONE) this.#send({ ...m, to: this.lead });
        return;
      case "timeout-now":
        this.#hup(true);
        return;
      case "read-index":
        if (this.lead !== NONE) this.#send({ ...m, to: this.lead });
        return;
      case "read-index-resp":
        this.#readStates.push({ index: m.index, context: m.context ?? new Uint8Array(0) });
        return;
      default:
        return;
    }
  }

  #handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      this.#send(message({ type: "app-resp", to: m.from, index: this.log.committed }));
      return;
    }
    const last = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (last !== undefined) {
      this.#send(message({ type: "app-resp", to: m.from, index: last }));
      return;
    }
    // Reject with a hint: the last index ≤ m.index whose term is ≤ m.logTerm, so the leader can
    // skip a whole term of conflicting entries per round trip (fast backtracking).
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.#send(message({ type: "app-resp", to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term }));
  }

  #handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.#send(message({ type: "heartbeat-resp", to: m.from, ...(m.context ? { context: m.context } : {}) }));
  }

  #handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    if (snapshot === undefined) return;
    if (this.#restore(snapshot)) {
      this.#send(message({ type: "app-resp", to: m.from, index: this.log.lastIndex() }));
    } else {
      this.#send(message({ type: "app-resp", to: m.from, index: this.log.committed }));
    }
  }

  #restore(snapshot: Snapshot): boolean {
    const { index, term, conf } = snapshot.meta;
    if (index <= this.log.committed) return false;
    if (this.role !== "follower") {
      this.#becomeFollower(this.term + 1, NONE);
      return false;
    }
    // The snapshot may predate our own addition (it is the leader's last compaction, not one taken
    // for us): accept it anyway. The change that adds us follows it in the leader's log, and until
    // we apply it we are not a voter of our own configuration, so we cannot campaign.
    if (this.log.matchTerm(index, term)) {
      // We already have the snapshot's last entry: just commit up to it.
      this.log.commitTo(index);
      return false;
    }
    this.log.restore(snapshot);
    this.#switchConf(conf);
    return true;
  }

  #switchConf(conf: ConfState): void {
    this.#conf = new Config(conf);
    const nodes = new Set(this.#conf.allNodes());
    for (const id of [...this.#progress.keys()]) if (!nodes.has(id)) this.#progress.delete(id);
    const last = this.log.lastIndex();
    for (const id of nodes) {
      const existing = this.#progress.get(id);
      if (existing !== undefined) {
        existing.isLearner = !this.#conf.isVoter(id);
        continue;
      }
      // A new member starts probing at our last index; it counts as active so that adding it does
      // not make check-quorum step us down before it answers.
      const pr = new Progress(Math.max(last, 1), !this.#conf.isVoter(id), this.#config.maxInflight, this.#config.maxInflightBytes, true);
      if (id === this.id) pr.match = this.#selfMatch(last);
      this.#progress.set(id, pr);
    }
    if (this.role !== "leader") return;
    if (!this.#conf.isVoter(this.id)) {
      // Removed (or demoted): hand leadership over by stepping down; the others elect a leader.
      this.#becomeFollower(this.term, NONE);
      return;
    }
    if (this.#leadTransferee !== NONE && !this.#conf.isVoter(this.#leadTransferee)) this.#leadTransferee = NONE;
    if (this.#maybeCommit()) this.#broadcastAppend();
    else for (const id of nodes) if (id !== this.id) this.#maybeSendAppend(id, false);
  }

  #send(m: Message): void {
    // Responses to votes carry their own term; local messages and forwarded proposals carry none.
    let term = m.term;
    if (m.type === "prop" || m.type === "read-index" || m.type === "transfer-leader") term = 0;
    else if (term === 0) term = this.term;
    this.#msgs.push({ ...m, from: m.type === "prop" || m.type === "transfer-leader" || m.type === "read-index" ? m.from || this.id : this.id, term });
  }
}

function hex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += (b < 16 ? "0" : "") + b.toString(16);
  return out;
}
