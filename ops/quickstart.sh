#!/usr/bin/env bash
# ops/quickstart.sh [start|stop|status]
#
# One command from a fresh clone to a running fleet on this machine:
#
#   start   (default) Redis + Postgres (ops/services.sh up), build the jars, a demo git repo,
#           an agents file, one coordinator and N workers, then a demo task with two agents
#           (claude-code and demo) whose results are printed. Processes from an earlier start
#           that still run are reused, so running it again is safe.
#   stop    stop the processes this script started (from the pid files in the run dir).
#           Redis and Postgres keep running: `ops/services.sh down` stops what it started.
#   status  which of our processes run, and whether the coordinator is healthy.
#
# Everything it makes lives in the run dir (git-ignored): coordinator.log, worker-N.log,
# *.pid, coordinator.port, coordinator.env, agents.yml, demo-repo/, work/, jars/.
#
# Environment (defaults in brackets):
#   KAGE_RUN_DIR              run dir [<repo>/.run/quickstart]
#   PORT                      coordinator port [8003]
#   MICRONAUT_SERVER_HOST     address the coordinator listens on [127.0.0.1: this fleet accepts the development key,
#                             which has the admin scope, so it is reachable from this machine only]
#   KAGE_PORT_VARIABLE        the variable a caller sets the port with, named in the port-taken error [PORT]
#   REDIS_URL                 [redis://127.0.0.1:6379]
#   DATABASE_URL              [postgresql://postgres@127.0.0.1:5432/kage]
#   KAGE_NAMESPACE            Redis key prefix [kage]
#   KAGE_DB_SCHEMA            Postgres schema [development_docs]
#   KAGE_QUICKSTART_WORKERS   number of workers [2]
#   KAGE_SKIP_BUILD=1         do not run Maven when both jars already exist
#   ANTHROPIC_API_KEY         with the `claude` CLI on PATH, claude-code runs the real Claude Code
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

need_linux
ROOT=$(kage_root)
RUN=${KAGE_RUN_DIR:-$ROOT/.run/quickstart}
PORT=${PORT:-8003}
HOST=${MICRONAUT_SERVER_HOST:-127.0.0.1}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kage}
KAGE_NAMESPACE=${KAGE_NAMESPACE:-kage}
KAGE_DB_SCHEMA=${KAGE_DB_SCHEMA:-development_docs}
WORKERS=${KAGE_QUICKSTART_WORKERS:-2}
export REDIS_URL DATABASE_URL KAGE_NAMESPACE KAGE_DB_SCHEMA

DEV_KEY=dev-key-12345
COORD_JAR_BUILT=$ROOT/coordinator/target/kage-coordinator.jar
WORKER_JAR_BUILT=$ROOT/worker/target/kage-worker.jar
DEMO_AGENT=$ROOT/ops/agents/demo-agent
HEALTH_WAIT=90
TASK_WAIT=180
STOP_WAIT=40
SELF="ops/quickstart.sh"

usage() { # the comment block at the top, whatever its length
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------- helpers

# Our processes carry this marker on their command line, so a recycled pid is never mistaken for ours.
marker() { printf '%s' "-Dkage.quickstart.run=$RUN"; }

url() { printf 'http://localhost:%s' "$PORT"; }

read_pid() { # pidfile -> pid or nothing
  local pid=""
  [[ -f $1 ]] && pid=$(head -n 1 "$1" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && printf '%s' "$pid"
  return 0
}

is_ours() { # pid -> alive and started by this script for this run dir
  local pid=$1 args
  kill -0 "$pid" 2>/dev/null || return 1
  # /proc, not ps: minimal images have no procps
  args=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $args == *"$(marker) "* && $args == *kage-*.jar* ]]
}

running_pid() { # pidfile -> pid when that process is ours and alive
  local pid
  pid=$(read_pid "$1")
  [[ -n $pid ]] && is_ours "$pid" && printf '%s' "$pid"
}

port_in_use() { # port
  # shellcheck disable=SC2016 # the inner script expands its own positional parameters
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null && return 0
  # shellcheck disable=SC2016
  timeout 3 bash -c 'exec 3<>"/dev/tcp/::1/$1"' _ "$1" 2>/dev/null
}

log_tail() { # file
  if [[ -s $1 ]]; then
    if grep -qE ' ERROR |cannot start' "$1"; then
      say "errors in $1:"
      # -m 6, not "| head": head leaving early killed grep with SIGPIPE, and pipefail the whole script (exit 141),
      # before the explanation this is here to give.
      grep -m 6 -E ' ERROR |cannot start|^Message:' "$1" | sed 's/^/    /' >&2
    fi
    say "last lines of $1:"
    tail -n 25 "$1" | sed 's/^/    /' >&2
  else
    say "$1 is empty"
  fi
}

client() { # QuickstartClient command args...
  "$JAVA_HOME/bin/java" -cp "$RUN/jars/kage-coordinator.jar" dev.kage.coordinator.cli.QuickstartClient "$@"
}

# launch LOG PIDFILE JAR VAR=VALUE... : start a detached JVM with the given environment
launch() {
  local log=$1 pidfile=$2 jar=$3
  shift 3
  (cd "$RUN" && exec env "$@" nohup "$JAVA_HOME/bin/java" "$(marker)" -jar "$jar") </dev/null >"$log" 2>&1 9>&- &
  printf '%s\n' "$!" >"$pidfile"
}

# The settings a running coordinator was started with (coordinator.env, beside coordinator.port): a coordinator
# (and its workers) reached with other ones would serve another Redis, database or namespace.
fleet_settings() {
  printf 'REDIS_URL=%s\nDATABASE_URL=%s\nKAGE_NAMESPACE=%s\nKAGE_DB_SCHEMA=%s\n' \
    "$REDIS_URL" "$DATABASE_URL" "$KAGE_NAMESPACE" "$KAGE_DB_SCHEMA"
}

# fail when the running coordinator was started with other settings than this start's
check_same_settings() { # pid
  local file=$RUN/coordinator.env line name differ=""
  if [[ ! -f $file ]]; then
    warn "the running coordinator (pid $1) recorded no settings ($file, from an older $SELF); reusing it as it is"
    return 0
  fi
  while IFS= read -r line; do
    name=${line%%=*}
    grep -qxF -- "$line" "$file" ||
      differ+="${differ:+;} $name (running: $(shown_url "$(sed -n "s/^$name=//p" "$file")"), now: $(shown_url "${line#*=}"))"
  done < <(fleet_settings)
  [[ -z $differ ]] ||
    die "the quickstart fleet running from $RUN (coordinator pid $1) was started with other settings:$differ. Run '$SELF stop' first, then start again (or start with the same settings)"
}

# fail when PORT is taken by something that is not our coordinator
check_port_free() {
  port_in_use "$PORT" || return 0
  local who=""
  command -v ss >/dev/null 2>&1 && who=$(ss -Hltnp "sport = :$PORT" 2>/dev/null | head -n 1 | tr -s ' ' || true)
  die "port $PORT is already in use by a program this quickstart did not start${who:+ ($who)}. Stop it, or pick another port: ${KAGE_PORT_VARIABLE:-PORT}=$((PORT + 10))"
}

# wait_healthy PID: the coordinator answers /health with 200 within HEALTH_WAIT s (fails early if PID exits)
wait_healthy() {
  local pid=$1 hc rc=0
  # a simple command, so $! is the JVM itself (a function would leave it behind when killed)
  "$JAVA_HOME/bin/java" -cp "$RUN/jars/kage-coordinator.jar" dev.kage.coordinator.cli.QuickstartClient \
    health --url "$(url)" --wait "$HEALTH_WAIT" >"$RUN/health.out" 2>&1 9>&- &
  hc=$!
  while kill -0 "$hc" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      kill "$hc" 2>/dev/null || true
      wait "$hc" 2>/dev/null || true
      say "the coordinator (pid $pid) exited while starting"
      return 1
    fi
    sleep 1
  done
  wait "$hc" || rc=$?
  if ((rc != 0)); then
    sed 's/^/    /' "$RUN/health.out" >&2
  fi
  return "$rc"
}

any_running() { # any process of ours from an earlier start still runs
  local f
  running_pid "$RUN/coordinator.pid" >/dev/null && return 0
  while IFS= read -r f; do
    running_pid "$f" >/dev/null && return 0
  done < <(worker_pidfiles)
  return 1
}

worker_pidfiles() { # every worker pid file in the run dir, in numeric order
  local f
  for f in "$RUN"/worker-*.pid; do
    [[ -e $f ]] && printf '%s\n' "$f"
  done | sort -t- -k2 -n
}

# ---------------------------------------------------------------- start steps

build() {
  if [[ ${KAGE_SKIP_BUILD:-} == 1 && -f $COORD_JAR_BUILT && -f $WORKER_JAR_BUILT ]]; then
    say "KAGE_SKIP_BUILD=1: using the jars in coordinator/target and worker/target"
    return 0
  fi
  [[ ${KAGE_SKIP_BUILD:-} == 1 ]] && say "KAGE_SKIP_BUILD=1 but a jar is missing: building anyway"
  say "building with Maven (./mvnw -B -q -DskipTests package) ..."
  (cd "$ROOT" && ./mvnw -B -q -DskipTests package) || die "the build failed (see the Maven output above)"
  [[ -f $COORD_JAR_BUILT && -f $WORKER_JAR_BUILT ]] || die "the build did not produce $COORD_JAR_BUILT and $WORKER_JAR_BUILT"
}

# The JVMs run copies of the jars: a rebuild overwrites target/*.jar in place, which would
# break a JVM still reading it. A changed jar is swapped in by rename; running JVMs keep the old file.
JARS_CHANGED=0
stage_jars() {
  mkdir -p "$RUN/jars"
  local src dst
  for src in "$COORD_JAR_BUILT" "$WORKER_JAR_BUILT"; do
    dst=$RUN/jars/$(basename "$src")
    if ! cmp -s "$src" "$dst"; then
      cp "$src" "$dst.tmp.$$"
      mv -f "$dst.tmp.$$" "$dst"
      JARS_CHANGED=1
    fi
  done
  return 0
}

demo_repo() {
  local repo=$RUN/demo-repo
  if [[ -d $repo/.git ]] && git -C "$repo" rev-parse --verify -q HEAD >/dev/null; then
    say "demo repo: $repo (exists)"
    return 0
  fi
  rm -rf "$repo"
  mkdir -p "$repo/src"
  cat >"$repo/README.md" <<'MD'
# Kage Bunshin demo repo

A tiny repository for the quickstart's demo task. Each agent works on its own branch
`kage/<task>/<agent>` in its own worktree; this checkout stays on `main`.
MD
  cat >"$repo/src/hello.py" <<'PY'
def greet(name: str) -> str:
    return f"Hello, {name}!"


if __name__ == "__main__":
    print(greet("shadow clone"))
PY
  git -C "$repo" init -q -b main
  git -C "$repo" add README.md src/hello.py
  git -C "$repo" -c user.name="Kage Quickstart" -c user.email="quickstart@kage.invalid" \
    -c commit.gpgsign=false commit -q -m "Demo repo for the Kage Bunshin quickstart"
  say "demo repo: created $repo"
}

agents_file() {
  local file=$RUN/agents.yml tmp claude_entry
  tmp=$(mktemp "$RUN/agents.yml.XXXXXX")
  if command -v claude >/dev/null 2>&1 && [[ -n ${ANTHROPIC_API_KEY:-} ]]; then
    say "claude-code runs the real Claude Code CLI ($(command -v claude)) with ANTHROPIC_API_KEY"
    claude_entry=$(
      cat <<'YML'
  claude-code:
    type: command
    argv: ["claude", "-p", "{prompt}", "--output-format", "json", "--permission-mode", "acceptEdits"]
    output: claude-json
    env: [ANTHROPIC_API_KEY]
YML
    )
  else
    say "claude not installed (or no ANTHROPIC_API_KEY): claude-code is served by the bundled demo agent ($DEMO_AGENT)"
    claude_entry=$(
      cat <<YML
  claude-code:
    type: command
    argv: ["$DEMO_AGENT", "-p", "{prompt}", "--output-format", "json"]
    output: claude-json
    env: []
    model: demo
YML
    )
  fi
  cat >"$tmp" <<YML
# Written by ops/quickstart.sh; rewritten on every start (edit ops/quickstart.sh, not this file).
# Same format as ops/agents/agents.yml: argv is run as-is (no shell), {prompt} is replaced.
agents:
$claude_entry
  demo:
    type: command
    argv: ["$DEMO_AGENT", "-p", "{prompt}", "--output-format", "json"]
    output: claude-json
    env: []
    model: demo
YML
  if cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$file"
    AGENTS_CHANGED=1
  fi
}
AGENTS_CHANGED=0

start_coordinator() {
  local pidfile=$RUN/coordinator.pid pid recorded
  if pid=$(running_pid "$pidfile"); then
    recorded=$(cat "$RUN/coordinator.port" 2>/dev/null || printf '?')
    if [[ $recorded != "$PORT" ]]; then
      die "the quickstart coordinator from $RUN (pid $pid) listens on port $recorded, not $PORT: run '$SELF stop' first, or use PORT=$recorded"
    fi
    # its settings were checked by cmd_start (check_same_settings)
    if wait_healthy "$pid"; then
      say "coordinator: reusing the running one (pid $pid, $(url))"
      return 0
    fi
    log_tail "$RUN/coordinator.log"
    die "the coordinator from an earlier start (pid $pid) runs but is not healthy: '$SELF stop', then start again"
  fi
  if [[ -f $pidfile ]]; then
    say "coordinator: removing the stale pid file (pid $(read_pid "$pidfile") no longer runs)"
    rm -f "$pidfile"
  fi
  check_port_free
  launch "$RUN/coordinator.log" "$pidfile" "$RUN/jars/kage-coordinator.jar" \
    PORT="$PORT" MICRONAUT_SERVER_HOST="$HOST" KAGE_DEV_MODE=true KAGE_AGENTS_FILE="$RUN/agents.yml"
  printf '%s\n' "$PORT" >"$RUN/coordinator.port"
  rm -f "$RUN/coordinator.env" # a file from an earlier run keeps its mode: made anew, private
  (umask 077 && fleet_settings >"$RUN/coordinator.env") # DATABASE_URL may hold a password
  pid=$(read_pid "$pidfile")
  say "coordinator: started (pid $pid, port $PORT, log $RUN/coordinator.log); waiting up to ${HEALTH_WAIT}s for health ..."
  if ! wait_healthy "$pid"; then
    log_tail "$RUN/coordinator.log"
    die "the coordinator did not become healthy (log: $RUN/coordinator.log)"
  fi
  say "coordinator: healthy at $(url)"
}

start_workers() {
  local i pidfile pid f n
  local -a fresh=()
  mkdir -p "$RUN/work"
  for ((i = 1; i <= WORKERS; i++)); do
    pidfile=$RUN/worker-$i.pid
    if pid=$(running_pid "$pidfile"); then
      say "worker quickstart-$i: reusing the running one (pid $pid)"
      continue
    fi
    if [[ -f $pidfile ]]; then
      say "worker quickstart-$i: removing the stale pid file"
      rm -f "$pidfile"
    fi
    launch "$RUN/worker-$i.log" "$pidfile" "$RUN/jars/kage-worker.jar" \
      -u PORT KAGE_WORKER_ID="quickstart-$i" KAGE_WORK_DIR="$RUN/work" \
      KAGE_DEFAULT_REPO="$RUN/demo-repo" KAGE_AGENTS_FILE="$RUN/agents.yml"
    say "worker quickstart-$i: started (pid $(read_pid "$pidfile"), log $RUN/worker-$i.log)"
    fresh+=("$i")
  done
  # workers from an earlier start with a larger KAGE_QUICKSTART_WORKERS
  while IFS= read -r f; do
    n=${f##*/worker-}
    n=${n%.pid}
    if [[ $n =~ ^[0-9]+$ ]] && ((n > WORKERS)) && pid=$(running_pid "$f"); then
      say "worker quickstart-$n: also running from an earlier start (pid $pid); '$SELF stop' stops it"
    fi
  done < <(worker_pidfiles)
  ((${#fresh[@]})) || return 0
  sleep 3
  for i in "${fresh[@]}"; do
    if ! running_pid "$RUN/worker-$i.pid" >/dev/null; then
      log_tail "$RUN/worker-$i.log"
      rm -f "$RUN/worker-$i.pid"
      die "worker quickstart-$i exited right after starting (log: $RUN/worker-$i.log)"
    fi
  done
  say "workers: ${#fresh[@]} started, all still running after 3s"
}

print_hints() { # task_id
  local id=$1 redis="redis-cli" psql_url stop_cmd="$SELF stop"
  psql_url=$(shown_url "$DATABASE_URL")
  [[ -n ${KAGE_RUN_DIR:-} ]] && stop_cmd="KAGE_RUN_DIR=$RUN $SELF stop"
  # passwords masked (these lines reach terminals and CI logs): *** stands for your user and password
  [[ $REDIS_URL != redis://127.0.0.1:6379 && $REDIS_URL != redis://localhost:6379 ]] && redis="redis-cli -u '$(shown_url "$REDIS_URL")'"
  # psql wants the libpq form
  [[ $psql_url == jdbc:* ]] && psql_url='<your DATABASE_URL in postgresql://user@host:port/db form>'
  cat <<TXT

[kage] ---------------------------------------------------------------- next steps
In a browser (key $DEV_KEY):
  $(url)/             the dashboard: submit, watch tasks live, queues, workers, budgets, limits, errors
  $(url)/swagger-ui   the API, browsable (OpenAPI document at $(url)/swagger/kage-coordinator.yml)
  $(url)/prometheus   metrics (workers serve theirs when KAGE_WORKER_METRICS_PORT is set)
Submit a task the seed's way:
  curl -X POST $(url)/api/v1/tasks -H 'X-API-Key: $DEV_KEY' -d '{"description": "Quick test", "cli_assignments": [{"cli_name": "claude-code", "timeout": 60}]}'
Look at this task:
  curl -s $(url)/api/v1/tasks/$id -H 'X-API-Key: $DEV_KEY'
The same with the kage client (ops/kage --help):
  export KAGE_URL=$(url) KAGE_API_KEY=$DEV_KEY
  ops/kage status $id
  ops/kage submit "Quick test" --agent claude-code --repo $RUN/demo-repo --wait
  ops/kage queues; ops/kage workers; ops/kage watch
The queue in Redis:
  $redis XINFO GROUPS '$KAGE_NAMESPACE:jobs:{claude-code}:normal'
  $redis XRANGE '$KAGE_NAMESPACE:jobs:{claude-code}:normal' - +
  $redis HGETALL '$KAGE_NAMESPACE:task:{default}:$id'
  $redis --scan --pattern '$KAGE_NAMESPACE:*'
The rows in Postgres:
  psql '$psql_url' -c "SELECT cli_name, status, tokens_in, tokens_out, cost, branch, diff_stat FROM $KAGE_DB_SCHEMA.execution_results WHERE task_id = '$id'"
  psql '$psql_url' -c "SELECT cli_name, error_type, error_message, error_details, occurred_at FROM $KAGE_DB_SCHEMA.task_errors WHERE task_id = '$id'"
The agents' branches:
  git -C $RUN/demo-repo branch --list 'kage/*'
Logs:
  $RUN/coordinator.log
  $RUN/worker-*.log
Stop the fleet (Redis and Postgres keep running; 'ops/services.sh down' stops what it started):
  $stop_cmd
TXT
}

cmd_start() {
  if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || ((10#$PORT < 1 || 10#$PORT > 65535)); then
    die "PORT must be a port number (got '$PORT')"
  fi
  if ! [[ $WORKERS =~ ^[0-9]{1,3}$ ]] || ((10#$WORKERS < 1)); then
    die "KAGE_QUICKSTART_WORKERS must be a whole number from 1 to 999 (got '$WORKERS')"
  fi
  PORT=$((10#$PORT))
  WORKERS=$((10#$WORKERS))
  # what this needs on the machine itself fails first, before anything is started or installed
  find_java
  say "Java: $JAVA_HOME ($(java_home_version "$JAVA_HOME"))"
  command -v git >/dev/null 2>&1 ||
    die "git is not installed; the demo repo and the workers' worktrees need it: sudo apt-get install git (Fedora: sudo dnf install git), then run $SELF again"
  mkdir -p "$RUN"
  RUN=$(cd "$RUN" && pwd)
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$RUN/.lock"
    flock -n 9 || die "another '$SELF' is working on $RUN right now; wait for it to finish"
  fi

  say "run dir: $RUN"
  # fail fast, before services and the build, when the port belongs to someone else or the
  # running coordinator was started with other settings
  local running
  if running=$(running_pid "$RUN/coordinator.pid"); then
    check_same_settings "$running"
  else
    check_port_free
  fi
  # 9>&-: a Redis or Postgres started from here must not inherit the lock, or it outlives this run and refuses the next
  "$ROOT/ops/services.sh" up 9>&- || die "Redis/Postgres are not ready (see above)"
  build
  stage_jars
  demo_repo
  agents_file
  if any_running; then
    ((JARS_CHANGED)) && warn "the jars changed since the running processes started; they keep the old build until '$SELF stop' and a new start"
    ((AGENTS_CHANGED)) && warn "the agents file changed; running processes use the old one until '$SELF stop' and a new start"
  fi
  start_coordinator
  start_workers

  say "submitting a demo task (agents claude-code and demo, repo $RUN/demo-repo) ..."
  local task_id rc=0
  if ! task_id=$(client submit --url "$(url)" --key "$DEV_KEY" \
    --description "Quickstart demo: add one line to KAGE_DEMO.md that says which agent you are" \
    --agent claude-code --agent demo --repo "$RUN/demo-repo" --timeout 120); then
    printf '%s\n' "$task_id" >&2
    die "the demo task was not accepted"
  fi
  task_id=$(printf '%s' "$task_id" | tail -n 1)
  [[ -n $task_id ]] || die "submit printed no task id"
  say "task $task_id submitted; waiting up to ${TASK_WAIT}s for it ..."
  client wait --url "$(url)" --key "$DEV_KEY" --wait "$TASK_WAIT" "$task_id" || rc=$?
  print_hints "$task_id"
  if ((rc != 0)); then
    say "the demo task $task_id did NOT complete (see above and the logs in $RUN)"
    exit 1
  fi
  say "the fleet is up and the demo task completed."
}

# ---------------------------------------------------------------- stop / status

cmd_stop() {
  if [[ ! -d $RUN ]]; then
    say "nothing to stop ($RUN does not exist)"
    return 0
  fi
  RUN=$(cd "$RUN" && pwd)
  local f pid name
  local -a files=() pids=() names=()
  [[ -f $RUN/coordinator.pid ]] && files+=("$RUN/coordinator.pid")
  while IFS= read -r f; do files+=("$f"); done < <(worker_pidfiles)
  for f in "${files[@]}"; do
    name=$(basename "$f" .pid)
    if pid=$(running_pid "$f"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("$name")
    else
      pid=$(read_pid "$f")
      if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        say "$name: pid $pid runs but is not a process this quickstart started; left alone"
      else
        say "$name: was not running"
      fi
      rm -f "$f"
    fi
  done
  if ((${#pids[@]} == 0)); then
    say "no quickstart processes were running in $RUN"
  else
    say "stopping ${names[*]} (TERM; up to ${STOP_WAIT}s before KILL) ..."
    local deadline=$((SECONDS + STOP_WAIT)) alive i
    while :; do
      alive=0
      for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && alive=1
      done
      ((alive && SECONDS < deadline)) || break
      sleep 0.5
    done
    for i in "${!pids[@]}"; do
      pid=${pids[i]}
      if is_ours "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        say "${names[i]}: pid $pid did not stop within ${STOP_WAIT}s: killed"
      else
        say "${names[i]}: stopped (pid $pid)"
      fi
      rm -f "$RUN/${names[i]}.pid"
    done
  fi
  rm -f "$RUN/coordinator.port" "$RUN/coordinator.env"
  say "Redis and Postgres keep running; 'ops/services.sh down' stops the ones it started."
}

cmd_status() {
  if [[ ! -d $RUN ]]; then
    say "not started ($RUN does not exist)"
    return 1
  fi
  RUN=$(cd "$RUN" && pwd)
  local rc=0 pid f name port
  if pid=$(running_pid "$RUN/coordinator.pid"); then
    port=$(cat "$RUN/coordinator.port" 2>/dev/null || printf '%s' "$PORT")
    PORT=$port
    local health="unknown (no Java 21+ to ask)"
    if (find_java >/dev/null 2>&1); then
      find_java
      if client health --url "$(url)" --wait 0 >/dev/null 2>&1; then
        health="healthy"
      else
        health="NOT healthy"
        rc=1
      fi
    fi
    say "coordinator: running (pid $pid, $(url)), $health"
  else
    say "coordinator: not running"
    rc=1
  fi
  local workers=0
  while IFS= read -r f; do
    name=$(basename "$f" .pid)
    if pid=$(running_pid "$f"); then
      say "${name/worker-/worker quickstart-}: running (pid $pid)"
      workers=$((workers + 1))
    else
      say "${name/worker-/worker quickstart-}: not running (stale pid file)"
      rc=1
    fi
  done < <(worker_pidfiles)
  ((workers > 0)) || {
    say "workers: none running"
    rc=1
  }
  say "logs: $RUN/coordinator.log, $RUN/worker-*.log"
  "$ROOT/ops/services.sh" status | sed 's/^/[kage] /' || rc=1
  return "$rc"
}

case ${1:-start} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
