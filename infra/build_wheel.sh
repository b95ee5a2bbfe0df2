#!/usr/bin/env bash
# Build the clinlake wheel (models, lexicons, rules and sample notes are inside it).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip wheel --no-deps -w dist .
ls -l dist/clinlake-*.whl
