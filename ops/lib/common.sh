#!/usr/bin/env bash
# ops/lib/common.sh: helpers sourced by the ops scripts (not run on its own).
#
#   kage_root              print the repository root (derived from this file's location)
#   find_java              export JAVA_HOME for a JDK >= 21 (with javac), or explain how to get one and exit 1
#   say MSG...             print "[kage] MSG" to stdout
#   warn MSG...            print "[kage] WARNING: MSG" to stderr
#   die MSG...             print "[kage] ERROR: MSG" to stderr and exit 1
#   db_url_with_name URL NAME   DATABASE_URL with its database replaced by NAME (libpq or jdbc form)
#   need_linux             exit 1 with a clear message unless this is Linux (the worker needs it)
#
# Settings: KAGE_JAVA_MIN (minimum Java feature version, default 21).

KAGE_COMMON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAGE_JAVA_MIN=${KAGE_JAVA_MIN:-21}

say() { printf '[kage] %s\n' "$*"; }
warn() { printf '[kage] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[kage] ERROR: %s\n' "$*" >&2
  exit 1
}

kage_root() {
  (cd "$KAGE_COMMON_DIR/../.." && pwd)
}

# java_home_version HOME -> prints the full version ("21.0.5", "1.8.0_392") of the JDK in HOME,
# or fails when HOME is not a JDK (java and javac must both be there).
java_home_version() {
  local home=$1 v=""
  [[ -n $home && -x $home/bin/java && -x $home/bin/javac ]] || return 1
  if [[ -r $home/release ]]; then
    v=$(sed -n 's/^JAVA_VERSION="\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$home/release" | head -n 1)
  fi
  if [[ -z $v ]]; then
    # `openjdk version "21.0.5" 2024-10-15` / `java version "1.8.0_392"`
    v=$("$home/bin/java" -version 2>&1 | sed -n 's/^.* version "\([^"]*\)".*$/\1/p' | head -n 1)
  fi
  [[ -n $v ]] || return 1
  printf '%s' "$v"
}

# java_feature VERSION -> 8 for "1.8.0_392", 21 for "21.0.5", 25 for "25"
java_feature() {
  local v=$1
  if [[ $v == 1.* ]]; then
    v=${v#1.}
  fi
  v=${v%%[!0-9]*}
  printf '%s' "${v:-0}"
}

# java_home_ok HOME -> succeeds when HOME is a JDK >= KAGE_JAVA_MIN
java_home_ok() {
  local v
  v=$(java_home_version "$1") || return 1
  (($(java_feature "$v") >= KAGE_JAVA_MIN))
}

# version_gt A B -> succeeds when version A sorts after version B
version_gt() {
  [[ $1 != "$2" && $(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1) == "$1" ]]
}

find_java() {
  local home="" candidate v best="" best_v="" java_bin
  # 1. JAVA_HOME when it qualifies
  if [[ -n ${JAVA_HOME:-} ]] && java_home_ok "$JAVA_HOME"; then
    home=$JAVA_HOME
  fi
  # 2. `java` on PATH, resolved to its real home
  if [[ -z $home ]] && java_bin=$(command -v java 2>/dev/null); then
    java_bin=$(readlink -f "$java_bin" 2>/dev/null || printf '%s' "$java_bin")
    candidate=$(cd "$(dirname "$java_bin")/.." 2>/dev/null && pwd) || candidate=""
    if [[ -n $candidate ]] && java_home_ok "$candidate"; then
      home=$candidate
    fi
  fi
  # 3. the usual install locations: the highest version that qualifies
  if [[ -z $home ]]; then
    local -a dirs=()
    local pattern
    for pattern in /usr/lib/jvm/* /usr/local/*jdk* /opt/*jdk* /opt/java/* \
      "${HOME:-/nonexistent}"/.sdkman/candidates/java/* "${HOME:-/nonexistent}"/.jdks/* \
      /Library/Java/JavaVirtualMachines/*/Contents/Home; do
      [[ -d $pattern && ! -L $pattern ]] && dirs+=("$pattern")
    done
    for candidate in "${dirs[@]}"; do
      v=$(java_home_version "$candidate") || continue
      (($(java_feature "$v") >= KAGE_JAVA_MIN)) || continue
      if [[ -z $best ]] || version_gt "$v" "$best_v"; then
        best=$candidate
        best_v=$v
      fi
    done
    home=$best
  fi
  if [[ -z $home ]]; then
    {
      printf '[kage] ERROR: no JDK %s or newer found (looked at JAVA_HOME, java on PATH, /usr/lib/jvm, /opt, ~/.sdkman, ~/.jdks).\n' "$KAGE_JAVA_MIN"
      printf '[kage] Install one, then run this again (or point JAVA_HOME at it):\n'
      printf '[kage]   Debian/Ubuntu: sudo apt-get install openjdk-21-jdk-headless\n'
      printf '[kage]   Fedora/RHEL:   sudo dnf install java-21-openjdk-devel\n'
      printf '[kage]   macOS:         brew install --cask temurin@21\n'
      printf '[kage]   SDKMAN:        sdk install java 21-tem\n'
      printf '[kage]   or download Eclipse Temurin 21+ from https://adoptium.net/\n'
    } >&2
    exit 1
  fi
  JAVA_HOME=$home
  export JAVA_HOME
}

# db_url_with_name URL NAME: the same server, user and options, another database.
db_url_with_name() {
  local url=$1 name=$2 scheme rest query="" authority
  case $url in
    jdbc:postgresql://* | postgresql://* | postgres://*)
      scheme=${url%%://*}://
      rest=${url#*://}
      ;;
    jdbc:postgresql:*) # short form jdbc:postgresql:dbname[?options] (localhost:5432), as ops/services.sh reads it
      scheme=jdbc:postgresql:
      rest=${url#jdbc:postgresql:}
      ;;
    *) die "DATABASE_URL must be postgresql://user@host:port/db or jdbc:postgresql://host:port/db (got '$url')" ;;
  esac
  if [[ $rest == *\?* ]]; then
    query="?${rest#*\?}"
    rest=${rest%%\?*}
  fi
  # a dbname= option would win over the path: replace it too
  if [[ $query =~ ^(.*[?\&])dbname=[^\&]*(.*)$ ]]; then
    query=${BASH_REMATCH[1]}dbname=$name${BASH_REMATCH[2]}
  fi
  if [[ $scheme == jdbc:postgresql: ]]; then
    printf '%s%s%s' "$scheme" "$name" "$query"
    return 0
  fi
  authority=${rest%%/*}
  printf '%s%s/%s%s' "$scheme" "$authority" "$name" "$query"
}

# need_linux: the worker runs agents under util-linux's setsid/setpriv and reads /proc, so the fleet needs Linux.
need_linux() {
  local os
  os=$(uname -s 2>/dev/null || printf unknown)
  [[ $os == Linux ]] && return 0
  die "the Kage Bunshin worker needs Linux (util-linux setsid and setpriv, /proc), and this machine runs $os. Run the fleet in Docker instead: ops/mvnw.sh -B -DskipTests package && docker compose up -d --build (see README.md, Docker)"
}

# result_field LINE KEY -> the value of KEY=value in a RESULT line
result_field() {
  local word
  for word in $1; do
    if [[ $word == "$2="* ]]; then
      printf '%s' "${word#*=}"
      return 0
    fi
  done
  die "no $2 in: $1"
}

# The benchmarks' peer: BullMQ and its Redis client, pinned, installed into DIR (git-ignored) when absent.
BULLMQ_VERSION=6.7.0
IOREDIS_VERSION=5.11.1
install_bullmq() {
  local dir=$1 installed
  installed=$(node -p "require('$dir/node_modules/bullmq/package.json').version" 2>/dev/null || true)
  if [[ $installed != "$BULLMQ_VERSION" || ! -d $dir/node_modules/ioredis ]]; then
    say "installing bullmq@$BULLMQ_VERSION and ioredis@$IOREDIS_VERSION into $dir (git-ignored) ..."
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
      "bullmq@$BULLMQ_VERSION" "ioredis@$IOREDIS_VERSION" >/dev/null || die "npm install failed"
  fi
}

# autocannon, the HTTP load tool the chaos suite's load scenario drives the API with, pinned, installed into DIR
# (outside the source tree, reused across runs) when absent. Exports KAGE_CHAOS_AUTOCANNON (its executable) on
# success; returns 1 (with a message) when npm is missing or the install fails, so the caller can say why.
AUTOCANNON_VERSION=9.0.0
install_autocannon() {
  local dir=$1 installed
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    warn "npm/node not found: the load scenario (autocannon) cannot run"
    return 1
  fi
  installed=$(node -p "require('$dir/node_modules/autocannon/package.json').version" 2>/dev/null || true)
  if [[ $installed != "$AUTOCANNON_VERSION" || ! -x $dir/node_modules/.bin/autocannon ]]; then
    say "installing autocannon@$AUTOCANNON_VERSION into $dir ..." >&2
    mkdir -p "$dir"
    if ! npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "autocannon@$AUTOCANNON_VERSION" >&2; then
      warn "npm install of autocannon failed: the load scenario cannot run"
      return 1
    fi
  fi
  export KAGE_CHAOS_AUTOCANNON=$dir/node_modules/.bin/autocannon
}

# The real agent CLIs for the real-agents test tier (REAL-AGENTS.md), pinned, installed into DIR (outside
# the source tree, reused across runs) when absent. Prints DIR on success; returns 1 (with a message) when
# npm is missing or the install fails, so the caller can skip the tier and say why.
CLAUDE_CODE_VERSION=2.1.328
CODEX_VERSION=0.169.0
install_agents() {
  local dir=$1 installed
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    warn "npm/node not found: the real-agents test tier (claude, codex) is skipped"
    return 1
  fi
  installed=$(node -p "require('$dir/node_modules/@anthropic-ai/claude-code/package.json').version + ' ' + \
require('$dir/node_modules/@openai/codex/package.json').version" 2>/dev/null || true)
  # Claude Code's native binary comes in a platform package (claude-code-linux-x64, -linux-arm64, -darwin-arm64, ...,
  # maybe -musl) picked from uname; on another architecture, check node_modules/.bin/claude
  local os arch claude_bin=$dir/node_modules/.bin/claude f
  os=$(uname -s | tr '[:upper:]' '[:lower:]')
  case $(uname -m) in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) arch="" ;;
  esac
  if [[ -n $arch ]]; then
    claude_bin=""
    for f in "$dir/node_modules/@anthropic-ai/claude-code-$os-$arch/claude" \
      "$dir/node_modules/@anthropic-ai/claude-code-$os-$arch-musl/claude"; do
      if [[ -x $f ]]; then
        claude_bin=$f
        break
      fi
    done
  fi
  if [[ $installed != "$CLAUDE_CODE_VERSION $CODEX_VERSION" || -z $claude_bin || ! -x $claude_bin ]]; then
    say "installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION and @openai/codex@$CODEX_VERSION into $dir ..." >&2
    mkdir -p "$dir"
    if ! npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
      "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION" >&2; then
      warn "npm install of the agent CLIs failed: the real-agents test tier is skipped"
      return 1
    fi
  fi
  printf '%s' "$dir"
}

# install_browser: Debian's chromium and chromium-driver for the dashboard test (DashboardIT), installed with apt-get
# when missing and this runs as root; returns 1 (the test is then skipped with a message) when they cannot be had.
install_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    return 0
  fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    warn "chromium/chromedriver missing and not root with apt-get: the dashboard test is skipped" \
      "(install them: apt-get install chromium chromium-driver)"
    return 1
  fi
  say "installing Debian's chromium and chromium-driver for the dashboard test ..." >&2
  if ! { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q chromium chromium-driver >&2 ||
    { apt-get -o DPkg::Lock::Timeout=300 update -q >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q chromium chromium-driver >&2; }; }; then
    warn "apt-get install chromium chromium-driver failed: the dashboard test is skipped"
    return 1
  fi
}

# shown_url URL: URL with its secrets masked, as it may be printed (a terminal, a CI transcript): a Redis URL's whole
# userinfo (redis://secret@host is a password), another URL's password, and a password= parameter (JDBC)
shown_url() {
  case $1 in
    redis://* | rediss://*) sed -E 's#(://)[^/[:space:]]*@#\1***@#' <<<"$1" ;;
    *) sed -E -e 's#(://[^/:@[:space:]]*):[^/[:space:]]*@#\1:***@#' -e 's#([?&]password=)[^&[:space:]]*#\1***#g' <<<"$1" ;;
  esac
}
