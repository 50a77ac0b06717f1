// Minds (issue 14; docs/adr/013-minds.md): one client over the three official SDKs — `openai`
// (OpenAI and every OpenAI-compatible server through its base URL), `@anthropic-ai/sdk` and
// `@google/genai`. A call streams (onDelta per text delta) or not; it has a timeout (a stalled
// stream is one too), retries 429, 5xx and lost connections with backoff (retry-after honoured),
// can be cancelled, counts every HTTP attempt, its tokens and their cost, and fails with one
// error type (MindError, by kind) whose text never holds the key.
//
//   const [config] = mindConfigs({ mind: "http://127.0.0.1:11434/v1#llama3.2" }, process.env, nodeId);
//   const mind = openMind(config, { counters });
//   const reply = await mind.chat({ messages }, { signal, onDelta: (t) => write(t) });
import type { ChatMessage, MindInfo, MindReply, MindRequest } from "../core/self/minds.ts";
import { anthropicDriver } from "./mind-anthropic.ts";
import { MIND_CALL_DEFAULTS, MindError, MindFailure, countingFetch, markCallerError, realSleep, runAttempts, type DriverRequest, type MindCallPolicy, type MindDriver, type Sleep } from "./mind-call.ts";
import type { MindConfig } from "./mind-config.ts";
import { costMicroUsd, priceOf, type Price } from "./mind-cost.ts";
import { MindCounters } from "./mind-counters.ts";
import { geminiDriver } from "./mind-gemini.ts";
import { openaiDriver } from "./mind-openai.ts";

export { MindError, MIND_CALL_DEFAULTS, type MindCallPolicy, type Sleep } from "./mind-call.ts";
export { MindConfigError, MindKey, mindConfigs, readKeyFile, type MindConfig, type MindFlags } from "./mind-config.ts";
export { MindCounters, mindMetrics, type MindCount } from "./mind-counters.ts";
export { priceOf, type Price } from "./mind-cost.ts";

/** A mind this node can ask. */
export interface MindClient {
  readonly info: MindInfo;
  /** Asks the mind; streamed when onDelta is given. Rejects with a MindError. */
  chat(request: MindRequest, options: { signal?: AbortSignal; onDelta?: (text: string) => void }): Promise<MindReply>;
  /** Embeddings of `texts`, in order (only when info.embeds). Rejects with a MindError. */
  embed?(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]>;
  /** Model ids the server lists (OpenAI-compatible servers; for `mind test`). Rejects with a MindError. */
  models?(signal?: AbortSignal): Promise<string[]>;
  /** Cancels every call in flight; later calls fail cancelled. */
  close?(): void;
}

export interface MindClientOptions {
  /** Where the client counts (shared by the node's minds); a private one when absent. */
  readonly counters?: MindCounters;
  /** Timeouts, retries and bounds (MIND_CALL_DEFAULTS for what is not given). */
  readonly policy?: Partial<MindCallPolicy>;
  /** How retries wait (tests pass one that records the waits). */
  readonly sleep?: Sleep;
}

/** A client for the mind `config` describes. */
export function openMind(config: MindConfig, options: MindClientOptions = {}): MindClient {
  const mind = new SdkMind(config, options);
  return Object.freeze({
    info: mind.info,
    chat: (request: MindRequest, callOptions: { signal?: AbortSignal; onDelta?: (text: string) => void } = {}) => mind.chat(request, callOptions),
    close: () => mind.close(),
    ...(mind.info.embeds ? { embed: (texts: readonly string[], signal?: AbortSignal) => mind.embed(texts, signal) } : {}),
    ...(mind.lists ? { models: (signal?: AbortSignal) => mind.models(signal) } : {}),
  });
}

class SdkMind {
  readonly info: MindInfo;
  readonly #driver: MindDriver;
  readonly #policy: MindCallPolicy;
  readonly #counters: MindCounters;
  readonly #sleep: Sleep;
  readonly #secrets: readonly string[];
  readonly #price: Price | undefined;
  readonly #embedPrice: Price | undefined;
  readonly #life = new AbortController();

  constructor(config: MindConfig, options: MindClientOptions) {
    const policy = { ...MIND_CALL_DEFAULTS, ...options.policy };
    this.#policy = policy;
    this.#counters = options.counters ?? new MindCounters();
    this.#sleep = options.sleep ?? realSleep;
    const key = config.key?.reveal();
    this.#secrets = key === undefined ? [] : [key];
    const name = config.name;
    const fetch = countingFetch((status) => this.#counters.attempt(name, status), policy.responseBytesMax);
    // The SDKs' own timers only as a backstop behind the call's.
    const sdkTimeoutMs = policy.timeoutMs + 5_000;
    if (config.provider === "openai") {
      this.#driver = openaiDriver({
        baseURL: config.baseURL, key, model: config.model, embedModel: config.embedModel, frontier: config.kind === "frontier",
        fetch, timeoutMs: sdkTimeoutMs, modelsListed: policy.modelsListed,
      });
    } else if (config.provider === "anthropic") {
      if (key === undefined) throw new RangeError(`mind ${name}: Anthropic needs a key`);
      this.#driver = anthropicDriver({ baseURL: config.baseURL, key, model: config.model, fetch, timeoutMs: sdkTimeoutMs });
    } else {
      if (key === undefined) throw new RangeError(`mind ${name}: Gemini needs a key`);
      this.#driver = geminiDriver({ baseURL: config.baseURL, key, model: config.model, embedModel: config.embedModel, fetch });
    }
    const local = config.kind === "local";
    this.#price = config.price ?? (local ? { inputPerM: 0, outputPerM: 0 } : priceOf(config.provider, config.model));
    this.#embedPrice = config.embedModel === undefined ? undefined : local ? { inputPerM: 0, outputPerM: 0 } : priceOf(config.provider, config.embedModel);
    const counts = this.#counters.of(name);
    if (this.#price === undefined) counts.priced = false;
    this.info = Object.freeze({
      name, provider: config.provider, model: config.model, kind: config.kind, embeds: this.#driver.embed !== undefined, node: config.node,
    });
  }

  /** The server lists its models (OpenAI-compatible). */
  get lists(): boolean {
    return this.#driver.models !== undefined;
  }

  async chat(request: MindRequest, options: { signal?: AbortSignal; onDelta?: (text: string) => void }): Promise<MindReply> {
    const started = performance.now();
    const counts = this.#counters.of(this.info.name);
    const { onDelta } = options;
    let partial = "";
    let delivered = false;
    try {
      const prepared = this.#prepare(request);
      const onText = onDelta === undefined ? undefined : (text: string): void => {
        if (partial.length + text.length > this.#policy.answerCharsMax) throw new MindFailure("malformed", `the answer is longer than ${this.#policy.answerCharsMax} characters`);
        partial += text;
        delivered = true;
        try {
          onDelta(text);
        } catch (error) {
          throw markCallerError(error);
        }
      };
      const { value } = await runAttempts(this.#spec(options.signal, () => delivered, () => partial, counts), (context) => this.#driver.chat(prepared, context, onText));
      if (value.text.length > this.#policy.answerCharsMax) throw new MindError("malformed", this.info.name, `the answer is longer than ${this.#policy.answerCharsMax} characters`);
      const latencyMs = performance.now() - started;
      counts.requests.ok++;
      counts.latencyMsSum += latencyMs;
      this.#countTokens(counts, value.inputTokens, value.outputTokens, this.#price);
      return { text: value.text, usage: { inputTokens: value.inputTokens, outputTokens: value.outputTokens }, finish: value.finish, mind: this.info, latencyMs };
    } catch (error) {
      const failure = this.#asMindError(error, partial);
      if (failure !== undefined) counts.requests[failure.kind]++;
      throw failure ?? error;
    }
  }

  async embed(texts: readonly string[], signal: AbortSignal | undefined): Promise<Float32Array[]> {
    const counts = this.#counters.of(this.info.name);
    const embed = this.#driver.embed;
    try {
      if (embed === undefined) throw new MindError("refused", this.info.name, "this mind does not embed");
      if (!Array.isArray(texts) || texts.length > this.#policy.embedTextsMax) throw new MindError("refused", this.info.name, `embed takes 0 to ${this.#policy.embedTextsMax} texts`);
      for (const text of texts) {
        if (typeof text !== "string" || text.length === 0 || text.length > this.#policy.embedCharsMax) {
          throw new MindError("refused", this.info.name, `each text to embed is 1 to ${this.#policy.embedCharsMax} characters`);
        }
      }
      const out: Float32Array[] = [];
      let inputTokens = 0;
      for (let i = 0; i < texts.length; i += this.#policy.embedBatch) {
        const batch = texts.slice(i, i + this.#policy.embedBatch);
        const { value } = await runAttempts(this.#spec(signal, () => false, () => "", counts), (context) => embed(batch, context));
        out.push(...value.vectors);
        if (out.some((v) => v.length !== (out[0] as Float32Array).length)) throw new MindError("malformed", this.info.name, "embeddings of different dimensions");
        inputTokens += value.inputTokens;
      }
      counts.embeds.ok++;
      this.#countTokens(counts, inputTokens, 0, this.#embedPrice);
      return out;
    } catch (error) {
      const failure = this.#asMindError(error, "");
      if (failure !== undefined) counts.embeds[failure.kind]++;
      throw failure ?? error;
    }
  }

  async models(signal: AbortSignal | undefined): Promise<string[]> {
    const models = this.#driver.models;
    if (models === undefined) throw new MindError("refused", this.info.name, "this mind lists no models");
    const counts = this.#counters.of(this.info.name);
    try {
      const { value } = await runAttempts(this.#spec(signal, () => false, () => "", counts), (context) => models(context));
      return value;
    } catch (error) {
      throw this.#asMindError(error, "") ?? error;
    }
  }

  close(): void {
    this.#life.abort();
  }

  #spec(signal: AbortSignal | undefined, delivered: () => boolean, partial: () => string, counts: { retries: number }) {
    return {
      mind: this.info.name,
      policy: this.#policy,
      sleep: this.#sleep,
      signal: signal === undefined ? this.#life.signal : AbortSignal.any([signal, this.#life.signal]),
      secrets: this.#secrets,
      delivered,
      partial,
      onRetry: () => {
        counts.retries++;
      },
    };
  }

  #countTokens(counts: { inputTokens: number; outputTokens: number; costMicroUsd: number }, inputTokens: number, outputTokens: number, price: Price | undefined): void {
    counts.inputTokens += inputTokens;
    counts.outputTokens += outputTokens;
    if (price !== undefined) counts.costMicroUsd += costMicroUsd(price, inputTokens, outputTokens);
  }

  /** A MindError for anything the call ended with, except the caller's own callback's errors. */
  #asMindError(error: unknown, partial: string): MindError | undefined {
    if (error instanceof MindError) return error;
    if (error instanceof MindFailure) return new MindError(error.kind, this.info.name, error.message, { partial });
    return undefined;
  }

  /** Checks a request (bad input is a refusal, not a crash) and shapes it for the drivers. */
  #prepare(request: MindRequest): DriverRequest {
    const refuse = (why: string): never => {
      throw new MindError("refused", this.info.name, `bad request: ${why}`);
    };
    if (typeof request !== "object" || request === null || !Array.isArray(request.messages)) refuse("no messages");
    if (request.messages.length === 0) refuse("no messages");
    const messages: ChatMessage[] = [];
    let chars = 0;
    for (const m of request.messages as readonly unknown[]) {
      if (typeof m !== "object" || m === null) refuse("a message that is not an object");
      const { role, content } = m as { role?: unknown; content?: unknown };
      if (role !== "system" && role !== "user" && role !== "assistant") refuse(`a message with role ${JSON.stringify(role)}`);
      if (typeof content !== "string") refuse("a message whose content is not text");
      chars += (content as string).length;
      messages.push({ role: role as ChatMessage["role"], content: content as string });
    }
    if (chars > this.#policy.answerCharsMax * 4) refuse(`a prompt longer than ${this.#policy.answerCharsMax * 4} characters`);
    const { maxTokens, temperature } = request;
    if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 1 && maxTokens <= 1_000_000)) refuse("maxTokens is not an integer from 1 to 1,000,000");
    if (temperature !== undefined && !(typeof temperature === "number" && temperature >= 0 && temperature <= 2)) refuse("temperature is not from 0 to 2");
    const system = messages.filter((m) => m.role === "system").map((m) => m.content).join("\n\n");
    const turns: { role: "user" | "assistant"; content: string }[] = [];
    for (const m of messages) {
      if (m.role === "system") continue;
      const last = turns[turns.length - 1];
      if (last !== undefined && last.role === m.role) last.content += `\n\n${m.content}`;
      else turns.push({ role: m.role, content: m.content });
    }
    return { system, turns, messages, maxTokens: maxTokens ?? this.#policy.maxTokens, temperature };
  }
}
