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
    new Counter({
      name: "pk_brain_model_files_total",
      help: "Model files read by outcome: loaded, refused (malformed), untrusted (unsigned, badly signed, or not by a core member)",
      labelNames: ["outcome"] as const,
      registers,
      collect() {
        this.reset();
        const c = kernel.brain.counters;
        this.inc({ outcome: "loaded" }, c.modelLoads);
        this.inc({ outcome: "refused" }, c.modelRejected);
        this.inc({ outcome: "untrusted" }, c.modelUntrusted);
      },
    });
    new Counter({
      name: "pk_brain_spot_checks_total",
      help: "Spot checks of contributors' inference answers: runs audited, answers recomputed, answers found wrong (their senders banned)",
      labelNames: ["outcome"] as const,
      registers,
      collect() {
        this.reset();
        const c = kernel.brain.counters;
        this.inc({ outcome: "audited" }, c.audited);
        this.inc({ outcome: "checked" }, c.checked);
        this.inc({ outcome: "caught" }, c.caught);
      },
    });
    new Counter({
      name: "pk_brain_ga_rows_total",
      help: "GA chain mutations by outcome: followed (adopted), refused (malformed), untrusted (signer), worse (a chain head scoring worse here)",
      labelNames: ["outcome"] as const,
      registers,
      collect() {
        this.reset();
        const ga = kernel.brain.ga;
        this.inc({ outcome: "followed" }, ga.followed);
        this.inc({ outcome: "refused" }, ga.refused);
        this.inc({ outcome: "untrusted" }, ga.untrusted);
        this.inc({ outcome: "worse" }, ga.worse);
      },
    });
    new Counter({
      name: "pk_brain_fed_updates_rejected_total",
      help: "Federated updates rejected by the rounds this node coordinated (non-finite, wrong length, bad n, a contributor's delta too long)",
      registers,
      collect() {
        this.reset();
        this.inc(kernel.brain.counters.fedRejected);
      },
    });
  },
});
