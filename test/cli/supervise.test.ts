// The supervisor's check of a bundle's Node range (src/cli/supervise.ts) before it stops anything:
// the ">=MAJOR[.MINOR[.PATCH]]" form `pk bundle` signs, compared part by part; any other form is
// refused (a bundle is not tried on a Node nobody said it runs on); an empty range passes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { nodeSatisfies } from "../../src/cli/supervise.ts";

test("supervise: a bundle's Node range", () => {
  assert.equal(nodeSatisfies("24.1.0", ">=22.18"), undefined);
  assert.equal(nodeSatisfies("22.18.0", ">=22.18"), undefined);
  assert.equal(nodeSatisfies("22.18.0", ">=22.18.0"), undefined);
  assert.equal(nodeSatisfies("23.0.0", ">=22"), undefined);
  assert.match(nodeSatisfies("22.17.9", ">=22.18") ?? "", /needs Node >=22\.18, this is 22\.17\.9/);
  assert.match(nodeSatisfies("20.19.1", ">=22") ?? "", /needs Node >=22/);
  assert.match(nodeSatisfies("24.1.0", "^22") ?? "", /cannot read/);
  assert.equal(nodeSatisfies("24.1.0", ""), undefined);
});
