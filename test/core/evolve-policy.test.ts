// The evolve policy and prompt (src/core/evolve/policy.ts, prompt.ts): what a mind may run alone,
// and that the prompt carries the whole world a program may use.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decide } from "../../src/core/evolve/policy.ts";
import { evolvePrompt, retryMessages, type EvolveState } from "../../src/core/evolve/prompt.ts";
import { parseCommand, type EvolveCommand } from "../../src/core/evolve/reply.ts";
import { CAPABILITY_DTS, HOOK_SUMMARIES } from "../../src/core/evolve/capabilities.ts";

function cmd(line: string): EvolveCommand {
  const c = parseCommand(line);
  assert.ok(typeof c !== "string", c as string);
  return c;
}

test("policy: exec, ps and reading commands run alone; kill, guard, writes, spawns and quoted lines wait for a person", () => {
  const alone = [
    "{\"cmd\":\"exec\",\"program\":\"outliers\",\"args\":[\"a\"]}", "{\"cmd\":\"ps\"}", "{\"cmd\":\"shell\",\"line\":\"dtr stat\"}", "{\"cmd\":\"shell\",\"line\":\"dtr\"}",
    "{\"cmd\":\"shell\",\"line\":\"status\"}", "{\"cmd\":\"shell\",\"line\":\"kv get a/b\"}", "{\"cmd\":\"shell\",\"line\":\"memory search birthday\"}", "{\"cmd\":\"shell\",\"line\":\"infer 1 2 3 4\"}",
  ];
  for (const line of alone) assert.equal(decide(cmd(line)).allowed, true, line);
  const waits: Array<[string, RegExp]> = [
    ["{\"cmd\":\"kill\",\"program\":\"outliers\"}", /kill changes what runs/],
    ["{\"cmd\":\"guard\",\"program\":\"outliers\"}", /guard changes what runs/],
    ["{\"cmd\":\"shell\",\"line\":\"kv put a 1\"}", /kv is not on the allow-list/],
    ["{\"cmd\":\"shell\",\"line\":\"dtr train 5\"}", /dtr is not on the allow-list/],
    ["{\"cmd\":\"shell\",\"line\":\"status extra\"}", /status is not on the allow-list/],
    ["{\"cmd\":\"shell\",\"line\":\"spawn 100 loop\"}", /spawn is not on the allow-list/],
    ["{\"cmd\":\"shell\",\"line\":\"guard g 1 exec x\"}", /guard is not on the allow-list/],
    ["{\"cmd\":\"shell\",\"line\":\"kv get 'a b'\"}", /quoted/],
    ["{\"cmd\":\"shell\",\"line\":\"evolve approve 1\"}", /evolve is not on the allow-list/],
  ];
  for (const [line, reason] of waits) {
    const d = decide(cmd(line));
    assert.equal(d.allowed, false, line);
    assert.match(d.reason ?? "", reason, line);
  }
  assert.equal(decide(cmd("{\"cmd\":\"exec\",\"program\":\"x\",\"args\":[\"it's\"]}")).line, "exec x 'it'\"'\"'s'");
});

test("prompt: the state, the reply format, every hook and the whole capability API; a retry carries the reason", () => {
  const state: EvolveState = {
    node: "n1", mode: "FULL", raft: { role: "leader", term: 3, leader: "n1" }, liveNodes: 3, memories: 12, inferences: 40, uptimeS: 61,
    programs: [], prefilter: "none", sensors: "temperature 0.10",
  };
  const [system, user] = evolvePrompt(state, undefined);
  assert.equal(system?.role, "system");
  assert.ok(system!.content.startsWith("You are the mind of p-kernel"));
  for (const marker of ["[ANALYSIS]", "[CODE]", "[CMD]", "@pk-program"]) assert.ok(system!.content.includes(marker), marker);
  for (const hook of Object.values(HOOK_SUMMARIES)) assert.ok(system!.content.includes(hook), hook);
  assert.ok(system!.content.includes(CAPABILITY_DTS));
  assert.match(user!.content, /raft: leader, term 3/);
  assert.match(user!.content, /Do I need help\?$/);
  assert.match(evolvePrompt(state, "fix-it")[1]!.content, /\nfix-it$/);
  const retry = retryMessages([system!, user!], "bad", "refused (missing): no [CODE]");
  assert.deepEqual(retry.slice(2).map((m) => m.role), ["assistant", "user"]);
  assert.match(retry[3]!.content, /refused \(missing\)/);
});
