// The node's HTTP API (DESIGN.md §9) on node:http: status, shell, Prometheus metrics, the live
// event stream and the static dashboard; every other route (the key-value store, topics, the
// Brain) is a subsystem's, handed in through ApiNode. The adapter sees the node only through the
// interfaces below (adapters never import src/node).
//
// Every request is hostile until checked (DESIGN.md §2 rule 6): bodies are bounded
// (LIMITS.httpBodyBytesMax), the server has header and request timeouts and a connection bound,
// event streams are bounded in number and in buffered bytes, and every error — ours or the
// client's — is a JSON `{ "error": { "code", "message" } }` with a fitting status. Off loopback the
// API needs `Authorization: Bearer <cluster token>`; the dashboard's two static files do not (they
// hold nothing secret, and the page asks for the token).
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import { AssertionFailure } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";

/** Event streams open at once. */
export const SSE_CLIENTS_MAX = LIMITS.api.sseClientsMax;
/** Bytes an event stream may have buffered (a stalled reader) before it is cut. */
export const SSE_BUFFER_BYTES_MAX = LIMITS.api.sseBufferBytesMax;
/** Interval of the `: keepalive` comment on event streams. */
export const SSE_KEEPALIVE_MS = 15_000;
/** Concurrent TCP connections the API accepts. */
export const API_CONNECTIONS_MAX = LIMITS.api.connectionsMax;
/** Milliseconds close() waits for requests in flight before cutting connections. */
const CLOSE_GRACE_MS = 2_000;

/** An event of the node's bus, as the live stream sends it. */
export interface ApiEvent {
  readonly seq: number;
}

/** What the API needs of the node (src/node/api.ts builds it from the kernel). */
export interface ApiNode {
  /** The body of GET /v1/status. */
  status(): unknown;
  /** Runs one shell line. */
  shell(line: string): Promise<{ readonly output: string; readonly ok: boolean }>;
  readonly events: {
    since(after: number): Iterable<ApiEvent>;
    subscribe(fn: (event: ApiEvent) => void): () => void;
  };
  /** The subsystems' routes. */
  readonly routes: readonly ApiRoute[];
  /** Registers the node's collectors on the /metrics registry. */
  metrics(registry: Registry): void;
}

/**
 * One route a subsystem serves: `path` is exact ("/v1/infer") or, ending in "/", a prefix
 * ("/v1/kv/"). The handler answers through `http` and throws HttpError for a clean error answer.
 */
export interface ApiRoute {
  readonly path: string;
  handle(req: IncomingMessage, res: ServerResponse, http: ApiTools, url: string, path: string): Promise<void> | void;
}

/** The adapter's tools a route handler uses: JSON answers, bounded bodies, event-stream slots. */
export interface ApiTools {
  sendJson(res: ServerResponse, status: number, body: unknown, headers?: Readonly<Record<string, string>>): void;
  /** Throws 405 unless the method is one of `allowed` (HEAD counts as GET). */
  methods(req: IncomingMessage, allowed: readonly string[]): void;
  readJsonBody(req: IncomingMessage, res: ServerResponse): Promise<unknown>;
  readRawBody(req: IncomingMessage, res: ServerResponse, max: number): Promise<Uint8Array>;
  /** Claims an event-stream slot for res (503 when all are taken); it is released on close. */
  openStream(res: ServerResponse): void;
  toJson(value: unknown): string;
}

export interface ApiOptions {
  readonly node: ApiNode;
  /** Interface to bind, e.g. "127.0.0.1". */
  readonly host: string;
  /** 0 asks the OS for a free port. */
  readonly port: number;
  /** The cluster token: required as a bearer token on non-loopback binds. */
  readonly token: string | undefined;
}

export interface Api {
  /** Base URL, e.g. "http://127.0.0.1:7501". */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (h === "localhost" || h === "::1") return true;
  const v4 = h.startsWith("::ffff:") ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, code: string, message: string, headers: Readonly<Record<string, string>> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
}

function loadDashboard(): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  // src/adapters → ../../web in a checkout; dist/src/adapters → ../../../web in a build.
  for (const base of ["../../web/", "../../../web/"]) {
    try {
      const dir = new URL(base, import.meta.url);
      files.set("/", { body: readFileSync(new URL("index.html", dir)), type: "text/html; charset=utf-8" });
      files.set("/app.js", { body: readFileSync(new URL("app.js", dir)), type: "text/javascript; charset=utf-8" });
      return files;
    } catch {
      files.clear();
    }
  }
  return files;
}

const STATIC_HEADERS = {
  "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-cache",
};

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/** JSON.stringify that renders bytes as hex and bigints as strings instead of throwing. */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex");
    if (typeof v === "bigint") return v.toString();
    return v;
  });
}

export async function startApi(options: ApiOptions): Promise<Api> {
  const { node, token } = options;
  const needsAuth = !isLoopbackHost(options.host);
  if (needsAuth && (token === undefined || token === "")) {
    throw new Error(`refusing to serve the API on non-loopback address ${options.host} without a cluster token`);
  }
  const tokenDigest = token === undefined ? undefined : digest(token);
  const dashboard = loadDashboard();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  node.metrics(registry);
  const streams = new Set<ServerResponse>();
  let closing = false;

  function authorized(req: IncomingMessage): boolean {
    if (!needsAuth || tokenDigest === undefined) return true;
    const header = req.headers.authorization;
    if (header === undefined || !header.startsWith("Bearer ")) return false;
    return timingSafeEqual(digest(header.slice(7).trim()), tokenDigest);
  }

  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
    const text = toJson(body);
    res.writeHead(status, { ...headers, "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text), "Cache-Control": "no-store" });
    res.end(text);
  }

  function sendError(res: ServerResponse, error: HttpError): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, error.status, { error: { code: error.code, message: error.message } }, error.headers);
  }

  function methods(req: IncomingMessage, allowed: readonly string[]): void {
    const method = req.method ?? "";
    if (allowed.includes(method) || (method === "HEAD" && allowed.includes("GET"))) return;
    const allow = allowed.includes("GET") ? [...allowed, "HEAD"] : allowed;
    throw new HttpError(405, "METHOD_NOT_ALLOWED", `${method} is not allowed on ${req.url ?? ""}; allowed: ${allow.join(", ")}`, { Allow: allow.join(", ") });
  }

  async function readJsonBody(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
    const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
    if (type !== "application/json") {
      throw new HttpError(415, "UNSUPPORTED_MEDIA_TYPE", `expected Content-Type: application/json, got ${JSON.stringify((req.headers["content-type"] ?? "none").slice(0, 60))}`);
    }
    const text = Buffer.from(await readRawBody(req, res, LIMITS.httpBodyBytesMax)).toString("utf8");
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new HttpError(400, "BAD_JSON", `body is not valid JSON: ${(error as Error).message.slice(0, 100)}`);
    }
  }

  async function handleShell(req: IncomingMessage, res: ServerResponse): Promise<void> {
    methods(req, ["POST"]);
    const body = await readJsonBody(req, res);
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new HttpError(400, "BAD_REQUEST", "body must be a JSON object { \"line\": \"...\" }");
    }
    const line = (body as { line?: unknown }).line;
    if (typeof line !== "string") throw new HttpError(400, "BAD_REQUEST", "body needs a string field \"line\"");
    const result = await node.shell(line);
    sendJson(res, 200, { output: result.output, ok: result.ok });
  }

  async function readRawBody(req: IncomingMessage, res: ServerResponse, max: number): Promise<Uint8Array> {
    const declared = req.headers["content-length"];
    const tooLarge = (): HttpError => {
      // Stop reading: answer now and close the connection once the answer is out.
      res.setHeader("Connection", "close");
      res.once("finish", () => req.socket.destroySoon());
      return new HttpError(413, "PAYLOAD_TOO_LARGE", `request body is over ${max} bytes`);
    };
    if (declared !== undefined && Number(declared) > max) throw tooLarge();
    const chunks: Buffer[] = [];
    let size = 0;
    const outcome = await new Promise<"ok" | "too-large" | "aborted">((resolve) => {
      const onData = (chunk: Buffer): void => {
        size += chunk.length;
        if (size > max) {
          cleanup();
          req.pause();
          resolve("too-large");
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = (): void => {
        cleanup();
        resolve("ok");
      };
      const onError = (): void => {
        cleanup();
        resolve("aborted");
      };
      const cleanup = (): void => {
        req.off("data", onData);
        req.off("end", onEnd);
        req.off("error", onError);
        req.off("aborted", onError);
        // Keep one listener so a late socket error on the request is never unhandled.
        req.on("error", () => undefined);
      };
      req.on("data", onData);
      req.on("end", onEnd);
      req.on("error", onError);
      req.on("aborted", onError);
    });
    if (outcome === "too-large") throw tooLarge();
    if (outcome === "aborted") throw new HttpError(400, "BAD_REQUEST", "request body was cut off");
    return new Uint8Array(Buffer.concat(chunks, size));
  }

  function openStream(res: ServerResponse): void {
    if (streams.size >= SSE_CLIENTS_MAX) throw new HttpError(503, "TOO_MANY_STREAMS", `at most ${SSE_CLIENTS_MAX} event streams at once`, { "Retry-After": "5" });
    streams.add(res);
    const release = (): void => {
      streams.delete(res);
    };
    res.on("close", release);
    res.on("error", release);
  }

  const tools: ApiTools = { sendJson, methods, readJsonBody, readRawBody, openStream, toJson };

  async function handleMetrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    methods(req, ["GET"]);
    const text = await registry.metrics();
    res.writeHead(200, { "Content-Type": registry.contentType, "Content-Length": Buffer.byteLength(text), "Cache-Control": "no-store" });
    res.end(text);
  }

  function handleEvents(req: IncomingMessage, res: ServerResponse): void {
    methods(req, ["GET"]);
    if (streams.size >= SSE_CLIENTS_MAX) throw new HttpError(503, "TOO_MANY_STREAMS", `at most ${SSE_CLIENTS_MAX} event streams at once`, { "Retry-After": "5" });
    const lastId = Number(req.headers["last-event-id"] ?? 0);
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      "Connection": "keep-alive",
      "X-Accel-Buffering": "no",
    });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    streams.add(res);
    let unsubscribe: () => void = () => undefined;
    const finish = (): void => {
      unsubscribe();
      streams.delete(res);
    };
    const write = (event: ApiEvent): void => {
      if (res.writableEnded || res.destroyed) return;
      if (res.writableLength > SSE_BUFFER_BYTES_MAX) {
        // A reader this far behind is cut; it may reconnect with Last-Event-ID.
        finish();
        res.destroy();
        return;
      }
      res.write(`id: ${event.seq}\ndata: ${toJson(event)}\n\n`);
    };
    res.write("retry: 2000\n\n");
    for (const event of node.events.since(Number.isSafeInteger(lastId) && lastId > 0 ? lastId : 0)) write(event);
    unsubscribe = node.events.subscribe(write);
    res.on("close", finish);
    res.on("error", finish);
  }

  function handleStatic(req: IncomingMessage, res: ServerResponse, path: string): void {
    methods(req, ["GET"]);
    const file = dashboard.get(path);
    if (file === undefined) throw new HttpError(404, "NOT_FOUND", "the dashboard files (web/) are not installed");
    res.writeHead(200, { ...STATIC_HEADERS, "Content-Type": file.type, "Content-Length": file.body.length });
    res.end(file.body);
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const path = url.split("?", 1)[0] ?? "/";
    if (path === "/" || path === "/index.html" || path === "/app.js") return handleStatic(req, res, path === "/index.html" ? "/" : path);
    if (!authorized(req)) {
      throw new HttpError(401, "UNAUTHORIZED", "this API needs Authorization: Bearer <cluster token>", { "WWW-Authenticate": "Bearer realm=\"p-kernel\"" });
    }
    switch (path) {
      case "/v1/status":
        methods(req, ["GET"]);
        return sendJson(res, 200, node.status());
      case "/v1/shell":
        return handleShell(req, res);
      case "/metrics":
        return handleMetrics(req, res);
      case "/v1/events":
        return handleEvents(req, res);
    }
    for (const r of node.routes) {
      if (r.path === path || (r.path.endsWith("/") && path.startsWith(r.path))) return r.handle(req, res, tools, url, path);
    }
    throw new HttpError(404, "NOT_FOUND", `no such path: ${path.slice(0, 200)}`);
  }

  const server: Server = createServer({ maxHeaderSize: LIMITS.api.headerBytesMax }, (req, res) => {
    res.on("error", () => undefined);
    if (closing) {
      sendError(res, new HttpError(503, "SHUTTING_DOWN", "the node is shutting down", { Connection: "close" }));
      return;
    }
    route(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) return sendError(res, error);
      if (error instanceof AssertionFailure) {
        // A broken invariant is fatal (DESIGN.md §2 rule 5): answer, then crash outside this promise.
        sendError(res, new HttpError(500, "INTERNAL", "internal error"));
        process.nextTick(() => {
          throw error;
        });
        return;
      }
      sendError(res, new HttpError(500, "INTERNAL", `internal error: ${error instanceof Error ? error.message.slice(0, 200) : "unknown"}`));
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = LIMITS.api.headersCountMax;
  server.maxRequestsPerSocket = LIMITS.api.requestsPerSocketMax;
  server.maxConnections = API_CONNECTIONS_MAX;
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || error.code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    const [status, reason] = error.code === "HPE_HEADER_OVERFLOW" ? [431, "Request Header Fields Too Large"]
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? [408, "Request Timeout"] : [400, "Bad Request"];
    const body = toJson({ error: { code: status === 400 ? "BAD_REQUEST" : status === 408 ? "REQUEST_TIMEOUT" : "HEADERS_TOO_LARGE", message: `malformed request: ${error.code ?? "parse error"}` } });
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });

  const keepalive = setInterval(() => {
    for (const res of streams) if (!res.writableEnded) res.write(": keepalive\n\n");
  }, SSE_KEEPALIVE_MS);
  keepalive.unref();

  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      clearInterval(keepalive);
      reject(new Error(`cannot listen for the API on ${options.host}:${options.port}: ${error.message}`));
    };
    server.once("error", onError);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", () => undefined);
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  const hostInUrl = options.host.includes(":") && !options.host.startsWith("[") ? `[${options.host}]` : options.host;

  return {
    url: `http://${hostInUrl}:${port}`,
    port,
    async close(): Promise<void> {
      if (closing) return;
      closing = true;
      clearInterval(keepalive);
      for (const res of streams) res.end();
      streams.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const grace = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
      grace.unref();
      await closed;
      clearTimeout(grace);
    },
  };
}

