// The contribution policy (src/core/body/contribution.ts): its defaults on the machines it is for
// (a Pi, a laptop, a phone), its settling rule under noisy readings (no flapping), the battery
// threshold's margin, and the gate's caps, the bandwidth bucket's bound among them.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  CONTRIBUTION_DEFAULTS, ContributionPolicy, contributionConfigError, judge, POWER_UNKNOWN, VoluntaryGate,
  type ContributionConfig, type PowerReading,
} from "../../src/core/body/contribution.ts";

const PI: PowerReading = POWER_UNKNOWN;
const DESKTOP: PowerReading = { source: "ac", charging: null, percent: null, battery: false };
const LAPTOP_CHARGING: PowerReading = { source: "ac", charging: true, percent: 64, battery: true };
const LAPTOP_FULL: PowerReading = { source: "ac", charging: false, percent: 100, battery: true };
const LAPTOP_DISCHARGING: PowerReading = { source: "battery", charging: false, percent: 80, battery: true };
const PHONE_UNKNOWN_PLUG: PowerReading = { source: "unknown", charging: null, percent: 50, battery: true };

const reading: fc.Arbitrary<PowerReading> = fc.record({
  source: fc.constantFrom("ac", "battery", "unknown"),
  charging: fc.constantFrom(true, false, null),
  percent: fc.option(fc.integer({ min: 0, max: 100 }), { nil: null }),
  battery: fc.boolean(),
});
const config: fc.Arbitrary<ContributionConfig> = fc.record({
  mode: fc.constantFrom("auto", "always", "charging", "never"),
  minBatteryPercent: fc.integer({ min: 0, max: 95 }),
  resumeMarginPercent: fc.integer({ min: 0, max: 10 }),
  settleReadings: fc.integer({ min: 1, max: 6 }),
  caps: fc.constant(CONTRIBUTION_DEFAULTS.caps),
  burstMs: fc.constant(1000),
});

test("contribution defaults: auto mode, 20% battery floor with a 5-point margin, 3 readings to change, no caps", () => {
  assert.equal(contributionConfigError(CONTRIBUTION_DEFAULTS), undefined);
  assert.equal(CONTRIBUTION_DEFAULTS.mode, "auto");
  assert.equal(CONTRIBUTION_DEFAULTS.minBatteryPercent, 20);
  assert.equal(CONTRIBUTION_DEFAULTS.resumeMarginPercent, 5);
  assert.equal(CONTRIBUTION_DEFAULTS.settleReadings, 3);
  assert.deepEqual(CONTRIBUTION_DEFAULTS.caps, { cpuPercent: null, memoryMiB: null, bandwidthKiBps: null });
});

test("contribution auto: a machine without a battery always contributes; one with a battery only on external power", () => {
  const cases: Array<[string, PowerReading, boolean, RegExp]> = [
    ["a Pi (no power supply listed)", PI, true, /no battery/],
    ["a desktop on mains", DESKTOP, true, /no battery/],
    ["a laptop charging", LAPTOP_CHARGING, true, /external power, charging, 64%/],
    ["a laptop full on its charger", LAPTOP_FULL, true, /external power/],
    ["a laptop on battery", LAPTOP_DISCHARGING, false, /on battery: contributes only while charging/],
    ["a phone whose plug state is unknown", PHONE_UNKNOWN_PLUG, false, /unknown/],
    ["a laptop charging at 10%", { ...LAPTOP_CHARGING, percent: 10 }, false, /battery at 10%/],
  ];
  for (const [name, power, contributing, reason] of cases) {
    const decision = new ContributionPolicy().observe(power);
    assert.equal(decision.contributing, contributing, name);
    assert.match(decision.reason, reason, name);
    assert.deepEqual(decision.power, { source: power.source, charging: power.charging, percent: power.percent }, name);
  }
});

test("contribution modes: charging needs known external power; always runs on battery down to the floor; never never", () => {
  const with_ = (mode: ContributionConfig["mode"]) => ({ ...CONTRIBUTION_DEFAULTS, mode });
  assert.equal(judge(with_("charging"), PI, false).contributing, false, "charging mode, power unknown");
  assert.equal(judge(with_("charging"), DESKTOP, false).contributing, true, "charging mode, on mains");
  assert.equal(judge(with_("always"), LAPTOP_DISCHARGING, false).contributing, true);
  assert.equal(judge(with_("always"), { ...LAPTOP_DISCHARGING, percent: 19 }, true).contributing, false);
  for (const power of [PI, DESKTOP, LAPTOP_CHARGING, LAPTOP_DISCHARGING]) assert.equal(judge(with_("never"), power, true).contributing, false);
});

test("contribution: the first reading is taken at once; before it the node does not contribute; caps are zero while not contributing", () => {
  const policy = new ContributionPolicy({ ...CONTRIBUTION_DEFAULTS, caps: { cpuPercent: 50, memoryMiB: 512, bandwidthKiBps: 1024 } });
  assert.equal(policy.contributing, false);
  assert.equal(policy.observe(LAPTOP_DISCHARGING).contributing, false);
  assert.deepEqual(policy.decision().caps, { cpuPercent: 0, memoryMiB: 0, bandwidthKiBps: 0 });
  const other = new ContributionPolicy({ ...CONTRIBUTION_DEFAULTS, caps: { cpuPercent: 50, memoryMiB: 512, bandwidthKiBps: 1024 } });
  const decision = other.observe(LAPTOP_CHARGING);
  assert.equal(decision.contributing, true);
  assert.deepEqual(decision.caps, { cpuPercent: 50, memoryMiB: 512, bandwidthKiBps: 1024 });
});

test("contribution: unplugging takes settleReadings readings to stop, and one reading back resets the count", () => {
  const policy = new ContributionPolicy();
  policy.observe(LAPTOP_CHARGING);
  assert.equal(policy.observe(LAPTOP_DISCHARGING).contributing, true);
  assert.match(policy.decision().reason, /1 of 3 readings say otherwise/);
  assert.equal(policy.observe(LAPTOP_DISCHARGING).contributing, true);
  assert.equal(policy.observe(LAPTOP_CHARGING).contributing, true, "a reading that agrees resets the count");
  assert.equal(policy.observe(LAPTOP_DISCHARGING).contributing, true);
  assert.equal(policy.observe(LAPTOP_DISCHARGING).contributing, true);
  const stopped = policy.observe(LAPTOP_DISCHARGING);
  assert.equal(stopped.contributing, false);
  assert.match(stopped.reason, /on battery/);
  assert.equal(policy.changes, 2);
});

test("contribution (property): n readings change the decision at most 1 + ⌊(n − 1) / settleReadings⌋ times, whatever they say", () => {
  let checked = 0;
  fc.assert(fc.property(config, fc.array(reading, { minLength: 1, maxLength: 200 }), (cfg, readings) => {
    const policy = new ContributionPolicy(cfg);
    for (const r of readings) policy.observe(r);
    assert.ok(policy.changes <= 1 + Math.floor((readings.length - 1) / cfg.settleReadings), `${policy.changes} changes in ${readings.length} readings`);
    assert.equal(policy.readings, readings.length);
    checked++;
  }), { numRuns: 500 });
  assert.equal(checked, 500);
});

test("contribution (property): settleReadings equal readings in a row bring the decision to what they say", () => {
  fc.assert(fc.property(config, fc.array(reading, { maxLength: 50 }), reading, (cfg, noise, steady) => {
    const policy = new ContributionPolicy(cfg);
    for (const r of noise) policy.observe(r);
    for (let i = 0; i < cfg.settleReadings + 1; i++) policy.observe(steady);
    // With the battery margin the verdict depends on the decision itself: it must be a fixed point.
    assert.equal(judge(cfg, steady, policy.contributing).contributing, policy.contributing);
  }), { numRuns: 500 });
});

test("contribution (property): a battery level wobbling around the floor by less than the margin changes the decision at most once", () => {
  let crossed = 0;
  fc.assert(fc.property(
    fc.integer({ min: 10, max: 80 }), fc.integer({ min: 2, max: 10 }), fc.array(fc.nat(), { minLength: 1, maxLength: 300 }),
    (floor, margin, noise) => {
      const cfg: ContributionConfig = { ...CONTRIBUTION_DEFAULTS, mode: "always", minBatteryPercent: floor, resumeMarginPercent: margin, settleReadings: 1 };
      const policy = new ContributionPolicy(cfg);
      policy.observe({ ...LAPTOP_DISCHARGING, percent: 100 });
      // Then readings in [floor − ⌊margin/2⌋, floor − ⌊margin/2⌋ + margin − 1]: a band narrower than the margin.
      const low = floor - Math.floor(margin / 2);
      for (const n of noise) policy.observe({ ...LAPTOP_DISCHARGING, percent: low + (n % margin) });
      assert.ok(policy.changes <= 2, `${policy.changes} changes: the margin should stop flapping`);
      if (policy.changes === 2) crossed++;
    }), { numRuns: 300 });
  assert.ok(crossed > 0, "some runs crossed the floor once (the check is not vacuous)");
});

test("contribution: bad configurations are named", () => {
  const bad: Array<[Partial<ContributionConfig>, RegExp]> = [
    [{ mode: "sometimes" as ContributionConfig["mode"] }, /mode must be one of/],
    [{ minBatteryPercent: 101 }, /minBatteryPercent/],
    [{ minBatteryPercent: 2.5 }, /minBatteryPercent/],
    [{ settleReadings: 0 }, /settleReadings/],
    [{ caps: { cpuPercent: 0, memoryMiB: null, bandwidthKiBps: null } }, /CPU cap/],
    [{ caps: { cpuPercent: null, memoryMiB: -1, bandwidthKiBps: null } }, /memory cap/],
    [{ caps: { cpuPercent: null, memoryMiB: null, bandwidthKiBps: Number.NaN } }, /bandwidth cap/],
  ];
  for (const [change, message] of bad) {
    assert.match(contributionConfigError({ ...CONTRIBUTION_DEFAULTS, ...change }) ?? "", message);
    assert.throws(() => new ContributionPolicy({ ...CONTRIBUTION_DEFAULTS, ...change }), message);
  }
});

const idle = { cpuPercent: 5, rssBytes: 100 * 1024 * 1024 };

test("gate: nothing is admitted while not contributing; memory and CPU caps refuse new work above them", () => {
  const policy = new ContributionPolicy({ ...CONTRIBUTION_DEFAULTS, caps: { cpuPercent: 50, memoryMiB: 200, bandwidthKiBps: null } });
  const gate = new VoluntaryGate(policy);
  assert.deepEqual(gate.admit(0, 10, idle), { ok: false, reason: "not-contributing" }, "before any reading");
  policy.observe(DESKTOP);
  assert.deepEqual(gate.admit(0, 10, idle), { ok: true });
  assert.deepEqual(gate.admit(0, 10, { ...idle, rssBytes: 201 * 1024 * 1024 }), { ok: false, reason: "memory" });
  assert.deepEqual(gate.admit(0, 10, { ...idle, cpuPercent: 51 }), { ok: false, reason: "cpu" });
  assert.deepEqual(gate.admit(0, 10, { ...idle, cpuPercent: null }), { ok: true }, "no CPU sample yet: not refused for it");
  assert.deepEqual(gate.refused, { "not-contributing": 1, cpu: 1, memory: 1, bandwidth: 0 });
  assert.equal(gate.admitted, 2);
});

test("gate (property): the bytes admitted in t ms stay within rate × (t + burst) plus one item, and a steady flow gets its rate", () => {
  let checked = 0;
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 4096 }),
    fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 200 }), bytes: fc.integer({ min: 0, max: 256 * 1024 }) }), { minLength: 1, maxLength: 300 }),
    (kibps, items) => {
      const policy = new ContributionPolicy({ ...CONTRIBUTION_DEFAULTS, caps: { cpuPercent: null, memoryMiB: null, bandwidthKiBps: kibps } });
      policy.observe(DESKTOP);
      const gate = new VoluntaryGate(policy);
      const rate = kibps * 1024 / 1000; // bytes per ms
      let now = 0;
      let admitted = 0;
      let biggest = 0;
      for (const item of items) {
        now += item.gapMs;
        if (gate.admit(now, item.bytes, idle).ok) {
          admitted += item.bytes;
          biggest = Math.max(biggest, item.bytes);
        }
      }
      assert.ok(admitted <= rate * (now + 1000) + biggest + 1e-6, `${admitted} bytes in ${now} ms at ${kibps} KiB/s`);
      checked++;
    }), { numRuns: 400 });
  assert.equal(checked, 400);
  // Liveness: 1 KiB items every 10 ms at 64 KiB/s (100 KiB/s offered) get about 64 KiB/s through.
  const policy = new ContributionPolicy({ ...CONTRIBUTION_DEFAULTS, caps: { cpuPercent: null, memoryMiB: null, bandwidthKiBps: 64 } });
  policy.observe(DESKTOP);
  const gate = new VoluntaryGate(policy);
  let admitted = 0;
  for (let ms = 0; ms <= 60_000; ms += 10) if (gate.admit(ms, 1024, idle).ok) admitted += 1024;
  const perSecond = admitted / 60 / 1024;
  assert.ok(perSecond > 60 && perSecond < 66, `${perSecond.toFixed(1)} KiB/s through a 64 KiB/s cap`);
  assert.ok(gate.refused.bandwidth > 0);
});
