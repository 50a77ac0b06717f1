// The node's HTTP API (DESIGN.md §9) on node:http: status, shell, Prometheus metrics, the live
// event stream and the static dashboard; every other route (the key-value store, topics, the
// Brain) is a subsystem's, handed in through ApiNode. The adapter sees the node only through the
// interfaces below (adapters never import src/node).
//
// Every request is hostile until checked (DESIGN.md §2 rule 6): bodies are bounded
// (LIMITS.httpBodyBytesMax), the server has header and request timeouts and a connection bound,
// event streams are bounded in number and in buffered bytes, and every error — ours or the
// client's — is a JSON `{ "error": { "code", "message" } }` with a fitting status.
//
// Trust (docs/protocols/http.md, "HTTP API trust"): a web page the user visits must get nothing.
// Every request's Host must be a name of this API (a loopback name or the bound address with the
// API's port, or a --public-name), and a present Origin must be http:// + one of those: this
// refuses DNS rebinding and cross-origin requests (403, counted in pk_http_refused_total). No
// answer ever carries CORS headers. Everything but GET /v1/status, GET /metrics (both only when
// the API is bound to loopback) and the dashboard's static files needs a credential: the bearer
// cluster token, or the dashboard's session cookie (POST /v1/login with the token or a one-time
// login code from POST /v1/login-code), which a cross-site request cannot use.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIP, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { performance } from "node:perf_hooks";
import { collectDefaultMetrics, Counter, Registry } from "prom-client";
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
/** Dashboard sessions kept at once (a new login evicts the oldest). */
export const SESSIONS_MAX = LIMITS.api.sessionsMax;
/** One-time login codes outstanding at once (a new one evicts the oldest). */
export const LOGIN_CODES_MAX = LIMITS.api.loginCodesMax;
/** Lifetime of a dashboard session: 12 hours. */
export const SESSION_TTL_MS = 12 * 3600_000;
/** Lifetime of a one-time login code: 5 minutes. */
export const LOGIN_CODE_TTL_MS = 5 * 60_000;
/** The dashboard's session cookie. */
export const SESSION_COOKIE = "pk_session";
/** Why a request was refused, as pk_http_refused_total's `reason` label. */
export const REFUSAL_REASONS = ["host", "origin", "credential", "login"] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];
/** Milliseconds a wildcard-bound API reuses its list of this machine's addresses. */
const INTERFACES_TTL_MS = 5_000;

/** An event of the node's bus, as the live stream sends it. */
export interface ApiEvent {
  readonly seq: number;
}

/** What the API needs of the node (src/node/api.ts builds it from the kernel). */
export interface ApiNode {
  /** The body of GET /v1/status. */
  status(): unknown;
  /** Runs one shell line. */
  /** Runs one shell line; with `stream`, output the command streams goes to `stream.out` as it comes. */
  shell(line: string, stream?: { readonly out: (chunk: string) => void; readonly signal: AbortSignal }): Promise<{ readonly output: string; readonly ok: boolean }>;
  readonly events: {
    since(after: number): Iterable<ApiEvent>;
    subscribe(fn: (event: ApiEvent) => void): () => void;
  };
  /** The subsystems' routes. */
  readonly routes: readonly ApiRoute[];
  /** Registers the node's collectors on the /metrics registry. */
  metrics(registry: Registry): void;
  /** Hears every authenticated request but monitoring (/metrics, /v1/status, /v1/events, /v1/dashboard): the node's foreground load. */
  onRequest?(): void;
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
  /** The cluster token: the bearer credential, and what a dashboard login may present. */
  readonly token: string;
  /**
   * Names the API also answers to in Host and Origin besides its loopback names and its bound
   * address: "name" (with the API's port) or "name:port", e.g. a DNS name of this machine or the
   * name a reverse proxy forwards. At most LIMITS.api.publicNamesMax.
   */
  readonly publicNames?: readonly string[];
}

export interface Api {
  /** Base URL, e.g. "http://127.0.0.1:7501". */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A Host header or an origin's host part as "name:port" (lowercase; IPv6 in brackets), the port
 * `defaultPort` when absent; undefined when it is not a plain host name, IP literal and port.
 */
export function parseAuthority(value: string, defaultPort: number): string | undefined {
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(?::([0-9]{1,5}))?$/i.exec(value);
  if (match === null) return undefined;
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (!(port >= 1 && port <= 65535)) return undefined;
  const name = (match[1] ?? "").toLowerCase();
  if (name.startsWith("[") && isIP(name.slice(1, -1)) !== 6) return undefined;
  return `${name}:${port}`;
}

/** Whether `host` (an address to bind) means every interface: 0.0.0.0, ::, [::]. */
function isWildcard(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (isIP(h) === 4) return h === "0.0.0.0";
  return isIP(h) === 6 && h.split(":").every((group) => /^0*$/.test(group));
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

/** The dashboard's files: URL path → file of web/ and its type. Nothing else of web/ is served. */
const DASHBOARD_FILES: ReadonlyArray<readonly [string, string, string]> = [
  ["/", "index.html", "text/html; charset=utf-8"],
  ["/app.js", "app.js", "text/javascript; charset=utf-8"],
  ["/style.css", "style.css", "text/css; charset=utf-8"],
  ["/favicon.svg", "favicon.svg", "image/svg+xml"],
];
/** The charting library (uPlot, an npm dependency), served from node_modules so the page needs no CDN. */
const VENDOR_FILES: ReadonlyArray<readonly [string, string, string]> = [
  ["/vendor/uplot.js", "uplot/dist/uPlot.iife.min.js", "text/javascript; charset=utf-8"],
  ["/vendor/uplot.css", "uplot/dist/uPlot.min.css", "text/css; charset=utf-8"],
];

/** Paths that only watch the node: not foreground load (ApiNode.onRequest). */
const MONITORING_PATHS: ReadonlySet<string> = new Set(["/metrics", "/v1/status", "/v1/events", "/v1/dashboard"]);

/** Every path the static part answers (the rest of the API's paths are routes). */
export const STATIC_PATHS: ReadonlySet<string> = new Set([...DASHBOARD_FILES, ...VENDOR_FILES].map(([path]) => path));

function loadDashboard(): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  // src/adapters → ../../web in a checkout; dist/src/adapters → ../../../web in a build.
  for (const base of ["../../web/", "../../../web/"]) {
    try {
      const dir = new URL(base, import.meta.url);
      for (const [path, name, type] of DASHBOARD_FILES) files.set(path, { body: readFileSync(new URL(name, dir)), type });
      break;
    } catch {
      files.clear();
    }
  }
  // Without the library the page still works, without its plots.
  const require = createRequire(import.meta.url);
  for (const [path, name, type] of VENDOR_FILES) {
    try {
      files.set(path, { body: readFileSync(require.resolve(name)), type });
    } catch {
      // not installed: 404
    }
  }
  return files;
}

/**
 * The dashboard's headers. Its scripts are /app.js and the inline scripts of index.html, each
 * allowed by its SHA-256 (the page's one inline script exchanges a ?login= code for the session).
 */
function staticHeaders(page: Buffer | undefined): Readonly<Record<string, string>> {
  const hashes = [...(page?.toString("utf8") ?? "").matchAll(/<script(?![^>]*\ssrc=)[^>]*>([\s\S]*?)<\/script>/g)]
    .map((match) => `'sha256-${createHash("sha256").update(match[1] ?? "", "utf8").digest("base64")}'`);
  return {
    "Content-Security-Policy": `default-src 'self'; script-src 'self'${hashes.map((hash) => ` ${hash}`).join("")}; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'`,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
  };
}

/** Headers on every answer: no content sniffing, and no other origin may embed any answer. */
const COMMON_HEADERS: Readonly<Record<string, string>> = {
  "X-Content-Type-Options": "nosniff",
  "Cross-Origin-Resource-Policy": "same-origin",
};

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/**
 * Secrets kept in memory by their SHA-256 (a session id, a login code), each with its expiry on
 * the monotonic clock, at most `max`: adding to a full set first drops the expired, then the
 * oldest. A secret is looked up by its digest, so the lookup's timing depends on the digest,
 * never on how much of the secret an attacker guessed right.
 */
class SecretSet {
  readonly #entries = new Map<string, number>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#entries.size;
  }

  add(secret: string, ttlMs: number): void {
    const now = performance.now();
    if (this.#entries.size >= this.#max) {
      for (const [key, expires] of this.#entries) if (expires <= now) this.#entries.delete(key);
    }
    while (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    this.#entries.set(digest(secret).toString("hex"), now + ttlMs);
  }

  /** Whether `secret` is held and unexpired; `consume` removes it either way (single use). */
  has(secret: string, consume = false): boolean {
    const key = digest(secret).toString("hex");
    const expires = this.#entries.get(key);
    if (expires === undefined) return false;
    const live = expires > performance.now();
    if (consume || !live) this.#entries.delete(key);
    return live;
  }

  delete(secret: string): void {
    this.#entries.delete(digest(secret).toString("hex"));
  }
}

/** The values of the `name` cookie in a Cookie header (several when it was sent more than once). */
function cookieValues(header: string | undefined, name: string): string[] {
  if (header === undefined) return [];
  const values: string[] = [];
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) values.push(part.slice(eq + 1).trim());
  }
  return values;
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
  if (typeof token !== "string" || token.trim() === "") {
    throw new Error(`refusing to serve the API on ${options.host} without a cluster token`);
  }
  // GET /v1/status and GET /metrics are open only to this machine (a loopback bind).
  const openOnLoopback = isLoopbackHost(options.host);
  const publicNames = options.publicNames ?? [];
  if (publicNames.length > LIMITS.api.publicNamesMax) throw new Error(`at most ${LIMITS.api.publicNamesMax} public names, got ${publicNames.length}`);
  for (const name of publicNames) {
    if (parseAuthority(name, 1) === undefined) {
      throw new Error(`public name must be HOST or HOST:PORT (a DNS name or an IP address, IPv6 in brackets), got ${JSON.stringify(name.slice(0, 80))}`);
    }
  }
  const tokenDigest = digest(token.trim());
  const dashboard = loadDashboard();
  const dashboardHeaders = staticHeaders(dashboard.get("/")?.body);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  node.metrics(registry);
  const refused = new Counter({
    name: "pk_http_refused_total",
    help: "HTTP API requests refused: a Host or Origin not of this API (403), no valid credential (401), a failed login",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  for (const reason of REFUSAL_REASONS) refused.inc({ reason }, 0);
  const streams = new Set<ServerResponse>();
  const sessions = new SecretSet(SESSIONS_MAX);
  const loginCodes = new SecretSet(LOGIN_CODES_MAX);
  let closing = false;
  // Filled once the port is known (listen below): "name:port" of every Host this API answers to.
  const allowedHosts = new Set<string>();
  let interfaces = { at: -Infinity, hosts: new Set<string>() };
  let apiPort = 0;

  function refuse(reason: RefusalReason, error: HttpError): HttpError {
    refused.inc({ reason });
    return error;
  }

  /** Whether "name:port" names this API: a fixed name, or on a wildcard bind one of this machine's addresses. */
  function isOurHost(authority: string): boolean {
    if (allowedHosts.has(authority)) return true;
    if (!isWildcard(options.host)) return false;
    const now = performance.now();
    if (now - interfaces.at > INTERFACES_TTL_MS) {
      const hosts = new Set<string>();
      for (const list of Object.values(networkInterfaces())) {
        for (const address of list ?? []) hosts.add(`${address.family === "IPv6" ? `[${address.address}]` : address.address}:${apiPort}`);
      }
      interfaces = { at: now, hosts };
    }
    return interfaces.hosts.has(authority);
  }

  /** Throws 403 unless Host names this API and a present Origin is http:// + such a name (DNS rebinding, cross-origin pages). */
  function checkHostAndOrigin(req: IncomingMessage): void {
    const host = req.headers.host;
    const authority = host === undefined ? undefined : parseAuthority(host, 80);
    if (authority === undefined || !isOurHost(authority)) {
      throw refuse("host", new HttpError(403, "forbidden-host", `Host ${JSON.stringify((host ?? "(none)").slice(0, 100))} is not a name of this API: use http://127.0.0.1:${apiPort}/ on this machine, or a name given to pk node --public-name`));
    }
    const origin = req.headers.origin;
    if (origin === undefined) return;
    const match = /^http:\/\/([^/?#@]+)$/i.exec(origin);
    const from = match?.[1] === undefined ? undefined : parseAuthority(match[1], 80);
    if (from === undefined || !isOurHost(from)) {
      throw refuse("origin", new HttpError(403, "forbidden-origin", `Origin ${JSON.stringify(origin.slice(0, 100))} is not this API: pages of other origins get nothing here`));
    }
  }

  function bearerOk(header: string): boolean {
    if (!header.startsWith("Bearer ")) return false;
    return timingSafeEqual(digest(header.slice(7).trim()), tokenDigest);
  }

  /** The request's credential: the bearer token, or a live session cookie; a wrong Authorization header is none. */
  function credentialOf(req: IncomingMessage): "bearer" | "session" | undefined {
    const header = req.headers.authorization;
    if (header !== undefined) return bearerOk(header) ? "bearer" : undefined;
    return cookieValues(req.headers.cookie, SESSION_COOKIE).some((id) => sessions.has(id)) ? "session" : undefined;
  }

  function unauthorized(message: string): HttpError {
    return refuse("credential", new HttpError(401, "UNAUTHORIZED", message, { "WWW-Authenticate": "Bearer realm=\"p-kernel\"" }));
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
    if ((body as { stream?: unknown }).stream !== true) {
      const result = await node.shell(line);
      return sendJson(res, 200, { output: result.output, ok: result.ok });
    }
    // Streamed: one JSON object per line, {"out": …} as the command says it, then {"ok", "output"}.
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    res.writeHead(200, { "Content-Type": "application/x-ndjson; charset=utf-8", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff" });
    const result = await node.shell(line, { out: (chunk) => void (res.writableEnded || res.write(`${toJson({ out: chunk })}\n`)), signal: abort.signal });
    if (!res.writableEnded) res.end(`${toJson({ ok: result.ok, output: result.output })}\n`);
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
    if (file === undefined) throw new HttpError(404, "NOT_FOUND", path.startsWith("/vendor/") ? "the dashboard's charting library (uplot) is not installed" : "the dashboard files (web/) are not installed");
    res.writeHead(200, { ...dashboardHeaders, "Content-Type": file.type, "Content-Length": file.body.length });
    res.end(req.method === "HEAD" ? undefined : file.body);
  }

  /** POST /v1/login, JSON {"code": one-time login code} or {"token": cluster token}: sets the session cookie. */
  async function handleLogin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    methods(req, ["POST"]);
    const body = await readJsonBody(req, res);
    const { code, token: given } = (typeof body === "object" && body !== null && !Array.isArray(body) ? body : {}) as { code?: unknown; token?: unknown };
    const secret = code ?? given;
    if ((code === undefined) === (given === undefined) || typeof secret !== "string" || secret.length > LIMITS.api.loginSecretCharsMax) {
      throw new HttpError(400, "BAD_REQUEST", `body must be a JSON object {"code": "..."} (a one-time login code) or {"token": "..."} (the cluster token), a string of at most ${LIMITS.api.loginSecretCharsMax} characters`);
    }
    const ok = code !== undefined ? loginCodes.has(secret, true) : timingSafeEqual(digest(secret.trim()), tokenDigest);
    if (!ok) {
      throw refuse("login", new HttpError(401, "BAD_LOGIN", code !== undefined ? "the login code is unknown, used or expired: ask for a new one (pk up prints one; POST /v1/login-code)" : "wrong token"));
    }
    const id = randomBytes(32).toString("base64url");
    sessions.add(id, SESSION_TTL_MS);
    const maxAge = Math.floor(SESSION_TTL_MS / 1000);
    sendJson(res, 200, { ok: true, expiresInS: maxAge }, { "Set-Cookie": `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAge}` });
  }

  /** POST /v1/login-code (bearer token only): a one-time login code and the dashboard URL that uses it. */
  function handleLoginCode(req: IncomingMessage, res: ServerResponse, credential: "bearer" | "session" | undefined): void {
    methods(req, ["POST"]);
    if (credential !== "bearer") throw unauthorized("a login code needs Authorization: Bearer <cluster token>");
    // A body, if any, is ignored (node:http drains it once the answer is sent).
    const code = randomBytes(24).toString("base64url");
    loginCodes.add(code, LOGIN_CODE_TTL_MS);
    sendJson(res, 200, { code, url: `http://${req.headers.host ?? `127.0.0.1:${apiPort}`}/?login=${code}`, expiresInS: LOGIN_CODE_TTL_MS / 1000 });
  }

  /** POST /v1/logout: ends the request's session, if any, and clears the cookie. */
  function handleLogout(req: IncomingMessage, res: ServerResponse): void {
    methods(req, ["POST"]);
    for (const id of cookieValues(req.headers.cookie, SESSION_COOKIE)) sessions.delete(id);
    sendJson(res, 200, { ok: true }, { "Set-Cookie": `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [name, value] of Object.entries(COMMON_HEADERS)) res.setHeader(name, value);
    checkHostAndOrigin(req);
    const url = req.url ?? "/";
    const path = url.split("?", 1)[0] ?? "/";
    if (STATIC_PATHS.has(path) || path === "/index.html") return handleStatic(req, res, path === "/index.html" ? "/" : path);
    if (path === "/v1/login") return handleLogin(req, res);
    const open = openOnLoopback && (path === "/v1/status" || path === "/metrics");
    const credential = credentialOf(req);
    if (!open && credential === undefined) {
      throw unauthorized("this API needs Authorization: Bearer <cluster token> or a dashboard session (open the URL pk up prints, or POST /v1/login)");
    }
    if (!open && credential === "session") {
      // A session cookie works only for this API's own pages: SameSite=Strict keeps it off
      // cross-site requests, and Fetch Metadata refuses the same-site ones (another port).
      const site = req.headers["sec-fetch-site"];
      if (site !== undefined && site !== "same-origin" && site !== "none") {
        throw refuse("origin", new HttpError(403, "forbidden-origin", `a ${JSON.stringify(site.slice(0, 20))} request cannot use the dashboard's session`));
      }
    }
    // Foreground work, which the DMN waits out (monitoring is not: an open dashboard's polling
    // must not keep the node from ever being idle).
    if (!MONITORING_PATHS.has(path)) node.onRequest?.();
    switch (path) {
      case "/v1/login-code":
        return handleLoginCode(req, res, credential);
      case "/v1/logout":
        return handleLogout(req, res);
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
  apiPort = port;
  for (const name of ["127.0.0.1", "localhost", "[::1]", ...(isWildcard(options.host) ? [] : [hostInUrl]), ...publicNames]) {
    const authority = parseAuthority(name, port);
    if (authority !== undefined) allowedHosts.add(authority);
  }

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

