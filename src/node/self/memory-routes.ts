// The memory's HTTP routes (docs/protocols/http.md): GET /v1/memory (list, or search with ?q=),
// POST /v1/memory (remember: answered once durable here), GET and DELETE /v1/memory/ID (show,
// redact).
import { LIMITS } from "../../core/util/limits.ts";
import { HttpError, type ApiRoute } from "../../adapters/http.ts";
import type { NodeView } from "../view.ts";
import type { Memory } from "./memory.ts";


function view(memory: Memory): Record<string, unknown> {
  return {
    id: memory.id, origin: memory.origin, atMs: memory.atMs, speaker: memory.speaker, kind: memory.kind, conv: memory.conv ?? null,
    by: memory.by ?? null, supersedes: memory.supersedes, supersededBy: memory.supersededBy, text: memory.text,
  };
}

function count(value: string | null, fallback: number, max: number, name: string): number {
  if (value === null) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new HttpError(400, "BAD_REQUEST", `${name} must be a whole number from 1 to ${max}`);
  return n;
}

export function memoryRoutes(kernel: NodeView): ApiRoute[] {
  return [
    {
      path: "/v1/memory",
      async handle(req, res, http, url) {
        http.methods(req, ["GET", "POST"]);
        const part = kernel.memory;
        if (req.method === "POST") {
          const body = await http.readJsonBody(req, res);
          if (typeof body !== "object" || body === null || Array.isArray(body)) throw new HttpError(400, "BAD_REQUEST", "the body must be a JSON object {text, speaker?}");
          const { text, speaker } = body as Record<string, unknown>;
          if (typeof text !== "string") throw new HttpError(400, "BAD_REQUEST", "text must be a string");
          if (speaker !== undefined && typeof speaker !== "string") throw new HttpError(400, "BAD_REQUEST", "speaker must be a string");
          const result = kernel.remember({ text, speaker: speaker ?? "user", kind: "note" });
          if ("error" in result) throw new HttpError(400, "BAD_REQUEST", result.error);
          return http.sendJson(res, 201, view(part.get(result.id)!));
        }
        const query = new URLSearchParams(url.includes("?") ? url.slice(url.indexOf("?") + 1) : "");
        const speaker = query.get("speaker") ?? undefined;
        const q = query.get("q");
        if (q === null) {
          const limit = count(query.get("limit"), 20, LIMITS.self.memory.listMax, "limit");
          return http.sendJson(res, 200, { memories: part.list({ limit, speaker, all: query.get("all") === "1" }).map(view) });
        }
        const mode = query.get("mode") ?? "hybrid";
        if (mode !== "hybrid" && mode !== "bm25" && mode !== "vector") throw new HttpError(400, "BAD_REQUEST", "mode is hybrid, bm25 or vector");
        const k = count(query.get("k"), 5, LIMITS.self.memory.searchKMax, "k");
        const hits = part.search(q, k, { speaker, mode });
        return http.sendJson(res, 200, { hits: hits.map((h) => ({ score: h.score, bm25: h.bm25 ?? null, vector: h.vector ?? null, memory: view(h.memory) })) });
      },
    },
    {
      path: "/v1/memory/",
      handle(req, res, http, _url, path) {
        http.methods(req, ["GET", "DELETE"]);
        let id: string;
        try {
          id = decodeURIComponent(path.slice("/v1/memory/".length));
        } catch {
          throw new HttpError(400, "BAD_REQUEST", "the id is not valid percent-encoding");
        }
        const found = kernel.memory.resolve(id);
        if (typeof found === "string") throw new HttpError(404, "NOT_FOUND", found);
        if (req.method === "DELETE") {
          const error = kernel.redactMemory(found.id);
          if (error !== undefined) throw new HttpError(409, "CONFLICT", error);
          return http.sendJson(res, 200, view(kernel.memory.get(found.id)!));
        }
        return http.sendJson(res, 200, view(found));
      },
    },
  ];
}
