// The `openai` SDK as a MindDriver: OpenAI itself and every OpenAI-compatible server (Ollama,
// llama.cpp's llama-server, vLLM, LM Studio) through its base URL. Chat completions (JSON, or SSE
// with stream_options.include_usage), /embeddings (float), /models.
import OpenAI from "openai";
import { isObject, MindFailure, toVector, tokens, type AttemptContext, type DriverReply, type DriverRequest, type MindDriver, NO_SDK_RETRIES } from "./mind-call.ts";

export interface OpenAIDriverOptions {
  readonly baseURL: string;
  /** The key, or undefined for a server that wants none. */
  readonly key: string | undefined;
  readonly model: string;
  readonly embedModel: string | undefined;
  /** OpenAI's own API: max_completion_tokens (its reasoning models refuse max_tokens); local servers get max_tokens. */
  readonly frontier: boolean;
  readonly fetch: typeof fetch;
  /** The SDK's own timeout, beyond the call's (the call's timer fires first). */
  readonly timeoutMs: number;
  /** Model ids read from the server's list. */
  readonly modelsListed: number;
}

export function openaiDriver(options: OpenAIDriverOptions): MindDriver {
  // Every option the SDK would otherwise take from the environment is given: OPENAI_API_KEY,
  // OPENAI_ORG_ID or OPENAI_PROJECT_ID must never reach a local server on another machine.
  const client = new OpenAI({
    apiKey: options.key ?? "no-key",
    adminAPIKey: null,
    organization: null,
    project: null,
    webhookSecret: null,
    baseURL: options.baseURL,
    maxRetries: NO_SDK_RETRIES,
    timeout: options.timeoutMs,
    fetch: options.fetch,
    logLevel: "off",
  });
  const { model, embedModel } = options;
  const driver: MindDriver = {
    async chat(request: DriverRequest, context: AttemptContext, onText): Promise<DriverReply> {
      const body = {
        model,
        messages: request.messages.map((m) => ({ role: m.role, content: m.content })),
        ...(options.frontier ? { max_completion_tokens: request.maxTokens } : { max_tokens: request.maxTokens }),
        ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
      };
      if (onText === undefined) {
        const completion: unknown = await client.chat.completions.create({ ...body, stream: false }, { signal: context.signal });
        if (!isObject(completion) || !Array.isArray(completion["choices"])) throw new MindFailure("malformed", "a chat completion without choices");
        const choice: unknown = completion["choices"][0];
        if (!isObject(choice) || !isObject(choice["message"])) throw new MindFailure("malformed", "a chat completion without a message");
        const message = choice["message"];
        const content = message["content"] ?? message["refusal"] ?? "";
        if (typeof content !== "string") throw new MindFailure("malformed", "a message whose content is not text");
        const usage = isObject(completion["usage"]) ? completion["usage"] : {};
        return { text: content, inputTokens: tokens(usage["prompt_tokens"]), outputTokens: tokens(usage["completion_tokens"]), finish: finishOf(choice["finish_reason"] ?? "stop") };
      }
      const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } }, { signal: context.signal });
      let text = "";
      let finish: unknown;
      let usage: Record<string, unknown> = {};
      for await (const chunk of stream as AsyncIterable<unknown>) {
        context.alive();
        if (!isObject(chunk) || !Array.isArray(chunk["choices"])) throw new MindFailure("malformed", "a streamed chunk without choices");
        if (isObject(chunk["usage"])) usage = chunk["usage"];
        const choice: unknown = chunk["choices"][0];
        if (choice === undefined) continue;
        if (!isObject(choice)) throw new MindFailure("malformed", "a streamed choice that is not an object");
        const delta = isObject(choice["delta"]) ? choice["delta"]["content"] : undefined;
        if (delta !== undefined && delta !== null && typeof delta !== "string") throw new MindFailure("malformed", "a streamed delta whose content is not text");
        if (typeof delta === "string" && delta.length > 0) {
          text += delta;
          onText(delta);
        }
        if (choice["finish_reason"] !== undefined && choice["finish_reason"] !== null) finish = choice["finish_reason"];
      }
      if (finish === undefined) throw new MindFailure("truncated", "the stream ended before its finish_reason");
      return { text, inputTokens: tokens(usage["prompt_tokens"]), outputTokens: tokens(usage["completion_tokens"]), finish: finishOf(finish) };
    },
    async models(context: AttemptContext): Promise<string[]> {
      const ids: string[] = [];
      const page: unknown = await client.models.list({ signal: context.signal });
      const data = isObject(page) && Array.isArray(page["data"]) ? page["data"] : undefined;
      if (data === undefined) throw new MindFailure("malformed", "a model list without data");
      for (const entry of data.slice(0, options.modelsListed)) if (isObject(entry) && typeof entry["id"] === "string") ids.push(entry["id"]);
      return ids;
    },
  };
  if (embedModel === undefined) return driver;
  return {
    ...driver,
    async embed(texts, context) {
      const response: unknown = await client.embeddings.create({ model: embedModel, input: [...texts], encoding_format: "float" }, { signal: context.signal });
      if (!isObject(response) || !Array.isArray(response["data"]) || response["data"].length !== texts.length) {
        throw new MindFailure("malformed", `embeddings: expected ${texts.length} vectors`);
      }
      const vectors: Float32Array[] = new Array<Float32Array>(texts.length);
      for (const [position, item] of response["data"].entries()) {
        if (!isObject(item)) throw new MindFailure("malformed", "embeddings: an item that is not an object");
        const index = typeof item["index"] === "number" ? item["index"] : position;
        if (!Number.isInteger(index) || index < 0 || index >= texts.length || vectors[index] !== undefined) throw new MindFailure("malformed", "embeddings: bad or repeated index");
        vectors[index] = toVector(item["embedding"], `embedding ${index}`);
      }
      const usage = isObject(response["usage"]) ? response["usage"] : {};
      return { vectors, inputTokens: tokens(usage["prompt_tokens"]) };
    },
  };
}

function finishOf(reason: unknown): "stop" | "length" | "other" {
  return reason === "stop" ? "stop" : reason === "length" ? "length" : "other";
}
