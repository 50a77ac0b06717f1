// spawn (Collective layer): bringing a new node in — discovery and the handshake (membership),
// then the Raft snapshot and log, gossip rows and files, each caught up by its own subsystem. This
// subsystem watches the joins in flight: `spawn stat` and the pk_spawn_syncing gauge show, on the
// leader, how far each member's replica has caught up.
import { Gauge } from "prom-client";
import { describeConfState } from "../../core/collective/raft/confchange.ts";
import type { NodeContext } from "../context.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";
import { defineSubsystem } from "../subsystem.ts";
import type { NodeView } from "../view.ts";

interface Join {
  readonly id: string;
  readonly learner: boolean;
  readonly state: string;
  readonly match: number;
  readonly phase: string;
  readonly synced: boolean;
}

/** Every member's replication progress as the leader sees it (none elsewhere). */
function joins(kernel: NodeView): Join[] {
  const status = kernel.consensus.status();
  return [...status.progress.entries()].filter(([id]) => id !== kernel.id).sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, pr]) => {
    const behind = Math.max(0, status.lastIndex - pr.match);
    const phase = pr.state === "snapshot" ? `receiving snapshot at ${pr.pendingSnapshot}` : behind === 0 ? "synced" : `${behind} entries behind`;
    return { id, learner: pr.learner, state: pr.state, match: pr.match, phase, synced: phase === "synced" };
  });
}

const spawnCommand: Command<NodeContext> = {
  name: "spawn",
  summary: "joins in flight: how far each new member's replica has caught up (Raft log, gossip rows)",
  usage: "spawn stat",
  run(args, { kernel }) {
    if (args.length !== 1 || args[0] !== "stat") throw new UsageError("only `spawn stat` exists");
    const status = kernel.consensus.status();
    const gossip = kernel.gossip.stats();
    const self = formatFields([
      ["this node", `${status.role}, applied ${status.applied} of commit ${status.commit}${status.applied < status.commit ? " (catching up)" : ""}`],
      ["gossip", `${gossip.rows} rows from ${gossip.origins} origins`],
      ["configuration", describeConfState(status.conf)],
    ]);
    if (status.role !== "leader") return `${self}\n(the leader shows every member's progress)`;
    const rows = joins(kernel).map((j) => [j.id, j.learner ? "learner" : "voter", j.state, `${j.match}/${status.lastIndex}`, j.phase]);
    const joining = rows.filter((row) => row[4] !== "synced").length;
    return `${self}\n\n${formatTable(["MEMBER", "KIND", "STATE", "MATCH", "PHASE"], rows)}\n${joining} of ${rows.length} members still syncing`;
  },
};

export const SPAWN = defineSubsystem({
  name: "spawn",
  kinds: {},
  create: () => ({}),
  commands: [spawnCommand],
  metrics(kernel, registry) {
    new Gauge({
      name: "pk_spawn_syncing",
      help: "Members whose Raft replica is still catching up, as the leader sees them (0 elsewhere)",
      registers: [registry],
      collect() {
        this.set(joins(kernel).filter((j) => !j.synced).length);
      },
    });
  },
});
