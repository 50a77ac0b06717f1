// The `@google/genai` SDK as a MindDriver: generateContent, streamGenerateContent?alt=sse, and
// embedContent (batchEmbedContents). System messages go in systemInstruction; the assistant's
// turns are the "model" role; thought parts are not answer text.
import { GoogleGenAI } from "@google/genai";
import { isObject, MindFailure, toVector, tokens, type AttemptContext, type DriverReply, type DriverRequest, type MindDriver } from "./mind-call.ts";

export interface GeminiDriverOptions {
  readonly baseURL: string;
  readonly key: string;
  readonly model: string;
  readonly embedModel: string | undefined;
  readonly fetch: typeof fetch;
}

export function geminiDriver(options: GeminiDriverOptions): MindDriver {
  // vertexai false and the key given: the SDK then reads neither GOOGLE_GENAI_USE_VERTEXAI nor a
  // key from the environment. No retryOptions: one fetch per attempt.
  const client = new GoogleGenAI({ apiKey: options.key, vertexai: false, httpOptions: { baseUrl: options.baseURL, fetch: options.fetch } });
  const { model, embedModel } = options;
  const driver: MindDriver = {
    async chat(request: DriverRequest, context: AttemptContext, onText): Promise<DriverReply> {
      if (request.turns.length === 0) throw new MindFailure("refused", "a request with no user or assistant message");
      const params = {
        model,
        contents: request.turns.map((t) => ({ role: t.role === "assistant" ? "model" : "user", parts: [{ text: t.content }] })),
        config: {
          abortSignal: context.signal,
          maxOutputTokens: request.maxTokens,
          ...(request.system === "" ? {} : { systemInstruction: request.system }),
          ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
        },
      };
      if (onText === undefined) {
        const response: unknown = await client.models.generateContent(params);
        const part = partOf(response);
        if (part.finish === undefined && part.blocked === undefined && part.text === undefined) throw new MindFailure("malformed", "an answer without candidates");
        return { text: part.text ?? "", inputTokens: part.inputTokens, outputTokens: part.outputTokens, finish: part.blocked !== undefined ? "other" : finishOf(part.finish ?? "STOP") };
      }
      const stream = await client.models.generateContentStream(params);
      let text = "";
      let finish: unknown;
      let blocked: unknown;
      let inputTokens = 0;
      let outputTokens = 0;
      for await (const chunk of stream as AsyncIterable<unknown>) {
        context.alive();
        const part = partOf(chunk);
        if (part.text === undefined && part.finish === undefined && part.blocked === undefined && !part.usage) throw new MindFailure("malformed", "a streamed chunk without candidates");
        if (part.text !== undefined && part.text.length > 0) {
          text += part.text;
          onText(part.text);
        }
        if (part.finish !== undefined) finish = part.finish;
        if (part.blocked !== undefined) blocked = part.blocked;
        if (part.usage) {
          inputTokens = part.inputTokens;
          outputTokens = part.outputTokens;
        }
      }
      if (finish === undefined && blocked === undefined) throw new MindFailure("truncated", "the stream ended before its finishReason");
      return { text, inputTokens, outputTokens, finish: blocked !== undefined ? "other" : finishOf(finish) };
    },
  };
  if (embedModel === undefined) return driver;
  return {
    ...driver,
    async embed(texts, context) {
      const response: unknown = await client.models.embedContent({ model: embedModel, contents: [...texts], config: { abortSignal: context.signal } });
      const embeddings = isObject(response) ? response["embeddings"] : undefined;
      if (!Array.isArray(embeddings) || embeddings.length !== texts.length) throw new MindFailure("malformed", `embeddings: expected ${texts.length} vectors`);
      const vectors = embeddings.map((e: unknown, i) => toVector(isObject(e) ? e["values"] : undefined, `embedding ${i}`));
      return { vectors, inputTokens: 0 };
    },
  };
}

interface Part { text: string | undefined; finish: unknown; blocked: unknown; usage: boolean; inputTokens: number; outputTokens: number }

/** The text, finish reason and usage of one GenerateContentResponse (whole or a streamed chunk). */
function partOf(response: unknown): Part {
  if (!isObject(response)) throw new MindFailure("malformed", "an answer that is not an object");
  const out: Part = { text: undefined, finish: undefined, blocked: undefined, usage: false, inputTokens: 0, outputTokens: 0 };
  const feedback = response["promptFeedback"];
  if (isObject(feedback) && feedback["blockReason"] !== undefined) out.blocked = feedback["blockReason"];
  const usage = response["usageMetadata"];
  if (isObject(usage)) {
    out.usage = true;
    out.inputTokens = tokens(usage["promptTokenCount"]);
    // Thinking tokens are billed as output.
    out.outputTokens = tokens(usage["candidatesTokenCount"]) + tokens(usage["thoughtsTokenCount"]);
  }
  const candidates = response["candidates"];
  if (candidates === undefined) return out;
  if (!Array.isArray(candidates)) throw new MindFailure("malformed", "candidates that are not a list");
  const candidate: unknown = candidates[0];
  if (candidate === undefined) return out;
  if (!isObject(candidate)) throw new MindFailure("malformed", "a candidate that is not an object");
  if (candidate["finishReason"] !== undefined) out.finish = candidate["finishReason"];
  const content = candidate["content"];
  if (content === undefined) return out;
  if (!isObject(content)) throw new MindFailure("malformed", "a candidate whose content is not an object");
  const parts = content["parts"];
  if (parts === undefined) return out;
  if (!Array.isArray(parts)) throw new MindFailure("malformed", "parts that are not a list");
  let text = "";
  for (const p of parts) {
    if (!isObject(p) || p["thought"] === true || !("text" in p)) continue;
    if (typeof p["text"] !== "string") throw new MindFailure("malformed", "a part whose text is not text");
    text += p["text"];
  }
  out.text = text;
  return out;
}

function finishOf(reason: unknown): "stop" | "length" | "other" {
  return reason === "STOP" ? "stop" : reason === "MAX_TOKENS" ? "length" : "other";
}
