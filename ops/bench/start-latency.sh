#!/usr/bin/env bash
# ops/bench/start-latency.sh: from a worker's claim of a job to its agent process starting (budget hold,
# worktree on kage/<task>/<agent>, fleet-wide permit, spawn), for BENCH_JOBS jobs on one worker process, beside
# the bare floor measured in the same run (git worktree add + process start, one after another, no fleet).
# Target (issue 4): p99 <= 50 ms. See ops/bench/StartLatencyBench.java.
#
# Environment:
#   BENCH_JOBS         jobs [200]
#   BENCH_SLOTS        the worker's MAX_PARALLEL_CLIS [5, the product's default]
#   BENCH_AGENT_SECONDS  how long the agent works [0: /bin/true, the worker's own jobs crowd its next starts]; e.g.
#                      0.5 for an agent that works, as real ones do, so starts and other jobs' wrap-ups interleave
#   BENCH_RUN_DIR      the worker's log, work dir and the bench's repositories [<repo>/.run/bench] (git-ignored)
#   BENCH_WORKER_JAR   worker jar [worker/target/kage-worker.jar]; build it first (./mvnw -B -q -DskipTests -pl worker -am package)
#   REDIS_URL, DATABASE_URL   as for ops/services.sh (the bench creates and drops its own database beside it)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

ROOT=$(kage_root)
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kage}
JOBS=${BENCH_JOBS:-200}
SLOTS=${BENCH_SLOTS:-5}
RUN=${BENCH_RUN_DIR:-$ROOT/.run/bench}
WORKER_JAR=${BENCH_WORKER_JAR:-$ROOT/worker/target/kage-worker.jar}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "BENCH_JOBS=$JOBS: must be a positive integer"
[[ $SLOTS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SLOTS=$SLOTS: must be a positive integer"

say "services ..."
ops/services.sh up || die "Redis/Postgres are not ready (see above)"
find_java
[[ -f $WORKER_JAR ]] || die "no worker jar at $WORKER_JAR (build it: ./mvnw -B -q -DskipTests -pl worker -am package)"

suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
out=$RUN/start-$suffix
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$WORKER_JAR" "$tmp/kage-worker.jar"
"$JAVA_HOME/bin/javac" -nowarn -d "$tmp/classes" -cp "$tmp/kage-worker.jar" "$ROOT/ops/bench/KageQueueBench.java" \
  "$ROOT/ops/bench/StartLatencyBench.java" || die "compiling the bench failed"
say "$JOBS jobs, one worker with MAX_PARALLEL_CLIS=$SLOTS, a command agent with a repository; then the bare floor ..."
BENCH_JOBS=$JOBS BENCH_SLOTS=$SLOTS BENCH_AGENT_SECONDS=${BENCH_AGENT_SECONDS:-0} BENCH_RUN_DIR=$out BENCH_WORKER_JAR=$tmp/kage-worker.jar \
  BENCH_DEFAULT_REPO=$out/origin-repo BENCH_ADMIN_DATABASE_URL=$DATABASE_URL \
  BENCH_DATABASE_URL=$(db_url_with_name "$DATABASE_URL" "kage_startbench_$suffix") KAGE_LOG_LEVEL=WARN \
  "$JAVA_HOME/bin/java" -cp "$tmp/kage-worker.jar:$tmp/classes" StartLatencyBench | tee "$out/result" ||
  die "the bench failed (worker log in $out/worker.log)"
echo
printf '%-6s %6s %8s %8s %8s\n' side jobs p50_ms p99_ms max_ms
for side in kage bare; do
  line=$(grep "^RESULT side=$side " "$out/result") || die "no result for $side"
  printf '%-6s %6s %8s %8s %8s\n' "$side" "$(result_field "$line" jobs)" "$(result_field "$line" p50_ms)" \
    "$(result_field "$line" p99_ms)" "$(result_field "$line" max_ms)"
done
grep '^RATIO' "$out/result"
ready=$(grep -c 'ms ready,' "$out/worker.log" || true)
echo "worktrees taken ready (KAGE_WORKTREE_POOL=${KAGE_WORKTREE_POOL:-one per slot}): $ready of $JOBS; the rest were added for their job"
