import { test } from "node:test";
import assert from "node:assert/strict";
import { Outbox } from "../../src/core/util/outbox.ts";
import { AssertionFailure } from "../../src/core/util/assert.ts";

test("outbox: take hands over messages, events and own lists whole, then starts empty", () => {
  const out = new Outbox<string, number, { changed: boolean; forgotten: string }>({ changed: [], forgotten: [] });
  assert.equal(out.hasReady(), false);
  out.send("a");
  out.emit(1);
  out.add("changed", true);
  out.add("forgotten", "k");
  assert.equal(out.hasReady(), true);
  const ready = out.take();
  assert.deepEqual(ready, { messages: ["a"], events: [1], changed: [true], forgotten: ["k"] });
  assert.equal(out.hasReady(), false);
  assert.deepEqual(out.take(), { messages: [], events: [], changed: [], forgotten: [] });
  // What was handed over is not touched by later output.
  out.send("b");
  assert.deepEqual(ready.messages, ["a"]);
});

test("outbox: any one list makes it ready; clear empties one list", () => {
  const out = new Outbox<string, number, { changed: number }>({ changed: [] });
  out.add("changed", 7);
  assert.equal(out.hasReady(), true);
  out.clear("changed");
  assert.equal(out.hasReady(), false);
  out.emit(2);
  assert.equal(out.hasReady(), true);
  assert.deepEqual(out.take(), { messages: [], events: [2], changed: [] });
  const plain = new Outbox<string, number>();
  assert.deepEqual(plain.take(), { messages: [], events: [] });
});

test("outbox: its own lists must start empty", () => {
  assert.throws(() => new Outbox<string, number, { changed: number }>({ changed: [1] }), AssertionFailure);
});
