"""Fault scenarios on the real local stack: jobs through the HTTP API, a fault injected while they run, every job
checked (benchmarks/reliability.py). The tests in tests/faults and ``make reliability-report`` both run these.
The scenarios about finished jobs that slurmctld forgets are in benchmarks/purge_scenarios.py.

Each scenario starts its own local stack (fresh cloud, interceptors, fault switches and counters) over one of the two
fault clusters (benchmarks/fault_stacks.py), uses a unique Slurm job name, and clears its fault in ``finally``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.fault_stacks import (
    ACCOUNTING_CLUSTER,
    ACCOUNTING_MIN_JOB_AGE,
    DEFAULT_MIN_JOB_AGE,
    NO_ACCOUNTING_CLUSTER,
    SHORT_MIN_JOB_AGE,
    ClusterPlace,
    head_node,
    local_stack,
)
from benchmarks.reliability import JobPlan, JobRun, ScenarioResult
from local_stack.lambda_runtime import RuntimeFailure
from local_stack.ssm_head_node import FaultCounters
from slurm_job_api.head_node import DELIVERY_TIMEOUT_SECONDS
from slurm_job_api.head_node_program import FAILED, RUNNING, SUBMIT_FAILED

# Longer than SendCommand's delivery timeout (the product's 60 s), so that held commands end DeliveryTimedOut.
UNREACHABLE_SECONDS = DELIVERY_TIMEOUT_SECONDS + 10
CONTROLLER_OUTAGE_SECONDS = 60
MISSING_SLURM_BIN_DIR = "/opt/slurm/bin"
THROTTLE_RATE = 0.3


def _counter_delta(before: FaultCounters, after: FaultCounters) -> dict[str, int]:
    return {name: value - asdict(before)[name] for name, value in asdict(after).items()}


@contextmanager
def _moments() -> Iterator[Path]:
    """A directory for the files that mark moments of a scenario, which its jobs wait for (JobPlan.after) as the
    cluster user; removing it at the end also lets go any job still waiting, should the scenario have failed."""
    directory = Path(tempfile.mkdtemp(prefix="sjapi-fault-moments-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


# ----- a. SSM throttling ---------------------------------------------------------------------------------------------


def ssm_throttling(place: ClusterPlace = ACCOUNTING_CLUSTER, *, rate: float = THROTTLE_RATE) -> ScenarioResult:
    """A fraction of SendCommand and GetCommandInvocation calls fail with ThrottlingException while jobs run."""
    started = time.monotonic()
    with local_stack(place, min_job_age=ACCOUNTING_MIN_JOB_AGE) as stack:
        run = JobRun(stack, "throttled")
        faults = head_node(stack).faults
        before = faults.counters()
        faults.throttle_rate = rate
        try:
            run.submit(JobPlan(seconds=2), count=6)
            run.submit(JobPlan(seconds=2, exit_code=3, expected_status=FAILED), count=2)
            run.wait_for_executions(timeout=240)
        finally:
            faults.throttle_rate = 0.0
        injected = _counter_delta(before, faults.counters())
        result = ScenarioResult(
            key="ssm-throttling",
            title="SSM throttling",
            fault=f"{rate:.0%} of SendCommand and GetCommandInvocation calls fail: ThrottlingException, Rate exceeded",
            jobs=run.outcomes(),
            faults_injected={
                "SendCommand throttled": injected["throttled_send_command"],
                "GetCommandInvocation throttled": injected["throttled_get_command_invocation"],
            },
            evidence={"ssm_commands_run": len(head_node(stack).commands_run)},
        )
    retried = result.retried_errors()
    result.findings.append(
        f"{result.evidence['ssm_commands_run']} SSM commands ran; the SDK's adaptive retries absorbed most throttled "
        f"calls, Step Functions retried {retried.get('AwsThrottled', 0)} task attempts that stayed throttled."
    )
    return result.timed_from(started)


# ----- b. head node unreachable -------------------------------------------------------------------------------------


def head_node_unreachable(
    place: ClusterPlace = NO_ACCOUNTING_CLUSTER, *, seconds: float = UNREACHABLE_SECONDS
) -> ScenarioResult:
    """The head node takes no command for ``seconds`` (longer than the delivery timeout), then is back."""
    started = time.monotonic()
    with _moments() as moments, local_stack(place, min_job_age=DEFAULT_MIN_JOB_AGE) as stack:
        unreachable = str(moments / "head-node-unreachable")  # the running jobs end only once it is (not by luck)
        run = JobRun(stack, "unreachable")
        faults = head_node(stack).faults
        running = run.submit(JobPlan(seconds=2, after=unreachable), count=3)
        running += run.submit(JobPlan(seconds=2, exit_code=3, expected_status=FAILED, after=unreachable))
        run.wait_for_status(running, RUNNING)
        before = faults.counters()
        outage_started = time.monotonic()
        faults.unreachable = True
        Path(unreachable).touch()
        try:
            submitted_during = run.submit(JobPlan(seconds=2), count=3)
            time.sleep(max(0.0, outage_started + seconds - time.monotonic()))
        finally:
            faults.unreachable = False
        outage = time.monotonic() - outage_started
        injected = _counter_delta(before, faults.counters())
        result = ScenarioResult(
            key="head-node-unreachable",
            title="Head node unreachable",
            fault=(
                f"the head node takes no SSM command for {outage:.0f} s: commands stay Pending and end TimedOut "
                f"(DeliveryTimedOut) after SendCommand's TimeoutSeconds ({DELIVERY_TIMEOUT_SECONDS} s)"
            ),
            jobs=run.outcomes(timeout=240),
            faults_injected={
                "commands held while unreachable": injected["held_while_unreachable"],
                "delivery timeouts": injected["delivery_timeouts"],
            },
            evidence={"outage_seconds": outage, "submitted_during_outage": submitted_during, "running": running},
        )
    retried = result.retried_errors()
    result.findings.append(
        f"{len(running)} jobs were running when the head node went away and ended during the outage; "
        f"{len(submitted_during)} more were accepted during it. Step Functions retried "
        f"{retried.get('HeadNodeUnreachable', 0)} task attempts that ended HeadNodeUnreachable; once the head node "
        "was back, the held commands ran and every job was read from Slurm. The product's delivery timeout was "
        "not shortened for the test: the outage outlasts it."
    )
    return result.timed_from(started)


# ----- c. slurmctld stopped ------------------------------------------------------------------------------------------


def slurmctld_outage(
    place: ClusterPlace = ACCOUNTING_CLUSTER, *, seconds: float = CONTROLLER_OUTAGE_SECONDS
) -> ScenarioResult:
    """slurmctld stops for ``seconds`` while jobs run (some end meanwhile), and jobs are submitted during the outage."""
    started = time.monotonic()
    with _moments() as moments, local_stack(place, min_job_age=ACCOUNTING_MIN_JOB_AGE) as stack:
        # Each job ends at its moment of the outage by waiting for a file, not by a run time guessed to fit: on a
        # loaded machine a job of fixed length could end before slurmctld was stopped, or after it was started again.
        controller_down, controller_up = str(moments / "controller-down"), str(moments / "controller-up")
        run = JobRun(stack, "ctld-outage")
        ending_during = run.submit(JobPlan(seconds=2, after=controller_down), count=2)
        ending_during += run.submit(JobPlan(seconds=2, exit_code=3, expected_status=FAILED, after=controller_down))
        outlasting = run.submit(JobPlan(seconds=15, after=controller_up))
        run.wait_for_status([*ending_during, *outlasting], RUNNING)
        old_pid = run.slurm.stop_controller()
        outage_started = time.monotonic()
        Path(controller_down).touch()
        try:
            submitted_during = run.submit(JobPlan(seconds=2), count=3)
            time.sleep(max(0.0, outage_started + seconds - time.monotonic()))
        finally:
            new_pid = run.slurm.start_controller()
        outage = time.monotonic() - outage_started
        Path(controller_up).touch()
        result = ScenarioResult(
            key="slurmctld-outage",
            title="slurmctld stopped",
            fault=f"slurmctld stopped (SIGTERM to its pid) for {outage:.0f} s while jobs ran, then started again",
            jobs=run.outcomes(timeout=360),
            faults_injected={"slurmctld stops": 1, "seconds without slurmctld": round(outage)},
            evidence={
                "outage_seconds": outage,
                "controller_pids": (old_pid, new_pid),
                "ending_during_outage": ending_during,
                "outlasting_outage": outlasting,
                "submitted_during_outage": submitted_during,
            },
        )
    retried = result.retried_errors()
    submits_retried = sum(
        "SlurmControllerUnavailable" in job.task_failures for job in result.jobs if job.job_id in submitted_during
    )
    result.evidence["submitted_during_outage_retried"] = submits_retried
    result.findings.append(
        f"{len(ending_during)} jobs ended while slurmctld was down and {len(outlasting)} ran on past its restart; "
        f"{len(submitted_during)} were submitted during the outage, {submits_retried} of them retried after "
        f"SlurmControllerUnavailable. Step Functions retried {retried.get('SlurmControllerUnavailable', 0)} task "
        "attempts in all."
    )
    return result.timed_from(started)


# ----- d. submit crashes after sbatch --------------------------------------------------------------------------------


def submit_crash_after_sbatch(place: ClusterPlace = ACCOUNTING_CLUSTER) -> ScenarioResult:
    """The submit function dies after sbatch succeeded (Lambda timeout), once per job; Step Functions retries it."""
    started = time.monotonic()
    with local_stack(place, min_job_age=ACCOUNTING_MIN_JOB_AGE) as stack:
        run = JobRun(stack, "submit-crash")
        crashed: set[str] = set()
        lock = threading.Lock()

        def crash_after_sbatch(event: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
            result = call_next(event, context)
            with lock:
                first = event["spec"]["name"] == run.name and event["jobId"] not in crashed
                crashed.add(event["jobId"])
            if first:
                raise RuntimeFailure("Sandbox.Timedout", "Task timed out after 120.00 seconds")
            return result

        with stack.running_cloud.runtime.intercepted("SubmitJobFunction", crash_after_sbatch):
            run.submit(JobPlan(seconds=1), count=3)
            run.submit(JobPlan(seconds=1, exit_code=3, expected_status=FAILED))
            run.wait_for_executions(timeout=120)
        result = ScenarioResult(
            key="submit-crash",
            title="Submit function dies after sbatch",
            fault="the submit Lambda fails with Sandbox.Timedout after sbatch succeeded, on each job's first attempt",
            jobs=run.outcomes(),
            faults_injected={"submit attempts killed after sbatch": len(crashed)},
        )
    result.findings.append(
        f"Step Functions retried {result.retried_errors().get('Sandbox.Timedout', 0)} submit attempts; each retry "
        "found the first submission (marker file, job comment) instead of running sbatch again."
    )
    return result.timed_from(started)


# ----- f. Slurm missing on the head node -----------------------------------------------------------------------------


def missing_slurm_binaries(place: ClusterPlace = NO_ACCOUNTING_CLUSTER) -> ScenarioResult:
    """SlurmBinDir names a directory without Slurm: a clear SUBMIT_FAILED with the program's message, not a hang."""
    if Path(MISSING_SLURM_BIN_DIR).exists():
        raise RuntimeError(f"{MISSING_SLURM_BIN_DIR} exists on this machine; the scenario needs it absent")
    started = time.monotonic()
    parameters = {"SlurmBinDir": MISSING_SLURM_BIN_DIR}
    with local_stack(place, min_job_age=SHORT_MIN_JOB_AGE, parameters=parameters) as stack:
        run = JobRun(stack, "no-slurm")
        run.submit(JobPlan(seconds=0, expected_status=SUBMIT_FAILED, reaches_slurm=False), count=2)
        accepted = time.monotonic()
        run.wait_for_executions(timeout=120)
        ended_after = time.monotonic() - accepted
        result = ScenarioResult(
            key="missing-slurm",
            title="Slurm missing on the head node",
            fault=f"SlurmBinDir is {MISSING_SLURM_BIN_DIR}, which does not exist on the head node",
            jobs=run.outcomes(),
            evidence={"seconds_to_end": ended_after},
        )
    codes = sorted({job.error_code or "" for job in result.jobs})
    result.findings.append(
        f"Every job ended SUBMIT_FAILED {ended_after:.0f} s after it was accepted, with error {', '.join(codes)}: "
        f"{result.jobs[0].cause}"
    )
    return result.timed_from(started)
