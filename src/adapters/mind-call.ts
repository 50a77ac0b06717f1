// One call to a mind, whatever its SDK (docs/adr/013-minds.md): the attempts, their timeouts and
// retries, the fetch every SDK is given (it counts each HTTP attempt and its status, ties the
// attempt's signal to the request and caps the response's size), and the one error type calls
// end with. The SDKs' own retries are off (maxRetries 0, no Gemini retryOptions): the loop here
// is the only one, so every provider retries the same way and every attempt is counted once.
import { AsyncLocalStorage } from "node:async_hooks";
import { setTimeout as sleepFor } from "node:timers/promises";
import type { MindErrorKind } from "../core/self/minds.ts";

/** How a call to a mind is made: timeouts, retries, bounds. */
export interface MindCallPolicy {
  /** No answer within this: a call not streamed must be whole, a streamed one must have begun. */
  readonly timeoutMs: number;
  /** A streamed answer silent this long has stalled (a timeout too). */
  readonly stallMs: number;
  /** Attempts per call, the first included; only rate-limited, server and unreachable are retried. */
  readonly attempts: number;
  /** Wait before the first retry; doubled for each further one, up to backoffMaxMs (jittered −25%). */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** A provider's retry-after longer than this is not waited for: the call fails rate-limited at once. */
  readonly retryAfterMaxMs: number;
  /** max_tokens when a request names none (Anthropic requires one). */
  readonly maxTokens: number;
  /** Longest answer accepted, in characters. */
  readonly answerCharsMax: number;
  /** Largest HTTP response body read (JSON or a whole stream). */
  readonly responseBytesMax: number;
  /** Texts per embeddings request (a longer list is sent in batches). */
  readonly embedBatch: number;
  /** Texts per `embed` call, and characters of one text. */
  readonly embedTextsMax: number;
  readonly embedCharsMax: number;
  /** Model ids read from a server's list. */
  readonly modelsListed: number;
}

export const MIND_CALL_DEFAULTS: MindCallPolicy = {
  timeoutMs: 120_000,
  stallMs: 30_000,
  attempts: 3,
  backoffBaseMs: 500,
  backoffMaxMs: 8_000,
  retryAfterMaxMs: 30_000,
  maxTokens: 1_024,
  answerCharsMax: 256 * 1024,
  responseBytesMax: 16 * 1024 * 1024,
  embedBatch: 64,
  embedTextsMax: 4_096,
  embedCharsMax: 64 * 1024,
  modelsListed: 1_000,
};

/** The SDKs' own retries: none (the loop here is the only one). */
export const NO_SDK_RETRIES = 0;

/** Waits `ms`, or rejects when `signal` aborts (injectable: tests record the waits asked for). */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

export const realSleep: Sleep = (ms, signal) => sleepFor(ms, undefined, { signal });

/** How a call to a mind failed. The message never holds a key (see `scrub`). */
export class MindError extends Error {
  override name = "MindError";
  readonly kind: MindErrorKind;
  /** The mind's name. */
  readonly mind: string;
  /** The last HTTP status, if any answer came. */
  readonly status: number | undefined;
  /** HTTP attempts made. */
  readonly attempts: number;
  /** Text streamed before a streamed answer failed (never a complete answer). */
  readonly partial: string;
  /** How long the provider asked to wait (429/503 retry-after), if it said. */
  readonly retryAfterMs: number | undefined;

  constructor(kind: MindErrorKind, mind: string, detail: string, extra: { status?: number | undefined; attempts?: number; partial?: string; retryAfterMs?: number | undefined } = {}) {
    super(`mind ${mind}: ${kind}: ${detail}`);
    this.kind = kind;
    this.mind = mind;
    this.status = extra.status;
    this.attempts = extra.attempts ?? 0;
    this.partial = extra.partial ?? "";
    this.retryAfterMs = extra.retryAfterMs;
  }
}

/** A failure a driver finds in an answer that came (wrong shape, a stream that ended early). */
export class MindFailure extends Error {
  override name = "MindFailure";
  readonly kind: MindErrorKind;
  constructor(kind: MindErrorKind, detail: string) {
    super(detail);
    this.kind = kind;
  }
}

/** A response body over the policy's bound. */
class ResponseTooLarge extends Error {
  override name = "ResponseTooLarge";
}

/** What one HTTP attempt did, seen by the fetch wrapper (one per attempt, through AsyncLocalStorage). */
interface AttemptRecord {
  readonly signal: AbortSignal;
  status: number | undefined;
  headers: Headers | undefined;
  /** fetch itself failed: no HTTP answer. */
  networkError: string | undefined;
  /** The response body was read to its end. */
  bodyComplete: boolean;
  fetches: number;
}

const attemptStore = new AsyncLocalStorage<AttemptRecord>();

/** Counts each HTTP attempt: its status, or "network" when no answer came. */
export type AttemptCounter = (status: number | "network") => void;

/**
 * The fetch given to an SDK: counts each HTTP attempt, joins the current attempt's signal (so a
 * timeout or a cancel aborts the request and its body whatever the SDK does with its own), notes
 * the status and headers for the retry loop, and errors a body beyond `bytesMax`.
 */
export function countingFetch(count: AttemptCounter, bytesMax: number): typeof fetch {
  return async (input, init) => {
    const record = attemptStore.getStore();
    const signals = [init?.signal, record?.signal].filter((s): s is AbortSignal => s !== undefined && s !== null);
    const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    if (record !== undefined) record.fetches++;
    let response: Response;
    try {
      response = await fetch(input, { ...init, ...(signal === undefined ? {} : { signal }) });
    } catch (error) {
      count("network");
      if (record !== undefined) record.networkError = networkCode(error);
      throw error;
    }
    count(response.status);
    if (record !== undefined) {
      record.status = response.status;
      record.headers = response.headers;
    }
    if (response.body === null) {
      if (record !== undefined) record.bodyComplete = true;
      return response;
    }
    let bytes = 0;
    const capped = response.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        bytes += chunk.byteLength;
        if (bytes > bytesMax) controller.error(new ResponseTooLarge(`the answer is larger than ${bytesMax} bytes`));
        else controller.enqueue(chunk);
      },
      flush() {
        if (record !== undefined) record.bodyComplete = true;
      },
    }));
    return new Response(capped, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

/** What a driver's attempt is given. */
export interface AttemptContext {
  /** Aborts on the attempt's timeout, a stall, the caller's cancel, or the client's close. */
  readonly signal: AbortSignal;
  /** A streamed event came: restarts the stall timer. */
  alive(): void;
}

/** The call around the attempts. */
export interface CallSpec {
  readonly mind: string;
  readonly policy: MindCallPolicy;
  readonly sleep: Sleep;
  /** The caller's signal joined with the client's (closed) signal. */
  readonly signal: AbortSignal;
  /** Secrets to scrub from any text of the provider's that an error repeats. */
  readonly secrets: readonly string[];
  /** True once text has reached the caller: no retry can take it back. */
  readonly delivered: () => boolean;
  /** Text reached the caller so far (for MindError.partial). */
  readonly partial: () => string;
  /** A retry is about to be made. */
  readonly onRetry: () => void;
}

/** Runs `attempt` until it succeeds, fails for good, or the policy's attempts run out. */
export async function runAttempts<T>(spec: CallSpec, attempt: (context: AttemptContext) => Promise<T>): Promise<{ value: T; attempts: number }> {
  const { policy } = spec;
  let fetches = 0;
  for (let n = 1; ; n++) {
    if (spec.signal.aborted) throw new MindError("cancelled", spec.mind, "cancelled by the caller", { attempts: fetches, partial: spec.partial() });
    const controller = new AbortController();
    let expired: "timeout" | "stall" | undefined;
    let timer = setTimeout(() => {
      expired = "timeout";
      controller.abort();
    }, policy.timeoutMs);
    const onCancel = (): void => controller.abort();
    spec.signal.addEventListener("abort", onCancel, { once: true });
    const record: AttemptRecord = { signal: controller.signal, status: undefined, headers: undefined, networkError: undefined, bodyComplete: false, fetches: 0 };
    const context: AttemptContext = {
      signal: controller.signal,
      alive() {
        clearTimeout(timer);
        timer = setTimeout(() => {
          expired = "stall";
          controller.abort();
        }, policy.stallMs);
      },
    };
    let failure: MindError;
    try {
      const value = await attemptStore.run(record, () => attempt(context));
      fetches += record.fetches;
      if (expired !== undefined || spec.signal.aborted) {
        // An SDK that ends a stream quietly when its request is aborted: the answer is not whole.
        throw new MindFailure("truncated", "the answer ended when its request was aborted");
      }
      return { value, attempts: fetches };
    } catch (error) {
      if (!(error instanceof MindFailure) && isCallerError(error)) throw error;
      fetches += record.fetches;
      failure = classify(error, record, spec, expired, fetches);
    } finally {
      clearTimeout(timer);
      spec.signal.removeEventListener("abort", onCancel);
    }
    const retryable = failure.kind === "rate-limited" || failure.kind === "server" || failure.kind === "unreachable";
    if (!retryable || n >= policy.attempts || spec.delivered()) throw failure;
    const told = failure.retryAfterMs;
    if (told !== undefined && told > policy.retryAfterMaxMs) throw failure;
    const backoff = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** (n - 1)) * (1 - 0.25 * Math.random());
    spec.onRetry();
    try {
      await spec.sleep(told ?? backoff, spec.signal);
    } catch {
      throw new MindError("cancelled", spec.mind, "cancelled by the caller while waiting to retry", { attempts: fetches, status: failure.status });
    }
  }
}

/** An error thrown by the caller's own callback (onDelta), marked so the loop rethrows it as is. */
const callerErrors = new WeakSet<object>();

export function markCallerError(error: unknown): unknown {
  if (typeof error === "object" && error !== null) callerErrors.add(error);
  return error;
}

function isCallerError(error: unknown): boolean {
  return typeof error === "object" && error !== null && callerErrors.has(error);
}

function classify(error: unknown, record: AttemptRecord, spec: CallSpec, expired: "timeout" | "stall" | undefined, attempts: number): MindError {
  const { mind, policy } = spec;
  const base = { attempts, partial: spec.partial() };
  if (spec.signal.aborted) return new MindError("cancelled", mind, "cancelled by the caller", base);
  if (expired === "timeout") return new MindError("timeout", mind, `no answer within ${policy.timeoutMs} ms`, { ...base, status: record.status });
  if (expired === "stall") return new MindError("timeout", mind, `the answer stalled: nothing for ${policy.stallMs} ms`, { ...base, status: record.status });
  if (error instanceof MindFailure) return new MindError(error.kind, mind, error.message, { ...base, status: record.status });
  const status = record.status !== undefined && record.status >= 400 ? record.status : statusOf(error);
  if (status !== undefined && status >= 400) {
    const retryAfterMs = retryAfter(record.headers);
    const said = providerMessage(error, spec.secrets);
    const detail = `HTTP ${status}${said === "" ? "" : ` (${said})`}${attempts > 1 ? ` after ${attempts} attempts` : ""}`;
    const extra = { ...base, status, retryAfterMs };
    if (status === 401 || status === 403) return new MindError("auth", mind, `HTTP ${status}: the provider refused the key (wrong, missing or not allowed)`, extra);
    if (status === 429) return new MindError("rate-limited", mind, detail, extra);
    if (status >= 500 || status === 408 || status === 409) return new MindError("server", mind, detail, extra);
    return new MindError("refused", mind, detail, extra);
  }
  if (hasName(error, "ResponseTooLarge")) return new MindError("malformed", mind, `the answer is larger than ${policy.responseBytesMax} bytes`, { ...base, status: record.status });
  if (record.networkError !== undefined) {
    return new MindError("unreachable", mind, `no connection (${record.networkError})${attempts > 1 ? ` after ${attempts} attempts` : ""}`, base);
  }
  if (error instanceof SyntaxError || /JSON/.test(messageOf(error))) {
    return new MindError("malformed", mind, "the answer is not valid JSON in the provider's format", { ...base, status: record.status });
  }
  const said = providerMessage(error, spec.secrets);
  if (said !== "") {
    // An error event inside a 200 stream (OpenAI's {"error": ...} chunk, Anthropic's `error` event).
    return new MindError("server", mind, `the provider reported an error in its answer (${said})`, { ...base, status: record.status });
  }
  if (record.status !== undefined && !record.bodyComplete) {
    return new MindError("truncated", mind, "the connection broke before the answer's end", { ...base, status: record.status });
  }
  return new MindError("malformed", mind, `unexpected answer (${scrub(`${nameOf(error)}: ${messageOf(error)}`, spec.secrets)})`, { ...base, status: record.status });
}

/** Milliseconds the response asked to wait: retry-after-ms, or retry-after in seconds or as a date. */
export function retryAfter(headers: Headers | undefined): number | undefined {
  if (headers === undefined) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.ceil(Number(ms));
  const after = headers.get("retry-after");
  if (after === null) return undefined;
  if (/^\d+(\.\d+)?$/.test(after.trim())) return Math.ceil(Number(after) * 1000);
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** `text` with every secret and anything shaped like a key replaced, bounded to 200 characters. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join("[redacted]");
  out = out
    .replace(/\b(sk|pk|rk)-[A-Za-z0-9_*.-]{6,}/g, "[redacted]")
    .replace(/AIza[0-9A-Za-z_-]{10,}/g, "[redacted]")
    .replace(/(bearer|x-api-key:?|x-goog-api-key:?|key=)\s*[^\s"',&]+/gi, "$1 [redacted]")
    .replace(/[\u0000-\u001f\u007f]+/g, " ");
  return out.length > 200 ? `${out.slice(0, 200)}…` : out;
}

/** The provider's own words about an error (its JSON error message), scrubbed. */
function providerMessage(error: unknown, secrets: readonly string[]): string {
  if (typeof error !== "object" || error === null) return "";
  const candidates: unknown[] = [];
  const body = (error as { error?: unknown }).error;
  if (typeof body === "object" && body !== null) {
    candidates.push((body as { message?: unknown }).message);
    const inner = (body as { error?: unknown }).error;
    if (typeof inner === "object" && inner !== null) candidates.push((inner as { message?: unknown }).message);
  }
  const message = messageOf(error);
  const json = message.indexOf("{");
  if (json >= 0) {
    try {
      const parsed = JSON.parse(message.slice(json)) as { error?: { message?: unknown } };
      candidates.push(parsed.error?.message);
    } catch {
      // Not a JSON message.
    }
  }
  const found = candidates.find((c): c is string => typeof c === "string" && c.length > 0);
  return found === undefined ? "" : scrub(found, secrets);
}

function statusOf(error: unknown): number | undefined {
  const status = typeof error === "object" && error !== null ? (error as { status?: unknown }).status : undefined;
  return typeof status === "number" && Number.isInteger(status) ? status : undefined;
}

function hasName(error: unknown, name: string): boolean {
  for (let e: unknown = error, depth = 0; typeof e === "object" && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { name?: unknown }).name === name) return true;
  }
  return false;
}

function nameOf(error: unknown): string {
  return typeof error === "object" && error !== null && typeof (error as { name?: unknown }).name === "string" ? (error as { name: string }).name : typeof error;
}

function messageOf(error: unknown): string {
  return typeof error === "object" && error !== null && typeof (error as { message?: unknown }).message === "string" ? (error as { message: string }).message : String(error);
}

/** The system error code behind a failed fetch (ECONNREFUSED, ECONNRESET, ENOTFOUND...). */
function networkCode(error: unknown): string {
  for (let e: unknown = error, depth = 0; typeof e === "object" && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[A-Z_]+$/.test(code)) return code;
  }
  return nameOf(error) === "AbortError" ? "aborted" : "connection failed";
}

/** What a driver (one SDK) answers for one attempt of a chat. */
export interface DriverReply {
  readonly text: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly finish: "stop" | "length" | "other";
}

/** One SDK behind a MindClient: one attempt of each operation; the retry loop is the caller's. */
export interface MindDriver {
  /** A chat, streamed when `onText` is given (it is called with each text delta, in order). */
  chat(request: DriverRequest, context: AttemptContext, onText: ((text: string) => void) | undefined): Promise<DriverReply>;
  /** Embeddings of `texts`, in order, and the input tokens counted. */
  embed?(texts: readonly string[], context: AttemptContext): Promise<{ vectors: Float32Array[]; inputTokens: number }>;
  /** Model ids the server lists. */
  models?(context: AttemptContext): Promise<string[]>;
}

/** A chat request as a driver gets it: system text apart, turns merged per role, maxTokens set. */
export interface DriverRequest {
  readonly system: string;
  readonly turns: readonly { readonly role: "user" | "assistant"; readonly content: string }[];
  /** Every message in order, as given (for APIs that take system messages inline). */
  readonly messages: readonly { readonly role: "system" | "user" | "assistant"; readonly content: string }[];
  readonly maxTokens: number;
  readonly temperature: number | undefined;
}

/** A finite-number vector, or a MindFailure (malformed). */
export function toVector(values: unknown, what: string): Float32Array {
  if (!Array.isArray(values) || values.length === 0) throw new MindFailure("malformed", `${what}: not a list of numbers`);
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v: unknown = values[i];
    if (typeof v !== "number" || !Number.isFinite(v)) throw new MindFailure("malformed", `${what}: not a finite number at ${i}`);
    out[i] = v;
  }
  return out;
}

/** A non-negative integer token count, or 0. */
export function tokens(value: unknown): number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : 0;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
