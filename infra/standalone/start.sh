#!/usr/bin/env bash
# Start a Spark standalone cluster on this machine: one master and WORKERS workers (default 2), each
# worker with WORKER_CORES cores (default 1), WORKER_MEMORY (default 2g) and its own work dir, all
# bound to 127.0.0.1. Uses the Spark that the pyspark install carries (its spark-class launcher), so
# the cluster runs the same Spark as the driver.
#
#   infra/standalone/start.sh [STATE_DIR]      # prints MASTER_URL=spark://127.0.0.1:PORT
#   infra/standalone/stop.sh  [STATE_DIR]
#
# STATE_DIR (default build/standalone) receives pids/<role>.pid, logs/, work/<worker>/ (each executor's
# unpacked --archives environment, about 1 GB for clinlake's), local/ (executors' scratch space) and
# master.env. Workers delete the work directories of stopped applications older than WORKER_CLEANUP_TTL
# seconds (default 86400), checked every WORKER_CLEANUP_INTERVAL seconds (default 1800): without it a
# daily job leaves a copy of the environment per executor per run until the disk is full, and
# executors that cannot unpack it die and are relaunched without end.
# Every daemon is started in a session of its own, so stop.sh ends it with everything it started
# (executor JVMs, Python workers). Env: PYTHON (the interpreter whose pyspark to use; default
# python3), MASTER_PORT / MASTER_WEBUI_PORT / WORKER_WEBUI_PORT (default: free ports).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="$(mkdir -p "${1:-$here/../../build/standalone}" && cd "${1:-$here/../../build/standalone}" && pwd)"
python="${PYTHON:-python3}"
workers="${WORKERS:-2}"
spark_home="$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null)" || {
  echo "no pyspark in $python: set PYTHON to the interpreter of an environment with pyspark" >&2; exit 2; }
export SPARK_HOME="$spark_home" SPARK_LOCAL_IP=127.0.0.1 SPARK_NO_DAEMONIZE=1
export SPARK_LOCAL_DIRS="$state/local"
export SPARK_WORKER_OPTS="${SPARK_WORKER_OPTS:-} -Dspark.worker.cleanup.enabled=true \
 -Dspark.worker.cleanup.interval=${WORKER_CLEANUP_INTERVAL:-1800} -Dspark.worker.cleanup.appDataTtl=${WORKER_CLEANUP_TTL:-86400}"
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [ -f "$state/master.env" ] && "$here/status.sh" "$state" >/dev/null 2>&1; then
  cat "$state/master.env"; exit 0   # already running
fi
"$here/stop.sh" "$state" >/dev/null 2>&1 || true
mkdir -p "$state/pids" "$state/logs" "$state/work" "$state/local"
port="${MASTER_PORT:-$(free_port)}"
webui="${MASTER_WEBUI_PORT:-$(free_port)}"

launch() {  # launch NAME CLASS ARGS...: a daemon in its own session, pid recorded
  local name="$1"; shift
  setsid "$SPARK_HOME/bin/spark-class" "$@" >"$state/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$state/pids/$name.pid"
}

launch master org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$port" --webui-port "$webui"
for i in $(seq 1 "$workers"); do
  mkdir -p "$state/work/worker-$i"
  launch "worker-$i" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 \
    --cores "${WORKER_CORES:-1}" --memory "${WORKER_MEMORY:-2g}" --work-dir "$state/work/worker-$i" \
    --webui-port "${WORKER_WEBUI_PORT:-$(free_port)}" "spark://127.0.0.1:$port"
done
printf 'MASTER_URL=spark://127.0.0.1:%s\nMASTER_WEBUI=http://127.0.0.1:%s\nWORKERS=%s\n' "$port" "$webui" "$workers" \
  >"$state/master.env"

# Ready when the master's JSON API lists every worker ALIVE (60 s at most).
for _ in $(seq 1 120); do
  if "$here/status.sh" "$state" >/dev/null 2>&1; then cat "$state/master.env"; exit 0; fi
  sleep 0.5
done
echo "the standalone cluster did not come up in 60 s; logs under $state/logs" >&2
"$here/stop.sh" "$state" >&2 || true
exit 1
