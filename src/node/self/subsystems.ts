// The Self layer's subsystems (DESIGN.md §7): memory (replicated, searchable), minds, chat, dmn.
import { Counter, Gauge } from "prom-client";
import { defineSubsystem } from "../subsystem.ts";
import { memory, remember } from "./memory-commands.ts";
import { MemoryPart } from "./memory.ts";
import { memoryRoutes } from "./memory-routes.ts";
import { mind } from "./minds-commands.ts";
import { MINDS_DEFAULTS, MindsPart } from "./minds.ts";

export const MEMORY = defineSubsystem({
  name: "memory",
  // Rows are signed by their writers and checked against the table's rule: any member relays them.
  kinds: { memory: "member" },
  create: (ctx, config) => new MemoryPart(ctx, config.memory),
  commands: [remember, memory],
  routes: memoryRoutes,
  metrics(kernel, registry) {
    new Gauge({
      name: "pk_memories",
      help: "Memories this node holds, by kind (user, mind, note, summary, redacted)",
      labelNames: ["kind"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [kind, n] of Object.entries(kernel.memory.stats().byKind)) this.set({ kind }, n);
      },
    });
  },
});

export const MINDS = defineSubsystem({
  name: "minds",
  // Asked and answered by members; the serving node bounds what it takes (MindsConfig).
  kinds: { "mind-ask": "member", "mind-say": "member", "mind-done": "member", "mind-stop": "member" },
  create: (ctx) => new MindsPart(ctx, MINDS_DEFAULTS, ctx.self?.minds ?? []),
  commands: [mind],
  metrics(kernel, registry) {
    kernel.minds.metrics(registry);
    new Counter({
      name: "pk_mind_calls_total",
      help: "Calls to members' minds (sent, timed out), calls served for members (served, refused) and unexpected answers (bad)",
      labelNames: ["outcome"] as const,
      registers: [registry],
      collect() {
        this.reset();
        const c = kernel.minds.counters;
        this.inc({ outcome: "sent" }, c.callsSent);
        this.inc({ outcome: "timeout" }, c.callsTimedOut);
        this.inc({ outcome: "served" }, c.served);
        this.inc({ outcome: "refused" }, c.serveRefused);
        this.inc({ outcome: "bad" }, c.badMessages);
      },
    });
  },
});
