#!/usr/bin/env bash
# Installs everything the tests and the local stack need: the Python environments (.venv for the product and its
# tests, .venv-sam and .venv-checkov for the tools), asl-validator (node_modules) and the Debian packages of Slurm,
# munge, slurmdbd and MariaDB. Idempotent: a second run does nothing. The Debian packages need root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap-python.sh
scripts/bootstrap-tools.sh
.venv/bin/python -m local_stack.slurm_cluster install
