// A program's manifest (src/core/evolve/manifest.ts) and its hooks' contracts
// (src/core/evolve/capabilities.ts): the header and beside forms, strict decoding with an error that
// names the field for every way a manifest can be wrong, defaults within the bounds, versions that
// only go up, the canonical JSON round trip (property), what a run's result must look like per hook,
// and the decoders fuzzed: arbitrary values and text never throw.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { CAPABILITIES, CAPABILITY_DTS, CAPABILITY_MODULE, HOOK_EXPORTS, HOOK_KINDS, checkHookResult, hookContractSource, utf8Length } from "../../src/core/evolve/capabilities.ts";
import {
  PROGRAM_DEFAULTS, PROGRAM_LIMITS, checkSuccessor, compareVersions, decodeManifest, grantedCapabilities, hookName, manifestHeader, manifestJson,
  parseManifest, readManifest, readProgram, topicMatches, type Manifest,
} from "../../src/core/evolve/manifest.ts";

const BASE = { name: "outliers", version: "1.0.0", hook: "sensor.prefilter" };

function decoded(value: unknown): Manifest {
  const result = decodeManifest(value);
  assert.ok(result.ok, result.ok ? "" : result.errors.join("; "));
  return result.value;
}

function errors(value: unknown): string {
  const result = decodeManifest(value);
  assert.equal(result.ok, false, `expected a refusal of ${JSON.stringify(value)}`);
  return result.ok ? "" : result.errors.join("; ");
}

test("manifest: the smallest manifest gets every default, nothing granted", () => {
  const m = decoded(BASE);
  assert.deepEqual(m, {
    name: "outliers", version: "1.0.0", hook: { kind: "sensor.prefilter" }, summary: undefined,
    capabilities: { log: false, kv: false, sensors: false, files: false, clock: false, random: false, topics: { read: [], publish: [] } },
    limits: { gas: PROGRAM_DEFAULTS.gas, memoryBytes: PROGRAM_DEFAULTS.memoryBytes, stackBytes: PROGRAM_DEFAULTS.stackBytes, wallMs: PROGRAM_DEFAULTS.wallMs, outputBytes: PROGRAM_DEFAULTS.outputBytes },
    periodMs: undefined,
  });
  assert.equal(grantedCapabilities(m.capabilities).size, 0);
  // The defaults are within the hard bounds.
  assert.ok(PROGRAM_DEFAULTS.gas <= PROGRAM_LIMITS.gasMax && PROGRAM_DEFAULTS.wallMs <= PROGRAM_LIMITS.wallMsMax && PROGRAM_DEFAULTS.outputBytes <= PROGRAM_LIMITS.outputBytesMax);
  assert.ok(PROGRAM_DEFAULTS.memoryBytes >= PROGRAM_LIMITS.memoryBytesMin && PROGRAM_DEFAULTS.memoryBytes <= PROGRAM_LIMITS.memoryBytesMax);
  assert.ok(PROGRAM_DEFAULTS.stackBytes >= PROGRAM_LIMITS.stackBytesMin && PROGRAM_DEFAULTS.stackBytes <= PROGRAM_LIMITS.stackBytesMax);
  assert.ok(PROGRAM_DEFAULTS.periodMs >= PROGRAM_LIMITS.periodMsMin && PROGRAM_DEFAULTS.periodMs <= PROGRAM_LIMITS.periodMsMax);
});

test("manifest: every hook, capability and limit as written", () => {
  const m = decoded({
    name: "watch-temp", version: "2.10.0", hook: "task", summary: "logs the temperature every minute", periodMs: 60_000,
    capabilities: { log: true, kv: true, sensors: true, files: false, clock: true, random: true, topics: { read: ["sensor.*", "self.minds"], publish: ["p.temp"] } },
    limits: { gas: 1_000, memoryBytes: 2 * 1024 * 1024, stackBytes: 64 * 1024, wallMs: 500, outputBytes: 4_096 },
  });
  assert.equal(m.periodMs, 60_000);
  assert.deepEqual(m.capabilities.topics, { read: ["sensor.*", "self.minds"], publish: ["p.temp"] });
  assert.deepEqual([...grantedCapabilities(m.capabilities)].sort(), ["clock", "kv", "log", "random", "sensors", "topics"]);
  assert.deepEqual(m.limits, { gas: 1_000, memoryBytes: 2 * 1024 * 1024, stackBytes: 64 * 1024, wallMs: 500, outputBytes: 4_096 });
  assert.equal(decoded({ ...BASE, hook: "task" }).periodMs, PROGRAM_DEFAULTS.periodMs);
  for (const hook of ["command", "probe"]) assert.equal(decoded({ ...BASE, hook }).hook.kind, hook);
  const topic = decoded({ ...BASE, hook: "topic:self.report" });
  assert.deepEqual(topic.hook, { kind: "topic", topic: "self.report" });
  assert.equal(hookName(topic.hook), "topic:self.report");
  // Highest bounds are accepted.
  decoded({ ...BASE, limits: { gas: PROGRAM_LIMITS.gasMax, memoryBytes: PROGRAM_LIMITS.memoryBytesMax, stackBytes: PROGRAM_LIMITS.stackBytesMax, wallMs: PROGRAM_LIMITS.wallMsMax, outputBytes: PROGRAM_LIMITS.outputBytesMax } });
});

test("manifest: a C program says \"language\":\"c\"; TypeScript is the default and \"ts\" leaves no trace", () => {
  const c = decoded({ ...BASE, language: "c" });
  assert.equal(c.language, "c");
  assert.equal(JSON.parse(manifestJson(c)).language, "c");
  assert.deepEqual(decoded(JSON.parse(manifestJson(c))), c);
  const ts = decoded({ ...BASE, language: "ts" });
  assert.equal(ts.language, undefined);
  assert.deepEqual(ts, decoded(BASE));
  assert.equal("language" in JSON.parse(manifestJson(ts)), false);
  assert.match(errors({ ...BASE, language: "rust" }), /language must be one of "ts", "c" \(got "rust"\)/);
  assert.match(errors({ ...BASE, language: 1 }), /language must be one of/);
});

test("manifest: each wrong field is refused with a message naming it", () => {
  const cases: [unknown, RegExp][] = [
    [null, /must be a JSON object/],
    [[BASE], /must be a JSON object/],
    [{ ...BASE, extra: 1 }, /"extra": unknown field/],
    [{ ...BASE, name: "Outliers" }, /^name must be/],
    [{ ...BASE, name: "1st" }, /^name must be/],
    [{ ...BASE, name: "a".repeat(PROGRAM_LIMITS.nameCharsMax + 1) }, /^name must be 1–48/],
    [{ ...BASE, name: undefined }, /^name must be/],
    [{ ...BASE, version: "1.0" }, /^version must be MAJOR.MINOR.PATCH/],
    [{ ...BASE, version: "01.0.0" }, /without leading zeros/],
    [{ ...BASE, version: "1.0.0-beta" }, /version/],
    [{ ...BASE, version: "1.0.1000000" }, /0–999999/],
    [{ ...BASE, version: 1 }, /version/],
    [{ ...BASE, hook: "cron" }, /hook must be one of .* \(got "cron"\)/],
    [{ ...BASE, hook: "topic" }, /hook must be one of/],
    [{ ...BASE, hook: "topic:" }, /topic:NAME needs a topic/],
    [{ ...BASE, hook: "topic:a b" }, /topic:NAME needs a topic/],
    [{ ...BASE, hook: 3 }, /hook must be a string/],
    [{ ...BASE, summary: "two\nlines" }, /summary must be one line/],
    [{ ...BASE, capabilities: ["log"] }, /capabilities must be an object/],
    [{ ...BASE, capabilities: { net: true } }, /capabilities.net: unknown capability/],
    [{ ...BASE, capabilities: { log: "yes" } }, /capabilities.log must be true or false \(got "yes"\)/],
    [{ ...BASE, capabilities: { topics: true } }, /capabilities.topics must be an object/],
    [{ ...BASE, capabilities: { topics: { write: ["p.x"] } } }, /capabilities.topics.write: unknown field/],
    [{ ...BASE, capabilities: { topics: { publish: ["mem"] } } }, /publishes only to topics under "p."/],
    [{ ...BASE, capabilities: { topics: { publish: ["*"] } } }, /publishes only to topics under "p."/],
    [{ ...BASE, capabilities: { topics: { read: ["a b"] } } }, /may hold only/],
    [{ ...BASE, capabilities: { topics: { read: [""] } } }, /must be 1–65 characters/],
    [{ ...BASE, capabilities: { topics: { read: [7] } } }, /must be a string/],
    [{ ...BASE, capabilities: { topics: { read: Array.from({ length: 17 }, (_, i) => `t${i}`) } } }, /at most 16 topic patterns/],
    [{ ...BASE, limits: { gas: 0 } }, /limits.gas must be a whole number from 1 to 100000 \(got 0\)/],
    [{ ...BASE, limits: { gas: PROGRAM_LIMITS.gasMax + 1 } }, /limits.gas/],
    [{ ...BASE, limits: { gas: 1.5 } }, /limits.gas/],
    [{ ...BASE, limits: { stackBytes: 1024 * 1024 } }, /limits.stackBytes must be a whole number from 16384 to 262144/],
    [{ ...BASE, limits: { memoryBytes: 1024 } }, /limits.memoryBytes/],
    [{ ...BASE, limits: { wallMs: "100" } }, /limits.wallMs/],
    [{ ...BASE, limits: { cpu: 1 } }, /limits.cpu: unknown limit/],
    [{ ...BASE, limits: 5 }, /limits must be an object/],
    [{ ...BASE, periodMs: 1_000 }, /periodMs is for task programs only/],
    [{ ...BASE, hook: "task", periodMs: 10 }, /periodMs must be a whole number from 100/],
  ];
  for (const [value, message] of cases) assert.match(errors(value), message, JSON.stringify(value));
  // Several problems are all reported, up to the bound.
  const three = decodeManifest({ name: 1, version: 2, hook: 3 });
  assert.ok(!three.ok && three.errors.length === 3);
  const many = decodeManifest({ ...BASE, ...Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`x${i}`, 1])) });
  assert.ok(!many.ok && many.errors.length === 20 && /and 31 more problems/.test(many.errors[19] ?? ""));
});

test("manifest: a header line, a header block, beside as JSON or as text; never both, never none", () => {
  const body = "import { log } from \"pk:program\";\nexport function task(): void { log.info(\"x\"); }\n";
  const line = `// @pk-program {"name":"a","version":"1.0.0","hook":"task","capabilities":{"log":true}}\n${body}`;
  const block = `\n  /* @pk-program {\n  "name": "a",\n  "version": "1.0.0",\n  "hook": "task",\n  "capabilities": { "log": true }\n} */\n${body}`;
  for (const source of [line, block]) {
    const program = readProgram(source);
    assert.ok(program.ok, program.ok ? "" : program.errors.join("; "));
    assert.equal(program.value.manifest.name, "a");
    assert.equal(program.value.source, source);
  }
  assert.ok(readProgram(body, { name: "a", version: "1.0.0", hook: "task" }).ok);
  assert.ok(readProgram(body, "{\"name\":\"a\",\"version\":\"1.0.0\",\"hook\":\"task\"}").ok);
  const refused: [string, unknown, RegExp][] = [
    [line, { name: "a", version: "1.0.0", hook: "task" }, /given twice/],
    [body, undefined, /no manifest: start the source with \/\/ @pk-program/],
    [`${body}// @pk-program {"name":"a","version":"1.0.0","hook":"task"}\n`, undefined, /must be the source's first line/],
    [`${line}// @pk-program {}\n`, undefined, /appears twice/],
    [`/* @pk-program {"name":"a"}\n${body}`, undefined, /not closed/],
    ["// @pk-program {name: a}\n", undefined, /the manifest is not JSON/],
    [`// @pk-program {"name":"a","version":"1.0.0","hook":"task","x":"${"y".repeat(PROGRAM_LIMITS.manifestBytesMax)}"}\n`, undefined, /over 4096 bytes/],
    [body, "not json", /not JSON/],
    [`${"x".repeat(PROGRAM_LIMITS.sourceBytesMax + 1)}`, { ...BASE }, /the source is over 65536 bytes/],
  ];
  for (const [source, beside, message] of refused) {
    const result = readProgram(source, beside);
    assert.ok(!result.ok, String(message));
    assert.match(result.errors.join("; "), message);
  }
  // readManifest does not bound the source (the verifier reports size as its own rule).
  assert.ok(readManifest(`${line}${"//\n".repeat(30_000)}`).ok);
  assert.equal(manifestHeader(body), undefined);
});

test("manifest: versions only go up, by number not by text", () => {
  assert.equal(compareVersions("1.0.0", "1.0.0"), 0);
  assert.equal(compareVersions("1.0.10", "1.0.9"), 1);
  assert.equal(compareVersions("1.9.0", "1.10.0"), -1);
  assert.equal(compareVersions("2.0.0", "10.0.0"), -1);
  const v1 = decoded(BASE);
  const v2 = decoded({ ...BASE, version: "1.0.1" });
  assert.equal(checkSuccessor(undefined, v1), undefined);
  assert.equal(checkSuccessor(v1, v2), undefined);
  assert.match(checkSuccessor(v2, v1) ?? "", /not above the deployed 1.0.1: versions only go up/);
  assert.match(checkSuccessor(v1, v1) ?? "", /versions only go up/);
  assert.match(checkSuccessor(v1, decoded({ ...BASE, name: "other", version: "9.0.0" })) ?? "", /does not replace/);
});

test("manifest: topic patterns match a name, or a prefix with *", () => {
  assert.ok(topicMatches("sensor.*", "sensor.temp"));
  assert.ok(topicMatches("sensor.*", "sensor."));
  assert.ok(!topicMatches("sensor.*", "sensors"));
  assert.ok(topicMatches("*", "mem"));
  assert.ok(topicMatches("p.temp", "p.temp"));
  assert.ok(!topicMatches("p.temp", "p.temp2"));
});

const manifestArb = fc.record({
  name: fc.stringMatching(/^[a-z][a-z0-9-]{0,47}$/),
  version: fc.tuple(fc.nat(PROGRAM_LIMITS.versionPartMax), fc.nat(PROGRAM_LIMITS.versionPartMax), fc.nat(PROGRAM_LIMITS.versionPartMax)).map((p) => p.join(".")),
  hook: fc.oneof(fc.constantFrom("sensor.prefilter", "task", "command", "probe"), fc.stringMatching(/^[a-z0-9._/-]{1,64}$/).map((t) => `topic:${t}`)),
  summary: fc.option(fc.string({ maxLength: 200 }).filter((s) => !/[\u0000-\u001f\u007f]/.test(s)), { nil: undefined }),
  capabilities: fc.record({
    log: fc.boolean(), kv: fc.boolean(), sensors: fc.boolean(), files: fc.boolean(), clock: fc.boolean(), random: fc.boolean(),
    topics: fc.record({
      read: fc.uniqueArray(fc.stringMatching(/^[a-z0-9._/-]{1,64}\*?$/), { maxLength: 16 }),
      publish: fc.uniqueArray(fc.stringMatching(/^p\.[a-z0-9._/-]{0,60}\*?$/), { maxLength: 16 }),
    }),
  }),
  limits: fc.record({
    gas: fc.integer({ min: 1, max: PROGRAM_LIMITS.gasMax }),
    memoryBytes: fc.integer({ min: PROGRAM_LIMITS.memoryBytesMin, max: PROGRAM_LIMITS.memoryBytesMax }),
    stackBytes: fc.integer({ min: PROGRAM_LIMITS.stackBytesMin, max: PROGRAM_LIMITS.stackBytesMax }),
    wallMs: fc.integer({ min: 1, max: PROGRAM_LIMITS.wallMsMax }),
    outputBytes: fc.integer({ min: 1, max: PROGRAM_LIMITS.outputBytesMax }),
  }),
});

test("manifest: the canonical JSON decodes back to the same manifest (property)", () => {
  fc.assert(fc.property(manifestArb, (value) => {
    const m = decoded(value.summary === undefined ? { ...value, summary: undefined } : value);
    const json = manifestJson(m);
    assert.ok(utf8Length(json) <= PROGRAM_LIMITS.manifestBytesMax * 2);
    assert.deepEqual(decoded(JSON.parse(json)), m);
  }), { numRuns: 1_000 });
});

test("manifest: fuzz — arbitrary values, JSON text and sources never throw; a refusal always says why", () => {
  const answer = (result: { ok: true } | { ok: false; errors: readonly string[] }): void => {
    if (!result.ok) assert.ok(result.errors.length > 0 && result.errors.every((e) => typeof e === "string" && e.length > 0 && e.length < 400));
  };
  fc.assert(fc.property(fc.anything(), (value) => answer(decodeManifest(value))), { numRuns: 3_000 });
  fc.assert(fc.property(fc.record({ name: fc.constant(BASE.name), version: fc.constant(BASE.version), capabilities: fc.anything(), limits: fc.anything(), hook: fc.oneof(fc.string(), fc.anything()) }, { requiredKeys: [] }), (value) => answer(decodeManifest(value))), { numRuns: 3_000 });
  fc.assert(fc.property(fc.json({ maxDepth: 4 }), (text) => answer(parseManifest(text))), { numRuns: 2_000 });
  fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 600 }), fc.constantFrom("", "// @pk-program ", "/* @pk-program ", "  //@pk-program{"), (text, prefix) => {
    answer(readProgram(prefix + text));
    answer(readProgram(text, text));
  }), { numRuns: 3_000 });
  // A deeply nested value beside the source is refused without walking it.
  let deep: unknown = 1;
  for (let i = 0; i < 100_000; i++) deep = { capabilities: deep };
  answer(decodeManifest({ ...BASE, capabilities: deep }));
});

test("capabilities: the declaration names every capability and hook; the contract module names the hook's export", () => {
  assert.ok(CAPABILITY_DTS.includes(`declare module "${CAPABILITY_MODULE}"`));
  for (const capability of CAPABILITIES) assert.ok(CAPABILITY_DTS.includes(`export const ${capability}:`), capability);
  for (const kind of HOOK_KINDS) {
    assert.ok(CAPABILITY_DTS.includes(kind === "sensor.prefilter" ? `"${kind}":` : `${kind}:`), kind);
    assert.equal(hookContractSource(kind), `import type { Hooks } from "pk:program";\nimport { ${HOOK_EXPORTS[kind]} } from "./program";\nexport const contract: Hooks["${kind}"] = ${HOOK_EXPORTS[kind]};\n`);
  }
});

test("capabilities: what a run returned is checked against its hook's contract", () => {
  const readings = [{ sensor: "temperature", value: 24.1, at: 1 }, { sensor: "humidity", value: 40, at: 1 }];
  const input = { readings, outputBytesMax: 16 };
  assert.equal(checkHookResult("sensor.prefilter", readings.slice(0, 1), input), undefined);
  assert.equal(checkHookResult("sensor.prefilter", [], input), undefined);
  assert.match(checkHookResult("sensor.prefilter", [...readings, readings[0]], input) ?? "", /returned 3 readings for 2 given/);
  assert.match(checkHookResult("sensor.prefilter", [{ sensor: "pressure", value: 1, at: 1 }], input) ?? "", /not given/);
  assert.match(checkHookResult("sensor.prefilter", [{ sensor: "temperature", value: Number.NaN, at: 1 }], input) ?? "", /finite value/);
  assert.match(checkHookResult("sensor.prefilter", [{ sensor: "temperature", value: 1 }], input) ?? "", /finite time/);
  assert.match(checkHookResult("sensor.prefilter", [null], input) ?? "", /not an object/);
  assert.match(checkHookResult("sensor.prefilter", "all", input) ?? "", /must return an array/);
  assert.equal(checkHookResult("task", undefined, input), undefined);
  assert.match(checkHookResult("task", 1, input) ?? "", /task must return nothing/);
  assert.match(checkHookResult("topic", {}, input) ?? "", /onTopic must return nothing/);
  assert.equal(checkHookResult("command", "done", input), undefined);
  assert.match(checkHookResult("command", "x".repeat(17), input) ?? "", /over 16 bytes/);
  assert.match(checkHookResult("command", "€€€€€€", input) ?? "", /over 16 bytes/);
  assert.match(checkHookResult("command", 5, input) ?? "", /must return a string/);
  assert.equal(checkHookResult("probe", { ok: true }, input), undefined);
  assert.equal(checkHookResult("probe", { ok: false, detail: "slow" }, input), undefined);
  assert.match(checkHookResult("probe", { ok: "yes" }, input) ?? "", /ok must be a boolean/);
  assert.match(checkHookResult("probe", { ok: true, detail: 3 }, input) ?? "", /detail must be a string/);
  assert.match(checkHookResult("probe", [true], input) ?? "", /must return \{ ok, detail\? \}/);
  fc.assert(fc.property(fc.constantFrom(...HOOK_KINDS), fc.anything(), (kind, value) => {
    const problem = checkHookResult(kind, value, input);
    return problem === undefined || problem.length > 0;
  }), { numRuns: 2_000 });
});

test("capabilities: utf8Length counts bytes as TextEncoder does, lone surrogates as U+FFFD", () => {
  const encoder = new TextEncoder();
  fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => utf8Length(s) === encoder.encode(s).length), { numRuns: 1_000 });
  assert.equal(utf8Length("\uD800"), 3);
  assert.equal(utf8Length("😀"), 4);
});
