// The Self layer's subsystems (DESIGN.md §7): memory (replicated, searchable), minds, chat, dmn.
import { Counter, Gauge } from "prom-client";
import { defineSubsystem } from "../subsystem.ts";
import { memory, remember } from "./memory-commands.ts";
import { MemoryPart } from "./memory.ts";
import { memoryRoutes } from "./memory-routes.ts";
import { mind } from "./minds-commands.ts";
import { chat } from "./chat-commands.ts";
import { chatRoutes } from "./chat-routes.ts";
import { chatOf } from "./chat.ts";
import { dmn } from "./dmn-commands.ts";
import { DmnPart } from "./dmn.ts";
import { MINDS_DEFAULTS, MindsPart } from "./minds.ts";

export const MEMORY = defineSubsystem({
  name: "memory",
  // Rows are signed by their writers and checked against the table's rule: any member relays them.
  kinds: { memory: "member" },
  create: (ctx, config) => {
    const part = new MemoryPart(ctx, config.memory, ctx.self?.ann?.());
    ctx.services.memory = part;
    return part;
  },
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
  create: (ctx) => {
    const part = new MindsPart(ctx, MINDS_DEFAULTS, ctx.self?.minds ?? []);
    ctx.services.minds = part;
    return part;
  },
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

export const CHAT = defineSubsystem({
  name: "chat",
  // No messages of its own: a turn uses the memory and the minds (chat.ts).
  kinds: {},
  create: () => ({}),
  commands: [chat],
  routes: chatRoutes,
  metrics(kernel, registry) {
    const registers = [registry];
    new Counter({
      name: "pk_chat_turns_total",
      help: "Chat turns answered by a mind, from memory alone (no mind answered), cut (the mind failed mid-answer), cancelled, or refused busy",
      labelNames: ["outcome"] as const,
      registers,
      collect() {
        this.reset();
        const c = chatOf(kernel).counters;
        this.inc({ outcome: "mind" }, c.fromMind);
        this.inc({ outcome: "memory" }, c.fromMemory);
        this.inc({ outcome: "cut" }, c.cut);
        this.inc({ outcome: "cancelled" }, c.cancelled);
        this.inc({ outcome: "busy" }, c.busy);
      },
    });
    new Counter({
      name: "pk_chat_seconds_total",
      help: "Time chat turns spent in the mind, and chat's own time beyond it (recall, prompt, remembering the turn)",
      labelNames: ["part"] as const,
      registers,
      collect() {
        this.reset();
        const c = chatOf(kernel).counters;
        this.inc({ part: "mind" }, c.mindMsSum / 1000);
        this.inc({ part: "overhead" }, c.overheadMsSum / 1000);
      },
    });
  },
});

export const DMN = defineSubsystem({
  name: "dmn",
  kinds: {},
  create: (ctx, config) => new DmnPart(ctx, { ...config.dmn, tickMs: config.tickMs }),
  commands: [dmn],
  metrics(kernel, registry) {
    const registers = [registry];
    new Counter({
      name: "pk_dmn_jobs_total",
      help: "Idle work the Default Mode Network did, by job (consolidate, review, ga, train) and outcome (done, preempted by foreground work, failed)",
      labelNames: ["job", "outcome"] as const,
      registers,
      collect() {
        this.reset();
        for (const [job, s] of Object.entries(kernel.dmn.clock.jobs)) {
          this.inc({ job, outcome: "done" }, s.runs);
          this.inc({ job, outcome: "preempted" }, s.preempted);
          this.inc({ job, outcome: "failed" }, s.failed);
        }
      },
    });
    new Counter({
      name: "pk_dmn_busy_seconds_total",
      help: "Time the DMN's idle work held the event loop, in its slices",
      registers,
      collect() {
        this.reset();
        this.inc(kernel.dmn.work.busyMs / 1000);
      },
    });
    new Gauge({
      name: "pk_dmn_longest_slice_seconds",
      help: "The longest slice of DMN work so far (how long it held the event loop at once)",
      registers,
      collect() {
        this.set(kernel.dmn.work.longestSliceMs / 1000);
      },
    });
    new Gauge({
      name: "pk_dmn_idle",
      help: "1 while the node counts as idle (the DMN may work), 0 while busy or off",
      registers,
      collect() {
        this.set(kernel.dmn.clock.idle(kernel.tickCount) ? 1 : 0);
      },
    });
  },
});
