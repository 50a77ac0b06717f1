// A local fake of the three model providers, speaking each one's real wire format on
// 127.0.0.1 (the outermost edge of the minds tests: the official SDKs talk to it over a socket).
//
//   OpenAI (and every OpenAI-compatible server)   POST {base}/chat/completions  JSON, or SSE `data:`
//     (base = URL/v1)                             chunks ending `data: [DONE]`; POST {base}/embeddings
//                                                 (float or base64); GET {base}/models
//   Anthropic (base = URL)                        POST /v1/messages  JSON, or SSE events message_start,
//                                                 content_block_start, ping, content_block_delta×N,
//                                                 content_block_stop, message_delta, message_stop;
//                                                 x-api-key or Authorization: Bearer
//   Gemini (base = URL)                           POST /v1beta/models/M:generateContent,
//                                                 :streamGenerateContent?alt=sse, :embedContent,
//                                                 :batchEmbedContents; x-goog-api-key
//
// Scripting: `reply(received)` makes the answer from what was asked (default: "echo: " + the last
// user message); `latencyMs` delays every answer; `script(...faults)` queues one fault per
// request to come (chat and embeddings, not model lists), `persistent` applies a fault to every
// request when the queue is empty. Every request is kept in `received` (headers included) and
// handed to `onRequest`. Tokens are counted as whitespace-separated words.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

export type Wire = "openai" | "anthropic" | "gemini";
export type Role = "system" | "user" | "assistant";

/** One request as the fake understood it. */
export interface Received {
  readonly seq: number;
  readonly wire: Wire;
  readonly op: "chat" | "embed" | "models";
  readonly method: string;
  /** The path without the query. */
  readonly path: string;
  readonly query: string;
  readonly model: string;
  readonly stream: boolean;
  /** The prompt, the system prompt first as one "system" message (Anthropic `system`, Gemini systemInstruction). */
  readonly messages: readonly { readonly role: Role; readonly content: string }[];
  /** The texts to embed. */
  readonly inputs: readonly string[];
  readonly maxTokens: number | undefined;
  readonly temperature: number | undefined;
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The parsed JSON body (undefined for a GET or a body that is not JSON). */
  readonly body: unknown;
  readonly atMs: number;
}

/** What can go wrong with one request. */
/** A fault for the next request of one kind only (`op`), the others passing it by; without `op`, the next chat or embeddings request. */
export type Fault = FaultKind & { readonly op?: "chat" | "embed" };

type FaultKind =
  /** An HTTP error in the provider's error format (429 with retry-after, 500, 503, 529, 401, 400...). */
  | { readonly kind: "status"; readonly status: number; readonly retryAfter?: string; readonly retryAfterMs?: number; readonly message?: string | ((request: Received) => string) }
  /** Reads the request and never answers. */
  | { readonly kind: "hang" }
  /** 200 with JSON cut in the middle (a stream: one good chunk, then a broken `data:` line). */
  | { readonly kind: "malformed" }
  /** 200 with valid JSON of the wrong shape (a stream: chunks of the wrong shape, then the end). */
  | { readonly kind: "unexpected" }
  /** The socket destroyed after `afterChunks` text chunks (not streamed: after half the body). */
  | { readonly kind: "truncate"; readonly afterChunks: number }
  /** `afterChunks` text chunks (not streamed: half the body), then silence on an open connection. */
  | { readonly kind: "stall"; readonly afterChunks: number }
  /** `afterChunks` text chunks, then a clean end without the stream's final events (not streamed: half the body, then the socket ends). */
  | { readonly kind: "end-early"; readonly afterChunks: number }
  /** `afterChunks` text chunks, then the provider's own error event in the stream (overloaded), then the end. */
  | { readonly kind: "stream-error"; readonly afterChunks: number }
  /** This request answered after `ms`. */
  | { readonly kind: "delay"; readonly ms: number };

export interface FakeOptions {
  readonly port?: number;
  readonly latencyMs?: number;
  /** Characters (code points) per streamed text chunk. */
  readonly chunkChars?: number;
  /** Delay between streamed chunks. */
  readonly chunkDelayMs?: number;
  /** Dimensions of the deterministic embeddings. */
  readonly dims?: number;
  /** When set, a request without this key (per wire) gets a 401 that echoes the key it sent. */
  readonly keys?: Partial<Record<Wire, string>>;
  readonly reply?: ((request: Received) => string) | undefined;
  readonly onRequest?: ((request: Received) => void) | undefined;
}

const BODY_BYTES_MAX = 8 * 1024 * 1024;

export class FakeProviders {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** Every request, in arrival order. */
  readonly received: Received[] = [];
  reply: (request: Received) => string;
  latencyMs: number;
  chunkChars: number;
  chunkDelayMs: number;
  dims: number;
  keys: Partial<Record<Wire, string>>;
  /** Applied to every chat and embeddings request while `script`'s queue is empty. */
  persistent: Fault | undefined;
  onRequest: ((request: Received) => void) | undefined;
  readonly #server: Server;
  readonly #faults: Fault[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  #seq = 0;
  #closed = false;

  private constructor(server: Server, port: number, options: FakeOptions) {
    this.#server = server;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.reply = options.reply ?? echo;
    this.latencyMs = options.latencyMs ?? 0;
    this.chunkChars = options.chunkChars ?? 6;
    this.chunkDelayMs = options.chunkDelayMs ?? 0;
    this.dims = options.dims ?? 8;
    this.keys = options.keys ?? {};
    this.persistent = undefined;
    this.onRequest = options.onRequest;
  }

  /** Starts the fake on 127.0.0.1 (port 0: any free port). */
  static async start(options: FakeOptions = {}): Promise<FakeProviders> {
    const ready: { fake?: FakeProviders } = {};
    const server = createServer((req, res) => {
      if (ready.fake === undefined) return void res.destroy();
      ready.fake.#handle(req, res).catch(() => res.destroy());
    });
    server.keepAliveTimeout = 1_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("fake providers: no port");
    ready.fake = new FakeProviders(server, address.port, options);
    return ready.fake;
  }

  /** Base URL for the OpenAI SDK (`baseURL`). */
  get openaiBase(): string {
    return `${this.url}/v1`;
  }

  /** Queues faults for the next chat and embeddings requests, one each, in order. */
  script(...faults: Fault[]): void {
    this.#faults.push(...faults);
  }

  /** Faults still queued. */
  get pending(): number {
    return this.#faults.length;
  }

  /** Requests of one kind. */
  requests(op: Received["op"] = "chat"): Received[] {
    return this.received.filter((r) => r.op === op);
  }

  /** Stops listening and drops every connection (hanging and stalled ones included). */
  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #wait(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        resolve();
      }, ms);
      this.#timers.add(timer);
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    if (raw === undefined) return void res.destroy();
    const url = new URL(req.url ?? "/", this.url);
    const route = routeOf(req.method ?? "GET", url.pathname, req.headers);
    if (route === undefined) return sendJson(res, 404, { error: { message: `no route ${req.method} ${url.pathname}` } });
    let body: unknown;
    try {
      body = raw.length === 0 ? undefined : JSON.parse(raw.toString("utf8"));
    } catch {
      return sendError(res, route.wire, 400, "the body is not JSON");
    }
    const received = parse(route, body, req, url, ++this.#seq);
    this.received.push(received);
    this.onRequest?.(received);
    const key = this.keys[route.wire];
    if (key !== undefined && route.op !== "models") {
      const sent = sentKey(route.wire, received.headers);
      if (sent !== key) return sendError(res, route.wire, 401, `Incorrect API key provided: ${sent ?? "(none)"}`);
    }
    if (route.op === "models") return sendModels(res, route.wire, received);
    const next = this.#faults[0];
    const fault = (next !== undefined && (next.op === undefined || next.op === route.op) ? this.#faults.shift() : undefined)
      ?? (this.persistent !== undefined && (this.persistent.op === undefined || this.persistent.op === route.op) ? this.persistent : undefined);
    await this.#wait(fault?.kind === "delay" ? fault.ms : this.latencyMs);
    if (this.#closed) return;
    if (fault?.kind === "hang") return;
    if (fault?.kind === "status") {
      const headers: Record<string, string> = {};
      if (fault.retryAfter !== undefined) headers["retry-after"] = fault.retryAfter;
      if (fault.retryAfterMs !== undefined) headers["retry-after-ms"] = String(fault.retryAfterMs);
      const message = typeof fault.message === "function" ? fault.message(received) : fault.message ?? `fake ${fault.status}`;
      return sendError(res, route.wire, fault.status, message, headers);
    }
    if (route.op === "embed") return this.#embed(res, received, fault);
    const full = this.reply(received);
    const words = full.split(/\s+/).filter((w) => w.length > 0);
    const cut = received.maxTokens !== undefined && words.length > received.maxTokens;
    const text = cut ? cutWords(full, received.maxTokens as number) : full;
    const usage = { input: countWords(received.messages.map((m) => m.content).join(" ")), output: countWords(text) };
    const answer: Answer = { text, usage, finish: cut ? "length" : "stop", model: received.model };
    if (!received.stream) return this.#whole(res, route.wire, answer, fault);
    await this.#stream(res, route.wire, answer, fault);
  }

  #whole(res: ServerResponse, wire: Wire, answer: Answer, fault: Fault | undefined): void {
    if (fault?.kind === "malformed") return sendRaw(res, 200, '{"id": "cut", "choices": [{"index": 0, "message": {"role": "assist');
    if (fault?.kind === "unexpected") return sendJson(res, 200, { unexpected: true, candidates: "none", content: 7 });
    const body = JSON.stringify(wholeBody(wire, answer));
    if (fault?.kind === "truncate" || fault?.kind === "stall" || fault?.kind === "end-early") {
      // Half the body under a content-length for all of it: then a reset, silence, or a clean end.
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.write(body.slice(0, Math.floor(body.length / 2)));
      if (fault.kind === "truncate") setImmediate(() => res.destroy());
      else if (fault.kind === "end-early") setImmediate(() => res.socket?.end());
      return;
    }
    sendRaw(res, 200, body);
  }

  async #stream(res: ServerResponse, wire: Wire, answer: Answer, fault: Fault | undefined): Promise<void> {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const pieces = chunks(answer.text, this.chunkChars);
    const stopAt = fault !== undefined && "afterChunks" in fault ? fault.afterChunks : Infinity;
    const write = (event: string | undefined, data: unknown): void => {
      const json = typeof data === "string" ? data : JSON.stringify(data);
      res.write(event === undefined ? `data: ${json}\n\n` : `event: ${event}\ndata: ${json}\n\n`);
    };
    if (fault?.kind === "unexpected") {
      write(wire === "anthropic" ? "content_block_delta" : undefined, { unexpected: [1, 2, 3] });
      if (wire === "openai") write(undefined, "[DONE]");
      return void res.end();
    }
    const id = `fake-${this.#seq}`;
    if (wire === "openai") write(undefined, openaiChunk(id, answer.model, { role: "assistant", content: "" }, null));
    if (wire === "anthropic") {
      write("message_start", {
        type: "message_start",
        message: { id, type: "message", role: "assistant", model: answer.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: answer.usage.input, output_tokens: 1 } },
      });
      write("content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
      write("ping", { type: "ping" });
    }
    for (let i = 0; i < pieces.length; i++) {
      if (i === stopAt) return this.#breakOff(res, wire, fault);
      if (i > 0) await this.#wait(this.chunkDelayMs);
      if (this.#closed || res.destroyed) return;
      const piece = pieces[i] as string;
      if (fault?.kind === "malformed" && i === 1) {
        res.write(brokenEvent(wire));
        return void res.end();
      }
      if (wire === "openai") write(undefined, openaiChunk(id, answer.model, { content: piece }, null));
      else if (wire === "anthropic") write("content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: piece } });
      else write(undefined, { candidates: [{ content: { role: "model", parts: [{ text: piece }] }, index: 0 }], modelVersion: answer.model, responseId: id });
    }
    if (stopAt !== Infinity && stopAt >= pieces.length) return this.#breakOff(res, wire, fault);
    if (fault?.kind === "malformed") {
      // A reply of one chunk still gets its broken event.
      res.write(brokenEvent(wire));
      return void res.end();
    }
    if (wire === "openai") {
      write(undefined, openaiChunk(id, answer.model, {}, answer.finish));
      write(undefined, { id, object: "chat.completion.chunk", created: 0, model: answer.model, choices: [], usage: openaiUsage(answer) });
      write(undefined, "[DONE]");
    } else if (wire === "anthropic") {
      write("content_block_stop", { type: "content_block_stop", index: 0 });
      write("message_delta", { type: "message_delta", delta: { stop_reason: answer.finish === "length" ? "max_tokens" : "end_turn", stop_sequence: null }, usage: { output_tokens: answer.usage.output } });
      write("message_stop", { type: "message_stop" });
    } else {
      write(undefined, {
        candidates: [{ content: { role: "model", parts: [{ text: "" }] }, finishReason: answer.finish === "length" ? "MAX_TOKENS" : "STOP", index: 0 }],
        usageMetadata: geminiUsage(answer), modelVersion: answer.model, responseId: id,
      });
    }
    res.end();
  }

  #breakOff(res: ServerResponse, wire: Wire, fault: Fault | undefined): void {
    if (fault?.kind === "stream-error") {
      res.write(wire === "anthropic"
        ? `event: error\ndata: ${JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })}\n\n`
        : wire === "openai"
          ? `data: ${JSON.stringify({ error: { message: "The server had an error while processing your request", type: "server_error", param: null, code: null } })}\n\n`
          : `data: ${JSON.stringify({ error: { code: 503, message: "The model is overloaded", status: "UNAVAILABLE" } })}\n\n`);
      return void res.end();
    }
    // After the pieces written so far have left (the first write is corked until the next tick).
    if (fault?.kind === "truncate") setImmediate(() => res.destroy());
    else if (fault?.kind === "end-early") res.end();
    // stall: leave the connection open and silent.
  }

  #embed(res: ServerResponse, received: Received, fault: Fault | undefined): void {
    if (fault?.kind === "malformed") return sendRaw(res, 200, '{"data": [{"embedding": [0.1, 0.2');
    if (fault?.kind === "unexpected") return sendJson(res, 200, { data: "none", embeddings: 3 });
    const body = received.body as Record<string, unknown>;
    const dims = typeof body["outputDimensionality"] === "number" ? body["outputDimensionality"] : this.dims;
    const vectors = received.inputs.map((text) => embedding(text, dims));
    if (received.wire === "openai") {
      const base64 = body["encoding_format"] === "base64";
      return sendJson(res, 200, {
        object: "list", model: received.model,
        data: vectors.map((v, index) => ({ object: "embedding", index, embedding: base64 ? Buffer.from(new Float32Array(v).buffer).toString("base64") : v })),
        usage: { prompt_tokens: countWords(received.inputs.join(" ")), total_tokens: countWords(received.inputs.join(" ")) },
      });
    }
    if (received.path.endsWith(":embedContent")) return sendJson(res, 200, { embedding: { values: vectors[0] ?? [] } });
    sendJson(res, 200, { embeddings: vectors.map((values) => ({ values })) });
  }
}

interface Answer { text: string; usage: { input: number; output: number }; finish: "stop" | "length"; model: string }
interface Route { wire: Wire; op: Received["op"]; model: string }

function echo(request: Received): string {
  const last = [...request.messages].reverse().find((m) => m.role === "user");
  return `echo: ${last?.content ?? ""}`;
}

function routeOf(method: string, path: string, headers: IncomingMessage["headers"]): Route | undefined {
  const gemini = /^\/v1(?:beta|alpha)?\/models\/([^/:]+):(generateContent|streamGenerateContent|embedContent|batchEmbedContents)$/.exec(path);
  if (method === "POST" && gemini !== null) {
    return { wire: "gemini", op: /mbed/.test(gemini[2] ?? "") ? "embed" : "chat", model: decodeURIComponent(gemini[1] ?? "") };
  }
  if (method === "POST" && path === "/v1/messages") return { wire: "anthropic", op: "chat", model: "" };
  if (method === "POST" && path.endsWith("/chat/completions")) return { wire: "openai", op: "chat", model: "" };
  if (method === "POST" && path.endsWith("/embeddings")) return { wire: "openai", op: "embed", model: "" };
  if (method === "GET" && path.endsWith("/models")) return { wire: headers["anthropic-version"] !== undefined ? "anthropic" : "openai", op: "models", model: "" };
  return undefined;
}

function text(value: unknown): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map((part) => (typeof part === "object" && part !== null && "text" in part ? String((part as { text: unknown }).text) : "")).join("");
  return "";
}

function role(value: unknown): Role {
  return value === "system" || value === "developer" ? "system" : value === "assistant" || value === "model" ? "assistant" : "user";
}

function parse(route: Route, body: unknown, req: IncomingMessage, url: URL, seq: number): Received {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const messages: { role: Role; content: string }[] = [];
  const inputs: string[] = [];
  let model = route.model;
  let stream = false;
  let maxTokens: number | undefined;
  let temperature: number | undefined;
  if (route.wire === "openai") {
    model = typeof b["model"] === "string" ? b["model"] : "";
    stream = b["stream"] === true;
    const max = b["max_completion_tokens"] ?? b["max_tokens"];
    maxTokens = typeof max === "number" ? max : undefined;
    temperature = typeof b["temperature"] === "number" ? b["temperature"] : undefined;
    for (const m of Array.isArray(b["messages"]) ? b["messages"] : []) messages.push({ role: role(m?.role), content: text(m?.content) });
    const input = b["input"];
    if (typeof input === "string") inputs.push(input);
    else if (Array.isArray(input)) for (const item of input) inputs.push(String(item));
  } else if (route.wire === "anthropic") {
    model = typeof b["model"] === "string" ? b["model"] : "";
    stream = b["stream"] === true;
    maxTokens = typeof b["max_tokens"] === "number" ? b["max_tokens"] : undefined;
    temperature = typeof b["temperature"] === "number" ? b["temperature"] : undefined;
    const system = text(b["system"]);
    if (system !== "") messages.push({ role: "system", content: system });
    for (const m of Array.isArray(b["messages"]) ? b["messages"] : []) messages.push({ role: role(m?.role), content: text(m?.content) });
  } else {
    stream = url.pathname.endsWith(":streamGenerateContent");
    const config = (typeof b["generationConfig"] === "object" && b["generationConfig"] !== null ? b["generationConfig"] : {}) as Record<string, unknown>;
    maxTokens = typeof config["maxOutputTokens"] === "number" ? config["maxOutputTokens"] : undefined;
    temperature = typeof config["temperature"] === "number" ? config["temperature"] : undefined;
    const system = b["systemInstruction"] as { parts?: unknown } | undefined;
    if (system !== undefined) messages.push({ role: "system", content: text(system.parts) });
    for (const c of Array.isArray(b["contents"]) ? b["contents"] : []) messages.push({ role: role(c?.role), content: text(c?.parts) });
    if (typeof b["content"] === "object" && b["content"] !== null) inputs.push(text((b["content"] as { parts?: unknown }).parts));
    for (const r of Array.isArray(b["requests"]) ? b["requests"] : []) inputs.push(text(r?.content?.parts));
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(", ") : value ?? "";
  return {
    seq, wire: route.wire, op: route.op, method: req.method ?? "GET", path: url.pathname, query: url.search, model, stream, messages, inputs,
    maxTokens, temperature, headers, body, atMs: Date.now(),
  };
}

function sentKey(wire: Wire, headers: Readonly<Record<string, string>>): string | undefined {
  if (wire === "gemini") return headers["x-goog-api-key"];
  if (wire === "anthropic" && headers["x-api-key"] !== undefined) return headers["x-api-key"];
  const auth = headers["authorization"];
  return auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > BODY_BYTES_MAX) {
        resolve(undefined);
        req.destroy();
      } else parts.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(parts)));
    req.on("error", () => resolve(undefined));
  });
}

function sendRaw(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendRaw(res, status, JSON.stringify(body), headers);
}

function sendError(res: ServerResponse, wire: Wire, status: number, message: string, headers: Record<string, string> = {}): void {
  if (wire === "openai") {
    const type = status === 429 ? "rate_limit_exceeded" : status === 401 ? "invalid_request_error" : status >= 500 ? "server_error" : "invalid_request_error";
    return sendJson(res, status, { error: { message, type, param: null, code: status === 401 ? "invalid_api_key" : null } }, headers);
  }
  if (wire === "anthropic") {
    const type = status === 429 ? "rate_limit_error" : status === 529 ? "overloaded_error" : status === 401 ? "authentication_error"
      : status === 403 ? "permission_error" : status >= 500 ? "api_error" : "invalid_request_error";
    return sendJson(res, status, { type: "error", error: { type, message } }, { "request-id": "req_fake", ...headers });
  }
  const statusName = status === 429 ? "RESOURCE_EXHAUSTED" : status === 401 ? "UNAUTHENTICATED" : status === 403 ? "PERMISSION_DENIED"
    : status === 503 ? "UNAVAILABLE" : status >= 500 ? "INTERNAL" : "INVALID_ARGUMENT";
  sendJson(res, status, { error: { code: status, message, status: statusName } }, headers);
}

function sendModels(res: ServerResponse, wire: Wire, received: Received): void {
  void received;
  if (wire === "anthropic") {
    return sendJson(res, 200, { data: [{ type: "model", id: "claude-fake", display_name: "Claude Fake", created_at: "2025-01-01T00:00:00Z" }], has_more: false, first_id: "claude-fake", last_id: "claude-fake" });
  }
  sendJson(res, 200, { object: "list", data: [{ id: "fake-model", object: "model", created: 0, owned_by: "fake" }] });
}

/** An SSE event whose JSON is cut in the middle. */
function brokenEvent(wire: Wire): string {
  if (wire === "anthropic") return `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"ty\n\n`;
  if (wire === "openai") return `data: {"id":"x","object":"chat.completion.chunk","choices":[{"delta":{"content":"br\n\n`;
  return `data: {"candidates":[{"content":{"parts":[{"text":"br\n\n`;
}

function openaiChunk(id: string, model: string, delta: Record<string, unknown>, finish: string | null): unknown {
  return { id, object: "chat.completion.chunk", created: 0, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
}

function openaiUsage(answer: Answer): unknown {
  return { prompt_tokens: answer.usage.input, completion_tokens: answer.usage.output, total_tokens: answer.usage.input + answer.usage.output };
}

function geminiUsage(answer: Answer): unknown {
  return { promptTokenCount: answer.usage.input, candidatesTokenCount: answer.usage.output, totalTokenCount: answer.usage.input + answer.usage.output };
}

function wholeBody(wire: Wire, answer: Answer): unknown {
  if (wire === "openai") {
    return {
      id: "chatcmpl-fake", object: "chat.completion", created: 0, model: answer.model,
      choices: [{ index: 0, message: { role: "assistant", content: answer.text, refusal: null }, logprobs: null, finish_reason: answer.finish }],
      usage: openaiUsage(answer),
    };
  }
  if (wire === "anthropic") {
    return {
      id: "msg_fake", type: "message", role: "assistant", model: answer.model, content: [{ type: "text", text: answer.text }],
      stop_reason: answer.finish === "length" ? "max_tokens" : "end_turn", stop_sequence: null,
      usage: { input_tokens: answer.usage.input, output_tokens: answer.usage.output },
    };
  }
  return {
    candidates: [{ content: { role: "model", parts: [{ text: answer.text }] }, finishReason: answer.finish === "length" ? "MAX_TOKENS" : "STOP", index: 0 }],
    usageMetadata: geminiUsage(answer), modelVersion: answer.model, responseId: "fake",
  };
}

/** Words in `text` (the fake's token count). */
export function countWords(text: string): number {
  return text.split(/\s+/).filter((w) => w.length > 0).length;
}

function cutWords(text: string, words: number): string {
  const found = text.match(/\s*\S+/g) ?? [];
  return found.slice(0, words).join("").trimStart();
}

/** `text` in pieces of `size` code points (a surrogate pair never split). */
export function chunks(text: string, size: number): string[] {
  const points = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < points.length; i += Math.max(1, size)) out.push(points.slice(i, i + size).join(""));
  return out.length === 0 ? [""] : out;
}

/** The fake's deterministic embedding of `text` (FNV-1a per dimension, in [−1, 1)). */
export function embedding(text: string, dims: number): number[] {
  const out: number[] = [];
  for (let d = 0; d < dims; d++) {
    let h = 0x811c9dc5 ^ d;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
    out.push(Math.fround((h / 0x1_0000_0000) * 2 - 1));
  }
  return out;
}
