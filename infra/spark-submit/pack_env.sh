#!/usr/bin/env bash
# Build the Python environment that travels to the executors: a virtualenv with only the clinlake
# wheel (and its dependencies) installed, packed with venv-pack into a .tar.gz for --archives.
#
#   infra/spark-submit/pack_env.sh [WHEEL] [OUT_DIR]     # default: builds the wheel; OUT_DIR dist/
#
# Leaves OUT_DIR/clinlake-env/ (the environment, also the driver's in client mode) and
# OUT_DIR/clinlake-env.tar.gz. venv-pack runs from a tools virtualenv of its own, so it is not in the
# shipped environment. The archive holds no Python interpreter: the nodes need the same Python
# (version and path) as this machine, and the same OS and CPU architecture (compiled wheels).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
wheel="${1:-}"
out="$(mkdir -p "${2:-$repo/dist}" && cd "${2:-$repo/dist}" && pwd)"
python="${PYTHON:-python3}"
if [ -z "$wheel" ]; then
  "$python" -m pip wheel -q --no-deps -w "$out" "$repo"
  wheel="$(ls -t "$out"/clinlake-*.whl | head -n 1)"
fi
rm -rf "$out/clinlake-env" "$out/clinlake-env.tar.gz"
"$python" -m venv "$out/clinlake-env"
"$out/clinlake-env/bin/pip" install -q "$wheel"
[ -x "$out/pack-tools/bin/venv-pack" ] || { "$python" -m venv "$out/pack-tools" && "$out/pack-tools/bin/pip" install -q venv-pack; }
# pyspark's jars/ (about 400 MB) stay out: executors run the cluster's own Spark JVM, and their Python
# workers import only pyspark's Python code.
"$out/pack-tools/bin/venv-pack" -q -p "$out/clinlake-env" -o "$out/clinlake-env.tar.gz" \
  --exclude 'lib/python*/site-packages/pyspark/jars/*'

echo "$out/clinlake-env.tar.gz"
