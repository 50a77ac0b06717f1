// Issue 15, acceptance 2 and 3, on three real `pk node` processes with a local server speaking
// OpenAI's wire format as the mind (test/fakes/mind-server.ts --replies: evolve's prompt is
// answered from a file named by the request's goal):
//   - `evolve` prints the state, the analysis, the verification report and the program's own
//     output from its dry run, and deploys it; inference afterwards goes through the prefilter,
//     which `dtr stat` shows; `ps` lists the program with its runs and gas; the evolve log is
//     replicated to the other nodes;
//   - deliberately bad replies (syntax, forbidden APIs, a wrong hook signature, loops, memory
//     bombs, a broken contract, missing or misplaced sections, bad commands, an older version) are
//     each refused with a clear reason after being asked again once, and nothing is deployed; a
//     [CMD] line outside the allow-list is not run and waits for `evolve approve N`;
//   - `evolve --from /shared/FILE`: a reply written by a person;
//   - with a node killed (REDUCED), the next evolve asks the frontier mind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { converged, kill9, shell, statusOf, Swarm, until } from "./self-helpers.ts";

const OUTLIERS = readFileSync(new URL("../fixtures/evolve/outliers.ts.txt", import.meta.url), "utf8");

function reply(analysis: string, code: string, commands: readonly string[] = []): string {
  const codeSection = code === "" ? "" : `\`\`\`ts\n${code}\n\`\`\`\n`;
  const cmdSection = commands.length === 0 ? "" : `\`\`\`json\n${commands.join("\n")}\n\`\`\`\n`;
  return `[ANALYSIS]\n${analysis}\n\n[CODE]\n${codeSection}\n[CMD]\n${cmdSection}`;
}

/** A prefilter program named NAME whose body is BODY (with the manifest's capabilities). */
function prefilterProgram(name: string, body: string, capabilities = "{\"log\":true}", imports = "log, type Reading"): string {
  return `// @pk-program {"name":"${name}","version":"1.0.0","hook":"sensor.prefilter","capabilities":${capabilities}}
import { ${imports} } from "pk:program";
export function prefilter(readings: readonly Reading[]): readonly Reading[] {
${body}
}`;
}

const GOOD = reply("Three of the last readings are forty degrees off the others: a loose probe. A prefilter drops them before the Brain.", OUTLIERS, [
  "{\"cmd\":\"ps\"}",
  "{\"cmd\":\"shell\",\"line\":\"dtr stat\"}",
]);

/** Deliberately bad replies, each with what its refusal must say. */
const BAD: ReadonlyArray<{ name: string; text: string; reason: RegExp }> = [
  { name: "syntax", text: reply("x", prefilterProgram("bad-syntax", "  return readings.filter((r) => r.value < 10;")), reason: /syntax|types/ },
  { name: "eval", text: reply("x", prefilterProgram("bad-eval", "  eval(\"1\");\n  return readings;")), reason: /dynamic-code/ },
  { name: "require", text: reply("x", prefilterProgram("bad-require", "  const fs = require(\"fs\");\n  log.info(String(fs));\n  return readings;")), reason: /globals|imports|types/ },
  { name: "hook-signature", text: reply("x", "// @pk-program {\"name\":\"bad-hook\",\"version\":\"1.0.0\",\"hook\":\"sensor.prefilter\"}\nexport function prefilter(x: number): number {\n  return x + 1;\n}"), reason: /hook/ },
  { name: "endless-loop", text: reply("x", prefilterProgram("bad-loop", "  for (;;) {\n    log.info(\"x\");\n  }")), reason: /loops/ },
  { name: "gas", text: reply("x", prefilterProgram("bad-gas", "  let i = 1;\n  while (i > 0) i = (i * 7 + 1) % 1000003 + 1;\n  return readings;")), reason: /dry run failed: (gas|wall)/ },
  { name: "memory-bomb", text: reply("x", prefilterProgram("bad-memory", "  const a: number[][] = [];\n  for (let i = 0; i < 10000000; i++) a.push([i, i, i]);\n  log.info(String(a.length));\n  return readings;")), reason: /dry run failed: (memory|gas|wall)/ },
  { name: "throws", text: reply("x", prefilterProgram("bad-throw", "  if (readings.length > 0) throw new Error(\"boom\");\n  return readings;")), reason: /dry run failed: throw: .*boom/ },
  { name: "contract", text: reply("x", prefilterProgram("bad-contract", "  return [...readings, { sensor: \"evil\", value: 1, at: 0 }];")), reason: /dry run failed: contract/ },
  { name: "missing", text: "[ANALYSIS]\nAll is well.\n", reason: /missing/ },
  { name: "preamble", text: `Sure! Here is my answer.\n${GOOD}`, reason: /preamble/ },
  { name: "order", text: `[CODE]\n\n[ANALYSIS]\nx\n\n[CMD]\n`, reason: /order|preamble/ },
  { name: "duplicate", text: `[ANALYSIS]\nx\n[ANALYSIS]\ny\n[CODE]\n\n[CMD]\n`, reason: /duplicate/ },
  { name: "marker", text: `[ANALYSIS]\nx\n\n**[CODE]**\n\n[CMD]\n`, reason: /marker/ },
  { name: "empty-analysis", text: `[ANALYSIS]\n\n[CODE]\n\n[CMD]\n`, reason: /empty/ },
  { name: "two-fences", text: `[ANALYSIS]\nx\n[CODE]\n\`\`\`ts\nconst a = 1;\n\`\`\`\n\`\`\`ts\nconst b = 2;\n\`\`\`\n[CMD]\n`, reason: /fence/ },
  { name: "bad-command", text: reply("x", "", ["{\"cmd\":\"rm\",\"path\":\"/\"}"]), reason: /command/ },
  { name: "capability", text: reply("x", prefilterProgram("bad-cap", "  return readings;", "{\"log\":true,\"net\":true}")), reason: /capabilities\.net|manifest/ },
  { name: "ungranted", text: reply("x", prefilterProgram("bad-grant", "  kv.set(\"a\", \"b\");\n  return readings;", "{\"log\":true}", "kv, log, type Reading")), reason: /grants/ },
  { name: "prototype", text: reply("x", prefilterProgram("bad-proto", "  const f = ({}).constructor;\n  log.info(String(f));\n  return readings;")), reason: /prototype/ },
  { name: "random", text: reply("x", prefilterProgram("bad-random", "  return readings.filter(() => Math.random() < 0.5);")), reason: /determinism/ },
  { name: "kernel-topic", text: reply("x", prefilterProgram("bad-topic", "  return readings;", "{\"topics\":{\"publish\":[\"mem\"]}}", "type Reading")), reason: /p\./ },
  { name: "older-version", text: reply("x", OUTLIERS), reason: /version/ },
];

test("evolve on 3 real processes: the transcript, the prefilter in dtr stat, bad replies refused, --from, and the frontier mind when REDUCED (issue 15)", { timeout: 600_000 }, async (t) => {
  const swarm = new Swarm(t);
  const replies = join(swarm.dir, "replies");
  mkdirSync(replies);
  const mind = await swarm.mindServer("mind", 0, replies);
  // n1 serves a local model and holds a frontier key (the same server, as OpenAI).
  const n1 = await swarm.start("n1", { flags: ["--mind", `${mind.url}#gemma-local`], env: { OPENAI_API_KEY: "sk-test-evolve", OPENAI_BASE_URL: mind.url } });
  const n2 = await swarm.start("n2", { join: n1 });
  const n3 = await swarm.start("n3", { join: n1 });
  const all = [n1, n2, n3];
  await converged(all, 3);
  const sh = (api: string, line: string) => shell(api, line, swarm.token, 60_000);
  const asked = (): string[] => mind.requests().filter((r) => r.messages.some((m) => m.role === "system" && m.content.startsWith("You are the mind of p-kernel"))).map((r) => r.model);

  // The transcript: state, analysis, the verification report, the dry run's own output, deployed.
  writeFileSync(join(replies, "good.txt"), GOOD);
  const evolved = await sh(n1.api, "evolve good");
  t.diagnostic(evolved.output.replaceAll("\n", " | "));
  assert.ok(evolved.ok, evolved.output);
  for (const part of [/^state:/m, /raft: (leader|follower), term \d+/, /live nodes: 3/, /mind: gemma-local \(local, openai\)/, /^\[ANALYSIS\]/m, /a loose probe/,
    /^verification:/m, /outliers 1\.0\.0 \(sensor\.prefilter\): verified/, /pass +types/, /pass +determinism/, /^dry run: ok, gas \d+/m,
    /prefilter: dropped 3\/100 outliers \(mean=/, /deployed: outliers 1\.0\.0 on this node/, /\[CMD\] ps/, /\[CMD\] dtr stat/]) {
    assert.match(evolved.output, part);
  }
  assert.deepEqual(asked(), ["gemma-local"], "FULL: the cluster's own mind was asked");

  // Inference goes through the prefilter: a reading 40 off is dropped (replaced by the last kept).
  for (let i = 0; i < 12; i++) {
    const v = (k: number) => (0.3 * Math.sin(i + k)).toFixed(3);
    assert.ok((await sh(n1.api, `infer ${v(0)} ${v(1)} ${v(2)} ${v(3)}`)).ok);
  }
  assert.ok((await sh(n1.api, "infer 0.1 0.2 40 0.3")).ok);
  const stat = (await sh(n1.api, "dtr stat")).output;
  t.diagnostic(stat.split("\n").find((l) => l.startsWith("prefilter")) ?? stat);
  const m = /prefilter +outliers 1\.0\.0: 13 calls, dropped (\d+)\/52 readings/.exec(stat);
  assert.ok(m !== null, stat);
  assert.ok(Number(m[1]) >= 1, "the outlier was dropped");
  const ps = (await sh(n1.api, "ps")).output;
  assert.match(ps, /^outliers +1\.0\.0 \(canary\) +sensor\.prefilter +\d+ +0 +\d+\/200/m, ps);

  // evolve dry-run: verified and run dry, not deployed, its commands not run.
  writeFileSync(join(replies, "dry.txt"), reply("A greeting command.", "// @pk-program {\"name\":\"greet\",\"version\":\"1.0.0\",\"hook\":\"command\"}\nexport function command(args: readonly string[]): string {\n  return `hi ${args.length}`;\n}", ["{\"cmd\":\"exec\",\"program\":\"greet\"}"]));
  const dry = await sh(n1.api, "evolve dry-run dry");
  assert.ok(dry.ok, dry.output);
  assert.match(dry.output, /dry run: ok/);
  assert.match(dry.output, /dry run only: greet 1\.0\.0 is not deployed/);
  assert.match(dry.output, /\[CMD\] exec greet: not run \(dry run\)/);
  assert.doesNotMatch((await sh(n1.api, "programs")).output, /greet/);

  // Every bad reply is refused with its reason, asked again once, and nothing is deployed.
  let before = asked().length;
  assert.equal(before, 2, "FULL: one ask for good, one for dry");
  for (const bad of BAD) {
    writeFileSync(join(replies, `bad-${bad.name}.txt`), bad.text);
    const result = await sh(n1.api, `evolve bad-${bad.name}`);
    assert.equal(result.ok, false, `${bad.name}: ${result.output}`);
    assert.match(result.output, bad.reason, `${bad.name}: ${result.output}`);
    assert.match(result.output, /asking again once/, bad.name);
    assert.match(result.output, /nothing deployed/, bad.name);
    assert.equal(asked().length, before + 2, `${bad.name}: asked twice`);
    before += 2;
  }
  const programs = (await sh(n1.api, "programs")).output;
  assert.equal(programs.split("\n").length, 2, `only outliers is deployed:\n${programs}`);

  // A [CMD] line outside the allow-list is not run: it waits for a person.
  writeFileSync(join(replies, "held.txt"), reply("I would like to write a key.", "", ["{\"cmd\":\"shell\",\"line\":\"kv put evolve/evil 1\"}"]));
  const held = await sh(n1.api, "evolve held");
  assert.ok(held.ok, held.output);
  before += 1;
  assert.match(held.output, /kv put evolve\/evil 1: waits for approval \(evolve approve (\d+)\): kv is not on the allow-list/);
  assert.match((await sh(n1.api, "kv get evolve/evil")).output, /not found|no such key|absent/i);
  const n = /evolve approve (\d+)/.exec(held.output)![1]!;
  assert.match((await sh(n1.api, "evolve pending")).output, /kv put evolve\/evil 1/);
  assert.ok((await sh(n1.api, `evolve approve ${n}`)).ok);
  assert.match((await sh(n1.api, "kv get evolve/evil")).output, /1/);
  // A fork bomb through [CMD]: sixteen spawns and guards (a reply's most) run nothing; they wait.
  const tasksBefore = (await sh(n1.api, "heal list")).output;
  const bomb = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? `{"cmd":"shell","line":"spawn ${i}"}` : `{"cmd":"shell","line":"guard bomb-${i} 1 guard bomb-x 1 status"}`));
  writeFileSync(join(replies, "fork-bomb.txt"), reply("More of me.", "", bomb));
  const bombed = await sh(n1.api, "evolve fork-bomb");
  before += 1;
  assert.ok(bombed.ok, bombed.output);
  assert.equal([...bombed.output.matchAll(/waits for approval/g)].length, 16, bombed.output);
  assert.equal((await sh(n1.api, "heal list")).output, tasksBefore, "no guarded task was defined");

  // A reply written by a person, from the shared folder: dry run only.
  const person = reply("A person's program: a command that greets.", "// @pk-program {\"name\":\"hello\",\"version\":\"1.0.0\",\"hook\":\"command\",\"capabilities\":{\"log\":true}}\nimport { log } from \"pk:program\";\nexport function command(args: readonly string[]): string {\n  log.info(\"greeting\");\n  return `hello ${args.join(\" \")}`.trim();\n}", ["{\"cmd\":\"exec\",\"program\":\"hello\",\"args\":[\"world\"]}"]);
  assert.ok((await sh(n2.api, `write evolve/hello.txt '${person.replaceAll("'", "'\"'\"'")}'`)).ok);
  await until("the reply reaches n1's folder", async () => (await sh(n1.api, "cat /shared/evolve/hello.txt")).ok, 20_000, 200);
  const fromFile = await sh(n1.api, "evolve --from /shared/evolve/hello.txt");
  assert.ok(fromFile.ok, fromFile.output);
  assert.match(fromFile.output, /written by a person/);
  assert.match(fromFile.output, /deployed: hello 1\.0\.0/);
  assert.match(fromFile.output, /\[CMD\] exec hello world\n {2}info: greeting\n {2}hello world/);
  assert.equal(asked().length, before, "no mind was asked for a person's reply");
  // Any node runs it from the cluster's copy (verified there), with the same output.
  assert.match((await sh(n3.api, "exec hello from n3")).output, /^info: greeting\nhello from n3/m);

  // A guarded task program moves to a survivor with its KV namespace when its node dies.
  const ticker = reply("A heartbeat counter.", "// @pk-program {\"name\":\"ticker\",\"version\":\"1.0.0\",\"hook\":\"task\",\"periodMs\":1000,\"capabilities\":{\"log\":true,\"kv\":true}}\nimport { kv, log } from \"pk:program\";\nexport function task(): void {\n  const n = Number(kv.get(\"count\") ?? \"0\") + 1;\n  kv.set(\"count\", String(n));\n  log.info(`tick ${n}`);\n}");
  assert.ok((await sh(n3.api, `write evolve/ticker.txt '${ticker.replaceAll("'", "'\"'\"'")}'`)).ok);
  await until("the ticker reply reaches n3's folder", async () => (await sh(n3.api, "cat /shared/evolve/ticker.txt")).ok, 20_000, 200);
  const tickerOut = await sh(n3.api, "evolve --from /shared/evolve/ticker.txt");
  assert.ok(tickerOut.ok, tickerOut.output);
  assert.match((await sh(n3.api, "guard ticker")).output, /ticker/);
  const count = async (): Promise<number> => Number(/\d+/.exec((await sh(n1.api, "kv get pns/ticker/count")).output)?.[0] ?? "0");
  await until("the guarded ticker counts on n3", async () => (await count()) >= 3, 30_000, 250);

  // The evolve log is replicated: n2 lists n1's steps.
  // (Each node keeps its last 64 steps: the twenty refusals pushed outliers' deploy out.)
  const deployedBy = new RegExp(`^\\S+ ${n1.id.slice(0, 8)} deploy +hello 1\\.0\\.0$`, "m");
  await until("n2 has n1's evolve log", async () => deployedBy.test((await sh(n2.api, "evolve log 200")).output), 20_000, 200);

  // REDUCED: the next evolve asks the frontier mind. (n3 dies: its guarded ticker moves on.)
  const beforeKill = await count();
  await kill9(n3.child);
  await until("n1 is REDUCED", async () => (await statusOf(n1.api))?.mode === "REDUCED", 30_000, 200);
  writeFileSync(join(replies, "reduced.txt"), reply("One node is gone; nothing to change.", ""));
  const reduced = await sh(n1.api, "evolve reduced");
  assert.ok(reduced.ok, reduced.output);
  assert.match(reduced.output, /mode REDUCED: a frontier mind first/);
  assert.match(reduced.output, /mind: gpt-4\.1-mini \(frontier, openai\)/);
  assert.equal(asked().at(-1), "gpt-4.1-mini");
  await until("the ticker counts on past n3's death, from n3's count", async () => (await count()) >= beforeKill + 3, 60_000, 250);
  t.diagnostic(`ticker: ${beforeKill} before n3's kill -9, ${await count()} after, on a survivor`);
});
