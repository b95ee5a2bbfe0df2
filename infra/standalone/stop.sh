#!/usr/bin/env bash
# Stop the standalone cluster of STATE_DIR (default build/standalone): every daemon by the pid that
# start.sh recorded, with its whole session (a worker's executor JVMs and their Python workers), TERM
# first, KILL after 10 s. Prints what it stopped; exit 0 when nothing of the cluster is left.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${1:-$here/../../build/standalone}"
[ -d "$state/pids" ] || exit 0
sessions=()
for file in "$state"/pids/*.pid; do
  [ -e "$file" ] || continue
  pid="$(cat "$file")"
  kill -0 "$pid" 2>/dev/null && sessions+=("$pid") && echo "stopping $(basename "$file" .pid) (session $pid)"
done
left() { for sid in "${sessions[@]}"; do pgrep -s "$sid" 2>/dev/null; done; }
for sid in "${sessions[@]}"; do pkill -TERM -s "$sid" 2>/dev/null; done
for _ in $(seq 1 20); do [ -z "$(left)" ] && break; sleep 0.5; done
for sid in "${sessions[@]}"; do pkill -KILL -s "$sid" 2>/dev/null; done
sleep 0.2
rm -f "$state"/pids/*.pid "$state/master.env"
[ -z "$(left)" ]
