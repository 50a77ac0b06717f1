// The node as its shell commands, its HTTP routes and the tests see it: the kernel's own state
// (id, tick, stats, events, tasks) and each registered subsystem's public face, looked up by name.
// The Kernel extends it; nothing here drives anything.
import type { EvolvePart } from "./evolve/part.ts";
import type { Evolver } from "./evolve/evolve.ts";
import type { Mode } from "../core/body/degrade.ts";
import type { Gossip } from "../core/collective/gossip.ts";
import type { Heal } from "../core/body/heal.ts";
import type { Roster } from "../core/body/roster.ts";
import type { Swim, SwimState } from "../core/body/swim.ts";
import type { Vitals, VitalSigns } from "../core/body/vital.ts";
import type { MemberEntry } from "../core/wire/messages.ts";
import type { Guard, GuardRunner, GuardStatus } from "./body/guard.ts";
import type { MemberStatus, Membership, ModeChange } from "./body/membership.ts";
import type { Persist } from "./body/persist.ts";
import type { PeerRtt, Pinger } from "./body/pinger.ts";
import type { VitalSigner } from "./body/vitals.ts";
import type { BrainPart } from "./brain/part.ts";
import type { BrainService } from "./brain/service.ts";
import type { Consensus, KvCallback } from "./collective/consensus.ts";
import type { MeshService } from "./collective/mesh.ts";
import type { ConsensusPart, MeshPart, SharedFolderPart } from "./collective/parts.ts";
import type { SharedFolder } from "./collective/shared-folder.ts";
import type { Topics } from "./collective/topics.ts";
import type { KernelConfig } from "./config.ts";
import type { MemoryPart, RememberInput } from "./self/memory.ts";
import type { MindsPart } from "./self/minds.ts";
import type { DmnPart } from "./self/dmn.ts";
import type { EventBus } from "./events.ts";
import type { PersistSection } from "./subsystem-context.ts";
import type { TaskTable } from "./tasks.ts";

export type DropReason = "auth" | "unknown" | "denied" | "decode" | "replay" | "oversize";
export const DROP_REASONS: readonly DropReason[] = ["auth", "unknown", "denied", "decode", "replay", "oversize"];

export interface ChannelStats {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
}

export interface KernelStats {
  readonly dropped: Record<DropReason, number>;
  readonly datagram: ChannelStats;
  readonly stream: ChannelStats;
  /** Outbound messages not sent: no address, or larger than the channel allows. */
  sendFailures: number;
  /** Foreground requests the API handled (authenticated, monitoring aside): what the DMN waits out. */
  requests: number;
  /** Intro packets carrying this node's entry to members that might not know it (peer-seal.ts). */
  introductions: number;
  /** Last drop, for `net`: reason and a short detail. */
  lastDrop: string;
}

export type MemberState = SwimState;
export type { GuardStatus, MemberStatus, ModeChange, PeerRtt };

export abstract class NodeView {
  abstract readonly config: KernelConfig;
  abstract readonly events: EventBus;
  abstract readonly tasks: TaskTable;
  abstract readonly stats: KernelStats;
  abstract readonly id: string;
  abstract readonly tickCount: number;
  abstract readonly epoch: number;
  abstract readonly running: boolean;
  abstract readonly uptimeMs: number;
  /** A registered subsystem by name (the registry's names); throws before start(). */
  abstract subsystem<T>(name: string): T;

  get membership(): Membership {
    return this.subsystem("membership");
  }
  get swim(): Swim {
    return this.membership.swim;
  }
  get roster(): Roster {
    return this.membership.roster;
  }
  get self(): MemberEntry {
    return this.membership.self;
  }
  get mode(): Mode {
    return this.membership.mode;
  }
  get modeHistory(): readonly ModeChange[] {
    return this.membership.modeHistory;
  }
  memberStatuses(): MemberStatus[] {
    return this.membership.statuses();
  }

  get vitals(): Vitals {
    return this.subsystem<VitalSigner>("vitals").vitals;
  }
  /** Latest vital signs of this node and of every member heard from, with their age in ticks. */
  vitalTable(): Array<{ id: string; name: string; state: MemberState; ageTicks: number | undefined; signs: VitalSigns | undefined }> {
    const own = this.vitals.latest();
    return this.memberStatuses().map((member) => {
      const sample = member.self ? own : this.vitals.peer(member.id);
      return { id: member.id, name: member.name, state: member.state, ageTicks: sample === undefined ? undefined : this.tickCount - sample.tick, signs: sample?.signs };
    });
  }

  get rtt(): ReadonlyMap<string, PeerRtt> {
    return this.subsystem<Pinger>("pinger").rtt;
  }

  get heal(): Heal {
    return this.subsystem<Guard>("guard").heal;
  }
  set guardRunner(runner: GuardRunner | undefined) {
    this.subsystem<Guard>("guard").runner = runner;
  }
  /** Defines a guarded task owned by this node; returns an error text or undefined. */
  guard(name: string, command: string, everyTicks: number): string | undefined {
    return this.within(() => this.subsystem<Guard>("guard").define(name, command, everyTicks));
  }
  unguard(name: string): string | undefined {
    return this.within(() => this.subsystem<Guard>("guard").remove(name));
  }
  guardStatuses(): GuardStatus[] {
    return this.subsystem<Guard>("guard").statuses();
  }

  persistSections(): PersistSection[] {
    return this.subsystem<Persist>("persist").sections();
  }
  /** Forgets one persisted section; the keys removed, or an error text. */
  persistClear(name: string): number | string {
    return this.within(() => this.subsystem<Persist>("persist").clear(name));
  }

  get consensus(): Consensus {
    return this.subsystem<ConsensusPart>("consensus").consensus;
  }
  kvGet(key: string, callback: KvCallback): void {
    this.consensus.get(key, callback);
    this.wake("consensus");
  }
  kvPut(key: string, value: Uint8Array, callback: KvCallback): void {
    this.consensus.put(key, value, callback);
    this.wake("consensus");
  }
  kvCas(key: string, expected: Uint8Array | undefined, value: Uint8Array, callback: KvCallback): void {
    this.consensus.cas(key, expected, value, callback);
    this.wake("consensus");
  }
  kvDelete(key: string, callback: KvCallback): void {
    this.consensus.delete(key, callback);
    this.wake("consensus");
  }

  get gossip(): Gossip {
    return this.subsystem<Topics>("topics").gossip;
  }
  /** Writes a gossip row (or deletes it when value is undefined); an error string when refused. */
  topicPublish(topic: string, key: string, value: Uint8Array | undefined): string | undefined {
    return this.within(() => this.subsystem<Topics>("topics").publish(topic, key, value));
  }

  /** The shared folder, when this node has one (a files port). */
  get sharedFolder(): SharedFolder | undefined {
    return this.subsystem<SharedFolderPart>("shared-folder").folder;
  }
  get mesh(): MeshService {
    return this.subsystem<MeshPart>("mesh").mesh;
  }
  get brain(): BrainService {
    return this.subsystem<BrainPart>("brain").brain;
  }

  /** The Default Mode Network (src/node/self/dmn.ts). */
  get dmn(): DmnPart {
    return this.subsystem<DmnPart>("dmn");
  }
  /** The minds this node can ask (src/node/self/minds.ts). */
  get minds(): MindsPart {
    return this.subsystem<MindsPart>("minds");
  }
  /** The Self layer's memory (src/node/self/memory.ts). */
  get memory(): MemoryPart {
    return this.subsystem<MemoryPart>("memory");
  }
  /** Programs on this node's hooks, and evolve (src/node/evolve/). */
  get programs(): EvolvePart {
    return this.subsystem<EvolvePart>("programs");
  }
  get evolver(): Evolver {
    return this.programs.evolver;
  }
  /** Writes a memory of this node: durable when this returns; its id, or an error text. */
  remember(input: RememberInput): { id: string } | { error: string } {
    return this.within(() => this.memory.remember(input));
  }
  /** Redacts a memory on every node; an error text when refused. */
  redactMemory(id: string): string | undefined {
    return this.within(() => this.memory.redact(id));
  }

  /** Asks for a subsystem's apply() soon (after the current batch of I/O). */
  protected abstract wake(name: string): void;
  /** Runs fn as one turn of the kernel: what it queues is flushed when it returns. */
  protected abstract within<T>(fn: () => T): T;
}
