#!/usr/bin/env bash
# ops/mvnw.sh [maven args...]: the repository's Maven wrapper (./mvnw) run with a JDK >= 21, found as the other
# ops scripts find it (JAVA_HOME, then java on PATH, then the usual JVM folders), whatever the default `java` is.
# Runs in the repository root, e.g. ops/mvnw.sh -B -q -DskipTests package
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ROOT=$(kage_root)
find_java
export PATH="$JAVA_HOME/bin:$PATH"
cd "$ROOT"
exec ./mvnw "$@"
