// Mesh routing messages on the wire (docs/protocols/mesh.md): route updates, seqno requests and
// routed data, all datagrams. Tuples inside keep them compact. The schemas bound every field; the
// bounds that size a message are MESH_LIMITS below (their values in LIMITS.mesh, each with the
// arithmetic that makes the largest message fit one datagram with the kernel's envelope).
//
// Registration: these schemas are meant for MESSAGE_SCHEMAS (src/core/wire/messages.ts) under
// their `t` tags; until then `validateMesh` checks a decoded value on its own.
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { TypeCompiler, type TypeCheck } from "@sinclair/typebox/compiler";
import { LIMITS } from "../util/limits.ts";

export const MESH_LIMITS = {
  /** Metric that means "unreachable": an update carrying it is a retraction (Babel's 0xFFFF). */
  metricInfinity: 0xffff,
  /** updateEntriesMax, payloadBytesMax, hopsMax, linkCostMax, intervalTicksMax. */
  ...LIMITS.mesh,
} as const;

const Id = Type.String({ pattern: "^[0-9a-f]{16}$" });
const u16 = Type.Integer({ minimum: 0, maximum: 0xffff });
const hops = (minimum: number) => Type.Integer({ minimum, maximum: MESH_LIMITS.hopsMax });

/** One route as the tuple [destination, seqno, metric]; metric 0xFFFF retracts it. */
export const MeshRouteWireSchema = Type.Tuple([Id, u16, u16]);
export type MeshRouteWire = Static<typeof MeshRouteWireSchema>;

export const MESH_SCHEMAS = {
  /**
   * Routes of the sender: a periodic full dump (in as many messages as it takes) or a triggered
   * update. `iv` is the sender's update interval in ticks (routes it announces expire after 3.5 of
   * them); `n` counts the sender's updates (modulo 2^32), so that an entry overtaken by a newer
   * one for the same route is recognised as stale; `q` asks the receiver for its full dump back
   * (sent when a link comes up).
   */
  "mesh-update": Type.Object({
    t: Type.Literal("mesh-update"),
    iv: Type.Integer({ minimum: 1, maximum: MESH_LIMITS.intervalTicksMax }),
    n: Type.Integer({ minimum: 0, maximum: 0xffff_ffff }),
    q: Type.Boolean(),
    u: Type.Array(MeshRouteWireSchema, { maxItems: MESH_LIMITS.updateEntriesMax }),
  }),
  /** Seqno request [destination, seqno, hop count]: forwarded toward the destination. */
  "mesh-req": Type.Object({ t: Type.Literal("mesh-req"), r: Type.Tuple([Id, u16, hops(1)]) }),
  /** Routed data [source, destination, ttl, hops so far, payload]. */
  "mesh-data": Type.Object({
    t: Type.Literal("mesh-data"),
    d: Type.Tuple([Id, Id, hops(1), hops(0), Type.Uint8Array({ maxByteLength: MESH_LIMITS.payloadBytesMax })]),
  }),
} as const;

type MeshSchemas = typeof MESH_SCHEMAS;
export type MeshMessageType = keyof MeshSchemas;
export type MeshMessage = { [K in MeshMessageType]: Static<MeshSchemas[K]> }[MeshMessageType];
export type MeshUpdate = Static<MeshSchemas["mesh-update"]>;
export type MeshRequest = Static<MeshSchemas["mesh-req"]>;
export type MeshData = Static<MeshSchemas["mesh-data"]>;

const CHECKS = Object.fromEntries(
  Object.entries(MESH_SCHEMAS).map(([t, schema]) => [t, TypeCompiler.Compile(schema as TSchema)]),
) as { [K in MeshMessageType]: TypeCheck<MeshSchemas[K]> };

export type MeshValidateResult =
  | { readonly ok: true; readonly message: MeshMessage }
  | { readonly ok: false; readonly detail: string };

/** Checks a decoded value against the mesh schemas; total (never throws). */
export function validateMesh(value: unknown): MeshValidateResult {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { ok: false, detail: "message is not an object" };
  const t = (value as { t?: unknown }).t;
  if (typeof t !== "string" || !Object.hasOwn(MESH_SCHEMAS, t)) return { ok: false, detail: "not a mesh message" };
  const check = CHECKS[t as MeshMessageType] as TypeCheck<TSchema>;
  if (!check.Check(value)) {
    const first = check.Errors(value).First();
    return { ok: false, detail: `${t}: ${first?.path ?? ""} ${first?.message ?? "invalid"}` };
  }
  return { ok: true, message: value as MeshMessage };
}
