// `pk bundle verify` on bundle files (src/cli/bundle.ts): a good one verifies and says what it
// holds; a modified stream, another cluster's owner key, a truncated file and bad usage each fail
// with a clear line and exit code 1 (failure) or 2 (usage). Packing itself (a TypeScript build) is
// measured by `npm run bench -- bundle`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { hash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { encodeBundleFile, makeRelease, packBundle } from "../../src/core/evolve/bundle.ts";

const PK = fileURLToPath(new URL("../../bin/pk.js", import.meta.url));
const sha256 = (d: Uint8Array) => new Uint8Array(hash("sha256", d, "buffer"));

function pk(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [PK, ...args], { encoding: "utf8", timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("pk bundle verify: good, modified, wrong owner, truncated, usage", () => {
  const dir = mkdtempSync(join(tmpdir(), "pk-cli-bundle-"));
  try {
    const owner = createIdentityFromSeed(new Uint8Array(32).fill(5));
    const other = createIdentityFromSeed(new Uint8Array(32).fill(6));
    const packed = packBundle([{ path: "dist/src/cli/main.js", mode: 0o644, data: new Uint8Array(150_000).fill(1) }, { path: "package.json", mode: 0o644, data: new TextEncoder().encode("{}") }]);
    assert.ok(packed.ok);
    const made = makeRelease({ stream: packed.value, version: 7, nowMs: Date.now(), targetsTtlMs: 86_400_000, rootTtlMs: 86_400_000, rootVersion: 1, node: ">=22.18", name: "p-kernel test", owner }, { sha256 });
    const file = encodeBundleFile(made.release, packed.value);
    writeFileSync(join(dir, "good.pkb"), file);
    writeFileSync(join(dir, "owner.pub"), owner.publicKey);
    writeFileSync(join(dir, "other.pub"), other.publicKey);
    const modified = file.slice();
    modified[modified.length - 10] = (modified[modified.length - 10] as number) ^ 1;
    writeFileSync(join(dir, "modified.pkb"), modified);
    writeFileSync(join(dir, "short.pkb"), file.subarray(0, 40));

    const good = pk("bundle", "verify", join(dir, "good.pkb"), "--owner-pub", join(dir, "owner.pub"));
    assert.equal(good.code, 0, good.err);
    assert.match(good.out, /^verified: bundle v7 [0-9a-f]{64}\np-kernel test; node >=22\.18; 2 files, \d+ bytes, 3 chunks of 65536 bytes/);

    const bad = pk("bundle", "verify", join(dir, "modified.pkb"), "--owner-pub", join(dir, "owner.pub"));
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^pk bundle: refused \(modified\): the stream does not give the signed address/);

    const foreign = pk("bundle", "verify", join(dir, "good.pkb"), "--owner-pub", join(dir, "other.pub"));
    assert.equal(foreign.code, 1);
    assert.match(foreign.err, /refused \(key\): root: not signed by the owner key/);

    const short = pk("bundle", "verify", join(dir, "short.pkb"), "--owner-pub", join(dir, "owner.pub"));
    assert.equal(short.code, 1);
    assert.match(short.err, /refused \(malformed\)/);

    const usage = pk("bundle", "verify");
    assert.equal(usage.code, 2);
    assert.match(usage.err, /bundle verify takes one FILE/);
    const nothing = pk("bundle", "--version", "3");
    assert.equal(nothing.code, 2);
    assert.match(nothing.err, /give --out FILE, --install DATA, or both/);
    const noKey = pk("bundle", "--out", join(dir, "x.pkb"), "--key", join(dir, "missing.key"));
    assert.equal(noKey.code, 1);
    assert.match(noKey.err, /cannot read the owner key/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
