// The shell: a registry of named commands and the one way lines are run on a node (DESIGN.md §5).
// The interactive `pk shell` and `POST /v1/shell` both come here. A line is bounded
// (LIMITS.shellLineCharsMax), split by a small quote-aware tokenizer, and run by its command;
// mistakes are values — an unknown command or bad arguments give a one-line error plus the usage,
// never an exception. Commands return plain text (tables aligned by formatTable).
import { assert, AssertionFailure } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";

export interface Command<C> {
  /** Lowercase word: letters, digits and dashes, starting with a letter. */
  readonly name: string;
  /** One line for `help`. */
  readonly summary: string;
  /** The synopsis, e.g. "help [COMMAND]". */
  readonly usage: string;
  /**
   * Runs the command; throws UsageError for bad arguments. A command that waits for the cluster
   * (kv, say) returns a promise: executeAsync awaits it, execute answers that it runs on.
   */
  run(args: readonly string[], ctx: CommandContext<C>): string | Promise<string>;
  /**
   * The command's report as data, for `COMMAND ... --json` (`pk shell --json -c`): the shell
   * answers it as one JSON document. A command without it answers `--json` with an error.
   */
  json?(args: readonly string[], ctx: CommandContext<C>): unknown;
}

/** Where a command may stream output as it goes (`chat`), and the caller's cancellation. */
export interface ShellStream {
  /** Output so far; the command's answer then holds only what is left to say. */
  readonly out: (chunk: string) => void;
  /** Aborted when the caller goes away. */
  readonly signal?: AbortSignal | undefined;
}

/** What a command receives: the shell's context, the shell itself (for `help`), and a stream when the caller takes one. */
export type CommandContext<C> = C & { readonly shell: Shell<C>; readonly stream?: ShellStream | undefined };

export interface ShellResult {
  readonly ok: boolean;
  readonly output: string;
}

/** Thrown by a command for bad arguments: the shell answers the message and the usage. */
export class UsageError extends Error {
  override name = "UsageError";
}

export type TokenizeResult =
  | { readonly ok: true; readonly tokens: string[] }
  | { readonly ok: false; readonly error: string };

const NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
/** Commands one shell holds; far more than the built-ins will ever need. */
const COMMANDS_MAX = LIMITS.shell.commandsMax;

/**
 * Splits a line into words. Whitespace separates words; 'single quotes' keep everything literally;
 * "double quotes" keep everything but allow \" and \\; outside quotes a backslash escapes the next
 * character. Adjacent pieces join into one word (a"b c"d is one word: ab cd).
 */
export function tokenize(line: string): TokenizeResult {
  const tokens: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const ch = line[i] as string;
    if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r") {
      if (inWord) tokens.push(word);
      word = "";
      inWord = false;
      i++;
    } else if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) return { ok: false, error: `unterminated ' quote at column ${i + 1}` };
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (ch === "\"") {
      let j = i + 1;
      let closed = false;
      while (j < line.length) {
        const c = line[j] as string;
        if (c === "\"") {
          closed = true;
          break;
        }
        if (c === "\\" && (line[j + 1] === "\"" || line[j + 1] === "\\")) {
          word += line[j + 1];
          j += 2;
        } else {
          word += c;
          j++;
        }
      }
      if (!closed) return { ok: false, error: `unterminated " quote at column ${i + 1}` };
      inWord = true;
      i = j + 1;
    } else if (ch === "\\") {
      if (i + 1 >= line.length) return { ok: false, error: "dangling \\ at the end of the line" };
      word += line[i + 1];
      inWord = true;
      i += 2;
    } else {
      word += ch;
      inWord = true;
      i++;
    }
  }
  if (inWord) tokens.push(word);
  return { ok: true, tokens };
}

export class Shell<C> {
  readonly #context: C;
  readonly #commands = new Map<string, Command<C>>();

  constructor(context: C) {
    this.#context = context;
  }

  registerCommand(command: Command<C>): void {
    assert(NAME_PATTERN.test(command.name), `Shell: bad command name ${JSON.stringify(command.name)}`);
    assert(!this.#commands.has(command.name), `Shell: command ${command.name} registered twice`);
    assert(this.#commands.size < COMMANDS_MAX, "Shell: too many commands");
    this.#commands.set(command.name, command);
  }

  /** Registered commands in name order. */
  commands(): Command<C>[] {
    return [...this.#commands.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  command(name: string): Command<C> | undefined {
    return this.#commands.get(name);
  }

  /** Command names that start with `prefix`, for readline completion. */
  completions(prefix: string): string[] {
    return this.commands().map((command) => command.name).filter((name) => name.startsWith(prefix));
  }

  /** Runs one line, waiting for commands that answer later. Same error rules as execute(). */
  async executeAsync(line: string, stream?: ShellStream): Promise<ShellResult> {
    const result = this.#run(line, stream);
    if (typeof result === "string") return { ok: true, output: result };
    if (!(result instanceof Promise)) return result;
    return result.then((output) => ({ ok: true, output }), (error: unknown) => this.#failure(line, error));
  }

  /** Runs one line. Never throws for bad input; a broken invariant (AssertionFailure) propagates. */
  execute(line: string): ShellResult {
    const result = this.#run(line);
    if (typeof result === "string") return { ok: true, output: result };
    if (!(result instanceof Promise)) return result;
    result.catch(() => undefined);
    return { ok: true, output: "started; its answer goes nowhere here (use pk shell or POST /v1/shell to wait for it)" };
  }

  #failure(line: string, error: unknown): ShellResult {
    if (error instanceof AssertionFailure) throw error;
    const name = line.trim().split(/\s+/, 1)[0] ?? "";
    const command = this.#commands.get(name);
    if (error instanceof UsageError) return { ok: false, output: `${name}: ${error.message}\nusage: ${command?.usage ?? name}` };
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, output: `${name}: failed: ${message}` };
  }

  #run(line: string, stream?: ShellStream): ShellResult | Promise<string> | string {
    if (line.length > LIMITS.shellLineCharsMax) {
      return { ok: false, output: `line too long: ${line.length} characters, at most ${LIMITS.shellLineCharsMax}` };
    }
    const tokenized = tokenize(line);
    if (!tokenized.ok) return { ok: false, output: `${tokenized.error}\n${this.#generalUsage()}` };
    const [name, ...args] = tokenized.tokens;
    if (name === undefined) return { ok: true, output: "" };
    const command = this.#commands.get(name);
    if (command === undefined) {
      return { ok: false, output: `unknown command ${JSON.stringify(name.slice(0, 40))}\n${this.#generalUsage()}` };
    }
    try {
      if (args[args.length - 1] === "--json") {
        if (command.json === undefined) return { ok: false, output: `${name} has no --json output` };
        const value: unknown = command.json(args.slice(0, -1), { ...this.#context, shell: this, stream });
        return value instanceof Promise ? value.then((v: unknown) => JSON.stringify(v)) : JSON.stringify(value);
      }
      const output = command.run(args, { ...this.#context, shell: this, stream });
      return typeof output === "string" ? { ok: true, output } : output;
    } catch (error) {
      if (error instanceof AssertionFailure) throw error;
      if (error instanceof UsageError) return { ok: false, output: `${name}: ${error.message}\nusage: ${command.usage}` };
      const message = error instanceof Error ? error.message : String(error);
      return { ok: false, output: `${name}: failed: ${message}` };
    }
  }

  #generalUsage(): string {
    return `usage: COMMAND [ARGUMENT...]; commands: ${this.commands().map((c) => c.name).join(", ")} ("help COMMAND" for one)`;
  }
}

/** Plain aligned text: a header row, then the rows; columns separated by two spaces. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** Aligned "key  value" lines. */
export function formatFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...fields.map(([key]) => key.length));
  return fields.map(([key, value]) => `${key.padEnd(width)}  ${value}`.trimEnd()).join("\n");
}
