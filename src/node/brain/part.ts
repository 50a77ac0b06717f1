// The Brain as the kernel drives it: the BrainService (service.ts) joined to the node through its
// SubsystemContext — the model file in the shared folder, the GA chain in a gossip topic, the
// Raft leader as the one GA evolver, calls to peers on the stream channel.
import { encodeBrainMessage } from "../../core/brain/brain-wire.ts";
import type { MessageOf } from "../../core/wire/messages.ts";
import type { KernelConfig } from "../config.ts";
import type { KernelEvent } from "../events.ts";
import type { SubsystemContext } from "../subsystem-context.ts";
import { BrainService } from "./service.ts";

/** The kind byte of end-session (brain-wire.ts): forgetting a session is never declined. */
const KIND_END_SESSION = 8;

export class BrainPart {
  readonly brain: BrainService;
  readonly #ctx: SubsystemContext;

  constructor(ctx: SubsystemContext, config: KernelConfig) {
    const { services, members } = ctx;
    this.#ctx = ctx;
    this.brain = new BrainService({
      id: ctx.id,
      send: (to, message) => ctx.send(to, "stream", message),
      // A member that said it takes no voluntary work now (on battery: ADR 027) is routed around.
      liveIds: () => members.liveIds().filter((id) => members.stateOf(id) === "alive" && (services.contribution?.accepts(id) ?? true)).sort(),
      memberIds: () => members.liveIds().sort(),
      tick: () => ctx.tick(),
      nowMs: () => ctx.clock.nowMs(),
      event: (type, data) => ctx.emit(type, data),
      folder: () => services.folder,
      gossipGet: (topic, key) => services.topics?.get(topic, key),
      gossipPublish: (topic, key, value) => (services.topics === undefined ? "this node has no gossip topics" : services.topics.publish(topic, key, value)),
      isLeader: () => services.kv?.isLeader ?? false,
      roleOf: (id) => (id === ctx.id ? members.self.role : members.roleOf(id)),
      publicKeyOf: (id) => members.publicKeyOf(id),
      sign: (data) => ctx.identity.sign(data),
      verify: (key, data, signature) => ctx.identity.verify(key, data, signature),
      idOf: (key) => ctx.identity.idOf(key),
      ...(ctx.defer === undefined ? {} : { defer: ctx.defer }),
    }, ctx.fork(), config.brain);
    services.brain = this.brain;
  }

  step(from: string, message: MessageOf<"brain">): void {
    // A peer's request is voluntary work: while this node does not contribute, or is over a cap, it
    // answers "full" and the coordinator computes that share itself (as for any failed peer).
    if (!message.r && message.b[1] !== KIND_END_SESSION) {
      const declined = this.#ctx.services.contribution?.admit(message.b.length);
      if (declined !== undefined) {
        this.#ctx.send(from, "stream", { t: "brain", c: message.c, r: true, b: encodeBrainMessage({ t: "error", requestId: 0, code: "full", message: declined.slice(0, 200) }) });
        return;
      }
    }
    this.brain.step(from, message);
  }

  tick(): void {
    this.brain.tick();
  }

  onEvent(event: KernelEvent): void {
    if (event.type === "member-dead" || event.type === "member-left") this.brain.memberGone(String(event.data.id));
    else if (event.type === "member-alive") this.brain.memberAlive(String(event.data.id));
    else if (event.type === "sfs-file-updated" && typeof event.data.path === "string") this.brain.onFileChanged(event.data.path);
  }
}
