#!/usr/bin/env bash
# ops/services.sh up|down|status [--purge]
#
# Makes Redis (>= 7) and PostgreSQL (>= 14) reachable at REDIS_URL and DATABASE_URL.
#
#   up      reuse what is already running; otherwise (local host only) start installed
#           binaries, or install them from Debian packages when we may; then make sure
#           the database named in DATABASE_URL exists. Idempotent.
#   status  one line per service: reachable or not, version.
#   down    stop only what this script started (it records that in the state dir);
#           services it found running are left alone. `down --purge` also deletes the
#           data of the private instances it created.
#
# Environment:
#   REDIS_URL        default redis://127.0.0.1:6379   (redis://[user][:password@]host[:port][/db])
#   DATABASE_URL     default postgresql://postgres@127.0.0.1:5432/kage
#                    (libpq URL, or jdbc:postgresql://host:port/db?user=..&password=..)
#   KAGE_STATE_DIR   where started instances keep data, logs and markers
#                    (default <repo>/.run/services)
#   KAGE_SERVICES_NO_INSTALL=1   never install packages, only report how to get them
#   KAGE_SERVICES_WAIT           seconds to wait for readiness (default 30)
#   KAGE_SERVICES_TRUST_LOOPBACK=1  an installed Debian cluster this script starts, whose login fails, is made to trust
#                                loopback TCP logins (root or passwordless sudo); without it, the lines are printed
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shown_url and the like; this script's own log/warn/die, defined below, replace common.sh's
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
STATE_DIR=${KAGE_STATE_DIR:-$REPO_DIR/.run/services}
WAIT_SECONDS=${KAGE_SERVICES_WAIT:-30}
REDIS_MIN_MAJOR=7
PG_MIN_VERSION_NUM=140000

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kage}

APT_UPDATED=0

log() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

usage() { # the comment block at the top, whatever its length
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
}


# ---------------------------------------------------------------- URL parsing

urldecode() {
  local s=$1
  if [[ $s == *%* ]]; then
    s=${s//\\/\\\\}
    printf '%b' "${s//%/\\x}"
  else
    printf '%s' "$s"
  fi
}

# split_authority AUTHORITY -> sets AUTH_USER AUTH_PASS AUTH_HOST AUTH_PORT (raw, undecoded)
split_authority() {
  local authority=$1 userinfo="" hostport
  AUTH_USER="" AUTH_PASS="" AUTH_HOST="" AUTH_PORT=""
  if [[ $authority == *@* ]]; then
    userinfo=${authority%@*}
    hostport=${authority##*@}
  else
    hostport=$authority
  fi
  if [[ -n $userinfo ]]; then
    if [[ $userinfo == *:* ]]; then
      AUTH_USER=${userinfo%%:*}
      AUTH_PASS=${userinfo#*:}
    else
      AUTH_USER=$userinfo
    fi
  fi
  if [[ $hostport == \[* ]]; then # [ipv6]:port
    AUTH_HOST=${hostport#\[}
    AUTH_HOST=${AUTH_HOST%%\]*}
    local after=${hostport#*\]}
    if [[ $after == :* ]]; then AUTH_PORT=${after#:}; fi
  elif [[ $hostport == *:*:* ]]; then # bare ipv6 without port
    AUTH_HOST=$hostport
  elif [[ $hostport == *:* ]]; then
    AUTH_HOST=${hostport%%:*}
    AUTH_PORT=${hostport#*:}
  else
    AUTH_HOST=$hostport
  fi
}

# Sets R_HOST R_PORT R_USER R_PASS R_DB R_TLS
parse_redis_url() {
  local url=$1 rest
  R_TLS=0
  case $url in
    redis://*) rest=${url#redis://} ;;
    rediss://*)
      rest=${url#rediss://}
      R_TLS=1
      ;;
    *://*) die "REDIS_URL must start with redis:// or rediss:// (got '$(shown_url "$url")')" ;;
    *) rest=$url ;;
  esac
  rest=${rest%%\?*}
  local authority=${rest%%/*} path=""
  [[ $rest == */* ]] && path=${rest#*/}
  split_authority "$authority"
  R_HOST=${AUTH_HOST:-127.0.0.1}
  R_PORT=${AUTH_PORT:-6379}
  R_USER=$(urldecode "$AUTH_USER")
  R_PASS=$(urldecode "$AUTH_PASS")
  R_DB=${path:-0}
  # the text is not shown: with an unescaped '/' in the password, what follows its ':' is read as the port
  [[ $R_PORT =~ ^[0-9]+$ ]] || die "REDIS_URL has a bad port (a user or password holding '/', '?', '#' or '@' must be percent-encoded: %2F, %3F, %23, %40)"
  [[ $R_DB =~ ^[0-9]+$ ]] || die "REDIS_URL has a bad database number '$R_DB'"
}

# Sets P_HOST P_PORT P_USER P_PASS P_DB
parse_database_url() {
  local url=$1 rest query=""
  case $url in
    jdbc:postgresql://*) rest=${url#jdbc:postgresql://} ;;
    jdbc:postgresql:*) # short form jdbc:postgresql:dbname
      rest="/${url#jdbc:postgresql:}"
      ;;
    postgresql://*) rest=${url#postgresql://} ;;
    postgres://*) rest=${url#postgres://} ;;
    *) die "DATABASE_URL must be postgresql://user@host:port/db or jdbc:postgresql://host:port/db?user=... (got '$(shown_url "$url")')" ;;
  esac
  if [[ $rest == *\?* ]]; then
    query=${rest#*\?}
    rest=${rest%%\?*}
  fi
  local authority=${rest%%/*} path=""
  [[ $rest == */* ]] && path=${rest#*/}
  split_authority "$authority"
  local host=$AUTH_HOST port=$AUTH_PORT user=$AUTH_USER pass=$AUTH_PASS db=$path
  local kv k v
  local -a pairs=()
  if [[ -n $query ]]; then
    IFS='&' read -r -a pairs <<<"$query"
  fi
  for kv in "${pairs[@]}"; do
    k=${kv%%=*}
    v=""
    [[ $kv == *=* ]] && v=${kv#*=}
    case $k in
      user) user=$v ;;
      password) pass=$v ;;
      host) host=$v ;;
      port) port=$v ;;
      dbname) db=$v ;;
    esac
  done
  P_HOST=$(urldecode "${host:-127.0.0.1}")
  [[ $P_HOST == /* ]] && P_HOST=127.0.0.1 # unix socket dir in the URL: probe over TCP instead
  P_PORT=${port:-5432}
  P_USER=$(urldecode "${user:-postgres}")
  P_PASS=$(urldecode "$pass")
  P_DB=$(urldecode "${db:-$P_USER}")
  [[ $P_PORT =~ ^[0-9]+$ ]] || die "DATABASE_URL has a bad port (a user or password holding '/', '?', '#' or '@' must be percent-encoded: %2F, %3F, %23, %40)"
  [[ -n $P_DB ]] || die "DATABASE_URL names no database"
}

is_local_host() {
  case $1 in
    127.* | localhost | ::1 | 0:0:0:0:0:0:0:1) return 0 ;;
    *) return 1 ;;
  esac
}

# host as bash /dev/tcp wants it
tcp_host() {
  case $1 in
    localhost) printf '127.0.0.1' ;;
    *) printf '%s' "$1" ;;
  esac
}

tcp_open() { # host port
  # shellcheck disable=SC2016 # the inner script expands its own positional parameters
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$(tcp_host "$1")" "$2" 2>/dev/null
}

have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- privileges

SUDO=()
can_admin() {
  if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
    return 0
  fi
  if have sudo && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
    return 0
  fi
  return 1
}

# apt_ready: we may install Debian packages here (apt-get, root or passwordless sudo, no KAGE_SERVICES_NO_INSTALL);
# updates the package lists once.
apt_ready() {
  [[ ${KAGE_SERVICES_NO_INSTALL:-0} == 1 ]] && return 1
  have apt-get || return 1
  can_admin || return 1
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update (once) ..."
    # A fresh VM's unattended-upgrades holds apt's locks for minutes: wait for them rather than fail.
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq || return 1
    APT_UPDATED=1
  fi
}

# apt_candidate_ok PACKAGE MIN_MAJOR WHAT HINT: the version apt would install (after apt_ready) is at least
# MIN_MAJOR; else says so (with HINT, where to get a newer one) instead of installing a version we would reject.
apt_candidate_ok() {
  local pkg=$1 min=$2 what=$3 hint=$4 cand major
  cand=$(LC_ALL=C apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | head -n 1)
  if [[ -z $cand || $cand == "(none)" ]]; then
    warn "$what: apt has no $pkg package here (apt-cache policy $pkg); not installing it. $hint"
    return 1
  fi
  major=${cand#*:} # "5:7.0.15-1~deb12u1" -> 7, "15+248" -> 15
  major=${major%%[!0-9]*}
  if [[ $major =~ ^[0-9]+$ ]] && ((major < min)); then
    warn "$what: apt would install $pkg $cand, older than version $min, the oldest Kage Bunshin supports; not installing it. $hint"
    return 1
  fi
}

apt_install() { # packages...
  apt_ready || return 1
  log "installing $* from Debian packages ..."
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" || return 1
}

# run a command as the OS user that must own a postgres data dir
PG_OS_USER=""
as_pg_user() {
  if [[ -n $PG_OS_USER ]]; then
    if have runuser; then
      runuser -u "$PG_OS_USER" -- "$@"
    else
      local q
      printf -v q '%q ' "$@"
      su "$PG_OS_USER" -s /bin/sh -c "$q"
    fi
  else
    "$@"
  fi
}

# ---------------------------------------------------------------- redis

redis_cli() { # args...
  local -a cmd=(redis-cli -h "$R_HOST" -p "$R_PORT" -n "$R_DB")
  [[ $R_TLS -eq 1 ]] && cmd+=(--tls)
  [[ -n $R_USER ]] && cmd+=(--user "$R_USER")
  if [[ -n $R_PASS ]]; then
    REDISCLI_AUTH=$R_PASS timeout 5 "${cmd[@]}" "$@"
  else
    timeout 5 "${cmd[@]}" "$@"
  fi
}

# Send one inline command over /dev/tcp (plain TCP only); prints the raw reply.
redis_raw() { # command...
  local auth=""
  if [[ -n $R_PASS ]]; then
    if [[ -n $R_USER ]]; then auth="AUTH $R_USER $R_PASS"; else auth="AUTH $R_PASS"; fi
  fi
  # shellcheck disable=SC2016 # the inner script expands its own positional parameters
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    cr=$(printf "\r")
    if [[ -n $3 ]]; then
      printf "%s\r\n" "$3" >&3
      IFS= read -r -t 3 _ <&3 || exit 1
    fi
    printf "%s\r\nQUIT\r\n" "$4" >&3
    while IFS= read -r -t 3 line <&3; do printf "%s\n" "${line%"$cr"}"; done
  ' _ "$(tcp_host "$R_HOST")" "$R_PORT" "$auth" "$*" 2>/dev/null || true
}

redis_ping_reply() { # prints the reply to PING: PONG, or e.g. "LOADING ...", "NOAUTH ...", nothing
  if have redis-cli; then
    redis_cli ping 2>/dev/null || true
  else
    [[ $R_TLS -eq 1 ]] && return 0
    redis_raw PING | head -n1
  fi
}

redis_ping() {
  [[ $(redis_ping_reply) == *PONG* ]]
}

redis_version() {
  local info
  if have redis-cli; then
    info=$(redis_cli info server 2>/dev/null || true)
  else
    info=$(redis_raw INFO server)
  fi
  info=$(printf '%s\n' "$info" | tr -d '\r' | sed -n 's/^redis_version://p' | head -n1)
  printf '%s' "${info:-unknown}"
}

redis_check_version() {
  local v major
  v=$(redis_version)
  major=${v%%.*}
  if [[ $major =~ ^[0-9]+$ ]] && ((major < REDIS_MIN_MAJOR)); then
    warn "redis at $R_HOST:$R_PORT is version $v; Kage Bunshin needs Redis >= $REDIS_MIN_MAJOR (XPENDING with IDLE, XINFO GROUPS lag, Lua scripts using them). Upgrade it (packages.redis.io has current versions) or use 'docker compose up -d redis'."
    return 1
  fi
  [[ $v == unknown ]] && warn "redis at $R_HOST:$R_PORT: could not read its version"
  log "redis: version $v"
}

redis_wait() { # up to WAIT_SECONDS (wall clock: a probe itself may take seconds)
  local deadline=$((SECONDS + WAIT_SECONDS))
  while :; do
    redis_ping && return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# redis_binary_too_old BIN: BIN's own version (redis-server --version: "Redis server v=7.0.15 sha=...") is below
# REDIS_MIN_MAJOR; says so. Asked before starting it: started, an old Redis would be refused only once it ran (and left
# running on the port, where the next `up` found it and refused it again).
redis_binary_too_old() {
  local v major
  v=$("$1" --version 2>/dev/null | sed -n 's/^.*v=\([0-9][0-9.]*\).*$/\1/p' | head -n 1)
  major=${v%%.*}
  if [[ $major =~ ^[0-9]+$ ]] && ((major < REDIS_MIN_MAJOR)); then
    warn "redis: $1 is version $v; Kage Bunshin needs Redis >= $REDIS_MIN_MAJOR (XPENDING with IDLE, XINFO GROUPS lag, Lua scripts using them), so it is not started. Install a newer one (packages.redis.io has current versions), point REDIS_URL at one, or use 'docker compose up -d redis'."
    return 0
  fi
  return 1
}

redis_marker() { # bin dir: record the redis-server we started, so `down` stops it
  local pid=""
  [[ -s $2/redis.pid ]] && pid=$(<"$2/redis.pid")
  printf 'kind=redis-server\npid=%s\nbin=%s\nport=%s\n' "$pid" "$1" "$R_PORT" >"$STATE_DIR/redis-$R_PORT.started"
  printf '%s' "$pid"
}

# -> 0 ready, 1 not started, 2 started but not ready (recorded for `down`)
redis_start_local() {
  local bin dir bind
  bin=$(command -v redis-server)
  dir="$STATE_DIR/redis-$R_PORT"
  mkdir -p "$dir"
  case $R_HOST in
    ::1 | 0:0:0:0:0:0:0:1) bind=::1 ;;
    localhost) bind=127.0.0.1 ;;
    *) bind=$R_HOST ;;
  esac
  local -a args=(--daemonize yes --port "$R_PORT" --bind "$bind" --dir "$dir"
    --save "" --appendonly no --logfile "$dir/redis.log" --pidfile "$dir/redis.pid")
  if [[ -n $R_PASS && ( -z $R_USER || $R_USER == default ) ]]; then
    args+=(--requirepass "$R_PASS")
  elif [[ -n $R_PASS ]]; then
    # REDIS_URL names a user: this instance has that user, with that password and every right, and no other login
    args+=(--user "$R_USER" on ">$R_PASS" '~*' '&*' '+@all' --user default off)
  fi
  rm -f "$dir/redis.pid"
  if ! "$bin" "${args[@]}"; then
    warn "redis-server failed to start; see $dir/redis.log"
    return 1
  fi
  # recorded at once (its pid file may not exist yet: down falls back to it), so `down` can stop it if it never answers
  redis_marker "$bin" "$dir" >/dev/null
  if ! redis_wait; then
    warn "redis-server did not answer PING within ${WAIT_SECONDS}s; last log lines:"
    tail -n 5 "$dir/redis.log" >&2 || true
    return 2
  fi
  local pid
  pid=$(redis_marker "$bin" "$dir")
  log "redis: started redis-server from $bin on $bind:$R_PORT (pid ${pid:-?}, data $dir)"
}

# started_not_ready SERVICE HOST:PORT: the how-to when a server this script started does not answer in time
started_not_ready() {
  cat >&2 <<EOF
$1: the server this script started at $2 did not become ready (see above); it is recorded as started here, so:
    $0 up        # again waits for it (a larger KAGE_SERVICES_WAIT, now ${WAIT_SECONDS}s, waits longer: a long recovery)
    $0 down      # stops it (then see its log)
EOF
}

redis_how_to() {
  cat >&2 <<EOF
redis: nothing answers at $R_HOST:$R_PORT and this script could not start one. Get Redis >= 7 with either:
    docker compose up -d redis postgres        # from $REPO_DIR
    sudo apt-get update && sudo apt-get install -y redis-server && $0 up
  or point REDIS_URL at a running Redis.
EOF
}

redis_up() {
  parse_redis_url "$REDIS_URL"
  if redis_ping; then
    log "redis: already running at $R_HOST:$R_PORT (reused)"
    redis_check_version || return 1
    return 0
  fi
  local reply=""
  if tcp_open "$R_HOST" "$R_PORT"; then
    # asked first, of a remote Redis too: one that answers but refuses the login is no unreachable one
    reply=$(redis_ping_reply)
    case $reply in
      *NOAUTH* | *WRONGPASS* | *"invalid password"* | *"invalid username"*)
        warn "redis: $R_HOST:$R_PORT refuses the login ($reply): put the right user/password in REDIS_URL (redis://[user]:password@host:port)"
        return 1
        ;;
    esac
  fi
  if ! is_local_host "$R_HOST"; then
    warn "redis: $R_HOST:$R_PORT is not reachable${reply:+ as Redis ($reply)} and is not a local address; not starting anything"
    redis_how_to
    return 1
  fi
  if tcp_open "$R_HOST" "$R_PORT"; then
    # Redis loading its data (-LOADING), or docker-proxy accepting before the container is up
    log "redis: something listens on $R_HOST:$R_PORT but does not answer PING yet${reply:+ ($reply)}; waiting up to ${WAIT_SECONDS}s ..."
    if ! redis_wait; then
      warn "redis: something listens on $R_HOST:$R_PORT but did not answer PING like Redis within ${WAIT_SECONDS}s (wrong password or another program?)"
      return 1
    fi
    log "redis: answers at $R_HOST:$R_PORT now (reused)"
    redis_check_version || return 1
    return 0
  fi
  if ! have redis-server; then
    if ! apt_ready; then
      redis_how_to
      return 1
    fi
    apt_candidate_ok redis-server "$REDIS_MIN_MAJOR" redis \
      "Get Redis >= $REDIS_MIN_MAJOR from packages.redis.io, or 'docker compose up -d redis' from $REPO_DIR." || return 1
    if apt_install redis-server redis-tools; then
      log "redis: installed redis-server from Debian packages ($(command -v redis-server))"
      # the package may have started its own service on the default port
      if redis_ping; then
        log "redis: the Debian package's service answers at $R_HOST:$R_PORT (reused; managed by the system, not by this script)"
        redis_check_version || return 1
        return 0
      fi
    else
      redis_how_to
      return 1
    fi
  fi
  if redis_binary_too_old "$(command -v redis-server)"; then
    return 1
  fi
  local started=0
  redis_start_local || started=$?
  if [[ $started -eq 2 ]]; then
    started_not_ready redis "$R_HOST:$R_PORT"
    return 1
  fi
  [[ $started -eq 0 ]] || return 1
  redis_check_version || return 1
}

redis_status() {
  parse_redis_url "$REDIS_URL"
  local extra=""
  [[ -f $STATE_DIR/redis-$R_PORT.started ]] && extra=" (started by ops/services.sh)"
  if redis_ping; then
    log "redis: reachable at $R_HOST:$R_PORT, version $(redis_version)$extra"
    return 0
  fi
  log "redis: NOT reachable at $R_HOST:$R_PORT"
  return 1
}

pid_is() { # pid name-fragment
  [[ -n $1 && -r /proc/$1/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}

redis_down() {
  parse_redis_url "$REDIS_URL"
  local marker="$STATE_DIR/redis-$R_PORT.started"
  if [[ ! -f $marker ]]; then
    if redis_ping; then
      log "redis: not started by ops/services.sh, left running at $R_HOST:$R_PORT"
    else
      log "redis: not running at $R_HOST:$R_PORT, nothing to stop"
    fi
    return 0
  fi
  local pid
  pid=$(sed -n 's/^pid=//p' "$marker")
  if [[ -z $pid && -s $STATE_DIR/redis-$R_PORT/redis.pid ]]; then
    pid=$(<"$STATE_DIR/redis-$R_PORT/redis.pid")
  fi
  if pid_is "$pid" redis-server; then
    kill -TERM "$pid"
    local i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
      pid_is "$pid" redis-server || break
      sleep 0.5
    done
    if pid_is "$pid" redis-server; then
      warn "redis: pid $pid did not stop within ${WAIT_SECONDS}s"
      return 1
    fi
    log "redis: stopped redis-server pid $pid (started by ops/services.sh)"
  else
    log "redis: the redis-server this script started (pid ${pid:-?}) is no longer running"
  fi
  rm -f "$marker"
  if [[ $PURGE -eq 1 ]]; then
    rm -rf "$STATE_DIR/redis-$R_PORT"
    log "redis: removed $STATE_DIR/redis-$R_PORT"
  fi
}

# ---------------------------------------------------------------- postgres

pg_env() { # run a command with PGPASSWORD/PGCONNECT_TIMEOUT set
  if [[ -n $P_PASS ]]; then
    PGPASSWORD=$P_PASS PGCONNECT_TIMEOUT=5 "$@"
  else
    PGCONNECT_TIMEOUT=5 "$@"
  fi
}

pg_tool() { # name of a client tool: PATH first, then the newest /usr/lib/postgresql/*/bin
  local t=$1 d
  if have "$t"; then
    command -v "$t"
    return 0
  fi
  d=$(pg_bindir) || return 1
  [[ -x $d/$t ]] && printf '%s\n' "$d/$t"
}

# pg_bindir [VERSION]: server binaries of VERSION (a data dir's PG_VERSION), else the newest:
# /usr/lib/postgresql/<version>/bin or /usr/pgsql-<version>/bin, else initdb/pg_ctl on PATH (when they are that version)
# pg_ctlcluster_skips_systemctl: Debian's pg_ctlcluster takes --skip-systemctl-redirect (it then starts the cluster
# itself instead of asking systemd, which a container may not run). Read from the script: it has no --help.
pg_ctlcluster_skips_systemctl() {
  local ctl
  ctl=$(command -v pg_ctlcluster) || return 1
  grep -q 'skip-systemctl-redirect' "$ctl" 2>/dev/null
}

pg_bindir() {
  local want=${1:-} d best v
  if [[ -n $want ]]; then
    for d in /usr/lib/postgresql/$want/bin /usr/pgsql-$want/bin; do
      if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
        printf '%s\n' "$d"
        return 0
      fi
    done
    if have initdb && have pg_ctl; then
      v=$(initdb --version 2>/dev/null | sed -n 's/^.*(PostgreSQL) \([0-9][0-9.]*[a-z0-9]*\).*$/\1/p' | head -n 1)
      # "15.20" or "15" for PG_VERSION 15, "9.6.24" for 9.6
      if [[ $v == "$want" || ($v == "$want"* && ${v#"$want"} == [!0-9]*) ]]; then
        dirname "$(command -v initdb)"
        return 0
      fi
    fi
    return 1
  fi
  # Debian's layout, then the PGDG packages' of RHEL and its kin (/usr/pgsql-16/bin, not on PATH)
  best=$(for d in /usr/lib/postgresql/*/bin /usr/pgsql-*/bin; do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then printf '%s\n' "$d"; fi
  done | sort -V | tail -n1)
  if [[ -n $best ]]; then
    printf '%s\n' "$best"
  elif have initdb && have pg_ctl; then
    dirname "$(command -v initdb)"
  else
    return 1
  fi
}

pg_ready() {
  local isready
  if isready=$(pg_tool pg_isready); then
    pg_env "$isready" -q -h "$P_HOST" -p "$P_PORT" -U "$P_USER" -t 3 >/dev/null 2>&1
  else
    tcp_open "$P_HOST" "$P_PORT"
  fi
}

pg_wait() { # up to WAIT_SECONDS (wall clock: a probe itself may take seconds)
  local deadline=$((SECONDS + WAIT_SECONDS))
  while :; do
    pg_ready && return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

psql_run() { # dbname, SQL on stdin, extra psql args...
  local db=$1 psql
  shift
  psql=$(pg_tool psql) || return 127
  pg_env "$psql" -X -q -At -w -v ON_ERROR_STOP=1 -h "$P_HOST" -p "$P_PORT" -U "$P_USER" -d "$db" "$@"
}

pg_version_num() {
  printf 'SHOW server_version_num;\n' | psql_run postgres 2>/dev/null ||
    printf 'SHOW server_version_num;\n' | psql_run template1 2>/dev/null
}

# psql, which the version check and the database check need: installed (postgresql-client) when missing and we may
pg_ensure_psql() {
  pg_tool psql >/dev/null && return 0
  log "postgres: psql is missing (needed to check the version and the database)"
  if apt_install postgresql-client && pg_tool psql >/dev/null; then
    log "postgres: installed postgresql-client ($(pg_tool psql))"
    return 0
  fi
  warn "postgres: psql is missing and this script could not install it; install it, then run '$0 up' again:" \
    "sudo apt-get install postgresql-client (Fedora: sudo dnf install postgresql; macOS: brew install libpq)"
  return 1
}

pg_check_version() {
  if ! pg_tool psql >/dev/null; then
    warn "postgres: psql is missing, cannot read the server version (apt-get install postgresql-client)"
    return 0
  fi
  local num
  num=$(pg_version_num || true)
  if [[ ! $num =~ ^[0-9]+$ ]]; then
    warn "postgres at $P_HOST:$P_PORT: could not read server_version_num as user '$P_USER'"
    return 2
  fi
  if ((num < PG_MIN_VERSION_NUM)); then
    warn "postgres at $P_HOST:$P_PORT is version $num (server_version_num); Kage Bunshin needs PostgreSQL >= 14. Upgrade it (the PGDG apt repository, apt.postgresql.org, has current versions) or use 'docker compose up -d postgres'."
    return 1
  fi
  log "postgres: version $((num / 10000)).$((num % 10000)) (server_version_num $num)"
}

pg_ensure_db() {
  if ! pg_tool psql >/dev/null; then
    warn "postgres: psql is missing, cannot check or create database '$P_DB' (apt-get install postgresql-client)"
    return 1
  fi
  local admin_db=postgres exists
  if ! exists=$(printf "SELECT 1 FROM pg_database WHERE datname = :'db';\n" | psql_run "$admin_db" -v db="$P_DB" 2>/dev/null); then
    admin_db=template1
    exists=$(printf "SELECT 1 FROM pg_database WHERE datname = :'db';\n" | psql_run "$admin_db" -v db="$P_DB") || {
      warn "postgres: cannot log in as '$P_USER' at $P_HOST:$P_PORT to check for database '$P_DB'. Put the password in DATABASE_URL (postgresql://user:password@host:port/db), or on a development machine let pg_hba.conf trust 127.0.0.1/32 and ::1/128 and reload."
      return 1
    }
  fi
  if [[ $exists == 1 ]]; then
    log "postgres: database '$P_DB' exists"
    return 0
  fi
  if printf 'CREATE DATABASE :"db";\n' | psql_run "$admin_db" -v db="$P_DB"; then
    log "postgres: created database '$P_DB'"
  else
    warn "postgres: could not create database '$P_DB' as '$P_USER' (does it have CREATEDB?)"
    return 1
  fi
}

# Prints "version cluster status" of a Debian cluster configured on our port, if any.
pg_cluster_on_port() {
  have pg_lsclusters || return 1
  pg_lsclusters --no-header 2>/dev/null | awk -v p="$P_PORT" '$3 == p { print $1, $2, $4; exit }' | grep .
}

# Only for a cluster this script has just installed: make loopback TCP logins trusted,
# as in the private cluster and the compose file (development machines only).
pg_trust_loopback() { # version cluster
  local hba="/etc/postgresql/$1/$2/pg_hba.conf" tmp
  local -a as=()
  if [[ ! -w $hba ]]; then
    # the usual cloud VM: not root, passwordless sudo (which installed the packages)
    can_admin && [[ ${#SUDO[@]} -gt 0 ]] || return 1
    as=("${SUDO[@]}")
  fi
  "${as[@]}" grep -q 'ops/services.sh' "$hba" && return 0
  tmp=$(mktemp)
  {
    printf '# added by ops/services.sh: trust loopback TCP logins (development machine)\n'
    printf 'host    all             all             127.0.0.1/32            trust\n'
    printf 'host    all             all             ::1/128                 trust\n'
    "${as[@]}" cat "$hba"
  } >"$tmp" || { rm -f "$tmp"; return 1; }
  "${as[@]}" tee "$hba" <"$tmp" >/dev/null || { rm -f "$tmp"; return 1; } # keeps owner and mode
  rm -f "$tmp"
  log "postgres: $hba now trusts loopback TCP logins"
  "${as[@]}" pg_ctlcluster "$1" "$2" reload >/dev/null 2>&1 || true
}

# DATABASE_URL's user can log in (to the postgres or template1 database)
pg_login_ok() {
  [[ $(pg_version_num 2>/dev/null) =~ ^[0-9]+$ ]]
}

# Only for a Debian cluster this script has just started, when DATABASE_URL cannot log in (Debian's pg_hba.conf
# asks for a password over TCP): trust loopback as pg_trust_loopback does, when root or passwordless sudo;
# else say which lines to add.
pg_login_or_trust() { # version cluster
  local ver=$1 name=$2 i
  pg_tool psql >/dev/null || return 0 # pg_ensure_psql, later, says so
  pg_login_ok && return 0
  # Another cluster's access rules are its owner's: changed only when asked (a throwaway CI machine or container)
  if [[ ${KAGE_SERVICES_TRUST_LOOPBACK:-0} == 1 ]] && can_admin && pg_trust_loopback "$ver" "$name"; then
    for ((i = 0; i < 10; i++)); do # the reload takes a moment
      pg_login_ok && return 0
      sleep 0.5
    done
  fi
  warn "postgres: cannot log in as '$P_USER' at $P_HOST:$P_PORT to cluster $ver/$name, which this script started. Put the password in DATABASE_URL, run again with KAGE_SERVICES_TRUST_LOOPBACK=1 (a throwaway machine: this script then adds the lines below itself), or (development machine) add these lines above the other 'host' lines of /etc/postgresql/$ver/$name/pg_hba.conf:"
  {
    printf '    host    all             all             127.0.0.1/32            trust\n'
    printf '    host    all             all             ::1/128                 trust\n'
    printf '  then reload it: sudo pg_ctlcluster %s %s reload\n' "$ver" "$name"
  } >&2
  return 1
}

# pg_major_too_old MAJOR WHAT: PostgreSQL MAJOR (9.6, 13, 16, ...) is below PG_MIN_VERSION_NUM; says so about WHAT,
# which is then not started (started, it would be refused only once it ran, and left running on the port).
pg_major_too_old() {
  local major=${1%%.*}
  if [[ $major =~ ^[0-9]+$ ]] && ((major * 10000 < PG_MIN_VERSION_NUM)); then
    warn "postgres: $2 is PostgreSQL $1; Kage Bunshin needs PostgreSQL >= $((PG_MIN_VERSION_NUM / 10000)), so it is not started. Install a newer one (the PGDG apt repository, apt.postgresql.org, has current versions), point DATABASE_URL at one, or use 'docker compose up -d postgres'."
    return 0
  fi
  return 1
}

# -> 0 ready, 1 not started, 2 started but not ready (recorded for `down`), 3 runs already but not at our address
pg_start_debian_cluster() { # version cluster
  local ver=$1 name=$2 st=""
  pg_major_too_old "$ver" "Debian cluster $ver/$name on port $P_PORT" && return 1
  read -r _ _ st <<<"$(pg_cluster_on_port || true)"
  if [[ $st == online* ]]; then
    # Running, but not at our address (its listen_addresses, or a socket only): not ours to start, to record as started
    # (`down` would stop it) or to put a private cluster beside on its port.
    warn "postgres: Debian cluster $ver/$name on port $P_PORT is $st but does not answer at $P_HOST:$P_PORT; left as it is. Check its listen_addresses in /etc/postgresql/$ver/$name/postgresql.conf, or point DATABASE_URL at the address it listens on"
    return 3
  fi
  can_admin || SUDO=() # not root and no sudo: works only if we own the cluster
  local -a ctl=(pg_ctlcluster)
  if pg_ctlcluster_skips_systemctl; then
    ctl+=(--skip-systemctl-redirect)
  fi
  log "postgres: starting Debian cluster $ver/$name with pg_ctlcluster ..."
  if ! "${SUDO[@]}" "${ctl[@]}" "$ver" "$name" start; then
    # pg_ctlcluster may give up waiting while the server goes on starting (a long recovery)
    read -r _ _ st <<<"$(pg_cluster_on_port || true)"
    [[ $st == online* ]] || return 1
    warn "postgres: pg_ctlcluster $ver $name start failed, but the cluster runs ($st)"
  fi
  # recorded at once, so `down` can stop it even if it never becomes ready
  mkdir -p "$STATE_DIR"
  printf 'kind=pg_ctlcluster\nversion=%s\ncluster=%s\nport=%s\n' "$ver" "$name" "$P_PORT" >"$STATE_DIR/postgres-$P_PORT.started"
  if ! pg_wait; then
    warn "postgres: cluster $ver/$name did not become ready within ${WAIT_SECONDS}s (log: /var/log/postgresql/postgresql-$ver-$name.log)"
    return 2
  fi
  log "postgres: started cluster $ver/$name with pg_ctlcluster on port $P_PORT"
  pg_login_or_trust "$ver" "$name" || true # pg_ensure_db fails later, with the message above
}

# -> 0 ready, 1 not started, 2 started but not ready (recorded for `down`)
pg_start_private() {
  local bindir base data listen want=""
  bindir=$(pg_bindir) || return 1
  if [[ ! -f $STATE_DIR/postgres-$P_PORT/data/PG_VERSION && ! -f /var/tmp/kage-services/postgres-$P_PORT/data/PG_VERSION ]]; then
    # a new cluster is made with the newest binaries: too old, they are refused before anything is created
    pg_major_too_old "$("$bindir/initdb" --version 2>/dev/null | sed -n 's/^.*(PostgreSQL) \([0-9][0-9.]*\).*$/\1/p' | head -n 1)" \
      "$bindir/initdb" && return 1
  fi
  base="$STATE_DIR/postgres-$P_PORT"
  data="$base/data"
  PG_OS_USER=""
  if [[ $(id -u) -eq 0 ]]; then
    # PostgreSQL refuses to run as root.
    if ! id postgres >/dev/null 2>&1; then
      log "postgres: creating the 'postgres' system user to own the data directory"
      useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    PG_OS_USER=postgres
  fi
  mkdir -p "$base"
  if [[ -n $PG_OS_USER ]]; then
    chown "$PG_OS_USER:" "$base"
    if ! as_pg_user test -w "$base"; then
      # the state dir sits below a folder the postgres user cannot enter: use /var/tmp instead
      rmdir "$base" 2>/dev/null || true
      base="/var/tmp/kage-services/postgres-$P_PORT"
      data="$base/data"
      mkdir -p "$base"
      chown "$PG_OS_USER:" "$base"
      log "postgres: the postgres user cannot reach $STATE_DIR, keeping this instance's data in $base"
    fi
  fi
  case $P_HOST in
    localhost) listen=localhost ;;
    *) listen=$P_HOST ;;
  esac
  # an existing cluster runs with the binaries of its own version, not the newest installed
  [[ -f $data/PG_VERSION ]] && want=$(<"$data/PG_VERSION")
  if ! bindir=$(pg_bindir "$want"); then
    warn "postgres: the private cluster in $data is PostgreSQL $want, whose server binaries are not installed (/usr/lib/postgresql/$want/bin): install postgresql-$want, or remove $base to start afresh"
    return 1
  fi
  [[ -n $want ]] && pg_major_too_old "$want" "the private cluster in $data" && return 1
  if [[ ! -f $data/PG_VERSION ]]; then
    log "postgres: initdb a private cluster in $data ($bindir)"
    rm -rf "$data"
    as_pg_user "$bindir/initdb" -D "$data" -U "$P_USER" -A trust -E UTF8 --locale=C >"$base/initdb.log" 2>&1 || {
      warn "postgres: initdb failed; see $base/initdb.log"
      tail -n 5 "$base/initdb.log" >&2 || true
      return 1
    }
    # port, address and no unix socket (TCP only: socket paths have a length limit)
    as_pg_user tee -a "$data/postgresql.conf" >/dev/null <<EOF

# written by ops/services.sh
port = $P_PORT
listen_addresses = '$listen'
unix_socket_directories = ''
fsync = off
EOF
  fi
  log "postgres: starting $bindir/postgres on $listen:$P_PORT ..."
  # recorded before the start: pg_ctl stops waiting after WAIT_SECONDS while the server goes on starting, and
  # `down` must be able to stop it (for a server that is not running, `down` only drops the marker)
  mkdir -p "$STATE_DIR"
  printf 'kind=pg_ctl\nbindir=%s\ndata=%s\nosuser=%s\nport=%s\n' "$bindir" "$data" "$PG_OS_USER" "$P_PORT" \
    >"$STATE_DIR/postgres-$P_PORT.started"
  if ! as_pg_user "$bindir/pg_ctl" -D "$data" -l "$base/postgres.log" -w -t "$WAIT_SECONDS" start >/dev/null; then
    sleep 1 # a server pg_ctl gave up on may write its pid file only now
    warn "postgres: pg_ctl start failed; last log lines:"
    tail -n 5 "$base/postgres.log" >&2 || true
    [[ -f $data/postmaster.pid ]] && return 2 # still starting
    return 1
  fi
  if ! pg_wait; then
    warn "postgres: did not become ready within ${WAIT_SECONDS}s; see $base/postgres.log"
    return 2
  fi
  log "postgres: started $bindir/postgres (private cluster, data $data, run as ${PG_OS_USER:-$(id -un)}) on port $P_PORT"
}

pg_how_to() {
  cat >&2 <<EOF
postgres: nothing answers at $P_HOST:$P_PORT and this script could not start one. Get PostgreSQL >= 14 with either:
    docker compose up -d redis postgres        # from $REPO_DIR
    sudo apt-get update && sudo apt-get install -y postgresql && $0 up
  or point DATABASE_URL at a running PostgreSQL.
EOF
}

pg_up() {
  parse_database_url "$DATABASE_URL"
  if pg_ready; then
    log "postgres: already running at $P_HOST:$P_PORT (reused)"
  elif ! is_local_host "$P_HOST"; then
    warn "postgres: $P_HOST:$P_PORT is not reachable and is not a local address; not starting anything"
    pg_how_to
    return 1
  elif tcp_open "$P_HOST" "$P_PORT"; then
    # PostgreSQL starting or in recovery (pg_isready: rejecting), or docker-proxy accepting before the container is up
    log "postgres: something listens on $P_HOST:$P_PORT but pg_isready does not accept it yet; waiting up to ${WAIT_SECONDS}s ..."
    if ! pg_wait; then
      warn "postgres: something listens on $P_HOST:$P_PORT but pg_isready did not accept it within ${WAIT_SECONDS}s (still recovering, or another program?)"
      return 1
    fi
    log "postgres: answers at $P_HOST:$P_PORT now (reused)"
  else
    local cl="" started=0 ver name src
    if cl=$(pg_cluster_on_port); then
      read -r ver name _ <<<"$cl"
      src=0
      pg_start_debian_cluster "$ver" "$name" || src=$?
      if [[ $src -eq 0 ]]; then
        started=1
      elif [[ $src -eq 2 ]]; then
        started_not_ready postgres "$P_HOST:$P_PORT"
        return 1
      elif [[ $src -eq 3 ]]; then
        return 1
      else
        warn "postgres: could not start Debian cluster $ver/$name; trying a private cluster"
      fi
    fi
    if [[ $started -eq 0 ]] && ! pg_bindir >/dev/null; then
      if ! apt_ready; then
        pg_how_to
        return 1
      fi
      apt_candidate_ok postgresql $((PG_MIN_VERSION_NUM / 10000)) postgres \
        "Get PostgreSQL >= $((PG_MIN_VERSION_NUM / 10000)) from the PGDG apt repository (apt.postgresql.org), or 'docker compose up -d postgres' from $REPO_DIR." || return 1
      if apt_install postgresql postgresql-client; then
        log "postgres: installed postgresql from Debian packages ($(pg_bindir))"
        if cl=$(pg_cluster_on_port); then
          read -r ver name _ <<<"$cl"
          # a brand-new cluster from the package asks for passwords over TCP: trust loopback
          pg_trust_loopback "$ver" "$name" || true
          if pg_ready; then
            log "postgres: the Debian package's cluster $ver/$name answers at $P_HOST:$P_PORT (reused; managed by the system, not by this script)"
            started=1
          else
            src=0
            pg_start_debian_cluster "$ver" "$name" || src=$?
            if [[ $src -eq 0 ]]; then
              started=1
            elif [[ $src -eq 2 ]]; then
              started_not_ready postgres "$P_HOST:$P_PORT"
              return 1
            elif [[ $src -eq 3 ]]; then
              return 1
            fi
          fi
        fi
      else
        pg_how_to
        return 1
      fi
    fi
    if [[ $started -eq 0 ]]; then
      src=0
      pg_start_private || src=$?
      if [[ $src -eq 2 ]]; then
        started_not_ready postgres "$P_HOST:$P_PORT"
        return 1
      elif [[ $src -ne 0 ]]; then
        pg_how_to
        return 1
      fi
    fi
  fi
  pg_ensure_psql || return 1
  local rc=0
  # too old: fails here (the app would fail later, less clearly); unreadable (a login problem): fails below
  local version_rc=0
  pg_check_version || version_rc=$?
  [[ $version_rc -eq 1 ]] && rc=1
  pg_ensure_db || rc=1
  return "$rc"
}

pg_status() {
  parse_database_url "$DATABASE_URL"
  local extra="" num="" dbstate=""
  [[ -f $STATE_DIR/postgres-$P_PORT.started ]] && extra=" (started by ops/services.sh)"
  if pg_ready; then
    if pg_tool psql >/dev/null; then
      num=$(pg_version_num || true)
      if printf "SELECT 1 FROM pg_database WHERE datname = :'db';\n" | psql_run postgres -v db="$P_DB" 2>/dev/null | grep -qx 1; then
        dbstate=", database '$P_DB' exists"
      else
        dbstate=", database '$P_DB' missing (run: $0 up)"
      fi
    fi
    if [[ $num =~ ^[0-9]+$ ]]; then
      log "postgres: reachable at $P_HOST:$P_PORT, version $((num / 10000)).$((num % 10000))$dbstate$extra"
    else
      log "postgres: reachable at $P_HOST:$P_PORT, version unknown (psql missing or login failed)$extra"
    fi
    return 0
  fi
  log "postgres: NOT reachable at $P_HOST:$P_PORT"
  return 1
}

pg_down() {
  parse_database_url "$DATABASE_URL"
  local marker="$STATE_DIR/postgres-$P_PORT.started"
  if [[ ! -f $marker ]]; then
    if pg_ready; then
      log "postgres: not started by ops/services.sh, left running at $P_HOST:$P_PORT"
    else
      log "postgres: not running at $P_HOST:$P_PORT, nothing to stop"
    fi
    return 0
  fi
  local kind
  kind=$(sed -n 's/^kind=//p' "$marker")
  case $kind in
    pg_ctlcluster)
      ver=$(sed -n 's/^version=//p' "$marker")
      name=$(sed -n 's/^cluster=//p' "$marker")
      can_admin || true
      local -a ctl=(pg_ctlcluster)
      pg_ctlcluster_skips_systemctl && ctl+=(--skip-systemctl-redirect)
      if "${SUDO[@]}" "${ctl[@]}" "$ver" "$name" stop -m fast; then
        log "postgres: stopped Debian cluster $ver/$name (started by ops/services.sh)"
      else
        warn "postgres: pg_ctlcluster $ver $name stop failed (already stopped?)"
      fi
      ;;
    pg_ctl)
      local bindir data osuser
      bindir=$(sed -n 's/^bindir=//p' "$marker")
      data=$(sed -n 's/^data=//p' "$marker")
      osuser=$(sed -n 's/^osuser=//p' "$marker")
      PG_OS_USER=$osuser
      if [[ -f $data/postmaster.pid ]]; then
        if as_pg_user "$bindir/pg_ctl" -D "$data" -m fast -w -t "$WAIT_SECONDS" stop >/dev/null; then
          log "postgres: stopped the private cluster in $data (started by ops/services.sh)"
        else
          warn "postgres: pg_ctl stop failed for $data"
          return 1
        fi
      else
        log "postgres: the private cluster in $data is not running"
      fi
      if [[ $PURGE -eq 1 ]]; then
        # Only what this script made for this port (the two places it uses): a marker without its data= line
        # (truncated, edited) made this "rm -rf ." once, and one naming /home/data would have removed /home.
        if [[ $data != "$STATE_DIR/postgres-$P_PORT/data" && $data != "/var/tmp/kage-services/postgres-$P_PORT/data" ]]; then
          warn "postgres: the marker $marker names no data folder of ours ('$data'); nothing deleted"
          return 1
        fi
        rm -rf "$(dirname "$data")"
        log "postgres: removed $(dirname "$data")"
      else
        log "postgres: data kept in $data (down --purge deletes it)"
      fi
      ;;
    *)
      warn "postgres: unknown marker $marker, leaving everything alone"
      return 1
      ;;
  esac
  rm -f "$marker"
}

# ---------------------------------------------------------------- main

PURGE=0
main() {
  local action=${1:-}
  shift || true
  local a
  for a in "$@"; do
    case $a in
      --purge) PURGE=1 ;;
      *) die "unknown argument '$a' (usage: $0 up|down|status [--purge])" ;;
    esac
  done
  [[ $WAIT_SECONDS =~ ^[0-9]+$ ]] || die "KAGE_SERVICES_WAIT must be a whole number of seconds (got '$WAIT_SECONDS')"
  local rc=0
  case $action in
    up)
      redis_up || rc=1
      pg_up || rc=1
      if [[ $rc -eq 0 ]]; then
        log "services: ready (REDIS_URL=$(shown_url "$REDIS_URL") DATABASE_URL=$(shown_url "$DATABASE_URL"))"
      else
        log "services: NOT all ready, see the messages above" >&2
      fi
      ;;
    status)
      redis_status || rc=1
      pg_status || rc=1
      ;;
    down)
      redis_down || rc=1
      pg_down || rc=1
      if [[ $PURGE -eq 1 && -d $STATE_DIR ]]; then
        rmdir "$STATE_DIR" 2>/dev/null || true
      fi
      ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
  return "$rc"
}

# Sourcing the file (for tests) defines the functions without running anything.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
