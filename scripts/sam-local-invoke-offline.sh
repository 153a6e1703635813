#!/usr/bin/env bash
# Proves `sam local invoke` once on this machine, offline: the built functions (sam build) run in a Lambda-like
# container and, pointed at the local stack by the --env-vars file of `make serve`, answer for real (README,
# "Invoking one function"). As root, on Debian: it installs docker.io and debootstrap if they are missing, starts
# dockerd with no bridge network and no iptables rules if none runs (and stops it at the end), builds a local stand-in
# for the Lambda python3.12 image (scripts/sam_local/build_lambda_image.sh) unless one is there, runs `sam build`
# with the layer's wheels from .venv-sam/wheelhouse, starts the local stack (or uses a running `make serve`), and runs
# scripts/sam_local/invoke_and_check.py. Every endpoint is on loopback, SAM's own STS call included. `make
# sam-local-invoke`; not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

readonly WORK=$PWD/.sam-local
readonly ENV_VARS=$WORK/env-vars.json
readonly BUILD_DIR=$WORK/build
readonly IMAGE=public.ecr.aws/lambda/python:3.12-x86_64
readonly SAM_PYTHON=$PWD/.venv-sam/bin/python
export SAM_CLI_TELEMETRY=0
# SAM's settings: a version check dated in the future, so SAM never asks PyPI for its latest version.
export __SAM_CLI_APP_DIR=$WORK/sam-home
mkdir -p "$WORK" "$__SAM_CLI_APP_DIR"

started_dockerd="" started_stack=""
cleanup() {
  if [ -n "$started_stack" ]; then
    kill -TERM "$started_stack" 2>/dev/null && wait "$started_stack" 2>/dev/null || true
  fi
  if [ -n "$started_dockerd" ]; then
    kill -TERM "$started_dockerd" 2>/dev/null || true  # dockerd stops the containerd it started
  fi
}
trap cleanup EXIT

ensure_packages() {
  if command -v dockerd >/dev/null && command -v debootstrap >/dev/null && command -v rsync >/dev/null; then
    return 0
  fi
  echo "sam-local-invoke: installing docker.io, debootstrap and rsync from Debian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap rsync
}

ensure_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  if [ ! -f /etc/docker/daemon.json ]; then
    # Containers get the host's network only: no docker0 bridge, no iptables rules, no forwarding.
    mkdir -p /etc/docker
    printf '%s\n' '{"bridge": "none", "iptables": false, "ip6tables": false, "ip-forward": false, "ip-masq": false}' \
      >/etc/docker/daemon.json
  fi
  echo "sam-local-invoke: starting dockerd (log $WORK/dockerd.log)" >&2
  dockerd >"$WORK/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 150); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "error: dockerd did not start; see $WORK/dockerd.log" >&2
  return 1
}

ensure_sam() {
  [ -x .venv-sam/bin/sam ] && [ -d .venv-sam/wheelhouse ] || scripts/bootstrap-tools.sh --python
  printf '{"lastVersionCheck": 4102444800, "installationId": "sam-local-invoke-offline", "telemetryEnabled": false}\n' \
    >"$__SAM_CLI_APP_DIR/metadata.json"
}

ensure_image() {
  if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "sam-local-invoke: using the local image $IMAGE" >&2
    return 0
  fi
  scripts/sam_local/build_lambda_image.sh "$WORK" "$SAM_PYTHON" "$(find_python 3.12)"
}

sam_build() {
  local python312
  python312=$(find_python 3.12)
  # sam build checks the Python on PATH against Runtime python3.12; the layer's wheels come from the wheelhouse.
  PATH="$(dirname "$python312"):$PATH" PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/.venv-sam/wheelhouse \
    .venv-sam/bin/sam build --template-file template.yaml --build-dir "$BUILD_DIR" --region us-east-1 \
    >"$WORK/sam-build.log" 2>&1 || { cat "$WORK/sam-build.log" >&2; return 1; }
  grep -h "Build Succeeded" "$WORK/sam-build.log" >&2
}

# The endpoint that the env-vars file names answers: a `make serve` is up.
stack_is_up() {
  [ -f "$ENV_VARS" ] && .venv/bin/python - "$ENV_VARS" <<'PY'
import json, sys, urllib.request
endpoint = json.load(open(sys.argv[1]))["ApiFunction"]["AWS_ENDPOINT_URL"]
urllib.request.urlopen(endpoint + "/moto-api/", timeout=3)
PY
}

ensure_stack() {
  if stack_is_up 2>/dev/null; then
    echo "sam-local-invoke: using the running local stack of $ENV_VARS" >&2
    return 0
  fi
  rm -f "$ENV_VARS"
  scripts/bootstrap-python.sh >/dev/null
  echo "sam-local-invoke: starting the local stack (make serve; log $WORK/serve.log)" >&2
  .venv/bin/python -m local_stack serve --sam-env-vars "$ENV_VARS" >"$WORK/serve.log" 2>&1 &
  started_stack=$!
  for _ in $(seq 300); do
    [ -f "$ENV_VARS" ] && return 0
    kill -0 "$started_stack" 2>/dev/null || break
    sleep 1
  done
  cat "$WORK/serve.log" >&2
  echo "error: the local stack did not start" >&2
  return 1
}

ensure_packages
ensure_dockerd
ensure_sam
ensure_image
sam_build
ensure_stack
.venv/bin/python -m scripts.sam_local.invoke_and_check --env-vars "$ENV_VARS" \
  --template "$BUILD_DIR/template.yaml" --work-dir "$WORK/events" \
  --sam "$SAM_PYTHON" scripts/sam_local/sam_host_network.py
