#!/usr/bin/env bash
# ops/chaos/run.sh [scenario...]
#
# The chaos suite (issue 8, "proof under fire"): a coordinator and three workers as separate processes on the real
# Redis and Postgres, driven only through the HTTP API, with faults injected from outside. Each scenario is a
# Failsafe test in e2e/src/test/java/dev/kage/e2e/chaos and prints one line (CHAOS <scenario> ... PASS|FAIL):
# what was done, how many jobs, lost, duplicated (ran on two workers at once), 5xx answers. This script runs the
# scenarios named (all by default) at full scale and writes their lines into RELIABILITY.md (date, machine, scale),
# replacing only the blocks of the scenarios it ran. `./mvnw verify` (and so ops/test.sh and CI) runs the quick
# scenarios (1, 3, 5, and 6 at 100/s for 10 s) at the shortened scale ci; 2 and 4 (minutes each) and 7 run only here.
#
# Scenarios (issue 8's numbering):
#   worker-kill       1  kill -9 a random worker every few seconds and restart it      (WorkerKillChaosIT)
#   redis-restart     2  private AOF-everysec Redis killed / power-lost / shut down     (RedisRestartChaosIT; not in verify)
#   postgres-outage   3  Postgres cut off by a TCP proxy mid-run                        (PostgresOutageChaosIT)
#   rate-limit-storm  4  429 storm from a local endpoint                                (RateLimitStormChaosIT; not in verify)
#   hostile-input     5  several hundred bad requests; shell syntax in descriptions     (HostileInputChaosIT)
#   load              6  steady submit rate with autocannon, latency percentiles         (LoadChaosIT)
#   soak              7  30 minutes of mixed load with worker kills, bounded resources   (SoakChaosIT; never in verify)
#
# Environment:
#   KAGE_CHAOS_SCALE            full (default here) or ci (the shortened form CI runs)
#   KAGE_CHAOS_JOBS             worker-kill: jobs [ci 150, full 1000]
#   KAGE_CHAOS_KILL_EVERY_SECONDS   worker-kill: seconds between kills [ci 8, full 5]
#   KAGE_CHAOS_OUTAGE_SECONDS   postgres-outage: how long Postgres is away [ci 12, full 60]
#   KAGE_CHAOS_OUTAGE_JOBS      postgres-outage: jobs [enough to keep 12 slots busy through the outage]
#   KAGE_CHAOS_RESTART_EVERY_SECONDS redis-restart: seconds between restarts [ci 8, full 20] (jobs: KAGE_CHAOS_JOBS [ci 60, full 400])
#   KAGE_CHAOS_STORM_SECONDS    rate-limit-storm: how long the endpoint answers 429 [ci 10, full 30]
#   KAGE_CHAOS_MEASURE_SECONDS  rate-limit-storm: completion rate measured before and after [ci 10, full 30]
#   KAGE_CHAOS_LOAD_RATE        load: requests per second [ci 100, full 1000]
#   KAGE_CHAOS_LOAD_SECONDS     load: how long [ci 10, full 60]; then (full) a search for the highest rate with p99 < 50 ms
#   KAGE_CHAOS_LOAD_WORKERS     load: worker processes serving the noop agent, started once the submits are measured,
#                               that must run every accepted task [1]; 0 lets the tasks wait in the queue
#   KAGE_CHAOS_LOAD_WORKERS_BESIDE=true  load: start those workers before the submits instead (they share the CPU)
#   KAGE_CHAOS_AUTOCANNON       load: the autocannon executable [installed, pinned, into ~/.cache/kage/autocannon]
#   KAGE_CHAOS_SOAK_MINUTES     soak: how long [30]
#   KAGE_CHAOS_SOAK_KILL_EVERY_SECONDS  soak: seconds between worker kills [60]
#   KAGE_CHAOS_NO_REPORT=1      do not touch RELIABILITY.md
#   REDIS_URL, DATABASE_URL     as for ops/services.sh (the tests take their own namespace and schema)
# Logs: e2e/target/e2e-logs/chaos-*/ (every process), e2e/target/chaos/*.txt (the lines, and hostile-input's failed
# cases), e2e/target/failsafe-reports/.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

ROOT=$(kage_root)
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kage}
export KAGE_CHAOS_SCALE=${KAGE_CHAOS_SCALE:-full}
[[ $KAGE_CHAOS_SCALE == full || $KAGE_CHAOS_SCALE == ci ]] || die "KAGE_CHAOS_SCALE=$KAGE_CHAOS_SCALE: must be full or ci (default full)"

ALL=(worker-kill redis-restart postgres-outage rate-limit-storm hostile-input load soak)
class_of() {
  case $1 in
    worker-kill) echo WorkerKillChaosIT ;;
    postgres-outage) echo PostgresOutageChaosIT ;;
    hostile-input) echo HostileInputChaosIT ;;
    redis-restart) echo RedisRestartChaosIT ;;
    rate-limit-storm) echo RateLimitStormChaosIT ;;
    load) echo LoadChaosIT ;;
    soak) echo SoakChaosIT ;;
    *) return 1 ;;
  esac
}

wanted=("$@")
((${#wanted[@]})) || wanted=("${ALL[@]}")
classes=()
ran=()
for name in "${wanted[@]}"; do
  class=$(class_of "$name") || die "unknown scenario '$name'; known: ${ALL[*]}"
  if [[ -z $class ]]; then
    warn "scenario $name is not built yet (issue 8): skipped"
    continue
  fi
  classes+=("$class")
  ran+=("$name")
done
((${#classes[@]})) || die "nothing to run"

say "services ..."
ops/services.sh up || die "Redis/Postgres are not ready (see above)"
find_java
say "Java: $JAVA_HOME"

# The jars the fleet runs: built when missing or older than a source of theirs.
jars=(coordinator/target/kage-coordinator.jar worker/target/kage-worker.jar client/target/kage-client.jar)
stale=0
for jar in "${jars[@]}"; do
  if [[ ! -f $jar ]] || [[ -n $(find shared/src/main coordinator/src/main worker/src/main client/src/main -newer "$jar" -type f -print -quit) ]]; then
    stale=1
  fi
done
if ((stale)); then
  say "building the jars (./mvnw -B -q -DskipTests package) ..."
  ./mvnw -B -q -DskipTests package || die "the build failed (see the Maven output above)"
fi

extra=()
if [[ " ${ran[*]} " == *" load "* ]]; then
  install_autocannon "${KAGE_AUTOCANNON_CACHE:-$HOME/.cache/kage/autocannon}" || die "the load scenario needs autocannon (see above)"
fi
if [[ " ${ran[*]} " == *" redis-restart "* || " ${ran[*]} " == *" rate-limit-storm "* ]]; then
  extra+=(-Dkage.chaos.long=true) # minutes each: ./mvnw verify (CI) skips them, run.sh runs them when asked
fi
if [[ " ${ran[*]} " == *" soak "* ]]; then
  extra+=(-Dkage.chaos.soak=true) # the soak runs only when asked: ./mvnw verify skips it
fi

results=e2e/target/chaos
mkdir -p "$results"
for name in "${ran[@]}"; do
  rm -f "$results/$name.txt" "$results/$name-details.txt"
done

tests=$(IFS=,; echo "${classes[*]}")
say "scale $KAGE_CHAOS_SCALE: ${ran[*]} ($tests) ..."
started=$(date +%s)
rc=0
./mvnw -B -q -pl client,e2e verify -Dit.test="$tests" -Dtest=none -Dsurefire.failIfNoSpecifiedTests=false \
  -Dfailsafe.failIfNoSpecifiedTests=false -Dkage.chaos.scale="$KAGE_CHAOS_SCALE" ${extra[@]+"${extra[@]}"} || rc=$?
took=$(($(date +%s) - started))

lines=()
for name in "${ran[@]}"; do
  if [[ -f $results/$name.txt ]]; then
    lines+=("$(cat "$results/$name.txt")")
  else
    lines+=("CHAOS $name scale=$KAGE_CHAOS_SCALE no result: the test failed before it reported (see e2e/target/failsafe-reports) FAIL")
  fi
done
echo
printf '%s\n' "${lines[@]}"
echo

if [[ ${KAGE_CHAOS_NO_REPORT:-} != 1 ]]; then
  when=$(date -u +%Y-%m-%dT%H:%MZ)
  machine="$(uname -sm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, load $(cut -d' ' -f1-3 /proc/loadavg), $("$JAVA_HOME/bin/java" -version 2>&1 | head -n 1)"
  overrides=$(env | grep -E '^KAGE_CHAOS_(JOBS|KILL_EVERY_SECONDS|OUTAGE_SECONDS|OUTAGE_JOBS|RESTART_EVERY_SECONDS|STORM_SECONDS|MEASURE_SECONDS|LOAD_[A-Z_]+|SOAK_[A-Z_]+)=' | sort | tr '\n' ' ' || true)
  for i in "${!ran[@]}"; do
    name=${ran[$i]}
    block=$(mktemp)
    {
      printf '<!-- chaos:%s -->\n' "$name"
      printf 'Run %s, scale %s%s, on %s:\n\n' "$when" "$KAGE_CHAOS_SCALE" "${overrides:+ (${overrides% })}" "$machine"
      printf '```\n%s\n```\n' "${lines[$i]}"
      if [[ -s $results/$name-details.txt ]]; then
        printf '\nFailed cases:\n\n```\n'
        cut -c1-300 "$results/$name-details.txt"
        printf '```\n'
      fi
      printf '<!-- /chaos:%s -->\n' "$name"
    } >"$block"
    if grep -q "^<!-- chaos:$name -->" RELIABILITY.md; then
      awk -v name="$name" -v blockfile="$block" '
        $0 == "<!-- chaos:" name " -->" { while ((getline line < blockfile) > 0) print line; skip = 1; next }
        $0 == "<!-- /chaos:" name " -->" { skip = 0; next }
        !skip { print }' RELIABILITY.md >RELIABILITY.md.new && mv RELIABILITY.md.new RELIABILITY.md
    else
      { printf '\n'; cat "$block"; } >>RELIABILITY.md
    fi
    rm -f "$block"
  done
  say "RELIABILITY.md updated (${ran[*]}; ${took}s)"
fi
((rc == 0)) || die "a scenario failed (exit $rc): see the lines above, e2e/target/e2e-logs/chaos-*/ and e2e/target/failsafe-reports"
say "every scenario passed (${took}s)"
