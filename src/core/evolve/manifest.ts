// A program's manifest (docs/protocols/programs.md): its name, version, hook, the capabilities it
// asks for and the limits of one run. It comes as the source's first comment —
//   // @pk-program {"name":"outliers","version":"1.0.0","hook":"sensor.prefilter"}
// or /* @pk-program {...} */ over several lines — or beside the source (a JSON value), never both.
// A C program (docs/adr/019-c-programs.md) says so with "language":"c"; TypeScript is the default.
// Decoding is strict: unknown fields, wrong types and values out of bounds are refused, each with a
// message that names the field, so a mind asked again knows what to fix.
import { LIMITS } from "../util/limits.ts";
import { CAPABILITIES, HOOK_KINDS, utf8Length, type Capability, type HookKind } from "./capabilities.ts";

export const PROGRAM_LIMITS = LIMITS.evolve.program;

/** Defaults of what a manifest may leave out; each within PROGRAM_LIMITS. */
export const PROGRAM_DEFAULTS = {
  /** Gas of one run: about 2 million bytecode steps. */
  gas: 200,
  memoryBytes: 8 * 1024 * 1024,
  stackBytes: 128 * 1024,
  wallMs: 100,
  outputBytes: 16 * 1024,
  /** Period of a task. */
  periodMs: 10_000,
} as const;

/** Marks the manifest comment at the head of a program's source. */
export const MANIFEST_TAG = "@pk-program";

/** Program topics: a program publishes only under this prefix, never into the kernel's own tables. */
export const PROGRAM_TOPIC_PREFIX = "p.";

export interface Hook {
  readonly kind: HookKind;
  /** The topic of a `topic:NAME` hook. */
  readonly topic?: string;
}

export interface RunLimits {
  readonly gas: number;
  readonly memoryBytes: number;
  readonly stackBytes: number;
  readonly wallMs: number;
  readonly outputBytes: number;
}

export interface Grants {
  readonly log: boolean;
  readonly kv: boolean;
  readonly sensors: boolean;
  readonly files: boolean;
  readonly clock: boolean;
  readonly random: boolean;
  /** Topic patterns (a name, or a prefix ending in `*`) it may read and publish; empty: no topics. */
  readonly topics: { readonly read: readonly string[]; readonly publish: readonly string[] };
}

/** The languages a program may be written in: TypeScript (the default) or C (an optional component, docs/adr/019-c-programs.md). */
export const PROGRAM_LANGUAGES = ["ts", "c"] as const;
export type ProgramLanguage = (typeof PROGRAM_LANGUAGES)[number];

export interface Manifest {
  readonly name: string;
  readonly version: string;
  readonly hook: Hook;
  readonly summary: string | undefined;
  readonly capabilities: Grants;
  readonly limits: RunLimits;
  /** A task's period (undefined for other hooks). */
  readonly periodMs: number | undefined;
  /** "c" for a C program; absent for TypeScript (a manifest saying "language":"ts" decodes without it). */
  readonly language?: "c";
}

export interface Program {
  readonly manifest: Manifest;
  /** The TypeScript source, manifest header included (line numbers stay those of the text received). */
  readonly source: string;
}

export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly errors: readonly string[] };

const NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
const VERSION_PART = /^(0|[1-9][0-9]{0,15})$/;
const TOPIC_PATTERN = /^[A-Za-z0-9._/-]+$/;
const ERRORS_MAX = LIMITS.evolve.verify.findingsPerRuleMax;

const MANIFEST_KEYS = new Set(["name", "version", "hook", "summary", "capabilities", "limits", "periodMs", "language"]);
const CAPABILITY_KEYS: ReadonlySet<string> = new Set<string>(CAPABILITIES);
const TOPICS_KEYS = new Set(["read", "publish"]);
const LIMIT_BOUNDS: Readonly<Record<keyof RunLimits, readonly [number, number]>> = {
  gas: [1, PROGRAM_LIMITS.gasMax],
  memoryBytes: [PROGRAM_LIMITS.memoryBytesMin, PROGRAM_LIMITS.memoryBytesMax],
  stackBytes: [PROGRAM_LIMITS.stackBytesMin, PROGRAM_LIMITS.stackBytesMax],
  wallMs: [1, PROGRAM_LIMITS.wallMsMax],
  outputBytes: [1, PROGRAM_LIMITS.outputBytesMax],
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A short, bounded rendering of a refused value for an error message. */
function show(value: unknown): string {
  if (typeof value === "string") return value.length > 32 ? `${JSON.stringify(value.slice(0, 32))}...` : JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return String(value);
  if (Array.isArray(value)) return "a list";
  return typeof value === "object" ? "an object" : typeof value;
}

/** True when the text holds a control character (a line break, a tab, an escape...). */
export function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** True for MAJOR.MINOR.PATCH, each a whole number without leading zeros up to versionPartMax. */
export function isVersion(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 3 && parts.every((p) => VERSION_PART.test(p) && Number(p) <= PROGRAM_LIMITS.versionPartMax);
}

/** The hook named by a manifest: one of HOOK_KINDS, or `topic:NAME`; or why not. */
export function parseHook(text: string): Hook | string {
  if (text.startsWith("topic:")) {
    const topic = text.slice("topic:".length);
    if (topic.length === 0 || topic.length > LIMITS.gossip.topicCharsMax || !TOPIC_PATTERN.test(topic)) {
      return `hook topic:NAME needs a topic of 1–${LIMITS.gossip.topicCharsMax} of A-Z a-z 0-9 . _ / -`;
    }
    return { kind: "topic", topic };
  }
  if (text !== "topic" && (HOOK_KINDS as readonly string[]).includes(text)) return { kind: text as HookKind };
  return `hook must be one of sensor.prefilter, task, command, probe, topic:NAME (got ${show(text)})`;
}

export function hookName(hook: Hook): string {
  return hook.kind === "topic" ? `topic:${hook.topic ?? ""}` : hook.kind;
}

/** A topic pattern's problem, or undefined: a topic name, or a prefix of one ending in `*` (`*` alone: every topic). */
function checkTopicPattern(pattern: unknown, publish: boolean): string | undefined {
  if (typeof pattern !== "string") return `a topic pattern must be a string (got ${show(pattern)})`;
  if (pattern.length === 0 || pattern.length > PROGRAM_LIMITS.topicPatternCharsMax) return `topic pattern ${show(pattern)} must be 1–${PROGRAM_LIMITS.topicPatternCharsMax} characters`;
  const stem = pattern.endsWith("*") ? pattern.slice(0, -1) : pattern;
  if (stem.length > 0 && !TOPIC_PATTERN.test(stem)) return `topic pattern ${show(pattern)} may hold only A-Z a-z 0-9 . _ / - and a final *`;
  if (publish && !stem.startsWith(PROGRAM_TOPIC_PREFIX)) return `a program publishes only to topics under "${PROGRAM_TOPIC_PREFIX}" (got ${show(pattern)})`;
  return undefined;
}

/** True when `topic` falls under `pattern` (a name, or a prefix ending in `*`). */
export function topicMatches(pattern: string, topic: string): boolean {
  return pattern.endsWith("*") ? topic.startsWith(pattern.slice(0, -1)) : topic === pattern;
}

function decodeTopics(value: unknown, errors: string[]): Grants["topics"] {
  const none = { read: [], publish: [] };
  if (!isRecord(value)) {
    errors.push("capabilities.topics must be an object { read?: [patterns], publish?: [patterns] }");
    return none;
  }
  for (const key of Object.keys(value)) if (!TOPICS_KEYS.has(key)) errors.push(`capabilities.topics.${key}: unknown field (read, publish)`);
  const lists = { read: [] as string[], publish: [] as string[] };
  for (const which of ["read", "publish"] as const) {
    const list = value[which];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.length > PROGRAM_LIMITS.topicPatternsMax) {
      errors.push(`capabilities.topics.${which} must be a list of at most ${PROGRAM_LIMITS.topicPatternsMax} topic patterns`);
      continue;
    }
    for (const pattern of list) {
      const problem = checkTopicPattern(pattern, which === "publish");
      if (problem !== undefined) errors.push(`capabilities.topics.${which}: ${problem}`);
      else if (!lists[which].includes(pattern as string)) lists[which].push(pattern as string);
    }
  }
  return lists;
}

function decodeGrants(value: unknown, errors: string[]): Grants {
  const grants = { log: false, kv: false, sensors: false, files: false, clock: false, random: false, topics: { read: [] as readonly string[], publish: [] as readonly string[] } };
  if (value === undefined) return grants;
  if (!isRecord(value)) {
    errors.push(`capabilities must be an object, e.g. {"log": true, "kv": true} (got ${show(value)})`);
    return grants;
  }
  for (const [key, granted] of Object.entries(value)) {
    if (!CAPABILITY_KEYS.has(key)) {
      errors.push(`capabilities.${key}: unknown capability (${CAPABILITIES.join(", ")})`);
      continue;
    }
    if (key === "topics") {
      grants.topics = decodeTopics(granted, errors);
    } else if (typeof granted !== "boolean") {
      errors.push(`capabilities.${key} must be true or false (got ${show(granted)})`);
    } else {
      grants[key as Exclude<Capability, "topics">] = granted;
    }
  }
  return grants;
}

function decodeLimits(value: unknown, errors: string[]): RunLimits {
  const limits: { -readonly [K in keyof RunLimits]: number } = {
    gas: PROGRAM_DEFAULTS.gas, memoryBytes: PROGRAM_DEFAULTS.memoryBytes, stackBytes: PROGRAM_DEFAULTS.stackBytes,
    wallMs: PROGRAM_DEFAULTS.wallMs, outputBytes: PROGRAM_DEFAULTS.outputBytes,
  };
  if (value === undefined) return limits;
  if (!isRecord(value)) {
    errors.push(`limits must be an object, e.g. {"gas": 200, "wallMs": 100} (got ${show(value)})`);
    return limits;
  }
  for (const [key, n] of Object.entries(value)) {
    if (!Object.hasOwn(LIMIT_BOUNDS, key)) {
      errors.push(`limits.${key}: unknown limit (${Object.keys(LIMIT_BOUNDS).join(", ")})`);
      continue;
    }
    const [low, high] = LIMIT_BOUNDS[key as keyof RunLimits];
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < low || n > high) {
      errors.push(`limits.${key} must be a whole number from ${low} to ${high} (got ${show(n)})`);
      continue;
    }
    limits[key as keyof RunLimits] = n;
  }
  return limits;
}

/** A manifest from its JSON value (already parsed), strictly; every problem found, by field. */
export function decodeManifest(value: unknown): Decoded<Manifest> {
  const errors: string[] = [];
  if (!isRecord(value)) return { ok: false, errors: [`the manifest must be a JSON object (got ${show(value)})`] };
  for (const key of Object.keys(value)) if (!MANIFEST_KEYS.has(key)) errors.push(`${show(key)}: unknown field (${[...MANIFEST_KEYS].join(", ")})`);

  const { name, version, hook: hookText, summary, capabilities, limits, periodMs, language } = value;
  if (typeof name !== "string" || name.length > PROGRAM_LIMITS.nameCharsMax || !NAME_PATTERN.test(name)) {
    errors.push(`name must be 1–${PROGRAM_LIMITS.nameCharsMax} lowercase letters, digits and dashes, starting with a letter (got ${show(name)})`);
  }
  if (typeof version !== "string" || !isVersion(version)) {
    errors.push(`version must be MAJOR.MINOR.PATCH, each 0–${PROGRAM_LIMITS.versionPartMax} without leading zeros (got ${show(version)})`);
  }
  let hook: Hook = { kind: "task" };
  if (typeof hookText !== "string") errors.push(`hook must be a string: sensor.prefilter, task, command, probe or topic:NAME (got ${show(hookText)})`);
  else {
    const parsed = parseHook(hookText);
    if (typeof parsed === "string") errors.push(parsed);
    else hook = parsed;
  }
  if (summary !== undefined && (typeof summary !== "string" || summary.length > PROGRAM_LIMITS.summaryCharsMax || hasControl(summary))) {
    errors.push(`summary must be one line of at most ${PROGRAM_LIMITS.summaryCharsMax} characters`);
  }
  const grants = decodeGrants(capabilities, errors);
  const runLimits = decodeLimits(limits, errors);
  let period: number | undefined;
  if (hook.kind === "task") {
    period = PROGRAM_DEFAULTS.periodMs;
    if (periodMs !== undefined) {
      if (typeof periodMs !== "number" || !Number.isSafeInteger(periodMs) || periodMs < PROGRAM_LIMITS.periodMsMin || periodMs > PROGRAM_LIMITS.periodMsMax) {
        errors.push(`periodMs must be a whole number from ${PROGRAM_LIMITS.periodMsMin} to ${PROGRAM_LIMITS.periodMsMax} (got ${show(periodMs)})`);
      } else period = periodMs;
    }
  } else if (periodMs !== undefined) {
    errors.push("periodMs is for task programs only");
  }
  if (language !== undefined && !(PROGRAM_LANGUAGES as readonly unknown[]).includes(language)) {
    errors.push(`language must be one of ${PROGRAM_LANGUAGES.map((l) => JSON.stringify(l)).join(", ")} (got ${show(language)})`);
  }
  if (errors.length > 0) return { ok: false, errors: bounded(errors) };
  return {
    ok: true,
    value: {
      name: name as string, version: version as string, hook, summary: summary as string | undefined,
      capabilities: grants, limits: runLimits, periodMs: period,
      ...(language === "c" ? { language: "c" as const } : {}),
    },
  };
}

function bounded(errors: string[]): string[] {
  return errors.length <= ERRORS_MAX ? errors : [...errors.slice(0, ERRORS_MAX - 1), `and ${errors.length - ERRORS_MAX + 1} more problems`];
}

/** A manifest from its JSON text. */
export function parseManifest(text: string): Decoded<Manifest> {
  if (text.length > PROGRAM_LIMITS.manifestBytesMax || utf8Length(text) > PROGRAM_LIMITS.manifestBytesMax) {
    return { ok: false, errors: [`the manifest is over ${PROGRAM_LIMITS.manifestBytesMax} bytes`] };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, errors: [`the manifest is not JSON: ${error instanceof Error ? error.message.slice(0, 120) : "parse error"}`] };
  }
  return decodeManifest(value);
}

/**
 * The manifest comment at the head of a source: `// @pk-program JSON` on the first non-blank line,
 * or `/* @pk-program JSON *\/` starting there. `undefined` when the source has none; an error when
 * it is malformed or the tag appears anywhere else.
 */
export function manifestHeader(source: string): { readonly json: string } | { readonly error: string } | undefined {
  let start = 0;
  while (start < source.length && /\s/.test(source[start] as string)) start++;
  let json: string | undefined;
  let end = start;
  if (source.startsWith(`// ${MANIFEST_TAG}`, start) || source.startsWith(`//${MANIFEST_TAG}`, start)) {
    const lineEnd = source.indexOf("\n", start);
    end = lineEnd < 0 ? source.length : lineEnd;
    json = source.slice(source.indexOf(MANIFEST_TAG, start) + MANIFEST_TAG.length, end);
  } else if (source.startsWith(`/* ${MANIFEST_TAG}`, start) || source.startsWith(`/*${MANIFEST_TAG}`, start)) {
    const close = source.indexOf("*/", start + 2);
    if (close < 0) return { error: `the ${MANIFEST_TAG} comment is not closed with */` };
    end = close + 2;
    json = source.slice(source.indexOf(MANIFEST_TAG, start) + MANIFEST_TAG.length, close);
  }
  if (source.indexOf(MANIFEST_TAG, end) >= 0) {
    return { error: json === undefined ? `${MANIFEST_TAG} must be the source's first line` : `${MANIFEST_TAG} appears twice in the source` };
  }
  return json === undefined ? undefined : { json: json.trim() };
}

/**
 * A program from its source and, when it came beside the source, its manifest (a JSON value or
 * JSON text). Exactly one of the two carries the manifest.
 */
export function readProgram(source: string, beside?: unknown): Decoded<Program> {
  if (source.length > PROGRAM_LIMITS.sourceBytesMax || utf8Length(source) > PROGRAM_LIMITS.sourceBytesMax) {
    return { ok: false, errors: [`the source is over ${PROGRAM_LIMITS.sourceBytesMax} bytes`] };
  }
  const manifest = readManifest(source, beside);
  return manifest.ok ? { ok: true, value: { manifest: manifest.value, source } } : manifest;
}

/** The manifest of a source: its header, or the one beside it (a JSON value or JSON text); exactly one of the two. */
export function readManifest(source: string, beside?: unknown): Decoded<Manifest> {
  const header = manifestHeader(source);
  if (header !== undefined && "error" in header) return { ok: false, errors: [header.error] };
  if (header !== undefined && beside !== undefined) return { ok: false, errors: ["the manifest is given twice: in the source's header and beside it"] };
  if (header !== undefined) return parseManifest(header.json);
  if (typeof beside === "string") return parseManifest(beside);
  if (beside !== undefined) return decodeManifest(beside);
  return { ok: false, errors: [`no manifest: start the source with // ${MANIFEST_TAG} {"name": ..., "version": ..., "hook": ...}`] };
}

/** -1, 0 or 1 as version a is below, equal to or above b (both MAJOR.MINOR.PATCH). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** Why `next` may not replace `previous` (the program of that name now deployed), or undefined. Versions only go up. */
export function checkSuccessor(previous: Manifest | undefined, next: Manifest): string | undefined {
  if (previous === undefined) return undefined;
  if (previous.name !== next.name) return `${next.name} does not replace ${previous.name}`;
  if (compareVersions(next.version, previous.version) <= 0) return `${next.name} ${next.version} is not above the deployed ${previous.version}: versions only go up`;
  return undefined;
}

/** The capabilities a manifest grants, by the names a program imports. */
export function grantedCapabilities(grants: Grants): Set<Capability> {
  const out = new Set<Capability>();
  for (const capability of CAPABILITIES) {
    if (capability === "topics") {
      if (grants.topics.read.length > 0 || grants.topics.publish.length > 0) out.add("topics");
    } else if (grants[capability]) out.add(capability);
  }
  return out;
}

/** The manifest as canonical JSON (defaults written out): what `evolve log` records and `ps` shows. */
export function manifestJson(manifest: Manifest): string {
  return JSON.stringify({
    name: manifest.name, version: manifest.version, hook: hookName(manifest.hook),
    ...(manifest.summary === undefined ? {} : { summary: manifest.summary }),
    capabilities: manifest.capabilities, limits: manifest.limits,
    ...(manifest.periodMs === undefined ? {} : { periodMs: manifest.periodMs }),
    ...(manifest.language === undefined ? {} : { language: manifest.language }),
  });
}
