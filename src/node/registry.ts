// The node's subsystems, in the order they are built, ticked and flushed. Adding one is a line
// here; its code, commands and routes live in its layer's folder. Membership comes first: every
// other subsystem sees members through it.
import type { MessageType } from "../core/wire/messages.ts";
import { BRAIN } from "./brain/subsystems.ts";
import { GUARD, INVITES, MEMBERSHIP, PERSIST, PINGER, VITALS } from "./body/subsystems.ts";
import { CONSENSUS, MESH, SHARED_FOLDER, TOPICS } from "./collective/subsystems.ts";
import { SPAWN } from "./collective/spawn.ts";
import { CHAT, DMN, MEMORY, MINDS } from "./self/subsystems.ts";
import { PROGRAMS } from "./evolve/subsystems.ts";
import { BUNDLE } from "./evolve/bundle.ts";
import { UPGRADE } from "./evolve/upgrade.ts";
import { CONTRIBUTION } from "./body/contribution-commands.ts";

export const SUBSYSTEMS = [
  MEMBERSHIP,
  GUARD,
  VITALS,
  CONTRIBUTION,
  PINGER,
  PERSIST,
  TOPICS,
  CONSENSUS,
  SHARED_FOLDER,
  MESH,
  SPAWN,
  BRAIN,
  MEMORY,
  MINDS,
  CHAT,
  DMN,
  PROGRAMS,
  BUNDLE,
  UPGRADE,
  INVITES,
] as const;

/** The message kinds no spec of S owns. */
export type Unowned<S extends readonly unknown[]> = Exclude<MessageType, KindsOf<S[number]>>;
type KindsOf<S> = S extends { readonly kinds: infer T } ? keyof T : never;
/** `true` when every message kind has an owner in S; otherwise names the kinds without one. */
export type EveryKindOwned<S extends readonly unknown[]> = [Unowned<S>] extends [never] ? true : `no subsystem owns ${Unowned<S>}`;

/** Every message kind must have an owner: a kind missing here fails to compile. */
export const EVERY_KIND_OWNED: EveryKindOwned<typeof SUBSYSTEMS> = true;
