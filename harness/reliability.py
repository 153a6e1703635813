"""The reliability harness: run jobs through the HTTP API of a running local stack, then check how each one ended.

A scenario (harness/fault_scenarios.py) submits jobs with :class:`JobRun`, injects its fault, and calls
:meth:`JobRun.outcomes`. Every accepted job is then checked against four facts, each from its own source:

- the workflow ended and the job record (GET /jobs/{id}) holds a terminal status;
- ``jobs/<jobId>/result.json`` exists in the results bucket and says the same status;
- the status (and exit code) is the one the job's plan expects;
- Slurm took and ran it exactly once (or never, for a job that must not reach Slurm): Slurm's own records of the
  scenario's unique job name and the jobs' run ledger (harness/slurm_records.py);
- it was finished exactly once: one successful FinishJob invocation (or the state machine's own record of a failed
  finish), one write of its result.json and one of the record's final fields, counted where they land
  (harness/final_writes.py), and nothing wrote the record after them (its updatedAt is its finishedAt, which
  result.json's finishedAt repeats).

A job is *lost* if it did not end with a record and a result.json (or never ran though it should have),
*duplicated* if Slurm took or ran it more often than once or it was finished more than once (or its record written
after its finish), and in a *wrong final state* otherwise if its status is not the expected one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from harness import final_writes
from harness.slurm_records import SlurmRecords, job_script
from harness.workflow import (
    execution_arn,
    execution_statuses,
    finish_counts,
    history,
    path,
    result_json,
    task_failures,
    wait_endings,
)
from local_stack.stack import LocalStack
from slurm_job_api.statuses import COMPLETED, FAILED, TERMINAL_STATUSES

ACCOUNTING_RECORD_WAIT_SECONDS = 30  # slurmctld sends job records to slurmdbd asynchronously
EXECUTION_RUNNING = "RUNNING"


def _error_code(result: dict | None) -> str | None:
    """result.json's error code: ``error`` is {"code", "message"} when the finish step wrote it, and the error's name
    alone when the state machine's fallback (BuildFallbackResult) did."""
    error = (result or {}).get("error")
    return error if isinstance(error, str) or error is None else error.get("code")


@dataclass(frozen=True)
class JobPlan:
    """A job to run and how it must end."""

    seconds: float = 1
    exit_code: int = 0
    expected_status: str = COMPLETED
    reaches_slurm: bool = True
    after: str | None = None  # a file (readable by the cluster user) the job waits for before its ``seconds`` start

    def spec(self, name: str) -> dict:
        return {"name": name, "script": job_script(seconds=self.seconds, exit_code=self.exit_code, after=self.after)}

    @property
    def expected_runs(self) -> int:
        return 1 if self.reaches_slurm else 0

    @property
    def expected_exit_code(self) -> int | None:
        return self.exit_code if self.expected_status in (COMPLETED, FAILED) else None


@dataclass(frozen=True)
class JobOutcome:
    """How one accepted job ended, by every source."""

    job_id: str
    plan: JobPlan
    execution_status: str
    status: str | None  # the job record's status; None: no record
    exit_code: int | None
    result_status: str | None  # result.json's status; None: no result.json
    cause: str | None
    error_code: str | None  # result.json's error.code: the error that ended the workflow, if one did
    slurm_job_ids: frozenset[str]
    runs: int
    task_failures: tuple[str, ...]
    states: tuple[str, ...] = ()  # the states its execution entered, the poll loop's rounds collapsed into one
    wait_endings: tuple[str, ...] = ()  # how each wait for news ended: a sweep's wake reason, or "safety poll"
    finishes: int = 1  # successful FinishJob invocations, and the state machine's record of a failed finish
    result_json_writes: int = 1  # PutObject of jobs/<jobId>/result.json
    final_record_writes: int = 1  # UpdateItem of the record setting finishedAt
    written_after_finish: bool = False  # the record changed after the finish (or disagrees with result.json)

    @property
    def ended(self) -> bool:
        return self.execution_status != EXECUTION_RUNNING and self.status in TERMINAL_STATUSES

    @property
    def lost(self) -> bool:
        return not self.ended or self.result_status is None or self.runs < self.plan.expected_runs

    @property
    def duplicated(self) -> bool:
        return (
            self.runs > self.plan.expected_runs
            or len(self.slurm_job_ids) > self.plan.expected_runs
            or max(self.finishes, self.result_json_writes, self.final_record_writes) > 1
            or self.written_after_finish
        )

    @property
    def wrong_state(self) -> bool:
        if self.lost:
            return False
        expected_exit = self.plan.expected_exit_code
        return (
            self.status != self.plan.expected_status
            or self.result_status != self.status
            or (expected_exit is not None and self.exit_code != expected_exit)
        )

    def describe(self) -> str:
        return (
            f"job {self.job_id}: execution {self.execution_status}, record {self.status} (exit {self.exit_code}), "
            f"result.json {self.result_status}, expected {self.plan.expected_status}; Slurm jobs "
            f"{sorted(self.slurm_job_ids)}, runs {self.runs}; finished {self.finishes} times (result.json written "
            f"{self.result_json_writes}, final record {self.final_record_writes})"
            f"{' (record written after its finish)' if self.written_after_finish else ''}; waits ended "
            f"{list(self.wait_endings)}; retried errors {list(self.task_failures)}; cause: {self.cause}"
        )


@dataclass
class ScenarioResult:
    """One fault scenario: what was injected, the jobs' outcomes, and the scenario's own evidence."""

    key: str
    title: str
    fault: str
    jobs: list[JobOutcome]
    seconds: float = 0.0  # the scenario's wall time, set by timed_from
    faults_injected: dict[str, int] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)  # what the scenario measured, for tests
    findings: list[str] = field(default_factory=list)  # the same, in sentences, for the report

    @property
    def lost(self) -> int:
        return sum(job.lost for job in self.jobs)

    @property
    def duplicated(self) -> int:
        return sum(job.duplicated for job in self.jobs)

    @property
    def wrong_state(self) -> int:
        return sum(job.wrong_state for job in self.jobs)

    def retried_errors(self) -> dict[str, int]:
        """How many failed task attempts Step Functions saw, by error name, over all jobs."""
        counts: dict[str, int] = {}
        for job in self.jobs:
            for error in job.task_failures:
                counts[error] = counts.get(error, 0) + 1
        return dict(sorted(counts.items()))

    def timed_from(self, started: float) -> ScenarioResult:
        """Sets the scenario's wall time, from ``started`` (time.monotonic()) to now."""
        self.seconds = round(time.monotonic() - started, 1)
        return self

    def problems(self) -> str:
        """The jobs that were lost, duplicated or ended wrong, one per line (empty when there are none)."""
        return "\n".join(job.describe() for job in self.jobs if job.lost or job.duplicated or job.wrong_state)


def record_written_after_finish(view: dict, result: dict | None) -> bool:
    """True when the record was written after its finish: its updatedAt is not its finishedAt, or result.json (written
    by the same finish) has another finishedAt. A job without a finish (no finishedAt) is not said to be."""
    finished_at = view.get("finishedAt")
    if not finished_at:
        return False
    result_finished_at = (result or {}).get("finishedAt", finished_at)  # the state machine's fallback has none
    return view.get("updatedAt") != finished_at or result_finished_at != finished_at


def unique_name(prefix: str) -> str:
    """A Slurm job name no other scenario or run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class JobRun:
    """The jobs of one scenario on a running local stack: submit them, wait for them, check their outcomes."""

    def __init__(self, stack: LocalStack, name_prefix: str) -> None:
        self.stack = stack
        self.cloud = stack.running_cloud
        self.api = self.cloud.api_client()
        self.name = unique_name(name_prefix)
        self.slurm = SlurmRecords(stack.cluster, stack.cluster_user)
        self.plans: dict[str, JobPlan] = {}
        final_writes.install()  # before the first job: its writes are counted

    def submit(self, plan: JobPlan, count: int = 1) -> list[str]:
        """Submits ``count`` jobs of this plan through the API; returns their job ids."""
        job_ids = []
        for _ in range(count):
            answer = self.api.post("/jobs", json=plan.spec(self.name))
            if answer.status_code != 202:
                raise RuntimeError(f"POST /jobs answered {answer.status_code}: {answer.text}")
            job_id = answer.json()["jobId"]
            self.plans[job_id] = plan
            job_ids.append(job_id)
        return job_ids

    def view(self, job_id: str) -> dict:
        return self.api.get(f"/jobs/{job_id}").json()

    def wait_for_status(self, job_ids: Iterable[str], status: str, timeout: float = 60) -> None:
        """Waits until every one of these jobs shows ``status`` through the API."""
        waiting = set(job_ids)
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = {job_id for job_id in waiting if self.view(job_id).get("status") != status}
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"jobs {sorted(waiting)} not {status} after {timeout:.0f} s")
            time.sleep(0.5)

    def wait_for_executions(self, timeout: float) -> dict[str, str]:
        """Waits until every job's execution has ended, or ``timeout``; returns the execution status by job id."""
        return execution_statuses(self.cloud, self.plans, timeout)

    def outcomes(self, timeout: float = 240) -> list[JobOutcome]:
        """Waits for the jobs' workflows, then gathers each job's outcome from every source (once per run: it
        removes the run ledger it read)."""
        executions = self.wait_for_executions(timeout)
        views = {job_id: self.api.get(f"/jobs/{job_id}") for job_id in self.plans}
        slurm_jobs = self._slurm_jobs(views)
        runs = self.slurm.runs_named(self.name)
        finishes = finish_counts(self.cloud, self.plans)
        self.slurm.forget_ledger(self.name)  # read once: the scenario's name is never used again
        outcomes = []
        for job_id, plan in self.plans.items():
            answer = views[job_id]
            view = answer.json() if answer.status_code == 200 else {}
            result = self._result(job_id)
            events = history(self.cloud, execution_arn(self.cloud, job_id))
            states = tuple(path(events))
            outcomes.append(
                JobOutcome(
                    job_id=job_id,
                    plan=plan,
                    execution_status=executions[job_id],
                    status=view.get("status"),
                    exit_code=view.get("exitCode"),
                    result_status=result.get("status") if result else None,
                    cause=(result or view).get("cause"),
                    error_code=_error_code(result),
                    slurm_job_ids=frozenset(slurm_jobs.get(job_id, set()) | set(runs.get(job_id, []))),
                    runs=len(runs.get(job_id, [])),
                    task_failures=tuple(task_failures(events)),
                    states=states,
                    wait_endings=tuple(wait_endings(events)),
                    finishes=finishes[job_id] + ("RecordFinishFailure" in states),
                    result_json_writes=final_writes.result_json_writes(job_id),
                    final_record_writes=final_writes.final_record_writes(job_id),
                    written_after_finish=record_written_after_finish(view, result),
                )
            )
        return outcomes

    def _result(self, job_id: str) -> dict | None:
        try:
            return result_json(self.cloud, job_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def _slurm_jobs(self, views: dict[str, Any]) -> dict[str, set[str]]:
        """Slurm's records of this run's name; with accounting, waits until every job that reached Slurm is there."""
        reached = {
            job_id for job_id, answer in views.items() if answer.status_code == 200 and answer.json().get("slurmJobId")
        }
        deadline = time.monotonic() + (ACCOUNTING_RECORD_WAIT_SECONDS if self.stack.cluster.accounting else 0)
        while True:
            found = self.slurm.slurm_jobs_named(self.name)
            if reached <= set(found) or time.monotonic() >= deadline:
                return found
            time.sleep(0.5)
