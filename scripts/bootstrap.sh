#!/usr/bin/env bash
# Installs everything the tests and the local stack need: the Debian packages of Slurm, munge, slurmdbd and MariaDB
# (and nodejs/npm when missing), then side by side (scripts/lib.sh, start_part) the Python environments (.venv for the
# product and its tests; .venv-sam and .venv-checkov for the tools) and asl-validator (node_modules). Idempotent: a
# second run does nothing. The Debian packages need root; apt-get runs first and alone, never beside another apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# local_stack/slurm_cluster.py uses only the standard library, so it runs before .venv exists.
"$(find_python 3.12)" -m local_stack.slurm_cluster install
scripts/bootstrap-tools.sh --system-packages

start_part product scripts/bootstrap-python.sh
start_part tools scripts/bootstrap-tools.sh
finish_parts
