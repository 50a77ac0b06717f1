// `npm run bench -- seal [--packets N] [--bytes B]`: what the packet authentication of issue 13
// costs per packet, in this process (no socket). Measured side by side in one run:
//
//   pair      the node's seal (src/adapters/seal.ts): the pair key of (sender, receiver) from X25519
//             of their identity keys, per (sender epoch, receiver epoch), cached per peer; then
//             ChaCha20-Poly1305 over the 36-byte header and the body. Seal on one node, open on
//             the other, as a datagram between two members in steady state.
//   intro     the same AEAD under the cluster key alone (the join handshake's packets).
//   aead      the floor: ChaCha20-Poly1305 with a key already imported, the 36-byte header as AAD
//             (what any authenticated packet costs; the seal before issue 13, per-sender keys from
//             the token, cost this plus a cached lookup).
//   firstContact  the one-time cost per new peer: X25519 and the HKDFs of a pair never seen.
// Prints JSON: µs per packet (median of rounds) for seal, open and both, and pair/aead.
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createIdentityFromSeed } from "../src/adapters/identity.ts";
import { createSeal, makeToken } from "../src/adapters/seal.ts";
import { decodeHeader, HEADER_BYTES, TAG_BYTES } from "../src/core/wire/envelope.ts";

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function timeUs(rounds: number, packets: number, fn: (i: number) => void): number {
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < packets; i++) fn(i);
    perRound.push(((performance.now() - t0) * 1000) / packets);
  }
  return median(perRound);
}

export async function run(args: string[]): Promise<unknown> {
  const { values } = parseArgs({ args, options: { packets: { type: "string", default: "20000" }, bytes: { type: "string", default: "200" } }, strict: true });
  const packets = Number(values.packets);
  const bytes = Number(values.bytes);
  if (!(packets >= 100 && bytes >= 0 && bytes <= 60_000)) throw new Error("--packets ≥ 100, --bytes in [0, 60000]");
  const token = makeToken();
  const alice = createIdentityFromSeed(new Uint8Array(32).fill(1));
  const bob = createIdentityFromSeed(new Uint8Array(32).fill(2));
  const a = createSeal(token, alice);
  const b = createSeal(token, bob);
  const body = new Uint8Array(randomBytes(bytes));
  const toBob = { id: bob.id, pub: bob.publicKey, epoch: 1_767_225_600_001 };
  const epoch = 1_767_225_600_000;
  const rounds = 7;
  let counter = 0;

  // Warm up both ends (keys cached, JIT).
  for (let i = 0; i < 2_000; i++) {
    const p = a.seal("datagram", epoch, ++counter, body, toBob);
    const h = decodeHeader(p);
    if (!h.ok || b.open(p, h.header, alice.publicKey) === undefined) throw new Error("bench seal: warm-up packet did not open");
  }
  const sealed = Array.from({ length: packets }, () => a.seal("datagram", epoch, ++counter, body, toBob));
  const headers = sealed.map((p) => {
    const h = decodeHeader(p);
    if (!h.ok) throw new Error("bench seal: header");
    return h.header;
  });
  const pairSeal = timeUs(rounds, packets, () => void a.seal("datagram", epoch, ++counter, body, toBob));
  const pairOpen = timeUs(rounds, packets, (i) => void b.open(sealed[i] as Uint8Array, headers[i]!, alice.publicKey));
  const intros = Array.from({ length: packets }, () => a.seal("datagram", epoch, ++counter, body));
  const introHeaders = intros.map((p) => (decodeHeader(p) as { header: Parameters<typeof b.open>[1] }).header);
  const introSeal = timeUs(rounds, packets, () => void a.seal("datagram", epoch, ++counter, body));
  const introOpen = timeUs(rounds, packets, (i) => void b.open(intros[i] as Uint8Array, introHeaders[i]!, undefined));

  // The floor: the AEAD alone with an imported key and the same header as associated data.
  const key = createSecretKey(randomBytes(32));
  const header = (sealed[0] as Uint8Array).subarray(0, HEADER_BYTES);
  const nonce = new Uint8Array(12);
  const aeadSeal = timeUs(rounds, packets, (i) => {
    nonce[11] = i & 0xff;
    const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_BYTES });
    c.setAAD(header, { plaintextLength: body.length });
    c.update(body);
    c.final();
    c.getAuthTag();
  });
  const c0 = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_BYTES });
  c0.setAAD(header, { plaintextLength: body.length });
  const ct = Buffer.concat([c0.update(body), c0.final()]);
  const tag = c0.getAuthTag();
  const aeadOpen = timeUs(rounds, packets, () => {
    const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_BYTES });
    d.setAAD(header, { plaintextLength: ct.length });
    d.setAuthTag(tag);
    d.update(ct);
    d.final();
  });

  // First contact: a fresh receiver each time (X25519 and HKDF of a new pair, then the packet).
  const fresh = Array.from({ length: 200 }, (_, i) => createIdentityFromSeed(new Uint8Array(32).fill(0).map((_, j) => (j === 0 ? 3 + (i >> 8) : j === 1 ? i & 0xff : 7))));
  const t0 = performance.now();
  for (const peer of fresh) a.seal("datagram", epoch, ++counter, body, { id: peer.id, pub: peer.publicKey, epoch: 1 });
  const firstContactUs = ((performance.now() - t0) * 1000) / fresh.length;

  const round = (x: number): number => Math.round(x * 100) / 100;
  return {
    bench: "seal",
    bodyBytes: bytes,
    packetBytes: HEADER_BYTES + bytes + TAG_BYTES,
    packets,
    usPerPacket: {
      pair: { seal: round(pairSeal), open: round(pairOpen), both: round(pairSeal + pairOpen) },
      intro: { seal: round(introSeal), open: round(introOpen), both: round(introSeal + introOpen) },
      aead: { seal: round(aeadSeal), open: round(aeadOpen), both: round(aeadSeal + aeadOpen) },
    },
    pairOverAead: round((pairSeal + pairOpen) / (aeadSeal + aeadOpen)),
    firstContactUs: round(firstContactUs),
  };
}
