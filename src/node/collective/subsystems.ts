// The Collective layer's subsystems (DESIGN.md §7): gossip topics (kdds, replica), Raft and the
// key-value store, the shared folder (sfs) and mesh routing.
import { Gauge } from "prom-client";
import { defineSubsystem } from "../subsystem.ts";
import { kvRoutes, topicRoutes } from "./routes.ts";
import { kv, raft, route, topic } from "./commands.ts";
import { ConsensusPart, MeshPart, SharedFolderPart } from "./parts.ts";
import { SFS_COMMANDS } from "./sfs-commands.ts";
import { Topics } from "./topics.ts";

export const TOPICS = defineSubsystem({
  name: "topics",
  kinds: { gossip: "member" },
  create: (ctx, config) => {
    // Topics under "self." (the minds each node advertises) hold one row per node, under its own
    // id, and those under "evolve." (the evolve log) rows under "ID/": no member writes another's.
    const admit = (row: { topic: string; key: string; origin: string }): boolean => (row.topic.startsWith("self.") ? row.key === row.origin
      : row.topic.startsWith("evolve.") ? row.key.startsWith(`${row.origin}/`) : true);
    const topics = new Topics(ctx, ctx.fork(), config.gossip, { admit });
    ctx.services.topics = topics;
    return topics;
  },
  commands: [topic],
  routes: topicRoutes,
});

export const CONSENSUS = defineSubsystem({
  name: "consensus",
  // Learners answer appends and vote requests come from candidates: any member (Raft checks terms).
  kinds: { raft: "member", "raft-offer": "member" },
  create: (ctx, config) => new ConsensusPart(ctx, config),
  commands: [raft, kv],
  routes: kvRoutes,
});

export const SHARED_FOLDER = defineSubsystem({
  name: "shared-folder",
  kinds: { "sfs-digest": "member", "sfs-sums": "member", "sfs-entries": "member", "sfs-get": "member", "sfs-chunk": "member" },
  create: (ctx) => new SharedFolderPart(ctx),
  commands: SFS_COMMANDS,
});

export const MESH = defineSubsystem({
  name: "mesh",
  kinds: { "mesh-update": "member", "mesh-req": "member", "mesh-data": "member" },
  create: (ctx, config) => new MeshPart(ctx, config),
  commands: [route],
  metrics(kernel, registry) {
    const registers = [registry];
    new Gauge({
      name: "pk_mesh_routes",
      help: "Destinations this node has a finite mesh route to (0 while the mesh is off)",
      registers,
      collect() {
        this.set(kernel.mesh.active ? kernel.mesh.routes().filter((r) => r.nextHop !== undefined && r.metric < 0xffff).length : 0);
      },
    });
  },
});
