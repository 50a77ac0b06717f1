// A mind's reply to `evolve` (src/core/evolve/reply.ts): the three sections parsed strictly, each
// way a reply can be malformed refused with its own code and a message that says what to fix, [CMD]
// lines checked against the command schema, command lines the shell reads back as they were meant,
// and the parser fuzzed: arbitrary text never throws, and the byte caps apply before any work.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { REPLY_LIMITS, commandLine, formatReplyError, parseCommand, parseReply, type EvolveCommand, type ReplyRefusal } from "../../src/core/evolve/reply.ts";
import { tokenize } from "../../src/node/shell.ts";

const PROGRAM = [
  "// @pk-program {\"name\":\"outliers\",\"version\":\"1.0.0\",\"hook\":\"sensor.prefilter\",\"capabilities\":{\"log\":true}}",
  "import { log, type Reading } from \"pk:program\";",
  "export function prefilter(readings: readonly Reading[]): readonly Reading[] {",
  "  return readings;",
  "}",
];

const GOOD = [
  "[ANALYSIS]",
  "Three of the last hundred temperature readings are 40 degrees off the mean: a loose probe.",
  "",
  "[CODE]",
  "```ts",
  ...PROGRAM,
  "```",
  "",
  "[CMD]",
  "```json",
  "{\"cmd\":\"exec\",\"program\":\"outliers\"}",
  "{\"cmd\":\"shell\",\"line\":\"dtr stat\"}",
  "```",
].join("\n");

function refusal(text: string, finish?: string): { code: ReplyRefusal; message: string; line?: number } {
  const parsed = parseReply(text, finish);
  assert.equal(parsed.ok, false, `expected a refusal of:\n${text.slice(0, 400)}`);
  if (parsed.ok) throw new Error("unreachable");
  return parsed.error;
}

test("reply: a good reply gives its analysis, its code without the fences, and its commands", () => {
  const parsed = parseReply(GOOD, "stop");
  assert.ok(parsed.ok, parsed.ok ? "" : formatReplyError(parsed.error));
  const { analysis, code, codeLine, commands } = parsed.reply;
  assert.match(analysis, /loose probe/);
  assert.equal(code, `${PROGRAM.join("\n")}\n`);
  // The code's first line is the reply's line 6 (after [CODE] and the fence).
  assert.equal(GOOD.split("\n")[codeLine - 1], PROGRAM[0]);
  assert.deepEqual(commands, [{ cmd: "exec", program: "outliers", args: [] }, { cmd: "shell", line: "dtr stat" }]);
});

test("reply: a C program may come in a ```c fence (its manifest says \"language\":\"c\")", () => {
  const parsed = parseReply(GOOD.replace("```ts", "```c"));
  assert.ok(parsed.ok, parsed.ok ? "" : formatReplyError(parsed.error));
  assert.equal(parsed.reply.code, `${PROGRAM.join("\n")}\n`);
});

test("reply: plain sections without fences, CRLF line ends, text on a marker's line, an empty [CODE] and [CMD]", () => {
  const plain = ["[ANALYSIS] All is well.", "[CODE]", ...PROGRAM, "[CMD]", "{\"cmd\":\"ps\"}"].join("\r\n");
  const parsed = parseReply(plain);
  assert.ok(parsed.ok);
  assert.equal(parsed.reply.analysis, "All is well.");
  assert.equal(parsed.reply.code, `${PROGRAM.join("\n")}\n`);
  assert.equal(parsed.reply.codeLine, 3);
  assert.deepEqual(parsed.reply.commands, [{ cmd: "ps" }]);

  const nothing = parseReply("[ANALYSIS]\nNo help needed: every node is alive and the tick is on time.\n[CODE]\n\n[CMD]\n");
  assert.ok(nothing.ok);
  assert.equal(nothing.reply.code, undefined);
  assert.deepEqual(nothing.reply.commands, []);
  // A byte-order mark before [ANALYSIS] is not text.
  assert.ok(parseReply(`\uFEFF${GOOD}`).ok);
});

test("reply: a reply the provider cut short is refused outright, whatever it holds", () => {
  for (const finish of ["length", "max_tokens", "MAX_TOKENS", "max-tokens", "content_filter", "SAFETY"]) {
    const error = refusal(GOOD, finish);
    assert.equal(error.code, "truncated");
    assert.match(error.message, /cut short/);
  }
  for (const finish of ["stop", "end_turn", "STOP", "stop_sequence", "other"]) assert.ok(parseReply(GOOD, finish).ok, finish);
});

test("reply: each malformed shape is refused with its code, its line and what to do", () => {
  const cases: [string, string, ReplyRefusal, RegExp, number | undefined][] = [
    ["preamble", `Sure! Here is my answer.\n${GOOD}`, "preamble", /text before \[ANALYSIS\]/, 1],
    ["decorated marker", GOOD.replace("[CODE]", "**[CODE]**"), "marker", /alone at the start of its line/, 4],
    ["heading marker", GOOD.replace("[CMD]", "### [CMD]:"), "marker", /\[CMD\]/, 13],
    ["lowercase marker", GOOD.replace("[ANALYSIS]", "[analysis]"), "marker", /in capitals/, 1],
    ["indented marker", GOOD.replace("[CODE]", "  [CODE]"), "marker", /start of its line/, 4],
    ["no [CMD]", GOOD.slice(0, GOOD.indexOf("[CMD]")), "missing", /missing \[CMD\]/, undefined],
    ["no sections", "I think the cluster is fine.", "preamble", /before \[ANALYSIS\]/, 1],
    ["only analysis", "[ANALYSIS]\nfine", "missing", /missing \[CODE\], \[CMD\]/, undefined],
    ["twice", `${GOOD}\n[CODE]\nmore`, "duplicate", /\[CODE\] a second time \(first on line 4\)/, 18],
    ["order", "[ANALYSIS]\nx\n[CMD]\n\n[CODE]\n", "order", /\[ANALYSIS\] \[CMD\] \[CODE\]/, undefined],
    ["empty analysis", "[ANALYSIS]\n  \n[CODE]\n[CMD]\n", "empty", /\[ANALYSIS\] is empty/, 1],
    ["text outside the fence", GOOD.replace("```ts", "Here is the code:\n```ts"), "fence", /text outside the code fence/, 5],
    ["two blocks", GOOD.replace("export function", "```\n```ts\nexport function"), "fence", /more than one fenced block/, 8],
    ["unclosed fence", "[ANALYSIS]\nx\n[CODE]\n```ts\nlet a = 1;\n[CMD]\n", "fence", /not closed/, 4],
    ["a Python fence", GOOD.replace("```ts", "```python"), "fence", /language "python"/, 5],
    ["a ts fence in [CMD]", GOOD.replace("```json", "```ts"), "fence", /json/, 14],
    ["a command not JSON", GOOD.replace("{\"cmd\":\"exec\",\"program\":\"outliers\"}", "exec outliers"), "command", /not a JSON object/, 15],
    ["an unknown command", GOOD.replace("\"exec\"", "\"rm\""), "command", /"cmd" must be one of exec, kill, guard, ps, shell/, 15],
    ["an extra field", GOOD.replace("\"program\":\"outliers\"}", "\"program\":\"outliers\",\"sudo\":true}"), "command", /exec takes only cmd, program, args \(not "sudo"\)/, 15],
    ["a bad program name", GOOD.replace("\"program\":\"outliers\"", "\"program\":\"../etc\""), "command", /exec needs "program"/, 15],
    ["a shell line with a newline", GOOD.replace("dtr stat", "dtr stat\\nrm -r /"), "command", /one shell line/, 16],
    ["a shell line of no command", GOOD.replace("dtr stat", "$(reboot)"), "command", /start with a command's name/, 16],
    ["an array", GOOD.replace("{\"cmd\":\"exec\",\"program\":\"outliers\"}", "[\"exec\"]"), "command", /not a JSON object/, 15],
  ];
  for (const [name, text, code, message, line] of cases) {
    const error = refusal(text);
    assert.equal(error.code, code, `${name}: ${error.message}`);
    assert.match(error.message, message, name);
    if (line !== undefined) assert.equal(error.line, line, `${name}: line`);
    assert.match(formatReplyError(error), new RegExp(`^refused \\(${code}\\): `));
  }
});

test("reply: the byte caps of the reply, of each section and of [CMD]'s count", () => {
  assert.equal(refusal("x".repeat(REPLY_LIMITS.replyBytesMax + 1)).code, "too-large");
  // Bytes, not characters: 50,000 three-byte characters are over 128 KiB.
  assert.equal(refusal(`[ANALYSIS]\n${"€".repeat(50_000)}\n[CODE]\n[CMD]\n`).code, "too-large");
  const bigAnalysis = refusal(`[ANALYSIS]\n${"a".repeat(REPLY_LIMITS.analysisBytesMax)}\n[CODE]\n[CMD]\n`);
  assert.equal(bigAnalysis.code, "too-large");
  assert.match(bigAnalysis.message, /\[ANALYSIS\] is over/);
  assert.match(refusal(`[ANALYSIS]\nx\n[CODE]\n${"// x\n".repeat(REPLY_LIMITS.codeBytesMax / 5 + 1)}[CMD]\n`).message, /\[CODE\] is over/);
  assert.match(refusal(`[ANALYSIS]\nx\n[CODE]\n[CMD]\n${`{"cmd":"ps"}\n`.repeat(REPLY_LIMITS.cmdBytesMax / 13 + 1)}`).message, /\[CMD\] is over/);
  const many = `[ANALYSIS]\nx\n[CODE]\n[CMD]\n${"{\"cmd\":\"ps\"}\n".repeat(REPLY_LIMITS.commandsMax + 1)}`;
  assert.match(refusal(many).message, new RegExp(`more than ${REPLY_LIMITS.commandsMax} commands`));
  assert.ok(parseReply(`[ANALYSIS]\nx\n[CODE]\n[CMD]\n${"{\"cmd\":\"ps\"}\n".repeat(REPLY_LIMITS.commandsMax)}`).ok);
  // A huge input is refused on its length before it is split or scanned.
  assert.equal(refusal("[ANALYSIS]\n".repeat(1_000_000)).code, "too-large");
});

test("reply: the [CMD] schema, command by command", () => {
  const ok: [string, EvolveCommand][] = [
    ["{\"cmd\":\"exec\",\"program\":\"outliers\",\"args\":[\"--window\",\"100\"]}", { cmd: "exec", program: "outliers", args: ["--window", "100"] }],
    ["{\"cmd\":\"kill\",\"program\":\"outliers\"}", { cmd: "kill", program: "outliers" }],
    ["{\"cmd\":\"guard\",\"program\":\"watch-temp\"}", { cmd: "guard", program: "watch-temp" }],
    ["{\"cmd\":\"ps\"}", { cmd: "ps" }],
    ["{\"cmd\":\"shell\",\"line\":\"  raft  \"}", { cmd: "shell", line: "raft" }],
  ];
  for (const [line, command] of ok) assert.deepEqual(parseCommand(line), command, line);
  const bad: [string, RegExp][] = [
    ["{\"cmd\":\"exec\"}", /exec needs "program"/],
    ["{\"cmd\":\"exec\",\"program\":\"a\",\"args\":\"x\"}", /list of at most/],
    [`{"cmd":"exec","program":"a","args":${JSON.stringify(Array(REPLY_LIMITS.argsMax + 1).fill("x"))}}`, /list of at most 16/],
    [`{"cmd":"exec","program":"a","args":["${"x".repeat(REPLY_LIMITS.argCharsMax + 1)}"]}`, /at most 256 characters/],
    ["{\"cmd\":\"exec\",\"program\":\"a\",\"args\":[\"a\\u0000b\"]}", /control characters/],
    ["{\"cmd\":\"exec\",\"program\":\"A\"}", /program/],
    [`{"cmd":"kill","program":"${"a".repeat(49)}"}`, /kill needs "program"/],
    ["{\"cmd\":\"ps\",\"all\":true}", /ps takes only cmd/],
    ["{\"cmd\":\"shell\",\"line\":\"\"}", /one shell line/],
    [`{"cmd":"shell","line":"status ${"x".repeat(5000)}"}`, /one shell line of at most 4096/],
    ["{\"cmd\":\"constructor\"}", /"cmd" must be one of/],
    ["{\"cmd\":\"__proto__\"}", /"cmd" must be one of/],
    ["{\"__proto__\":{\"cmd\":\"ps\"}}", /"cmd" must be one of/],
    ["null", /not a JSON object/],
    ["{\"cmd\":\"ps\"} {\"cmd\":\"ps\"}", /not a JSON object/],
  ];
  for (const [line, message] of bad) {
    const result = parseCommand(line);
    assert.equal(typeof result, "string", line);
    assert.match(result as string, message, line);
  }
});

test("reply: a command's shell line is read back by the shell's tokenizer as the command meant it (property)", () => {
  const word = fc.string({ minLength: 0, maxLength: 40 }).filter((s) => !/[\u0000-\u001f\u007f]/.test(s));
  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/);
  fc.assert(fc.property(name, fc.array(word, { maxLength: 6 }), (program, args) => {
    const line = commandLine({ cmd: "exec", program, args });
    const tokens = tokenize(line);
    assert.ok(tokens.ok, line);
    assert.deepEqual(tokens.tokens, ["exec", program, ...args]);
  }), { numRuns: 2_000 });
  assert.equal(commandLine({ cmd: "exec", program: "x", args: ["it's", "a b", ""] }), "exec x 'it'\"'\"'s' 'a b' ''");
  assert.equal(commandLine({ cmd: "guard", program: "x" }), "guard x");
  assert.equal(commandLine({ cmd: "shell", line: "dtr stat" }), "dtr stat");
});

/** Reply-shaped text: markers (exact and decorated), fences, JSON lines and noise, in any order. */
const fragment = fc.oneof(
  fc.constantFrom("[ANALYSIS]", "[CODE]", "[CMD]", "**[CODE]**", "[cmd]", "```", "```ts", "```json", "~~~", "", " ", "\r"),
  fc.constantFrom("{\"cmd\":\"ps\"}", "{\"cmd\":\"exec\",\"program\":\"a\",\"args\":[\"x\"]}", "{\"cmd\":\"shell\",\"line\":\"raft\"}", "{\"cmd\":", "[1,2]", "{}"),
  fc.string({ maxLength: 30 }),
  fc.string({ unit: "binary", maxLength: 30 }),
);

test("reply: fuzz — arbitrary text and reply-shaped text never throw; every answer is a reply or a coded refusal", () => {
  const codes = new Set<ReplyRefusal>(["truncated", "too-large", "preamble", "marker", "missing", "duplicate", "order", "empty", "fence", "command"]);
  const check = (text: string, finish?: string): void => {
    const parsed = parseReply(text, finish);
    if (parsed.ok) {
      assert.ok(parsed.reply.analysis.length > 0);
      assert.ok(parsed.reply.commands.length <= REPLY_LIMITS.commandsMax);
      assert.ok(parsed.reply.code === undefined || parsed.reply.code.length <= REPLY_LIMITS.codeBytesMax + 1);
    } else {
      assert.ok(codes.has(parsed.error.code), parsed.error.code);
      assert.ok(parsed.error.message.length > 0 && parsed.error.message.length < 500);
    }
  };
  fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 2_000 }), fc.option(fc.string({ maxLength: 12 }), { nil: undefined }), (text, finish) => check(text, finish)), { numRuns: 3_000 });
  fc.assert(fc.property(fc.array(fragment, { maxLength: 60 }), fc.constantFrom("\n", "\r\n"), (parts, eol) => check(parts.join(eol))), { numRuns: 5_000 });
  // Near the cap, many lines that each look like a marker: still linear, still an answer.
  check(`[ANALYSIS]\nx\n[CODE]\n${"[code] = x;\n".repeat(10_000)}[CMD]\n`);
  check("**[CODE]**\n".repeat(11_000));
  check(`[ANALYSIS]\nx\n[CODE]\n[CMD]\n${"{".repeat(8_000)}`);
  check(`[ANALYSIS]\nx\n[CODE]\n[CMD]\n${"[".repeat(8_000)}${"]".repeat(100)}`);
});
