#!/usr/bin/env bash
# ops/test.sh [maven args...]
#
# The whole check, as CI runs it (.ci/run):
#   1. Redis and Postgres (ops/services.sh up)
#   2. ./mvnw -B verify [maven args...]   e.g. ops/test.sh -DskipTests, ops/test.sh -pl shared
#      (this includes the chaos scenarios worker-kill, postgres-outage, hostile-input and load at the shortened scale
#      ci, about 3 minutes; ops/chaos/run.sh runs them at full scale, see RELIABILITY.md)
#   3. a quickstart smoke run (ops/quickstart.sh start, then stop) in its own run dir, port,
#      Redis namespace and database, so the README's first command cannot rot.
#
# Environment:
#   KAGE_SKIP_SMOKE=1    skip step 3
#   KAGE_TEST_FAKETIME=1 the rate-limit e2e test runs its skewed worker under libfaketime (apt-get install
#                        faketime) as well as KAGE_CLOCK_OFFSET_MS; off by default, see RateLimitIT
#   KAGE_SMOKE_PORT      coordinator port of the smoke run [18003]; it must listen on loopback only (ss checks it)
#   KAGE_AGENTS_CACHE    where the real claude and codex CLIs are installed from npm for the real-agents
#                        tier (RealAgentsIT) [~/.cache/kage/agents]; without npm that tier is skipped
#   KAGE_AUTOCANNON_CACHE where autocannon (the load scenario's load tool) is installed from npm
#                        [~/.cache/kage/autocannon]; without npm that scenario is skipped
#   KAGE_TEST_CHROMIUM, KAGE_TEST_CHROMEDRIVER   the browser for the dashboard test (DashboardIT)
#                        [/usr/bin/chromium, /usr/bin/chromedriver]; installed with apt-get when missing
#                        and root, else that test is skipped
#   REDIS_URL, DATABASE_URL   as for ops/services.sh; the tests use the same servers (the database kage_test,
#                        unless KAGE_TEST_REDIS_URL / KAGE_TEST_DATABASE_URL say otherwise), the smoke run too
#                        with the database kage_smoke and the namespace kage-smoke
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

need_linux
ROOT=$(kage_root)
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kage}

# a missing JDK fails first, before anything is started or installed
find_java
say "Java: $JAVA_HOME"

say "services ..."
ops/services.sh up || die "Redis/Postgres are not ready (see above)"
# The tests reach the same servers (TestServices reads only the KAGE_TEST_* variables): the database kage_test beside
# DATABASE_URL's, created here when missing.
export KAGE_TEST_REDIS_URL=${KAGE_TEST_REDIS_URL:-$REDIS_URL}
if [[ -z ${KAGE_TEST_DATABASE_URL:-} ]]; then
  KAGE_TEST_DATABASE_URL=$(db_url_with_name "$DATABASE_URL" kage_test)
  export KAGE_TEST_DATABASE_URL
  DATABASE_URL=$KAGE_TEST_DATABASE_URL ops/services.sh up >/dev/null || die "could not prepare the test database (see above)"
fi

if agents_dir=$(install_agents "${KAGE_AGENTS_CACHE:-${HOME:-/tmp}/.cache/kage/agents}"); then
  export KAGE_TEST_AGENTS_DIR=$agents_dir
  say "real agent CLIs: $KAGE_TEST_AGENTS_DIR"
fi

install_browser || true

# autocannon for the chaos suite's load scenario (LoadChaosIT, ci scale); without it that test is skipped
install_autocannon "${KAGE_AUTOCANNON_CACHE:-${HOME:-/tmp}/.cache/kage/autocannon}" || true

say "./mvnw -B verify $*"
./mvnw -B verify "$@" || die "the Maven build failed"

if [[ ${KAGE_SKIP_SMOKE:-} == 1 ]]; then
  say "KAGE_SKIP_SMOKE=1: no quickstart smoke run"
  exit 0
fi

SMOKE_RUN=$ROOT/.run/smoke
SMOKE_DB_URL=$(db_url_with_name "$DATABASE_URL" kage_smoke)
SMOKE_PORT=${KAGE_SMOKE_PORT:-18003}
# ANTHROPIC_API_KEY emptied: with the claude CLI on PATH the quickstart would run the real, paid Claude over the network;
# the smoke run checks the fleet with the bundled demo agent, offline.
smoke_env=(KAGE_RUN_DIR="$SMOKE_RUN" PORT="$SMOKE_PORT" KAGE_PORT_VARIABLE=KAGE_SMOKE_PORT KAGE_NAMESPACE=kage-smoke
  DATABASE_URL="$SMOKE_DB_URL" KAGE_SKIP_BUILD=1 ANTHROPIC_API_KEY=)

smoke_stop() {
  env "${smoke_env[@]}" ops/quickstart.sh stop || warn "stopping the smoke run failed"
}

say "quickstart smoke run (run dir $SMOKE_RUN, port ${KAGE_SMOKE_PORT:-18003}, namespace kage-smoke, database kage_smoke) ..."
# leftovers of an interrupted earlier run would be reused: start from fresh processes
smoke_stop
trap smoke_stop EXIT
smoke_rc=0
env "${smoke_env[@]}" ops/quickstart.sh start || smoke_rc=$?
if ((smoke_rc != 0)); then
  die "the quickstart smoke run failed (exit $smoke_rc; logs in $SMOKE_RUN)"
fi
# Its coordinator accepts the development key (admin scope): it must listen on this machine's loopback only.
if ss -Hltn >/dev/null 2>&1; then
  listening=$(ss -Hltn "sport = :$SMOKE_PORT" | awk '{print $4}') || listening=""
  [[ -n $listening ]] || die "the quickstart smoke run's coordinator listens on no port $SMOKE_PORT"
  if grep -qvE '^(127\.[0-9.]+|\[::ffff:127\.[0-9.]+\]|\[::1\]):' <<<"$listening"; then
    die "the quickstart smoke run's coordinator listens beyond loopback: $(tr '\n' ' ' <<<"$listening")"
  fi
  say "the smoke run's coordinator listens on loopback only ($(tr '\n' ' ' <<<"$listening"))"
else
  warn "ss cannot list listening sockets here: the smoke run's loopback-only check is skipped"
fi
say "quickstart smoke run passed"
