// The contribution subsystem's face: the `contribution` shell command and its metrics
// (src/node/body/contribution.ts holds the subsystem, docs/adr/027-contribution.md the policy).
import { Counter, Gauge } from "prom-client";
import type { NodeContext } from "../context.ts";
import { mib } from "../format.ts";
import { formatFields, UsageError, type Command } from "../shell.ts";
import { defineSubsystem } from "../subsystem.ts";
import type { NodeView } from "../view.ts";
import type { ContributionStatus } from "../subsystem-context.ts";
import { Contribution } from "./contribution.ts";

const part = (kernel: NodeView): Contribution => kernel.subsystem<Contribution>("contribution");

function cap(value: number | null, unit: string): string {
  return value === null ? "none" : `${value}${unit}`;
}

export function formatPower(power: ContributionStatus["power"]): string {
  const parts: string[] = [power.source === "ac" ? "external power" : power.source === "battery" ? "battery" : "unknown"];
  if (power.charging !== null) parts.push(power.charging ? "charging" : "not charging");
  if (power.percent !== null) parts.push(`${power.percent}%`);
  return parts.join(", ");
}

export const contribution: Command<NodeContext> = {
  name: "contribution",
  summary: "whether this node lends itself to the cluster now (power, policy, caps), and who declines work",
  usage: "contribution [json]",
  run(args, { kernel }) {
    if (args.length > 1 || (args.length === 1 && args[0] !== "json")) throw new UsageError("contribution takes no argument but json");
    const c = part(kernel);
    const status = c.status();
    if (args[0] === "json") return JSON.stringify(status);
    const config = c.config;
    const refused = c.gate.refused;
    return formatFields([
      ["contributing", status.contributing ? "yes" : "no"],
      ["reason", status.reason],
      ["power", formatPower(status.power)],
      ["mode", `${config.mode} (stops below ${config.minBatteryPercent}% battery, resumes at ${config.minBatteryPercent + config.resumeMarginPercent}%)`],
      ["caps", `cpu ${cap(config.caps.cpuPercent, "%")}, memory ${cap(config.caps.memoryMiB, " MiB")}, bandwidth ${cap(config.caps.bandwidthKiBps, " KiB/s")}`],
      ["load", `cpu ${c.load.cpuPercent === null ? "-" : `${c.load.cpuPercent}%`}, rss ${c.load.rssBytes === 0 ? "-" : mib(c.load.rssBytes)}`],
      ["priority", c.priority],
      ["voluntary work", `${c.gate.admitted} admitted (${mib(c.gate.admittedBytes)}), refused: ${refused["not-contributing"]} not contributing, ${refused.cpu} cpu, ${refused.memory} memory, ${refused.bandwidth} bandwidth`],
      ["readings", `${c.policy.readings} (${c.policy.changes} changes)`],
      ["declining", c.declining().join(" ") || "none"],
    ]);
  },
};

export const CONTRIBUTION = defineSubsystem({
  name: "contribution",
  kinds: {},
  create: (ctx, config) => new Contribution(ctx, config.contribution),
  commands: [contribution],
  metrics(kernel, registry) {
    const registers = [registry];
    new Gauge({
      name: "pk_contributing",
      help: "1 while this node takes voluntary work from the cluster (its power policy allows it), else 0",
      registers,
      collect() {
        this.set(part(kernel).policy.contributing ? 1 : 0);
      },
    });
    new Counter({
      name: "pk_voluntary_work_total",
      help: "Voluntary work (peers' inference shares, bundle chunks) admitted, and refused by reason: not-contributing, cpu, memory, bandwidth",
      labelNames: ["outcome"] as const,
      registers,
      collect() {
        this.reset();
        const gate = part(kernel).gate;
        this.inc({ outcome: "admitted" }, gate.admitted);
        for (const [reason, count] of Object.entries(gate.refused)) this.inc({ outcome: reason }, count);
      },
    });
  },
});
