#!/usr/bin/env bash
# Installs everything the tests and the local stack need, in parts side by side (scripts/lib.sh, start_part): the
# Debian packages (Slurm, munge, slurmdbd, MariaDB; nodejs/npm when missing), the Python environments (.venv for the
# product and its tests; .venv-sam and .venv-checkov for the tools), then asl-validator (node_modules, with npm).
# Idempotent: a second run does nothing. The Debian packages need root; one part runs every apt-get, one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

install_system_packages() {
  # local_stack/slurm_cluster.py uses only the standard library, so it runs before .venv exists.
  "$(find_python 3.12)" -m local_stack.slurm_cluster install
  scripts/bootstrap-tools.sh --system-packages
}

start_part system install_system_packages
start_part product scripts/bootstrap-python.sh
start_part tools scripts/bootstrap-tools.sh --python
finish_parts
scripts/bootstrap-tools.sh --node
