// Chat (issue 14; docs/protocols/chat.md): one turn recalls the speaker's relevant memories and the
// cluster's state, asks the chosen mind, streams its answer, and remembers the turn — the user's
// words before the mind is asked (durable), the answer once it is whole (durable, before the turn
// is reported done). With no mind reachable it answers from memory alone and says so: the memories
// closest to the question, quoted, never an invented answer and never an error page.
import type { ChatMessage, MindInfo, MindUsage } from "../../core/self/minds.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { NodeView } from "../view.ts";
import type { MemoryKind } from "../../core/self/memory-record.ts";
import type { Memory, MemoryHit } from "./memory.ts";
import { MindCallError, NoMindError } from "./minds.ts";

export interface ChatConfig {
  /** Memories recalled by search for a turn. */
  readonly recallK: number;
  /** Earlier turns of the conversation put in the prompt when the caller sends none. */
  readonly historyTurns: number;
  /** Hits below this fused score are not recalled (noise). */
  readonly recallScoreMin: number;
  /** Turns answered at once by this node; more are refused (busy). */
  readonly inFlight: number;
  /** Memories quoted in an answer from memory alone. */
  readonly quoteK: number;
  /** …and only those scoring at least this (search always returns k hits, related or not). */
  readonly quoteScoreMin: number;
}

export const CHAT_DEFAULTS: ChatConfig = { recallK: 6, historyTurns: 8, recallScoreMin: 0.05, inFlight: 32, quoteK: 3, quoteScoreMin: 0.2 };

export interface ChatTurn {
  readonly text: string;
  /** Who speaks (a user's name); default "user". */
  readonly speaker?: string | undefined;
  /** The conversation; default the speaker's own. */
  readonly conv?: string | undefined;
  /** Earlier messages the caller keeps (an OpenAI client sends its whole history); else the conversation's memories. */
  readonly history?: readonly ChatMessage[] | undefined;
  /** A mind by name, "auto", or a kind to prefer. */
  readonly mind?: string | undefined;
  readonly prefer?: "local" | "frontier" | undefined;
  readonly maxTokens?: number | undefined;
  readonly temperature?: number | undefined;
  readonly onDelta?: ((text: string) => void) | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface ChatAnswer {
  readonly text: string;
  /** A mind answered, or the node answered from memory alone. */
  readonly source: "mind" | "memory";
  readonly mind: MindInfo | undefined;
  /** Why memory alone (no mind configured, every mind failed…). */
  readonly note: string | undefined;
  readonly finish: "stop" | "length" | "other";
  readonly usage: MindUsage;
  readonly recalled: readonly Memory[];
  readonly conv: string;
  /** The turn's memories: the user's words, the answer. */
  readonly asked: string;
  readonly answered: string;
  /** Time spent in the mind, and the whole turn (ms): the rest is chat's own overhead. */
  readonly mindMs: number;
  readonly totalMs: number;
}

export class ChatBusyError extends Error {
  override name = "ChatBusyError";
}

/** Bad input for a turn (the caller's to fix). */
export class ChatInputError extends Error {
  override name = "ChatInputError";
}

export interface ChatCounters {
  turns: number;
  fromMind: number;
  fromMemory: number;
  cut: number;
  cancelled: number;
  busy: number;
  /** Sums for the overhead beyond the mind (ms). */
  overheadMsSum: number;
  mindMsSum: number;
}

const ANSWERER = "pk";
const RECALLED: readonly MemoryKind[] = ["user", "note", "summary"];

export class Chat {
  readonly counters: ChatCounters = { turns: 0, fromMind: 0, fromMemory: 0, cut: 0, cancelled: 0, busy: 0, overheadMsSum: 0, mindMsSum: 0 };
  readonly #kernel: NodeView;
  readonly #config: ChatConfig;
  #inFlight = 0;

  constructor(kernel: NodeView, config: ChatConfig = CHAT_DEFAULTS) {
    this.#kernel = kernel;
    this.#config = config;
  }

  async turn(input: ChatTurn): Promise<ChatAnswer> {
    const started = performance.now();
    const text = input.text.trim();
    if (text.length === 0) throw new ChatInputError("say something: the text is empty");
    if (text.length > LIMITS.self.mind.contentCharsMax) throw new ChatInputError(`the text is ${text.length} characters, at most ${LIMITS.self.mind.contentCharsMax}`);
    const speaker = input.speaker ?? "user";
    const conv = input.conv ?? speaker;
    if (this.#inFlight >= this.#config.inFlight) {
      this.counters.busy++;
      throw new ChatBusyError(`this node answers ${this.#config.inFlight} turns at once; try again shortly`);
    }
    this.#inFlight++;
    try {
      return await this.#turn(text, speaker, conv, input, started);
    } finally {
      this.#inFlight--;
    }
  }

  async #turn(text: string, speaker: string, conv: string, input: ChatTurn, started: number): Promise<ChatAnswer> {
    const kernel = this.#kernel;
    const memory = kernel.memory;
    // Recall before the turn is stored, so the question does not find itself.
    // What people said (turns, notes, summaries); the minds' own answers would echo themselves.
    // Questions share the most words with a new question but answer nothing: statements first.
    const found = (await memory.recall(text, 2 * this.#config.recallK, { kinds: RECALLED })).filter((h) => h.score >= this.#config.recallScoreMin);
    const hits = [...found.filter((h) => !isQuestion(h.memory.text)), ...found.filter((h) => isQuestion(h.memory.text))].slice(0, this.#config.recallK);
    const history = input.history ?? this.#history(conv);
    const asked = kernel.remember({ text, speaker, kind: "user", conv });
    if ("error" in asked) throw new ChatInputError(asked.error);
    const messages: ChatMessage[] = [{ role: "system", content: this.#system(hits) }, ...history, { role: "user", content: text }];
    let answer: string;
    let source: "mind" | "memory" = "mind";
    let mind: MindInfo | undefined;
    let note: string | undefined;
    let finish: ChatAnswer["finish"] = "stop";
    let usage: MindUsage = { inputTokens: 0, outputTokens: 0 };
    let streamed = "";
    const mindStarted = performance.now();
    let mindMs = 0;
    try {
      const reply = await kernel.minds.ask({
        request: { messages, ...(input.maxTokens === undefined ? {} : { maxTokens: input.maxTokens }), ...(input.temperature === undefined ? {} : { temperature: input.temperature }) },
        mind: input.mind, prefer: input.prefer, signal: input.signal,
        onDelta: (delta) => {
          streamed += delta;
          input.onDelta?.(delta);
        },
      });
      mindMs = performance.now() - mindStarted;
      answer = reply.text;
      mind = reply.mind;
      finish = reply.finish;
      usage = reply.usage;
      // A mind that answered without streaming (or streamed less than it said): the rest now.
      if (reply.text.startsWith(streamed) && reply.text.length > streamed.length) input.onDelta?.(reply.text.slice(streamed.length));
      this.counters.fromMind++;
    } catch (error) {
      mindMs = performance.now() - mindStarted;
      if (error instanceof MindCallError && error.kind === "cancelled") {
        this.counters.cancelled++;
        throw error;
      }
      if (error instanceof MindCallError && error.streamed) {
        // Part of an answer reached the user: it is kept as what it is, a cut answer.
        const cut = `\n[the mind stopped mid-answer: ${error.kind}]`;
        input.onDelta?.(cut);
        answer = streamed + cut;
        finish = "other";
        note = `the mind failed mid-answer (${error.kind})`;
        this.counters.cut++;
      } else {
        source = "memory";
        note = error instanceof NoMindError ? error.message : `no mind answered: ${error instanceof Error ? error.message : String(error)}`;
        answer = this.#fromMemory(hits, note);
        input.onDelta?.(answer);
        this.counters.fromMemory++;
      }
    }
    const answered = kernel.remember({ text: answer, speaker: ANSWERER, kind: "mind", conv, by: mind?.name ?? "memory" });
    if ("error" in answered) throw new Error(`the answer was not remembered: ${answered.error}`);
    const totalMs = performance.now() - started;
    this.counters.turns++;
    this.counters.mindMsSum += mindMs;
    this.counters.overheadMsSum += totalMs - mindMs;
    return {
      text: answer, source, mind, note, finish, usage, recalled: hits.map((h) => h.memory), conv, asked: asked.id, answered: answered.id, mindMs, totalMs,
    };
  }

  /** The conversation's last turns, oldest first, as messages. */
  #history(conv: string): ChatMessage[] {
    const turns = this.#kernel.memory.list({ limit: this.#config.historyTurns, conv }).reverse();
    return turns.filter((m) => m.kind === "user" || m.kind === "mind").map((m) => ({ role: m.kind === "user" ? "user" : "assistant", content: m.text }));
  }

  /** The system prompt: who the mind speaks for, the cluster's state, and what is remembered. */
  #system(hits: readonly MemoryHit[]): string {
    const kernel = this.#kernel;
    const members = kernel.memberStatuses();
    const alive = members.filter((m) => m.state === "alive" || m.state === "suspect").length;
    const consensus = kernel.consensus;
    const leader = members.find((m) => m.id === consensus.leader)?.name ?? "none";
    const lines = [
      "You are p-kernel, the mind of a distributed operating system whose body is the machines below. Answer the user briefly and truthfully.",
      "Use the memories when they are relevant: they are things said earlier, possibly to another node. If neither they nor you know, say so; do not invent.",
      "",
      `Cluster: ${alive} of ${members.length} nodes alive, mode ${kernel.mode}, Raft leader ${leader} (term ${consensus.term}), ${kernel.memory.size} memories; this node is ${kernel.config.name}.`,
    ];
    if (hits.length > 0) {
      lines.push("", "Memories (most relevant first):");
      for (const h of hits) lines.push(`- [${stamp(h.memory.atMs)}] ${h.memory.speaker}: ${oneLine(h.memory.text)}`);
    } else lines.push("", "No memory matches this message.");
    return lines.join("\n");
  }

  /** The answer from memory alone: the closest memories, quoted, and why no mind answered. */
  #fromMemory(hits: readonly MemoryHit[], why: string): string {
    // Only statements: an earlier question is no answer.
    const quoted = hits.filter((h) => h.memory.speaker !== ANSWERER && !isQuestion(h.memory.text) && h.score >= this.#config.quoteScoreMin).slice(0, this.#config.quoteK);
    const head = `No mind is reachable (${why}), so this answer comes from memory alone.`;
    if (quoted.length === 0) return `${head} I remember nothing that matches.`;
    const lines = quoted.map((h, i) => `${i + 1}. ${h.memory.speaker} said on ${stamp(h.memory.atMs)}: "${oneLine(h.memory.text)}"`);
    return `${head} What I remember that matches:\n${lines.join("\n")}`;
  }
}

const QUESTION_START = /^(who|whom|whose|what|when|where|which|why|how|is|are|was|were|do|does|did|can|could|will|would|should|shall|may|remind me|tell me)\b/i;

/** A question rather than a statement (a turn that asks, which answers nothing). */
export function isQuestion(text: string): boolean {
  const t = text.trim();
  return t.endsWith("?") || QUESTION_START.test(t);
}

function stamp(atMs: number): string {
  return new Date(atMs).toISOString().slice(0, 16).replace("T", " ");
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

const chats = new WeakMap<NodeView, Chat>();

/** The node's chat (one per node, made on first use). */
export function chatOf(kernel: NodeView): Chat {
  let chat = chats.get(kernel);
  if (chat === undefined) chats.set(kernel, (chat = new Chat(kernel)));
  return chat;
}
