import { test } from "node:test";
import assert from "node:assert/strict";
import { SimClock, SIM_EPOCH_MS } from "../../src/sim/clock.ts";
import { createRng } from "../../src/core/util/rng.ts";

test("SimClock: nowMs = epoch + elapsed + offset + drift", () => {
  const time = { now: 0 };
  const clock = new SimClock(time, { tickMs: 10, offsetMs: -50, driftPpm: 200 });
  assert.equal(clock.nowMs(), SIM_EPOCH_MS - 50);
  time.now = 100_000; // 1,000 s: 200 ppm is 200 ms
  assert.equal(clock.nowMs(), SIM_EPOCH_MS + 1_000_000 - 50 + 200);
  clock.step(-1000);
  assert.equal(clock.nowMs(), SIM_EPOCH_MS + 1_000_000 - 1050 + 200);
  assert.throws(() => new SimClock(time, { driftPpm: 1e6 }), /driftPpm/);
});

test("SimClock.random: offsets and drifts within bounds, deterministic per seed, different per node", () => {
  const time = { now: 360_000 }; // an hour
  const make = (seed: number) => {
    const rng = createRng(seed);
    return Array.from({ length: 50 }, () => SimClock.random(time, rng.fork(), { maxOffsetMs: 100, maxDriftPpm: 50 }));
  };
  const clocks = make(4);
  for (const clock of clocks) {
    assert.ok(Math.abs(clock.offsetMs) <= 100 && Math.abs(clock.driftPpm) <= 50);
    assert.ok(Math.abs(clock.nowMs() - (SIM_EPOCH_MS + 3_600_000)) <= 100 + 3_600_000 * 50e-6 + 1);
  }
  assert.deepEqual(make(4).map((c) => c.nowMs()), clocks.map((c) => c.nowMs()));
  assert.ok(new Set(clocks.map((c) => c.nowMs())).size > 40, "nodes disagree");
  assert.notDeepEqual(make(5).map((c) => c.nowMs()), clocks.map((c) => c.nowMs()));
});

test("SimClock: monotonic while the tick advances (no step)", () => {
  const time = { now: 0 };
  const clock = SimClock.random(time, createRng(9), { maxDriftPpm: 10_000 });
  let last = clock.nowMs();
  for (let t = 1; t < 10_000; t++) {
    time.now = t;
    const now = clock.nowMs();
    assert.ok(now >= last);
    last = now;
  }
});
