// Typed message schemas: the one place where decoded bytes become typed messages. Every message a
// core sees has passed validate() below; a message that fails is dropped and counted.
//
// Schemas are TypeBox (JSON Schema) compiled once into checking functions: validation is on the
// path of every packet, and a compiled check costs about 1 µs for a 10-entry gossip (ADR 002).
//
// Adding a message: add its schema to MESSAGE_SCHEMAS (the key is its `t` tag) and document it in
// docs/protocols/wire.md. Never change the meaning of an existing field; add a new one instead.
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { TypeCompiler, type TypeCheck } from "@sinclair/typebox/compiler";
import { LIMITS } from "../util/limits.ts";
import { RaftWireSchema } from "../collective/raft/wire.ts";
import { GossipWireSchema } from "../collective/gossip-wire.ts";
import { SFS_MESSAGE_SCHEMAS } from "../collective/sfs-wire.ts";
import { MESH_SCHEMAS } from "../collective/mesh-wire.ts";
import { MIND_MESSAGE_SCHEMAS } from "../self/mind-wire.ts";
import { BUNDLE_MESSAGE_SCHEMAS } from "../evolve/bundle-wire.ts";

const bytes = (length: number) => Type.Uint8Array({ minByteLength: length, maxByteLength: length });
const u32 = Type.Integer({ minimum: 0, maximum: 0xffff_ffff });
const safeU = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

export const NodeIdSchema = Type.String({ pattern: "^[0-9a-f]{16}$" });
export const AddressSchema = Type.String({ maxLength: LIMITS.addressCharsMax, pattern: "^([^\\s:\\[\\]]+|\\[[0-9a-fA-F:.]+\\]):[0-9]{1,5}$" });
export const RoleSchema = Type.Union([Type.Literal("core"), Type.Literal("contributor")]);
const NameSchema = Type.String({ maxLength: LIMITS.nameCharsMax });

/** What a node tells others about itself or about a member it knows (in memory and in the store). */
export const MemberEntrySchema = Type.Object({
  id: NodeIdSchema,
  /** Ed25519 public key; its SHA-256 prefix must equal id. */
  pub: bytes(32),
  addr: AddressSchema,
  role: RoleSchema,
  name: NameSchema,
  /** Owned by the member; bumped when it restarts or refutes. */
  incarnation: u32,
  /** The member's boot epoch (docs/protocols/wire.md): packets to it are sealed for this boot. */
  epoch: safeU,
  /** The owner-signed certificate that grants `role` to `pub` (src/core/body/trust.ts). */
  cert: bytes(82),
  /** The member's own Ed25519 signature over the fields above (trust.ts aliveMessage). */
  sig: bytes(64),
});
export type MemberEntry = Static<typeof MemberEntrySchema>;
export type Role = Static<typeof RoleSchema>;

/**
 * On the wire an entry is the 9-tuple [id, pub, addr, role, name, incarnation, epoch, cert, sig]:
 * without key names it is about a third smaller than a map and packs several times faster.
 */
export const MemberEntryWireSchema = Type.Tuple([NodeIdSchema, bytes(32), AddressSchema, RoleSchema, NameSchema, u32, safeU, bytes(82), bytes(64)]);
export type MemberEntryWire = Static<typeof MemberEntryWireSchema>;

export function entryToWire(entry: MemberEntry): MemberEntryWire {
  return [entry.id, entry.pub, entry.addr, entry.role, entry.name, entry.incarnation, entry.epoch, entry.cert, entry.sig];
}

/** The decoder hands out byte fields as views into the packet; a kept entry gets its own copies. */
export function entryFromWire(wire: MemberEntryWire): MemberEntry {
  return {
    id: wire[0], pub: wire[1].slice(), addr: wire[2], role: wire[3], name: wire[4], incarnation: wire[5],
    epoch: wire[6], cert: wire[7].slice(), sig: wire[8].slice(),
  };
}


/**
 * One SWIM membership update as a compact tuple (src/core/body/swim.ts, docs/protocols/swim.md):
 *   [0, entry]                        alive: the member's whole entry, its incarnation inside
 *   [s, id, incarnation, from, sig]   s = 1 suspect, 2 dead, 3 left; `from` is the node that said
 *                                     so, `sig` its signature over the claim (trust.ts claimMessage)
 */
export const SwimAliveWireSchema = Type.Tuple([Type.Literal(0), MemberEntryWireSchema]);
export const SwimStateWireSchema = Type.Tuple([
  Type.Union([Type.Literal(1), Type.Literal(2), Type.Literal(3)]), NodeIdSchema, u32, NodeIdSchema, bytes(64),
]);
export const SwimUpdateWireSchema = Type.Union([SwimAliveWireSchema, SwimStateWireSchema]);
export type SwimUpdateWire = Static<typeof SwimUpdateWireSchema>;
const Updates = (maxItems: number) => Type.Array(SwimUpdateWireSchema, { maxItems });

/**
 * One guarded task as the tuple [name, command, everyTicks, owner, epoch, removed, pub, sig]:
 * `epoch` rises with every change (define, adoption, removal); the record with the higher epoch
 * wins, and at equal epochs the lower owner id, then the smaller command (a total order, so every
 * node converges). The owner wrote it: `pub` is its Ed25519 key (32 bytes) and `sig` (64 bytes) its
 * signature over the other fields (heal.ts healRecordBody, docs/protocols/heal.md).
 */
const GUARDED_TASK_FIELDS = [
  Type.String({ minLength: 1, maxLength: LIMITS.guardNameCharsMax, pattern: "^[A-Za-z0-9._-]+$" }),
  Type.String({ minLength: 1, maxLength: LIMITS.guardCommandCharsMax }),
  Type.Integer({ minimum: 1, maximum: LIMITS.guardEveryTicksMax }),
  NodeIdSchema, u32, Type.Boolean(),
] as const;
export const GuardedTaskWireSchema = Type.Tuple([...GUARDED_TASK_FIELDS, bytes(32), bytes(64)]);
export type GuardedTaskWire = Static<typeof GuardedTaskWireSchema>;
/** A record of the previous format, without key and signature: read from the store only (guard.ts restore). */
export const UnsignedGuardedTaskWireSchema = Type.Tuple([...GUARDED_TASK_FIELDS]);
export type UnsignedGuardedTaskWire = Static<typeof UnsignedGuardedTaskWireSchema>;

/** The wire form of every message, keyed by its `t` tag. */
export const MESSAGE_SCHEMAS = {
  /** Joiner → seed: asks to join; the seed answers with a challenge. */
  hello: Type.Object({ t: Type.Literal("hello"), entry: MemberEntryWireSchema }),
  /** Seed → joiner: a fresh nonce to sign. */
  challenge: Type.Object({ t: Type.Literal("challenge"), nonce: bytes(16) }),
  /** Joiner → seed: signature over the join transcript (see roster.ts joinTranscript). */
  proof: Type.Object({ t: Type.Literal("proof"), entry: MemberEntryWireSchema, nonce: bytes(16), sig: bytes(64) }),
  /** Seed → joiner, on the stream channel: the seed's SWIM table, itself first. */
  welcome: Type.Object({ t: Type.Literal("welcome"), states: Updates(LIMITS.membersMax) }),
  /**
   * A node redeeming an invite code (docs/protocols/trust.md), in an intro packet to a core node
   * the code names: its key, where to answer, and the invite's secret in a box only that core node
   * opens (X25519 of the two keys, Seal.box).
   */
  redeem: Type.Object({ t: Type.Literal("redeem"), pub: bytes(32), addr: AddressSchema, box: Type.Uint8Array({ minByteLength: 32, maxByteLength: LIMITS.trust.redeemBoxBytesMax }) }),
  /** The core node's answer: a certificate for the redeeming key (`cert`), or why not (`error`). */
  grant: Type.Object({ t: Type.Literal("grant"), cert: Type.Optional(bytes(82)), error: Type.Optional(Type.String({ maxLength: LIMITS.trust.grantErrorCharsMax })) }),
  /** Round-trip probe used by `net`. `sent` is the sender's clock in µs, echoed back. */
  ping: Type.Object({ t: Type.Literal("ping"), seq: u32, sent: safeU }),
  ack: Type.Object({ t: Type.Literal("ack"), seq: u32, sent: safeU }),
  /** SWIM direct probe; `addr` is where the ack goes, `target` the id the prober meant to reach. */
  "swim-ping": Type.Object({
    t: Type.Literal("swim-ping"), seq: u32, target: NodeIdSchema, addr: AddressSchema, updates: Updates(LIMITS.swimUpdatesMax),
  }),
  /** SWIM indirect probe request: ping `target` at `targetAddr` for me, answer to `addr`. */
  "swim-ping-req": Type.Object({
    t: Type.Literal("swim-ping-req"), seq: u32, target: NodeIdSchema, targetAddr: AddressSchema, addr: AddressSchema,
    updates: Updates(LIMITS.swimUpdatesMax),
  }),
  /** Answer to a swim-ping, or forwarded by a helper for a swim-ping-req (carrying the prober's seq). */
  "swim-ack": Type.Object({ t: Type.Literal("swim-ack"), seq: u32, updates: Updates(LIMITS.swimUpdatesMax) }),
  /** Lifeguard: the helper got no ack from the target in time (so the prober is not the slow one). */
  "swim-nack": Type.Object({ t: Type.Literal("swim-nack"), seq: u32, updates: Updates(LIMITS.swimUpdatesMax) }),
  /** Piggyback-only datagram, sent every gossip period to a few members while there is news. */
  "swim-gossip": Type.Object({ t: Type.Literal("swim-gossip"), updates: Updates(LIMITS.swimUpdatesMax) }),
  /** Vital signs of the sender (src/core/body/vital.ts), a datagram every vital period. */
  vital: Type.Object({
    t: Type.Literal("vital"),
    /** Uptime in ms, 1-minute load average × 1000, resident and heap bytes, event-loop delay p99 in µs. */
    up: safeU, load: u32, rss: safeU, heap: safeU, lag: u32,
  }),
  /**
   * Guarded-task records (src/core/body/heal.ts), on the stream channel: a change to every member,
   * the whole table to one member per sync period; `reply` asks for the receiver's table back.
   */
  heal: Type.Object({ t: Type.Literal("heal"), reply: Type.Boolean(), tasks: Type.Array(GuardedTaskWireSchema, { maxItems: LIMITS.guardedTasksMax }) }),
  /** Push-pull on the stream channel: the sender's whole state table; `reply` asks for the receiver's. */
  "swim-sync": Type.Object({ t: Type.Literal("swim-sync"), reply: Type.Boolean(), states: Updates(LIMITS.membersMax) }),
  /** One Raft message (src/core/collective/raft/wire.ts, docs/protocols/raft.md), on the stream channel. */
  raft: RaftWireSchema,
  /**
   * Regeneration (ADR 008), on the stream channel: a survivor of a configuration that lost a
   * majority of voters tells the other survivors how up to date its log is.
   */
  "raft-offer": Type.Object({ t: Type.Literal("raft-offer"), epoch: safeU, lt: safeU, li: safeU }),
  /** Gossip topics' anti-entropy (src/core/collective/gossip.ts, docs/protocols/gossip.md), a datagram. */
  gossip: GossipWireSchema,
  /**
   * The Self layer's memories (src/node/self/memory.ts, docs/protocols/memory.md): a second table of
   * the gossip kind, its anti-entropy on the stream channel (larger rows); the same fields.
   */
  memory: Type.Object({ ...GossipWireSchema.properties, t: Type.Literal("memory") }),
  /** The shared folder (src/core/collective/sfs.ts, docs/protocols/sfs.md), on the stream channel. */
  ...SFS_MESSAGE_SCHEMAS,
  /**
   * The Brain's RPC (src/node/brain/service.ts, docs/protocols/brain.md), on the stream channel:
   * `c` the caller's call id, `r` true in an answer, `b` one brain-wire message.
   */
  brain: Type.Object({ t: Type.Literal("brain"), c: u32, r: Type.Boolean(), b: Type.Uint8Array({ maxByteLength: LIMITS.frameBytesMax }) }),
  /** Mesh routing (src/core/collective/mesh.ts, docs/protocols/mesh.md): updates, seqno requests, routed data; datagrams. */
  ...MESH_SCHEMAS,
  /** Asking a member's mind (src/core/self/mind-wire.ts, docs/protocols/minds.md), on the stream channel. */
  ...MIND_MESSAGE_SCHEMAS,
  /** The code bundle (src/core/evolve/bundle-wire.ts, docs/protocols/bundle.md), on the stream channel. */
  ...BUNDLE_MESSAGE_SCHEMAS,
} as const;

type WireSchemas = typeof MESSAGE_SCHEMAS;
export type MessageType = keyof WireSchemas;
type WireMessage = { [K in MessageType]: Static<WireSchemas[K]> }[MessageType];

/** The in-memory form: member entries as objects. */
type Decoded<M> = M extends { entry: MemberEntryWire } ? Omit<M, "entry"> & { entry: MemberEntry } : M;
export type Message = Decoded<WireMessage>;
export type MessageOf<K extends MessageType> = Extract<Message, { t: K }>;

/** The join handshake's messages (src/core/body/roster.ts); the roster ignores every other kind. */
const ROSTER_TYPES = ["hello", "challenge", "proof", "welcome"] as const;
export type RosterMessage = MessageOf<(typeof ROSTER_TYPES)[number]>;
const ROSTER_SET: ReadonlySet<MessageType> = new Set(ROSTER_TYPES);
export function isRosterMessage(message: Message): message is RosterMessage {
  return ROSTER_SET.has(message.t);
}

/** What travels in intro packets (the cluster key only): the handshake, and redeeming an invite. */
export function isIntroMessage(message: Message): boolean {
  return ROSTER_SET.has(message.t) || message.t === "redeem" || message.t === "grant";
}

/** SWIM's messages (src/core/body/swim.ts); SWIM ignores every other kind. */
const SWIM_TYPES = ["swim-ping", "swim-ping-req", "swim-ack", "swim-nack", "swim-gossip", "swim-sync"] as const;
export type SwimMessage = MessageOf<(typeof SWIM_TYPES)[number]>;
const SWIM_SET: ReadonlySet<MessageType> = new Set(SWIM_TYPES);
export function isSwimMessage(message: Message): message is SwimMessage {
  return SWIM_SET.has(message.t);
}

const CHECKS = Object.fromEntries(
  Object.entries(MESSAGE_SCHEMAS).map(([t, schema]) => [t, TypeCompiler.Compile(schema as TSchema)]),
) as { [K in MessageType]: TypeCheck<WireSchemas[K]> };

const ENTRY_WIRE_CHECK = TypeCompiler.Compile(MemberEntryWireSchema);
const TASK_WIRE_CHECK = TypeCompiler.Compile(GuardedTaskWireSchema);
const UNSIGNED_TASK_WIRE_CHECK = TypeCompiler.Compile(UnsignedGuardedTaskWireSchema);

export type ValidateResult =
  | { readonly ok: true; readonly message: Message }
  | { readonly ok: false; readonly reason: "decode"; readonly detail: string };

function isMessageType(t: unknown): t is MessageType {
  return typeof t === "string" && Object.hasOwn(MESSAGE_SCHEMAS, t);
}

/** Checks a decoded value against its message schema and returns the in-memory message. */
export function validate(value: unknown): ValidateResult {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: "decode", detail: "message is not an object" };
  }
  const t = (value as { t?: unknown }).t;
  if (!isMessageType(t)) return { ok: false, reason: "decode", detail: `unknown message type ${String(JSON.stringify(t)).slice(0, 40)}` };
  const check = CHECKS[t] as TypeCheck<TSchema>;
  if (!check.Check(value)) {
    const first = check.Errors(value).First();
    return { ok: false, reason: "decode", detail: `${t}: ${first?.path ?? ""} ${first?.message ?? "invalid"}` };
  }
  return { ok: true, message: fromWire(value as WireMessage) };
}

/** True when a value (from the store, say) is a well-formed member entry in its tuple form. */
export function isMemberEntryWire(value: unknown): value is MemberEntryWire {
  return ENTRY_WIRE_CHECK.Check(value);
}

/** True when a value (from the store) is a well-formed guarded-task record. */
export function isGuardedTaskWire(value: unknown): value is GuardedTaskWire {
  return TASK_WIRE_CHECK.Check(value);
}

/** True when a value from the store is a guarded-task record of the previous, unsigned format. */
export function isUnsignedGuardedTaskWire(value: unknown): value is UnsignedGuardedTaskWire {
  return UNSIGNED_TASK_WIRE_CHECK.Check(value);
}

function fromWire(message: WireMessage): Message {
  switch (message.t) {
    case "hello": return { t: message.t, entry: entryFromWire(message.entry) };
    case "proof": return { t: message.t, entry: entryFromWire(message.entry), nonce: message.nonce, sig: message.sig };
    default: return message;
  }
}
