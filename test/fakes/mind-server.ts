// A local "Ollama-like" model for real-process tests: the fake providers server (providers.ts) run
// as its own process, answering OpenAI-compatible chat completions (JSON and SSE), embeddings and
// the model list on 127.0.0.1.
//
//   node test/fakes/mind-server.ts [--port N] [--latency-ms M] [--log FILE] [--chunk-delay-ms D] [--replies DIR]
//
// It prints one JSON line when it listens: {"port":N,"url":"http://127.0.0.1:N/v1"}, and stops on
// SIGTERM or SIGINT. Every request is appended to FILE as one JSON line (seq, wire, op, path,
// model, stream, messages, inputs, maxTokens, temperature, atMs; headers are left out, so no key).
//
// Its answer is a function of the prompt alone (`recall`): the facts are the lines of the system
// messages; the question is the last user message; a fact matches when it shares a word with the
// question (lower-cased runs of letters and digits, a trailing 's or ’s dropped, at least 3
// characters, not a stop word). The answer is "I recall: FACT | FACT" with the matching facts in
// prompt order, or "I do not know." when none matches.
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { FakeProviders, type Received } from "./providers.ts";

const STOP_WORDS = new Set([
  "the", "and", "for", "are", "was", "were", "you", "your", "yours", "what", "which", "who", "whom", "whose", "when", "where", "why", "how",
  "this", "that", "these", "those", "with", "from", "have", "has", "had", "does", "did", "not", "but", "all", "any", "can", "could",
  "would", "should", "will", "shall", "may", "might", "must", "about", "into", "onto", "its", "it's", "our", "ours", "their", "them",
  "they", "she", "her", "hers", "him", "his", "one", "out", "there", "here", "then", "than", "too", "very", "just", "also", "tell",
  "know", "please", "let", "get", "got", "say", "said", "is", "am", "be", "been", "being", "do", "of", "to", "in", "on", "at", "by",
  "me", "my", "mine", "we", "us", "an", "a", "or", "if", "so", "no", "yes",
]);

/** The words of `text` that can match (see the header). */
export function words(text: string): Set<string> {
  const out = new Set<string>();
  for (const raw of text.toLowerCase().match(/[\p{L}\p{N}]+(?:['’][\p{L}]+)?/gu) ?? []) {
    const word = raw.replace(/['’]s$/u, "").replace(/['’]/gu, "");
    if (word.length >= 3 && !STOP_WORDS.has(word)) out.add(word);
  }
  return out;
}

/** The deterministic answer to a prompt (see the header). */
export function recall(messages: readonly { readonly role: string; readonly content: string }[]): string {
  const question = [...messages].reverse().find((m) => m.role === "user")?.content ?? "";
  const asked = words(question);
  const facts = messages.filter((m) => m.role === "system").flatMap((m) => m.content.split("\n")).map((line) => line.trim()).filter((line) => line.length > 0);
  const matching = facts.filter((fact) => [...words(fact)].some((w) => asked.has(w)));
  return matching.length === 0 ? "I do not know." : `I recall: ${matching.join(" | ")}`;
}

/**
 * `evolve`'s prompt (its system message starts "You are the mind of p-kernel") answered from a
 * script: the last line of the first user message names a file DIR/NAME.txt (NAME of a-z, 0-9 and
 * dashes) whose text is the reply, read at each request. undefined: not scripted.
 */
export function scripted(dir: string | undefined, messages: readonly { readonly role: string; readonly content: string }[]): string | undefined {
  if (dir === undefined || !messages.some((m) => m.role === "system" && m.content.startsWith("You are the mind of p-kernel"))) return undefined;
  const first = messages.find((m) => m.role === "user")?.content ?? "";
  const name = first.trim().split("\n").at(-1)?.trim() ?? "";
  if (!/^[a-z0-9-]{1,64}$/.test(name)) return undefined;
  const file = join(dir, `${name}.txt`);
  return existsSync(file) ? readFileSync(file, "utf8") : undefined;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "0" },
      "latency-ms": { type: "string", default: "0" },
      "chunk-delay-ms": { type: "string", default: "0" },
      log: { type: "string" },
      replies: { type: "string" },
    },
    strict: true,
  });
  const number = (flag: string, text: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${flag}: a non-negative integer, not ${JSON.stringify(text)}`);
    return n;
  };
  const log = values.log;
  const fake = await FakeProviders.start({
    port: number("port", values.port),
    latencyMs: number("latency-ms", values["latency-ms"]),
    chunkDelayMs: number("chunk-delay-ms", values["chunk-delay-ms"]),
    reply: (request: Received) => scripted(values.replies, request.messages) ?? recall(request.messages),
    onRequest: log === undefined ? undefined : (request: Received) => {
      const { headers: _headers, body: _body, ...kept } = request;
      appendFileSync(log, `${JSON.stringify(kept)}\n`);
    },
  });
  process.stdout.write(`${JSON.stringify({ port: fake.port, url: fake.openaiBase })}\n`);
  const stop = (): void => {
    void fake.close().then(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    process.stderr.write(`mind-server: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  });
}
