// Minds (issue 14; docs/adr/013-minds.md): the language models the cluster can ask — models its
// members serve (Ollama, llama.cpp, vLLM, LM Studio: kind "local") and frontier models reached with
// a key (kind "frontier") — and the MindRouter that orders them for a request.
//
// The router is sans-IO: the node hands it the candidate minds (`pick`), tells it how each call
// ended (`observe`), and reads what it measured (`stats`); time comes in as numbers (ms).
// Policy: a mind asked for by name first (`mind use`, or the request); then the preferred kind —
// the request's `prefer`, else the cluster's own minds when the mode is FULL and a frontier mind
// when REDUCED or SOLO — then the other kind; among equals, by measured availability and latency.
// A mind that failed is left out until its backoff (doubling with each consecutive failure) ends.
import type { Mode } from "../body/degrade.ts";

/** The wire protocol a mind speaks: `openai` covers every OpenAI-compatible server too. */
export type Provider = "openai" | "anthropic" | "gemini";
export const PROVIDERS: readonly Provider[] = ["openai", "anthropic", "gemini"];

/** What the cluster knows of a mind. It never holds a key. */
export interface MindInfo {
  /** Its name among the minds of the node that serves it (the model's name unless configured). */
  readonly name: string;
  readonly provider: Provider;
  readonly model: string;
  /** "local": served by a member from its own model server; "frontier": a provider's, with a key. */
  readonly kind: "local" | "frontier";
  /** It can also embed texts (`MindClient.embed`). */
  readonly embeds: boolean;
  /** node id that serves it */
  readonly node: string;
}

export interface ChatMessage { readonly role: "system" | "user" | "assistant"; readonly content: string }

export interface MindRequest {
  readonly messages: readonly ChatMessage[];
  /** The longest answer, in tokens (the client's default when absent). */
  readonly maxTokens?: number;
  /** Sampling temperature, 0–2 (the model's default when absent). */
  readonly temperature?: number;
}

export interface MindUsage { readonly inputTokens: number; readonly outputTokens: number }

export interface MindReply {
  /** The whole answer. A reply is only ever a complete answer: a cut-off one is an error. */
  readonly text: string;
  /** Tokens as the provider counted them (0 when a server does not report them). */
  readonly usage: MindUsage;
  /** "length": the answer hit maxTokens; "other": stopped by the provider (a filter, a tool call). */
  readonly finish: "stop" | "length" | "other";
  readonly mind: MindInfo;
  /** From the call to the whole answer, retries and their waits included. */
  readonly latencyMs: number;
}

/**
 * How a call to a mind failed. timeout: no answer, or the stream stalled, within the time allowed;
 * rate-limited: 429; server: 5xx/529 (overloaded); malformed: an answer that is not the provider's
 * format; truncated: the answer broke off before its end (connection lost, stream ended early);
 * unreachable: no HTTP answer at all (connection refused or reset, DNS); cancelled: the caller's
 * signal; auth: 401/403, the key is wrong or missing; refused: any other 4xx (bad request, unknown
 * model, content too long).
 */
export type MindErrorKind = "timeout" | "rate-limited" | "server" | "malformed" | "truncated" | "unreachable" | "cancelled" | "auth" | "refused";
export const MIND_ERROR_KINDS: readonly MindErrorKind[] = ["timeout", "rate-limited", "server", "malformed", "truncated", "unreachable", "cancelled", "auth", "refused"];

/** How a call ended: "ok" or the error's kind. */
export type MindOutcome = "ok" | MindErrorKind;
export const MIND_OUTCOMES: readonly MindOutcome[] = ["ok", ...MIND_ERROR_KINDS];

/** A mind as the router names it: a name is unique only among the minds of one node. */
export interface MindRef { readonly name: string; readonly node: string }

/** What a request wants of the router besides the mode. */
export interface PickOptions {
  /** Overrides the mode's preference: "local" for the cluster's own minds, "frontier" for a provider's. */
  readonly prefer?: "local" | "frontier" | undefined;
  /** A mind asked for by name or model (`mind use`): tried first, even while it backs off. */
  readonly mind?: string | undefined;
  /** Only minds that embed. */
  readonly embeds?: boolean | undefined;
}

/** A mind's measured health, for `mind list` and the dashboard. */
export interface MindStats {
  readonly name: string;
  readonly node: string;
  readonly info: MindInfo;
  /** EWMA of successes (1) and failures (0); starts at 1. */
  readonly availability: number;
  /** EWMA of successful calls' latency; undefined before the first success. */
  readonly latencyMs: number | undefined;
  readonly successes: number;
  readonly failures: number;
  readonly consecutiveFailures: number;
  /** Not picked again (unless asked for by name) before this time; 0 when not backing off. */
  readonly retryAtMs: number;
  /** Last picked among the candidates or observed. */
  readonly lastSeenMs: number;
  /** Last successful call; 0 if none. */
  readonly lastOkMs: number;
  readonly lastError: MindErrorKind | undefined;
}

export interface MindRouterConfig {
  /** Weight of the newest outcome in the availability and latency EWMAs, in (0, 1]. */
  readonly alpha: number;
  /** Backoff after the first consecutive failure; it doubles with each further one. */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** Minds measured at most; beyond it, the one seen least recently is forgotten. */
  readonly mindsMax: number;
  /** Longest name, model and node id of a candidate (an advert from a member is hostile). */
  readonly textCharsMax: number;
}

export const MIND_ROUTER_DEFAULTS: MindRouterConfig = { alpha: 0.3, backoffBaseMs: 2_000, backoffMaxMs: 120_000, mindsMax: 1_024, textCharsMax: 256 };

/** Floor of availability in the score (a mind at 0 still sorts by its latency among its equals). */
const AVAILABILITY_FLOOR = 0.01;

interface Entry {
  info: MindInfo;
  availability: number;
  latencyMs: number | undefined;
  successes: number;
  failures: number;
  consecutiveFailures: number;
  retryAtMs: number;
  lastSeenMs: number;
  lastOkMs: number;
  lastError: MindErrorKind | undefined;
}

/**
 * Orders candidate minds for a request by policy and by how they answered (sans-IO). The node
 * hands it the candidates each time (its own minds and those live members advertise) and tells it
 * how each call ended; the router keeps only measurements.
 */
export class MindRouter {
  readonly #config: MindRouterConfig;
  readonly #minds = new Map<string, Entry>();

  constructor(config: MindRouterConfig = MIND_ROUTER_DEFAULTS) {
    const { alpha, backoffBaseMs, backoffMaxMs, mindsMax, textCharsMax } = config;
    if (!(alpha > 0 && alpha <= 1) || !(backoffBaseMs >= 0) || !(backoffMaxMs >= backoffBaseMs)
      || !(Number.isInteger(mindsMax) && mindsMax >= 1) || !(Number.isInteger(textCharsMax) && textCharsMax >= 1)) {
      throw new RangeError(`MindRouter: bad config ${JSON.stringify(config)}`);
    }
    this.#config = config;
  }

  /** Minds measured. */
  get size(): number {
    return this.#minds.size;
  }

  /**
   * The candidates to try for a request, best first: the one asked for by name or model (even
   * while it backs off), then the available minds of the preferred kind — `prefer`, else "local"
   * (the cluster's own) when the mode is FULL and "frontier" when REDUCED or SOLO — then the other
   * kind's. A mind backing off after failures is left out, and so is an invalid or repeated
   * candidate. Among equals: the smallest expected time to an answer (latency ÷ availability; an
   * unmeasured mind counts 0, so it gets tried), then the higher availability, then node and name.
   */
  pick(candidates: readonly MindInfo[], mode: Mode, options: PickOptions, nowMs: number): MindInfo[] {
    const preferred = options.prefer ?? (mode === "FULL" ? "local" : "frontier");
    const named: Entry[] = [];
    const first: Entry[] = [];
    const second: Entry[] = [];
    const seen = new Set<string>();
    for (const info of candidates) {
      if (!validInfo(info, this.#config.textCharsMax)) continue;
      const key = keyOf(info);
      if (seen.has(key)) continue;
      seen.add(key);
      if (options.embeds === true && !info.embeds) continue;
      const entry = this.#entry(info, nowMs, seen);
      if (options.mind !== undefined && (info.name === options.mind || info.model === options.mind)) named.push(entry);
      else if (entry.retryAtMs > nowMs) continue;
      else (info.kind === preferred ? first : second).push(entry);
    }
    return [...named.sort(better), ...first.sort(better), ...second.sort(better)].map((entry) => entry.info);
  }

  /**
   * How a call to `mind` ended: true or "ok", false or an error kind. Success (with its latency)
   * moves availability up and feeds the latency EWMA; a failure moves availability down and backs
   * the mind off for base × 2^(n−1) after n consecutive failures (at least `retryAfterMs`, when the
   * provider said so, within the maximum); "cancelled" was the caller's doing and changes nothing.
   * A mind never picked is ignored.
   */
  observe(mind: MindRef, outcome: boolean | MindOutcome, latencyMs: number, nowMs: number, retryAfterMs = 0): void {
    const entry = this.#minds.get(keyOf(mind));
    if (entry === undefined) return;
    entry.lastSeenMs = Math.max(entry.lastSeenMs, nowMs);
    if (outcome === "cancelled") return;
    const { alpha, backoffBaseMs, backoffMaxMs } = this.#config;
    if (outcome === true || outcome === "ok") {
      entry.successes++;
      entry.availability += alpha * (1 - entry.availability);
      if (Number.isFinite(latencyMs) && latencyMs >= 0) {
        entry.latencyMs = entry.latencyMs === undefined ? latencyMs : entry.latencyMs + alpha * (latencyMs - entry.latencyMs);
      }
      entry.consecutiveFailures = 0;
      entry.retryAtMs = 0;
      entry.lastOkMs = nowMs;
      return;
    }
    entry.failures++;
    entry.availability -= alpha * entry.availability;
    entry.consecutiveFailures++;
    entry.lastError = outcome === false ? undefined : outcome;
    const backoff = Math.min(backoffMaxMs, backoffBaseMs * 2 ** Math.min(entry.consecutiveFailures - 1, 52));
    const told = Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? Math.min(retryAfterMs, backoffMaxMs) : 0;
    entry.retryAtMs = nowMs + Math.max(backoff, told);
  }

  /** Every mind measured, ordered by node and name. */
  stats(): MindStats[] {
    return [...this.#minds.values()]
      .sort((a, b) => byText(a.info.node, b.info.node) || byText(a.info.name, b.info.name))
      .map(statsOf);
  }

  /** One mind's measurements, if it has any. */
  statsOf(mind: MindRef): MindStats | undefined {
    const entry = this.#minds.get(keyOf(mind));
    return entry === undefined ? undefined : statsOf(entry);
  }

  /** Forgets a mind's measurements. */
  forget(mind: MindRef): boolean {
    return this.#minds.delete(keyOf(mind));
  }

  /** Forgets the measurements of every mind `node` serves; returns how many. */
  forgetNode(node: string): number {
    let removed = 0;
    for (const [key, entry] of this.#minds) {
      if (entry.info.node === node) {
        this.#minds.delete(key);
        removed++;
      }
    }
    return removed;
  }

  /** The entry of a candidate, made (the least recently seen forgotten when full) or refreshed. */
  #entry(info: MindInfo, nowMs: number, keep: ReadonlySet<string>): Entry {
    const key = keyOf(info);
    const copy: MindInfo = { name: info.name, provider: info.provider, model: info.model, kind: info.kind, embeds: info.embeds, node: info.node };
    const found = this.#minds.get(key);
    if (found !== undefined) {
      found.info = copy;
      found.lastSeenMs = Math.max(found.lastSeenMs, nowMs);
      return found;
    }
    if (this.#minds.size >= this.#config.mindsMax) {
      let oldest: [string, Entry] | undefined;
      for (const pair of this.#minds) if (!keep.has(pair[0]) && (oldest === undefined || pair[1].lastSeenMs < oldest[1].lastSeenMs)) oldest = pair;
      if (oldest !== undefined) this.#minds.delete(oldest[0]);
    }
    const entry: Entry = {
      info: copy, availability: 1, latencyMs: undefined, successes: 0, failures: 0, consecutiveFailures: 0,
      retryAtMs: 0, lastSeenMs: nowMs, lastOkMs: 0, lastError: undefined,
    };
    // Full of this very pick's candidates: measured for this pick only.
    if (this.#minds.size < this.#config.mindsMax) this.#minds.set(key, entry);
    return entry;
  }
}

function statsOf(entry: Entry): MindStats {
  return {
    name: entry.info.name, node: entry.info.node, info: entry.info, availability: entry.availability, latencyMs: entry.latencyMs,
    successes: entry.successes, failures: entry.failures, consecutiveFailures: entry.consecutiveFailures, retryAtMs: entry.retryAtMs,
    lastSeenMs: entry.lastSeenMs, lastOkMs: entry.lastOkMs, lastError: entry.lastError,
  };
}

function keyOf(mind: MindRef): string {
  return `${mind.node}\u0000${mind.name}`;
}

function score(entry: Entry): number {
  return (entry.latencyMs ?? 0) / Math.max(entry.availability, AVAILABILITY_FLOOR);
}

function better(a: Entry, b: Entry): number {
  return score(a) - score(b) || b.availability - a.availability || byText(a.info.node, b.info.node) || byText(a.info.name, b.info.name);
}

function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function validInfo(info: MindInfo, charsMax: number): boolean {
  if (typeof info !== "object" || info === null) return false;
  const text = (value: unknown): boolean => typeof value === "string" && value.length >= 1 && value.length <= charsMax;
  return text(info.name) && text(info.model) && text(info.node)
    && (PROVIDERS as readonly unknown[]).includes(info.provider)
    && (info.kind === "local" || info.kind === "frontier")
    && typeof info.embeds === "boolean";
}

/** What a caller wants of a mind. */
export interface MindAsk {
  readonly request: MindRequest;
  /** A mind by name, or a kind; default: the router's choice for the cluster's mode. */
  readonly mind?: string | undefined;
  readonly prefer?: "local" | "frontier" | undefined;
  readonly onDelta?: (text: string) => void;
  readonly signal?: AbortSignal | undefined;
}
