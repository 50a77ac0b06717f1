// The Collective layer's subsystems as the kernel drives them: Raft and the key-value store
// (consensus.ts), gossip topics (topics.ts), the shared folder (shared-folder.ts) and mesh routing
// (mesh.ts), each joined to the node through its SubsystemContext.
import { raftFromWire, raftToWire } from "../../core/collective/raft/wire.ts";
import type { SfsMessage } from "../../core/collective/sfs-wire.ts";
import type { MeshMessage } from "../../core/collective/mesh-wire.ts";
import type { MessageOf } from "../../core/wire/messages.ts";
import type { KernelEvent } from "../events.ts";
import type { SubsystemContext } from "../subsystem-context.ts";
import type { KernelConfig } from "../config.ts";
import { Consensus } from "./consensus.ts";
import { MeshService } from "./mesh.ts";
import { SharedFolder } from "./shared-folder.ts";

export class ConsensusPart {
  readonly consensus: Consensus;
  readonly #ctx: SubsystemContext;

  constructor(ctx: SubsystemContext, config: KernelConfig) {
    this.#ctx = ctx;
    // Raft restores its log and rebuilds the key-value state before any traffic. A node started
    // with no one to join founds a new cluster (if it has no Raft state yet).
    this.consensus = new Consensus(ctx.id, ctx.epoch, ctx.fork(), ctx.store, {
      send: (to, message) => ctx.send(to, "stream", raftToWire(message)),
      members: () => ctx.members.everyone(),
      stateOf: (id) => (id === ctx.id ? (ctx.members.left ? "left" : "alive") : ctx.members.stateOf(id)),
      event: (type, data) => ctx.emit(type, data),
      wake: () => ctx.requestApply(),
      sendOffer: (to, offer) => ctx.send(to, "stream", { t: "raft-offer", epoch: offer.confEpoch, lt: offer.lastTerm, li: offer.lastIndex }),
    }, config.consensus, config.join.length === 0);
    ctx.services.kv = this.consensus;
  }

  step(from: string, message: MessageOf<"raft" | "raft-offer">): void {
    if (message.t === "raft-offer") return this.consensus.onOffer(from, { confEpoch: message.epoch, lastTerm: message.lt, lastIndex: message.li });
    const decoded = raftFromWire(message, from);
    if (!decoded.ok) return this.#ctx.drop("decode", decoded.detail);
    if (decoded.message.to !== this.#ctx.id) return this.#ctx.drop("decode", `raft for ${decoded.message.to}`);
    this.consensus.step(decoded.message);
    this.#ctx.requestApply();
  }

  tick(): void {
    this.consensus.tick();
    this.apply();
  }

  apply(): void {
    if (this.consensus.hasReady()) this.consensus.drain();
  }
}

export class SharedFolderPart {
  readonly folder: SharedFolder | undefined;

  constructor(ctx: SubsystemContext) {
    const files = ctx.files;
    this.folder = files === undefined ? undefined : new SharedFolder(ctx.id, files, ctx.store, {
      send: (to, message) => ctx.send(to, "stream", message),
      event: (type, data) => ctx.emit(type, data),
      membership: { liveIds: () => ctx.members.liveIds() },
      nowMs: () => Math.floor(ctx.clock.nowMs()),
    });
    if (this.folder !== undefined) ctx.services.folder = this.folder;
  }

  step(from: string, message: SfsMessage): void {
    this.folder?.step(from, message);
  }

  tick(): void {
    this.folder?.tick();
  }

  onEvent(event: KernelEvent): void {
    const folder = this.folder;
    if (folder === undefined) return;
    const id = String(event.data.id);
    // The shared folder compares manifests with every member that comes alive (its clusters are
    // small: files are copied to every node).
    if (event.type === "member-alive") folder.core.syncWith(id);
    else if (event.type === "member-dead" || event.type === "member-left") folder.core.peerGone(id);
    else return;
    folder.flush();
  }
}

export class MeshPart {
  readonly mesh: MeshService;

  constructor(ctx: SubsystemContext, config: KernelConfig) {
    this.mesh = new MeshService(ctx.id, ctx.fork(), {
      send: (to, message) => ctx.send(to, "datagram", message),
      liveIds: () => ctx.members.liveIds(),
      tick: () => ctx.tick(),
      nowMs: () => ctx.clock.nowMs(),
    }, config.mesh);
  }

  step(from: string, message: MeshMessage): void {
    this.mesh.step(from, message);
  }

  tick(): void {
    this.mesh.tick();
  }

  onEvent(event: KernelEvent): void {
    if (event.type === "member-dead" || event.type === "member-left") this.mesh.memberGone(String(event.data.id));
  }
}
