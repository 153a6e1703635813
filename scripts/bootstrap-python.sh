#!/usr/bin/env bash
# Creates .venv (Python 3.12, the Lambda runtime) with everything the tests and the local stack need.
# Idempotent: re-runs pip only when requirements-dev.txt, the layer requirements or the client's pyproject.toml changed.
# The command-line client (client/, `sja`) is installed editable, so the tests run the checkout's code.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

py=$(find_python 3.12)
stamp=.venv/.requirements.sha256
want=$(cat requirements-dev.txt functions/shared/requirements.txt client/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "bootstrap: creating .venv with $py" >&2
"$py" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
.venv/bin/pip install --quiet --disable-pip-version-check -e ./client
echo "$want" > "$stamp"
