#!/usr/bin/env bash
# The Spark NLP interop tests' environment (tests/sparknlp/), made once and reused:
#   build/sparknlp/jars/  the real Spark NLP JVM jar and the few jars its used annotators need (Maven Central)
#   build/sparknlp/venv/  pyspark + the matching spark-nlp Python package
# Why a separate Spark: Maven Central has no Spark NLP build for Scala 2.13 (so none for clinlake's
# Spark 4.1); the newest, spark-nlp_2.12 5.5.3, fails to load on Spark 4.1 (NoSuchMethodError
# scala.Predef$.wrapRefArray: Scala 2.12 binary on a 2.13 runtime). It runs on Spark 3.5, in a
# subprocess of the tests. Idempotent: a complete environment is left as is. Tests only: clinlake
# itself never loads these jars, and nothing here is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

SPARKNLP_VERSION=5.5.3
PYSPARK_VERSION=3.5.5
JARS=(
  "com.johnsnowlabs.nlp:spark-nlp_2.12:${SPARKNLP_VERSION}"
  "com.typesafe:config:1.4.2"                  # Spark NLP's settings
  "com.amazonaws:aws-java-sdk-core:1.12.500"   # referenced by its resource loading (WordEmbeddings)
  "com.amazonaws:aws-java-sdk-s3:1.12.500"
  "org.rocksdb:rocksdbjni:6.29.5"              # WordEmbeddings' storage
)
ROOT=build/sparknlp
STAMP="$ROOT/READY-${SPARKNLP_VERSION}-${PYSPARK_VERSION}-${#JARS[@]}"

if [ -f "$STAMP" ]; then
  echo "Spark NLP test environment ready ($ROOT)"
  exit 0
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "mvn not found: installing Maven to fetch the Spark NLP jar"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven
fi
mkdir -p "$ROOT/jars"
for artifact in "${JARS[@]}"; do
  for attempt in 1 2 3; do  # Maven Central hiccups: retry before failing
    if mvn -q -B dependency:copy -Dartifact="$artifact" -DoutputDirectory="$ROOT/jars" -Dmdep.overWriteIfNewer=true; then
      break
    fi
    [ "$attempt" = 3 ] && { echo "could not fetch $artifact from Maven Central" >&2; exit 1; }
    sleep $((attempt * 10))
  done
done
if [ ! -x "$ROOT/venv/bin/python" ]; then
  python3 -m venv "$ROOT/venv"
fi
"$ROOT/venv/bin/pip" install -q "pyspark==${PYSPARK_VERSION}" "spark-nlp==${SPARKNLP_VERSION}" numpy
rm -f "$ROOT"/READY-*
touch "$STAMP"
echo "Spark NLP test environment ready ($ROOT): $(ls "$ROOT/jars" | tr '\n' ' ')"
