// The members a subsystem's context hands out: the membership subsystem, reached once it is built
// (contexts are made before it, since membership is itself a subsystem).
import type { Members } from "./subsystem-context.ts";

/** Membership as the context hands it out: the membership subsystem, once it is built. */
export class LateMembers implements Members {
  readonly #late: () => Members;
  #members: Members | undefined;

  constructor(late: () => Members) {
    this.#late = late;
  }
  #get(): Members {
    return (this.#members ??= this.#late());
  }
  get self(): Members["self"] {
    return this.#get().self;
  }
  get size(): number {
    return this.#get().size;
  }
  get left(): boolean {
    return this.#get().left;
  }
  liveIds(): string[] {
    return this.#get().liveIds();
  }
  stateOf(id: string): ReturnType<Members["stateOf"]> {
    return this.#get().stateOf(id);
  }
  roleOf(id: string): ReturnType<Members["roleOf"]> {
    return this.#get().roleOf(id);
  }
  revoke(id: string): void {
    this.#get().revoke(id);
  }
  isRevoked(id: string): boolean {
    return this.#get().isRevoked(id);
  }

  publicKeyOf(id: string): Uint8Array | undefined {
    return this.#get().publicKeyOf(id);
  }
  addressOf(id: string): string | undefined {
    return this.#get().addressOf(id);
  }
  everyone(): ReturnType<Members["everyone"]> {
    return this.#get().everyone();
  }
}
