"""Fault scenarios on the real local stack: jobs through the HTTP API, a fault injected while they run, every job
checked (harness/reliability.py). The tests in tests/faults and ``make reliability-report`` both run these.
The scenarios about finished jobs that slurmctld forgets are in harness/purge_scenarios.py.

Each scenario starts its own local stack (fresh cloud, interceptors, fault switches and counters) over one of the two
fault clusters (harness/fault_stacks.py), uses a unique Slurm job name, and clears its fault in ``finally``. The two
outages (the head node unreachable, slurmctld stopped) are one scenario with different faults, jobs and timings:
rows of :class:`Outage`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from harness.fault_stacks import (
    ACCOUNTING_CLUSTER,
    ACCOUNTING_MIN_JOB_AGE,
    DEFAULT_MIN_JOB_AGE,
    NO_ACCOUNTING_CLUSTER,
    SHORT_MIN_JOB_AGE,
    SWEEP_SAFETY_POLL_SECONDS,
    SWEEP_TRACKING,
    ClusterPlace,
    head_node,
    local_stack,
)
from harness.reliability import JobPlan, JobRun, ScenarioResult
from local_stack.lambda_runtime import RuntimeFailure
from local_stack.ssm_head_node import FaultCounters
from local_stack.stack import LocalStack
from slurm_job_api.head_node import DELIVERY_TIMEOUT_SECONDS
from slurm_job_api.statuses import FAILED, RUNNING, SUBMIT_FAILED

# Longer than SendCommand's delivery timeout (the product's 60 s), so that held commands end DeliveryTimedOut.
UNREACHABLE_SECONDS = DELIVERY_TIMEOUT_SECONDS + 10
CONTROLLER_OUTAGE_SECONDS = 60
# Under the sweep: longer than the safety poll (SWEEP_SAFETY_POLL_SECONDS), so that waits end without news.
SWEEP_CONTROLLER_OUTAGE_SECONDS = 3 * SWEEP_SAFETY_POLL_SECONDS
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


# ----- b, c. outages: the head node unreachable, slurmctld stopped ------------------------------------------------

Jobs = tuple[tuple[JobPlan, int], ...]  # plans, each with how many jobs of it to submit


def _submit(run: JobRun, jobs: Jobs, *, after: Path | None = None) -> list[str]:
    """Submits the jobs; with ``after``, each waits for that file before its run time starts."""
    return [
        job_id
        for plan, count in jobs
        for job_id in run.submit(replace(plan, after=str(after)) if after else plan, count=count)
    ]


class OutageFault(Protocol):
    """What an outage scenario breaks: started once the first jobs run, ended ``Outage.seconds`` later."""

    def start(self) -> None: ...

    def end(self) -> None: ...

    def description(self, seconds: float) -> str: ...

    def injected(self, seconds: float) -> dict[str, int]: ...

    def evidence(self) -> dict[str, Any]: ...

    def conclude(self, result: ScenarioResult) -> None:
        """Adds to the result what the outcomes show: the findings, and evidence drawn from the outcomes."""
        ...


class HeadNodeTakesNoCommand:
    """The head node takes no SSM command: commands stay Pending and end DeliveryTimedOut, then it is back."""

    def __init__(self, stack: LocalStack, run: JobRun) -> None:
        self._faults = head_node(stack).faults
        self._before = self._faults.counters()

    def start(self) -> None:
        self._faults.unreachable = True

    def end(self) -> None:
        self._faults.unreachable = False
        self._injected = _counter_delta(self._before, self._faults.counters())

    def description(self, seconds: float) -> str:
        return (
            f"the head node takes no SSM command for {seconds:.0f} s: commands stay Pending and end TimedOut "
            f"(DeliveryTimedOut) after SendCommand's TimeoutSeconds ({DELIVERY_TIMEOUT_SECONDS} s)"
        )

    def injected(self, seconds: float) -> dict[str, int]:
        return {
            "commands held while unreachable": self._injected["held_while_unreachable"],
            "delivery timeouts": self._injected["delivery_timeouts"],
        }

    def evidence(self) -> dict[str, Any]:
        return {}

    def conclude(self, result: ScenarioResult) -> None:
        evidence, retried = result.evidence, result.retried_errors()
        result.findings.append(
            f"{len(evidence['ending_during_outage'])} jobs were running when the head node went away and ended during "
            f"the outage; {len(evidence['submitted_during_outage'])} more were accepted during it. Step Functions "
            f"retried {retried.get('HeadNodeUnreachable', 0)} task attempts that ended HeadNodeUnreachable; once the "
            "head node was back, the held commands ran and every job was read from Slurm. The product's delivery "
            "timeout was not shortened for the test: the outage outlasts it."
        )


class ControllerStopped:
    """slurmctld stopped (SIGTERM to its pid), then started again."""

    def __init__(self, stack: LocalStack, run: JobRun) -> None:
        self._slurm = run.slurm

    def start(self) -> None:
        self._old_pid = self._slurm.stop_controller()

    def end(self) -> None:
        self._new_pid = self._slurm.start_controller()

    def description(self, seconds: float) -> str:
        return f"slurmctld stopped (SIGTERM to its pid) for {seconds:.0f} s while jobs ran, then started again"

    def injected(self, seconds: float) -> dict[str, int]:
        return {"slurmctld stops": 1, "seconds without slurmctld": round(seconds)}

    def evidence(self) -> dict[str, Any]:
        return {"controller_pids": (self._old_pid, self._new_pid)}

    def conclude(self, result: ScenarioResult) -> None:
        evidence, retried = result.evidence, result.retried_errors()
        submitted_during = evidence["submitted_during_outage"]
        submits_retried = sum(
            "SlurmControllerUnavailable" in job.task_failures for job in result.jobs if job.job_id in submitted_during
        )
        evidence["submitted_during_outage_retried"] = submits_retried
        result.findings.append(
            f"{len(evidence['ending_during_outage'])} jobs ended while slurmctld was down and "
            f"{len(evidence['outlasting_outage'])} ran on past its restart; {len(submitted_during)} were submitted "
            f"during the outage, {submits_retried} of them retried after SlurmControllerUnavailable. Step Functions "
            f"retried {retried.get('SlurmControllerUnavailable', 0)} task attempts in all."
        )


@dataclass(frozen=True)
class Outage:
    """An outage scenario: jobs are started and run; the fault holds for ``seconds`` while more jobs are submitted;
    then it ends and every job is checked. Call it with the cluster to run it on.

    Each running job ends at its moment by waiting for a file, not by a run time guessed to fit: ``ending_during``
    jobs start their ``seconds`` once the fault has started, ``outlasting`` ones once it has ended (on a loaded machine
    a job of fixed length could end before the fault began, or after it was over)."""

    key: str
    title: str
    name_prefix: str
    place: ClusterPlace
    min_job_age: int
    seconds: float
    ending_during: Jobs  # running when the fault starts, ending while it holds
    outlasting: Jobs  # running when the fault starts, running on past its end
    submitted_during: Jobs
    outcomes_timeout: float
    fault: Callable[[LocalStack, JobRun], OutageFault]
    parameters: Mapping[str, str] = field(default_factory=dict)  # template parameters (e.g. SWEEP_TRACKING)

    def __call__(self, place: ClusterPlace | None = None) -> ScenarioResult:
        started = time.monotonic()
        stack_of = local_stack(place or self.place, min_job_age=self.min_job_age, parameters=self.parameters)
        with _moments() as moments, stack_of as stack:
            fault_started, fault_ended = moments / "fault-started", moments / "fault-ended"
            run = JobRun(stack, self.name_prefix)
            ending_during = _submit(run, self.ending_during, after=fault_started)
            outlasting = _submit(run, self.outlasting, after=fault_ended)
            run.wait_for_status([*ending_during, *outlasting], RUNNING)
            fault = self.fault(stack, run)
            sweeps_before = _sweeps(stack)
            fault.start()
            outage_started = time.monotonic()
            fault_started.touch()
            try:
                submitted_during = _submit(run, self.submitted_during)
                time.sleep(max(0.0, outage_started + self.seconds - time.monotonic()))
            finally:
                fault.end()
            outage = time.monotonic() - outage_started
            sweeps_during_outage = _sweeps(stack, since=sweeps_before)
            fault_ended.touch()
            result = ScenarioResult(
                key=self.key,
                title=self.title,
                fault=fault.description(outage),
                jobs=run.outcomes(timeout=self.outcomes_timeout),
                faults_injected=fault.injected(outage),
                evidence={
                    "outage_seconds": outage,
                    "ending_during_outage": ending_during,
                    "outlasting_outage": outlasting,
                    "submitted_during_outage": submitted_during,
                    "sweeps_during_outage": sweeps_during_outage,
                    **fault.evidence(),
                },
            )
        fault.conclude(result)
        return result.timed_from(started)


def _sweeps(stack: LocalStack, since: dict[str, int] | None = None) -> dict[str, int]:
    """The cluster sweeps the local scheduler has run (and how many failed), since ``since``."""
    scheduler = stack.running_cloud.scheduler
    runs = scheduler.runs if scheduler is not None else []
    counts = {"fired": sum(run.fired for run in runs), "failed": sum(run.failed for run in runs)}
    return {name: count - (since or {}).get(name, 0) for name, count in counts.items()}


head_node_unreachable = Outage(
    key="head-node-unreachable",
    title="Head node unreachable",
    name_prefix="unreachable",
    place=NO_ACCOUNTING_CLUSTER,
    min_job_age=DEFAULT_MIN_JOB_AGE,
    seconds=UNREACHABLE_SECONDS,  # longer than the delivery timeout
    ending_during=((JobPlan(seconds=2), 3), (JobPlan(seconds=2, exit_code=3, expected_status=FAILED), 1)),
    outlasting=(),
    submitted_during=((JobPlan(seconds=2), 3),),
    outcomes_timeout=240,
    fault=HeadNodeTakesNoCommand,
)
slurmctld_outage = Outage(
    key="slurmctld-outage",
    title="slurmctld stopped",
    name_prefix="ctld-outage",
    place=ACCOUNTING_CLUSTER,
    min_job_age=ACCOUNTING_MIN_JOB_AGE,
    seconds=CONTROLLER_OUTAGE_SECONDS,
    ending_during=((JobPlan(seconds=2), 2), (JobPlan(seconds=2, exit_code=3, expected_status=FAILED), 1)),
    outlasting=((JobPlan(seconds=15), 1),),
    submitted_during=((JobPlan(seconds=2), 3),),
    outcomes_timeout=360,
    fault=ControllerStopped,
)
# The same outage under JobTracking sweep: the sweeps fail while slurmctld is down (nobody's wait gets a heartbeat),
# the waits end with their safety polls, which fail and are retried; after the restart a sweep or a poll sees each end.
slurmctld_outage_under_sweep = replace(
    slurmctld_outage,
    key="slurmctld-outage-sweep",
    title="slurmctld stopped, jobs tracked by the cluster's sweep",
    name_prefix="ctld-outage-sweep",
    seconds=SWEEP_CONTROLLER_OUTAGE_SECONDS,
    parameters=SWEEP_TRACKING,
)
OUTAGES = (head_node_unreachable, slurmctld_outage, slurmctld_outage_under_sweep)


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
                first = event["jobId"] not in crashed  # every job of this stack is the run's
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
