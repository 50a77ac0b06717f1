// Chat over HTTP (docs/protocols/chat.md): POST /v1/chat (this API's own shape, streamed as server-
// sent events or whole), and the OpenAI-compatible POST /v1/chat/completions and GET /v1/models,
// so any OpenAI client (its official SDK with baseURL = the node's /v1 and the cluster token as
// its API key) talks to the swarm. A turn's errors before it starts are HTTP errors; once it runs,
// a missing mind is no error: the answer comes from memory alone and says so.
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError, type ApiRoute, type ApiTools } from "../../adapters/http.ts";
import type { ChatMessage } from "../../core/self/minds.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { NodeView } from "../view.ts";
import { ChatBusyError, ChatInputError, chatOf, type ChatAnswer, type ChatTurn } from "./chat.ts";
import { MindCallError } from "./minds.ts";

/** The model names that are not a mind's: the router's choice, or a kind. */
const AUTO_MODELS = new Set(["pk", "auto", "p-kernel"]);

function object(body: unknown, shape: string): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new HttpError(400, "BAD_REQUEST", `the body must be a JSON object ${shape}`);
  return body as Record<string, unknown>;
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new HttpError(400, "BAD_REQUEST", `${key} must be a string`);
  return value;
}

function optionalNumber(body: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) throw new HttpError(400, "BAD_REQUEST", `${key} must be a number from ${min} to ${max}`);
  return value;
}

/** A mind by name, or a kind to prefer, from a model name or `mind` field. */
function mindChoice(name: string | undefined): Pick<ChatTurn, "mind" | "prefer"> {
  if (name === undefined || AUTO_MODELS.has(name)) return {};
  if (name === "local" || name === "frontier") return { prefer: name };
  return { mind: name };
}

/** Runs a turn; a turn that cannot start is an HTTP error (before anything was sent). */
async function run(kernel: NodeView, turn: ChatTurn): Promise<ChatAnswer> {
  try {
    return await chatOf(kernel).turn(turn);
  } catch (error) {
    if (error instanceof ChatInputError) throw new HttpError(400, "BAD_REQUEST", error.message);
    if (error instanceof ChatBusyError) throw new HttpError(503, "BUSY", error.message, { "Retry-After": "2" });
    throw error;
  }
}

function sse(res: ServerResponse, http: ApiTools): AbortSignal {
  http.openStream(res);
  const abort = new AbortController();
  res.on("close", () => abort.abort());
  res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store", "X-Accel-Buffering": "no" });
  res.flushHeaders();
  return abort.signal;
}

function write(res: ServerResponse, text: string): void {
  if (!res.writableEnded && !res.destroyed) res.write(text);
}

/** What a turn reports, for /v1/chat. */
function report(answer: ChatAnswer): Record<string, unknown> {
  return {
    answer: answer.text, source: answer.source, mind: answer.mind === undefined ? null : { name: answer.mind.name, kind: answer.mind.kind, model: answer.mind.model },
    note: answer.note ?? null, finish: answer.finish, usage: answer.usage, conv: answer.conv, asked: answer.asked, answered: answer.answered,
    recalled: answer.recalled.map((m) => ({ id: m.id, speaker: m.speaker, atMs: m.atMs, text: m.text })),
    mindMs: Math.round(answer.mindMs * 10) / 10, totalMs: Math.round(answer.totalMs * 10) / 10,
  };
}

async function handleChat(kernel: NodeView, req: IncomingMessage, res: ServerResponse, http: ApiTools): Promise<void> {
  http.methods(req, ["POST"]);
  const body = object(await http.readJsonBody(req, res), "{text, speaker?, conv?, mind?, stream?}");
  const text = optionalString(body, "text");
  if (text === undefined) throw new HttpError(400, "BAD_REQUEST", "text is required");
  const turn: ChatTurn = { text, speaker: optionalString(body, "speaker"), conv: optionalString(body, "conv"), ...mindChoice(optionalString(body, "mind")) };
  if (body["stream"] !== true) return http.sendJson(res, 200, report(await run(kernel, turn)));
  const signal = sse(res, http);
  try {
    const answer = await run(kernel, { ...turn, signal, onDelta: (delta) => write(res, `event: delta\ndata: ${http.toJson({ text: delta })}\n\n`) });
    write(res, `event: done\ndata: ${http.toJson(report(answer))}\n\n`);
  } catch (error) {
    if (!(error instanceof MindCallError && error.kind === "cancelled")) write(res, `event: error\ndata: ${http.toJson({ message: error instanceof Error ? error.message : String(error) })}\n\n`);
  }
  res.end();
}

/** OpenAI's message content: a string, or text parts. */
function content(value: unknown, at: number): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const parts = value.map((part) => {
      if (typeof part !== "object" || part === null || (part as { type?: unknown }).type !== "text" || typeof (part as { text?: unknown }).text !== "string") {
        throw new HttpError(400, "BAD_REQUEST", `messages[${at}].content: only text parts are understood`);
      }
      return (part as { text: string }).text;
    });
    return parts.join("");
  }
  throw new HttpError(400, "BAD_REQUEST", `messages[${at}].content must be a string or text parts`);
}

function parseMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw new HttpError(400, "BAD_REQUEST", "messages must be a non-empty array");
  if (value.length > LIMITS.self.mind.messagesMax) throw new HttpError(400, "BAD_REQUEST", `at most ${LIMITS.self.mind.messagesMax} messages`);
  return value.map((m, i) => {
    if (typeof m !== "object" || m === null) throw new HttpError(400, "BAD_REQUEST", `messages[${i}] must be an object`);
    const { role } = m as { role?: unknown };
    // A developer message is OpenAI's newer name for a system one.
    const mapped = role === "developer" ? "system" : role;
    if (mapped !== "system" && mapped !== "user" && mapped !== "assistant") throw new HttpError(400, "BAD_REQUEST", `messages[${i}].role must be system, developer, user or assistant`);
    const text = content((m as { content?: unknown }).content, i);
    if (text.length > LIMITS.self.mind.contentCharsMax) throw new HttpError(400, "BAD_REQUEST", `messages[${i}] is over ${LIMITS.self.mind.contentCharsMax} characters`);
    return { role: mapped, content: text };
  });
}

let completions = 0;

async function handleCompletions(kernel: NodeView, req: IncomingMessage, res: ServerResponse, http: ApiTools): Promise<void> {
  http.methods(req, ["POST"]);
  const body = object(await http.readJsonBody(req, res), "(an OpenAI chat completion request)");
  const messages = parseMessages(body["messages"]);
  const last = messages.at(-1)!;
  if (last.role !== "user") throw new HttpError(400, "BAD_REQUEST", "the last message must be the user's");
  const model = optionalString(body, "model") ?? "pk";
  const maxTokens = optionalNumber(body, "max_completion_tokens", 1, LIMITS.self.mind.maxTokensMax) ?? optionalNumber(body, "max_tokens", 1, LIMITS.self.mind.maxTokensMax);
  const temperature = optionalNumber(body, "temperature", 0, 2);
  const user = optionalString(body, "user");
  const header = req.headers["x-pk-conversation"];
  const turn: ChatTurn = {
    text: last.content, speaker: user, conv: typeof header === "string" && header !== "" ? header : undefined,
    history: messages.slice(0, -1), maxTokens, temperature, ...mindChoice(model),
  };
  const id = `chatcmpl-${kernel.id.slice(0, 8)}${(completions++).toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const modelOf = (answer: ChatAnswer | undefined): string => answer?.mind?.name ?? (answer === undefined ? model : "pk-memory");
  if (body["stream"] !== true) {
    const answer = await run(kernel, turn);
    return http.sendJson(res, 200, {
      id, object: "chat.completion", created, model: modelOf(answer),
      choices: [{ index: 0, message: { role: "assistant", content: answer.text, refusal: null }, logprobs: null, finish_reason: answer.finish === "other" ? "stop" : answer.finish }],
      usage: { prompt_tokens: answer.usage.inputTokens, completion_tokens: answer.usage.outputTokens, total_tokens: answer.usage.inputTokens + answer.usage.outputTokens },
      pk: { source: answer.source, note: answer.note ?? null, recalled: answer.recalled.length, conv: answer.conv },
    });
  }
  const includeUsage = typeof body["stream_options"] === "object" && body["stream_options"] !== null && (body["stream_options"] as { include_usage?: unknown }).include_usage === true;
  const signal = sse(res, http);
  const chunk = (delta: Record<string, unknown>, finish: string | null, name: string): void =>
    write(res, `data: ${http.toJson({ id, object: "chat.completion.chunk", created, model: name, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`);
  let first = true;
  try {
    const answer = await run(kernel, {
      ...turn, signal,
      onDelta: (delta) => {
        chunk(first ? { role: "assistant", content: delta } : { content: delta }, null, model);
        first = false;
      },
    });
    chunk({}, answer.finish === "other" ? "stop" : answer.finish, modelOf(answer));
    if (includeUsage) {
      write(res, `data: ${http.toJson({ id, object: "chat.completion.chunk", created, model: modelOf(answer), choices: [], usage: { prompt_tokens: answer.usage.inputTokens, completion_tokens: answer.usage.outputTokens, total_tokens: answer.usage.inputTokens + answer.usage.outputTokens } })}\n\n`);
    }
    write(res, "data: [DONE]\n\n");
  } catch (error) {
    if (!(error instanceof MindCallError && error.kind === "cancelled")) {
      const message = error instanceof HttpError || error instanceof Error ? error.message : String(error);
      write(res, `data: ${http.toJson({ error: { message, type: "server_error" } })}\n\n`);
    }
  }
  res.end();
}

export function chatRoutes(kernel: NodeView): ApiRoute[] {
  return [
    { path: "/v1/chat", handle: (req, res, http) => handleChat(kernel, req, res, http) },
    { path: "/v1/chat/completions", handle: (req, res, http) => handleCompletions(kernel, req, res, http) },
    {
      path: "/v1/models",
      handle(req, res, http) {
        http.methods(req, ["GET"]);
        const created = Math.floor(kernel.uptimeMs > 0 ? (Date.now() - kernel.uptimeMs) / 1000 : Date.now() / 1000);
        const data = [
          { id: "pk", object: "model", created, owned_by: "p-kernel" },
          ...kernel.minds.list().map((m) => ({ id: m.info.name, object: "model", created, owned_by: m.here ? m.info.provider : `${m.info.provider} (member ${m.info.node})` })),
        ];
        http.sendJson(res, 200, { object: "list", data });
      },
    },
  ];
}
