// POST /v1/infer's body checker (src/node/brain/routes.ts, parseInferBody): any JSON value gives either a
// message for the client or a request the Brain can take; it never throws. Hand-picked bad bodies
// each get their own message.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseInferBody } from "../../src/node/brain/routes.ts";

test("parseInferBody: arbitrary JSON never throws; what it accepts is well formed", () => {
  const values = fc.array(fc.oneof(fc.double(), fc.integer(), fc.constant(Number.NaN)), { maxLength: 6 });
  const body = fc.oneof(
    fc.jsonValue(),
    fc.record({
      mode: fc.oneof(fc.constantFrom("local", "pipeline", "tensor", "dkva", "moe", "warp"), fc.jsonValue()),
      values: fc.oneof(values, fc.jsonValue()),
      ids: fc.option(fc.oneof(fc.array(fc.integer({ min: -2, max: 70 }), { maxLength: 6 }), fc.jsonValue()), { nil: undefined }),
      session: fc.option(fc.oneof(fc.string({ maxLength: 40 }), fc.jsonValue()), { nil: undefined }),
      end: fc.option(fc.oneof(fc.boolean(), fc.jsonValue()), { nil: undefined }),
    }, { requiredKeys: [] }),
  );
  let accepted = 0;
  fc.assert(fc.property(body, (b) => {
    const parsed = parseInferBody(b);
    if (typeof parsed === "string") return;
    accepted++;
    assert.equal(parsed.ids.length, parsed.values.length);
    if (!parsed.end) {
      assert.ok(parsed.values.length >= 1);
      assert.ok(parsed.values.every((v) => Number.isFinite(v)));
      assert.ok(parsed.ids.every((id) => id >= 0));
    }
  }), { numRuns: 5000 });
  assert.ok(accepted > 10, `some bodies were accepted (${accepted})`);
});

test("parseInferBody: each bad body gets its own message", () => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /JSON object/],
    [[1, 2], /JSON object/],
    [{ values: [1, 2, 3, 4], mode: "warp" }, /mode must be one of/],
    [{ values: [] }, /values must be 1\.\./],
    [{ values: [1, Number.NaN, 3, 4] }, /finite numbers/],
    [{ values: [1, 1e300, 3, 4] }, /within float32 range/],
    // The fuzz's counterexample (seed 471504262): just above float32's largest value, so Infinity once stored.
    [{ values: [0, 0, 3.4028235677973366e38, 0] }, /within float32 range/],
    [{ values: [1, 2, 3] }, /four sensor readings/],
    [{ values: [1, 2], ids: [0] }, /one per value/],
    [{ values: [1], ids: [-1] }, /non-negative integers/],
    [{ values: [1, 2, 3, 4], session: "has space" }, /session must be/],
    [{ end: true }, /end needs a session/],
    [{ values: [1, 2, 3, 4], mode: "moe", session: "s" }, /moe takes no session/],
  ];
  for (const [body, message] of cases) {
    const parsed = parseInferBody(body);
    assert.equal(typeof parsed, "string", JSON.stringify(body));
    assert.match(parsed as string, message, JSON.stringify(body));
  }
  const ok = parseInferBody({ values: [1, 2, 3, 4] });
  assert.ok(typeof ok !== "string");
  assert.deepEqual([...ok.ids], [0, 1, 2, 3]);
  assert.equal(ok.mode, "local");
});
