// power: the machine's power state as the OS exposes it, for the contribution policy
// (src/core/body/contribution.ts).
//
// Two sources. Linux's sysfs power-supply class, /sys/class/power_supply/<name>/ with `type`
// (Battery, Mains, USB, Wireless, UPS...), `status` (Charging, Discharging, Full, Not charging,
// Unknown), `capacity` (0..100), `online` (0/1 for a supply), `present` and `scope` (Device: the
// battery of a mouse or a headset, not of this machine). And on Android under Termux, where
// SELinux hides that folder from apps, `termux-battery-status` (the termux-api package, with the
// Termux:API app) printing JSON: percentage, plugged (PLUGGED_AC, PLUGGED_USB, PLUGGED_WIRELESS,
// UNPLUGGED), status (CHARGING, DISCHARGING, FULL, NOT_CHARGING, UNKNOWN).
//
// Both are input from outside this program: every file is read with a size bound, every value
// checked against what it may be, and anything else counts as unknown. The readers never throw;
// the parsers are total (test/adapters/power.test.ts fuzzes them). termux-battery-status is known
// to hang when the Termux:API app is missing, so it runs with a timeout.
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, open, readdir } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { POWER_UNKNOWN, type PowerReading, type PowerSource } from "../core/body/contribution.ts";

export const SYSFS_POWER_ROOT = "/sys/class/power_supply";
export const TERMUX_BATTERY_COMMAND = "termux-battery-status";

export const POWER_READ_DEFAULTS = {
  /** Supplies looked at in the sysfs folder; more are ignored. */
  suppliesCap: 32,
  /** Bytes read of one sysfs attribute (they are a word or a number). */
  attributeBytesCap: 64,
  /** Bytes of termux-battery-status output taken. */
  termuxOutputBytesCap: 16 * 1024,
  /** How long termux-battery-status may take. */
  termuxTimeoutMs: 5000,
};

/** One supply's attributes as read (undefined: absent or unreadable). */
export interface SupplyFiles {
  readonly name: string;
  readonly type?: string | undefined;
  readonly status?: string | undefined;
  readonly capacity?: string | undefined;
  readonly online?: string | undefined;
  readonly present?: string | undefined;
  readonly scope?: string | undefined;
}

const SUPPLY_TYPES = new Set(["Battery", "Mains", "USB", "Wireless", "UPS"]);
const BATTERY_STATUS = new Set(["Charging", "Discharging", "Full", "Not charging", "Unknown"]);
const NAME = /^[A-Za-z0-9_.:@+-]{1,64}$/;

function word(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.replace(/\n$/, "").trim();
  return trimmed.length === 0 || trimmed.length > 32 || /[\0-\x1f\x7f]/.test(trimmed) ? undefined : trimmed;
}

function wholeIn(value: string | undefined, low: number, high: number): number | undefined {
  const text = word(value);
  if (text === undefined || !/^\d{1,3}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= low && n <= high ? n : undefined;
}

/** The power state from the supplies of sysfs (total: unknown values count as unknown). */
export function powerFromSysfs(supplies: readonly SupplyFiles[]): PowerReading {
  const batteries: Array<{ status: string | undefined; percent: number | undefined }> = [];
  let supplyOnline = false;
  let supplyOffline = false;
  for (const supply of supplies) {
    const type = word(supply.type);
    if (type === undefined || !SUPPLY_TYPES.has(type)) continue;
    if (type === "Battery") {
      if (word(supply.scope) === "Device") continue; // a mouse's or a headset's battery
      if (word(supply.present) === "0") continue;
      const status = word(supply.status);
      batteries.push({ status: status !== undefined && BATTERY_STATUS.has(status) ? status : undefined, percent: wholeIn(supply.capacity, 0, 100) });
    } else {
      const online = word(supply.online);
      if (online === "1") supplyOnline = true;
      else if (online === "0") supplyOffline = true;
    }
  }
  if (batteries.length === 0) {
    return { source: supplyOnline ? "ac" : "unknown", charging: null, percent: null, battery: false };
  }
  const percents = batteries.map((b) => b.percent).filter((p): p is number => p !== undefined);
  const percent = percents.length === 0 ? null : Math.round(percents.reduce((a, b) => a + b, 0) / percents.length);
  const statuses = new Set(batteries.map((b) => b.status));
  const charging = statuses.has("Charging") ? true
    : statuses.has("Discharging") || statuses.has("Full") || statuses.has("Not charging") ? false : null;
  // Energy leaving a battery means running off it, whatever a supply says (conservative).
  let source: PowerSource;
  if (statuses.has("Discharging")) source = "battery";
  else if (statuses.has("Charging") || statuses.has("Full") || supplyOnline) source = "ac";
  else if (supplyOffline) source = "battery";
  else source = "unknown";
  return { source, charging, percent, battery: true };
}

const TERMUX_PLUGGED = new Set(["PLUGGED_AC", "PLUGGED_USB", "PLUGGED_WIRELESS", "PLUGGED_DOCK", "UNPLUGGED"]);
const TERMUX_STATUS = new Set(["CHARGING", "DISCHARGING", "FULL", "NOT_CHARGING", "UNKNOWN"]);

/** The power state from termux-battery-status's output (total: anything malformed is unknown). */
export function powerFromTermux(text: string): PowerReading {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return POWER_UNKNOWN;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return POWER_UNKNOWN;
  const record = value as Record<string, unknown>;
  const plugged = typeof record.plugged === "string" && TERMUX_PLUGGED.has(record.plugged) ? record.plugged : undefined;
  const status = typeof record.status === "string" && TERMUX_STATUS.has(record.status) ? record.status : undefined;
  const p = record.percentage;
  const percent = typeof p === "number" && Number.isInteger(p) && p >= 0 && p <= 100 ? p : null;
  if (plugged === undefined && status === undefined && percent === null) return POWER_UNKNOWN;
  const charging = status === "CHARGING" ? true : status === "DISCHARGING" || status === "FULL" || status === "NOT_CHARGING" ? false : null;
  const source: PowerSource = status === "DISCHARGING" || plugged === "UNPLUGGED" ? "battery"
    : plugged !== undefined || status === "CHARGING" || status === "FULL" ? "ac" : "unknown";
  return { source, charging, percent, battery: true };
}

async function readBounded(path: string, bytes: number): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    // One byte more than the bound: a longer value is not cut into a valid-looking one, it is unknown.
    const buffer = Buffer.alloc(bytes + 1);
    const { bytesRead } = await handle.read(buffer, 0, bytes + 1, 0);
    return bytesRead > bytes ? undefined : buffer.subarray(0, bytesRead).toString("utf8");
  } catch {
    return undefined;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** Reads every supply under a sysfs power-supply folder (absent folder: none). */
export async function readSysfsSupplies(root: string = SYSFS_POWER_ROOT, limits = POWER_READ_DEFAULTS): Promise<SupplyFiles[]> {
  let names: string[];
  try {
    names = (await readdir(root)).filter((name) => NAME.test(name)).sort().slice(0, limits.suppliesCap);
  } catch {
    return [];
  }
  const read = (name: string, attribute: string) => readBounded(join(root, name, attribute), limits.attributeBytesCap);
  return Promise.all(names.map(async (name) => {
    const [type, status, capacity, online, present, scope] = await Promise.all(
      ["type", "status", "capacity", "online", "present", "scope"].map((attribute) => read(name, attribute)));
    return { name, type, status, capacity, online, present, scope };
  }));
}

/** The command's path when it is an executable on PATH (bounded search), else undefined. */
export async function findOnPath(command: string, path: string = process.env.PATH ?? ""): Promise<string | undefined> {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(command)) return undefined;
  for (const dir of path.split(delimiter).slice(0, 64)) {
    if (dir === "") continue;
    const candidate = join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Runs termux-battery-status (or another command printing its JSON); unknown on any failure. */
export function readTermux(command: string, limits = POWER_READ_DEFAULTS): Promise<PowerReading> {
  return new Promise((resolve) => {
    try {
      execFile(command, [], { timeout: limits.termuxTimeoutMs, maxBuffer: limits.termuxOutputBytesCap, windowsHide: true, encoding: "utf8" }, (error, stdout) => {
        resolve(error === null ? powerFromTermux(stdout) : POWER_UNKNOWN);
      });
    } catch {
      resolve(POWER_UNKNOWN);
    }
  });
}

export interface PowerOptions {
  /** The sysfs power-supply folder (a fixture folder in tests). */
  readonly sysfsRoot?: string;
  /** termux-battery-status's path; undefined: looked up on PATH once; null: never used. */
  readonly termuxCommand?: string | null;
  /**
   * The machine is a phone (Android: Node's platform "android", or Termux's environment), so it has
   * a battery even when nothing can be read: an unreadable power state then counts as a battery's
   * unknown state (not contributing by default), not as a Pi's. Default: detected.
   */
  readonly phone?: boolean;
}

/** Whether this process runs on Android (Termux's Node says "android"; TERMUX_VERSION is set in Termux). */
export function runsOnPhone(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  return (process.platform as string) === "android" || env["TERMUX_VERSION"] !== undefined;
}

/** A reader of the machine's power state: termux-battery-status when present, else sysfs. */
export function powerReader(options: PowerOptions = {}, limits = POWER_READ_DEFAULTS): () => Promise<PowerReading> {
  const root = options.sysfsRoot ?? SYSFS_POWER_ROOT;
  let termux: Promise<string | undefined> | undefined = options.termuxCommand === null ? Promise.resolve(undefined)
    : options.termuxCommand === undefined ? undefined : Promise.resolve(options.termuxCommand);
  const phone = options.phone ?? runsOnPhone();
  return async () => {
    termux ??= findOnPath(TERMUX_BATTERY_COMMAND);
    const command = await termux;
    if (command !== undefined) {
      const reading = await readTermux(command, limits);
      if (reading.source !== "unknown" || reading.percent !== null) return reading;
    }
    const reading = powerFromSysfs(await readSysfsSupplies(root, limits));
    return phone && !reading.battery ? { ...reading, battery: true } : reading;
  };
}
