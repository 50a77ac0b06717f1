// The `@anthropic-ai/sdk` as a MindDriver: the Messages API (JSON, or SSE events ending in
// message_stop). System messages go in `system`; turns of one role in a row are joined.
// Anthropic offers no embeddings.
import Anthropic from "@anthropic-ai/sdk";
import { isObject, MindFailure, tokens, type AttemptContext, type DriverReply, type DriverRequest, type MindDriver, NO_SDK_RETRIES } from "./mind-call.ts";

export interface AnthropicDriverOptions {
  readonly baseURL: string;
  readonly key: string;
  readonly model: string;
  readonly fetch: typeof fetch;
  readonly timeoutMs: number;
}

export function anthropicDriver(options: AnthropicDriverOptions): MindDriver {
  // The key is given, so the SDK reads no credential from the environment or its profile files.
  const client = new Anthropic({
    apiKey: options.key,
    baseURL: options.baseURL,
    maxRetries: NO_SDK_RETRIES,
    timeout: options.timeoutMs,
    fetch: options.fetch,
    logLevel: "off",
  });
  const { model } = options;
  return {
    async chat(request: DriverRequest, context: AttemptContext, onText): Promise<DriverReply> {
      if (request.turns.length === 0) throw new MindFailure("refused", "a request with no user or assistant message");
      const body = {
        model,
        max_tokens: request.maxTokens,
        messages: request.turns.map((t) => ({ role: t.role, content: t.content })),
        ...(request.system === "" ? {} : { system: request.system }),
        // Anthropic's temperature is 0–1.
        ...(request.temperature === undefined ? {} : { temperature: Math.min(1, request.temperature) }),
      };
      if (onText === undefined) {
        const message: unknown = await client.messages.create({ ...body, stream: false }, { signal: context.signal });
        if (!isObject(message) || !Array.isArray(message["content"])) throw new MindFailure("malformed", "a message without content blocks");
        let text = "";
        for (const block of message["content"]) {
          if (isObject(block) && block["type"] === "text") {
            if (typeof block["text"] !== "string") throw new MindFailure("malformed", "a text block without text");
            text += block["text"];
          }
        }
        const usage = isObject(message["usage"]) ? message["usage"] : {};
        return { text, inputTokens: tokens(usage["input_tokens"]), outputTokens: tokens(usage["output_tokens"]), finish: finishOf(message["stop_reason"]) };
      }
      const stream = await client.messages.create({ ...body, stream: true }, { signal: context.signal });
      let text = "";
      let inputTokens = 0;
      let outputTokens = 0;
      let stop: unknown;
      let ended = false;
      for await (const event of stream as AsyncIterable<unknown>) {
        context.alive();
        if (!isObject(event) || typeof event["type"] !== "string") throw new MindFailure("malformed", "a streamed event without a type");
        switch (event["type"]) {
          case "message_start": {
            const usage = isObject(event["message"]) && isObject(event["message"]["usage"]) ? event["message"]["usage"] : {};
            inputTokens = tokens(usage["input_tokens"]);
            outputTokens = tokens(usage["output_tokens"]);
            break;
          }
          case "content_block_delta": {
            const delta = event["delta"];
            if (!isObject(delta)) throw new MindFailure("malformed", "a content_block_delta without a delta");
            if (delta["type"] === "text_delta") {
              if (typeof delta["text"] !== "string") throw new MindFailure("malformed", "a text_delta without text");
              if (delta["text"].length > 0) {
                text += delta["text"];
                onText(delta["text"]);
              }
            }
            break;
          }
          case "message_delta": {
            if (isObject(event["delta"]) && event["delta"]["stop_reason"] !== undefined) stop = event["delta"]["stop_reason"];
            if (isObject(event["usage"])) {
              // Counts in message_delta are cumulative.
              if (event["usage"]["input_tokens"] !== undefined && event["usage"]["input_tokens"] !== null) inputTokens = tokens(event["usage"]["input_tokens"]);
              outputTokens = tokens(event["usage"]["output_tokens"]);
            }
            break;
          }
          case "message_stop":
            ended = true;
            break;
          default:
            // content_block_start, content_block_stop, and event types to come.
            break;
        }
      }
      if (!ended) throw new MindFailure("truncated", "the stream ended before message_stop");
      return { text, inputTokens, outputTokens, finish: finishOf(stop) };
    },
  };
}

function finishOf(reason: unknown): "stop" | "length" | "other" {
  return reason === "end_turn" || reason === "stop_sequence" ? "stop" : reason === "max_tokens" ? "length" : "other";
}
