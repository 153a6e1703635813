"""Where the static-check tools live, and how to run them offline with their output kept for failure messages."""

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"

SAM = REPO_ROOT / ".venv-sam" / "bin" / "sam"
SAM_PYTHON = REPO_ROOT / ".venv-sam" / "bin" / "python"
LAYER_WHEELHOUSE = REPO_ROOT / ".venv-sam" / "wheelhouse"
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_PYTHON = REPO_ROOT / ".venv-checkov" / "bin" / "python"
ASL_VALIDATOR = REPO_ROOT / "node_modules" / ".bin" / "asl-validator"
RUFF = REPO_ROOT / ".venv" / "bin" / "ruff"

# Any HTTP(S) request a tool might still try (update checks, telemetry) goes to a closed loopback port.
_DEAD_PROXY = "http://127.0.0.1:9"
_OFFLINE_ENV = {
    "SAM_CLI_TELEMETRY": "0",
    "AWS_DEFAULT_REGION": "us-east-1",
    "BC_SKIP_MAPPING": "TRUE",
    "HTTP_PROXY": _DEAD_PROXY,
    "HTTPS_PROXY": _DEAD_PROXY,
    "ALL_PROXY": _DEAD_PROXY,
    "http_proxy": _DEAD_PROXY,
    "https_proxy": _DEAD_PROXY,
    "all_proxy": _DEAD_PROXY,
    "NO_PROXY": "",
    "no_proxy": "",
}


def require_tool(path: Path) -> Path:
    """`path` if the tool was bootstrapped; otherwise skip the test, saying how to install it."""
    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO_ROOT)} is missing: run scripts/bootstrap-tools.sh first")
    return path


@functools.cache
def _network_isolation_prefix() -> tuple[str, ...]:
    """`unshare --net --` when this process may create a network namespace (root on Linux), else nothing."""
    try:
        probe = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return ("unshare", "--net", "--") if probe.returncode == 0 else ()


def run_offline(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path = REPO_ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Runs a tool without network access (its own network namespace when possible) and captures its output."""
    full_env = {**os.environ, **_OFFLINE_ENV, **(env or {})}
    return subprocess.run(
        [*_network_isolation_prefix(), *map(str, argv)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """The command, its exit status and its output, for an assertion message."""
    command = " ".join(map(str, result.args))
    return (
        f"$ {command}\nexit status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def find_python(version: str) -> Path:
    """The Python `version` interpreter that scripts/lib.sh's find_python picks (the one the bootstraps use)."""
    result = subprocess.run(
        ["bash", "-c", 'source scripts/lib.sh && find_python "$1"', "find_python", version],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"no Python {version} found: {result.stderr.strip()}")
    return Path(result.stdout.strip())
