// Packs a built p-kernel package folder into app.bin for the single executable (scripts/sea.sh,
// unpacked by scripts/sea-main.cjs): a gzip of "PKSEA1\n" then, per regular file, one JSON line
// {"p": relative path, "m": mode, "n": bytes} and its bytes. Symbolic links (node_modules/.bin)
// are left out: nothing at run time uses them.
//   node scripts/sea-pack.cjs PACKAGE-DIR OUT-FILE
"use strict";
// CommonJS on purpose: a single executable's injected main script is CommonJS in Node 24.
/* eslint-disable @typescript-eslint/no-require-imports */
const fs = require("node:fs");
const path = require("node:path");
const { gzipSync } = require("node:zlib");

const [dir, out] = process.argv.slice(2);
if (dir === undefined || out === undefined) {
  process.stderr.write("usage: node scripts/sea-pack.cjs PACKAGE-DIR OUT-FILE\n");
  process.exit(2);
}
const parts = [Buffer.from("PKSEA1\n", "latin1")];
let files = 0;
let bytes = 0;
function walk(rel) {
  const full = path.join(dir, rel);
  for (const entry of fs.readdirSync(full, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const child = rel === "" ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) walk(child);
    else if (entry.isFile()) {
      const data = fs.readFileSync(path.join(dir, child));
      const mode = fs.statSync(path.join(dir, child)).mode & 0o777;
      parts.push(Buffer.from(`${JSON.stringify({ p: child, m: mode, n: data.length })}\n`, "utf8"), data);
      files++;
      bytes += data.length;
    }
  }
}
walk("");
const packed = gzipSync(Buffer.concat(parts), { level: 9 });
fs.writeFileSync(out, packed);
process.stdout.write(`${files} files, ${(bytes / 1048576).toFixed(1)} MiB, packed ${(packed.length / 1048576).toFixed(1)} MiB\n`);
