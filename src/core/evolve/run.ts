// One run of a program (docs/protocols/programs.md, "Runs"): what the host hands the sandbox and
// what comes back. A run is a pure function of its request: the program sees a snapshot of what
// its grants let it read (its KV namespace, its files, the topics it may read, the latest sensor
// readings), a fixed clock and a seed; what it changes comes back as effects, which the host checks
// against the grants again (it trusts nothing the engine returns) and applies after the run. So a
// run replays exactly from its request, a dry run on recorded data is the same code as a real one,
// and no capability call ever crosses a thread boundary synchronously.
import { LIMITS } from "../util/limits.ts";
import { utf8Length, type HookKind, type HookReading } from "./capabilities.ts";
import { PROGRAM_TOPIC_PREFIX, topicMatches, type Grants, type RunLimits } from "./manifest.ts";

export const RUN_LIMITS = LIMITS.evolve.run;

/** A row of a topic as a program reads it. */
export interface RunTopicRow {
  readonly topic: string;
  readonly key: string;
  readonly value: string | undefined;
  readonly origin: string;
}

/** What the program may read during the run, already cut to its grants by the host. */
export interface RunState {
  /** Its KV namespace (keys without the namespace prefix). */
  readonly kv: Readonly<Record<string, string>>;
  /** Its folder: relative path → text. */
  readonly files: Readonly<Record<string, string>>;
  /** Rows of the topics it may read, by topic. */
  readonly topics: Readonly<Record<string, readonly RunTopicRow[]>>;
  /** The newest reading of each sensor. */
  readonly sensors: readonly HookReading[];
  /** clock.now() for the whole run. */
  readonly nowMs: number;
  /** Seed of random (a 32-bit unsigned integer). */
  readonly seed: number;
}

/** The argument of the hook's function. */
export type RunArg =
  | { readonly kind: "sensor.prefilter"; readonly readings: readonly HookReading[] }
  | { readonly kind: "task" }
  | { readonly kind: "command"; readonly args: readonly string[] }
  | { readonly kind: "probe" }
  | { readonly kind: "topic"; readonly row: RunTopicRow };

export interface RunRequest {
  /** name@version: the engine may cache the compiled module under this key. */
  readonly program: string;
  /** The verified program's JavaScript (an ES module importing "pk:program"). */
  readonly js: string;
  readonly hook: HookKind;
  readonly arg: RunArg;
  readonly grants: Grants;
  readonly limits: RunLimits;
  readonly state: RunState;
}

/** What a run changed, applied by the host after checking it against the grants. */
export interface RunEffects {
  /** KV writes in order: a value, or null for a delete. */
  readonly kv: ReadonlyArray<readonly [key: string, value: string | null]>;
  /** File writes in order: a text, or null for a remove. */
  readonly files: ReadonlyArray<readonly [path: string, text: string | null]>;
  readonly publish: ReadonlyArray<{ readonly topic: string; readonly key: string; readonly value: string }>;
}

export type LogLevel = "info" | "warn" | "error";

/** Why a run failed; "host" means the engine itself broke (it is rebuilt). */
export type RunFailure = "gas" | "memory" | "stack" | "wall" | "output" | "throw" | "contract" | "effects" | "host";

export interface RunOutcome {
  readonly ok: boolean;
  /** The hook's return value (checked by checkHookResult when ok). */
  readonly result?: unknown;
  readonly error?: { readonly kind: RunFailure; readonly message: string };
  readonly effects: RunEffects;
  readonly logs: ReadonlyArray<{ readonly level: LogLevel; readonly message: string }>;
  /** Gas units spent (the engine's meter). */
  readonly gas: number;
  /** The engine's heap in use at the end of the run. */
  readonly memoryBytes: number;
  /** Output bytes spent: log lines, command output, published values. */
  readonly outputBytes: number;
  /** Wall time of the run in the engine (measured, never a verdict input but for `wall`). */
  readonly ms: number;
}

export const NO_EFFECTS: RunEffects = { kv: [], files: [], publish: [] };

/** A file path a program may use: relative, `/`-separated, no `.`/`..`, no empty part, no control characters. */
export function programPathProblem(path: string): string | undefined {
  if (typeof path !== "string" || path.length === 0) return "a path must be a non-empty string";
  if (path.length > RUN_LIMITS.pathCharsMax) return `a path is at most ${RUN_LIMITS.pathCharsMax} characters`;
  if (path.startsWith("/")) return "paths are relative to the program's folder";
  if (/[\u0000-\u001f\u007f\\]/.test(path)) return "a path has no control characters or backslashes";
  for (const part of path.split("/")) if (part === "" || part === "." || part === "..") return `a path has no empty, "." or ".." parts: ${path}`;
  return undefined;
}

/** A KV key a program may use within its namespace. */
export function programKeyProblem(key: string): string | undefined {
  if (typeof key !== "string" || key.length === 0) return "a key must be a non-empty string";
  if (key.length > RUN_LIMITS.keyCharsMax) return `a key is at most ${RUN_LIMITS.keyCharsMax} characters`;
  if (/[\u0000-\u001f\u007f]/.test(key)) return "a key has no control characters";
  return undefined;
}

/** Whether a grant's patterns cover a topic. */
export function topicGranted(patterns: readonly string[], topic: string): boolean {
  return patterns.some((p) => topicMatches(p, topic));
}

/**
 * The host's check of a run's effects against the program's grants and bounds (the engine enforces
 * them too, but its answer is not trusted). undefined when every effect may be applied.
 */
export function checkEffects(grants: Grants, limits: RunLimits, effects: RunEffects, stateKv: Readonly<Record<string, string>>): string | undefined {
  if (!grants.kv && effects.kv.length > 0) return "kv written without the kv grant";
  if (!grants.files && effects.files.length > 0) return "files written without the files grant";
  if (effects.kv.length > RUN_LIMITS.writesMax || effects.files.length > RUN_LIMITS.writesMax || effects.publish.length > RUN_LIMITS.writesMax) {
    return `more than ${RUN_LIMITS.writesMax} writes of one kind in one run`;
  }
  const kv = new Map(Object.entries(stateKv));
  for (const [key, value] of effects.kv) {
    const problem = programKeyProblem(key);
    if (problem !== undefined) return `kv: ${problem}`;
    if (value !== null && (typeof value !== "string" || utf8Length(value) > RUN_LIMITS.valueBytesMax)) return `kv ${key}: a value is a string of at most ${RUN_LIMITS.valueBytesMax} bytes`;
    if (value === null) kv.delete(key);
    else kv.set(key, value);
  }
  if (kv.size > RUN_LIMITS.kvKeysMax) return `the KV namespace would hold ${kv.size} keys (at most ${RUN_LIMITS.kvKeysMax})`;
  let kvBytes = 0;
  for (const [k, v] of kv) kvBytes += utf8Length(k) + utf8Length(v);
  if (kvBytes > RUN_LIMITS.kvBytesMax) return `the KV namespace would hold ${kvBytes} bytes (at most ${RUN_LIMITS.kvBytesMax})`;
  for (const [path, text] of effects.files) {
    const problem = programPathProblem(path);
    if (problem !== undefined) return `files: ${problem}`;
    if (text !== null && (typeof text !== "string" || utf8Length(text) > RUN_LIMITS.fileBytesMax)) return `files ${path}: a file is a string of at most ${RUN_LIMITS.fileBytesMax} bytes`;
  }
  let published = 0;
  for (const { topic, key, value } of effects.publish) {
    if (typeof topic !== "string" || !topic.startsWith(PROGRAM_TOPIC_PREFIX) || !topicGranted(grants.topics.publish, topic)) return `publish to ${String(topic)}: not granted`;
    if (typeof key !== "string" || programKeyProblem(key) !== undefined) return `publish ${topic}: bad key`;
    if (typeof value !== "string") return `publish ${topic}/${key}: the value is not a string`;
    published += utf8Length(value);
  }
  if (published > limits.outputBytes) return `published ${published} bytes, over the output bound ${limits.outputBytes}`;
  return undefined;
}
