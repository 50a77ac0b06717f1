// The minds adapter (src/adapters/minds.ts) through the official SDKs (openai, @anthropic-ai/sdk,
// @google/genai) against a local server speaking each provider's real wire format
// (test/fakes/providers.ts): streamed and whole answers, usage and cost, retries of 429/5xx/lost
// connections (each HTTP attempt counted), timeouts (a hang, a stalled stream), malformed and
// truncated answers, cancellation, embeddings, key files, configuration from flags and the
// environment, the metrics, and a planted key that must never show.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { inspect } from "node:util";
import { Registry } from "prom-client";
import {
  MindConfigError, MindCounters, MindError, MindKey, mindConfigs, mindMetrics, openMind, priceOf, readKeyFile,
  type MindCallPolicy, type MindClient, type MindConfig,
} from "../../src/adapters/minds.ts";
import { scrub } from "../../src/adapters/mind-call.ts";
import type { MindErrorKind, MindRequest, Provider } from "../../src/core/self/minds.ts";
import { FakeProviders, embedding, type Fault, type FakeOptions } from "../fakes/providers.ts";
import { recall } from "../fakes/mind-server.ts";

const PROVIDERS: Provider[] = ["openai", "anthropic", "gemini"];
const PLANTED = "sk-PLANTED-7f3a9c2e1b4d8f6a0c5e";
const MODELS: Record<Provider, string> = { openai: "gpt-4.1-mini", anthropic: "claude-haiku-4-5", gemini: "gemini-2.5-flash" };
const FAST: Partial<MindCallPolicy> = { timeoutMs: 5_000, stallMs: 5_000, backoffBaseMs: 10, backoffMaxMs: 40 };

interface Harness {
  readonly fake: FakeProviders;
  readonly counters: MindCounters;
  /** Waits the retry loop asked for, in ms. */
  readonly waits: number[];
  client(provider: Provider, options?: { kind?: "local" | "frontier"; model?: string; embedModel?: string; policy?: Partial<MindCallPolicy>; key?: string; baseURL?: string }): MindClient;
}

async function harness(t: { after: (fn: () => Promise<void> | void) => void }, fakeOptions: FakeOptions = {}): Promise<Harness> {
  const fake = await FakeProviders.start(fakeOptions);
  const counters = new MindCounters();
  const waits: number[] = [];
  const clients: MindClient[] = [];
  t.after(async () => {
    for (const c of clients) c.close?.();
    await fake.close();
  });
  return {
    fake, counters, waits,
    client(provider, options = {}) {
      const config: MindConfig = {
        name: `${provider}-mind`, provider, kind: options.kind ?? "frontier", model: options.model ?? MODELS[provider],
        embedModel: options.embedModel, baseURL: options.baseURL ?? (provider === "openai" ? fake.openaiBase : fake.url),
        key: new MindKey(options.key ?? PLANTED, "test"), node: "n1",
      };
      const client = openMind(config, {
        counters, policy: { ...FAST, ...options.policy },
        sleep: async (ms, signal) => {
          waits.push(ms);
          if (signal.aborted) throw signal.reason;
        },
      });
      clients.push(client);
      return client;
    },
  };
}

const ASK: MindRequest = { messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "what is the colour of the sky" }] };

async function failure(promise: Promise<unknown>, what = ""): Promise<MindError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof MindError, `a MindError, got ${inspect(error)}`);
    return error;
  }
  assert.fail(`the call succeeded ${what}`);
}

async function expectKind(promise: Promise<unknown>, kind: MindErrorKind): Promise<MindError> {
  const error = await failure(promise);
  assert.equal(error.kind, kind, error.message);
  return error;
}

for (const provider of PROVIDERS) {
  test(`minds ${provider}: a whole answer, its usage, cost and counters; the prompt as the provider received it`, async (t) => {
    const h = await harness(t);
    const mind = h.client(provider);
    const reply = await mind.chat(ASK, {});
    assert.equal(reply.text, "echo: what is the colour of the sky");
    assert.equal(reply.finish, "stop");
    assert.deepEqual(reply.usage, { inputTokens: 10, outputTokens: 8 });
    assert.equal(reply.mind, mind.info);
    assert.ok(reply.latencyMs >= 0);
    const [received] = h.fake.requests();
    assert.ok(received !== undefined);
    assert.equal(received.wire, provider);
    assert.equal(received.stream, false);
    assert.equal(received.model, MODELS[provider]);
    assert.deepEqual(received.messages, ASK.messages);
    assert.equal(received.maxTokens, 1_024);
    const sentKey = provider === "gemini" ? received.headers["x-goog-api-key"] : provider === "anthropic" ? received.headers["x-api-key"] ?? received.headers["authorization"]?.slice(7) : received.headers["authorization"]?.slice(7);
    assert.equal(sentKey, PLANTED);
    const count = h.counters.of(mind.info.name);
    assert.equal(count.requests.ok, 1);
    assert.equal(count.attempts, 1);
    assert.deepEqual(count.http, { 200: 1 });
    assert.equal(count.retries, 0);
    assert.equal(count.inputTokens, 10);
    assert.equal(count.outputTokens, 8);
    const price = priceOf(provider, MODELS[provider]);
    assert.ok(price !== undefined);
    assert.equal(count.costMicroUsd, price.inputPerM * 10 + price.outputPerM * 8);
    assert.equal(count.priced, true);
    assert.ok(count.latencyMsSum > 0);
  });

  test(`minds ${provider}: a streamed answer arrives in deltas that make the whole text`, async (t) => {
    const h = await harness(t, { chunkChars: 3 });
    const mind = h.client(provider);
    const deltas: string[] = [];
    const reply = await mind.chat({ ...ASK, temperature: 0.5 }, { onDelta: (d) => deltas.push(d) });
    assert.equal(reply.text, "echo: what is the colour of the sky");
    assert.ok(deltas.length >= 10, `${deltas.length} deltas`);
    assert.equal(deltas.join(""), reply.text);
    assert.equal(reply.finish, "stop");
    assert.deepEqual(reply.usage, { inputTokens: 10, outputTokens: 8 });
    const [received] = h.fake.requests();
    assert.equal(received?.stream, true);
    assert.equal(received?.temperature, 0.5);
    assert.equal(h.counters.of(mind.info.name).requests.ok, 1);
  });

  test(`minds ${provider}: an answer cut by maxTokens finishes "length"`, async (t) => {
    const h = await harness(t);
    const mind = h.client(provider);
    for (const stream of [false, true]) {
      const reply = await mind.chat({ ...ASK, maxTokens: 3 }, stream ? { onDelta: () => undefined } : {});
      assert.equal(reply.text, "echo: what is");
      assert.equal(reply.finish, "length");
    }
    assert.deepEqual(h.fake.requests().map((r) => r.maxTokens), [3, 3]);
  });

  test(`minds ${provider}: 429 with retry-after, then success — retried after the wait asked for, each attempt counted`, async (t) => {
    const h = await harness(t);
    const mind = h.client(provider);
    h.fake.script({ kind: "status", status: 429, retryAfter: "2" });
    const reply = await mind.chat(ASK, {});
    assert.equal(reply.text, "echo: what is the colour of the sky");
    assert.deepEqual(h.waits, [2_000]);
    assert.equal(h.fake.requests().length, 2);
    const count = h.counters.of(mind.info.name);
    assert.deepEqual(count.http, { 429: 1, 200: 1 });
    assert.equal(count.attempts, 2);
    assert.equal(count.retries, 1);
    assert.equal(count.requests.ok, 1);
    assert.equal(count.requests["rate-limited"], 0);
  });

  test(`minds ${provider}: 500 then 503 then success, streamed — retried with growing backoff`, async (t) => {
    const h = await harness(t);
    const mind = h.client(provider);
    h.fake.script({ kind: "status", status: 500 }, { kind: "status", status: 503 });
    const deltas: string[] = [];
    const reply = await mind.chat(ASK, { onDelta: (d) => deltas.push(d) });
    assert.equal(deltas.join(""), reply.text);
    assert.equal(h.waits.length, 2);
    assert.ok(h.waits[0] !== undefined && h.waits[0] >= 7.5 && h.waits[0] <= 10, `first wait ${h.waits[0]}`);
    assert.ok(h.waits[1] !== undefined && h.waits[1] >= 15 && h.waits[1] <= 20, `second wait ${h.waits[1]}`);
    assert.deepEqual(h.counters.of(mind.info.name).http, { 500: 1, 503: 1, 200: 1 });
    assert.equal(h.counters.of(mind.info.name).retries, 2);
  });

  test(`minds ${provider}: a persistent 500 fails "server" after the policy's attempts`, async (t) => {
    const h = await harness(t);
    const mind = h.client(provider, { policy: { attempts: 4 } });
    h.fake.persistent = { kind: "status", status: 500, message: "the model fell over" };
    const error = await expectKind(mind.chat(ASK, {}), "server");
    assert.equal(error.status, 500);
    assert.equal(error.attempts, 4);
    assert.match(error.message, /HTTP 500 \(the model fell over\) after 4 attempts/);
    assert.equal(h.fake.requests().length, 4);
    const count = h.counters.of(mind.info.name);
    assert.equal(count.requests.server, 1);
    assert.equal(count.attempts, 4);
    assert.equal(count.retries, 3);
  });

  test(`minds ${provider}: a hang is a timeout, not retried`, async (t) => {
    const h = await harness(t);
    const mind = h.client(provider, { policy: { timeoutMs: 300 } });
    h.fake.script({ kind: "hang" });
    const error = await expectKind(mind.chat(ASK, {}), "timeout");
    assert.match(error.message, /no answer within 300 ms/);
    assert.equal(h.fake.requests().length, 1);
    assert.equal(h.counters.of(mind.info.name).requests.timeout, 1);
    // The mind answers again afterwards.
    assert.equal((await mind.chat(ASK, {})).finish, "stop");
  });

  test(`minds ${provider}: a stream that stalls is a timeout; what came is partial, not an answer`, async (t) => {
    const h = await harness(t, { chunkChars: 4 });
    const mind = h.client(provider, { policy: { stallMs: 300 } });
    h.fake.script({ kind: "stall", afterChunks: 2 });
    const deltas: string[] = [];
    const error = await expectKind(mind.chat(ASK, { onDelta: (d) => deltas.push(d) }), "timeout");
    assert.match(error.message, /stalled: nothing for 300 ms/);
    assert.equal(deltas.join(""), "echo: wh");
    assert.equal(error.partial, "echo: wh");
    assert.equal(h.fake.requests().length, 1, "not retried once text was streamed");
  });

  test(`minds ${provider}: a stream whose connection breaks is truncated — partial text, no reply, no crash`, async (t) => {
    const h = await harness(t, { chunkChars: 4 });
    const mind = h.client(provider);
    h.fake.script({ kind: "truncate", afterChunks: 3 });
    const deltas: string[] = [];
    const error = await expectKind(mind.chat(ASK, { onDelta: (d) => deltas.push(d) }), "truncated");
    assert.equal(error.partial, "echo: what i");
    assert.equal(deltas.join(""), error.partial);
    assert.equal(h.fake.requests().length, 1);
    assert.equal(h.counters.of(mind.info.name).requests.truncated, 1);
  });

  test(`minds ${provider}: the provider's error event inside a stream is "server", with the text so far as partial`, async (t) => {
    const h = await harness(t, { chunkChars: 4 });
    const mind = h.client(provider);
    h.fake.script({ kind: "stream-error", afterChunks: 2 });
    const error = await expectKind(mind.chat(ASK, { onDelta: () => undefined }), "server");
    assert.match(error.message, /overloaded|had an error/i);
    assert.equal(error.partial, "echo: wh");
    assert.equal(h.fake.requests().length, 1);
  });

  test(`minds ${provider}: a stream that ends cleanly before its end events is truncated`, async (t) => {
    const h = await harness(t, { chunkChars: 4 });
    const mind = h.client(provider);
    h.fake.script({ kind: "end-early", afterChunks: 2 });
    const error = await expectKind(mind.chat(ASK, { onDelta: () => undefined }), "truncated");
    assert.equal(error.partial, "echo: wh");
  });

  test(`minds ${provider}: a whole answer cut mid-body is truncated; one that stops mid-body times out`, async (t) => {
    const h = await harness(t);
    const mind = h.client(provider, { policy: { timeoutMs: 300 } });
    h.fake.script({ kind: "truncate", afterChunks: 0 }, { kind: "end-early", afterChunks: 0 }, { kind: "stall", afterChunks: 0 });
    await expectKind(mind.chat(ASK, {}), "truncated");
    await expectKind(mind.chat(ASK, {}), "truncated");
    await expectKind(mind.chat(ASK, {}), "timeout");
    assert.equal(h.fake.requests().length, 3, "none retried");
  });

  test(`minds ${provider}: malformed JSON and answers of the wrong shape are "malformed", streamed or not, never retried`, async (t) => {
    const h = await harness(t, { chunkChars: 4 });
    const mind = h.client(provider);
    const cases: [Fault, boolean][] = [[{ kind: "malformed" }, false], [{ kind: "malformed" }, true], [{ kind: "unexpected" }, false], [{ kind: "unexpected" }, true]];
    for (const [fault, stream] of cases) {
      h.fake.script(fault);
      const error = await expectKind(mind.chat(ASK, stream ? { onDelta: () => undefined } : {}), "malformed");
      assert.doesNotMatch(error.message, /PLANTED/);
    }
    assert.equal(h.fake.requests().length, cases.length);
    assert.equal(h.counters.of(mind.info.name).requests.malformed, cases.length);
  });

  test(`minds ${provider}: cancelled mid-stream by the caller's signal`, async (t) => {
    const h = await harness(t, { chunkChars: 2, chunkDelayMs: 30 });
    const mind = h.client(provider);
    const controller = new AbortController();
    const deltas: string[] = [];
    const error = await expectKind(mind.chat(ASK, {
      signal: controller.signal,
      onDelta: (d) => {
        deltas.push(d);
        if (deltas.length === 2) controller.abort();
      },
    }), "cancelled");
    assert.equal(error.partial, deltas.join(""));
    assert.equal(h.counters.of(mind.info.name).requests.cancelled, 1);
    // Already cancelled: no request at all.
    await expectKind(mind.chat(ASK, { signal: AbortSignal.abort() }), "cancelled");
    assert.equal(h.fake.requests().length, 1);
  });

  test(`minds ${provider}: 401 is "auth" and never repeats the key the server echoes; 400 is "refused"`, async (t) => {
    const h = await harness(t);
    h.fake.keys = { [provider]: "the-right-key" };
    const mind = h.client(provider);
    const error = await expectKind(mind.chat(ASK, {}), "auth");
    assert.equal(error.status, 401);
    assert.equal(h.fake.requests().length, 1, "not retried");
    assert.doesNotMatch(`${error.message} ${error.stack ?? ""} ${inspect(error)}`, /PLANTED/);
    h.fake.keys = {};
    h.fake.script({ kind: "status", status: 400, message: `model not found; your key was ${PLANTED} (Bearer ${PLANTED})` });
    const refused = await expectKind(mind.chat(ASK, {}), "refused");
    assert.match(refused.message, /model not found/);
    assert.doesNotMatch(`${refused.message} ${inspect(refused)}`, /PLANTED/);
  });
}

test("minds anthropic: 529 overloaded is retried as a server error", async (t) => {
  const h = await harness(t);
  const mind = h.client("anthropic");
  h.fake.script({ kind: "status", status: 529 });
  assert.equal((await mind.chat(ASK, {})).finish, "stop");
  assert.deepEqual(h.counters.of(mind.info.name).http, { 529: 1, 200: 1 });
});

test("minds: a retry-after beyond the policy's bound is not waited for: rate-limited at once, with the wait", async (t) => {
  const h = await harness(t);
  const mind = h.client("openai", { policy: { retryAfterMaxMs: 1_000 } });
  h.fake.script({ kind: "status", status: 429, retryAfterMs: 90_000 });
  const error = await expectKind(mind.chat(ASK, {}), "rate-limited");
  assert.equal(error.retryAfterMs, 90_000);
  assert.deepEqual(h.waits, []);
  assert.equal(h.fake.requests().length, 1);
});

test("minds: a refused connection is 'unreachable', retried, each attempt counted as network", async (t) => {
  const h = await harness(t);
  const port = await closedPort();
  const mind = h.client("openai", { baseURL: `http://127.0.0.1:${port}/v1`, kind: "local", model: "llama3.2" });
  const error = await expectKind(mind.chat(ASK, {}), "unreachable");
  assert.match(error.message, /ECONNREFUSED/);
  assert.equal(error.attempts, 3);
  const count = h.counters.of(mind.info.name);
  assert.deepEqual(count.http, { network: 3 });
  assert.equal(count.retries, 2);
  assert.equal(count.requests.unreachable, 1);
});

test("minds: close() cancels calls in flight and later ones", async (t) => {
  const h = await harness(t);
  const mind = h.client("openai");
  h.fake.script({ kind: "hang" });
  const pending = mind.chat(ASK, {});
  while (h.fake.requests().length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  mind.close?.();
  await expectKind(pending, "cancelled");
  await expectKind(mind.chat(ASK, {}), "cancelled");
});

test("minds: the caller's onDelta throwing ends the call with that error, and the request is dropped", async (t) => {
  const h = await harness(t, { chunkChars: 2, chunkDelayMs: 20 });
  const mind = h.client("anthropic");
  const mine = new Error("the terminal went away");
  await assert.rejects(mind.chat(ASK, { onDelta: () => { throw mine; } }), (error) => error === mine);
  assert.equal(h.fake.requests().length, 1);
});

test("minds: bad requests are refused without a request, never a crash", async (t) => {
  const h = await harness(t);
  const mind = h.client("gemini");
  const bad: unknown[] = [
    { messages: [] },
    { messages: "hello" },
    { messages: [{ role: "robot", content: "x" }] },
    { messages: [{ role: "user", content: 42 }] },
    { messages: [null] },
    { messages: [{ role: "user", content: "x" }], maxTokens: -1 },
    { messages: [{ role: "user", content: "x" }], maxTokens: 1.5 },
    { messages: [{ role: "user", content: "x" }], temperature: 9 },
    { messages: [{ role: "system", content: "only a system prompt" }] },
    null,
  ];
  for (const request of bad) await expectKind(mind.chat(request as MindRequest, {}), "refused");
  assert.equal(h.fake.requests().length, 0);
});

test("minds: an answer beyond answerCharsMax is refused as malformed, streamed or not", async (t) => {
  const h = await harness(t, { reply: () => "word ".repeat(400) });
  const mind = h.client("openai", { policy: { answerCharsMax: 1_000 } });
  await expectKind(mind.chat(ASK, {}), "malformed");
  const error = await expectKind(mind.chat(ASK, { onDelta: () => undefined }), "malformed");
  assert.match(error.message, /longer than 1000 characters/);
  assert.ok(error.partial.length <= 1_000);
});

test("minds: a response body beyond responseBytesMax is malformed", async (t) => {
  const h = await harness(t, { reply: () => "x".repeat(20_000) });
  const mind = h.client("openai", { policy: { responseBytesMax: 4_096 } });
  const error = await expectKind(mind.chat(ASK, {}), "malformed");
  assert.match(error.message, /larger than 4096 bytes/);
});

test("minds: turns of one role in a row are joined for Anthropic and Gemini; OpenAI gets them as given", async (t) => {
  const h = await harness(t);
  const messages: MindRequest["messages"] = [
    { role: "system", content: "rule one" }, { role: "user", content: "a" }, { role: "user", content: "b" },
    { role: "system", content: "rule two" }, { role: "assistant", content: "c" }, { role: "user", content: "d" },
  ];
  await h.client("anthropic").chat({ messages }, {});
  await h.client("gemini").chat({ messages }, {});
  await h.client("openai").chat({ messages }, {});
  const [anthropic, gemini, openai] = h.fake.requests();
  const joined = [{ role: "system", content: "rule one\n\nrule two" }, { role: "user", content: "a\n\nb" }, { role: "assistant", content: "c" }, { role: "user", content: "d" }];
  assert.deepEqual(anthropic?.messages, joined);
  assert.deepEqual(gemini?.messages, joined);
  assert.deepEqual(openai?.messages, messages);
  assert.equal((anthropic?.body as { max_tokens?: number }).max_tokens, 1_024);
  assert.equal((openai?.body as { max_completion_tokens?: number }).max_completion_tokens, 1_024, "OpenAI's own API gets max_completion_tokens");
});

test("minds: embeddings from OpenAI-compatible servers and Gemini, batched, as Float32Array; Anthropic has none", async (t) => {
  const h = await harness(t, { dims: 16 });
  const texts = ["alpha", "beta", "gamma", "delta", "epsilon"];
  for (const provider of ["openai", "gemini"] as const) {
    const mind = h.client(provider, { embedModel: provider === "openai" ? "text-embedding-3-small" : "gemini-embedding-001", policy: { embedBatch: 2 } });
    assert.equal(mind.info.embeds, true);
    const vectors = await (mind.embed as NonNullable<MindClient["embed"]>)(texts);
    assert.equal(vectors.length, 5);
    vectors.forEach((v, i) => {
      assert.ok(v instanceof Float32Array);
      assert.deepEqual([...v], embedding(texts[i] as string, 16));
    });
    const count = h.counters.of(mind.info.name);
    assert.equal(count.embeds.ok, 1);
    assert.equal(count.attempts, 3, "5 texts in batches of 2");
  }
  assert.deepEqual(h.fake.requests("embed").map((r) => [r.wire, r.model, r.inputs.length]), [
    ["openai", "text-embedding-3-small", 2], ["openai", "text-embedding-3-small", 2], ["openai", "text-embedding-3-small", 1],
    ["gemini", "gemini-embedding-001", 2], ["gemini", "gemini-embedding-001", 2], ["gemini", "gemini-embedding-001", 1],
  ]);
  assert.equal(h.counters.of("openai-mind").inputTokens, 5);
  assert.equal(h.client("anthropic").embed, undefined);
  assert.equal(h.client("anthropic").info.embeds, false);
  assert.equal(h.client("openai").embed, undefined, "no embedding model, no embed");
});

test("minds: embeddings fail clearly — malformed answers, retries, bad input", async (t) => {
  const h = await harness(t);
  const mind = h.client("openai", { embedModel: "nomic-embed-text", kind: "local", model: "llama3.2" });
  const embed = mind.embed as NonNullable<MindClient["embed"]>;
  h.fake.script({ kind: "malformed" });
  await expectKind(embed(["a"]), "malformed");
  h.fake.script({ kind: "unexpected" });
  await expectKind(embed(["a"]), "malformed");
  h.fake.script({ kind: "status", status: 503 });
  assert.equal((await embed(["a"])).length, 1);
  await expectKind(embed([""]), "refused");
  await expectKind(embed([7 as unknown as string]), "refused");
  const count = h.counters.of(mind.info.name);
  assert.equal(count.embeds.malformed, 2);
  assert.equal(count.embeds.ok, 1);
  assert.equal(count.embeds.refused, 2);
  assert.equal(count.costMicroUsd, 0, "a local mind costs nothing");
});

test("minds: an OpenAI-compatible server lists its models", async (t) => {
  const h = await harness(t);
  const mind = h.client("openai", { kind: "local", model: "llama3.2" });
  assert.deepEqual(await (mind.models as NonNullable<MindClient["models"]>)(), ["fake-model"]);
  assert.equal(h.client("gemini").models, undefined);
});

test("minds: cost — a known frontier model priced, an unknown one counted 0 and flagged, a local one 0", async (t) => {
  const h = await harness(t);
  await h.client("openai", { model: "gpt-4o-mini-2024-07-18" }).chat(ASK, {});
  const known = h.counters.of("openai-mind");
  assert.equal(known.costMicroUsd, 10 * 0.15 + 8 * 0.6);
  const unknown = h.client("anthropic", { model: "claude-unreleased-9" });
  await unknown.chat(ASK, {});
  assert.equal(h.counters.of("anthropic-mind").priced, false);
  assert.equal(h.counters.of("anthropic-mind").costMicroUsd, 0);
  assert.equal(priceOf("anthropic", "claude-sonnet-4-5-20250929")?.outputPerM, 15);
  assert.equal(priceOf("anthropic", "claude-opus-4-20250514")?.inputPerM, 15);
  assert.equal(priceOf("gemini", "models/gemini-2.5-flash-lite")?.inputPerM, 0.1);
  assert.equal(priceOf("openai", "gpt-4.1"), priceOf("openai", "gpt-4.1-2025-04-14"));
  assert.equal(priceOf("openai", "llama3.2"), undefined);
});

test("minds: metrics — requests by outcome, tokens by direction, cost in USD, retries", async (t) => {
  const h = await harness(t);
  const mind = h.client("openai");
  h.fake.script({ kind: "status", status: 429, retryAfter: "0" });
  await mind.chat(ASK, {});
  h.fake.script({ kind: "hang" });
  await expectKind(h.client("openai", { policy: { timeoutMs: 100 } }).chat(ASK, {}), "timeout");
  const registry = new Registry();
  mindMetrics(h.counters, registry);
  const text = await registry.metrics();
  assert.match(text, /pk_mind_requests_total\{mind="openai-mind",outcome="ok"\} 1/);
  assert.match(text, /pk_mind_requests_total\{mind="openai-mind",outcome="timeout"\} 1/);
  assert.match(text, /pk_mind_tokens_total\{mind="openai-mind",direction="in"\} 10/);
  assert.match(text, /pk_mind_tokens_total\{mind="openai-mind",direction="out"\} 8/);
  assert.match(text, /pk_mind_cost_usd_total\{mind="openai-mind"\} 0\.0000168/);
  assert.match(text, /pk_mind_retries_total\{mind="openai-mind"\} 1/);
  assert.match(text, /pk_mind_attempts_total\{mind="openai-mind",status="429"\} 1/);
  assert.match(text, /pk_mind_priced\{mind="openai-mind"\} 1/);
});

test("minds: a planted key never shows in errors, info, counters, metrics or an inspected client", async (t) => {
  const h = await harness(t, { chunkChars: 3 });
  const seen: string[] = [];
  const echo = (r: { headers: Readonly<Record<string, string>> }): string => `bad request from ${JSON.stringify(r.headers)}`;
  for (const provider of PROVIDERS) {
    const mind = h.client(provider, { policy: { timeoutMs: 200, stallMs: 200, attempts: 2 } });
    seen.push(JSON.stringify(mind.info), inspect(mind, { depth: 10, showHidden: true }));
    const faults: Fault[] = [
      { kind: "status", status: 400, message: echo }, { kind: "status", status: 401, message: echo }, { kind: "status", status: 403, message: echo },
      { kind: "status", status: 429, message: echo, retryAfterMs: 999_999 }, { kind: "status", status: 500, message: echo }, { kind: "status", status: 500, message: echo },
      { kind: "malformed" }, { kind: "unexpected" }, { kind: "truncate", afterChunks: 1 }, { kind: "stall", afterChunks: 1 }, { kind: "hang" },
    ];
    for (const fault of faults) {
      for (const stream of [false, true]) {
        h.fake.persistent = fault;
        const error = await failure(mind.chat(ASK, stream ? { onDelta: () => undefined } : {}), `${provider} ${JSON.stringify(fault)} stream ${stream}`);
        seen.push(error.message, error.stack ?? "", inspect(error, { depth: 10, showHidden: true }), JSON.stringify(error));
      }
      h.fake.persistent = undefined;
    }
    h.fake.keys = { [provider]: "another" };
    const auth = await failure(mind.chat(ASK, {}));
    seen.push(auth.message, inspect(auth));
    h.fake.keys = {};
  }
  const registry = new Registry();
  mindMetrics(h.counters, registry);
  seen.push(await registry.metrics(), JSON.stringify(h.counters.entries()), inspect(h.counters, { depth: 10 }));
  const key = new MindKey(PLANTED, "test");
  seen.push(String(key), JSON.stringify({ key }), inspect(key), `${key}`);
  assert.ok(h.fake.received.some((r) => JSON.stringify(r.headers).includes(PLANTED)), "the key did reach the server (the test would prove nothing otherwise)");
  const all = seen.join("\n");
  assert.doesNotMatch(all, /PLANTED/);
  assert.match(all, /\[redacted\]/, "the server's echo of the key was scrubbed, not lost");
});

test("minds: a local mind never sends the environment's OpenAI key, org or project", async (t) => {
  const h = await harness(t);
  const env = { OPENAI_API_KEY: PLANTED, OPENAI_ORG_ID: "org-PLANTED", OPENAI_PROJECT_ID: "proj-PLANTED", PK_MIND_FRONTIER: "off" };
  const saved = { ...process.env };
  Object.assign(process.env, env);
  t.after(() => {
    for (const name of Object.keys(env)) delete process.env[name];
    Object.assign(process.env, saved);
  });
  const [config] = mindConfigs({ mind: `${h.fake.url}/v1#llama3.2` }, process.env, "n1");
  assert.ok(config !== undefined);
  const mind = openMind(config, { counters: h.counters });
  t.after(() => mind.close?.());
  await mind.chat(ASK, {});
  await mind.chat(ASK, { onDelta: () => undefined });
  for (const request of h.fake.requests()) {
    assert.doesNotMatch(JSON.stringify(request.headers), /PLANTED/);
    assert.equal(request.headers["authorization"], "Bearer no-key");
  }
  assert.equal((h.fake.requests()[0]?.body as { max_tokens?: number }).max_tokens, 1_024, "a local server gets max_tokens");
});

test("minds config: --mind URL#model, --mind-model, /v1 added, names, and frontier minds from the environment", () => {
  const local = mindConfigs({ mind: "http://127.0.0.1:11434#llama3.2" }, {}, "n1");
  assert.deepEqual(local.map((c) => [c.name, c.provider, c.kind, c.model, c.baseURL, c.embedModel, c.key]), [["llama3.2", "openai", "local", "llama3.2", "http://127.0.0.1:11434/v1", undefined, undefined]]);
  const flagged = mindConfigs({ mind: ["http://gpu-box:8000/v1/"], mindModel: "Qwen/Qwen2.5-7B-Instruct", mindEmbedModel: "bge-m3", mindName: "qwen" }, {}, "n2");
  assert.deepEqual(flagged.map((c) => [c.name, c.model, c.baseURL, c.embedModel, c.node]), [["qwen", "Qwen/Qwen2.5-7B-Instruct", "http://gpu-box:8000/v1", "bge-m3", "n2"]]);
  const two = mindConfigs({ mind: ["http://a:1/v1#m1", "https://b/v1#m2"] }, {}, "n1");
  assert.deepEqual(two.map((c) => c.name), ["m1", "m2"]);
  const env = {
    OPENAI_API_KEY: "sk-one", ANTHROPIC_API_KEY: "sk-ant-two", GOOGLE_API_KEY: "AIza-three", PK_ANTHROPIC_MODEL: "claude-sonnet-4-5",
    OPENAI_BASE_URL: "https://gateway.example/v1", PK_GEMINI_EMBED_MODEL: "none", GEMINI_API_KEY: " ",
  };
  const frontier = mindConfigs({}, env, "n1");
  assert.deepEqual(frontier.map((c) => [c.provider, c.kind, c.model, c.baseURL, c.embedModel, c.key?.reveal()]), [
    ["openai", "frontier", "gpt-4.1-mini", "https://gateway.example/v1", "text-embedding-3-small", "sk-one"],
    ["anthropic", "frontier", "claude-sonnet-4-5", "https://api.anthropic.com", undefined, "sk-ant-two"],
    ["gemini", "frontier", "gemini-2.5-flash", "https://generativelanguage.googleapis.com", undefined, "AIza-three"],
  ]);
  assert.deepEqual(mindConfigs({}, { ...env, PK_MIND_FRONTIER: "off" }, "n1"), []);
  assert.deepEqual(mindConfigs({}, {}, "n1"), []);
  assert.equal(mindConfigs({}, { ANTHROPIC_API_KEY: "k", ANTHROPIC_BASE_URL: "http://127.0.0.1:9/" }, "n1")[0]?.baseURL, "http://127.0.0.1:9", "http on loopback is allowed");
});

test("minds config: clear errors for bad URLs, missing models, a key over plain http", () => {
  const bad: [Parameters<typeof mindConfigs>[0], Record<string, string>, RegExp][] = [
    [{ mind: "ftp://host/v1#m" }, {}, /only http and https/],
    [{ mind: "not a url#m" }, {}, /not a URL/],
    [{ mind: "http://127.0.0.1:11434/v1" }, {}, /which model\?/],
    [{ mind: "http://user:secret@host/v1#m" }, {}, /no user or password/],
    [{ mind: "http://host/v1?key=x#m" }, {}, /no query/],
    [{ mind: "http://host/v1#m", mindModel: "other" }, {}, /given twice/],
    [{ mind: "http://host/v1#bad model" }, {}, /spaces or control/],
    [{ mind: ["http://a/v1#m", "http://b/v1#m"] }, {}, /two minds would be named m/],
    [{ mind: ["http://a/v1#m", "http://b/v1#n"], mindModel: "x" }, {}, /several --mind/],
    [{ mindModel: "llama3.2" }, {}, /--mind-model needs --mind URL/],
    [{ mind: "http://host/v1#m", mindName: "a name" }, {}, /name is 1 to 64/],
    [{}, { OPENAI_API_KEY: "k", OPENAI_BASE_URL: "http://gateway.example/v1" }, /only over https/],
    [{}, { OPENAI_API_KEY: "k", OPENAI_BASE_URL: "file:///etc/passwd" }, /only http and https/],
    [{}, { OPENAI_API_KEY: "two words" }, /OPENAI_API_KEY: the key holds spaces/],
    [{}, { PK_MIND_FRONTIER: "maybe" }, /on or off/],
  ];
  for (const [flags, env, message] of bad) assert.throws(() => mindConfigs(flags, env, "n1"), (error: unknown) => error instanceof MindConfigError && message.test(error.message), `${JSON.stringify(flags)} ${JSON.stringify(env)}`);
});

test("minds config: key files — 0600 read, 0644, 0640, a directory and a symlink refused", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pk-minds-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, "good.key");
  writeFileSync(good, `${PLANTED}\n`, { mode: 0o600 });
  assert.equal(readKeyFile(good).reveal(), PLANTED);
  const [config] = mindConfigs({}, { PK_ANTHROPIC_KEY_FILE: good, ANTHROPIC_API_KEY: "the-variable" }, "n1");
  assert.equal(config?.key?.reveal(), PLANTED, "a key file wins over the variable");
  for (const mode of [0o644, 0o640, 0o604]) {
    const loose = join(dir, `loose-${mode.toString(8)}.key`);
    writeFileSync(loose, PLANTED);
    chmodSync(loose, mode);
    assert.throws(() => readKeyFile(loose), (e: unknown) => e instanceof MindConfigError && /lets others read it; run chmod 600/.test(e.message) && !e.message.includes(PLANTED));
    assert.throws(() => mindConfigs({}, { PK_OPENAI_KEY_FILE: loose }, "n1"), MindConfigError);
    assert.throws(() => mindConfigs({ mind: "http://h/v1#m", mindKeyFile: loose }, {}, "n1"), MindConfigError);
  }
  const sub = join(dir, "sub");
  mkdirSync(sub, { mode: 0o700 });
  assert.throws(() => readKeyFile(sub), /not a regular file/);
  const link = join(dir, "link.key");
  symlinkSync(good, link);
  assert.throws(() => readKeyFile(link), /symbolic link/);
  assert.throws(() => readKeyFile(join(dir, "missing.key")), /cannot open it \(ENOENT\)/);
  const empty = join(dir, "empty.key");
  writeFileSync(empty, "\n", { mode: 0o600 });
  assert.throws(() => readKeyFile(empty), /the key is empty/);
  const local = mindConfigs({ mind: "http://vllm:8000/v1#m", mindKeyFile: good }, {}, "n1");
  assert.equal(local[0]?.key?.reveal(), PLANTED);
});

test("minds: scrub removes keys and key-shaped text from the provider's words", () => {
  assert.equal(scrub(`Incorrect API key provided: ${PLANTED}.`, [PLANTED]), "Incorrect API key provided: [redacted].");
  assert.doesNotMatch(scrub("key sk-proj-abcdefgh1234 and AIzaSyA1234567890abcdefg and Bearer tok_123", []), /abcdefgh|AIzaSy|tok_123/);
  assert.ok(scrub("x".repeat(500), []).length <= 201);
});

test("mind-server: the deterministic answer names the system prompt's facts that share a word with the question", () => {
  const facts = "You are the swarm's memory.\nThe user's cat is named Miso.\nThe router in the hall runs OpenWrt.\nAlice likes green tea.";
  assert.equal(recall([{ role: "system", content: facts }, { role: "user", content: "What is my cat's name?" }]), "I recall: The user's cat is named Miso.");
  assert.equal(recall([{ role: "system", content: facts }, { role: "user", content: "Which firmware does the router run? And what tea?" }]), "I recall: The router in the hall runs OpenWrt. | Alice likes green tea.");
  assert.equal(recall([{ role: "system", content: facts }, { role: "user", content: "How far is the moon?" }]), "I do not know.");
  assert.equal(recall([{ role: "user", content: "hello" }]), "I do not know.");
});

test("mind-server: as its own process, an OpenAI-compatible local mind with a deterministic answer and a JSONL log", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pk-mind-server-"));
  const log = join(dir, "requests.jsonl");
  const child = spawn(process.execPath, [join(import.meta.dirname, "..", "fakes", "mind-server.ts"), "--port", "0", "--latency-ms", "20", "--log", log], { stdio: ["ignore", "pipe", "inherit"] });
  t.after(() => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  const [line] = (await once(createInterface({ input: child.stdout as NonNullable<typeof child.stdout> }), "line")) as [string];
  const { url } = JSON.parse(line) as { url: string };
  const [config] = mindConfigs({ mind: `${url}#llama3.2` }, {}, "n3");
  assert.ok(config !== undefined);
  const mind = openMind(config);
  t.after(() => mind.close?.());
  const deltas: string[] = [];
  const facts = "The user's cat is named Miso.\nThe garage code is 4711.";
  const reply = await mind.chat({ messages: [{ role: "system", content: facts }, { role: "user", content: "what is the garage code?" }] }, { onDelta: (d) => deltas.push(d) });
  assert.equal(reply.text, "I recall: The garage code is 4711.");
  assert.equal(deltas.join(""), reply.text);
  assert.equal(reply.mind.kind, "local");
  const whole = await mind.chat({ messages: [{ role: "system", content: facts }, { role: "user", content: "and the cat?" }] }, {});
  assert.equal(whole.text, "I recall: The user's cat is named Miso.");
  const logged = readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { model: string; stream: boolean; messages: { content: string }[]; headers?: unknown });
  assert.deepEqual(logged.map((r) => [r.model, r.stream, r.messages[1]?.content]), [["llama3.2", true, "what is the garage code?"], ["llama3.2", false, "and the cat?"]]);
  assert.equal(logged[0]?.headers, undefined, "no headers (no key) in the log");
  child.kill("SIGTERM");
  const [code] = (await once(child, "exit")) as [number | null];
  assert.equal(code, 0);
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}
