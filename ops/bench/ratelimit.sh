#!/usr/bin/env bash
# ops/bench/ratelimit.sh: cluster-wide rate limiters side by side, on the same Redis, in one run.
#
# Each limiter gets BENCH_LIMIT grants per 1 s window and is driven by BENCH_PROCESSES OS processes
# x BENCH_CONCURRENCY threads (or Worker concurrency) that all take permits as fast as it lets them,
# for BENCH_SECONDS. The limiters run one after another; each starts on fresh keys.
#
#   kage      Kage's dev.kage.ratelimit.FleetRateLimiter (worker jar): configure(group, new Limit(LIMIT,
#             1 s, 0, guard)) with the product's default guard (25 ms for 1 s) or BENCH_KAGE_GUARD_MS,
#             each thread loops acquire(group, NORMAL, 0, lease), records its grant, then markSent (as a
#             worker does when its call leaves). Namespace kage-rlbench-<random>.
#   redisson  Redisson's RRateLimiter (the one in the worker jar): trySetRate(OVERALL, LIMIT, 1 s) on a
#             fresh key, each thread loops acquire(1).
#   bullmq    BullMQ (npm, installed into BENCH_RUN_DIR): a queue filled with LIMIT x BENCH_SECONDS x 1.5
#             jobs, one Worker per process with concurrency BENCH_CONCURRENCY and
#             limiter { max: LIMIT, duration: 1000 }, whose processor records its start and returns.
#
# The processes start together at a shared time BENCH_LEAD_SECONDS ahead (JVM/node start-up,
# connecting and, for the Java sides, 3 acquires per thread on a separate never-limiting limiter stay
# outside the run; a process not ready by then fails) and stop at start + BENCH_SECONDS. Each writes
# its grant times (epoch µs, taken in the client right after the grant returns, so client-side delays
# count) and acquire latencies; ops/bench/RateLimitBench.java (compiled once here against a copy of the
# jar) merges them per limiter, keeps the grants in [start, end) and prints
#   RESULT limiter=NAME grants=N max_in_window=N ratio=R utilisation=P p50_ms=X p99_ms=X
#     max_in_window  the most grants in any sliding window [t, t + 1 s)
#     ratio          max_in_window / BENCH_LIMIT (1.00 = never over the limit)
#     utilisation    grants from start + 1 s to the end / (BENCH_LIMIT x those seconds), in percent
#     p50_ms p99_ms  acquire latency (for BullMQ: how long a Worker slot waited for its next job)
# then a summary table. Speed and accuracy are measured here, never asserted in tests.
#
# Environment:
#   BENCH_LIMITERS      comma-separated, in the order run [kage,redisson,bullmq]
#   BENCH_SECONDS       measured seconds per limiter [20]
#   BENCH_LIMIT         grants per 1 s window [100]
#   BENCH_PROCESSES     processes per limiter [4]
#   BENCH_CONCURRENCY   threads (Worker concurrency) per process [16]
#   BENCH_LEAD_SECONDS  from launching the processes to the shared start [10]
#   BENCH_RUN_DIR       bullmq's npm prefix, and the files and logs of each run [<repo>/.run/bench] (git-ignored)
#   BENCH_WORKER_JAR    the jar with Redisson, Lettuce and Kage's classes [worker/target/kage-worker.jar];
#                       copied before use, never built here (./mvnw -B -q -DskipTests -pl worker -am package)
#   BENCH_KAGE_GUARD_MS kage only: its guard in ms [Limit.defaultGuard(1 s) = 25]
#   REDIS_URL           as for ops/services.sh [redis://127.0.0.1:6379]
# Keys: every key the run creates contains rlbench-<random>; they are removed at the end (SCAN + UNLINK).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

ROOT=$(kage_root)
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
LIMITERS=${BENCH_LIMITERS:-kage,redisson,bullmq}
SECONDS_RUN=${BENCH_SECONDS:-20}
LIMIT=${BENCH_LIMIT:-100}
PROCESSES=${BENCH_PROCESSES:-4}
CONCURRENCY=${BENCH_CONCURRENCY:-16}
LEAD=${BENCH_LEAD_SECONDS:-10}
RUN=${BENCH_RUN_DIR:-$ROOT/.run/bench}
WORKER_JAR=${BENCH_WORKER_JAR:-$ROOT/worker/target/kage-worker.jar}
WINDOW_MS=1000

for setting in "BENCH_SECONDS=$SECONDS_RUN" "BENCH_LIMIT=$LIMIT" "BENCH_PROCESSES=$PROCESSES" \
  "BENCH_CONCURRENCY=$CONCURRENCY" "BENCH_LEAD_SECONDS=$LEAD"; do
  [[ ${setting#*=} =~ ^[1-9][0-9]*$ ]] || die "$setting: must be a positive integer"
done
((SECONDS_RUN >= 2)) || die "BENCH_SECONDS=$SECONDS_RUN: at least 2 (the first second is not steady)"
IFS=, read -r -a limiters <<<"$LIMITERS"
((${#limiters[@]} > 0)) || die "BENCH_LIMITERS is empty"
needs_node=0
for limiter in "${limiters[@]}"; do
  case $limiter in
    kage | redisson) ;;
    bullmq) needs_node=1 ;;
    *) die "BENCH_LIMITERS=$LIMITERS: unknown limiter '$limiter' (kage, redisson, bullmq)" ;;
  esac
done
if ((needs_node)); then
  command -v node >/dev/null || die "node is not installed (Node 18 or newer runs the BullMQ side)"
  command -v npm >/dev/null || die "npm is not installed (it installs bullmq into $RUN)"
fi

say "services ..."
ops/services.sh up || die "Redis/Postgres are not ready (see above)"
find_java
say "Java: $JAVA_HOME"
[[ -f $WORKER_JAR ]] || die "no worker jar at $WORKER_JAR (build it: ./mvnw -B -q -DskipTests -pl worker -am package)"

mkdir -p "$RUN"
if ((needs_node)); then
  install_bullmq "$RUN"
fi

suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
out=$RUN/ratelimit-$suffix
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
BENCH_JAVA=()
# on any exit: end the processes this run started (by pid), remove its keys and the temp dir
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  if ((${#BENCH_JAVA[@]} > 0)); then
    "${BENCH_JAVA[@]}" cleanup "$REDIS_URL" "*rlbench-$suffix*" || warn "could not remove the keys matching *rlbench-$suffix*"
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# a copy: the jar may be rebuilt while this runs
cp "$WORKER_JAR" "$tmp/kage-worker.jar"
JAR=$tmp/kage-worker.jar
# compiled once: four single-file source launches at once would compile four times (8-20 s on 2 CPUs)
"$JAVA_HOME/bin/javac" -nowarn -d "$tmp/classes" -cp "$JAR" "$ROOT/ops/bench/RateLimitBench.java" ||
  die "compiling ops/bench/RateLimitBench.java failed"
BENCH_JAVA=("$JAVA_HOME/bin/java" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$JAR:$tmp/classes" RateLimitBench)
export KAGE_LOG_LEVEL=WARN BENCH_NODE_DIR=$RUN

# epoch milliseconds
now_ms() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    local us=${EPOCHREALTIME/[.,]/}
    printf '%s' $((10#$us / 1000))
  else
    printf '%s' $(($(date +%s) * 1000))
  fi
}

# run_limiter NAME: starts its processes, waits for them, analyzes their files; sets RESULT_LINE.
run_limiter() {
  local name=$1 start end i pid failed=0 log
  local -a files=()
  if [[ $name == bullmq ]]; then
    local jobs=$(((LIMIT * SECONDS_RUN * 3 + 1) / 2))
    node "$ROOT/ops/bench/bullmq-ratelimit.mjs" fill "bull-rlbench-$suffix" rl "$jobs" ||
      die "filling the BullMQ queue failed"
  fi
  start=$(($(now_ms) + LEAD * 1000))
  end=$((start + SECONDS_RUN * 1000))
  say "$name: $PROCESSES processes x $CONCURRENCY, $LIMIT per ${WINDOW_MS} ms, $SECONDS_RUN s from $LEAD s from now ..."
  pids=()
  for ((i = 0; i < PROCESSES; i++)); do
    files+=("$out/$name-$i.grants")
    log=$out/$name-$i.log
    case $name in
      redisson)
        "${BENCH_JAVA[@]}" redisson "$REDIS_URL" "redisson-rlbench-$suffix" "$LIMIT" "$WINDOW_MS" "$CONCURRENCY" \
          "$start" "$end" "$out/$name-$i.grants" >"$log" 2>&1 &
        ;;
      kage)
        "${BENCH_JAVA[@]}" kage "$REDIS_URL" "kage-rlbench-$suffix" "rlbench-$suffix" "$LIMIT" "$WINDOW_MS" \
          "$CONCURRENCY" "$start" "$end" "$out/$name-$i.grants" >"$log" 2>&1 &
        ;;
      bullmq)
        node "$ROOT/ops/bench/bullmq-ratelimit.mjs" work "bull-rlbench-$suffix" rl "$CONCURRENCY" "$LIMIT" \
          "$WINDOW_MS" "$start" "$end" "$out/$name-$i.grants" >"$log" 2>&1 &
        ;;
    esac
    pids+=("$!")
  done
  i=0
  for pid in "${pids[@]}"; do
    if ! wait "$pid"; then
      failed=1
      warn "$name process $i failed; the end of $out/$name-$i.log:"
      tail -n 15 "$out/$name-$i.log" >&2 || true
    fi
    i=$((i + 1))
  done
  pids=()
  ((failed == 0)) || die "the $name side failed"
  "${BENCH_JAVA[@]}" analyze "$name" "$LIMIT" "$WINDOW_MS" "$start" "$end" "${files[@]}" | tee "$out/$name.result" ||
    die "analyzing $name failed"
  RESULT_LINE=$(grep '^RESULT ' "$out/$name.result") || die "the $name analysis printed no result"
  if [[ $name == bullmq ]] && (($(result_field "$RESULT_LINE" grants) * 100 >= jobs * 95)); then
    warn "bullmq took $(result_field "$RESULT_LINE" grants) of its $jobs jobs: the queue may have run dry"
  fi
}

results=()
for limiter in "${limiters[@]}"; do
  run_limiter "$limiter"
  results+=("$RESULT_LINE")
done

echo
printf '%-10s %8s %14s %7s %12s %8s %8s\n' limiter grants max_in_window ratio utilisation p50_ms p99_ms
for line in "${results[@]}"; do
  printf '%-10s %8s %14s %7s %11s%% %8s %8s\n' "$(result_field "$line" limiter)" "$(result_field "$line" grants)" \
    "$(result_field "$line" max_in_window)" "$(result_field "$line" ratio)" "$(result_field "$line" utilisation)" \
    "$(result_field "$line" p50_ms)" "$(result_field "$line" p99_ms)"
done
echo
say "limit $LIMIT per 1 s, $PROCESSES processes x $CONCURRENCY each, $SECONDS_RUN s; files and logs in $out"
