"""Regenerates docs/reliability.md: every fault scenario on the real local stack, and what long jobs cost.

    make reliability-report        # or: .venv/bin/python -m benchmarks.report [--output PATH]

Needs root (Slurm daemons, switching users) and the fault clusters (harness/fault_stacks.py) to itself: do not
run it while tests/faults run. The long-job measurements run in a second process meanwhile (one local cloud per
process). The whole takes 12 to 17 minutes on 2 CPUs, depending on what else runs (the job-tracking scenarios of
harness/sweep_scenarios.py, on two clusters of their own, about 2.5 of them). Exits 1 if any job was lost,
duplicated or ended in a wrong state.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from benchmarks.report_markdown import render
from benchmarks.run_environment import describe_environment
from harness import fault_scenarios, purge_scenarios, sweep_scenarios
from harness.fault_stacks import (
    ACCOUNTING_CLUSTER,
    ACCOUNTING_MIN_JOB_AGE,
    DEFAULT_MIN_JOB_AGE,
    NO_ACCOUNTING_CLUSTER,
    SHORT_MIN_JOB_AGE,
    ClusterPlace,
    cluster_kept_running,
)
from harness.long_jobs import CASES, LongJobCost
from harness.reliability import ScenarioResult

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "reliability.md"

Scenario = Callable[[ClusterPlace], ScenarioResult]
# Per cluster: the MinJobAge it starts with, then its scenarios in order (the last no-accounting one raises MinJobAge).
SCENARIOS: tuple[tuple[ClusterPlace, int, tuple[Scenario, ...]], ...] = (
    (
        ACCOUNTING_CLUSTER,
        ACCOUNTING_MIN_JOB_AGE,
        (
            fault_scenarios.ssm_throttling,
            fault_scenarios.slurmctld_outage,
            fault_scenarios.slurmctld_outage_under_sweep,
            fault_scenarios.submit_crash_after_sbatch,
            purge_scenarios.purged_job_read_from_accounting,
        ),
    ),
    (
        NO_ACCOUNTING_CLUSTER,
        SHORT_MIN_JOB_AGE,
        (
            purge_scenarios.capped_polling_without_accounting,
            purge_scenarios.late_poll_without_accounting,
            fault_scenarios.missing_slurm_binaries,
            fault_scenarios.head_node_unreachable,
        ),
    ),
    (
        sweep_scenarios.SWEEP_FAULTS_CLUSTER,
        DEFAULT_MIN_JOB_AGE,
        (sweep_scenarios.sweep_outage, sweep_scenarios.stale_wake),
    ),
    (
        sweep_scenarios.PUSH_FAULTS_CLUSTER,
        DEFAULT_MIN_JOB_AGE,
        (sweep_scenarios.push_faults, sweep_scenarios.tracking_race),
    ),
)


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_fault_scenarios() -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    count = sum(len(scenarios) for _, _, scenarios in SCENARIOS)
    for place, min_job_age, scenarios in SCENARIOS:
        with cluster_kept_running(place, min_job_age=min_job_age):
            for scenario in scenarios:
                _progress(f"scenario {len(results) + 1} of {count} on {place.name} ...")
                result = scenario(place)
                _progress(
                    f"{result.key}: {len(result.jobs)} jobs, lost {result.lost}, duplicated "
                    f"{result.duplicated}, wrong {result.wrong_state} ({result.seconds:.0f} s)"
                )
                results.append(result)
    return results


def start_long_jobs(output: Path, log: Path) -> subprocess.Popen[bytes]:
    """The long-job measurements, in their own process (python -m harness.long_jobs --json OUTPUT)."""
    with log.open("wb") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", "harness.long_jobs", "--json", str(output), *CASES],
            cwd=REPO_ROOT,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )


def finish_long_jobs(process: subprocess.Popen[bytes], output: Path, log: Path) -> list[LongJobCost]:
    if process.wait() != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError("the long-job measurements failed:\n" + "\n".join(tail))
    return [LongJobCost(**cost) for cost in json.loads(output.read_text())]


def quiet_logs() -> None:
    """The handlers' logs and metrics and moto's interpreter messages would bury the progress lines."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    # All handlers share one process here, so Powertools sees the finish step's dimension set again and again.
    warnings.filterwarnings("ignore", message="Dimension .* has already been added")


def count_problems(results: Iterable[ScenarioResult]) -> int:
    return sum(result.lost + result.duplicated + result.wrong_state for result in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run it as root: the local stack runs Slurm daemons and switches users")
    quiet_logs()
    started, load_at_start = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="reliability-report-") as scratch:
        long_jobs_json, long_jobs_log = Path(scratch) / "long-jobs.json", Path(scratch) / "long-jobs.log"
        _progress("long-job measurements started in a second process")
        long_jobs = start_long_jobs(long_jobs_json, long_jobs_log)
        try:
            results = run_fault_scenarios()
        except BaseException:
            long_jobs.kill()
            raise
        _progress("waiting for the long-job measurements ...")
        costs = finish_long_jobs(long_jobs, long_jobs_json, long_jobs_log)
    environment = describe_environment(minutes=(time.monotonic() - started) / 60, load_at_start=load_at_start)
    args.output.write_text(render(results, costs, environment))
    problems = count_problems(results)
    _progress(f"wrote {args.output} ({problems} jobs lost, duplicated or in a wrong state)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
