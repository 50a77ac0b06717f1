// The minds' shell command: `mind list|test|use`.
import type { NodeContext } from "../context.ts";
import { formatTable, UsageError, type Command } from "../shell.ts";
import type { NodeView } from "../view.ts";
import { preview } from "./memory-commands.ts";
import type { MindView } from "./minds.ts";

const TEST_PROMPT = "Reply with the single word OK.";
const TEST_TOKENS = 16;

function where(kernel: NodeView, view: MindView): string {
  if (view.here) return "here";
  return kernel.memberStatuses().find((m) => m.id === view.info.node)?.name ?? view.info.node.slice(0, 8);
}

function health(view: MindView, nowMs: number): string {
  const s = view.stats;
  if (s === undefined || s.successes + s.failures === 0) return "not asked yet";
  const backoff = s.retryAtMs > nowMs ? `, backing off ${Math.ceil((s.retryAtMs - nowMs) / 1000)} s after ${s.lastError ?? "failure"}` : "";
  return `${Math.round(s.availability * 100)}% ok, ${s.latencyMs === undefined ? "-" : `${Math.round(s.latencyMs)} ms`}${backoff}`;
}

export const mind: Command<NodeContext> = {
  name: "mind",
  summary: "mind: the models this node can ask — its own (--mind, a provider key here) and those members serve",
  usage: "mind list | mind test [NAME] | mind use NAME|auto",
  async run(args, { kernel }) {
    const [sub, ...rest] = args;
    const minds = kernel.minds;
    switch (sub) {
      case "list": {
        if (rest.length > 0) throw new UsageError("list takes no arguments");
        const views = minds.list();
        if (views.length === 0) return "no minds: start a node with --mind URL#MODEL (a local model it serves to the swarm), or give it a provider key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY); chat answers from memory alone meanwhile";
        const now = Date.now();
        const chosen = minds.chosen;
        const table = formatTable(["NAME", "PROVIDER", "MODEL", "KIND", "SERVED BY", "HEALTH"], views.map((v) => [
          `${v.info.name}${v.info.name === chosen ? " (in use)" : ""}`, v.info.provider, v.info.model, v.info.kind, where(kernel, v), health(v, now),
        ]));
        return `${table}\nrouting: ${chosen === undefined ? `automatic (mode ${kernel.mode}: ${kernel.mode === "FULL" ? "the cluster's own minds first" : "a frontier mind first"})` : `${chosen} (mind use auto to undo)`}`;
      }
      case "test": {
        if (rest.length > 1) throw new UsageError("test takes [NAME]");
        const started = Date.now();
        try {
          const reply = await minds.ask({ request: { messages: [{ role: "user", content: TEST_PROMPT }], maxTokens: TEST_TOKENS, temperature: 0 }, mind: rest[0] });
          return `${reply.mind.name} (${reply.mind.provider} ${reply.mind.model}) answered in ${Date.now() - started} ms: ${JSON.stringify(preview(reply.text, 60))} (${reply.usage.inputTokens} tokens in, ${reply.usage.outputTokens} out)`;
        } catch (error) {
          throw new Error(error instanceof Error ? error.message : String(error), { cause: error });
        }
      }
      case "use": {
        if (rest.length !== 1) throw new UsageError("use takes NAME or auto");
        const name = rest[0] === "auto" ? undefined : rest[0];
        const error = minds.use(name);
        if (error !== undefined) throw new UsageError(error);
        return name === undefined ? "routing is automatic again" : `this node now asks ${name} first (mind use auto to undo)`;
      }
      default:
        throw new UsageError(sub === undefined ? "needs a subcommand" : `unknown subcommand ${JSON.stringify(sub.slice(0, 40))}`);
    }
  },
};
