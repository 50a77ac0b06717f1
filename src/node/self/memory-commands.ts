// The memory's shell commands: `remember TEXT` and `memory list|show|search|stat|redact`.
import { LIMITS } from "../../core/util/limits.ts";
import type { NodeContext } from "../context.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";
import type { Memory } from "./memory.ts";

const LIST_DEFAULT = 20;
const PREVIEW_CHARS = 72;

/** Splits `--flag VALUE` options (each at most once) from the words. */
export function options(args: readonly string[], flags: readonly string[], switches: readonly string[] = []): { words: string[]; values: Map<string, string>; on: Set<string> } {
  const words: string[] = [];
  const values = new Map<string, string>();
  const on = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (switches.includes(arg)) {
      on.add(arg);
      continue;
    }
    if (flags.includes(arg)) {
      const value = args[++i];
      if (value === undefined) throw new UsageError(`${arg} needs a value`);
      if (values.has(arg)) throw new UsageError(`${arg} given twice`);
      values.set(arg, value);
      continue;
    }
    if (arg.startsWith("--") && words.length === 0) throw new UsageError(`unknown option ${JSON.stringify(arg.slice(0, 40))}`);
    words.push(arg);
  }
  return { words, values, on };
}

/** A count option in [1, max]. */
export function countOption(value: string | undefined, fallback: number, max: number, what: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`${what} must be a whole number from 1 to ${max}`);
  return n;
}

export function preview(text: string, chars = PREVIEW_CHARS): string {
  const line = text.replace(/\s+/g, " ");
  return line.length > chars ? `${line.slice(0, chars - 1)}…` : line;
}

function when(atMs: number): string {
  return new Date(atMs).toISOString().replace("T", " ").slice(0, 19);
}

function shortId(memory: Memory): string {
  return `${memory.origin.slice(0, 6)}/${memory.id.slice(17)}`;
}

function state(memory: Memory): string {
  if (memory.kind === "redacted") return "redacted";
  return memory.supersededBy.length > 0 ? "superseded" : memory.kind;
}

export const remember: Command<NodeContext> = {
  name: "remember",
  summary: "remember: store a note in the cluster's memory (replicated to every node, durable before it answers)",
  usage: "remember [--as SPEAKER] TEXT",
  run(args, { kernel }) {
    const { words, values } = options(args, ["--as"]);
    if (words.length === 0) throw new UsageError("needs the text to remember");
    const result = kernel.remember({ text: words.join(" "), speaker: values.get("--as") ?? "user", kind: "note" });
    if ("error" in result) throw new UsageError(result.error);
    const peers = kernel.membership.swim.size - 1;
    return `remembered ${result.id} (durable on this node; ${peers === 0 ? "no peer to replicate to yet" : `replicating to ${peers} ${peers === 1 ? "node" : "nodes"}`})`;
  },
};

export const memory: Command<NodeContext> = {
  name: "memory",
  summary: "memory: the cluster's memories (chat turns and notes): list, show, search, stat, redact",
  usage: "memory list [N] [--speaker S] [--all] | memory show ID | memory search QUERY [--k N] [--speaker S] [--mode hybrid|bm25|vector] | memory stat | memory redact ID",
  run(args, { kernel }) {
    const [sub, ...rest] = args;
    const part = kernel.memory;
    switch (sub) {
      case "list": {
        const { words, values, on } = options(rest, ["--speaker"], ["--all"]);
        if (words.length > 1) throw new UsageError("list takes [N] [--speaker S] [--all]");
        const limit = countOption(words[0], LIST_DEFAULT, LIMITS.self.memory.listMax, "N");
        const picked = part.list({ limit, speaker: values.get("--speaker"), all: on.has("--all") });
        if (picked.length === 0) return part.size === 0 ? "no memories yet" : "no memories match";
        return formatTable(["ID", "WHEN", "SPEAKER", "KIND", "TEXT"], picked.map((m) => [shortId(m), when(m.atMs), m.speaker, state(m), preview(m.text)]));
      }
      case "show": {
        if (rest.length !== 1) throw new UsageError("show takes ID");
        const found = part.resolve(rest[0]!);
        if (typeof found === "string") throw new UsageError(found);
        return formatFields([
          ["id", found.id], ["origin", found.origin], ["when", when(found.atMs)], ["speaker", found.speaker], ["kind", found.kind],
          ["conversation", found.conv ?? "-"], ["by", found.by ?? "-"],
          ["supersedes", found.supersedes.join(", ") || "-"], ["superseded by", found.supersededBy.join(", ") || "-"],
          ["text", found.kind === "redacted" ? "(redacted)" : found.text],
        ]);
      }
      case "search": {
        const { words, values } = options(rest, ["--k", "--speaker", "--mode"]);
        if (words.length === 0) throw new UsageError("search takes QUERY");
        const k = countOption(values.get("--k"), 5, LIMITS.self.memory.searchKMax, "--k");
        const mode = values.get("--mode") ?? "hybrid";
        if (mode !== "hybrid" && mode !== "bm25" && mode !== "vector") throw new UsageError("--mode is hybrid, bm25 or vector");
        const hits = part.search(words.join(" "), k, { speaker: values.get("--speaker"), mode });
        if (hits.length === 0) return part.size === 0 ? "no memories yet" : "nothing found";
        return formatTable(["SCORE", "ID", "SPEAKER", "TEXT"], hits.map((h) => [h.score.toFixed(3), shortId(h.memory), h.memory.speaker, preview(h.memory.text)]));
      }
      case "stat": {
        if (rest.length > 0) throw new UsageError("stat takes no arguments");
        const s = part.stats();
        const index = part.indexStats();
        return formatFields([
          ["memories", `${s.memories} (${Object.entries(s.byKind).map(([k, n]) => `${n} ${k}`).join(", ") || "none"})`],
          ["superseded", String(s.superseded)],
          ["from", `${s.origins} nodes, ${s.speakers} speakers`],
          ["text", `${s.textBytes} characters`],
          ["index", index],
          ["refused rows", String(s.refused)],
          ["capacity", `${s.rowsMax} rows`],
        ]);
      }
      case "redact": {
        if (rest.length !== 1) throw new UsageError("redact takes ID");
        const found = part.resolve(rest[0]!);
        if (typeof found === "string") throw new UsageError(found);
        const error = kernel.redactMemory(found.id);
        if (error !== undefined) throw new UsageError(error);
        return `redacted ${found.id}: its text is removed here and from every node as the redaction spreads`;
      }
      default:
        throw new UsageError(sub === undefined ? "needs a subcommand" : `unknown subcommand ${JSON.stringify(sub.slice(0, 40))}`);
    }
  },
};
