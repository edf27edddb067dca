#!/usr/bin/env bash
# ops/bench/budget.sh: Kage's budget ledger (reserve -> settle, one Lua script each) side by side with a naive
# check-then-INCRBY on the same Redis, in one run: operations per second and p50/p99 latency with
# BENCH_THREADS concurrent callers, then the overspend each lets through on a pool of BENCH_POOL_TOKENS when
# every caller's "call" takes BENCH_CALL_MS between the check and the charge. See ops/bench/BudgetBench.java.
#
# Environment:
#   BENCH_THREADS      concurrent callers [64]
#   BENCH_SECONDS      measured seconds per side [10]
#   BENCH_POOL_TOKENS  the overspend phase's pool, tokens [100000]
#   BENCH_CALL_MS      the overspend phase's call, ms [2]
#   BENCH_WORKER_JAR   the jar with Lettuce and Kage's classes [worker/target/kage-worker.jar]; copied, never built
#                      here (./mvnw -B -q -DskipTests -pl worker -am package)
#   REDIS_URL          as for ops/services.sh [redis://127.0.0.1:6379]
# Keys: every key the run creates starts with kage-budgetbench-<random>; they are removed at the end.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

ROOT=$(kage_root)
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
THREADS=${BENCH_THREADS:-64}
SECONDS_RUN=${BENCH_SECONDS:-10}
POOL=${BENCH_POOL_TOKENS:-100000}
CALL_MS=${BENCH_CALL_MS:-2}
WORKER_JAR=${BENCH_WORKER_JAR:-$ROOT/worker/target/kage-worker.jar}
for setting in "BENCH_THREADS=$THREADS" "BENCH_SECONDS=$SECONDS_RUN" "BENCH_POOL_TOKENS=$POOL" "BENCH_CALL_MS=$CALL_MS"; do
  [[ ${setting#*=} =~ ^[0-9]+$ ]] && ((${setting#*=} > 0)) || die "$setting: must be a positive integer"
done

say "services ..."
ops/services.sh up || die "Redis/Postgres are not ready (see above)"
find_java
say "Java: $JAVA_HOME"
[[ -f $WORKER_JAR ]] || die "no worker jar at $WORKER_JAR (build it: ./mvnw -B -q -DskipTests -pl worker -am package)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$WORKER_JAR" "$tmp/kage-worker.jar"
"$JAVA_HOME/bin/javac" -nowarn -d "$tmp/classes" -cp "$tmp/kage-worker.jar" "$ROOT/ops/bench/BudgetBench.java" ||
  die "compiling ops/bench/BudgetBench.java failed"
say "$THREADS callers, $SECONDS_RUN s per side; then a pool of $POOL tokens with ${CALL_MS} ms calls ..."
KAGE_LOG_LEVEL=WARN "$JAVA_HOME/bin/java" -cp "$tmp/kage-worker.jar:$tmp/classes" BudgetBench "$REDIS_URL" "$THREADS" \
  "$SECONDS_RUN" "$POOL" "$CALL_MS" | tee "$tmp/out"

echo
printf '%-6s %10s %8s %8s %12s %8s %10s\n' side ops_per_s p50_ms p99_ms used limit overspent
for side in kage naive; do
  tp=$(grep "^RESULT side=$side phase=throughput" "$tmp/out") || die "no throughput result for $side"
  os=$(grep "^RESULT side=$side phase=overspend" "$tmp/out") || die "no overspend result for $side"
  printf '%-6s %10s %8s %8s %12s %8s %10s\n' "$side" "$(result_field "$tp" ops_per_s)" "$(result_field "$tp" p50_ms)" \
    "$(result_field "$tp" p99_ms)" "$(result_field "$os" used)" "$(result_field "$os" limit)" "$(result_field "$os" overspent)"
done
grep '^RATIO' "$tmp/out"
