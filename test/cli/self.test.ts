// Issue 14 (Self), acceptance on real processes. Three `pk node` processes per test, formed over
// real UDP and TCP on loopback; a local model served by one of them is the mind-server
// (test/fakes/mind-server.ts) as a process of its own, whose answer is a function of the prompt
// ("I recall: …" — the system prompt's lines sharing a word with the question) and which logs
// every prompt it receives, so what a node's mind was told is read from its log.
//
// 1. (acceptance 2) The official `openai` SDK, pointed at node 1's /v1 with the cluster token as
//    its key, holds a conversation: a fact told through node 1 (which has no mind: its prompt goes
//    to node 3's mind over the stream channel) is in the system prompt node 3's mind receives when
//    node 3 is asked a paraphrase (streamed and not), and node 3 holds it well within a second of
//    the fact's acknowledgement (measured). With every mind stopped, node 3 answers from memory
//    alone, says so, and quotes the fact. /v1/models lists pk and the mind.
// 2. (acceptance 3) A conversation through every node; kill -9 of all three while a turn is in
//    flight; restarted from their data dirs, every node holds every answered turn (the user's
//    words and the answer) exactly once. Then kill -9 of two: the survivor, SOLO, still answers —
//    from memory alone, its mind (a member's) being gone.
// 3. (acceptance 1, second half) Planted provider keys in one node's environment, used for real
//    (the fake providers check them): no key, raw or as base64 or hex, in any log, any API answer
//    (status, metrics, models, memory, mind list/test, topics, the event stream), any file of any
//    node's data dir — and none reaches another node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import OpenAI from "openai";
import { FakeProviders } from "../fakes/providers.ts";
import { metrics } from "./attacker.ts";
import {
  Swarm, chat, chatRaw, converged, filesUnder, findIn, getText, kill9, memories, needles, openEvents, searchMemory, shell, statusOf, system, until, type MemoryView,
} from "./self-helpers.ts";

const FACT = "My daughter's piano lesson is on Thursday at five";

test("acceptance 2: a fact told through node 1 reaches node 3's mind within a second; with every mind stopped, node 3 answers from memory", { timeout: 60_000 }, async (t) => {
  const swarm = new Swarm(t);
  const mindServer = await swarm.mindServer("mind", 30);
  const n1 = await swarm.start("n1");
  const n2 = await swarm.start("n2", { join: n1 });
  const n3 = await swarm.start("n3", { join: n1, flags: ["--mind", `${mindServer.url}#gemma-local`] });
  await converged([n1, n2, n3], 3);
  // Node 1 learns of node 3's mind from the gossip topic self.minds.
  const sdk1 = new OpenAI({ baseURL: `${n1.api}/v1`, apiKey: swarm.token, maxRetries: 0, timeout: 30_000 });
  const sdk3 = new OpenAI({ baseURL: `${n3.api}/v1`, apiKey: swarm.token, maxRetries: 0, timeout: 30_000 });
  const models = await until("node 1 lists node 3's mind", async () => {
    const ids = (await sdk1.models.list()).data.map((m) => m.id);
    return ids.includes("gemma-local") ? ids : undefined;
  });
  assert.ok(models.includes("pk"), `models: ${models.join(", ")}`);

  // The fact, told through node 1.
  const history: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: FACT }];
  const sent = performance.now();
  const told = await sdk1.chat.completions.create({ model: "pk", messages: history });
  const acked = performance.now();
  let held: MemoryView | undefined;
  while (held === undefined) {
    held = (await searchMemory(n3.api, "piano lesson Thursday", swarm.token)).find((m) => m.text === FACT && m.kind === "user");
    assert.ok(performance.now() - acked < 5_000, "node 3 holds the fact within 5 s");
  }
  const heldMs = performance.now() - acked;
  t.diagnostic(`fact: acknowledged by node 1 after ${(acked - sent).toFixed(0)} ms; node 3 held it ${heldMs.toFixed(1)} ms after the acknowledgement`);
  assert.ok(heldMs < 1_000, `node 3 holds the fact ${heldMs.toFixed(0)} ms after its acknowledgement (bound: 1 s)`);
  // Node 1 has no mind: its prompt went to node 3's mind over the stream channel.
  assert.equal(told.model, "gemma-local", "node 1's turn was answered by node 3's mind");
  assert.equal(mindServer.from("n1").length, 1, "the mind-server got node 1's prompt");
  history.push({ role: "assistant", content: told.choices[0]?.message.content ?? "" });

  // A paraphrase asked of node 3, streamed: the fact is in the system prompt its mind receives.
  const question = "Which day does my girl have piano?";
  const before = mindServer.requests().length;
  const asked = performance.now();
  const stream = await sdk3.chat.completions.create({ model: "pk", messages: [...history, { role: "user", content: question }], stream: true });
  let streamed = "";
  let chunks = 0;
  for await (const chunk of stream) {
    streamed += chunk.choices[0]?.delta.content ?? "";
    chunks++;
  }
  const prompt = mindServer.requests().slice(before).find((r) => r.op === "chat" && system(r).includes("this node is n3."));
  assert.ok(prompt !== undefined, "node 3's mind was asked");
  assert.ok(system(prompt).includes(FACT), `the fact is in the system prompt node 3's mind received:\n${system(prompt)}`);
  const promptMs = prompt.atMs - (Date.now() - (performance.now() - acked));
  t.diagnostic(`node 3's mind received the prompt holding the fact ${promptMs.toFixed(0)} ms after node 1 acknowledged the fact (the question sent ${(asked - acked).toFixed(0)} ms after it)`);
  assert.ok(promptMs < 1_000, "within a second");
  assert.ok(chunks > 2, `the answer came in pieces (${chunks} chunks)`);
  assert.match(streamed, /^I recall: .*My daughter's piano lesson is on Thursday at five/, "the mind's answer quotes the fact");
  history.push({ role: "user", content: question }, { role: "assistant", content: streamed });

  // The same, not streamed, in other words.
  const question2 = "Remind me: when is the piano lesson?";
  const whole = await sdk3.chat.completions.create({ model: "pk", messages: [...history, { role: "user", content: question2 }] });
  assert.equal(whole.model, "gemma-local");
  assert.match(whole.choices[0]?.message.content ?? "", /I recall: .*My daughter's piano lesson is on Thursday at five/);
  const prompt2 = mindServer.from("n3").at(-1);
  assert.ok(prompt2 !== undefined && system(prompt2).includes(FACT), "the fact is in the prompt of the unstreamed turn too");
  history.push({ role: "user", content: question2 }, { role: "assistant", content: whole.choices[0]?.message.content ?? "" });

  // Node 1, which has no mind of its own, asked too: node 3's mind answers over the stream channel.
  const fromN1 = mindServer.from("n1").length;
  const viaN1 = await sdk1.chat.completions.create({ model: "pk", messages: [{ role: "user", content: "What time is the piano lesson on Thursday?" }] });
  assert.equal(viaN1.model, "gemma-local");
  assert.equal(mindServer.from("n1").length, fromN1 + 1, "node 1's prompt reached the mind-server");
  const n1Prompt = mindServer.from("n1").at(-1)!;
  assert.ok(system(n1Prompt).includes(FACT), "node 1 recalled the fact too");
  assert.match(viaN1.choices[0]?.message.content ?? "", /I recall: .*My daughter's piano lesson is on Thursday at five/, "node 1's answer is the mind's, quoting the fact");
  const m1 = await metrics(n1.api);
  const m3 = await metrics(n3.api);
  assert.ok((m1.get("pk_mind_calls_total{outcome=\"sent\"}") ?? 0) >= 2, "node 1 counts its calls to a member's mind");
  assert.ok((m3.get("pk_mind_calls_total{outcome=\"served\"}") ?? 0) >= 2, "node 3 counts the calls it served");

  // Every mind stopped: node 3 answers from memory alone, says so, and quotes the fact.
  await mindServer.stop();
  const question3 = "On which day is the piano lesson?";
  const ranked = (await searchMemory(n3.api, question3, swarm.token, 6)).map((m) => `${m.kind}/${m.speaker}: ${m.text}`);
  await t.test("with every mind stopped, node 3 answers from memory alone, says so and quotes the fact", async (t) => {
    const alone = await sdk3.chat.completions.create({ model: "pk", messages: [...history, { role: "user", content: question3 }] });
    const text = alone.choices[0]?.message.content ?? "";
    t.diagnostic(`node 3 with no mind: ${JSON.stringify(text)}`);
    assert.equal(alone.model, "pk-memory");
    assert.equal((alone as unknown as { pk: { source: string } }).pk.source, "memory");
    assert.match(text, /from memory alone/, "it says the answer comes from memory alone");
    assert.ok(text.includes(`"${FACT}"`), `it quotes the fact; node 3's memory search for the question ranks:\n${ranked.join("\n")}`);
  });
  await t.test("…streamed too", async () => {
    let streamedAlone = "";
    for await (const chunk of await sdk3.chat.completions.create({ model: "pk", messages: [{ role: "user", content: "Is the piano lesson on Thursday?" }], stream: true })) {
      streamedAlone += chunk.choices[0]?.delta.content ?? "";
    }
    assert.match(streamedAlone, /from memory alone/);
    assert.ok(streamedAlone.includes(`"${FACT}"`), `it quotes the fact: ${JSON.stringify(streamedAlone)}`);
  });
  // /v1/models on node 3 still lists its own mind (configured, though stopped) and pk.
  const ids3 = (await sdk3.models.list()).data.map((m) => m.id);
  assert.ok(ids3.includes("pk") && ids3.includes("gemma-local"), ids3.join(", "));
});

interface Turn {
  readonly node: string;
  readonly text: string;
  readonly answer: string;
  readonly asked: string;
  readonly answered: string;
}

test("acceptance 3: kill -9 of every node mid-conversation loses no answered turn; kill -9 of two leaves a SOLO node that still answers", { timeout: 90_000 }, async (t) => {
  const swarm = new Swarm(t);
  // A mind slow enough (400 ms) that a turn is surely in flight when the kill comes.
  const mindServer = await swarm.mindServer("mind", 400);
  const n1 = await swarm.start("n1");
  const n2 = await swarm.start("n2", { join: n1 });
  const n3 = await swarm.start("n3", { join: n1, flags: ["--mind", `${mindServer.url}#gemma-local`] });
  const all = [n1, n2, n3];
  await converged(all, 3);
  await until("every node sees node 3's mind", async () => {
    for (const n of all) if (!(await shell(n.api, "mind list", swarm.token)).output.includes("gemma-local")) return false;
    return true;
  });

  // A conversation through every node in turn; each answered turn recorded.
  const said = [
    "The boiler service is booked for the third of March",
    "Our neighbour Ines keeps the spare key to the garage",
    "Grandma Rosa's birthday is the twelfth of June",
    "The recycling goes out every second Tuesday",
    "My bicycle lock code is written inside the red notebook",
    "The dentist appointment moved to Friday morning",
  ];
  const turns: Turn[] = [];
  for (const [i, text] of said.entries()) {
    const node = all[i % 3]!;
    const report = await chat(node.api, swarm.token, { text, speaker: "ada", conv: "home" });
    assert.equal(report.source, "mind", `turn ${i} was answered by the mind: ${report.note ?? ""}`);
    turns.push({ node: node.name, text, answer: report.answer, asked: report.asked, answered: report.answered });
  }

  // One more turn, in flight (its prompt is at the mind, which answers in 400 ms) when every node is killed.
  const inFlight = "The plumber said he would come back after the holidays";
  const pending = chatRaw(n2.api, swarm.token, { text: inFlight, speaker: "ada", conv: "home" }).then(
    (r) => ({ status: r.status, error: undefined }),
    (error: unknown) => ({ status: 0, error }),
  );
  await until("the in-flight turn's prompt at the mind", () => mindServer.requests().some((r) => r.messages.at(-1)?.content === inFlight), 10_000, 5);
  await Promise.all(all.map((n) => kill9(n.child)));
  const cut = await pending;
  assert.equal(cut.status, 0, "the in-flight turn was not answered: its node died");
  t.diagnostic(`killed all three with a turn in flight after ${turns.length} answered turns`);

  // All restarted from their data dirs.
  const restarted = performance.now();
  for (const n of all) await swarm.restart(n);
  await converged(all, 3, 30_000);
  const expected = new Map<string, { text: string; speaker: string; kind: string }>();
  for (const turn of turns) {
    expected.set(turn.asked, { text: turn.text, speaker: "ada", kind: "user" });
    expected.set(turn.answered, { text: turn.answer, speaker: "pk", kind: "mind" });
  }
  const inFlightHeld: string[] = [];
  for (const n of all) {
    const held = await until(`${n.name} holds every answered turn`, async () => {
      const list = await memories(n.api, swarm.token);
      return [...expected.keys()].every((id) => list.some((m) => m.id === id)) ? list : undefined;
    }, 20_000, 50);
    for (const [id, want] of expected) {
      const m = held.find((h) => h.id === id)!;
      assert.deepEqual({ text: m.text, speaker: m.speaker, kind: m.kind, conv: m.conv }, { ...want, conv: "home" }, `${n.name}: memory ${id}`);
    }
    // Nothing twice: each answered turn's words and answer once; of the turn in flight, its words at most once and no answer.
    // (The mind's answers may repeat each other, "I do not know.", so they are counted, not matched by text.)
    for (const turn of turns) assert.equal(held.filter((m) => m.text === turn.text).length, 1, `${n.name}: "${turn.text}" once`);
    assert.equal(held.filter((m) => m.kind === "mind").length, turns.length, `${n.name}: one answer per answered turn`);
    const flown = held.filter((m) => m.text === inFlight);
    assert.ok(flown.length <= 1, `${n.name}: the turn in flight at most once`);
    inFlightHeld.push(`${n.name} ${flown.length}`);
    assert.equal(held.length, expected.size + flown.length, `${n.name}: ${held.length} memories, ${expected.size} answered-turn ones and ${flown.length} of the turn in flight: ${JSON.stringify(held.map((m) => m.text))}`);
  }
  t.diagnostic(`after the restart every node held all ${expected.size} memories of the ${turns.length} answered turns ${(performance.now() - restarted).toFixed(0)} ms after the first restart began; the words of the turn in flight held (durable before the mind was asked): ${inFlightHeld.join(", ")}`);

  // The conversation goes on: node 1 recalls what was said to node 2 before the kill.
  const after = await chat(n1.api, swarm.token, { text: "Who keeps the spare key to the garage?", speaker: "ada", conv: "home" });
  assert.equal(after.source, "mind");
  assert.match(after.answer, /Our neighbour Ines keeps the spare key to the garage/);

  // Kill -9 of two nodes: node 1 is alone (SOLO), and the mind it used (node 3's) is gone.
  await Promise.all([kill9(n2.child), kill9(n3.child)]);
  const killed = performance.now();
  await until("node 1 is SOLO", async () => (await statusOf(n1.api))?.mode === "SOLO", 30_000, 100);
  t.diagnostic(`node 1 SOLO ${(performance.now() - killed).toFixed(0)} ms after the kill -9 of nodes 2 and 3`);
  assert.match((await shell(n1.api, "status", swarm.token)).output, /^mode +SOLO$/m);
  const solo = await chat(n1.api, swarm.token, { text: "When is Grandma Rosa's birthday?", speaker: "ada", conv: "home" });
  t.diagnostic(`node 1 alone: ${JSON.stringify(solo.answer)}`);
  assert.equal(solo.source, "memory");
  assert.match(solo.answer, /from memory alone/);
  assert.ok(solo.answer.includes(`"Grandma Rosa's birthday is the twelfth of June"`), "it quotes what was said before the kills");
  // The shell's chat on node 1 too.
  const line = await shell(n1.api, "chat --as ada --conv home When does the recycling go out?", swarm.token);
  assert.ok(line.ok, line.output);
  assert.match(line.output, /The recycling goes out every second Tuesday/);
  assert.match(line.output, /from memory alone/);
});

test("acceptance 1: planted provider keys, used for real, appear in no log, API answer, gossip or file of any node", { timeout: 60_000 }, async (t) => {
  const core = { openai: randomBytes(18).toString("hex"), anthropic: randomBytes(18).toString("hex"), gemini: randomBytes(18).toString("hex") };
  const keys = { openai: `sk-PLANTED-${core.openai}`, anthropic: `sk-ant-PLANTED-${core.anthropic}`, gemini: `AIzaPLANTED${core.gemini}` };
  // The providers check the key: a request without the planted one is refused.
  const fake = await FakeProviders.start({ keys });
  t.after(() => fake.close());
  const names = { openai: "gpt-4.1-mini", anthropic: "claude-haiku-4-5", gemini: "gemini-2.5-flash" } as const;
  const wires = ["openai", "anthropic", "gemini"] as const;

  const swarm = new Swarm(t);
  const n1 = await swarm.start("n1");
  const n2 = await swarm.start("n2", {
    join: n1,
    env: {
      OPENAI_API_KEY: keys.openai, OPENAI_BASE_URL: fake.openaiBase,
      ANTHROPIC_API_KEY: keys.anthropic, ANTHROPIC_BASE_URL: fake.url,
      GEMINI_API_KEY: keys.gemini, GOOGLE_GEMINI_BASE_URL: fake.url,
    },
  });
  const n3 = await swarm.start("n3", { join: n1 });
  const all = [n1, n2, n3];
  await converged(all, 3);
  const streams = all.map((n) => ({ node: n.name, events: openEvents(n.api, swarm.token) }));
  const answers: Array<{ what: string; text: string }> = [];
  const keep = (what: string, text: string): string => {
    answers.push({ what, text });
    return text;
  };

  // The keys used: node 2 asks each provider, through /v1/chat, the OpenAI SDK and `mind test`.
  const list = keep("n2 mind list", (await shell(n2.api, "mind list", swarm.token)).output);
  for (const wire of wires) assert.match(list, new RegExp(`^${names[wire]} +${wire} .* frontier +here `, "m"), list);
  for (const wire of wires) {
    const report = await chat(n2.api, swarm.token, { text: `Note for ${wire}: the garden gate code is 4417`, mind: names[wire] });
    keep(`n2 chat ${wire}`, JSON.stringify(report));
    assert.equal(report.source, "mind", report.note ?? "");
    assert.equal(report.mind?.name, names[wire]);
    const test_ = await shell(n2.api, `mind test ${names[wire]}`, swarm.token);
    keep(`n2 mind test ${wire}`, test_.output);
    assert.ok(test_.ok, test_.output);
  }
  const sdk2 = new OpenAI({ baseURL: `${n2.api}/v1`, apiKey: swarm.token, maxRetries: 0, timeout: 30_000 });
  let streamed = "";
  for await (const chunk of await sdk2.chat.completions.create({ model: names.anthropic, messages: [{ role: "user", content: "What is the gate code?" }], stream: true })) {
    streamed += chunk.choices[0]?.delta.content ?? "";
  }
  keep("n2 sdk stream", streamed);
  assert.match(streamed, /^echo: What is the gate code\?/);
  // A provider that echoes the key in its error (as OpenAI's 401 does): the error reaches chat's answer, the key must not.
  for (const wire of wires) {
    // For the chat request (node 2 also asks the providers that embed for its memories' and queries' vectors).
    fake.script({ kind: "status", status: 401, op: "chat", message: `Incorrect API key provided: ${keys[wire]}. You can find your API key at the provider.` });
    const report = await chat(n2.api, swarm.token, { text: `Is the ${wire} mind there?`, mind: names[wire] });
    keep(`n2 chat ${wire} 401`, JSON.stringify(report));
    assert.equal(report.source, "memory", "a refused key: the answer comes from memory");
    fake.script({ kind: "status", status: 400, op: "chat", message: `bad request for key ${keys[wire]}` });
    keep(`n2 mind test ${wire} 400`, (await shell(n2.api, `mind test ${names[wire]}`, swarm.token)).output);
  }
  keep("n2 mind test auto", (await shell(n2.api, "mind test", swarm.token)).output);
  // The other nodes cannot use node 2's keys: frontier minds are not lent.
  for (const n of [n1, n3]) {
    const report = await chat(n.api, swarm.token, { text: "What is the garden gate code?", mind: names.openai });
    keep(`${n.name} chat`, JSON.stringify(report));
    assert.equal(report.source, "memory", `${n.name} has no frontier mind of its own`);
  }

  // The keys reached the providers, each in its own header.
  const sentBy = (wire: (typeof wires)[number]) => fake.received.filter((r) => r.wire === wire && r.op === "chat");
  for (const r of sentBy("openai")) assert.equal(r.headers["authorization"], `Bearer ${keys.openai}`);
  for (const r of sentBy("anthropic")) assert.ok(r.headers["x-api-key"] === keys.anthropic || r.headers["authorization"] === `Bearer ${keys.anthropic}`);
  for (const r of sentBy("gemini")) assert.equal(r.headers["x-goog-api-key"], keys.gemini);
  for (const wire of wires) assert.ok(sentBy(wire).length >= 3, `${wire}: ${sentBy(wire).length} requests`);

  // Everything an operator can look at, on every node.
  for (const n of all) {
    for (const line of ["status", "mind list", "mind test", "topic get self.minds", "topic list", "memory list", "memory stat", "nodes"]) {
      keep(`${n.name} ${line}`, (await shell(n.api, line, swarm.token)).output);
    }
    for (const path of ["/v1/status", "/metrics", "/v1/models", "/v1/memory?all=1&limit=500", "/v1/topics"]) {
      const { status, text } = await getText(n.api, path, swarm.token);
      assert.equal(status, 200, `${n.name} GET ${path}`);
      keep(`${n.name} GET ${path}`, text);
    }
  }
  assert.match(answers.find((a) => a.what === "n2 GET /metrics")!.text, /^pk_mind_requests_total\{[^}]*mind="claude-haiku-4-5"/m, "node 2's metrics count its calls to each provider");
  for (const s of streams) keep(`${s.node} events`, await s.events.stop());
  assert.ok(answers.filter((a) => a.what.endsWith(" events")).every((a) => a.text.includes("data:")), "the event streams carried events");

  // Stopped gracefully, so whatever a node writes when it stops is in its files too.
  for (const n of all) await swarm.stop(n);
  const hits: string[] = [];
  let files = 0;
  let bytes = 0;
  for (const wire of wires) {
    const wanted = needles(keys[wire], core[wire]);
    for (const a of answers) hits.push(...findIn(`${wire} key in ${a.what}`, Buffer.from(a.text), wanted));
    for (const n of all) {
      for (const log of [n.out, n.err]) hits.push(...findIn(`${wire} key in ${log}`, readFileSync(log), wanted));
      for (const file of filesUnder(n.data)) {
        const content = readFileSync(file);
        if (wire === "openai") {
          files++;
          bytes += content.length;
        }
        hits.push(...findIn(`${wire} key in ${file}`, content, wanted));
      }
    }
  }
  // The search finds what is there: the words said (in every node's store, raw), and a key where it went.
  for (const n of all) {
    const said = needles("the garden gate code is 4417", "the garden gate code is 4417", 1_000);
    assert.ok(filesUnder(n.data).some((file) => findIn(file, readFileSync(file), said).length > 0), `${n.name}'s store holds the words said, found raw`);
  }
  assert.ok(findIn("the fake's requests", Buffer.from(JSON.stringify(fake.received.map((r) => r.headers))), needles(keys.openai, core.openai)).length > 0, "the key is found where it went");
  assert.ok(findIn("a control", Buffer.from(Buffer.from(`xy${keys.gemini}`).toString("base64")), needles(keys.gemini, core.gemini)).length > 0, "found base64-encoded at any alignment");
  t.diagnostic(`searched ${answers.length} API answers, ${all.length * 2} logs and ${files} files (${bytes} bytes) under the data dirs for 3 keys in ${needles(keys.openai, core.openai).length} forms each`);
  assert.deepEqual(hits, [], "no planted key anywhere");
});
