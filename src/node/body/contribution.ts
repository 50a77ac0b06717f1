// Contribution (Body layer): whether this machine lends itself to the cluster right now, and the
// caps on what it lends (docs/adr/027-contribution.md).
//
// Every pollTicks (5 s) the node reads its power state (src/adapters/power.ts: sysfs, or
// termux-battery-status on Android) and how much CPU and memory its process uses, and feeds the
// reading to the policy (src/core/body/contribution.ts). What it does with the decision:
// - it tells the cluster when it declines: a row of the gossip topic `body.contribution`, keyed by
//   its own id, says it takes no voluntary work (and why); it is deleted when the node contributes
//   again, so a cluster of contributing nodes carries no such rows. Other nodes route around a
//   member whose own row says no: the Brain leaves it out of the peers of distributed inference,
//   expert calls and federated rounds (src/node/brain/part.ts). A row counts only under its
//   writer's own id (rows are signed by their origin): a node can withdraw only itself;
// - it declines what still arrives: the Brain answers a peer's request with error `full` (the
//   coordinator computes that share itself, as for any failed peer), the bundle service answers a
//   chunk request `busy` (the fetcher asks another holder) — both through admit(), which also
//   applies the CPU, memory and bandwidth caps while the node contributes;
// - it lowers its own process priority (nice 19) while it does not contribute, so what it still
//   runs for itself yields to the owner's programs; it restores the priority it started with when it
//   contributes again (an unprivileged process may not raise it back: `contribution` says so).
//
// The simulator has no power to read: its nodes take the unknown reading once, which `auto` (the
// default) reads as a machine without a battery, so they contribute.
import { getPriority, setPriority } from "node:os";
import { CONTRIBUTION_DEFAULTS, ContributionPolicy, POWER_UNKNOWN, VoluntaryGate, type ContributionConfig, type ContributionDecision, type PowerReading, type ProcessLoad } from "../../core/body/contribution.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import { powerReader } from "../../adapters/power.ts";
import type { ContributionService, ContributionStatus, SubsystemContext } from "../subsystem-context.ts";

export const CONTRIBUTION_TOPIC = "body.contribution";
/** The niceness of a node that does not contribute (the lowest priority). */
const NICE_IDLE = 19;
/** Characters of the reason carried in the gossip row. */
const ROW_REASON_CHARS = 120;

export interface NodeContributionConfig extends ContributionConfig {
  /** Ticks between two power readings (500: 5 s at 10 ms ticks). */
  readonly pollTicks: number;
  /** The sysfs power-supply folder to read (default /sys/class/power_supply; a fixture in tests). */
  readonly sysfsRoot?: string | undefined;
  /** termux-battery-status's path; undefined: looked for on PATH; null: never used. */
  readonly termuxCommand?: string | null | undefined;
  /** Lower the process priority while not contributing (default true). */
  readonly lowerPriority: boolean;
}

export const NODE_CONTRIBUTION_DEFAULTS: NodeContributionConfig = { ...CONTRIBUTION_DEFAULTS, pollTicks: 500, lowerPriority: true };

export class Contribution implements ContributionService {
  readonly policy: ContributionPolicy;
  readonly gate: VoluntaryGate;
  readonly config: NodeContributionConfig;
  readonly #ctx: SubsystemContext;
  readonly #read: (() => Promise<PowerReading>) | undefined;
  #reading: Promise<void> | undefined;
  /** A reading that arrived between ticks, taken at the next tick. */
  #arrived: PowerReading | undefined;
  #lastPollTick = -Infinity;
  #load: ProcessLoad = { cpuPercent: null, rssBytes: 0 };
  #cpu: { usage: NodeJS.CpuUsage; ms: number } | undefined;
  #published: boolean | undefined;
  #sampled = false;
  /** Members whose own row says they take no voluntary work. */
  #declining = new Set<string>();
  readonly #startPriority: number | undefined;
  /** What the last priority change did (for `contribution`). */
  priority = "unchanged";
  readErrors = 0;

  constructor(ctx: SubsystemContext, config: NodeContributionConfig) {
    this.#ctx = ctx;
    this.config = config;
    this.policy = new ContributionPolicy(config);
    this.gate = new VoluntaryGate(this.policy);
    // A real process reads its power; the simulator's nodes do not (they have no host).
    this.#read = ctx.host === undefined && config.sysfsRoot === undefined ? undefined
      : powerReader({ ...(config.sysfsRoot === undefined ? {} : { sysfsRoot: config.sysfsRoot }), ...(config.termuxCommand === undefined ? {} : { termuxCommand: config.termuxCommand }) });
    this.#startPriority = this.#read === undefined || !config.lowerPriority ? undefined : safePriority();
    ctx.services.contribution = this;
  }

  start(): void {
    if (this.#read === undefined) this.#apply(POWER_UNKNOWN);
    else this.#poll();
  }

  tick(tick: number): void {
    if (this.#arrived !== undefined) {
      const reading = this.#arrived;
      this.#arrived = undefined;
      this.#apply(reading);
    }
    if (tick - this.#lastPollTick < this.config.pollTicks) return;
    this.#lastPollTick = tick;
    this.#refreshDeclining();
    this.#poll();
  }

  #poll(): void {
    if (this.#read === undefined || this.#reading !== undefined) return;
    this.#lastPollTick = this.#ctx.tick();
    this.#reading = this.#read().then((reading) => {
      this.#arrived = reading;
    }, () => {
      this.readErrors++;
      this.#arrived = POWER_UNKNOWN;
    }).finally(() => {
      this.#reading = undefined;
    });
  }

  #apply(reading: PowerReading): void {
    this.#sampleLoad();
    const before = this.policy.changes;
    const decision = this.policy.observe(reading);
    if (this.policy.changes !== before) {
      this.#ctx.emit("contribution-changed", { contributing: decision.contributing, reason: decision.reason });
      this.#setPriority(decision.contributing);
    }
    if (this.#published !== decision.contributing) this.#publish(decision);
  }

  /**
   * Only a node that declines says so: a row [0, reason] while it does not contribute, deleted when
   * it contributes again (a tombstone). Most nodes contribute and write nothing.
   */
  #publish(decision: ContributionDecision): void {
    const topics = this.#ctx.services.topics;
    if (topics === undefined) return;
    // A contributing node writes nothing, unless a row of its last run still says it declines.
    if (decision.contributing && this.#published === undefined && topics.get(CONTRIBUTION_TOPIC, this.#ctx.id) === undefined) {
      this.#published = true;
      return;
    }
    const error = decision.contributing
      ? topics.publish(CONTRIBUTION_TOPIC, this.#ctx.id, undefined)
      : topics.publish(CONTRIBUTION_TOPIC, this.#ctx.id, packValue([0, decision.reason.slice(0, ROW_REASON_CHARS)]));
    if (error === undefined) this.#published = decision.contributing;
  }

  #refreshDeclining(): void {
    const topics = this.#ctx.services.topics;
    if (topics === undefined) return;
    const declining = new Set<string>();
    for (const row of topics.entries(CONTRIBUTION_TOPIC)) {
      if (row.key !== row.origin || row.origin === this.#ctx.id) continue; // a node speaks only for itself
      if (rowSaysDeclining(row.value)) declining.add(row.origin);
    }
    this.#declining = declining;
  }

  #sampleLoad(): void {
    if (this.#read === undefined) return;
    const usage = process.cpuUsage();
    const ms = this.#ctx.clock.nowMs();
    let cpuPercent = this.#load.cpuPercent;
    if (this.#cpu !== undefined && ms > this.#cpu.ms) {
      const micros = usage.user - this.#cpu.usage.user + usage.system - this.#cpu.usage.system;
      cpuPercent = Math.round(micros / 10 / (ms - this.#cpu.ms));
    }
    this.#cpu = { usage, ms };
    this.#load = { cpuPercent, rssBytes: residentBytes() };
    this.#sampled = true;
  }

  #setPriority(contributing: boolean): void {
    if (this.#startPriority === undefined) return;
    const want = contributing ? this.#startPriority : Math.max(this.#startPriority, NICE_IDLE);
    try {
      setPriority(want);
      this.priority = `nice ${want}`;
    } catch (error) {
      this.priority = `nice ${safePriority() ?? "?"} (could not set ${want}: ${(error as NodeJS.ErrnoException).code ?? String(error)})`;
    }
  }

  admit(bytes: number): string | undefined {
    if (this.#read !== undefined && !this.#sampled) this.#sampleLoad();
    const admission = this.gate.admit(this.#ctx.clock.nowMs(), Math.max(0, bytes), this.#load);
    if (admission.ok) return undefined;
    switch (admission.reason) {
      case "not-contributing": return `not contributing: ${this.policy.decision().reason}`;
      case "cpu": return `over the CPU cap (${this.#load.cpuPercent ?? "?"}% > ${this.config.caps.cpuPercent ?? "-"}%)`;
      case "memory": return `over the memory cap (${Math.round(this.#load.rssBytes / 1048576)} MiB > ${this.config.caps.memoryMiB ?? "-"} MiB)`;
      case "bandwidth": return `over the bandwidth cap (${this.config.caps.bandwidthKiBps ?? "-"} KiB/s)`;
    }
  }

  accepts(id: string): boolean {
    return !this.#declining.has(id);
  }

  /** Members that said they take no voluntary work, as this node last read the topic. */
  declining(): string[] {
    return [...this.#declining].sort();
  }

  get load(): ProcessLoad {
    return this.#load;
  }

  status(): ContributionStatus {
    const { contributing, reason, power, caps } = this.policy.decision();
    return { contributing, reason, power, caps };
  }
}

function rowSaysDeclining(value: Uint8Array): boolean {
  try {
    const row = unpackValue(value);
    return Array.isArray(row) && row[0] === 0;
  } catch {
    return false;
  }
}

/**
 * The process's resident memory. Where the OS does not tell it (qemu-user reports 0), the V8 heap
 * and the memory outside it that Node accounts for: a lower bound, so the memory cap still holds
 * for what the node itself allocates.
 */
function residentBytes(): number {
  const rss = process.memoryUsage.rss();
  if (rss > 0) return rss;
  const usage = process.memoryUsage();
  return usage.heapTotal + usage.external;
}

function safePriority(): number | undefined {
  try {
    return getPriority();
  } catch {
    return undefined;
  }
}

/** The flags of `pk node` for the contribution policy, checked; an error text for a bad one. */
export function contributionFromFlags(flags: {
  readonly contribute?: string | undefined;
  readonly cpuCap?: string | undefined;
  readonly memoryCap?: string | undefined;
  readonly bandwidthCap?: string | undefined;
  readonly minBattery?: string | undefined;
}): Partial<NodeContributionConfig> | string {
  const out: { mode?: ContributionConfig["mode"]; minBatteryPercent?: number } = {};
  if (flags.contribute !== undefined) {
    if (!["auto", "always", "charging", "never"].includes(flags.contribute)) return "--contribute must be auto, always, charging or never";
    out.mode = flags.contribute as ContributionConfig["mode"];
  }
  const whole = (text: string | undefined, flag: string, unit: RegExp, high: number): number | null | string => {
    if (text === undefined || text === "none") return null;
    const match = unit.exec(text);
    const n = match === null ? NaN : Number(match[1]);
    return Number.isSafeInteger(n) && n >= 1 && n <= high ? n : `${flag} must be a whole number 1..${high}${flag === "--cpu-cap" ? " (percent of one core, e.g. 50 or 50%)" : flag === "--memory-cap" ? " (MiB, e.g. 512)" : " (KiB/s, e.g. 1024)"}, or none`;
  };
  const cpuPercent = whole(flags.cpuCap, "--cpu-cap", /^(\d{1,9})%?$/, 100 * 1024);
  const memoryMiB = whole(flags.memoryCap, "--memory-cap", /^(\d{1,9})(?:MiB)?$/, 1024 * 1024);
  const bandwidthKiBps = whole(flags.bandwidthCap, "--bandwidth-cap", /^(\d{1,10})(?:KiB\/s)?$/, 1024 * 1024 * 1024);
  for (const value of [cpuPercent, memoryMiB, bandwidthKiBps]) if (typeof value === "string") return value;
  if (flags.minBattery !== undefined) {
    const n = /^\d{1,3}$/.test(flags.minBattery) ? Number(flags.minBattery) : NaN;
    if (!(n >= 0 && n <= 100)) return "--min-battery must be a whole percent 0..100";
    out.minBatteryPercent = n;
  }
  return { ...out, caps: { cpuPercent: cpuPercent as number | null, memoryMiB: memoryMiB as number | null, bandwidthKiBps: bandwidthKiBps as number | null } };
}
