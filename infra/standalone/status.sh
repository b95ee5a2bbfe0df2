#!/usr/bin/env bash
# Exit 0 when the cluster of STATE_DIR (default build/standalone) has its master up and every
# worker ALIVE; prints the master's worker list (id, state, cores) either way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${1:-$here/../../build/standalone}"
# shellcheck disable=SC1091
. "$state/master.env"
python3 - "$MASTER_WEBUI" "$WORKERS" <<'PY'
import json, sys, urllib.request
url, expected = sys.argv[1], int(sys.argv[2])
try:
    with urllib.request.urlopen(f"{url}/json/", timeout=2) as response:
        master = json.load(response)
except OSError as exc:
    print(f"master not answering at {url}: {exc}")
    sys.exit(1)
alive = [w for w in master.get("workers", []) if w.get("state") == "ALIVE"]
for worker in master.get("workers", []):
    print(worker["id"], worker["state"], worker["cores"])
sys.exit(0 if len(alive) >= expected else 1)
PY
