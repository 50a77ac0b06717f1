// contribution: whether this machine lends itself to the cluster right now, a sans-IO core.
//
// A laptop or a phone joins the cluster as a body, but its owner did not lend it to drain its
// battery. The node reads the power state the OS exposes (src/adapters/power.ts) every few seconds
// and feeds each reading here; the policy answers whether the node takes voluntary work (serving
// peers' inference shares, serving bundle chunks), why, and the caps that hold while it does.
//
// Modes: `auto` (the default) contributes only while on external power when the machine has a
// battery, and always when it has none (a Raspberry Pi, a server); `charging` contributes only on
// known external power (unknown power: no); `always` contributes on battery too; `never` does not.
// In every mode but `never` and `always`, a battery below minBatteryPercent stops contributing even
// on external power (a weak charger), and `always` stops there too.
//
// Hysteresis, so a noisy reading does not flap the node in and out of the cluster's routing:
// - the battery threshold has a margin: contributing stops below min and resumes at min + margin;
// - a change of verdict takes settleReadings consecutive readings that agree with it (the first
//   reading is taken at once: a phone on battery must not lend itself while the node boots). So n
//   readings change the decision at most ⌊n / settleReadings⌋ times (+1 for the first).
//
// The gate (VoluntaryGate) admits or refuses each piece of voluntary work against the caps: while
// not contributing, nothing; above the memory cap (resident bytes) or the CPU cap (this process's
// CPU over the last sample), nothing new; and bytes through a token bucket (bandwidth). It bounds
// what is admitted, not what admitted work then costs: docs/adr/027-contribution.md says what each
// cap does and does not bound.
import { assert } from "../util/assert.ts";

export type PowerSource = "ac" | "battery" | "unknown";

/** One reading of the machine's power state; anything the OS did not say clearly is null/unknown. */
export interface PowerReading {
  /** `ac`: on external power (mains, USB, a charger); `battery`: running off its battery. */
  readonly source: PowerSource;
  /** Whether the battery is charging; null when there is no battery or it did not say. */
  readonly charging: boolean | null;
  /** Battery charge 0..100; null when there is no battery or it did not say. */
  readonly percent: number | null;
  /** Whether the machine has a battery at all (a phone, a laptop; not a Pi or a server). */
  readonly battery: boolean;
}

export const POWER_UNKNOWN: PowerReading = { source: "unknown", charging: null, percent: null, battery: false };

export type ContributeMode = "auto" | "always" | "charging" | "never";
export const CONTRIBUTE_MODES: readonly ContributeMode[] = ["auto", "always", "charging", "never"];

/** Caps on voluntary work; null is uncapped. */
export interface ContributionCaps {
  /** This process's CPU, in percent of one core, above which no new voluntary work is taken. */
  readonly cpuPercent: number | null;
  /** Resident memory of this process, in MiB, above which no new voluntary work is taken. */
  readonly memoryMiB: number | null;
  /** Bytes of voluntary transfers per second, in KiB/s (a token bucket). */
  readonly bandwidthKiBps: number | null;
}

export const UNCAPPED: ContributionCaps = { cpuPercent: null, memoryMiB: null, bandwidthKiBps: null };
const NOTHING: ContributionCaps = { cpuPercent: 0, memoryMiB: 0, bandwidthKiBps: 0 };

export interface ContributionConfig {
  readonly mode: ContributeMode;
  /** Below this battery percent the node stops contributing (0: never for this reason). */
  readonly minBatteryPercent: number;
  /** Contributing resumes at minBatteryPercent + this. */
  readonly resumeMarginPercent: number;
  /** Consecutive readings that must agree before the decision changes. */
  readonly settleReadings: number;
  readonly caps: ContributionCaps;
  /** The bandwidth bucket's depth, in milliseconds of its rate. */
  readonly burstMs: number;
}

export const CONTRIBUTION_DEFAULTS: ContributionConfig = {
  mode: "auto",
  minBatteryPercent: 20,
  resumeMarginPercent: 5,
  settleReadings: 3,
  caps: UNCAPPED,
  burstMs: 1000,
};

/** Why a config is out of range, or undefined. */
export function contributionConfigError(config: ContributionConfig): string | undefined {
  if (!CONTRIBUTE_MODES.includes(config.mode)) return `mode must be one of ${CONTRIBUTE_MODES.join(", ")}`;
  if (!isWhole(config.minBatteryPercent, 0, 100)) return "minBatteryPercent must be a whole number 0..100";
  if (!isWhole(config.resumeMarginPercent, 0, 100)) return "resumeMarginPercent must be a whole number 0..100";
  if (!isWhole(config.settleReadings, 1, 1000)) return "settleReadings must be a whole number 1..1000";
  if (!isWhole(config.burstMs, 1, 60_000)) return "burstMs must be a whole number 1..60000";
  const { cpuPercent, memoryMiB, bandwidthKiBps } = config.caps;
  if (cpuPercent !== null && !isWhole(cpuPercent, 1, 100 * 1024)) return "the CPU cap must be a whole percent of one core, 1..102400";
  if (memoryMiB !== null && !isWhole(memoryMiB, 1, 1024 * 1024)) return "the memory cap must be a whole number of MiB, 1..1048576";
  if (bandwidthKiBps !== null && !isWhole(bandwidthKiBps, 1, 1024 * 1024 * 1024)) return "the bandwidth cap must be a whole number of KiB/s, 1..1073741824";
  return undefined;
}

function isWhole(value: number, low: number, high: number): boolean {
  return Number.isSafeInteger(value) && value >= low && value <= high;
}

export interface Verdict {
  readonly contributing: boolean;
  readonly reason: string;
}

/**
 * The verdict on one reading, with no memory but `wasContributing` (the battery threshold's
 * margin: a node contributing keeps on down to min, one that is not resumes at min + margin).
 */
export function judge(config: ContributionConfig, reading: PowerReading, wasContributing: boolean): Verdict {
  if (config.mode === "never") return { contributing: false, reason: "mode never" };
  const low = lowBattery(config, reading, wasContributing);
  if (config.mode === "always") return low ?? { contributing: true, reason: `mode always (${describe(reading)})` };
  const onlyCharging = config.mode === "charging" || reading.battery;
  if (!onlyCharging) return { contributing: true, reason: `no battery: contributes always (${describe(reading)})` };
  if (reading.source === "battery") return { contributing: false, reason: `on battery: contributes only while charging (${describe(reading)})` };
  if (reading.source === "unknown") return { contributing: false, reason: "power state unknown: contributes only on known external power" };
  return low ?? { contributing: true, reason: `on external power (${describe(reading)})` };
}

function lowBattery(config: ContributionConfig, reading: PowerReading, wasContributing: boolean): Verdict | undefined {
  if (!reading.battery || reading.percent === null || config.minBatteryPercent === 0) return undefined;
  const threshold = wasContributing ? config.minBatteryPercent : config.minBatteryPercent + config.resumeMarginPercent;
  if (reading.percent >= threshold) return undefined;
  return { contributing: false, reason: `battery at ${reading.percent}% (contributes from ${threshold}%)` };
}

function describe(reading: PowerReading): string {
  const parts: string[] = [reading.source === "ac" ? "external power" : reading.source === "battery" ? "battery" : "power unknown"];
  if (reading.charging !== null) parts.push(reading.charging ? "charging" : "not charging");
  if (reading.percent !== null) parts.push(`${reading.percent}%`);
  return parts.join(", ");
}

/** What the node shows (the /v1/status `contribution` field) and acts on. */
export interface ContributionDecision {
  readonly contributing: boolean;
  readonly reason: string;
  readonly power: { readonly source: PowerSource; readonly charging: boolean | null; readonly percent: number | null };
  /** The caps in force: the configured ones while contributing, zero while not. */
  readonly caps: ContributionCaps;
}

/** The policy over a stream of readings: judge() with the settling rule. */
export class ContributionPolicy {
  readonly config: ContributionConfig;
  #contributing: boolean | undefined;
  #reason = "no power reading yet";
  #reading: PowerReading = POWER_UNKNOWN;
  /** Consecutive readings disagreeing with the decision. */
  #against = 0;
  /** Decision changes so far (the first reading's included). */
  changes = 0;
  readings = 0;

  constructor(config: ContributionConfig = CONTRIBUTION_DEFAULTS) {
    const error = contributionConfigError(config);
    assert(error === undefined, `ContributionPolicy: ${error ?? ""}`);
    this.config = config;
  }

  /** Feeds one reading; the decision it leads to. */
  observe(reading: PowerReading): ContributionDecision {
    this.readings++;
    this.#reading = reading;
    const verdict = judge(this.config, reading, this.#contributing ?? false);
    if (this.#contributing === undefined) {
      this.#set(verdict);
    } else if (verdict.contributing === this.#contributing) {
      this.#against = 0;
      this.#reason = verdict.reason;
    } else if (++this.#against >= this.config.settleReadings) {
      this.#set(verdict);
    }
    return this.decision();
  }

  #set(verdict: Verdict): void {
    this.#contributing = verdict.contributing;
    this.#reason = verdict.reason;
    this.#against = 0;
    this.changes++;
  }

  /** Before the first reading the node does not lend itself (it does not know it may). */
  get contributing(): boolean {
    return this.#contributing ?? false;
  }

  decision(): ContributionDecision {
    const contributing = this.contributing;
    const pending = this.#against > 0 ? ` (${this.#against} of ${this.config.settleReadings} readings say otherwise)` : "";
    return {
      contributing,
      reason: this.#reason + pending,
      power: { source: this.#reading.source, charging: this.#reading.charging, percent: this.#reading.percent },
      caps: contributing ? this.config.caps : NOTHING,
    };
  }
}

/** What the host measured about this process, passed in at each admission. */
export interface ProcessLoad {
  /** This process's CPU over the last sample, percent of one core; null before the first. */
  readonly cpuPercent: number | null;
  readonly rssBytes: number;
}

export type Admission = { readonly ok: true } | { readonly ok: false; readonly reason: "not-contributing" | "cpu" | "memory" | "bandwidth" };

/**
 * Admits voluntary work against the policy and its caps. The bandwidth cap is a token bucket that
 * may go into debt by one item (an item larger than the bucket passes when the bucket is full,
 * and the debt is paid before the next): the bytes admitted over any span of t ms are at most
 * rate × (t + burstMs) + one item.
 */
export class VoluntaryGate {
  readonly #policy: ContributionPolicy;
  #tokens: number;
  #lastMs: number | undefined;
  readonly refused = { "not-contributing": 0, cpu: 0, memory: 0, bandwidth: 0 };
  admitted = 0;
  admittedBytes = 0;

  constructor(policy: ContributionPolicy) {
    this.#policy = policy;
    this.#tokens = this.#depth();
  }

  #depth(): number {
    const rate = this.#policy.config.caps.bandwidthKiBps;
    return rate === null ? Infinity : rate * 1024 * this.#policy.config.burstMs / 1000;
  }

  /** Admits `bytes` of voluntary work at `nowMs` (monotonic), given the process's load. */
  admit(nowMs: number, bytes: number, load: ProcessLoad): Admission {
    assert(Number.isFinite(nowMs) && bytes >= 0, "VoluntaryGate: bad admission");
    const refuse = (reason: Exclude<Admission, { ok: true }>["reason"]): Admission => {
      this.refused[reason]++;
      return { ok: false, reason };
    };
    if (!this.#policy.contributing) return refuse("not-contributing");
    const { cpuPercent, memoryMiB, bandwidthKiBps } = this.#policy.config.caps;
    if (memoryMiB !== null && load.rssBytes > memoryMiB * 1024 * 1024) return refuse("memory");
    if (cpuPercent !== null && load.cpuPercent !== null && load.cpuPercent > cpuPercent) return refuse("cpu");
    if (bandwidthKiBps !== null) {
      const depth = this.#depth();
      if (this.#lastMs !== undefined && nowMs > this.#lastMs) this.#tokens = Math.min(depth, this.#tokens + (nowMs - this.#lastMs) * bandwidthKiBps * 1024 / 1000);
      if (this.#lastMs === undefined || nowMs > this.#lastMs) this.#lastMs = nowMs;
      if (this.#tokens <= 0 || (bytes > this.#tokens && this.#tokens < depth)) return refuse("bandwidth");
      this.#tokens -= bytes;
    }
    this.admitted++;
    this.admittedBytes += bytes;
    return { ok: true };
  }
}
