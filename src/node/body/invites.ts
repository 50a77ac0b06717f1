// Invites (docs/protocols/trust.md, docs/adr/012-trust.md): how a stranger's node gets exactly the
// role it was granted. `invite [--role core|contributor] [--ttl DURATION]`, on a core node that
// keeps the cluster's owner key, records the invite in the consensus store and prints a code:
//
//   pk1.<base64url MessagePack [owner public key, cluster token, secret (16 bytes), seed id, seed
//        public key, seed address]>
//
// The store keeps only the invite's id (the node id of the secret: SHA-256 prefix), its role, its
// expiry and, once redeemed, who redeemed it; every member (contributors too) replicates the store,
// so the secret itself is never in it. The invited node (src/node/redeem.ts) sends `redeem` to the
// seed in an intro packet: its key, its address, and the secret in a box only the seed opens (X25519
// of the two identity keys). The seed checks the invite, marks it used with a compare-and-set (so a
// code works once, whichever core node is asked, and a resent redeem from the same key is answered
// again), and answers `grant` with a certificate for that key and role, signed by the owner key.
import { EntryChecker, issueCert, type TrustCrypto } from "../../core/body/trust.ts";
import { LIMITS } from "../../core/util/limits.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import type { MessageOf, Role } from "../../core/wire/messages.ts";
import type { NodeContext } from "../context.ts";
import { formatDuration } from "../format.ts";
import { UsageError, type Command } from "../shell.ts";
import type { KvAnswer, SubsystemContext } from "../subsystem-context.ts";

export const INVITE_PREFIX = "trust/invite/";
/** `trust/revoked/<node id>`: every node stops believing that member (polled every REVOKE_POLL_TICKS). */
export const REVOKED_PREFIX = "trust/revoked/";
const REVOKE_POLL_TICKS = LIMITS.trust.revokePollTicks;
const CODE_PREFIX = "pk1.";
export const INVITE_SECRET_BYTES = 16;
/** Redemptions being checked at once (each waits for two consensus round trips). */
const PENDING_MAX = LIMITS.trust.redeemsPendingMax;
const TTL_DEFAULT_MS = 24 * 3600_000;
const TTL_MAX_MS = LIMITS.trust.inviteTtlMaxMs;

export interface InviteCode {
  readonly owner: Uint8Array;
  readonly token: string;
  readonly secret: Uint8Array;
  readonly seed: { readonly id: string; readonly pub: Uint8Array; readonly addr: string };
}

export function encodeInvite(code: InviteCode): string {
  const packed = packValue([code.owner, code.token, code.secret, code.seed.id, code.seed.pub, code.seed.addr]);
  return CODE_PREFIX + Buffer.from(packed).toString("base64url");
}

/** The code's fields, or an error text for anything that is not one. */
export function decodeInvite(text: string): InviteCode | string {
  const trimmed = text.trim();
  if (!trimmed.startsWith(CODE_PREFIX) || trimmed.length > LIMITS.trust.inviteCodeCharsMax) return "not an invite code (it starts with pk1.)";
  let value: unknown;
  try {
    value = unpackValue(new Uint8Array(Buffer.from(trimmed.slice(CODE_PREFIX.length), "base64url")));
  } catch {
    return "the invite code is damaged";
  }
  if (!Array.isArray(value) || value.length !== 6) return "the invite code is damaged";
  const [owner, token, secret, id, pub, addr] = value as unknown[];
  if (!(owner instanceof Uint8Array) || owner.length !== 32 || typeof token !== "string" || token.length === 0 || token.length > LIMITS.net.tokenCharsMax) return "the invite code is damaged";
  if (!(secret instanceof Uint8Array) || secret.length !== INVITE_SECRET_BYTES || typeof id !== "string" || !/^[0-9a-f]{16}$/.test(id)) return "the invite code is damaged";
  if (!(pub instanceof Uint8Array) || pub.length !== 32 || typeof addr !== "string" || addr.length === 0 || addr.length > LIMITS.addressCharsMax) return "the invite code is damaged";
  return { owner, token, secret, seed: { id, pub, addr } };
}

/** What the store holds per invite: [role, expires ms, redeemed by ("" until then)]. */
type InviteRecord = [Role, number, string];

function readRecord(value: Uint8Array | undefined): InviteRecord | undefined {
  if (value === undefined) return undefined;
  const v = unpackValue(value);
  if (!Array.isArray(v) || v.length !== 3) return undefined;
  const [role, expires, by] = v as unknown[];
  if ((role !== "core" && role !== "contributor") || typeof expires !== "number" || typeof by !== "string") return undefined;
  return [role, expires, by];
}

export class Invites {
  readonly #ctx: SubsystemContext;
  #pending = 0;
  readonly stats = { granted: 0, refused: 0, busy: 0 };
  readonly #revoked = new Set<string>();

  constructor(ctx: SubsystemContext) {
    this.#ctx = ctx;
  }

  /** Records a new invite and answers its code (a core node that keeps the owner key only). */
  async create(role: Role, ttlMs: number): Promise<{ code: string; expiresMs: number }> {
    const ctx = this.#ctx;
    const kv = ctx.services.kv;
    if (ctx.trust.ownerKey === undefined || ctx.trust.token === undefined) throw new Error("this node does not keep the cluster's owner key: ask a core node that does (pk up's nodes all do)");
    if (kv === undefined) throw new Error("no consensus store on this node");
    const secret = ctx.boxes.random(INVITE_SECRET_BYTES);
    const expiresMs = Math.floor(ctx.clock.nowMs()) + ttlMs;
    const outcome = await new Promise<KvAnswer>((resolve) => kv.put(INVITE_PREFIX + ctx.identity.idOf(secret), packValue([role, expiresMs, ""]), resolve));
    if (outcome.code !== "ok") throw new Error(`the invite was not recorded: ${outcome.code}${outcome.detail === undefined ? "" : ` (${outcome.detail})`}`);
    const code = encodeInvite({ owner: ctx.trust.owner, token: ctx.trust.token, secret, seed: { id: ctx.id, pub: ctx.identity.publicKey, addr: ctx.address } });
    return { code, expiresMs };
  }

  /** Revokes member `id` for the whole cluster (a consensus write every node applies). */
  async revoke(id: string): Promise<void> {
    const ctx = this.#ctx;
    const kv = ctx.services.kv;
    if (kv === undefined) throw new Error("no consensus store on this node");
    if (id === ctx.id) throw new Error("a node does not revoke itself");
    const outcome = await new Promise<KvAnswer>((resolve) => kv.put(REVOKED_PREFIX + id, packValue([Math.floor(ctx.clock.nowMs())]), resolve));
    if (outcome.code !== "ok") throw new Error(`the revocation was not recorded: ${outcome.code}${outcome.detail === undefined ? "" : ` (${outcome.detail})`}`);
  }

  /** Applies the revocations this node's replica holds. */
  tick(tick: number): void {
    if (tick % REVOKE_POLL_TICKS !== 0) return;
    const kv = this.#ctx.services.kv;
    if (kv === undefined) return;
    for (const key of kv.keysLocal(REVOKED_PREFIX, LIMITS.membersMax)) {
      const id = key.slice(REVOKED_PREFIX.length);
      if (!this.#revoked.has(id) && this.#revoked.size < LIMITS.membersMax) {
        this.#revoked.add(id);
        this.#ctx.members.revoke(id);
        this.#ctx.emit("member-revoked", { id });
      }
    }
  }

  step(from: string, message: MessageOf<"redeem" | "grant">): void {
    // A grant is read by the redeeming node before its kernel starts (redeem.ts); here it is stray.
    if (message.t === "grant") return;
    void this.#redeem(from, message);
  }

  async #redeem(from: string, message: MessageOf<"redeem">): Promise<void> {
    const ctx = this.#ctx;
    const answer = (grant: MessageOf<"grant">): void => ctx.sendAddr(message.addr, "datagram", grant);
    const refuse = (error: string): void => {
      this.stats.refused++;
      answer({ t: "grant", error });
    };
    if (ctx.identity.idOf(message.pub) !== from) return refuse("the key is not the sender's");
    const ownerKey = ctx.trust.ownerKey;
    const kv = ctx.services.kv;
    if (ownerKey === undefined || kv === undefined) return refuse("this node does not keep the owner key");
    const secret = ctx.boxes.openBox(message.pub, message.box);
    if (secret === undefined || secret.length !== INVITE_SECRET_BYTES) return refuse("the invite does not open (not made for this node, or damaged)");
    if (this.#pending >= PENDING_MAX) {
      this.stats.busy++;
      return;
    }
    this.#pending++;
    try {
      const key = INVITE_PREFIX + ctx.identity.idOf(secret);
      const read = await new Promise<KvAnswer>((resolve) => kv.get(key, resolve));
      const record = read.code === "ok" ? readRecord(read.value) : undefined;
      if (read.code !== "ok" && read.code !== "not-found") return refuse(`try again (${read.code})`);
      if (record === undefined) return refuse("no such invite");
      const [role, expiresMs, by] = record;
      if (by !== "" && by !== from) return refuse("the invite was already used");
      if (by === "") {
        if (expiresMs <= ctx.clock.nowMs()) return refuse("the invite expired");
        const marked = await new Promise<KvAnswer>((resolve) => kv.cas(key, read.value, packValue([role, expiresMs, from]), resolve));
        if (marked.code === "conflict") return refuse("the invite was already used");
        if (marked.code !== "ok") return refuse(`try again (${marked.code})`);
      }
      const cert = issueCert(ownerKey, message.pub, { role, issuedMs: Math.floor(ctx.clock.nowMs()), expiresMs: 0 });
      this.stats.granted++;
      ctx.emit("invite-redeemed", { id: from, role });
      answer({ t: "grant", cert });
    } finally {
      this.#pending--;
    }
  }
}

export const invite: Command<NodeContext> = {
  name: "invite",
  summary: "a single-use code that lets one new node join with a role (core nodes keeping the owner key)",
  usage: "invite [--role core|contributor] [--ttl DURATION e.g. 30m, 24h, 7d]",
  async run(args, { kernel }) {
    let role: Role = "contributor";
    let ttlMs = TTL_DEFAULT_MS;
    for (let i = 0; i < args.length; i += 2) {
      const [flag, value] = [args[i], args[i + 1]];
      if (value === undefined) throw new UsageError(`${flag} needs a value`);
      if (flag === "--role") {
        if (value !== "core" && value !== "contributor") throw new UsageError(`--role must be core or contributor, got ${JSON.stringify(value.slice(0, 20))}`);
        role = value;
      } else if (flag === "--ttl") {
        const parsed = /^([1-9][0-9]{0,6})(s|m|h|d)$/.exec(value);
        if (parsed === null) throw new UsageError(`--ttl must be a number and a unit (s, m, h, d), got ${JSON.stringify(value.slice(0, 20))}`);
        ttlMs = Number(parsed[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[parsed[2] as "s" | "m" | "h" | "d"];
        if (ttlMs > TTL_MAX_MS) throw new UsageError(`--ttl is at most ${formatDuration(TTL_MAX_MS)}`);
      } else throw new UsageError(`unknown option ${JSON.stringify(String(flag).slice(0, 20))}`);
    }
    const { code, expiresMs } = await kernel.subsystem<Invites>("invites").create(role, ttlMs);
    return [
      code,
      "",
      `single use; joins as ${role}; expires in ${formatDuration(expiresMs - Date.now())}`,
      "on the new machine: put the code in a file and run  pk node --data DIR --invite-file FILE",
      "(it holds the cluster token: keep it off command lines, chat logs and screenshots)",
    ].join("\n");
  },
};

export const revoke: Command<NodeContext> = {
  name: "revoke",
  summary: "revoke a member for the whole cluster: its entries and packets are refused from then on",
  usage: "revoke NODE-ID",
  async run(args, { kernel }) {
    const [id] = args;
    if (args.length !== 1 || id === undefined || !/^[0-9a-f]{16}$/.test(id)) throw new UsageError("revoke takes one node id (16 hex characters)");
    if (kernel.swim.self.role !== "core") throw new UsageError("only a core node revokes");
    await kernel.subsystem<Invites>("invites").revoke(id);
    return `revoked ${id}: every node refuses its entries and packets within ${REVOKE_POLL_TICKS} ticks of applying this`;
  },
};

/** The certificate a grant carries, if it is the owner's for `pub` (checked as every member will); else why not. */
export function checkGrant(grant: MessageOf<"grant">, owner: Uint8Array, pub: Uint8Array, crypto: TrustCrypto): { cert: Uint8Array; role: Role } | string {
  if (grant.cert === undefined) return grant.error ?? "refused";
  const granted = new EntryChecker(owner, crypto, Date.now, 1).checkCert(pub, grant.cert, "");
  return typeof granted === "string" ? `the grant's certificate does not verify (${granted})` : { cert: grant.cert, role: granted.role };
}
