"""Scenarios about finished jobs that slurmctld has forgotten (purged after MinJobAge): read back from accounting,
the poll wait capped below MinJobAge/2 without accounting, and a poll late anyway (UNKNOWN, said honestly).

Like harness/fault_scenarios.py: each starts its own local stack, uses a unique job name, and every job is
checked by harness/reliability.py. The two purges before a first poll, with and without accounting, are one
scenario with different clusters and jobs: rows of :class:`LateFirstPoll`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness.fault_stacks import (
    ACCOUNTING_CLUSTER,
    ACCOUNTING_MIN_JOB_AGE,
    NO_ACCOUNTING_CLUSTER,
    SHORT_MIN_JOB_AGE,
    ClusterPlace,
    local_stack,
)
from harness.reliability import JobPlan, JobRun, ScenarioResult
from harness.workflow import execution_arn, history
from local_stack.lambda_runtime import Interceptor
from slurm_job_api.poll_schedule import PollSchedule
from slurm_job_api.statuses import FAILED, PENDING, RUNNING, UNKNOWN


def _late_first_poll(run: JobRun, waited: dict[str, float]) -> Interceptor:
    """A PollJobFunction interceptor: a job's first poll waits until slurmctld has forgotten the job."""

    def interceptor(event: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        job = event["job"]
        if event["jobId"] in run.plans and job.get("pollsInExecution") == 0 and job["slurmJobId"] not in waited:
            waited[job["slurmJobId"]] = run.slurm.wait_until_forgotten(job["slurmJobId"])
        return call_next(event, context)

    return interceptor


@dataclass(frozen=True)
class LateFirstPoll:
    """A scenario where each job's first poll waits until slurmctld has purged the finished job. Call it with the
    cluster to run it on."""

    key: str
    title: str
    name_prefix: str
    place: ClusterPlace
    min_job_age: int
    parameters: Mapping[str, str]
    plans: tuple[JobPlan, ...]
    fault: str
    finding: Callable[[ScenarioResult], str]

    def __call__(self, place: ClusterPlace | None = None) -> ScenarioResult:
        started = time.monotonic()
        with local_stack(place or self.place, min_job_age=self.min_job_age, parameters=self.parameters) as stack:
            run = JobRun(stack, self.name_prefix)
            waited: dict[str, float] = {}
            with stack.running_cloud.runtime.intercepted("PollJobFunction", _late_first_poll(run, waited)):
                for plan in self.plans:
                    run.submit(plan)
                run.wait_for_executions(timeout=180)
            result = ScenarioResult(
                key=self.key,
                title=self.title,
                fault=self.fault,
                jobs=run.outcomes(),
                faults_injected={"first polls held until the job was purged": len(waited)},
                evidence={"seconds_until_purged": waited},
            )
        result.findings.append(self.finding(result))
        return result.timed_from(started)


def _read_from_accounting(result: ScenarioResult) -> str:
    purged_after = ", ".join(f"{seconds:.0f} s" for seconds in result.evidence["seconds_until_purged"].values())
    return (
        f"slurmctld no longer knew the jobs when they were first polled (purged after {purged_after}); their states "
        "and exit codes came from sacct."
    )


def _said_unknown(result: ScenarioResult) -> str:
    causes = sorted({job.cause or "" for job in result.jobs})
    return f"The job ran once and ended UNKNOWN; result.json says: {'; '.join(causes)}"


purged_job_read_from_accounting = LateFirstPoll(
    key="purged-with-accounting",
    title="Finished job purged, with accounting",
    name_prefix="purged-acct",
    place=ACCOUNTING_CLUSTER,
    min_job_age=ACCOUNTING_MIN_JOB_AGE,
    parameters={},
    plans=(JobPlan(seconds=0), JobPlan(seconds=0, exit_code=7, expected_status=FAILED)),  # sacct still answers
    fault=f"each job's first poll held back until slurmctld purged the finished job (MinJobAge "
    f"{ACCOUNTING_MIN_JOB_AGE} s)",
    finding=_read_from_accounting,
)
late_poll_without_accounting = LateFirstPoll(
    key="late-poll-without-accounting",
    title="Poll too late, without accounting",
    name_prefix="late-noacct",
    place=NO_ACCOUNTING_CLUSTER,
    min_job_age=SHORT_MIN_JOB_AGE,
    parameters={"PollFraction": "1.0"},
    plans=(JobPlan(seconds=0, expected_status=UNKNOWN),),  # a poll late anyway: UNKNOWN, said honestly
    fault=f"the first poll held back until slurmctld purged the finished job (MinJobAge {SHORT_MIN_JOB_AGE} "
    "s), on a cluster without accounting",
    finding=_said_unknown,
)
LATE_FIRST_POLLS = (purged_job_read_from_accounting, late_poll_without_accounting)


def _polls(run: JobRun, job_id: str) -> list[tuple[datetime, dict]]:
    """(time, job state) after each PollJob of the job's execution."""
    polls = []
    for event in history(run.cloud, execution_arn(run.cloud, job_id)):
        details = event.get("stateExitedEventDetails")
        if details and details["name"] == "PollJob":
            polls.append((event["timestamp"], json.loads(details["output"])["job"]))
    return polls


def capped_polling_without_accounting(place: ClusterPlace = NO_ACCOUNTING_CLUSTER) -> ScenarioResult:
    """Without accounting, PollFraction=1.0 and jobs running longer than MinJobAge: the wait stays under MinJobAge/2,
    so the end is seen before slurmctld forgets the job, though the uncapped wait would exceed MinJobAge."""
    fraction = 1.0
    started = time.monotonic()
    with local_stack(place, min_job_age=SHORT_MIN_JOB_AGE, parameters={"PollFraction": str(fraction)}) as stack:
        run = JobRun(stack, "capped-noacct")
        run.submit(JobPlan(seconds=2 * SHORT_MIN_JOB_AGE))
        run.submit(JobPlan(seconds=2 * SHORT_MIN_JOB_AGE, exit_code=3, expected_status=FAILED))
        run.wait_for_executions(timeout=180)
        uncapped = PollSchedule(min_seconds=1, fraction=fraction)
        waits, uncapped_waits = [], []
        for job_id in run.plans:
            for moment, job in _polls(run, job_id):
                if job["status"] in (PENDING, RUNNING):
                    elapsed = (moment - datetime.fromisoformat(job["submittedAt"])).total_seconds()
                    waits.append(job["nextPollSeconds"])
                    uncapped_waits.append(uncapped.next_wait(elapsed))
        result = ScenarioResult(
            key="capped-without-accounting",
            title="Poll wait capped without accounting",
            fault=f"no accounting, MinJobAge {SHORT_MIN_JOB_AGE} s, PollFraction {fraction}, jobs running "
            f"{2 * SHORT_MIN_JOB_AGE} s: the uncapped wait grows past MinJobAge",
            jobs=run.outcomes(),
            evidence={
                "min_job_age": SHORT_MIN_JOB_AGE,
                "longest_wait": max(waits),
                "longest_uncapped_wait": max(uncapped_waits),
            },
        )
    result.findings.append(
        f"The longest wait between polls was {max(waits)} s (cap: MinJobAge/2 = {SHORT_MIN_JOB_AGE // 2} s); "
        f"uncapped, PollFraction {fraction} would have waited up to {max(uncapped_waits)} s, longer than MinJobAge "
        f"({SHORT_MIN_JOB_AGE} s), and could have missed the end."
    )
    return result.timed_from(started)
