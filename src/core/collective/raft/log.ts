// The Raft log as one node holds it: a snapshot base (index and term of the last compacted entry)
// and the entries after it, all in memory (ADR 007: the log is bounded by snapshotting, so the
// durable store is a write-through sink read only at boot). It tracks three positions:
//
//   snapshot.index  <  applied  <=  committed  <=  lastIndex
//                                    stable: the last index the node has made durable
//
// Entries above `stable` and a snapshot received from the leader are handed to the node in ready()
// to be persisted; committed entries above `applying` are handed out to be applied.
import { assert } from "../../util/assert.ts";
import { entrySize, type Entry, type Snapshot, type SnapshotMeta } from "./types.ts";

export class RaftLog {
  #snap: SnapshotMeta;
  /** entries[i].index === snap.index + 1 + i */
  #entries: Entry[];
  committed: number;
  /** Highest index handed out for applying (in a ready not yet advanced, or advanced). */
  applying: number;
  /** Highest index the node reported applied (advance). */
  applied: number;
  /** Highest index handed out to be persisted (the node's write may still be in flight). */
  stable: number;
  /** Highest index the node confirmed durable (equal to stable with synchronous storage). */
  durable: number;
  /** A snapshot received from the leader and not yet persisted and applied. */
  unstableSnapshot: Snapshot | undefined;

  constructor(snap: SnapshotMeta, entries: readonly Entry[], committed: number, applied: number) {
    assert(committed >= snap.index, "RaftLog: commit below the snapshot");
    this.#snap = snap;
    this.#entries = [...entries];
    for (let i = 0; i < this.#entries.length; i++) {
      assert(this.#entries[i]!.index === snap.index + 1 + i, "RaftLog: entries are not contiguous after the snapshot");
    }
    this.committed = committed;
    this.applied = Math.max(applied, snap.index);
    this.applying = this.applied;
    this.stable = this.lastIndex();
    this.durable = this.stable;
    this.unstableSnapshot = undefined;
    assert(this.committed <= this.lastIndex(), "RaftLog: commit beyond the last entry");
  }

  get snapshotMeta(): SnapshotMeta {
    return this.#snap;
  }

  firstIndex(): number {
    return this.#snap.index + 1;
  }

  lastIndex(): number {
    return this.#snap.index + this.#entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /** The term of entry i; undefined when i is compacted away or beyond the log. */
  term(i: number): number | undefined {
    if (i === this.#snap.index) return this.#snap.term;
    if (i < this.#snap.index || i > this.lastIndex()) return undefined;
    return this.#entries[i - this.#snap.index - 1]!.term;
  }

  matchTerm(i: number, term: number): boolean {
    return this.term(i) === term;
  }

  entry(i: number): Entry | undefined {
    if (i <= this.#snap.index || i > this.lastIndex()) return undefined;
    return this.#entries[i - this.#snap.index - 1];
  }

  /** Entries in [lo, hi), at least one, then as many as fit in maxBytes. Undefined if lo is compacted. */
  slice(lo: number, hi: number, maxBytes = Infinity): Entry[] | undefined {
    if (lo <= this.#snap.index) return undefined;
    hi = Math.min(hi, this.lastIndex() + 1);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const entry = this.#entries[i - this.#snap.index - 1]!;
      bytes += entrySize(entry);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(entry);
    }
    return out;
  }

  /** Candidate's log (lastIndex, lastTerm) is at least as up to date as ours (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * The follower side of AppendEntries: if our entry at `index` has term `logTerm`, append what
   * is new in `entries` (truncating a conflicting suffix) and commit up to min(commit, last new).
   * Returns the index of the last new entry, or undefined on a mismatch.
   */
  maybeAppend(index: number, logTerm: number, commit: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, `RaftLog: entry ${conflict} conflicts with the committed log (commit ${this.committed})`);
      this.append(entries.slice(conflict - index - 1));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /** The index of the first entry that is new or conflicts with ours; 0 if all are present. */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (entry.index <= this.#snap.index) continue; // compacted: committed, so it matches
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * The largest index ≤ index whose term is ≤ term, for fast backtracking: a leader whose entry at
   * some index has `term` can skip every entry of ours with a larger term.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.#snap.index; i--) {
      const t = this.term(i)!;
      if (t <= term) return { index: i, term: t };
    }
    return { index: this.#snap.index, term: this.#snap.term };
  }

  /** Appends entries, truncating every entry at or after the first one's index. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    assert(first > this.committed, `RaftLog: append at ${first} would overwrite committed entries (commit ${this.committed})`);
    assert(first <= this.lastIndex() + 1, `RaftLog: append at ${first} leaves a gap after ${this.lastIndex()}`);
    if (first <= this.lastIndex()) {
      this.#entries.length = first - this.#snap.index - 1;
      this.stable = Math.min(this.stable, first - 1);
      this.durable = Math.min(this.durable, first - 1);
    }
    for (const entry of entries) this.#entries.push(entry);
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `RaftLog: commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Leader: commit `index` if it is newer and of the current term (§5.4.2). */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  unstableEntries(): Entry[] {
    if (this.stable >= this.lastIndex()) return [];
    return this.#entries.slice(this.stable - this.#snap.index);
  }

  hasNextCommitted(): boolean {
    return this.unstableSnapshot === undefined && this.committed > this.applying;
  }

  /** Committed entries not yet handed out, up to maxBytes (at least one). */
  nextCommitted(maxBytes: number): Entry[] {
    if (!this.hasNextCommitted()) return [];
    return this.slice(this.applying + 1, this.committed + 1, maxBytes) ?? [];
  }

  stableTo(index: number, term: number): void {
    if (this.term(index) === term && index > this.stable) this.stable = index;
  }

  /** Replaces the log by a snapshot from the leader; its entries are dropped. */
  restore(snapshot: Snapshot): void {
    this.#snap = snapshot.meta;
    this.#entries = [];
    this.committed = snapshot.meta.index;
    this.stable = snapshot.meta.index;
    this.durable = 0;
    this.unstableSnapshot = snapshot;
  }

  /** The node persisted and applied the received snapshot. */
  snapshotApplied(index: number): void {
    if (this.unstableSnapshot?.meta.index === index) {
      this.unstableSnapshot = undefined;
      this.applying = Math.max(this.applying, index);
      this.applied = Math.max(this.applied, index);
    }
  }

  /** Drops entries up to `meta.index` after the node took a snapshot there (index ≤ applied). */
  compact(meta: SnapshotMeta): void {
    assert(meta.index <= this.applied, `RaftLog: compaction at ${meta.index} beyond applied ${this.applied}`);
    if (meta.index <= this.#snap.index) return;
    assert(this.term(meta.index) === meta.term, "RaftLog: compaction term mismatch");
    this.#entries = this.#entries.slice(meta.index - this.#snap.index);
    this.#snap = meta;
  }

  /** Entries held in memory, for status. */
  get size(): number {
    return this.#entries.length;
  }
}
