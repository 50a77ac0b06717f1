// The power readers (src/adapters/power.ts) on real layouts — a laptop with two batteries, an AC
// adapter, a USB-C port and a mouse's battery (charging and unplugged), a Raspberry Pi (no supply
// listed), an Android phone's sysfs — and termux-battery-status's JSON, run as a real command. What
// the OS says is input from outside: the parsers are fuzzed (total, well-formed output), and the
// reader survives odd files (too long, a folder, a FIFO), a missing folder, a command that hangs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { POWER_UNKNOWN, type PowerReading } from "../../src/core/body/contribution.ts";
import { findOnPath, powerFromSysfs, powerFromTermux, powerReader, POWER_READ_DEFAULTS, readSysfsSupplies, readTermux, runsOnPhone, type SupplyFiles } from "../../src/adapters/power.ts";

const fixtures = fileURLToPath(new URL("../fixtures/power/", import.meta.url));
const fixture = (name: string) => join(fixtures, name);

function wellFormed(reading: PowerReading): void {
  assert.ok(["ac", "battery", "unknown"].includes(reading.source), `source ${reading.source}`);
  assert.ok(reading.charging === null || typeof reading.charging === "boolean");
  assert.ok(reading.percent === null || (Number.isInteger(reading.percent) && reading.percent >= 0 && reading.percent <= 100), `percent ${reading.percent}`);
  assert.equal(typeof reading.battery, "boolean");
  if (!reading.battery) assert.equal(reading.percent, null);
}

test("power sysfs: each machine's real layout reads as what it is", async () => {
  const cases: Array<[string, PowerReading]> = [
    // BAT0 charging at 64%, BAT1 idle at 70% (mean 67); the mouse's battery (scope Device) is not the machine's.
    ["laptop-charging", { source: "ac", charging: true, percent: 67, battery: true }],
    ["laptop-battery", { source: "battery", charging: false, percent: 81, battery: true }],
    ["pi", { source: "unknown", charging: null, percent: null, battery: false }],
    // Plugged into USB but "Not charging" (a phone held at its charge limit): on external power.
    ["phone", { source: "ac", charging: false, percent: 55, battery: true }],
  ];
  for (const [name, expected] of cases) {
    const supplies = await readSysfsSupplies(fixture(name));
    assert.deepEqual(powerFromSysfs(supplies), expected, name);
    assert.deepEqual(await powerReader({ sysfsRoot: fixture(name), termuxCommand: null })(), expected, `${name} through powerReader`);
  }
  assert.deepEqual(await readSysfsSupplies(join(fixtures, "no-such-folder")), [], "a machine without the class folder");
  // A phone whose battery cannot be read (Android hides sysfs, no termux-api): a battery in an unknown state, not a Pi.
  assert.deepEqual(await powerReader({ sysfsRoot: join(fixtures, "no-such-folder"), termuxCommand: null, phone: true })(), { source: "unknown", charging: null, percent: null, battery: true });
  assert.equal(runsOnPhone({ TERMUX_VERSION: "0.118.1" }), true);
  assert.equal(runsOnPhone({}), (process.platform as string) === "android");
  assert.deepEqual(powerFromSysfs([]), POWER_UNKNOWN);
});

test("power sysfs: attributes that are too long, folders, FIFOs and odd names are unknown, never a hang or a crash", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "pk-power-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const write = (path: string, text: string) => {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  };
  write("BAT0/type", "Battery\n");
  write("BAT0/status", `Discharging${" ".repeat(POWER_READ_DEFAULTS.attributeBytesCap)}x\n`); // cut at the bound: not a status
  write("BAT0/capacity", "1000\n");
  mkdirSync(join(root, "AC", "online"), { recursive: true }); // a folder where a value should be
  write("AC/type", "Mains\n");
  write("BAT1/type", "Battery\n");
  execFileSync("mkfifo", [join(root, "BAT1", "status")]); // nobody writes: a blocking read would hang
  write("BAT1/capacity", "-5\n");
  write("bad name with spaces/type", "Mains\n");
  write("bad name with spaces/online", "1\n");
  const supplies = await readSysfsSupplies(root);
  assert.deepEqual(supplies.map((s) => s.name), ["AC", "BAT0", "BAT1"], "the odd name is skipped");
  const reading = powerFromSysfs(supplies);
  assert.deepEqual(reading, { source: "unknown", charging: null, percent: null, battery: true });
});

test("power sysfs (fuzz): any attribute values give a well-formed reading", () => {
  const value = fc.option(fc.oneof(
    fc.string({ maxLength: 70 }),
    fc.constantFrom("Battery\n", "Mains\n", "USB\n", "Wireless", "UPS", "Charging\n", "Discharging", "Full", "Not charging", "Unknown", "Device", "System", "0", "1\n", "100", "101", "007", "-1", " 50 ", "5e1"),
  ), { nil: undefined });
  const supply = fc.record({ name: fc.string({ maxLength: 10 }), type: value, status: value, capacity: value, online: value, present: value, scope: value });
  let batteries = 0;
  fc.assert(fc.property(fc.array(supply, { maxLength: 8 }), (supplies: SupplyFiles[]) => {
    const reading = powerFromSysfs(supplies);
    wellFormed(reading);
    if (reading.battery) batteries++;
  }), { numRuns: 3000 });
  assert.ok(batteries > 50, `the fuzz reached batteries (${batteries})`);
});

test("power termux: real termux-battery-status output, charging and unplugged", () => {
  assert.deepEqual(powerFromTermux(readFileSync(fixture("termux-charging.json"), "utf8")), { source: "ac", charging: true, percent: 83, battery: true });
  assert.deepEqual(powerFromTermux(readFileSync(fixture("termux-unplugged.json"), "utf8")), { source: "battery", charging: false, percent: 41, battery: true });
  assert.deepEqual(powerFromTermux('{"plugged":"PLUGGED_USB","status":"FULL","percentage":100}'), { source: "ac", charging: false, percent: 100, battery: true });
  for (const bad of ["", "not json", "[]", "null", "42", '{"percentage":"83"}', '{"plugged":"SOMETIMES"}', '{"percentage":101}', '{"percentage":50.5}']) {
    assert.deepEqual(powerFromTermux(bad), POWER_UNKNOWN, bad);
  }
});

test("power termux (fuzz): any text or JSON value gives a well-formed reading", () => {
  const json = fc.oneof(
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.record({
      percentage: fc.oneof(fc.integer({ min: -5, max: 105 }), fc.double(), fc.string(), fc.constant(null)),
      plugged: fc.oneof(fc.constantFrom("PLUGGED_AC", "PLUGGED_USB", "PLUGGED_WIRELESS", "UNPLUGGED", "plugged_ac"), fc.jsonValue()),
      status: fc.oneof(fc.constantFrom("CHARGING", "DISCHARGING", "FULL", "NOT_CHARGING", "UNKNOWN", ""), fc.jsonValue()),
    }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
    fc.string(),
  );
  let known = 0;
  fc.assert(fc.property(json, (text) => {
    const reading = powerFromTermux(text);
    wellFormed(reading);
    if (reading.source !== "unknown") known++;
  }), { numRuns: 3000 });
  assert.ok(known > 100, `the fuzz reached known readings (${known})`);
});

test("power termux: the command runs; one that fails, prints garbage or hangs reads as unknown; the reader falls back to sysfs", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pk-termux-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = (name: string, body: string) => {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  };
  const good = script("termux-battery-status", `cat '${fixture("termux-unplugged.json")}'`);
  assert.deepEqual(await readTermux(good), { source: "battery", charging: false, percent: 41, battery: true });
  assert.equal(await findOnPath("termux-battery-status", `/nonexistent:${dir}`), good);
  assert.equal(await findOnPath("termux-battery-status", "/nonexistent"), undefined);
  assert.equal(await findOnPath("../etc/passwd", dir), undefined, "only a plain command name is looked up");
  assert.deepEqual(await readTermux(script("fails", "echo oops >&2; exit 3")), POWER_UNKNOWN);
  assert.deepEqual(await readTermux(script("garbage", "head -c 100000 /dev/zero | tr '\\0' x")), POWER_UNKNOWN, "more output than the bound");
  assert.deepEqual(await readTermux(join(dir, "missing")), POWER_UNKNOWN);
  const started = Date.now();
  assert.deepEqual(await readTermux(script("hangs", "exec sleep 30"), { ...POWER_READ_DEFAULTS, termuxTimeoutMs: 300 }), POWER_UNKNOWN);
  t.diagnostic(`a hanging termux-battery-status was given up after ${Date.now() - started} ms (timeout 300 ms)`);
  // termux first; when it knows nothing, sysfs.
  assert.deepEqual(await powerReader({ sysfsRoot: fixture("laptop-charging"), termuxCommand: good })(), { source: "battery", charging: false, percent: 41, battery: true });
  assert.deepEqual(await powerReader({ sysfsRoot: fixture("laptop-charging"), termuxCommand: script("empty", "echo '{}'") })(), { source: "ac", charging: true, percent: 67, battery: true });
});
