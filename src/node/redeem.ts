// The invited node's side of an invite (src/node/body/invites.ts): before its kernel starts, the
// node sends `redeem` to the seed the code names — its key, its address and the invite's secret in
// a box only that seed opens — in intro packets, every RESEND_MS, until a `grant` with a
// certificate for its key, signed by the code's owner key, arrives. A grant is believed only with
// the owner's signature; a refusal cannot be checked (an intro packet can be forged by anyone
// holding the token), so one ends the wait only after REFUSALS_MAX of them, and the timeout
// reports the last one.
import { LIMITS } from "../core/util/limits.ts";
import { decodeMessage, encodeMessage } from "../core/wire/codec.ts";
import { decodeHeader } from "../core/wire/envelope.ts";
import type { Role } from "../core/wire/messages.ts";
import { checkGrant, type InviteCode } from "./body/invites.ts";
import type { Identity, Seal, Transport } from "./ports.ts";

/** Interval between two redeem messages while no grant arrived. */
const RESEND_MS = LIMITS.trust.redeemResendMs;
/** Refusals (one per resend, from the seed's id) that end the wait. */
const REFUSALS_MAX = LIMITS.trust.redeemRefusalsMax;

export class RedeemError extends Error {
  override name = "RedeemError";
}

export interface RedeemOptions {
  readonly transport: Transport;
  readonly seal: Seal;
  readonly identity: Identity;
  readonly code: InviteCode;
  /** This node's boot epoch for the redeem packets (the kernel's own epoch comes after it). */
  readonly epoch: number;
  readonly timeoutMs: number;
}

/** The certificate the seed granted this node's key, and its role. Rejects on timeout. */
export function redeemInvite(options: RedeemOptions): Promise<{ readonly cert: Uint8Array; readonly role: Role }> {
  const { transport, seal, identity, code, epoch } = options;
  const box = seal.box(code.seed.pub, code.secret);
  let counter = 0;
  let lastRefusal = "no answer";
  let refusals = 0;
  return new Promise((resolve, reject) => {
    const send = (): void => {
      const body = encodeMessage({ t: "redeem", pub: identity.publicKey, addr: transport.address, box });
      transport.send(code.seed.addr, "datagram", seal.seal("datagram", epoch, ++counter, body));
    };
    const finish = (): void => {
      clearInterval(resend);
      clearTimeout(deadline);
      transport.onPacket(() => false);
    };
    transport.onPacket((packet) => {
      const decoded = decodeHeader(packet);
      if (!decoded.ok || !decoded.header.intro || decoded.header.sender !== code.seed.id) return false;
      const body = seal.open(packet, decoded.header, undefined);
      if (body === undefined) return false;
      const message = decodeMessage(body);
      if (!message.ok || message.message.t !== "grant") return true;
      const granted = checkGrant(message.message, code.owner, identity.publicKey, identity);
      if (typeof granted === "string") {
        lastRefusal = granted;
        if (++refusals >= REFUSALS_MAX) {
          finish();
          reject(new RedeemError(`the invite was refused by ${code.seed.addr}: ${granted}`));
        }
        return true;
      }
      finish();
      resolve(granted);
      return true;
    });
    const resend = setInterval(send, RESEND_MS);
    const deadline = setTimeout(() => {
      finish();
      reject(new RedeemError(`the invite was not granted by ${code.seed.addr} within ${Math.round(options.timeoutMs / 1000)} s: ${lastRefusal}`));
    }, options.timeoutMs);
    send();
  });
}
