// `pk bundle`: packs this node's own code into a signed, Merkle-chunked bundle (docs/protocols/
// bundle.md, ADR 020), and `pk bundle verify FILE` checks one against an owner key.
import { createPrivateKey, createPublicKey, verify as edVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BundleFiles, BUNDLE_NODE, gatherOwnCode, readBounded, sha256 } from "../adapters/bundle-files.ts";
import { writeDurably } from "../adapters/trust-files.ts";
import { identityFromPrivateKey } from "../adapters/identity.ts";
import { BUNDLE_DEFAULTS, checkStream, decodeBundleFile, encodeBundleFile, makeRelease, packBundle, readTable, verifyRelease, type BundleCrypto } from "../core/evolve/bundle.ts";
import { toHex } from "../core/util/bytes.ts";
import { LIMITS } from "../core/util/limits.ts";

export const BUNDLE_USAGE = `  bundle [--key FILE] [--version N] [--out FILE] [--expires DAYS] [--install DATA] [--json]
                                            pack this node's code (the JavaScript npm run build
                                            emits, package.json, package-lock.json, bin/pk.js,
                                            web/) into a Merkle-chunked bundle signed with the
                                            owner key (FILE, default .pk/owner.key); the version
                                            (default: the time in seconds) only goes up; the
                                            targets expire after DAYS (90); --install also puts
                                            it in DATA/bundles/ (then \`bundle scan\` on that node)
  bundle verify FILE [--owner-pub FILE | --data DATA] [--json]
                                            check a bundle file against the cluster's owner key
                                            (DATA/owner.pub, default .pk/n1/owner.pub)`;

const DAY_MS = 86_400_000;
const ROOT_TTL_MS = 365 * DAY_MS;
/** Largest owner key file read (a PEM Ed25519 key is ~120 bytes). */
const KEY_FILE_BYTES_MAX = LIMITS.disk.identityFileBytesMax;

export interface CliErrors {
  usage(message: string): Error;
  failure(message: string): Error;
}

const CRYPTO: BundleCrypto = {
  sha256,
  verify: (pub, data, sig) => {
    try {
      const key = createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), pub]), format: "der", type: "spki" });
      return edVerify(null, data, key, sig);
    } catch {
      return false;
    }
  },
};

export async function bundleCommand(args: string[], errors: CliErrors): Promise<number> {
  if (args[0] === "verify") return await verifyCommand(args.slice(1), errors);
  const { values, positionals } = parseArgs({
    args, strict: true, allowPositionals: true,
    options: { key: { type: "string" }, version: { type: "string" }, out: { type: "string" }, expires: { type: "string" }, install: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help === true) {
    process.stdout.write(`usage:\n${BUNDLE_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw errors.usage(`unexpected ${JSON.stringify(positionals[0]?.slice(0, 40))}`);
  const version = values.version === undefined ? Math.floor(Date.now() / 1000) : Number(values.version);
  if (!Number.isSafeInteger(version) || version < 1) throw errors.usage("--version must be a positive whole number");
  const days = values.expires === undefined ? 90 : Number(values.expires);
  if (!Number.isFinite(days) || days <= 0 || days > 3650) throw errors.usage("--expires must be a number of days, at most 3650");
  if (values.out === undefined && values.install === undefined) throw errors.usage("give --out FILE, --install DATA, or both");
  const keyPath = resolve(values.key ?? join(".pk", "owner.key"));
  let owner;
  try {
    const pem = readFileSync(keyPath);
    if (pem.length > KEY_FILE_BYTES_MAX) throw new Error("too large for a key");
    owner = identityFromPrivateKey(createPrivateKey({ key: pem, format: "pem" }));
  } catch (error) {
    throw errors.failure(`cannot read the owner key ${keyPath}: ${(error as Error).message}`);
  }
  const started = performance.now();
  const { files, buildMs } = await gatherOwnCode().catch((error: unknown) => {
    throw errors.failure((error as Error).message);
  });
  const packed = packBundle(files);
  if (!packed.ok) throw errors.failure(`cannot pack: ${packed.detail}`);
  const pkg = JSON.parse(new TextDecoder().decode(files.find((f) => f.path === "package.json")?.data ?? new Uint8Array())) as { version?: string };
  const nowMs = Date.now();
  const made = makeRelease({
    stream: packed.value, version, nowMs, targetsTtlMs: days * DAY_MS, rootTtlMs: ROOT_TTL_MS, rootVersion: 1, node: BUNDLE_NODE,
    name: `p-kernel ${pkg.version ?? "?"}`.slice(0, BUNDLE_DEFAULTS.textCharsMax), owner,
  }, CRYPTO);
  const id = toHex(made.targets.address);
  const lines = [
    `bundle v${version} ${id}`,
    `${files.length} files, ${packed.value.length} bytes, ${made.targets.chunks} chunks of ${made.targets.chunkBytes} bytes; node ${BUNDLE_NODE}`,
    `signed by the owner key ${toHex(owner.publicKey).slice(0, 16)}; expires ${new Date(made.targets.expiresMs).toISOString()}`,
    `build ${Math.round(buildMs)} ms, pack and sign ${Math.round(performance.now() - started - buildMs)} ms`,
  ];
  const packMs = Math.round(performance.now() - started - buildMs);
  let installed: string | undefined;
  if (values.out !== undefined) {
    writeDurably(resolve(values.out), encodeBundleFile(made.release, packed.value), 0o644);
    lines.push(`written to ${resolve(values.out)}`);
  }
  if (values.install !== undefined) {
    installed = await new BundleFiles(resolve(values.install)).install(id, made.release, packed.value);
    lines.push(`installed in ${installed}`);
  }
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({
      id, version, files: files.length, bytes: packed.value.length, chunks: made.targets.chunks, chunkBytes: made.targets.chunkBytes, node: BUNDLE_NODE,
      owner: toHex(owner.publicKey), expires: new Date(made.targets.expiresMs).toISOString(), buildMs: Math.round(buildMs), packMs,
      out: values.out === undefined ? null : resolve(values.out), installed: installed ?? null,
    })}\n`);
    return 0;
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  return 0;
}

async function verifyCommand(args: string[], errors: CliErrors): Promise<number> {
  const { values, positionals } = parseArgs({
    args, strict: true, allowPositionals: true, options: { "owner-pub": { type: "string" }, data: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help === true) {
    process.stdout.write(`usage:\n${BUNDLE_USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw errors.usage("bundle verify takes one FILE");
  const pubPath = resolve(values["owner-pub"] ?? join(values.data ?? join(".pk", "n1"), "owner.pub"));
  let owner: Uint8Array;
  let bytes: Uint8Array;
  try {
    owner = await readBounded(pubPath, 32);
    bytes = await readBounded(resolve(positionals[0] as string), BUNDLE_DEFAULTS.bundleBytesMax + 2 * BUNDLE_DEFAULTS.metadataBytesMax + 16);
  } catch (error) {
    throw errors.failure((error as Error).message);
  }
  if (owner.length !== 32) throw errors.failure(`${pubPath} is not an owner public key (32 bytes)`);
  const file = decodeBundleFile(bytes);
  if (!file.ok) throw errors.failure(`refused (${file.reason}): ${file.detail}`);
  const verdict = verifyRelease(file.value.release, { owner, nowMs: Date.now(), runningVersion: 0 }, CRYPTO);
  if (!verdict.ok) throw errors.failure(`refused (${verdict.reason}): ${verdict.detail}`);
  const whole = checkStream(file.value.stream, verdict.value.targets, CRYPTO);
  if (!whole.ok) throw errors.failure(`refused (${whole.reason}): ${whole.detail}`);
  const table = readTable(file.value.stream);
  if (!table.ok) throw errors.failure(`refused (${table.reason}): ${table.detail}`);
  const t = verdict.value.targets;
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({
      verified: true, id: verdict.value.id, version: t.version, name: t.name, node: t.node, files: table.value.files.length, bytes: t.length,
      chunks: t.chunks, chunkBytes: t.chunkBytes, rootVersion: verdict.value.root.version, owner: toHex(owner), expires: new Date(t.expiresMs).toISOString(),
    })}\n`);
    return 0;
  }
  process.stdout.write([
    `verified: bundle v${t.version} ${verdict.value.id}`,
    `${t.name}; node ${t.node}; ${table.value.files.length} files, ${t.length} bytes, ${t.chunks} chunks of ${t.chunkBytes} bytes`,
    `root v${verdict.value.root.version} signed by the owner key ${toHex(owner).slice(0, 16)}; targets by ${verdict.value.root.targetsThreshold} of ${verdict.value.root.targetsKeys.length} release key(s)`,
    `expires ${new Date(t.expiresMs).toISOString()}`,
  ].join("\n") + "\n");
  return 0;
}
