// The Body layer's subsystems (DESIGN.md §7): membership (roster, SWIM, degrade), vital signs,
// guarded tasks (heal), the RTT pinger and persist.
import { Counter } from "prom-client";
import { defineSubsystem } from "../subsystem.ts";
import { degrade, guard as guardCommand, heal, persist, vital } from "./commands.ts";
import { Guard } from "./guard.ts";
import { invite, Invites, revoke } from "./invites.ts";
import { Membership } from "./membership.ts";
import { Persist } from "./persist.ts";
import { Pinger } from "./pinger.ts";
import { VitalSigner } from "./vitals.ts";

export const MEMBERSHIP = defineSubsystem({
  name: "membership",
  kinds: {
    // The handshake and SWIM's dissemination are how members become known: any key holder.
    hello: "intro", challenge: "intro", proof: "intro", welcome: "intro",
    "swim-ping": "peer", "swim-ping-req": "peer", "swim-ack": "peer", "swim-nack": "peer", "swim-gossip": "peer", "swim-sync": "peer",
  },
  create: (ctx, config) => new Membership(ctx, config),
  commands: [degrade],
});

export const VITALS = defineSubsystem({
  name: "vitals",
  kinds: { vital: "member" },
  create: (ctx, config) => new VitalSigner(ctx, config.vital, ctx.host),
  commands: [vital],
});

export const GUARD = defineSubsystem({
  name: "guard",
  kinds: { heal: "member" },
  create: (ctx, config) => new Guard(ctx, config.heal),
  commands: [guardCommand, heal],
  metrics(kernel, registry) {
    new Counter({
      name: "pk_guard_records_refused_total",
      help: "Guarded-task records from peers refused, by reason: epoch (beyond what a peer may move), signature (not their owner's; owner: of those, in this node's name), role (owned by a contributor), unsigned (read from an older store)",
      labelNames: ["reason"] as const,
      registers: [registry],
      collect() {
        this.reset();
        const s = kernel.subsystem<Guard>("guard").heal.stats();
        for (const [reason, count] of [["epoch", s.epochRefused], ["signature", s.signatureRefused], ["owner", s.ownerRefused], ["role", s.roleRefused], ["unsigned", s.unsignedDropped]] as const) this.inc({ reason }, count);
      },
    });
  },
});

export const PINGER = defineSubsystem({
  name: "pinger",
  kinds: { ping: "peer", ack: "peer" },
  create: (ctx, config) => new Pinger(ctx, config.pingTicks),
});

export const PERSIST = defineSubsystem({
  name: "persist",
  kinds: {},
  create: (ctx, config) => new Persist(ctx, config.persistTicks),
  commands: [persist],
});

export const INVITES = defineSubsystem({
  name: "invites",
  // A redeeming node is no member yet: its redeem comes in an intro packet (the cluster key).
  kinds: { redeem: "intro", grant: "intro" },
  create: (ctx) => new Invites(ctx),
  commands: [invite, revoke],
});
