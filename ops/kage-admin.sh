#!/usr/bin/env bash
# ops/kage-admin.sh: manage the coordinator's API keys straight in Postgres, without a key (the first admin key,
# a lost one). Runs the coordinator jar's `keys` command; applies the schema's migrations first.
#
#   ops/kage-admin.sh keys create --tenant acme --scopes submit,read,admin [--name "ops laptop"]
#   ops/kage-admin.sh keys list [--tenant acme]
#   ops/kage-admin.sh keys revoke ID
#
# `create` prints the key alone on standard output (KEY=$(ops/kage-admin.sh keys create ...)); it is shown this
# once and stored only as its SHA-256. Settings: DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/kage),
# KAGE_DB_SCHEMA (default development_docs), KAGE_COORDINATOR_JAR (default coordinator/target/kage-coordinator.jar;
# build it with ops/mvnw.sh -B -q -DskipTests package, which runs ./mvnw with a JDK >= 21).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ROOT=$(kage_root)
JAR=${KAGE_COORDINATOR_JAR:-$ROOT/coordinator/target/kage-coordinator.jar}

if [[ $# -eq 0 || $1 != keys ]]; then
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
[[ -f $JAR ]] || die "no coordinator jar at $JAR: build it with ops/mvnw.sh -B -q -DskipTests package (or set KAGE_COORDINATOR_JAR)"
find_java
exec "$JAVA_HOME/bin/java" -jar "$JAR" "$@"
