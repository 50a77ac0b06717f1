// The Brain layer's subsystem (DESIGN.md §7): the replicated model, distributed inference
// (pipeline, tensor, DKVA), MoE, federated learning and the GA.
import { Counter } from "prom-client";
import { defineSubsystem } from "../subsystem.ts";
import { brainRoutes } from "./routes.ts";
import { BRAIN_COMMANDS } from "./commands.ts";
import { BrainPart } from "./part.ts";

export const BRAIN = defineSubsystem({
  name: "brain",
  kinds: { brain: "member" },
  create: (ctx, config) => new BrainPart(ctx, config),
  commands: BRAIN_COMMANDS,
  routes: brainRoutes,
  metrics(kernel, registry) {
    const registers = [registry];
    new Counter({
      name: "pk_brain_inferences_total",
      help: "Brain inferences coordinated by this node, by mode (local, pipeline, tensor, dkva, remote, moe)",
      labelNames: ["mode"] as const,
      registers,
      collect() {
        this.reset();
        for (const [mode, count] of Object.entries(kernel.brain.counters.inferences)) this.inc({ mode }, count);
      },
    });
    new Counter({
      name: "pk_brain_fallbacks_total",
      help: "Distributed inferences that dropped a peer and computed its share here, by result (REDUCED, SOLO)",
      labelNames: ["state"] as const,
      registers,
      collect() {
        this.reset();
        this.inc({ state: "REDUCED" }, kernel.brain.counters.reduced);
        this.inc({ state: "SOLO" }, kernel.brain.counters.solo);
      },
    });
    new Counter({
      name: "pk_brain_calls_total",
      help: "Brain calls to peers by outcome (sent, timed out, failed) and requests served for peers",
      labelNames: ["outcome"] as const,
      registers,
      collect() {
        this.reset();
        const c = kernel.brain.counters;
        this.inc({ outcome: "sent" }, c.callsSent);
        this.inc({ outcome: "timeout" }, c.callsTimedOut);
        this.inc({ outcome: "failed" }, c.callsFailed);
        this.inc({ outcome: "served" }, c.requestsServed);
        this.inc({ outcome: "bad" }, c.badMessages);
      },
    });
  },
});
