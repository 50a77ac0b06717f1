// Data-driven Raft scenarios: every file under test/testdata/raft/ is a list of blocks
//
//   # comments (the intent: the paper's sentence, the etcd test it ports)
//   command
//   [command...]
//   ----
//   expected output (no blank lines; "ok" when the commands printed nothing)
//
// run against one InteractionEnv (raft-interaction.ts) per file, in order. Each file is one test;
// a block whose output differs fails it with the block's line number, expected and actual output.
// PK_REWRITE=1 rewrites the files with the actual output instead (then read the diff!).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { InteractionEnv } from "./raft-interaction.ts";

const ROOT = fileURLToPath(new URL("../testdata/raft/", import.meta.url));
const REWRITE = process.env.PK_REWRITE === "1";

interface Block {
  /** 1-based line of the first command. */
  readonly line: number;
  readonly commands: string[];
  readonly expected: string[];
  actual: string[];
}

interface Parsed {
  /** The file as pieces: verbatim text, or a block's output slot. */
  readonly pieces: (string | Block)[];
  readonly blocks: Block[];
}

function parse(text: string): Parsed {
  const lines = text.replace(/\n$/, "").split("\n");
  const pieces: (string | Block)[] = [];
  const blocks: Block[] = [];
  let commands: string[] = [];
  let firstLine = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === "----") {
      if (commands.length === 0) throw new Error(`line ${i + 1}: "----" without a command`);
      pieces.push(line);
      const expected: string[] = [];
      while (i + 1 < lines.length && lines[i + 1] !== "") expected.push(lines[++i]!);
      const block: Block = { line: firstLine, commands, expected, actual: [] };
      pieces.push(block);
      blocks.push(block);
      commands = [];
      continue;
    }
    pieces.push(line);
    if (line.trim() === "" || line.startsWith("#")) continue;
    if (commands.length === 0) firstLine = i + 1;
    commands.push(line.trim());
  }
  if (commands.length > 0) throw new Error(`line ${firstLine}: commands without "----"`);
  return { pieces, blocks };
}

function render(parsed: Parsed): string {
  const out: string[] = [];
  for (const piece of parsed.pieces) {
    if (typeof piece === "string") out.push(piece);
    else out.push(...piece.actual);
  }
  return out.join("\n") + "\n";
}

function scenarioFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...scenarioFiles(path));
    else if (entry.name.endsWith(".txt")) out.push(path);
  }
  return out;
}

const FILES = scenarioFiles(ROOT);

test("raft scenarios: the data files are found (a wrong folder would run no scenario at all)", () => {
  assert.ok(FILES.length > 0, `no scenario file under ${ROOT}`);
});

for (const file of FILES) {
  const name = relative(ROOT, file);
  test(`raft scenario ${name}`, () => {
    const text = readFileSync(file, "utf8");
    const parsed = parse(text);
    assert.ok(parsed.blocks.length > 0, `${name}: no block (commands, "----", expected output)`);
    const env = new InteractionEnv();
    const failures: string[] = [];
    for (const block of parsed.blocks) {
      const actual: string[] = [];
      for (const command of block.commands) {
        try {
          actual.push(...env.run(command));
        } catch (err) {
          actual.push(`error: ${(err as Error).message}`);
        }
      }
      block.actual = actual.length > 0 ? actual.map((l) => (l === "" ? " " : l)) : ["ok"];
      if (block.actual.join("\n") !== block.expected.join("\n")) {
        failures.push(`${name}:${block.line}: ${block.commands.join("; ")}\n--- expected\n${block.expected.join("\n")}\n--- actual\n${block.actual.join("\n")}`);
      }
    }
    if (REWRITE) {
      const rendered = render(parsed);
      if (rendered !== text) writeFileSync(file, rendered);
      return;
    }
    assert.equal(failures.length, 0, failures.join("\n\n"));
  });
}
