// The Self layer in one real node (in this process, real sockets and store), its local model a
// FakeProviders server speaking OpenAI's wire format: memories are embedded by the node's mind
// (batched) besides the local embedding, a chat turn embeds its query with the mind too; with the
// model failing the turn answers from memory alone; a bad --mind is a clear start error; the
// memory and chat routes refuse bad input with 400s.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runNode } from "../../src/node/run.ts";
import { FakeProviders } from "../fakes/providers.ts";

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

test("self in one node: the mind's embeddings, recall with them, memory alone when the mind fails, bad input refused", async (t) => {
  const fake = await FakeProviders.start({ dims: 16, reply: (r) => `heard ${r.messages.length} messages` });
  const dir = mkdtempSync(join(tmpdir(), "pk-self-"));
  t.after(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await assert.rejects(runNode({ data: join(dir, "bad"), env: {}, minds: { mind: "ftp://x/v1#m" } }), /http|https/i);
  const node = await runNode({ data: join(dir, "a"), name: "alpha", env: { PK_MIND_FRONTIER: "off" }, minds: { mind: `${fake.url}/v1#local-model`, mindEmbedModel: "local-embed" } });
  t.after(() => node.stop());
  const kernel = node.kernel;
  const auth = { Authorization: `Bearer ${node.token}`, "Content-Type": "application/json" };
  for (const text of ["the garage Raspberry Pi runs hot in summer", "the backup runs at 2 am", "my daughter's piano lesson is on Thursday at five"]) {
    const r = await fetch(`${node.api}/v1/memory`, { method: "POST", headers: auth, body: JSON.stringify({ text, speaker: "ana" }) });
    assert.equal(r.status, 201);
  }
  await until("the three memories embedded by the mind", () => kernel.memory.embedStats.done === 3);
  const embedded = fake.requests("embed").flatMap((r) => r.inputs);
  assert.deepEqual(embedded.sort(), ["my daughter's piano lesson is on Thursday at five", "the backup runs at 2 am", "the garage Raspberry Pi runs hot in summer"]);
  assert.match(kernel.memory.indexStats(), /3 embedded by local-model/);

  const before = fake.requests("embed").length;
  const turn = await fetch(`${node.api}/v1/chat`, { method: "POST", headers: auth, body: JSON.stringify({ text: "when is the piano lesson?", speaker: "ana" }) });
  const answer = await turn.json() as { source: string; recalled: Array<{ text: string }>; answer: string };
  assert.equal(turn.status, 200);
  assert.equal(answer.source, "mind");
  assert.equal(answer.recalled[0]?.text, "my daughter's piano lesson is on Thursday at five");
  assert.ok(fake.requests("embed").length > before, "the query was embedded by the mind too");
  const prompt = fake.requests("chat").at(-1)!.messages[0]!.content;
  assert.match(prompt, /piano lesson is on Thursday at five/);

  // The model fails every call: the answer comes from memory alone, says so, quotes the fact.
  fake.persistent = { kind: "status", status: 500 };
  const alone = await (await fetch(`${node.api}/v1/chat`, { method: "POST", headers: auth, body: JSON.stringify({ text: "which day is piano?", speaker: "ana" }) })).json() as { source: string; answer: string; note: string };
  assert.equal(alone.source, "memory");
  assert.match(alone.answer, /^No mind is reachable/);
  assert.match(alone.answer, /piano lesson is on Thursday at five/);
  fake.persistent = undefined;

  for (const [path, body, status] of [
    ["/v1/chat", { text: "" }, 400], ["/v1/chat", { text: 5 }, 400], ["/v1/chat", [], 400],
    ["/v1/chat/completions", { messages: [] }, 400], ["/v1/chat/completions", { messages: [{ role: "assistant", content: "hi" }] }, 400],
    ["/v1/chat/completions", { messages: [{ role: "user", content: [{ type: "image_url" }] }] }, 400],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], temperature: 9 }, 400],
    ["/v1/memory", { text: "x", speaker: "bad\\nname" }, 400], ["/v1/memory", { speaker: "ana" }, 400],
  ] as const) {
    const r = await fetch(`${node.api}${path}`, { method: "POST", headers: auth, body: JSON.stringify(body) });
    assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${await r.text()}`);
  }
  assert.equal((await fetch(`${node.api}/v1/memory/nothing-here`, { headers: auth })).status, 404);
  assert.equal((await fetch(`${node.api}/v1/memory?k=0&q=x`, { headers: auth })).status, 400);

  // The DMN, run now: a near-duplicate pair is merged into one memory that supersedes both (kept,
  // out of recall), and ana's summary is asked of the mind once she said enough.
  const shell = async (line: string): Promise<{ ok: boolean; output: string }> =>
    (await fetch(`${node.api}/v1/shell`, { method: "POST", headers: auth, body: JSON.stringify({ line }) })).json() as Promise<{ ok: boolean; output: string }>;
  for (let i = 0; i < 8; i++) assert.ok((await shell(`remember --as ana "fact number ${i}: the shed key hangs on hook ${i}"`)).ok);
  assert.ok((await shell(`remember --as ana "the garage Raspberry Pi runs hot in summer!"`)).ok);
  fake.reply = (r) => (r.messages[0]?.content.startsWith("You summarise") ? "- the shed keys hang on hooks 0 to 7" : "ok");
  // The model failed a moment ago and backs off: asked by name, it answers and is back in the rotation.
  assert.match((await shell("mind list")).output, /backing off/);
  assert.ok((await shell("mind test local-model")).ok);
  const consolidated = await shell("dmn run consolidate");
  assert.ok(consolidated.ok, consolidated.output);
  assert.match(consolidated.output, /1 near-duplicate pairs merged; 1 speaker summaries made/);
  const pi = kernel.memory.list({ limit: 100, all: true }).filter((m) => m.text.startsWith("the garage Raspberry Pi"));
  const merged = pi.find((m) => m.supersedes.length === 2);
  assert.ok(merged !== undefined, "a memory supersedes the pair");
  assert.equal(pi.filter((m) => m.supersededBy.includes(merged.id)).length, 2, "both kept, superseded");
  assert.equal(kernel.memory.search("garage pi hot", 10).filter((h) => h.memory.text.startsWith("the garage Raspberry Pi")).length, 1, "one of them in recall");
  assert.ok(kernel.memory.list({ limit: 100 }).some((m) => m.kind === "summary" && m.speaker === "ana" && m.text.includes("hooks 0 to 7")));
  const status = await shell("dmn");
  assert.match(status.output, /^consolidate +\d+ s +1 /m);
  assert.match((await shell("dmn run review")).output, /^review: /);
  // A fresh cluster's model is untrained: the DMN trains and publishes the seed model, once.
  assert.match((await shell("dmn run train")).output, /^train: seed model trained \(30 epochs\): held-out [\d.]+% .* published as version 1$/);
  assert.match((await shell("dmn run train")).output, /train cannot run here now: the cluster has a model/);
});
