// The evolve policy (docs/protocols/programs.md, "The policy"): which [CMD] lines a mind may run
// alone. An allow-list of commands that only read, plus running programs (they are verified and
// sandboxed, and touch only what they were granted). Everything else — killing or guarding a
// program, writing, spawning, changing the cluster — waits for a person: `evolve approve N`.
import { commandLine, type EvolveCommand } from "./reply.ts";

/**
 * Shell lines a mind may run alone, as leading words: a line whose words start with an entry is
 * allowed; `exact` entries allow no further words (`dtr` alone shows the model; `dtr train` trains).
 */
export const ALLOWED_LINES: ReadonlyArray<{ readonly words: readonly string[]; readonly exact?: boolean }> = [
  { words: ["status"], exact: true },
  { words: ["nodes"], exact: true },
  { words: ["ps"], exact: true },
  { words: ["mem"], exact: true },
  { words: ["net"], exact: true },
  { words: ["ver"], exact: true },
  { words: ["help"] },
  { words: ["raft"], exact: true },
  { words: ["vital"], exact: true },
  { words: ["dtr"], exact: true },
  { words: ["dtr", "stat"], exact: true },
  { words: ["fl", "status"], exact: true },
  { words: ["moe"], exact: true },
  { words: ["ga"], exact: true },
  { words: ["kv", "get"] },
  { words: ["topic", "ls"], exact: true },
  { words: ["memory", "search"] },
  { words: ["memory", "stat"], exact: true },
  { words: ["mind", "list"], exact: true },
  { words: ["dmn"], exact: true },
  { words: ["infer"] },
];

export interface PolicyDecision {
  /** The shell line the command runs as. */
  readonly line: string;
  readonly allowed: boolean;
  /** Why it waits for approval, when it does. */
  readonly reason: string | undefined;
}

/** Splits a line into words the way the policy matches it (whitespace; quotes make it wait). */
function words(line: string): string[] | undefined {
  if (/['"\\]/.test(line)) return undefined;
  return line.trim().split(/\s+/);
}

export function decide(command: EvolveCommand): PolicyDecision {
  const line = commandLine(command);
  switch (command.cmd) {
    case "exec":
    case "ps":
      return { line, allowed: true, reason: undefined };
    case "kill":
    case "guard":
      return { line, allowed: false, reason: `${command.cmd} changes what runs in the cluster: a person approves it` };
    case "shell": {
      const w = words(command.line);
      if (w === undefined) return { line, allowed: false, reason: "a quoted line waits for a person" };
      const ok = ALLOWED_LINES.some((entry) => entry.words.every((word, i) => w[i] === word) && (entry.exact !== true || w.length === entry.words.length));
      return ok ? { line, allowed: true, reason: undefined } : { line, allowed: false, reason: `${w[0] ?? ""} is not on the allow-list (commands that only read, and exec)` };
    }
  }
}

/** The allow-list as the prompt shows it. */
export function allowListText(): string {
  return ALLOWED_LINES.map((e) => `${e.words.join(" ")}${e.exact === true ? "" : " …"}`).join(", ");
}
