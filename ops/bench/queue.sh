#!/usr/bin/env bash
# ops/bench/queue.sh: no-op jobs through the queue, Kage beside BullMQ, on the same Redis.
#
#   Kage    one real worker process (worker/target/kage-worker.jar) serving a `type: noop` agent with
#           MAX_PARALLEL_CLIS=50; the jobs are first submitted through the packaged coordinator's
#           POST /api/v1/tasks:batch (1,000 a request, timed end to end: rows, scripts, events), then
#           timed from the worker's first claim until every entry is acknowledged (each outcome is
#           in Postgres before its XACK). Its own database kage_bench_<random> and namespace
#           kage-bench-<random>, both removed afterwards.
#   BullMQ  the same number of jobs added with addBulk, then one Worker with concurrency 50 and an
#           empty processor, timed from its first job until the last 'completed' event. Its own key
#           prefix, removed afterwards.
#
# Printed: jobs/s of each and the ratio Kage/BullMQ (target >= 2), the same for the second half of the jobs (both
# sides warm: JIT and connections, as in a long-running worker), Redis commands per job of each
# (INFO commandstats before and after, the benches' own calls left out) and their ratio (target
# <= 0.5), enqueue rates, and where the CPU went. Also the floor: what Redis and Postgres spend per job with no
# worker at all (claim and ack 100 at a time and two events; a COPY'd result row and the task's status, 500 a
# transaction), against what 2x BullMQ leaves per job on this machine's cores. Speed is measured here, never
# asserted in tests.
#
# Environment:
#   BENCH_JOBS             jobs per side [20000]
#   BENCH_ROUNDS           rounds of both sides (which goes first alternating), then each ratio's median [1]
#   BENCH_RUN_DIR          bullmq's npm prefix and the worker's log [<repo>/.run/bench] (git-ignored)
#   BENCH_WORKER_JAR       worker jar to measure [worker/target/kage-worker.jar, built when missing or older than the sources]
#   BENCH_COORDINATOR_JAR  coordinator jar for the batch submit [coordinator/target/kage-coordinator.jar, likewise]
#   BENCH_SUBMIT_WARMUP    batches of 1,000 that warm the coordinator (and as many addBulk calls, BullMQ) before the timed submit [20]
#   BENCH_LOG_LEVEL        the worker's KAGE_LOG_LEVEL [INFO, the product's default]
#   BENCH_WORKER_JAVA_OPTS extra JVM options for the worker, e.g. a JFR recording
#   BENCH_COORDINATOR_JAVA_OPTS  the same for the coordinator
#   BENCH_SKIP_BULLMQ=1    measure Kage only
#   REDIS_URL, DATABASE_URL   as for ops/services.sh (DATABASE_URL's database must exist; the bench
#                          creates and drops its own beside it)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

ROOT=$(kage_root)
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kage}
JOBS=${BENCH_JOBS:-20000}
ROUNDS=${BENCH_ROUNDS:-1}
RUN=${BENCH_RUN_DIR:-$ROOT/.run/bench}
WORKER_JAR=${BENCH_WORKER_JAR:-$ROOT/worker/target/kage-worker.jar}
COORDINATOR_JAR=${BENCH_COORDINATOR_JAR:-$ROOT/coordinator/target/kage-coordinator.jar}

[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "BENCH_JOBS=$JOBS: must be a positive integer (default 20000)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS=$ROUNDS: must be a positive integer (default 1)"
command -v node >/dev/null || die "node is not installed (Node 18 or newer runs the BullMQ side)"
command -v npm >/dev/null || die "npm is not installed (it installs bullmq into $RUN)"

say "services ..."
ops/services.sh up || die "Redis/Postgres are not ready (see above)"
find_java
say "Java: $JAVA_HOME"

# The jars: built when missing, or when a source of their modules is newer.
stale() { [[ ! -f $1 ]] || [[ -n $(find shared/src/main "$2" -newer "$1" -type f -print -quit) ]]; }
if { [[ -z ${BENCH_WORKER_JAR:-} ]] && stale "$WORKER_JAR" worker/src/main; } ||
   { [[ -z ${BENCH_COORDINATOR_JAR:-} ]] && stale "$COORDINATOR_JAR" coordinator/src/main; }; then
  say "building the jars (./mvnw -B -q -DskipTests -pl worker,coordinator -am package) ..."
  ./mvnw -B -q -DskipTests -pl worker,coordinator -am package || die "the build failed (see the Maven output above)"
fi
[[ -f $WORKER_JAR ]] || die "no worker jar at $WORKER_JAR"
[[ -f $COORDINATOR_JAR ]] || die "no coordinator jar at $COORDINATOR_JAR"

mkdir -p "$RUN"
if [[ ${BENCH_SKIP_BULLMQ:-} != 1 ]]; then
  install_bullmq "$RUN"
fi

# One round: both sides, then the table. BENCH_ROUNDS > 1 repeats it, swapping which side goes first, and ends with each
# ratio's median over the rounds: on a shared 2-core machine one round's ratio moves by ±20 % between runs.
run_ratios=() half_ratios=() enqueue_ratios=()
kage_side() {
  say "Kage: $JOBS no-op jobs, one worker process, MAX_PARALLEL_CLIS=50 ..."
  kage_log=$RUN/kage-$suffix.out
  BENCH_JOBS=$JOBS BENCH_RUN_DIR=$RUN/kage-$suffix BENCH_WORKER_JAR=$WORKER_JAR BENCH_COORDINATOR_JAR=$COORDINATOR_JAR \
    BENCH_ADMIN_DATABASE_URL=$DATABASE_URL BENCH_DATABASE_URL=$(db_url_with_name "$DATABASE_URL" "kage_bench_$suffix") \
    KAGE_LOG_LEVEL=WARN \
    "$JAVA_HOME/bin/java" -cp "$WORKER_JAR" "$ROOT/ops/bench/KageQueueBench.java" | tee "$kage_log" ||
    die "the Kage side failed (worker log in $RUN/kage-$suffix/worker.log)"
  kage=$(grep '^RESULT kage ' "$kage_log") || die "the Kage side printed no result"
}

bullmq_side() {
  say "BullMQ $BULLMQ_VERSION: $JOBS no-op jobs, one Worker, concurrency 50 ..."
  bull_log=$RUN/bullmq-$suffix.out
  BENCH_JOBS=$JOBS BENCH_NODE_DIR=$RUN node "$ROOT/ops/bench/bullmq-bench.mjs" | tee "$bull_log" ||
    die "the BullMQ side failed"
  bull=$(grep '^RESULT bullmq ' "$bull_log") || die "the BullMQ side printed no result"
}

# The table of one round, and its ratios kept for the summary.
compare() {

  k_rate=$(result_field "$kage" jobs_per_s)
  b_rate=$(result_field "$bull" jobs_per_s)
  k_cmds=$(result_field "$kage" commands_per_job)
  b_cmds=$(result_field "$bull" commands_per_job)
  k_enq=$(result_field "$kage" enqueue_per_s)
  b_enq=$(result_field "$bull" enqueue_per_s)
  k_enq_cmds=$(result_field "$kage" enqueue_commands_per_job)
  k_single=$(result_field "$kage" enqueue_single_per_s)
  k_single_cmds=$(result_field "$kage" enqueue_single_commands_per_job)
  b_enq_cmds=$(result_field "$bull" enqueue_commands_per_job)

  echo
  awk -v jobs="$JOBS" -v kr="$k_rate" -v br="$b_rate" -v kc="$k_cmds" -v bc="$b_cmds" \
    -v ke="$k_enq" -v be="$b_enq" -v kec="$k_enq_cmds" -v bec="$b_enq_cmds" -v ks="$k_single" -v ksc="$k_single_cmds" \
    -v kcpu="$(result_field "$kage" cpu_us_client)" -v bcpu="$(result_field "$bull" cpu_us_client)" \
    -v krcpu="$(result_field "$kage" cpu_us_redis)" -v brcpu="$(result_field "$bull" cpu_us_redis)" \
    -v kpg="$(result_field "$kage" cpu_us_postgres)" -v kx="$(result_field "$kage" pg_xact_per_job)" \
    -v kh="$(result_field "$kage" half_jobs_per_s)" -v bh="$(result_field "$bull" half_jobs_per_s)" \
    -v khc="$(result_field "$kage" half_cpu_us_client)" -v bhc="$(result_field "$bull" half_cpu_us_client)" \
    -v khr="$(result_field "$kage" half_cpu_us_redis)" -v bhr="$(result_field "$bull" half_cpu_us_redis)" \
    -v khp="$(result_field "$kage" half_cpu_us_postgres)" \
    -v kec_cpu="$(result_field "$kage" enqueue_cpu_us_client)" -v bec_cpu="$(result_field "$bull" enqueue_cpu_us_client)" \
    -v ker_cpu="$(result_field "$kage" enqueue_cpu_us_redis)" -v ber_cpu="$(result_field "$bull" enqueue_cpu_us_redis)" \
    -v kep_cpu="$(result_field "$kage" enqueue_cpu_us_postgres)" \
    -v fr="$(result_field "$kage" floor_us_redis)" -v fp="$(result_field "$kage" floor_us_postgres)" -v cores="$(nproc)" 'BEGIN {
    printf "%-34s %12s %12s %14s\n", "no-op jobs: " jobs, "Kage", "BullMQ", "Kage/BullMQ"
    printf "%-34s %12.0f %12.0f %13.2fx   (target >= 2x: %s)\n", "processed, jobs/s", kr, br, kr / br, (kr / br >= 2 ? "met" : "MISSED")
    printf "%-34s %12.0f %12.0f %13.2fx   (both warm: the last half of the jobs)\n", "processed, second half, jobs/s", kh, bh, kh / bh
    printf "%-34s %12.2f %12.2f %13.2fx   (target <= 0.5x: %s)\n", "Redis commands per job", kc, bc, kc / bc, (kc / bc <= 0.5 ? "met" : "MISSED")
    printf "%-34s %12.0f %12.0f %13.2fx   (Kage POST /tasks:batch end to end, BullMQ addBulk; target >= 1x: %s)\n", "enqueued, jobs/s", ke, be, ke / be, (ke / be >= 1 ? "met" : "MISSED")
    printf "%-34s %12.2f %12.2f\n", "Redis commands per enqueued job", kec, bec
    printf "%-34s %12s %12s\n", "CPU/enqueued job: client+PG+Redis", kec_cpu "+" kep_cpu "+" ker_cpu, bec_cpu "+" ber_cpu
    printf "%-34s %12.0f %12s   (Kage one task per request, 32 threads)\n", "enqueued singly, jobs/s", ks, "-"
    printf "%-34s %12.2f %12s\n", "Redis commands per job, singly", ksc, "-"
    printf "%-34s %12.2f %12.2f %13.2fx\n", "Redis commands, enqueue + run", kc + kec, bc + bec, (kc + kec) / (bc + bec)
    printf "%-34s %12.0f %12.0f\n", "CPU per job, worker process, us", kcpu, bcpu
    printf "%-34s %12.0f %12.0f\n", "CPU per job, Redis, us", krcpu, brcpu
    printf "%-34s %12.0f %12s\n", "CPU per job, Postgres, us", kpg, "-"
    printf "%-34s %12s %12s\n", "CPU/job 2nd half: client+PG+Redis", khc "+" khp "+" khr, bhc "+" bhr
    printf "%-34s %12.2f %12s\n", "Postgres transactions per job", kx, "-"
    budget = cores * 1e6 / (2 * br)
    printf "\n2x BullMQ here is %.0f jobs/s: %d cores give every job %.0f us of CPU, Redis and Postgres included.\n", 2 * br, cores, budget
    printf "The floor, no worker at all (claim + ack + 2 events; result rows by COPY + task status): Redis %.1f + Postgres %.1f us.\n", fr, fp
    printf "Left for the worker process: %.0f us per job; the warm Kage worker spends %.0f.\n", budget - fr - fp, khc
  }'
  echo
  say "details: $kage_log, $bull_log; Kage worker log: $RUN/kage-$suffix/worker.log"
  run_ratios+=("$(awk -v k="$k_rate" -v b="$b_rate" 'BEGIN { printf "%.2f", k / b }')")
  half_ratios+=("$(awk -v k="$(result_field "$kage" half_jobs_per_s)" -v b="$(result_field "$bull" half_jobs_per_s)" 'BEGIN { printf "%.2f", k / b }')")
  enqueue_ratios+=("$(awk -v k="$k_enq" -v b="$b_enq" 'BEGIN { printf "%.2f", k / b }')")
}

# One summary line: each round's ratio, their median (both as printed, two decimals) and, with a target, whether the
# median meets it. In awk, as every number here: the shell's printf and sort -n follow the locale's decimal comma.
summary_line() { # label, target ("" for none), "at least" or "at most", ratios...
  local label=$1 target=$2 way=$3
  shift 3
  printf '%s\n' "$@" | LC_ALL=C awk -v label="$label" -v target="$target" -v way="$way" '
    { v[NR] = $1 + 0; all = all (NR > 1 ? " " : "") sprintf("%.2f", $1) }
    END {
      for (i = 2; i <= NR; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      m = sprintf("%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)
      verdict = ""
      if (target != "") verdict = sprintf("   (target %s %sx: %s)", way == "at least" ? ">=" : "<=", target,
                                          (way == "at least" ? m + 0 >= target + 0 : m + 0 <= target + 0) ? "met" : "MISSED")
      printf "%-34s %s  median %sx%s\n", label, all, m, verdict
    }'
}

for ((round = 1; round <= ROUNDS; round++)); do
  suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  if ((ROUNDS > 1)); then
    say "round $round of $ROUNDS"
  fi
  if [[ ${BENCH_SKIP_BULLMQ:-} == 1 ]]; then
    kage_side
    say "BENCH_SKIP_BULLMQ=1: no BullMQ run"
    continue
  fi
  # Rounds alternate which side goes first, so that neither always runs on the machine the other just warmed.
  if ((round % 2 == 1)); then
    kage_side
    bullmq_side
  else
    bullmq_side
    kage_side
  fi
  compare
done
if ((ROUNDS > 1)) && ((${#run_ratios[@]} > 0)); then
  echo
  echo "Kage/BullMQ over $ROUNDS rounds (the order of the two sides alternating): each round, then the median"
  summary_line "processed" 2 "at least" "${run_ratios[@]}"
  summary_line "processed, second half" "" "" "${half_ratios[@]}"
  summary_line "enqueued (batch submit / addBulk)" 1 "at least" "${enqueue_ratios[@]}"
fi
