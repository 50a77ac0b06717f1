// Typed message schemas: the one place where decoded bytes become typed messages. Every message a
// core sees has passed validate() below; a message that fails is dropped and counted.
//
// Adding a message: add its schema to MESSAGE_SCHEMAS (the key is its `t` tag) and document it in
// docs/protocols/wire.md. Never change the meaning of an existing field; add a new one instead.
import { z } from "zod";
import { LIMITS } from "../util/limits.ts";

function bytes(length: number) {
  return z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.length === length, `must be ${length} bytes`);
}

export const NodeIdSchema = z.string().regex(/^[0-9a-f]{16}$/, "node id is 16 lowercase hex characters");
export const AddressSchema = z.string().max(LIMITS.addressCharsMax).regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/, "address is host:port");
export const RoleSchema = z.enum(["core", "contributor"]);
const u32 = z.number().int().min(0).max(0xffff_ffff);
const safeU = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** What a node tells others about itself or about a member it knows. */
export const MemberEntrySchema = z.object({
  id: NodeIdSchema,
  /** Ed25519 public key; its SHA-256 prefix must equal id. */
  pub: bytes(32),
  addr: AddressSchema,
  role: RoleSchema,
  name: z.string().max(LIMITS.nameCharsMax),
  /** Owned by the member; bumped when it restarts or refutes. */
  incarnation: u32,
});

export const MESSAGE_SCHEMAS = {
  /** Joiner → seed: asks to join; the seed answers with a challenge. */
  hello: z.object({ t: z.literal("hello"), entry: MemberEntrySchema }),
  /** Seed → joiner: a fresh nonce to sign. */
  challenge: z.object({ t: z.literal("challenge"), nonce: bytes(16) }),
  /** Joiner → seed: signature over the join transcript (see roster.ts joinTranscript). */
  proof: z.object({ t: z.literal("proof"), entry: MemberEntrySchema, nonce: bytes(16), sig: bytes(64) }),
  /** Seed → joiner, on the stream channel: the members the seed knows, itself included. */
  welcome: z.object({ t: z.literal("welcome"), members: z.array(MemberEntrySchema).max(LIMITS.membersMax) }),
  /** Periodic datagram to a random member: the sender's entry and recent news about others. */
  gossip: z.object({ t: z.literal("gossip"), members: z.array(MemberEntrySchema).max(LIMITS.gossipEntriesMax) }),
  /** Anti-entropy on the stream channel: the sender's whole table; `reply` asks for the receiver's. */
  sync: z.object({ t: z.literal("sync"), reply: z.boolean(), members: z.array(MemberEntrySchema).max(LIMITS.membersMax) }),
  /** Round-trip probe used by `net`. `sent` is the sender's tick, echoed back. */
  ping: z.object({ t: z.literal("ping"), seq: u32, sent: safeU }),
  ack: z.object({ t: z.literal("ack"), seq: u32, sent: safeU }),
} as const;

type Schemas = typeof MESSAGE_SCHEMAS;
export type MessageType = keyof Schemas;
export type Message = { [K in MessageType]: z.infer<Schemas[K]> }[MessageType];
export type MessageOf<K extends MessageType> = z.infer<Schemas[K]>;
export type MemberEntry = z.infer<typeof MemberEntrySchema>;
export type Role = z.infer<typeof RoleSchema>;

export type ValidateResult =
  | { readonly ok: true; readonly message: Message }
  | { readonly ok: false; readonly reason: "decode"; readonly detail: string };

function isMessageType(t: unknown): t is MessageType {
  return typeof t === "string" && Object.hasOwn(MESSAGE_SCHEMAS, t);
}

export function validate(value: unknown): ValidateResult {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: "decode", detail: "message is not an object" };
  }
  const t = (value as { t?: unknown }).t;
  if (!isMessageType(t)) return { ok: false, reason: "decode", detail: `unknown message type ${JSON.stringify(t)?.slice(0, 40)}` };
  const parsed = MESSAGE_SCHEMAS[t].safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: "decode", detail: `${t}: ${issue?.path.join(".") ?? ""} ${issue?.message ?? "invalid"}` };
  }
  return { ok: true, message: parsed.data as Message };
}
