#!/usr/bin/env bash
# Installs the tools the static checks use, each pinned and isolated:
#   .venv-sam      AWS SAM CLI (it pins its own boto3, so it cannot share .venv), and in .venv-sam/wheelhouse
#                  the layer's dependencies, so that the tests build offline
#   .venv-checkov  checkov (policy checks of template.yaml)
#   node_modules   asl-validator, exactly as package-lock.json says
# Idempotent: each part is reinstalled only when its pin changed (hash stamps, like bootstrap-python.sh).
# Parts (scripts/bootstrap.sh runs them beside its own): --system-packages, the Debian packages (npm); --python, the
# two venvs and the wheelhouse; --node, node_modules (needs npm). With no argument: all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

export SAM_CLI_TELEMETRY=0

readonly SAM_CLI_VERSION=1.170.0
readonly CHECKOV_VERSION=3.3.30

# make_tool_venv DIR REQUIREMENT: a Python 3.12 venv in DIR with exactly REQUIREMENT installed.
make_tool_venv() {
  local dir=$1 requirement=$2 stamp want py
  stamp=$dir/.requirements.sha256
  want=$(printf '%s\n' "$requirement" | sha256sum | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  py=$(find_python 3.12)
  echo "bootstrap: creating $dir ($requirement) with $py" >&2
  "$py" -m venv --clear "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$requirement"
  echo "$want" > "$stamp"
}

# Wheels of the layer's dependencies for Lambda (manylinux x86_64, CPython 3.12), so that the tests can run
# `sam build` without a package index (PIP_NO_INDEX=1, PIP_FIND_LINKS=.venv-sam/wheelhouse).
fill_layer_wheelhouse() {
  local dir=.venv-sam/wheelhouse stamp want
  stamp=$dir/.requirements.sha256
  want=$(sha256sum < functions/shared/requirements.txt | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "bootstrap: downloading the layer's wheels into $dir" >&2
  rm -rf "$dir"
  .venv-sam/bin/pip download --quiet --disable-pip-version-check --dest "$dir" \
    --only-binary=:all: --platform manylinux2014_x86_64 --implementation cp --python-version 3.12 \
    -r functions/shared/requirements.txt
  echo "$want" > "$stamp"
}

# npm, from Debian when it is missing.
ensure_npm() {
  if command -v npm >/dev/null 2>&1 || node_modules_up_to_date; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: Node.js >= 18 with npm is needed for asl-validator (Debian: apt-get install nodejs npm)." >&2
    return 1
  fi
  echo "bootstrap: installing nodejs and npm with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
}

node_modules_stamp() {
  cat package.json package-lock.json | sha256sum | cut -d' ' -f1
}

node_modules_up_to_date() {
  [ -f node_modules/.package-lock.sha256 ] && [ "$(cat node_modules/.package-lock.sha256)" = "$(node_modules_stamp)" ]
}

install_node_modules() {
  if node_modules_up_to_date; then
    return 0
  fi
  echo "bootstrap: installing node_modules from package-lock.json" >&2
  npm ci --no-audit --no-fund
  node_modules_stamp > node_modules/.package-lock.sha256
}

sam_cli_and_layer_wheels() {
  make_tool_venv .venv-sam "aws-sam-cli==$SAM_CLI_VERSION"
  fill_layer_wheelhouse
}

# The two venvs side by side (scripts/lib.sh, start_part), and node_modules too when asked.
install_tools() {
  start_part sam sam_cli_and_layer_wheels
  start_part checkov make_tool_venv .venv-checkov "checkov==$CHECKOV_VERSION"
  if [ "${1:-}" = with-node ]; then
    start_part node install_node_modules
  fi
  finish_parts
}

case "${1:-all}" in
  --system-packages) ensure_npm ;;
  --python) install_tools ;;
  --node) install_node_modules ;;
  all)
    ensure_npm
    install_tools with-node
    ;;
  *)
    echo "usage: $0 [--system-packages | --python | --node]" >&2
    exit 2
    ;;
esac
