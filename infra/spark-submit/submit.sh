#!/usr/bin/env bash
# Run the annotate job on a Spark cluster (standalone, YARN or Kubernetes) with spark-submit.
#
# The Python environment (clinlake + its dependencies) travels to the executors as a packed
# virtualenv, so nothing is installed on the nodes and nothing is downloaded at run time.
# Build the archive on the same OS/architecture and Python version as the cluster nodes.
#
#   MASTER=spark://host:7077 infra/spark-submit/submit.sh --config my_job.yaml
set -euo pipefail
cd "$(dirname "$0")/../.."
MASTER=${MASTER:-local[*]}
ENV_ARCHIVE=${ENV_ARCHIVE:-dist/clinlake-env.tar.gz}

if [ ! -f "$ENV_ARCHIVE" ]; then
  python3 -m venv dist/pack-venv
  dist/pack-venv/bin/pip install -q . venv-pack
  dist/pack-venv/bin/venv-pack -p dist/pack-venv -o "$ENV_ARCHIVE"
fi

export PYSPARK_DRIVER_PYTHON=${PYSPARK_DRIVER_PYTHON:-dist/pack-venv/bin/python}
export PYSPARK_PYTHON=./environment/bin/python
exec spark-submit \
  --master "$MASTER" \
  --archives "$ENV_ARCHIVE#environment" \
  --conf spark.sql.execution.arrow.maxRecordsPerBatch=64 \
  jobs/annotate.py "$@"
