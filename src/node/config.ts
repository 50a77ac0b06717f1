// The kernel's configuration: one section per subsystem, with the defaults of a real node
// (10 ms ticks). The simulator and the tests override sections.
import { HEAL_DEFAULTS, type HealConfig } from "../core/body/heal.ts";
import { ROSTER_DEFAULTS, type RosterConfig } from "../core/body/roster.ts";
import { SWIM_LAN, type SwimConfig } from "../core/body/swim.ts";
import { VITAL_DEFAULTS, type VitalConfig } from "../core/body/vital.ts";
import { GOSSIP_DEFAULTS, type GossipConfig } from "../core/collective/gossip.ts";
import type { Role } from "../core/wire/messages.ts";
import { CONSENSUS_DEFAULTS, type ConsensusConfig } from "./collective/consensus.ts";
import { MESH_SERVICE_DEFAULTS, type MeshServiceConfig } from "./collective/mesh.ts";
import { BRAIN_DEFAULTS, type BrainConfig } from "./brain/service.ts";
import { MEMORY_DEFAULTS, type MemoryConfig } from "./self/memory.ts";
import { DMN_PART_DEFAULTS, type DmnPartConfig } from "./self/dmn.ts";
import { NODE_CONTRIBUTION_DEFAULTS, type NodeContributionConfig } from "./body/contribution.ts";

export interface KernelConfig {
  readonly name: string;
  readonly role: Role;
  /** Wall-clock milliseconds per tick; the simulator uses it to stamp virtual time. */
  readonly tickMs: number;
  readonly join: readonly string[];
  readonly roster: Omit<RosterConfig, "join">;
  readonly swim: SwimConfig;
  readonly vital: VitalConfig;
  readonly heal: HealConfig;
  /** Ticks between RTT probes to a random member (for `net`). */
  readonly pingTicks: number;
  /** Ticks between writes of changed members and the vitals window to the store. */
  readonly persistTicks: number;
  /**
   * Ticks between push-pulls with one member this node holds dead (serf's reconnect): SWIM alone
   * never probes the dead again, so without it two sides of a healed partition stay apart.
   */
  readonly reconnectTicks: number;
  /** Raft, the /v1/kv state machine, voter management and regeneration (src/node/collective/consensus.ts). */
  readonly consensus: ConsensusConfig;
  /** Gossip topics (src/core/collective/gossip.ts). */
  readonly gossip: GossipConfig;
  /** Mesh routing (src/node/collective/mesh.ts): neighbours, and the core's timers. */
  readonly mesh: MeshServiceConfig;
  /** The Brain (src/node/brain/service.ts): deadlines, peers, local data, training. */
  readonly brain: BrainConfig;
  /** The Self layer's memory (src/node/self/memory.ts): its gossip table. */
  readonly memory: MemoryConfig;
  /** The Default Mode Network (src/node/self/dmn.ts): when the node is idle, how often each job runs. */
  readonly dmn: DmnPartConfig;
  /** Whether the node lends itself now: power policy and caps (src/node/body/contribution.ts, ADR 027). */
  readonly contribution: NodeContributionConfig;
}

export const KERNEL_DEFAULTS: Omit<KernelConfig, "name" | "join"> = {
  role: "core",
  tickMs: 10,
  roster: ROSTER_DEFAULTS,
  swim: SWIM_LAN,
  vital: VITAL_DEFAULTS,
  heal: HEAL_DEFAULTS,
  pingTicks: 250,
  persistTicks: 100,
  reconnectTicks: 1000,
  consensus: CONSENSUS_DEFAULTS,
  // A joiner or a node back from a long partition catches up on the stream channel.
  gossip: { ...GOSSIP_DEFAULTS, catchUpBytes: 192 * 1024 },
  mesh: MESH_SERVICE_DEFAULTS,
  brain: BRAIN_DEFAULTS,
  memory: MEMORY_DEFAULTS,
  dmn: DMN_PART_DEFAULTS,
  contribution: NODE_CONTRIBUTION_DEFAULTS,
};

