// DATA/bundles/ on disk (src/adapters/bundle-files.ts): gathering a package's files (regular files
// only, modes normalised, the same tree giving the same stream), installing atomically into
// DATA/bundles/<address>/ and reading it back; a stream whose table would leave the folder is
// refused and leaves nothing behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Encoder } from "@msgpack/msgpack";
import { BundleFiles, gatherOwnCode, sha256 } from "../../src/adapters/bundle-files.ts";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { makeRelease, packBundle } from "../../src/core/evolve/bundle.ts";
import { toHex } from "../../src/core/util/bytes.ts";

const owner = createIdentityFromSeed(new Uint8Array(32).fill(4));

function fakePackage(dir: string): void {
  mkdirSync(join(dir, "dist", "src", "cli"), { recursive: true });
  writeFileSync(join(dir, "dist", "src", "cli", "main.js"), "export async function main() { return 0; }\n");
  writeFileSync(join(dir, "package.json"), "{\"name\":\"p-kernel\"}\n");
  mkdirSync(join(dir, "bin"));
  writeFileSync(join(dir, "bin", "pk.js"), "#!/usr/bin/env node\n");
  chmodSync(join(dir, "bin", "pk.js"), 0o775);
  symlinkSync("/etc/passwd", join(dir, "dist", "passwd"));
}

test("bundle files: an installed package (no src/) is gathered as is: regular files only, modes normalised, deterministic", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pk-bundle-files-"));
  try {
    fakePackage(dir);
    const one = await gatherOwnCode(dir);
    assert.equal(one.built, false);
    assert.deepEqual(one.files.map((f) => [f.path, f.mode]).sort(), [["bin/pk.js", 0o755], ["dist/src/cli/main.js", 0o644], ["package.json", 0o644]]);
    const two = await gatherOwnCode(dir);
    const a = packBundle(one.files);
    const b = packBundle(two.files);
    assert.ok(a.ok && b.ok);
    assert.deepEqual(a.value, b.value);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bundle files: install is atomic and idempotent; list, readStream and running read it back", async () => {
  const data = mkdtempSync(join(tmpdir(), "pk-bundle-data-"));
  try {
    const files = new BundleFiles(data);
    assert.deepEqual(await files.list(), []);
    const packed = packBundle([{ path: "dist/a.js", mode: 0o644, data: new Uint8Array(100_000).fill(7) }, { path: "bin/pk.js", mode: 0o755, data: new Uint8Array(3) }]);
    assert.ok(packed.ok);
    const made = makeRelease({ stream: packed.value, version: 4, nowMs: 0, targetsTtlMs: 1, rootTtlMs: 1, rootVersion: 1, node: ">=22.18", name: "t", owner }, { sha256 });
    const id = toHex(made.targets.address);
    const path = await files.install(id, made.release, packed.value);
    assert.equal(path, join(data, "bundles", id));
    assert.equal(statSync(join(path, "bin", "pk.js")).mode & 0o777, 0o755);
    assert.equal(readFileSync(join(path, "dist", "a.js")).length, 100_000);
    assert.equal(await files.install(id, made.release, packed.value), path, "a second install keeps the first");
    assert.deepEqual(readdirSync(join(data, "bundles")), [id], "no temporary folder left");
    const list = await files.list();
    assert.equal(list.length, 1);
    assert.deepEqual(list[0]?.release, made.release);
    assert.deepEqual(await files.readStream(id), packed.value);
    assert.equal(await files.readStream("../../etc"), undefined);
    assert.equal(await files.running(), undefined);
    writeFileSync(join(data, "bundles", "current"), `${id}\n`);
    assert.equal(await files.running(), id);
    await assert.rejects(files.install("../x", made.release, packed.value), /not a bundle address/);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});

test("bundle files: a stream whose table names ../, an absolute path or .pk-bundle/ is refused, nothing written outside or left behind", async () => {
  const data = mkdtempSync(join(tmpdir(), "pk-bundle-evil-"));
  try {
    const files = new BundleFiles(data);
    for (const path of ["../../evil", "/tmp/evil", ".pk-bundle/root.bin", "a/../../evil"]) {
      const table = new Encoder().encode([[path, 0o644, 1]]);
      const s = new Uint8Array(8 + table.length + 1);
      s.set(new TextEncoder().encode("PKB1"));
      new DataView(s.buffer).setUint32(4, table.length);
      s.set(table, 8);
      await assert.rejects(files.install("a".repeat(64), { root: new Uint8Array(1), targets: new Uint8Array(1) }, s), /does not unpack/, path);
    }
    assert.equal(existsSync(join(data, "evil")), false);
    assert.equal(existsSync(join(data, "bundles", "a".repeat(64))), false);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});
