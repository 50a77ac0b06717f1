// The Collective layer's HTTP routes: the consensus key-value store (/v1/kv/KEY) and topics
// (/v1/topics, /v1/topics/T, /v1/topics/T/events, /v1/topics/T/K).
import type { IncomingMessage, ServerResponse } from "node:http";
import { KV_LIMITS, checkKvWrite } from "../../core/collective/kv.ts";
import { LIMITS } from "../../core/util/limits.ts";
import { HttpError, SSE_BUFFER_BYTES_MAX, type ApiRoute, type ApiTools } from "../../adapters/http.ts";
import type { NodeView } from "../view.ts";
import type { KvOutcome } from "./consensus.ts";

export function kvRoutes(kernel: NodeView): ApiRoute[] {
  return [{ path: "/v1/kv/", handle: (req, res, http, url, path) => handleKv(kernel, req, res, http, url, path) }];
}

export function topicRoutes(kernel: NodeView): ApiRoute[] {
  return [
    {
      path: "/v1/topics",
      handle(req, res, http) {
        http.methods(req, ["GET"]);
        http.sendJson(res, 200, {
          topics: [
            ...kernel.gossip.topics().map((t) => ({ name: t.topic, class: "gossip", keys: t.keys })),
            ...kernel.consensus.kv.keys("", 10_000).map(([name, record]) => ({ name, class: "consensus", revision: record.revision, bytes: record.value.length })),
          ],
        });
      },
    },
    { path: "/v1/topics/", handle: (req, res, http, _url, path) => handleTopic(kernel, req, res, http, path) },
  ];
}

/** GET, PUT (optionally ?cas=EXPECTED) and DELETE of one key of the consensus KV (DESIGN.md §9). */
async function handleKv(kernel: NodeView, req: IncomingMessage, res: ServerResponse, http: ApiTools, url: string, path: string): Promise<void> {
  http.methods(req, ["GET", "PUT", "DELETE"]);
  let key: string;
  try {
    key = decodeURIComponent(path.slice("/v1/kv/".length));
  } catch {
    throw new HttpError(400, "BAD_KEY", "the key is not valid percent-encoding");
  }
  const problem = checkKvWrite(key, undefined);
  if (problem !== undefined) throw new HttpError(400, "BAD_KEY", problem);
  const query = new URLSearchParams(url.includes("?") ? url.slice(url.indexOf("?") + 1) : "");
  const value = req.method === "PUT" ? await http.readRawBody(req, res, KV_LIMITS.valueBytesMax) : undefined;
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
      return http.sendJson(res, 200, { key, revision: outcome.revision ?? 0 }, leader);
    case "not-found":
      throw new HttpError(404, "NOT_FOUND", `no key ${JSON.stringify(key.slice(0, 200))}`, leader);
    case "conflict":
      throw new HttpError(409, "CAS_FAILED", outcome.value === undefined ? "the key is absent" : `the key holds ${JSON.stringify(new TextDecoder().decode(outcome.value).slice(0, 200))}`, leader);
    case "full":
      throw new HttpError(507, "KV_FULL", `the key-value store is full (${KV_LIMITS.keysMax} keys or ${KV_LIMITS.totalBytesMax} bytes)`, leader);
    case "invalid":
      throw new HttpError(400, "BAD_REQUEST", outcome.detail ?? "invalid request", leader);
    case "forbidden":
      throw new HttpError(403, "FORBIDDEN", outcome.detail ?? "not granted", leader);
    case "no-leader":
    case "busy":
      throw new HttpError(503, outcome.code === "no-leader" ? "NO_LEADER" : "BUSY", outcome.detail ?? "try again", { ...leader, "Retry-After": "1" });
    case "leader-changed":
    case "timeout":
      // The write may or may not have happened: the client must not assume either.
      throw new HttpError(outcome.code === "timeout" ? 504 : 503, outcome.code === "timeout" ? "TIMEOUT" : "LEADER_CHANGED", outcome.detail ?? "outcome unknown", { ...leader, "Retry-After": "1" });
  }
}


/**
 * Gossip topics over HTTP: GET /v1/topics/T (its rows), GET /v1/topics/T/events (server-sent
 * events: every change this node sees, from a bounded queue), PUT /v1/topics/T/K (raw body) and
 * DELETE /v1/topics/T/K. A value is shown as text when it is UTF-8, else base64.
 */
async function handleTopic(kernel: NodeView, req: IncomingMessage, res: ServerResponse, http: ApiTools, path: string): Promise<void> {
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
    http.methods(req, ["GET"]);
    return http.sendJson(res, 200, { topic, rows: gossip.entries(topic).slice(0, TOPIC_ROWS_MAX).map((r) => ({ key: r.key, ...showBytes(r.value), origin: r.origin, version: r.version })) });
  }
  if (rest.length === 1 && rest[0] === "events") return topicEvents(kernel, req, res, http, topic);
  if (rest.length !== 1) throw new HttpError(404, "NOT_FOUND", "expected /v1/topics/TOPIC, /v1/topics/TOPIC/events or /v1/topics/TOPIC/KEY");
  http.methods(req, ["PUT", "DELETE"]);
  const key = rest[0]!;
  const value = req.method === "PUT" ? await http.readRawBody(req, res, kernel.config.gossip.valueBytesMax) : undefined;
  // One turn of the kernel: the row and the node's version are in its durable batch, written with
  // Store.write({ durable: true }) (fsynced) before topicPublish returns. Only then the answer.
  const error = kernel.topicPublish(topic, key, value);
  if (error !== undefined) throw new HttpError(400, "BAD_REQUEST", error);
  http.sendJson(res, 200, { topic, key, version: kernel.gossip.selfVersion, deleted: value === undefined });
}

function topicEvents(kernel: NodeView, req: IncomingMessage, res: ServerResponse, http: ApiTools, topic: string): void {
  http.methods(req, ["GET"]);
  const subscription = kernel.gossip.subscribe(topic);
  if (subscription === undefined) throw new HttpError(503, "TOO_MANY_SUBSCRIPTIONS", "this node has no subscription left", { "Retry-After": "5" });
  try {
    http.openStream(res);
  } catch (error) {
    subscription.close();
    throw error;
  }
  res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store", "Connection": "keep-alive", "X-Accel-Buffering": "no" });
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
  };
  res.write("retry: 2000\n\n");
  res.on("close", finish);
  res.on("error", finish);
}

/** Rows GET /v1/topics/T lists at most; change polling period of a topic's event stream. */
const TOPIC_ROWS_MAX = LIMITS.api.topicRowsMax;
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

