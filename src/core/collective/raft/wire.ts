// Raft messages on the wire (docs/protocols/raft.md): one `raft` message per Raft message, on the
// stream channel, with short keys and entries as tuples. The schema bounds every field; conversion
// back copies every byte field out of the packet (the decoder hands out views into it) because
// entries and snapshots outlive the packet in the log.
import { Type, type Static } from "@sinclair/typebox";
import { LIMITS } from "../../util/limits.ts";
import { LOCAL_MESSAGES, type ConfState, type Entry, type Message, type MessageType, type Snapshot } from "./types.ts";

const u53 = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Id = Type.String({ pattern: "^[0-9a-f]{16}$" });
/** Entries per message (LIMITS.raft). */
export const RAFT_ENTRIES_PER_MESSAGE_MAX = LIMITS.raft.entriesPerMessageMax;

const TYPES: readonly MessageType[] = [
  "hup", "beat", "prop", "app", "app-resp", "vote", "vote-resp", "prevote", "prevote-resp", "snap",
  "heartbeat", "heartbeat-resp", "unreachable", "snap-status", "check-quorum", "transfer-leader",
  "timeout-now", "read-index", "read-index-resp",
];
const TYPE_CODES = new Map(TYPES.map((t, i) => [t, i]));
/** Messages a peer may send; local ones (hup, beat, unreachable, snap-status, check-quorum) are refused. */
const REMOTE_CODES = TYPES.map((t, i) => (LOCAL_MESSAGES.has(t) ? -1 : i)).filter((i) => i >= 0);

const Ids = Type.Array(Id, { maxItems: LIMITS.raft.confMembersMax });
export const ConfStateWireSchema = Type.Tuple([Ids, Ids, Ids, Ids, Type.Boolean()]);
/** [term, index, type (0 normal, 1 conf), data] */
export const EntryWireSchema = Type.Tuple([u53, u53, Type.Union([Type.Literal(0), Type.Literal(1)]), Type.Uint8Array({ maxByteLength: LIMITS.raft.entryBytesMax })]);
export const SnapshotWireSchema = Type.Tuple([u53, u53, ConfStateWireSchema, Type.Uint8Array({ maxByteLength: LIMITS.raft.snapshotBytesMax })]);

export const RaftWireSchema = Type.Object({
  t: Type.Literal("raft"),
  /** Message type code (index into TYPES); only types a peer may send. */
  k: Type.Union(REMOTE_CODES.map((code) => Type.Literal(code))),
  to: Id,
  /** For forwarded proposals and transfer requests the originator, otherwise the sender. */
  fr: Id,
  term: u53,
  lt: u53,
  i: u53,
  c: u53,
  rj: Type.Boolean(),
  rh: u53,
  e: Type.Array(EntryWireSchema, { maxItems: RAFT_ENTRIES_PER_MESSAGE_MAX }),
  s: Type.Optional(SnapshotWireSchema),
  x: Type.Optional(Type.Uint8Array({ maxByteLength: LIMITS.raft.contextBytesMax })),
});
export type RaftWire = Static<typeof RaftWireSchema>;

export function confToWire(conf: ConfState): Static<typeof ConfStateWireSchema> {
  return [[...conf.voters], [...conf.votersOutgoing], [...conf.learners], [...conf.learnersNext], conf.autoLeave];
}

export function confFromWire(wire: Static<typeof ConfStateWireSchema>): ConfState {
  return { voters: [...wire[0]], votersOutgoing: [...wire[1]], learners: [...wire[2]], learnersNext: [...wire[3]], autoLeave: wire[4] };
}

export function snapshotToWire(s: Snapshot): Static<typeof SnapshotWireSchema> {
  return [s.meta.index, s.meta.term, confToWire(s.meta.conf), s.data];
}

export function snapshotFromWire(w: Static<typeof SnapshotWireSchema>): Snapshot {
  return { meta: { index: w[0], term: w[1], conf: confFromWire(w[2]) }, data: w[3].slice() };
}

export function entryToWire(e: Entry): Static<typeof EntryWireSchema> {
  return [e.term, e.index, e.type === "conf" ? 1 : 0, e.data];
}

export function entryFromWire(w: Static<typeof EntryWireSchema>): Entry {
  return { term: w[0], index: w[1], type: w[2] === 1 ? "conf" : "normal", data: w[3].slice() };
}

export function raftToWire(m: Message): RaftWire {
  const wire: RaftWire = {
    t: "raft", k: TYPE_CODES.get(m.type)!, to: m.to, fr: m.from, term: m.term, lt: m.logTerm, i: m.index, c: m.commit,
    rj: m.reject, rh: m.rejectHint, e: m.entries.map(entryToWire),
  };
  if (m.snapshot !== undefined) wire.s = snapshotToWire(m.snapshot);
  if (m.context !== undefined) wire.x = m.context;
  return wire;
}

/**
 * The Raft message a validated wire message carries, or a reason to drop it: entries must be
 * contiguous, and a message claiming to come from someone other than its sender is refused unless
 * it is a forwarded proposal or transfer request.
 */
export function raftFromWire(w: RaftWire, sender: string): { ok: true; message: Message } | { ok: false; detail: string } {
  const type = TYPES[w.k]!;
  const forwardable = type === "prop" || type === "transfer-leader" || type === "read-index";
  if (w.fr !== sender && !forwardable) return { ok: false, detail: `raft ${type} from ${sender} claims ${w.fr}` };
  // Proposals and read requests travel with term 0 (they are local to the leader); nothing else may.
  if ((w.term === 0) !== (type === "prop" || type === "read-index" || type === "transfer-leader")) {
    return { ok: false, detail: `raft ${type} with term ${w.term}` };
  }
  if (type === "prop") {
    // A forwarded proposal's entries are not stamped yet: the leader gives them term and index.
    if (w.e.length === 0) return { ok: false, detail: "raft prop without entries" };
    if (w.e.some((e) => e[0] !== 0 || e[1] !== 0)) return { ok: false, detail: "raft prop with stamped entries" };
  } else {
    for (let i = 1; i < w.e.length; i++) {
      if (w.e[i]![1] !== w.e[i - 1]![1] + 1) return { ok: false, detail: `raft ${type}: entries not contiguous` };
    }
  }
  const message: Message = {
    type, to: w.to, from: w.fr, term: w.term, logTerm: w.lt, index: w.i, commit: w.c, reject: w.rj, rejectHint: w.rh,
    entries: w.e.map(entryFromWire),
    ...(w.s !== undefined ? { snapshot: snapshotFromWire(w.s) } : {}),
    ...(w.x !== undefined ? { context: w.x.slice() } : {}),
  };
  return { ok: true, message };
}
