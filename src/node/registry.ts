// The node's subsystems, in the order they are built, ticked and flushed. Adding one is a line
// here; its code, commands and routes live in its layer's folder. Membership comes first: every
// other subsystem sees members through it.
import type { MessageType } from "../core/wire/messages.ts";
import { BRAIN } from "./brain/subsystems.ts";
import { GUARD, MEMBERSHIP, PERSIST, PINGER, VITALS } from "./body/subsystems.ts";
import { CONSENSUS, MESH, SHARED_FOLDER, TOPICS } from "./collective/subsystems.ts";
import { SPAWN } from "./collective/spawn.ts";

export const SUBSYSTEMS = [
  MEMBERSHIP,
  GUARD,
  VITALS,
  PINGER,
  PERSIST,
  TOPICS,
  CONSENSUS,
  SHARED_FOLDER,
  MESH,
  SPAWN,
  BRAIN,
] as const;

/** Every message kind must have an owner: a kind missing here fails to compile. */
type KindsOf<S> = S extends { readonly kinds: infer T } ? keyof T : never;
type Owned = KindsOf<(typeof SUBSYSTEMS)[number]>;
type Unowned = Exclude<MessageType, Owned>;
export const EVERY_KIND_OWNED: [Unowned] extends [never] ? true : { unowned: Unowned } = true;
