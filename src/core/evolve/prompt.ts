// What `evolve` asks a mind (docs/protocols/programs.md, "evolve"): the node's state, and the whole
// world a program may use — the reply format, the manifest, the hooks, the capability API and the
// commands the mind may run alone. A refused reply is sent back with its reason, once.
import type { ChatMessage } from "../self/minds.ts";
import { CAPABILITY_DTS, HOOK_SUMMARIES, HOOK_KINDS } from "./capabilities.ts";
import { PROGRAM_DEFAULTS } from "./manifest.ts";
import { allowListText } from "./policy.ts";

/** The state `evolve` gathers, as the mind and the transcript see it. */
export interface EvolveState {
  readonly node: string;
  readonly mode: string;
  readonly raft: { readonly role: string; readonly term: number; readonly leader: string };
  readonly liveNodes: number;
  readonly memories: number;
  readonly inferences: number;
  readonly uptimeS: number;
  readonly programs: readonly string[];
  readonly prefilter: string;
  readonly sensors: string;
}

export function stateLines(s: EvolveState): string[] {
  return [
    `node ${s.node}, mode ${s.mode}, up ${s.uptimeS} s`,
    `raft: ${s.raft.role}, term ${s.raft.term}, leader ${s.raft.leader || "none"}`,
    `live nodes: ${s.liveNodes}`,
    `memory: ${s.memories} memories`,
    `inferences: ${s.inferences}; prefilter: ${s.prefilter}`,
    `sensors: ${s.sensors}`,
    `programs: ${s.programs.length === 0 ? "none" : s.programs.join(", ")}`,
  ];
}

const FORMAT = `Answer in exactly three sections, each marker alone at the start of its line, in this order:
[ANALYSIS]
what you see in the state and why you act (not empty)
[CODE]
one program in a \`\`\`ts block, or nothing: TypeScript whose first line is its manifest,
// @pk-program {"name":"NAME","version":"1.0.0","hook":"HOOK","capabilities":{...},"limits":{...}}
name: lowercase letters, digits, dashes; hook: ${HOOK_KINDS.map((h) => (h === "topic" ? "topic:NAME" : h)).join(", ")};
capabilities: "log","kv","sensors","files","clock","random" each true/false, "topics": {"read":[patterns],"publish":["p.…"]};
limits (optional): gas (default ${PROGRAM_DEFAULTS.gas}), memoryBytes, stackBytes, wallMs, outputBytes.
Import only from "pk:program". No eval, Function, globalThis, require, import(), Reflect, Proxy, async, Date.now or Math.random
(use clock and random), no type assertions, no any.
[CMD]
kernel commands in a \`\`\`json block, one JSON object a line, or nothing:
{"cmd":"exec","program":"NAME","args":[]} {"cmd":"ps"} {"cmd":"kill","program":"NAME"} {"cmd":"guard","program":"NAME"} {"cmd":"shell","line":"dtr stat"}
You may run alone: exec, ps, and ${allowListText()}. Anything else waits for a person's approval.`;

/** The conversation that asks a mind what to change. */
export function evolvePrompt(state: EvolveState, goal: string | undefined): ChatMessage[] {
  const hooks = Object.values(HOOK_SUMMARIES).map((h) => `- ${h}`).join("\n");
  const system = `You are the mind of p-kernel, a distributed operating system. A node asks you whether it needs help.
You may answer with a program the node verifies, compiles and runs sandboxed on one of its hooks.

${FORMAT}

Hooks (export the hook's function):
${hooks}

The capability API, the only module a program can import:
\`\`\`ts
${CAPABILITY_DTS}\`\`\``;
  const user = `The node's state:\n${stateLines(state).join("\n")}\n\n${goal === undefined || goal === "" ? "Do I need help?" : goal}`;
  return [{ role: "system", content: system }, { role: "user", content: user }];
}

/** The follow-up after a refused reply: the reason, and the format again. */
export function retryMessages(previous: readonly ChatMessage[], reply: string, reason: string): ChatMessage[] {
  return [...previous, { role: "assistant", content: reply }, { role: "user", content: `Your reply was refused: ${reason}\nAnswer again, in the three sections.` }];
}
