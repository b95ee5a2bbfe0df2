#!/usr/bin/env bash
# Run the annotate job on a Spark cluster (standalone, YARN or Kubernetes) with spark-submit, client
# mode: the driver runs here, in the packed environment; executors unpack the same environment from
# --archives, so nothing is installed on the nodes and nothing is downloaded at run time.
#
#   MASTER=spark://host:7077 infra/spark-submit/submit.sh --config my_job.yaml [clinlake annotate options]
#
# Env: MASTER (default local[*]); ENV_ARCHIVE / ENV_DIR (default dist/clinlake-env.tar.gz and
# dist/clinlake-env, built by pack_env.sh when missing); SPARK_SUBMIT_OPTS_EXTRA: more spark-submit
# options (e.g. "--conf spark.executor.memory=4g"). The job's entry point is the installed
# package's jobs/annotate.py, so a checkout is not needed on the submitting machine either.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
MASTER=${MASTER:-local[*]}
ENV_ARCHIVE=${ENV_ARCHIVE:-$here/../../dist/clinlake-env.tar.gz}
ENV_DIR=${ENV_DIR:-$here/../../dist/clinlake-env}
if [ ! -f "$ENV_ARCHIVE" ] || [ ! -x "$ENV_DIR/bin/python" ]; then
  "$here/pack_env.sh" "" "$(dirname "$ENV_ARCHIVE")" >/dev/null
fi
entry="$("$ENV_DIR/bin/python" -c 'import clinlake.jobs.annotate as job; print(job.__file__)')"

export PYSPARK_DRIVER_PYTHON="$ENV_DIR/bin/python"
export PYSPARK_PYTHON=./environment/bin/python
# shellcheck disable=SC2086
exec "$ENV_DIR/bin/spark-submit" \
  --master "$MASTER" \
  --deploy-mode client \
  --archives "$ENV_ARCHIVE#environment" \
  --conf spark.sql.execution.arrow.maxRecordsPerBatch=64 \
  ${SPARK_SUBMIT_OPTS_EXTRA:-} \
  "$entry" "$@"
