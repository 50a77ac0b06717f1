// What a leader knows about each follower (etcd-raft's tracker package, docs/protocols/raft.md):
// Progress {match, next} in one of three states, the in-flight window that bounds pipelining, and
// the quorum rules for a simple or joint configuration.
//
//   probe      at most one append in flight per heartbeat interval, until the follower's log
//              position is known (after an election or a rejection)
//   replicate  appends are pipelined: `next` advances as soon as an append is sent, bounded by the
//              in-flight window (count and bytes)
//   snapshot   the follower needs a snapshot; nothing is sent until it is acknowledged or fails
import { assert } from "../../util/assert.ts";
import type { ConfState, NodeId } from "./types.ts";

export type ProgressState = "probe" | "replicate" | "snapshot";

/** A sliding window of the last index (and bytes) of each append in flight to one follower. */
export class Inflights {
  readonly #maxCount: number;
  readonly #maxBytes: number;
  readonly #indexes: number[] = [];
  readonly #sizes: number[] = [];
  #head = 0;
  #bytes = 0;

  constructor(maxCount: number, maxBytes: number) {
    assert(maxCount >= 1, "Inflights: maxCount must be at least 1");
    this.#maxCount = maxCount;
    this.#maxBytes = maxBytes;
  }

  get count(): number {
    return this.#indexes.length - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  full(): boolean {
    return this.count >= this.#maxCount || this.#bytes >= this.#maxBytes;
  }

  add(index: number, bytes: number): void {
    assert(!this.full(), "Inflights: add to a full window");
    this.#indexes.push(index);
    this.#sizes.push(bytes);
    this.#bytes += bytes;
  }

  /** Frees every append whose last index is ≤ index (the follower acknowledged them). */
  freeLE(index: number): void {
    while (this.#head < this.#indexes.length && this.#indexes[this.#head]! <= index) {
      this.#bytes -= this.#sizes[this.#head]!;
      this.#head++;
    }
    if (this.#head > 64 && this.#head * 2 > this.#indexes.length) {
      this.#indexes.splice(0, this.#head);
      this.#sizes.splice(0, this.#head);
      this.#head = 0;
    }
  }

  freeFirstOne(): void {
    if (this.count > 0) this.freeLE(this.#indexes[this.#head]!);
  }

  reset(): void {
    this.#indexes.length = 0;
    this.#sizes.length = 0;
    this.#head = 0;
    this.#bytes = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** probe: an append is in flight; wait for a response or the next heartbeat. */
  probeSent = false;
  /** snapshot: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum. */
  recentActive: boolean;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(next: number, isLearner: boolean, maxInflight: number, maxInflightBytes: number, recentActive = false) {
    this.next = next;
    this.isLearner = isLearner;
    this.recentActive = recentActive;
    this.inflights = new Inflights(maxInflight, maxInflightBytes);
  }

  #resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.#resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.#resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.#resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(index: number): void {
    this.#resetState("snapshot");
    this.pendingSnapshot = index;
  }

  /** An append of `count` entries (last one `lastIndex`) was sent. */
  sentEntries(count: number, bytes: number, lastIndex: number): void {
    if (this.state === "replicate") {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
    } else if (this.state === "probe") {
      if (count > 0) this.probeSent = true;
    }
  }

  /** The follower acknowledged up to n; false if the acknowledgement is stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      this.probeSent = false;
      updated = true;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * The follower rejected an append at `rejected`; `hint` is where it guesses our logs agree.
   * False if the rejection is stale (an older append's).
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe": return this.probeSent;
      case "replicate": return this.inflights.full();
      case "snapshot": return true;
    }
  }
}

export type VoteResult = "won" | "lost" | "pending";

/** The highest index a majority of `voters` has matched; Infinity for an empty set (joint halves). */
export function majorityCommitted(voters: readonly NodeId[], matchOf: (id: NodeId) => number): number {
  if (voters.length === 0) return Infinity;
  const matches = voters.map(matchOf).sort((a, b) => b - a);
  return matches[Math.floor(voters.length / 2)]!;
}

export function majorityVote(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return "won";
  let yes = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === undefined) missing++;
    else if (vote) yes++;
  }
  const quorum = Math.floor(voters.length / 2) + 1;
  if (yes >= quorum) return "won";
  if (yes + missing >= quorum) return "pending";
  return "lost";
}

/** A simple or joint configuration's view of quorums. */
export class Config {
  readonly voters: readonly NodeId[];
  readonly outgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
  readonly learnersNext: readonly NodeId[];
  readonly autoLeave: boolean;

  constructor(conf: ConfState) {
    this.voters = [...conf.voters].sort();
    this.outgoing = [...conf.votersOutgoing].sort();
    this.learners = [...conf.learners].sort();
    this.learnersNext = [...conf.learnersNext].sort();
    this.autoLeave = conf.autoLeave;
  }

  get joint(): boolean {
    return this.outgoing.length > 0;
  }

  toConfState(): ConfState {
    return { voters: this.voters, votersOutgoing: this.outgoing, learners: this.learners, learnersNext: this.learnersNext, autoLeave: this.autoLeave };
  }

  /** Every voter of either half, sorted, without duplicates. */
  allVoters(): NodeId[] {
    return [...new Set([...this.voters, ...this.outgoing])].sort();
  }

  /** Every node that gets a Progress: voters of both halves and learners. */
  allNodes(): NodeId[] {
    return [...new Set([...this.voters, ...this.outgoing, ...this.learners, ...this.learnersNext])].sort();
  }

  isVoter(id: NodeId): boolean {
    return this.voters.includes(id) || this.outgoing.includes(id);
  }

  committed(matchOf: (id: NodeId) => number): number {
    return Math.min(majorityCommitted(this.voters, matchOf), majorityCommitted(this.outgoing, matchOf));
  }

  vote(votes: ReadonlyMap<NodeId, boolean>): VoteResult {
    const a = majorityVote(this.voters, votes);
    const b = majorityVote(this.outgoing, votes);
    if (a === "lost" || b === "lost") return "lost";
    if (a === "won" && b === "won") return "won";
    return "pending";
  }
}
