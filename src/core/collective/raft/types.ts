// The vocabulary of the Raft core (src/core/collective/raft): log entries, durable state,
// configurations, snapshots and messages. Plain data, so the simulator can copy, print and hash it
// and the wire codec can carry it. The shape follows etcd-raft (raftpb), spelled in TypeScript.

/** Node ids are the kernel's 16-hex-digit ids; "" means none (no vote, no leader). */
export type NodeId = string;
export const NONE: NodeId = "";

export type EntryType = "normal" | "conf";

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Application command; for "conf" entries an encoded ConfChange (confchange.ts). Empty for the no-op a new leader appends. */
  readonly data: Uint8Array;
}

/** What must be on disk before a node answers anyone: term, vote and the commit index. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

/**
 * A configuration. In a joint configuration (during a change) `votersOutgoing` is the old voter
 * set and decisions need a majority of both; `learnersNext` are voters of the old configuration
 * that become learners when the joint configuration is left.
 */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly votersOutgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
  readonly learnersNext: readonly NodeId[];
  /** Leave the joint configuration by itself once it is committed (etcd's ConfChangeTransitionAuto). */
  readonly autoLeave: boolean;
}

export const EMPTY_CONF: ConfState = { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly conf: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The state machine's image at meta.index, opaque to Raft. */
  readonly data: Uint8Array;
}

export type ConfChangeType = "add-voter" | "add-learner" | "remove";

export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly node: NodeId;
}

/**
 * A membership change. One change to the voters applies directly (a "simple" change); anything
 * more goes through a joint configuration (Raft thesis §4.3). An empty change list leaves a joint
 * configuration. `transition`: "auto" leaves the joint configuration by itself; "explicit" waits for
 * an empty change; "joint" forces the joint path even for one change.
 */
export interface ConfChange {
  readonly changes: readonly ConfChangeSingle[];
  readonly transition: "auto" | "explicit";
  /** Force a joint configuration even for a single change. */
  readonly joint?: boolean;
  /**
   * Regeneration only (ADR 008): replace the whole configuration by these voters. Written by a
   * survivor into its own log with Raft.forceNewConfiguration, never proposed.
   */
  readonly reset?: { readonly voters: readonly NodeId[]; readonly epoch: number };
}

export type MessageType =
  | "hup" // local: start an election now
  | "beat" // local: leader sends heartbeats now
  | "prop" // a proposal (local, or forwarded by a follower)
  | "app"
  | "app-resp"
  | "vote"
  | "vote-resp"
  | "prevote"
  | "prevote-resp"
  | "snap"
  | "heartbeat"
  | "heartbeat-resp"
  | "unreachable" // local: the transport could not reach `from`
  | "snap-status" // local: how sending a snapshot to `from` ended (reject = failed)
  | "check-quorum" // local: leader checks it heard from a quorum
  | "transfer-leader"
  | "timeout-now"
  | "read-index"
  | "read-index-resp";

/** Messages that only ever come from the local node, never from the network. */
export const LOCAL_MESSAGES: ReadonlySet<MessageType> = new Set(["hup", "beat", "unreachable", "snap-status", "check-quorum"]);

export interface Message {
  readonly type: MessageType;
  readonly to: NodeId;
  readonly from: NodeId;
  readonly term: number;
  /** app: term of the entry at `index` (prevLogTerm); vote: last log term; app-resp reject: hint term. */
  readonly logTerm: number;
  /** app: prevLogIndex; vote: last log index; app-resp: last index accepted (or rejected index). */
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly snapshot?: Snapshot;
  readonly reject: boolean;
  /** app-resp reject: the follower's best guess of where logs may agree. */
  readonly rejectHint: number;
  /** read-index / heartbeat: the read request's context. */
  readonly context?: Uint8Array;
}

export function message(fields: Partial<Message> & Pick<Message, "type">): Message {
  return {
    to: NONE, from: NONE, term: 0, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0,
    ...fields,
  };
}

export type RaftRole = "follower" | "pre-candidate" | "candidate" | "leader";

/** A completed read request: reads of state applied up to `index` are linearizable. */
export interface ReadState {
  readonly index: number;
  readonly context: Uint8Array;
}

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Size of an entry as flow control counts it: its payload plus a fixed overhead. */
export function entrySize(entry: Entry): number {
  return entry.data.length + 16;
}
