// The node's HTTP API (DESIGN.md §9) on node:http: status, shell, Prometheus metrics, the live
// event stream, the static dashboard, and the consensus endpoints' placeholders until Raft lands.
//
// Every request is hostile until checked (DESIGN.md §2 rule 6): bodies are bounded
// (LIMITS.httpBodyBytesMax), the server has header and request timeouts and a connection bound,
// event streams are bounded in number and in buffered bytes, and every error — ours or the
// client's — is a JSON `{ "error": { "code", "message" } }` with a fitting status. Off loopback the
// API needs `Authorization: Bearer <cluster token>`; the dashboard's two static files do not (they
// hold nothing secret, and the page asks for the token).
import type { InferOutcome } from "../node/brain/service.ts";
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { AssertionFailure } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import type { HostStats, NodeContext } from "../node/commands.ts";
import type { KernelEvent } from "../node/events.ts";
import { DROP_REASONS, type Kernel, type MemberState } from "../node/kernel.ts";
import type { VitalSigns } from "../core/body/vital.ts";
import type { Shell } from "../node/shell.ts";
import { KV_LIMITS, checkKvWrite } from "../core/collective/kv.ts";
import type { KvOutcome } from "../node/collective/consensus.ts";

/** Event streams open at once. */
export const SSE_CLIENTS_MAX = 64;
/** Bytes an event stream may have buffered (a stalled reader) before it is cut. */
export const SSE_BUFFER_BYTES_MAX = 1024 * 1024;
/** Interval of the `: keepalive` comment on event streams. */
export const SSE_KEEPALIVE_MS = 15_000;
/** Concurrent TCP connections the API accepts. */
export const API_CONNECTIONS_MAX = 256;
/** Milliseconds close() waits for requests in flight before cutting connections. */
const CLOSE_GRACE_MS = 2_000;

export interface ApiOptions {
  readonly kernel: Kernel;
  readonly shell: Shell<NodeContext>;
  /** Interface to bind, e.g. "127.0.0.1". */
  readonly host: string;
  /** 0 asks the OS for a free port. */
  readonly port: number;
  /** The cluster token: required as a bearer token on non-loopback binds. */
  readonly token: string | undefined;
  readonly hostStats?: () => HostStats | undefined;
}

export interface Api {
  /** Base URL, e.g. "http://127.0.0.1:7501". */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface StatusMember {
  readonly id: string;
  readonly addr: string;
  readonly state: MemberState;
  readonly incarnation: number;
  readonly name: string;
  readonly role: string;
  /** Milliseconds since the member was last heard from; 0 for this node, null if never. */
  readonly lastHeardMs: number | null;
  /** The member's latest vital signs as heard here, and their age; null before the first. */
  readonly vital: (VitalSigns & { readonly ageMs: number }) | null;
}

export interface NodeStatusBody {
  readonly id: string;
  readonly name: string;
  readonly role: string;
  readonly mode: "FULL" | "REDUCED" | "SOLO";
  readonly uptimeMs: number;
  readonly raft: {
    readonly state: "leader" | "follower" | "candidate" | "learner";
    readonly term: number;
    readonly leader: string | null;
    readonly commitIndex: number;
    readonly appliedIndex: number;
    readonly voters: string[];
    readonly learners: string[];
    /** Regenerations so far raise the configuration epoch (ADR 008). */
    readonly confEpoch: number;
  };
  readonly members: StatusMember[];
  /** Guarded tasks (heal): owner, adoption epoch, and whether this node runs each. */
  readonly guarded: Array<{ readonly name: string; readonly owner: string; readonly epoch: number; readonly runningHere: boolean }>;
}

/** The body of GET /v1/status. */
export function statusOf(kernel: Kernel): NodeStatusBody {
  const self = kernel.self;
  const tickMs = kernel.config.tickMs;
  const vitals = kernel.vitalTable();
  const vitalOf = (row: (typeof vitals)[number] | undefined): StatusMember["vital"] =>
    row?.signs === undefined || row.ageTicks === undefined ? null : { ...row.signs, ageMs: row.ageTicks * tickMs };
  return {
    id: kernel.id,
    name: self.name,
    role: self.role,
    mode: kernel.mode,
    uptimeMs: Math.max(0, Math.round(kernel.uptimeMs)),
    raft: raftStatusOf(kernel),
    members: kernel.memberStatuses().map((member, i) => ({
      id: member.id,
      addr: member.addr,
      state: member.state,
      incarnation: member.incarnation,
      name: member.name,
      role: member.role,
      lastHeardMs: member.lastHeardTicks === undefined ? null : member.lastHeardTicks * tickMs,
      vital: vitalOf(vitals[i]),
    })),
    guarded: kernel.guardStatuses().filter(({ task }) => !task.removed).map(({ task, running }) => ({
      name: task.name, owner: task.owner, epoch: task.epoch, runningHere: running !== undefined,
    })),
  };
}

function raftStatusOf(kernel: Kernel): NodeStatusBody["raft"] {
  const consensus = kernel.consensus;
  const status = consensus.status();
  const conf = status.conf;
  const voters = [...new Set([...conf.voters, ...conf.votersOutgoing])].sort();
  const learners = [...new Set([...conf.learners, ...conf.learnersNext])].sort();
  const state = status.role === "leader" ? "leader"
    : status.role === "candidate" || status.role === "pre-candidate" ? "candidate"
    : voters.includes(kernel.id) ? "follower" : "learner";
  return {
    state, term: status.term, leader: status.lead === "" ? null : status.lead, commitIndex: status.commit, appliedIndex: status.applied,
    voters, learners, confEpoch: consensus.confEpoch,
  };
}

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (h === "localhost" || h === "::1") return true;
  const v4 = h.startsWith("::ffff:") ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

class HttpError extends Error {
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

function buildRegistry(kernel: Kernel, hostStats: () => HostStats | undefined): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  new Counter({
    name: "pk_packets_dropped_total",
    help: "Inbound packets dropped before any core saw them, by reason",
    labelNames: ["reason"] as const,
    registers,
    collect() {
      this.reset();
      for (const reason of DROP_REASONS) this.inc({ reason }, kernel.stats.dropped[reason]);
    },
  });
  new Counter({
    name: "pk_packets_total",
    help: "Authenticated packets received and packets sent, by channel and direction",
    labelNames: ["channel", "direction"] as const,
    registers,
    collect() {
      this.reset();
      for (const channel of ["datagram", "stream"] as const) {
        this.inc({ channel, direction: "in" }, kernel.stats[channel].packetsIn);
        this.inc({ channel, direction: "out" }, kernel.stats[channel].packetsOut);
      }
    },
  });
  new Counter({
    name: "pk_bytes_total",
    help: "Bytes of authenticated packets received and of packets sent, by channel and direction",
    labelNames: ["channel", "direction"] as const,
    registers,
    collect() {
      this.reset();
      for (const channel of ["datagram", "stream"] as const) {
        this.inc({ channel, direction: "in" }, kernel.stats[channel].bytesIn);
        this.inc({ channel, direction: "out" }, kernel.stats[channel].bytesOut);
      }
    },
  });
  new Counter({
    name: "pk_send_failures_total",
    help: "Outbound messages not sent: unknown address or over the channel's size bound",
    registers,
    collect() {
      this.reset();
      this.inc(kernel.stats.sendFailures);
    },
  });
  new Gauge({
    name: "pk_members",
    help: "Members of the cluster as this node sees them (itself included), by state",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const counts: Record<MemberState, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
      for (const member of kernel.memberStatuses()) counts[member.state]++;
      for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
    },
  });
  new Counter({
    name: "pk_ticks_total",
    help: "Kernel ticks run since boot",
    registers,
    collect() {
      this.reset();
      this.inc(kernel.tickCount);
    },
  });
  new Counter({
    name: "pk_brain_inferences_total",
    help: "Brain inferences coordinated by this node, by mode (local, pipeline, tensor, dkva, remote, moe)",
    labelNames: ["mode"] as const,
    registers,
    collect() {
      this.reset();
      for (const [mode, count] of Object.entries(kernel.brain.counters.inferences)) this.inc({ mode }, count);
    },
  });
  new Counter({
    name: "pk_brain_fallbacks_total",
    help: "Distributed inferences that dropped a peer and computed its share here, by result (REDUCED, SOLO)",
    labelNames: ["state"] as const,
    registers,
    collect() {
      this.reset();
      this.inc({ state: "REDUCED" }, kernel.brain.counters.reduced);
      this.inc({ state: "SOLO" }, kernel.brain.counters.solo);
    },
  });
  new Counter({
    name: "pk_brain_calls_total",
    help: "Brain calls to peers by outcome (sent, timed out, failed) and requests served for peers",
    labelNames: ["outcome"] as const,
    registers,
    collect() {
      this.reset();
      const c = kernel.brain.counters;
      this.inc({ outcome: "sent" }, c.callsSent);
      this.inc({ outcome: "timeout" }, c.callsTimedOut);
      this.inc({ outcome: "failed" }, c.callsFailed);
      this.inc({ outcome: "served" }, c.requestsServed);
      this.inc({ outcome: "bad" }, c.badMessages);
    },
  });
  new Gauge({
    name: "pk_mesh_routes",
    help: "Destinations this node has a finite mesh route to (0 while the mesh is off)",
    registers,
    collect() {
      this.set(kernel.mesh.active ? kernel.mesh.routes().filter((r) => r.nextHop !== undefined && r.metric < 0xffff).length : 0);
    },
  });
  new Counter({
    name: "pk_ticks_skipped_total",
    help: "Ticks skipped because the event loop was late beyond the catch-up bound",
    registers,
    collect() {
      this.reset();
      this.inc(hostStats()?.ticksSkipped ?? 0);
    },
  });
  return registry;
}

export async function startApi(options: ApiOptions): Promise<Api> {
  const { kernel, shell, token } = options;
  const hostStats = options.hostStats ?? (() => undefined);
  const needsAuth = !isLoopbackHost(options.host);
  if (needsAuth && (token === undefined || token === "")) {
    throw new Error(`refusing to serve the API on non-loopback address ${options.host} without a cluster token`);
  }
  const tokenDigest = token === undefined ? undefined : digest(token);
  const dashboard = loadDashboard();
  const registry = buildRegistry(kernel, hostStats);
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
    const result = await shell.executeAsync(line);
    sendJson(res, 200, { output: result.output, ok: result.ok });
  }

  /**
   * POST /v1/infer: { mode?: "local"|"pipeline"|"tensor"|"dkva"|"moe", values: number[], ids?: number[],
   * session?: string, end?: true } → the class, probabilities and logits, FULL/REDUCED/SOLO, the
   * peers and the peers dropped. Without ids, four values are the seed model's sensor readings.
   */
  async function handleInfer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    methods(req, ["POST"]);
    const body = await readJsonBody(req, res);
    const parsed = parseInferBody(body);
    if (typeof parsed === "string") throw new HttpError(400, "BAD_REQUEST", parsed);
    const brain = kernel.brain;
    if (parsed.end) {
      await brain.endSession(parsed.session ?? "");
      return sendJson(res, 200, { ended: parsed.session });
    }
    try {
      const o: InferOutcome & { expert?: string; gateClass?: number } = parsed.mode === "moe"
        ? await brain.moeInfer(parsed.ids, parsed.values)
        : await brain.infer(parsed.mode, parsed.ids, parsed.values, parsed.session === undefined ? {} : { session: parsed.session });
      sendJson(res, 200, {
        class: o.class, label: o.label, probs: o.probs, logits: [...o.logits], mode: o.state, peers: o.peers, dropped: o.dropped,
        modelVersion: o.modelVersion, tag: brain.model.tag, ms: o.ms, roundTrips: o.roundTrips,
        ...(o.expert === undefined ? {} : { expert: o.expert, gateClass: o.gateClass }),
      });
    } catch (error) {
      if (error instanceof RangeError) throw new HttpError(400, "BAD_REQUEST", error.message);
      throw error;
    }
  }

  /**
   * Gossip topics over HTTP: GET /v1/topics/T (its rows), GET /v1/topics/T/events (server-sent
   * events: every change this node sees, from a bounded queue), PUT /v1/topics/T/K (raw body) and
   * DELETE /v1/topics/T/K. A value is shown as text when it is UTF-8, else base64.
   */
  async function handleTopic(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const parts = path.slice("/v1/topics/".length).split("/");
    let topic: string;
    let rest: string[];
    try {
      [topic, ...rest] = parts.map((p) => decodeURIComponent(p)) as [string, ...string[]];
    } catch {
      throw new HttpError(400, "BAD_TOPIC", "the path is not valid percent-encoding");
    }
    const gossip = kernel.gossip;
    if (rest.length === 0) {
      methods(req, ["GET"]);
      return sendJson(res, 200, { topic, rows: gossip.entries(topic).slice(0, TOPIC_ROWS_MAX).map((r) => ({ key: r.key, ...showBytes(r.value), origin: r.origin, version: r.version })) });
    }
    if (rest.length === 1 && rest[0] === "events") return topicEvents(req, res, topic);
    if (rest.length !== 1) throw new HttpError(404, "NOT_FOUND", "expected /v1/topics/TOPIC, /v1/topics/TOPIC/events or /v1/topics/TOPIC/KEY");
    methods(req, ["PUT", "DELETE"]);
    const key = rest[0]!;
    const value = req.method === "PUT" ? await readRawBody(req, res, kernel.config.gossip.valueBytesMax) : undefined;
    const error = kernel.topicPublish(topic, key, value);
    if (error !== undefined) throw new HttpError(400, "BAD_REQUEST", error);
    sendJson(res, 200, { topic, key, version: kernel.gossip.selfVersion, deleted: value === undefined });
  }

  function topicEvents(req: IncomingMessage, res: ServerResponse, topic: string): void {
    methods(req, ["GET"]);
    if (streams.size >= SSE_CLIENTS_MAX) throw new HttpError(503, "TOO_MANY_STREAMS", `at most ${SSE_CLIENTS_MAX} event streams at once`, { "Retry-After": "5" });
    const subscription = kernel.gossip.subscribe(topic);
    if (subscription === undefined) throw new HttpError(503, "TOO_MANY_SUBSCRIPTIONS", "this node has no subscription left", { "Retry-After": "5" });
    res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store", "Connection": "keep-alive", "X-Accel-Buffering": "no" });
    streams.add(res);
    let reported = 0;
    const timer = setInterval(() => {
      if (res.writableEnded || res.destroyed) return finish();
      if (res.writableLength > SSE_BUFFER_BYTES_MAX) {
        finish();
        res.destroy();
        return;
      }
      for (const change of subscription.take(256)) {
        res.write(`data: ${JSON.stringify({ topic, key: change.key, ...showBytes(change.value), deleted: change.value === undefined, origin: change.origin, version: change.version })}\n\n`);
      }
      if (subscription.dropped > reported) {
        // The queue is bounded: tell the reader it missed changes (it may re-read the topic).
        res.write(`event: dropped\ndata: ${subscription.dropped - reported}\n\n`);
        reported = subscription.dropped;
      }
    }, TOPIC_POLL_MS);
    const finish = (): void => {
      clearInterval(timer);
      subscription.close();
      streams.delete(res);
    };
    res.write("retry: 2000\n\n");
    res.on("close", finish);
    res.on("error", finish);
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

  /** GET, PUT (optionally ?cas=EXPECTED) and DELETE of one key of the consensus KV (DESIGN.md §9). */
  async function handleKv(req: IncomingMessage, res: ServerResponse, url: string, path: string): Promise<void> {
    methods(req, ["GET", "PUT", "DELETE"]);
    let key: string;
    try {
      key = decodeURIComponent(path.slice("/v1/kv/".length));
    } catch {
      throw new HttpError(400, "BAD_KEY", "the key is not valid percent-encoding");
    }
    const problem = checkKvWrite(key, undefined);
    if (problem !== undefined) throw new HttpError(400, "BAD_KEY", problem);
    const query = new URLSearchParams(url.includes("?") ? url.slice(url.indexOf("?") + 1) : "");
    const value = req.method === "PUT" ? await readRawBody(req, res, KV_LIMITS.valueBytesMax) : undefined;
    const outcome = await new Promise<KvOutcome>((resolve) => {
      if (value === undefined) return req.method === "DELETE" ? kernel.kvDelete(key, resolve) : kernel.kvGet(key, resolve);
      const cas = query.get("cas");
      if (cas === null) kernel.kvPut(key, value, resolve);
      else kernel.kvCas(key, new TextEncoder().encode(cas), value, resolve);
    });
    const leader = outcome.leader === "" ? {} : { "X-Raft-Leader": outcome.leader };
    switch (outcome.code) {
      case "ok":
        if (req.method === "GET" || req.method === "HEAD") {
          const value = outcome.value ?? new Uint8Array(0);
          res.writeHead(200, { ...leader, "Content-Type": "application/octet-stream", "Content-Length": value.length, "X-Revision": String(outcome.revision ?? 0), "Cache-Control": "no-store" });
          res.end(req.method === "HEAD" ? undefined : value);
          return;
        }
        return sendJson(res, 200, { key, revision: outcome.revision ?? 0 }, leader);
      case "not-found":
        throw new HttpError(404, "NOT_FOUND", `no key ${JSON.stringify(key.slice(0, 200))}`, leader);
      case "conflict":
        throw new HttpError(409, "CAS_FAILED", outcome.value === undefined ? "the key is absent" : `the key holds ${JSON.stringify(new TextDecoder().decode(outcome.value).slice(0, 200))}`, leader);
      case "full":
        throw new HttpError(507, "KV_FULL", `the key-value store is full (${KV_LIMITS.keysMax} keys or ${KV_LIMITS.totalBytesMax} bytes)`, leader);
      case "invalid":
        throw new HttpError(400, "BAD_REQUEST", outcome.detail ?? "invalid request", leader);
      case "no-leader":
      case "busy":
        throw new HttpError(503, outcome.code === "no-leader" ? "NO_LEADER" : "BUSY", outcome.detail ?? "try again", { ...leader, "Retry-After": "1" });
      case "leader-changed":
      case "timeout":
        // The write may or may not have happened: the client must not assume either.
        throw new HttpError(outcome.code === "timeout" ? 504 : 503, outcome.code === "timeout" ? "TIMEOUT" : "LEADER_CHANGED", outcome.detail ?? "outcome unknown", { ...leader, "Retry-After": "1" });
    }
  }

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
    const write = (event: KernelEvent): void => {
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
    for (const event of kernel.events.since(Number.isSafeInteger(lastId) && lastId > 0 ? lastId : 0)) write(event);
    unsubscribe = kernel.events.subscribe(write);
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
        return sendJson(res, 200, statusOf(kernel));
      case "/v1/shell":
        return handleShell(req, res);
      case "/v1/infer":
        return handleInfer(req, res);
      case "/metrics":
        return handleMetrics(req, res);
      case "/v1/events":
        return handleEvents(req, res);
      case "/v1/topics":
        methods(req, ["GET"]);
        return sendJson(res, 200, {
          topics: [
            ...kernel.gossip.topics().map((t) => ({ name: t.topic, class: "gossip", keys: t.keys })),
            ...kernel.consensus.kv.keys("", 10_000).map(([name, record]) => ({ name, class: "consensus", revision: record.revision, bytes: record.value.length })),
          ],
        });
    }
    if (path.startsWith("/v1/kv/")) return handleKv(req, res, url, path);
    if (path.startsWith("/v1/topics/")) return handleTopic(req, res, path);
    throw new HttpError(404, "NOT_FOUND", `no such path: ${path.slice(0, 200)}`);
  }

  const server: Server = createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
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
  server.maxHeadersCount = 64;
  server.maxRequestsPerSocket = 1_000;
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

/** Rows GET /v1/topics/T lists at most; change polling period of a topic's event stream. */
const TOPIC_ROWS_MAX = 10_000;
const TOPIC_POLL_MS = 50;

/** A value as JSON: text when it is valid UTF-8, else base64. */
function showBytes(value: Uint8Array | undefined): { value: string | null; encoding?: "base64" } {
  if (value === undefined) return { value: null };
  try {
    return { value: new TextDecoder("utf-8", { fatal: true }).decode(value) };
  } catch {
    return { value: Buffer.from(value).toString("base64"), encoding: "base64" };
  }
}

const INFER_MODES = ["local", "pipeline", "tensor", "dkva", "moe"] as const;
type InferBodyMode = (typeof INFER_MODES)[number];
/** Tokens one /v1/infer request may carry. */
const INFER_TOKENS_MAX = 4096;

/** Checks a /v1/infer body; a message for the client when it is wrong. */
export function parseInferBody(body: unknown): { mode: InferBodyMode; ids: Int32Array; values: Float32Array; session?: string; end: boolean } | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "body must be a JSON object { \"values\": [...] }";
  const b = body as Record<string, unknown>;
  const mode = b.mode ?? "local";
  if (typeof mode !== "string" || !(INFER_MODES as readonly string[]).includes(mode)) return `mode must be one of ${INFER_MODES.join(", ")}`;
  const session = b.session;
  if (session !== undefined && (typeof session !== "string" || !/^[0-9A-Za-z._-]{1,32}$/.test(session))) return "session must be 1..32 characters of [0-9A-Za-z._-]";
  if (b.end === true) return session === undefined ? "end needs a session" : { mode: mode as InferBodyMode, ids: new Int32Array(0), values: new Float32Array(0), session, end: true };
  const values = b.values;
  // Finite as float32 too: 1e300 is a finite double but Infinity once stored for the model.
  if (!Array.isArray(values) || values.length === 0 || values.length > INFER_TOKENS_MAX || !values.every((v) => typeof v === "number" && Number.isFinite(Math.fround(v)))) {
    return `values must be 1..${INFER_TOKENS_MAX} finite numbers within float32 range`;
  }
  let ids: Int32Array;
  if (b.ids === undefined) {
    if (values.length !== 4) return "without ids, values are the four sensor readings t h p l";
    ids = Int32Array.from([0, 1, 2, 3]);
  } else {
    if (!Array.isArray(b.ids) || b.ids.length !== values.length || !b.ids.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 31)) return "ids must be non-negative integers, one per value";
    ids = Int32Array.from(b.ids as number[]);
  }
  if (mode === "moe" && session !== undefined) return "moe takes no session";
  return { mode: mode as InferBodyMode, ids, values: Float32Array.from(values as number[]), ...(session === undefined ? {} : { session }), end: false };
}
