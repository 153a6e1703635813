"""Where and with what a report was measured: date, machine, versions (read-only look-ups)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from local_stack.slurm_cluster import SBIN

REPO_ROOT = Path(__file__).resolve().parents[1]


def _command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO_ROOT, timeout=30)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _memory_gib() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.0f} GiB"
    return "unknown"


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def product_commit() -> str:
    """HEAD's short hash, and whether tracked files differ from it (read it before a run writes its report)."""
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return f"{commit} (with uncommitted changes)" if dirty else commit


def describe_environment(*, minutes: float, load_at_start: float, commit: str | None = None) -> dict[str, str]:
    """Label → value, in the order a report shows them. The load average tells how busy the machine was with other
    work (wall times depend on it; counts and verdicts do not)."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_os_name()}, kernel {platform.release()}, {os.cpu_count()} CPUs, {_memory_gib()} memory",
        "product commit": commit or product_commit(),
        "Slurm": _command_output([str(SBIN / "slurmctld"), "-V"]) or "unknown",
        "Python": platform.python_version(),
        "moto / boto3 / botocore": " / ".join(metadata.version(name) for name in ("moto", "boto3", "botocore")),
        "aws-lambda-powertools": metadata.version("aws-lambda-powertools"),
        "run time": f"{minutes:.1f} min",
        "load average (1 min) at start / end": f"{load_at_start:.1f} / {os.getloadavg()[0]:.1f}",
    }
