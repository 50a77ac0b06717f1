// A mind's reply to `evolve` (docs/protocols/programs.md), parsed strictly: three sections, each
// opened by its marker alone at the start of a line, in this order —
//   [ANALYSIS]  what the mind sees and why it acts (text, not empty)
//   [CODE]      a program: TypeScript with its @pk-program manifest header, plain or in one fenced
//               block (```ts, or ```c for a C program: its manifest says "language":"c"); empty
//               when the mind proposes no program
//   [CMD]       kernel commands, one JSON object a line (plain or in one ```json block); may be empty
// Nothing may precede [ANALYSIS]; a section given twice, missing, out of order or over its byte
// bound is refused, and so is a reply the provider cut short (finish reason length / max_tokens).
// Every refusal carries a code and a message meant for the mind when it is asked again.
import { LIMITS } from "../util/limits.ts";
import { utf8Length } from "./capabilities.ts";
import { hasControl, PROGRAM_LIMITS } from "./manifest.ts";

export const REPLY_LIMITS = LIMITS.evolve.reply;

export const SECTIONS = ["ANALYSIS", "CODE", "CMD"] as const;
export type Section = (typeof SECTIONS)[number];

/** Why a reply was refused. */
export type ReplyRefusal =
  | "truncated" // the provider stopped it early (length, max_tokens) or filtered it
  | "too-large" // the reply or one section over its bound
  | "preamble" // text before [ANALYSIS]
  | "marker" // a marker not alone at the start of its line ("**[CODE]**", "[code]", "## [CMD]")
  | "missing" // a section absent
  | "duplicate" // a section twice
  | "order" // sections not in the order ANALYSIS, CODE, CMD
  | "empty" // an empty [ANALYSIS]
  | "fence" // a code fence that is not one block around the whole section
  | "command"; // a [CMD] line that is not a valid command

export interface ReplyError {
  readonly code: ReplyRefusal;
  readonly message: string;
  /** The reply's line (from 1) the problem is on, when it is on one. */
  readonly line?: number;
}

/**
 * A command of the [CMD] section. The program commands have their own shapes; anything else the
 * kernel's shell offers is a `shell` line, which the evolve policy (an allow-list) decides on.
 */
export type EvolveCommand =
  | { readonly cmd: "exec"; readonly program: string; readonly args: readonly string[] }
  | { readonly cmd: "kill"; readonly program: string }
  | { readonly cmd: "guard"; readonly program: string }
  | { readonly cmd: "ps" }
  | { readonly cmd: "shell"; readonly line: string };

export interface Reply {
  readonly analysis: string;
  /** The program's source without its fences, or undefined when [CODE] is empty. */
  readonly code: string | undefined;
  /** The reply line where the code starts (from 1): a verifier's line L is the reply's line codeLine + L - 1. */
  readonly codeLine: number;
  readonly commands: readonly EvolveCommand[];
}

export type ParsedReply = { readonly ok: true; readonly reply: Reply } | { readonly ok: false; readonly error: ReplyError };

const SECTION_BYTES: Readonly<Record<Section, number>> = {
  ANALYSIS: REPLY_LIMITS.analysisBytesMax,
  CODE: REPLY_LIMITS.codeBytesMax,
  CMD: REPLY_LIMITS.cmdBytesMax,
};
const FENCE_LANGUAGES: Readonly<Record<"CODE" | "CMD", ReadonlySet<string>>> = {
  CODE: new Set(["", "ts", "typescript", "c"]),
  CMD: new Set(["", "json", "jsonl", "ndjson"]),
};
/** A marker as a model might decorate it, alone on its line: `**[CODE]**`, `### [CMD]:`, ` [analysis]`. */
const NEAR_MARKER = /^[\s#*>_`]*\[(analysis|code|cmd)\][\s*_`:]*$/i;
const FENCE = /^(```|~~~)/;
const OPEN_FENCE = /^(```|~~~)\s*([A-Za-z0-9_+-]*)\s*$/;
const PROGRAM_NAME = /^[a-z][a-z0-9-]*$/;
const COMMAND_WORD = /^[a-z][a-z0-9-]*$/;
const PLAIN_WORD = /^[A-Za-z0-9._/:=@%+,-]+$/;
const TRUNCATED = new Set(["length", "max_tokens", "content_filter", "safety"]);

function refuse(code: ReplyRefusal, message: string, line?: number): ParsedReply {
  return { ok: false, error: line === undefined ? { code, message } : { code, message, line } };
}

/** The marker a line opens, if it is one: the marker at column 0, then the end of the line or a space. */
function markerOf(line: string): Section | undefined {
  if (!line.startsWith("[")) return undefined;
  for (const section of SECTIONS) {
    const marker = `[${section}]`;
    if (line.startsWith(marker) && (line.length === marker.length || line[marker.length] === " " || line[marker.length] === "\t")) return section;
  }
  return undefined;
}

/**
 * Parses a reply. `finish` is the provider's finish reason (OpenAI's finish_reason, Anthropic's
 * stop_reason, Gemini's finishReason); a truncated or filtered reply is refused outright, whatever
 * its text holds.
 */
export function parseReply(text: string, finish?: string): ParsedReply {
  if (finish !== undefined && TRUNCATED.has(finish.toLowerCase().replace(/-/g, "_"))) {
    return refuse("truncated", `the reply was cut short (finish reason ${JSON.stringify(finish.slice(0, 32))}): nothing of it is used`);
  }
  if (text.length > REPLY_LIMITS.replyBytesMax || utf8Length(text) > REPLY_LIMITS.replyBytesMax) {
    return refuse("too-large", `the reply is over ${REPLY_LIMITS.replyBytesMax} bytes`);
  }
  const lines = (text.startsWith("\uFEFF") ? text.slice(1) : text).split(/\r?\n/);
  const starts = new Map<Section, number>();
  const order: Section[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const section = markerOf(line);
    if (section === undefined) {
      if (NEAR_MARKER.test(line)) {
        const name = (/\[(\w+)\]/.exec(line)?.[1] ?? "").toUpperCase();
        return refuse("marker", `line ${i + 1}: a marker stands alone at the start of its line, in capitals, undecorated: [${name}]`, i + 1);
      }
      if (order.length === 0 && line.trim() !== "") {
        return refuse("preamble", `line ${i + 1}: text before [ANALYSIS]; the reply starts with [ANALYSIS]`, i + 1);
      }
      continue;
    }
    if (starts.has(section)) return refuse("duplicate", `line ${i + 1}: [${section}] a second time (first on line ${(starts.get(section) as number) + 1})`, i + 1);
    starts.set(section, i);
    order.push(section);
  }
  const missing = SECTIONS.filter((s) => !starts.has(s));
  if (missing.length > 0) return refuse("missing", `missing ${missing.map((s) => `[${s}]`).join(", ")}: a reply has [ANALYSIS], [CODE] and [CMD], in that order`);
  if (order.some((s, i) => s !== SECTIONS[i])) return refuse("order", `sections in the order ${order.map((s) => `[${s}]`).join(" ")}: a reply has [ANALYSIS], [CODE] and [CMD], in that order`);

  const body = (section: Section): { lines: string[]; first: number } => {
    const start = starts.get(section) as number;
    const index = SECTIONS.indexOf(section);
    const end = index + 1 < SECTIONS.length ? (starts.get(SECTIONS[index + 1] as Section) as number) : lines.length;
    const rest = (lines[start] as string).slice(section.length + 2).trim();
    return rest === "" ? { lines: lines.slice(start + 1, end), first: start + 2 } : { lines: [rest, ...lines.slice(start + 1, end)], first: start + 1 };
  };
  for (const section of SECTIONS) {
    const { lines: part } = body(section);
    let bytes = 0;
    for (const line of part) bytes += utf8Length(line) + 1;
    if (bytes > SECTION_BYTES[section]) return refuse("too-large", `[${section}] is over ${SECTION_BYTES[section]} bytes`, (starts.get(section) as number) + 1);
  }

  const analysis = body("ANALYSIS").lines.join("\n").trim();
  if (analysis === "") return refuse("empty", "[ANALYSIS] is empty: say what you see and why you act", (starts.get("ANALYSIS") as number) + 1);

  const code = unfence("CODE", body("CODE"));
  if ("error" in code) return refuse("fence", code.error, code.line);
  const cmd = unfence("CMD", body("CMD"));
  if ("error" in cmd) return refuse("fence", cmd.error, cmd.line);

  const commands: EvolveCommand[] = [];
  for (let i = 0; i < cmd.lines.length; i++) {
    const line = (cmd.lines[i] as string).trim();
    if (line === "") continue;
    const at = cmd.first + i;
    if (commands.length === REPLY_LIMITS.commandsMax) return refuse("command", `[CMD] holds more than ${REPLY_LIMITS.commandsMax} commands`, at);
    const parsed = parseCommand(line);
    if (typeof parsed === "string") return refuse("command", `line ${at}: ${parsed}`, at);
    commands.push(parsed);
  }
  const source = code.lines.join("\n");
  return {
    ok: true,
    reply: { analysis, code: source.trim() === "" ? undefined : `${source}\n`, codeLine: code.first, commands },
  };
}

/**
 * A section's lines without blank edges and without its one fenced block, if it has one; the
 * fence must enclose the whole section (no text outside it, no second block).
 */
function unfence(section: "CODE" | "CMD", part: { lines: string[]; first: number }): { lines: string[]; first: number } | { error: string; line: number } {
  let from = 0;
  let to = part.lines.length;
  while (from < to && (part.lines[from] as string).trim() === "") from++;
  while (to > from && (part.lines[to - 1] as string).trim() === "") to--;
  const lines = part.lines.slice(from, to);
  const first = part.first + from;
  const fenceAt = lines.findIndex((l) => FENCE.test(l));
  if (fenceAt < 0) return { lines, first };
  if (fenceAt > 0) return { error: `[${section}]: text outside the code fence (a fence, if any, encloses the whole section)`, line: first };
  const open = OPEN_FENCE.exec(lines[0] as string);
  if (open === null) return { error: `[${section}]: a malformed opening fence`, line: first };
  const language = (open[2] ?? "").toLowerCase();
  if (!FENCE_LANGUAGES[section].has(language)) {
    return { error: `[${section}]: a fence of language ${JSON.stringify(language.slice(0, 20))} (${[...FENCE_LANGUAGES[section]].filter((l) => l !== "").join(" or ")})`, line: first };
  }
  const last = lines.length - 1;
  if (last === 0 || (lines[last] as string).trimEnd() !== open[1]) return { error: `[${section}]: the fence is not closed at the section's end`, line: first };
  for (let i = 1; i < last; i++) {
    if (FENCE.test(lines[i] as string)) return { error: `[${section}]: more than one fenced block`, line: first + i };
  }
  return { lines: lines.slice(1, last), first: first + 1 };
}

function isProgramName(value: unknown): value is string {
  return typeof value === "string" && value.length <= PROGRAM_LIMITS.nameCharsMax && PROGRAM_NAME.test(value);
}

const COMMAND_KEYS: Readonly<Record<EvolveCommand["cmd"], readonly string[]>> = {
  exec: ["cmd", "program", "args"],
  kill: ["cmd", "program"],
  guard: ["cmd", "program"],
  ps: ["cmd"],
  shell: ["cmd", "line"],
};

/**
 * One [CMD] line: a JSON object, one of
 *   {"cmd":"exec","program":NAME,"args":[...]?}   run a program once (a command program with args)
 *   {"cmd":"kill","program":NAME}                 stop and remove a program
 *   {"cmd":"guard","program":NAME}                guard a task program (it moves to a survivor)
 *   {"cmd":"ps"}                                  list the programs
 *   {"cmd":"shell","line":"raft"}                 any other shell command, for the evolve policy
 * or why it is none of them.
 */
export function parseCommand(line: string): EvolveCommand | string {
  if (utf8Length(line) > REPLY_LIMITS.cmdBytesMax) return `a command over ${REPLY_LIMITS.cmdBytesMax} bytes`;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return "not a JSON object: each [CMD] line is one JSON object, e.g. {\"cmd\":\"exec\",\"program\":\"outliers\"}";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not a JSON object: each [CMD] line is one JSON object";
  const fields = value as Record<string, unknown>;
  const cmd = fields.cmd;
  if (typeof cmd !== "string" || !Object.hasOwn(COMMAND_KEYS, cmd)) {
    return `"cmd" must be one of ${Object.keys(COMMAND_KEYS).join(", ")} (other shell commands go as {"cmd":"shell","line":"..."})`;
  }
  const kind = cmd as EvolveCommand["cmd"];
  const allowed = COMMAND_KEYS[kind];
  const extra = Object.keys(fields).find((k) => !allowed.includes(k));
  if (extra !== undefined) return `${kind} takes only ${allowed.join(", ")} (not ${JSON.stringify(extra.slice(0, 32))})`;
  switch (kind) {
    case "exec": {
      if (!isProgramName(fields.program)) return `exec needs "program": a program's name (lowercase letters, digits, dashes; at most ${PROGRAM_LIMITS.nameCharsMax})`;
      const args = fields.args ?? [];
      if (!Array.isArray(args) || args.length > REPLY_LIMITS.argsMax) return `exec's "args" must be a list of at most ${REPLY_LIMITS.argsMax} strings`;
      for (const arg of args) {
        if (typeof arg !== "string" || arg.length > REPLY_LIMITS.argCharsMax || hasControl(arg)) return `exec's args must be strings of at most ${REPLY_LIMITS.argCharsMax} characters, without control characters`;
      }
      return { cmd: "exec", program: fields.program, args: args as string[] };
    }
    case "kill":
    case "guard":
      if (!isProgramName(fields.program)) return `${kind} needs "program": a program's name`;
      return { cmd: kind, program: fields.program };
    case "ps":
      return { cmd: "ps" };
    case "shell": {
      const text = fields.line;
      if (typeof text !== "string" || text.trim() === "" || text.length > LIMITS.shellLineCharsMax || hasControl(text)) {
        return `shell needs "line": one shell line of at most ${LIMITS.shellLineCharsMax} characters`;
      }
      const word = text.trim().split(/\s+/)[0] as string;
      if (!COMMAND_WORD.test(word)) return `shell line must start with a command's name (got ${JSON.stringify(word.slice(0, 32))})`;
      return { cmd: "shell", line: text.trim() };
    }
  }
}

/** The word as the shell's tokenizer reads it back: plain, or in single quotes (a quote inside closes, adds "'", reopens). */
function shellWord(word: string): string {
  if (PLAIN_WORD.test(word)) return word;
  return `'${word.replace(/'/g, "'\"'\"'")}'`;
}

/** The shell line a command runs as: what the policy matches and `evolve log` shows. */
export function commandLine(command: EvolveCommand): string {
  switch (command.cmd) {
    case "exec":
      return ["exec", command.program, ...command.args].map(shellWord).join(" ");
    case "kill":
    case "guard":
      return `${command.cmd} ${command.program}`;
    case "ps":
      return "ps";
    case "shell":
      return command.line;
  }
}

/** A refusal as one line, for the shell and for the mind asked again. */
export function formatReplyError(error: ReplyError): string {
  return `refused (${error.code}): ${error.message}`;
}
