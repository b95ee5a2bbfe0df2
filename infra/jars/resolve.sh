#!/usr/bin/env bash
# Copy the JVM packages listed in infra/jars/test-jars.txt from Maven Central (through the local
# Maven repository, ~/.m2, so each is downloaded once per machine) into build/jars/.
# Idempotent: a jar already in build/jars/ is not fetched again. Prints the jar folder.
# Used by .ci/run and by the tests' fixtures; the runtime install never needs it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${CLINLAKE_JARS:-$repo/build/jars}"
mkdir -p "$out"
if ! command -v mvn >/dev/null 2>&1; then
  echo "mvn not found: installing Maven to resolve the test jars" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >&2
fi
grep -v '^\s*#' "$repo/infra/jars/test-jars.txt" | grep -v '^\s*$' | while IFS=: read -r group artifact version; do
  jar="$out/$artifact-$version.jar"
  [ -s "$jar" ] && continue
  mvn -q -B dependency:copy -Dartifact="$group:$artifact:$version" -DoutputDirectory="$out" \
      -Dmdep.overWriteIfNewer=true >&2
  [ -s "$jar" ] || { echo "could not resolve $group:$artifact:$version from Maven Central" >&2; exit 1; }
done
echo "$out"
