// The Brain's HTTP route: POST /v1/infer.
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError, type ApiRoute, type ApiTools } from "../../adapters/http.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { NodeView } from "../view.ts";
import type { InferOutcome } from "./service.ts";

export function brainRoutes(kernel: NodeView): ApiRoute[] {
  return [{ path: "/v1/infer", handle: (req, res, http) => handleInfer(kernel, req, res, http) }];
}

/**
 * POST /v1/infer: { mode?: "local"|"pipeline"|"tensor"|"dkva"|"moe", values: number[], ids?: number[],
 * session?: string, end?: true } → the class, probabilities and logits, FULL/REDUCED/SOLO, the
 * peers and the peers dropped. Without ids, four values are the seed model's sensor readings.
 */
async function handleInfer(kernel: NodeView, req: IncomingMessage, res: ServerResponse, http: ApiTools): Promise<void> {
  http.methods(req, ["POST"]);
  const body = await http.readJsonBody(req, res);
  const parsed = parseInferBody(body);
  if (typeof parsed === "string") throw new HttpError(400, "BAD_REQUEST", parsed);
  const brain = kernel.brain;
  if (parsed.end) {
    await brain.endSession(parsed.session ?? "");
    return http.sendJson(res, 200, { ended: parsed.session });
  }
  try {
    // Sensor readings (no ids) go through the program on the sensor.prefilter hook, if any.
    const values = parsed.sensors ? (await kernel.programs.prefilter(parsed.values)).values : parsed.values;
    const o: InferOutcome & { expert?: string; gateClass?: number } = parsed.mode === "moe"
      ? await brain.moeInfer(parsed.ids, values)
      : await brain.infer(parsed.mode, parsed.ids, values, parsed.session === undefined ? {} : { session: parsed.session });
    http.sendJson(res, 200, {
      class: o.class, label: o.label, probs: o.probs, logits: [...o.logits], mode: o.state, peers: o.peers, dropped: o.dropped,
      modelVersion: o.modelVersion, tag: brain.model.tag, ms: o.ms, roundTrips: o.roundTrips,
      ...(o.expert === undefined ? {} : { expert: o.expert, gateClass: o.gateClass }),
    });
  } catch (error) {
    if (error instanceof RangeError) throw new HttpError(400, "BAD_REQUEST", error.message);
    throw error;
  }
}

const INFER_MODES = ["local", "pipeline", "tensor", "dkva", "moe"] as const;
type InferBodyMode = (typeof INFER_MODES)[number];
/** Tokens one /v1/infer request may carry. */
const INFER_TOKENS_MAX = LIMITS.api.inferTokensMax;

/** Checks a /v1/infer body; a message for the client when it is wrong. */
export function parseInferBody(body: unknown): { mode: InferBodyMode; ids: Int32Array; values: Float32Array; session?: string; end: boolean; sensors: boolean } | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "body must be a JSON object { \"values\": [...] }";
  const b = body as Record<string, unknown>;
  const mode = b.mode ?? "local";
  if (typeof mode !== "string" || !(INFER_MODES as readonly string[]).includes(mode)) return `mode must be one of ${INFER_MODES.join(", ")}`;
  const session = b.session;
  if (session !== undefined && (typeof session !== "string" || !/^[0-9A-Za-z._-]{1,32}$/.test(session))) return "session must be 1..32 characters of [0-9A-Za-z._-]";
  if (b.end === true) return session === undefined ? "end needs a session" : { mode: mode as InferBodyMode, ids: new Int32Array(0), values: new Float32Array(0), session, end: true, sensors: false };
  const values = b.values;
  // Finite as float32 too: 1e300 is a finite double but Infinity once stored for the model.
  if (!Array.isArray(values) || values.length === 0 || values.length > INFER_TOKENS_MAX || !values.every((v) => typeof v === "number" && Number.isFinite(Math.fround(v)))) {
    return `values must be 1..${INFER_TOKENS_MAX} finite numbers within float32 range`;
  }
  let ids: Int32Array;
  if (b.ids === undefined) {
    if (values.length !== 4) return "without ids, values are the four sensor readings t h p l";
    ids = Int32Array.from([0, 1, 2, 3]);
  } else {
    if (!Array.isArray(b.ids) || b.ids.length !== values.length || !b.ids.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 31)) return "ids must be non-negative integers, one per value";
    ids = Int32Array.from(b.ids as number[]);
  }
  if (mode === "moe" && session !== undefined) return "moe takes no session";
  return { mode: mode as InferBodyMode, ids, values: Float32Array.from(values as number[]), ...(session === undefined ? {} : { session }), end: false, sensors: b.ids === undefined };
}
