// The Evolution layer's subsystem (issue 15): programs on this node's hooks and `evolve`.
import { Counter } from "prom-client";
import { defineSubsystem } from "../subsystem.ts";
import { EVOLVE_COMMANDS } from "./commands.ts";
import { EvolvePart } from "./part.ts";

export const PROGRAMS = defineSubsystem({
  name: "programs",
  kinds: {},
  create: (ctx) => {
    const part = new EvolvePart(ctx);
    ctx.services.programs = part;
    return part;
  },
  commands: EVOLVE_COMMANDS,
  metrics(kernel, registry) {
    new Counter({
      name: "pk_program_runs_total",
      help: "Runs of programs on this node, by program and outcome (ok, or the failure: gas, memory, stack, wall, output, throw, contract, effects, host)",
      labelNames: ["program", "outcome"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const p of kernel.programs.list()) {
          const failed = Object.values(p.stats.failures).reduce((a, b) => a + (b ?? 0), 0);
          this.inc({ program: p.name, outcome: "ok" }, p.stats.runs - failed);
          for (const [kind, n] of Object.entries(p.stats.failures)) this.inc({ program: p.name, outcome: kind }, n ?? 0);
        }
      },
    });
  },
});
