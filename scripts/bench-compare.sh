#!/usr/bin/env bash
# Issue 12, acceptance 4: "No regression, measured before and after in the same run".
#
#   scripts/bench-compare.sh [OUT.json]          (default OUT: /tmp/bench-compare.json)
#
# Measures, on the tree before the kernel refactor (BEFORE_REF, default 7cb1df4) and on this
# repository's HEAD (the committed code: uncommitted changes are not measured), alternately
# (before, after, before, after, ... PAIRS times, to cancel drift of the machine's load):
#   raft  `node bench/run.ts raft --clients 64 --failovers 0` (what `npm run bench -- raft` runs,
#         limited to the 64-client level of the acceptance: p-kernel's 3 nodes, then etcd's 3
#         members, 1 s warm-up + 5 s each; the failover rounds are left out)
#   swim  `node bench/run.ts swim --rounds 5` (5 p-kernel nodes and 5 serf agents under CPU load;
#         with PAIRS=2 each side gets the 10 kill rounds of one default run, and its figures are
#         the quantiles of all its runs' kill -> dead times pooled)
#   sim   `node bin/pk.js sim --nodes 1000 --ticks 10000 --seed 7 --json` (the whole-kernel
#         simulation of issue 2; seed 7 is the run docs/architecture.md quotes at 166 s; the same
#         seed should give the same traceHash before and after if the refactor kept behaviour)
# and prints one JSON object with the key figures of before and after side by side (each run, a
# summary per side, and after/before of the summaries), also written to OUT. Each bench's raw JSON
# and stderr are kept in RAW_DIR.
#
# Each tree runs its own bench harness and kernel from a git worktree outside this repository:
# WORKTREE_BEFORE (default /tmp/pk-before) and WORKTREE_AFTER (/tmp/pk-after), created if absent,
# moved to the commit with `git checkout --detach`, and `npm ci` run when package-lock.json changed.
#
# Environment (all optional):
#   PAIRS=2              before/after pairs per benchmark
#   BENCHES=raft,swim,sim  which measurements, in this order
#   QUICK=1              a smoke run: raft 2 s at 64 clients, swim 2 rounds, sim 200 nodes x 2,000 ticks
#   RAFT_ARGS, SWIM_ARGS, SIM_ARGS  replace the arguments above (e.g. SWIM_ARGS="--rounds 10")
#   BEFORE_REF=7cb1df4   AFTER_REF=HEAD (of this repository)
#   RAW_DIR=OUT's name without .json, plus .d/
# Needs etcd (Debian package etcd-server) for raft and serf (package serf) for swim: exits 2 naming
# the missing binary before measuring anything. Exits 1 when a run failed (the JSON still written).
# Duration with the defaults, estimated for an idle 2-core machine: 4 x (raft ~0.4 min + swim
# ~1 min + sim ~3 min), about 17-20 min; QUICK=1 PAIRS=1 took under 2 min on a loaded one.
set -euo pipefail

die() { echo "bench-compare: $*" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-/tmp/bench-compare.json}"
case "$OUT" in -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;; esac
RAW_DIR="${RAW_DIR:-${OUT%.json}.d}"
PAIRS="${PAIRS:-2}"
BENCHES="${BENCHES:-raft,swim,sim}"
BEFORE_REF="${BEFORE_REF:-7cb1df4}"
AFTER_REF="${AFTER_REF:-HEAD}"
WORKTREE_BEFORE="${WORKTREE_BEFORE:-/tmp/pk-before}"
WORKTREE_AFTER="${WORKTREE_AFTER:-/tmp/pk-after}"
if [ "${QUICK:-0}" = 1 ]; then
  RAFT_ARGS="${RAFT_ARGS:---clients 64 --seconds 2 --warmup 0.5 --failovers 0}"
  SWIM_ARGS="${SWIM_ARGS:---rounds 2}"
  SIM_ARGS="${SIM_ARGS:---nodes 200 --ticks 2000 --seed 7}"
else
  RAFT_ARGS="${RAFT_ARGS:---clients 64 --failovers 0}"
  SWIM_ARGS="${SWIM_ARGS:---rounds 5}"
  SIM_ARGS="${SIM_ARGS:---nodes 1000 --ticks 10000 --seed 7}"
fi
[[ "$PAIRS" =~ ^[1-9][0-9]*$ ]] || die "PAIRS must be a positive integer, got '$PAIRS'"
IFS=, read -r -a BENCH_LIST <<< "$BENCHES"
for b in "${BENCH_LIST[@]}"; do
  case "$b" in raft|swim|sim) ;; *) die "BENCHES takes raft, swim and sim, got '$b'" ;; esac
done
has() { [[ ",$BENCHES," == *",$1,"* ]]; }

# The peers, as bench/raft.ts (etcd on PATH or /usr/bin/etcd) and bench/swim.ts (serf on PATH) look for them.
if has raft && ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
  die "etcd is missing (no etcd on PATH or at /usr/bin/etcd), needed for raft: apt-get install etcd-server (or BENCHES=swim,sim)"
fi
if has swim && ! command -v serf >/dev/null 2>&1; then
  die "serf is missing (no serf on PATH), needed for swim: apt-get install serf (or BENCHES=raft,sim)"
fi

# Node >= 24 first on PATH (the benches are TypeScript run by type stripping).
# shellcheck disable=SC1091
. "$REPO/scripts/node24.sh" || die "no Node 24 (scripts/node24.sh failed)"

BEFORE_SHA="$(git -C "$REPO" rev-parse --verify "$BEFORE_REF^{commit}")" || die "no commit $BEFORE_REF"
AFTER_SHA="$(git -C "$REPO" rev-parse --verify "$AFTER_REF^{commit}")" || die "no commit $AFTER_REF"
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]; then
  echo "bench-compare: note: $REPO has uncommitted changes; 'after' is the commit ${AFTER_SHA:0:7}, not the working tree" >&2
fi

# A worktree at SHA with node_modules matching its package-lock.json.
prepare() {
  local dir="$1" sha="$2" lock stamp
  if [ ! -e "$dir/.git" ]; then
    [ ! -e "$dir" ] || die "$dir exists and is not a git worktree"
    git -C "$REPO" worktree prune
    git -C "$REPO" worktree add --detach "$dir" "$sha" >&2 || die "git worktree add $dir $sha failed"
  fi
  if [ -n "$(git -C "$dir" status --porcelain --untracked-files=no)" ]; then
    die "$dir has local changes; refusing to measure it (git -C $dir status)"
  fi
  git -C "$dir" checkout --quiet --detach "$sha" || die "git -C $dir checkout --detach $sha failed"
  lock="$(git -C "$dir" rev-parse HEAD:package-lock.json)"
  stamp="$dir/node_modules/.bench-compare-lock"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock" ]; then
    echo "bench-compare: npm ci in $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci in $dir failed"
    echo "$lock" > "$stamp"
  fi
}
prepare "$WORKTREE_BEFORE" "$BEFORE_SHA"
prepare "$WORKTREE_AFTER" "$AFTER_SHA"

mkdir -p "$RAW_DIR"
rm -f "$RAW_DIR"/*.json "$RAW_DIR"/*.log "$RAW_DIR"/runs.tsv
STARTED="$(date -u +%FT%TZ)"
LOAD_START="$(cut -d' ' -f1 /proc/loadavg)"
t0=$SECONDS
failed=0

# run BENCH SIDE I: one measurement in SIDE's worktree; raw JSON to RAW_DIR/BENCH-SIDE-I.json.
run() {
  local bench="$1" side="$2" i="$3" dir rc=0 t start end
  if [ "$side" = before ]; then dir="$WORKTREE_BEFORE"; else dir="$WORKTREE_AFTER"; fi
  local base="$RAW_DIR/$bench-$side-$i"
  local -a argv
  case "$bench" in
    raft) read -r -a argv <<< "bench/run.ts raft $RAFT_ARGS" ;;
    swim) read -r -a argv <<< "bench/run.ts swim $SWIM_ARGS" ;;
    sim) read -r -a argv <<< "bin/pk.js sim $SIM_ARGS --json" ;;
  esac
  echo "bench-compare: [$((SECONDS - t0)) s] $bench $side #$i: (cd $dir && node ${argv[*]})" >&2
  start="$(date +%s.%N)"
  (cd "$dir" && node "${argv[@]}") > "$base.json" 2> "$base.log" || rc=$?
  end="$(date +%s.%N)"
  t="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$bench" "$side" "$i" "$rc" "$t" "$(cut -d' ' -f1 /proc/loadavg)" >> "$RAW_DIR/runs.tsv"
  if [ "$rc" != 0 ]; then
    failed=1
    echo "bench-compare: $bench $side #$i exited $rc; last lines of $base.log:" >&2
    tail -n 5 "$base.log" >&2
  fi
}

for bench in "${BENCH_LIST[@]}"; do
  for i in $(seq 1 "$PAIRS"); do
    run "$bench" before "$i"
    run "$bench" after "$i"
  done
done

# Collect the key figures into one JSON object.
export RAW_DIR OUT BEFORE_REF BEFORE_SHA AFTER_REF AFTER_SHA PAIRS BENCHES RAFT_ARGS SWIM_ARGS SIM_ARGS STARTED LOAD_START
export HARNESS_SAME
HARNESS_SAME="$(git -C "$REPO" diff --quiet "$BEFORE_SHA" "$AFTER_SHA" -- bench/run.ts bench/raft.ts bench/swim.ts bench/procs.ts && echo true || echo false)"
node --input-type=module <<'EOF' || failed=1
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
const env = process.env;
const raw = env.RAW_DIR;
const runs = readFileSync(`${raw}/runs.tsv`, "utf8").trim().split("\n").map((line) => {
  const [bench, side, i, rc, seconds, load] = line.split("\t");
  return { bench, side, i: Number(i), rc: Number(rc), seconds: Number(seconds), load1mAfter: Number(load) };
});
const read = (bench, side, i) => {
  try {
    return JSON.parse(readFileSync(`${raw}/${bench}-${side}-${i}.json`, "utf8"));
  } catch (error) {
    return { error: `no JSON (${error instanceof Error ? error.message : String(error)}); see ${raw}/${bench}-${side}-${i}.log` };
  }
};
const num = (x) => (typeof x === "number" && Number.isFinite(x) ? x : null);

/** The key figures of one run of each bench. */
const pick = {
  raft(j) {
    const level = (j.levels ?? []).find((l) => l.clients === 64) ?? (j.levels ?? []).at(-1);
    return {
      clients: level?.clients ?? null,
      pkOpsPerSec: num(level?.pk?.opsPerSec), pkP50Ms: num(level?.pk?.p50Ms), pkP99Ms: num(level?.pk?.p99Ms), pkErrors: num(level?.pk?.errors),
      etcdOpsPerSec: num(level?.etcd?.opsPerSec), etcdP50Ms: num(level?.etcd?.p50Ms), etcdP99Ms: num(level?.etcd?.p99Ms), etcdErrors: num(level?.etcd?.errors),
      ratioThroughput: num(level?.ratio?.throughput), ratioP50: num(level?.ratio?.p50), ratioP99: num(level?.ratio?.p99),
      error: j.error ?? j.errors?.pk ?? j.errors?.etcd ?? null,
    };
  },
  swim(j) {
    return {
      rounds: j.rounds ?? null,
      pkDeadMedianMs: num(j.pkernel?.medianMs), pkDeadP90Ms: num(j.pkernel?.p90Ms), pkMisses: num(j.pkernel?.misses), pkFalsePositives: num(j.pkernel?.falsePositives),
      serfDeadMedianMs: num(j.serf?.medianMs), serfDeadP90Ms: num(j.serf?.p90Ms), serfMisses: num(j.serf?.misses), serfFalsePositives: num(j.serf?.falsePositives),
      ratioMedian: num(j.ratio?.median), ratioP90: num(j.ratio?.p90),
      error: j.error ?? j.pkernel?.error ?? null,
    };
  },
  sim(j) {
    return {
      nodes: j.nodes ?? null, ticks: j.ticks ?? null, seed: j.seed ?? null,
      wallSeconds: typeof j.wallMs === "number" ? Math.round(j.wallMs / 100) / 10 : null,
      messages: num(j.messages), convergedAtTick: j.convergedAtTick ?? null, traceHash: j.traceHash ?? null,
      error: j.error ?? null,
    };
  },
};
/** Figures compared as after/before (lower is better for latencies, times and the swim ratio; higher for throughput). */
const keys = {
  raft: ["pkOpsPerSec", "pkP50Ms", "pkP99Ms", "etcdOpsPerSec", "etcdP50Ms", "etcdP99Ms", "ratioThroughput", "ratioP50", "ratioP99"],
  swim: ["pkDeadMedianMs", "pkDeadP90Ms", "serfDeadMedianMs", "serfDeadP90Ms", "ratioMedian", "ratioP90"],
  sim: ["wallSeconds"],
};
const round = (x, digits) => (x === null ? null : Math.round(x * 10 ** digits) / 10 ** digits);
const mean = (values) => {
  const xs = values.filter((x) => x !== null);
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;
};
/** Quantile with linear interpolation between closest ranks, as bench/swim.ts computes it. */
const quantile = (values, q) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
};
/** swim: every survivor's kill -> dead time of every round of every run of one side, pooled. */
const pooledSwim = (jsons) => {
  const samples = (system) => jsons.flatMap((j) => (j[system]?.perRound ?? []).flatMap((r) => r.deadMs ?? []));
  const pk = samples("pkernel");
  const serf = samples("serf");
  const ratio = (a, b) => (a === null || b === null || b === 0 ? null : a / b);
  const figures = {
    pkDeadMedianMs: quantile(pk, 0.5), pkDeadP90Ms: quantile(pk, 0.9),
    serfDeadMedianMs: quantile(serf, 0.5), serfDeadP90Ms: quantile(serf, 0.9),
  };
  figures.ratioMedian = ratio(figures.pkDeadMedianMs, figures.serfDeadMedianMs);
  figures.ratioP90 = ratio(figures.pkDeadP90Ms, figures.serfDeadP90Ms);
  const sum = (f) => jsons.reduce((n, j) => n + (num(f(j)) ?? 0), 0);
  return {
    ...Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, round(v, 3)])),
    rounds: sum((j) => j.rounds), pkSamples: pk.length, serfSamples: serf.length,
    pkMisses: sum((j) => j.pkernel?.misses), pkFalsePositives: sum((j) => j.pkernel?.falsePositives),
    serfMisses: sum((j) => j.serf?.misses), serfFalsePositives: sum((j) => j.serf?.falsePositives),
  };
};

const result = {
  issue: "12, acceptance 4: no regression, before and after measured in the same run",
  before: { ref: env.BEFORE_REF, commit: env.BEFORE_SHA },
  after: { ref: env.AFTER_REF, commit: env.AFTER_SHA },
  started: env.STARTED,
  finished: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  machine: { cpus: cpus().length, load1m: { start: Number(env.LOAD_START), end: Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]) } },
  settings: {
    order: `before, after alternately, ${env.PAIRS} pair(s) per bench`,
    summary: "raft and sim: the mean over a side's runs; swim: quantiles of every kill -> dead time of a side's runs pooled",
    benchHarnessSameInBothTrees: env.HARNESS_SAME === "true",
    raft: `node bench/run.ts raft ${env.RAFT_ARGS}`,
    swim: `node bench/run.ts swim ${env.SWIM_ARGS}`.trim(),
    sim: `node bin/pk.js sim ${env.SIM_ARGS} --json`,
  },
  rawDir: raw,
};
for (const bench of env.BENCHES.split(",")) {
  const entry = {};
  for (const side of ["before", "after"]) {
    const mine = runs.filter((r) => r.bench === bench && r.side === side);
    const jsons = mine.map((r) => read(bench, side, r.i));
    const figures = mine.map((r, k) => ({ ...pick[bench](jsons[k]), exit: r.rc, runSeconds: r.seconds, load1mAfter: r.load1mAfter }));
    const summary = bench === "swim" ? pooledSwim(jsons)
      : Object.fromEntries(keys[bench].map((k) => [k, round(mean(figures.map((f) => f[k])), 3)]));
    entry[side] = { summary, runs: figures };
  }
  entry.afterOverBefore = Object.fromEntries(keys[bench].map((k) => {
    const a = entry.after.summary[k];
    const b = entry.before.summary[k];
    return [k, a === null || b === null || b === 0 ? null : round(a / b, 3)];
  }));
  if (bench === "sim") {
    const hashes = [...entry.before.runs, ...entry.after.runs].map((r) => r.traceHash);
    entry.sameTraceHash = hashes.length > 0 && hashes.every((h) => h !== null && h === hashes[0]);
  }
  result[bench] = entry;
}
result.failedRuns = runs.filter((r) => r.rc !== 0).map((r) => `${r.bench} ${r.side} #${r.i}: exit ${r.rc} (${raw}/${r.bench}-${r.side}-${r.i}.log)`);
const text = `${JSON.stringify(result, null, 2)}\n`;
writeFileSync(env.OUT, text);
process.stdout.write(text);
EOF
echo "bench-compare: $((SECONDS - t0)) s; written to $OUT (raw output in $RAW_DIR)" >&2
exit "$failed"
