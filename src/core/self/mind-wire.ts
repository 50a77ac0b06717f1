// Asking a member's mind (docs/protocols/minds.md), on the stream channel: `mind-ask` carries a
// prompt to the node that serves a mind, `mind-say` streams the answer's text as it comes, and
// `mind-done` ends the call with the whole text, usage and outcome (the text it carries is the
// answer: a lost `mind-say` costs nothing but latency); `mind-stop` cancels. `c` is the caller's
// call id, unique among its calls in flight.
import { Type, type Static } from "@sinclair/typebox";
import { LIMITS } from "../util/limits.ts";

export const MIND_WIRE_LIMITS = LIMITS.self.mind;

const u32 = Type.Integer({ minimum: 0, maximum: 0xffff_ffff });
const Role = Type.Union([Type.Literal("system"), Type.Literal("user"), Type.Literal("assistant")]);
const MindName = Type.String({ minLength: 1, maxLength: MIND_WIRE_LIMITS.nameCharsMax });
export const MIND_ERROR_KINDS = ["timeout", "rate-limited", "server", "malformed", "truncated", "unreachable", "cancelled", "auth", "refused", "busy", "unknown-mind"] as const;
const ErrorKind = Type.Union(MIND_ERROR_KINDS.map((k) => Type.Literal(k)));
const Finish = Type.Union([Type.Literal("stop"), Type.Literal("length"), Type.Literal("other")]);

export const MIND_MESSAGE_SCHEMAS = {
  /** A prompt for the mind named `m` that the receiver serves; `x` max tokens (0: the mind's default), `k` temperature ×100 (0–200; 255: default). */
  "mind-ask": Type.Object({
    t: Type.Literal("mind-ask"), c: u32, m: MindName,
    p: Type.Array(Type.Tuple([Role, Type.String({ maxLength: MIND_WIRE_LIMITS.contentCharsMax })]), { minItems: 1, maxItems: MIND_WIRE_LIMITS.messagesMax }),
    x: Type.Integer({ minimum: 0, maximum: MIND_WIRE_LIMITS.maxTokensMax }),
    k: Type.Integer({ minimum: 0, maximum: 255 }),
  }),
  /** The next piece of the answer (`s` counts pieces from 0). */
  "mind-say": Type.Object({ t: Type.Literal("mind-say"), c: u32, s: u32, d: Type.String({ maxLength: MIND_WIRE_LIMITS.deltaCharsMax }) }),
  /**
   * The call's end: with `e` absent, the whole answer `a`, finish `f`, input and output tokens `i`,
   * `o`; with `e`, the error kind and a short detail in `a`.
   */
  "mind-done": Type.Object({
    t: Type.Literal("mind-done"), c: u32, a: Type.String({ maxLength: MIND_WIRE_LIMITS.answerCharsMax }),
    f: Finish, i: u32, o: u32, e: Type.Optional(ErrorKind),
  }),
  /** The caller no longer wants the answer. */
  "mind-stop": Type.Object({ t: Type.Literal("mind-stop"), c: u32 }),
} as const;

export type MindErrorKind = (typeof MIND_ERROR_KINDS)[number];
export type MindAskMessage = Static<(typeof MIND_MESSAGE_SCHEMAS)["mind-ask"]>;
export type MindDoneMessage = Static<(typeof MIND_MESSAGE_SCHEMAS)["mind-done"]>;

/** Temperature on the wire: ×100 rounded, 255 for "the mind's default". */
export function wireTemperature(temperature: number | undefined): number {
  if (temperature === undefined || !Number.isFinite(temperature)) return 255;
  return Math.round(Math.min(2, Math.max(0, temperature)) * 100);
}

export function fromWireTemperature(k: number): number | undefined {
  return k === 255 ? undefined : Math.min(200, k) / 100;
}
