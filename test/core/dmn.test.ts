// The DMN's clock (src/core/self/dmn.ts): idle only after idleTicks without foreground requests
// above the rate, load or loop delay; one job at a time, the one due longest; a job's first run a
// period after boot; a preempted job keeps its place; training waits for a longer idleness.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DMN_DEFAULTS, DmnClock, type DmnConfig, type DmnJob } from "../../src/core/self/dmn.ts";

const CONFIG: DmnConfig = {
  ...DMN_DEFAULTS,
  idleTicks: 100,
  everyTicks: { consolidate: 600, review: 300, ga: 200, train: 600 },
  idleTicksFor: { consolidate: 100, review: 100, ga: 100, train: 400 },
};
const QUIET = { loadPerCore: 0.1, loopDelayP99Ms: 2 };

/** Runs the clock from `from` to `to`, with `requests(t)` the cumulative count; answers the jobs started. */
function drive(clock: DmnClock, from: number, to: number, requests: (t: number) => number, signals = QUIET, can: (j: DmnJob) => boolean = () => true): Array<[number, DmnJob]> {
  const started: Array<[number, DmnJob]> = [];
  for (let t = from; t < to; t++) {
    clock.observe(t, { requests: requests(t), ...signals });
    const job = clock.next(t, can);
    if (job !== undefined) {
      started.push([t, job]);
      clock.finished(t, "done", "ok");
    }
  }
  return started;
}

test("dmn: no job before its first period after boot, then the one due longest; training waits for its longer idleness", () => {
  const clock = new DmnClock(CONFIG);
  const started = drive(clock, 0, 700, () => 0);
  assert.deepEqual(started.slice(0, 4), [[200, "ga"], [300, "review"], [400, "ga"], [600, "consolidate"]]);
  assert.ok(started.some(([, j]) => j === "train"), "train runs once idle long enough and due");
  assert.equal(clock.jobs.ga.runs >= 3, true);
});

test("dmn: foreground requests above the rate, a high load or a slow event loop keep the node busy", () => {
  for (const [name, requests, signals] of [
    ["requests", (t: number) => t, QUIET], // 100 requests/s at 10 ms ticks
    ["load", () => 0, { loadPerCore: 1.5, loopDelayP99Ms: 2 }],
    ["loop delay", () => 0, { loadPerCore: 0.1, loopDelayP99Ms: 80 }],
  ] as const) {
    const clock = new DmnClock(CONFIG);
    assert.deepEqual(drive(clock, 0, 2_000, requests, signals), [], `${name}: no idle work`);
    assert.equal(clock.idle(1_999), false);
    assert.match(clock.state(1_999), /^busy/);
  }
  // A trickle (one request a second, under the 2/s bound) is idle.
  const clock = new DmnClock(CONFIG);
  assert.ok(drive(clock, 0, 1_000, (t) => Math.floor(t / 100)).length > 0);
});

test("dmn: a preempted job keeps its place and runs first when the node idles again; one job at a time; off means off", () => {
  const clock = new DmnClock(CONFIG);
  for (let t = 0; t < 200; t++) clock.observe(t, { requests: 0, ...QUIET });
  assert.equal(clock.next(200, () => true), "ga");
  assert.equal(clock.next(201, () => true), undefined, "one job at a time");
  clock.finished(205, "preempted", "foreground work came back");
  assert.equal(clock.jobs.ga.preempted, 1);
  assert.equal(clock.next(206, () => true), "ga", "due again at once");
  clock.finished(206, "done", "ok");
  assert.equal(clock.jobs.ga.lastTick, 206);
  assert.equal(clock.next(207, (j) => j !== "ga"), undefined, "nothing else is due yet");
  clock.enabled = false;
  assert.equal(clock.idle(10_000), false);
  assert.match(clock.state(10_000), /^off/);
  assert.deepEqual(clock.history().map((e) => [e.job, e.outcome]), [["ga", "preempted"], ["ga", "done"]]);
});
