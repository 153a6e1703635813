"""Fault scenarios of job tracking under JobTracking sweep, on the real local stack: the cluster's status sweep failing
for ten minutes (time compressed), the head node's push events lost, delayed or delivered twice, a wake for an
execution that has already ended, and the sweep, a push and the safety poll acting on the same job end.

Each job is checked as every scenario's are (harness/reliability.py), which includes "finished exactly once": one
successful FinishJob invocation per job (the one writer of result.json and of the record's final fields) and no write
to the record after it. The scenarios run on two clusters of their own: :data:`SWEEP_FAULTS_CLUSTER`, and
:data:`PUSH_FAULTS_CLUSTER`, whose slurmctld runs the product's push hook.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.fault_scenarios import Jobs, Outage, _moments, _submit
from harness.fault_stacks import (
    DEFAULT_MIN_JOB_AGE,
    SWEEP_SAFETY_POLL_SECONDS,
    SWEEP_TRACKING,
    ClusterPlace,
    head_node,
    local_stack,
)
from harness.reliability import JobPlan, JobRun, ScenarioResult
from harness.workflow import SAFETY_POLL, SAFETY_POLL_ERRORS, execution_arn
from local_stack.cloud import LocalCloud
from local_stack.lambda_runtime import Handler, Invocation, LambdaContext, RuntimeFailure
from local_stack.stack import LocalStack
from slurm_job_api.statuses import FAILED, RUNNING
from slurm_job_api.sweep_news import ENDED
from slurm_job_api.sweep_trigger import head_node_push

SWEEP_FAULTS_CLUSTER = ClusterPlace(name="faults-sweep", port_base=18817, accounting=False)
PUSH_FAULTS_CLUSTER = ClusterPlace(name="faults-push", port_base=18827, accounting=False, push_hook=True)
SWEEP = "SweepJobsFunction"
# The long fault is compressed as the local stack compresses the sweep's schedule: SWEEP_TRACKING's safety poll (10 s)
# stands for the template's 150 s, so ten minutes of failing sweeps last 40 s.
TIME_COMPRESSION = 150 / SWEEP_SAFETY_POLL_SECONDS
SWEEP_OUTAGE_SECONDS = 10 * 60 / TIME_COMPRESSION
# The schedule kept from firing (an hour's period): jobs are then followed by pushes and safety polls only.
NO_SCHEDULE_SECONDS = 3600.0
WAIT_SECONDS = 120  # generous deadlines for conditions on a loaded machine


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.2)


def _record(cloud: LocalCloud, job_id: str) -> dict[str, Any]:
    """The job's record as DynamoDB stores it (every attribute, in the wire's form)."""
    return cloud.client("dynamodb").get_item(TableName=cloud.table_name, Key={"jobId": {"S": job_id}})["Item"]


def _execution_ended(cloud: LocalCloud, job_id: str) -> bool:
    described = cloud.client("stepfunctions").describe_execution(executionArn=execution_arn(cloud, job_id))
    return described["status"] != "RUNNING"


def _sweep_totals(invocations: list[Invocation]) -> dict[str, int]:
    """What these sweep invocations did, summed: wakes, stale wakes or heartbeats ("gone"), coalesced pushes, errors."""
    totals = {"sweeps": len(invocations), "woken": 0, "gone": 0, "heartbeats": 0, "coalesced": 0, "errors": 0}
    for invocation in invocations:
        result = invocation.result if isinstance(invocation.result, dict) else {}
        totals["errors"] += invocation.error is not None
        totals["coalesced"] += bool(result.get("coalesced"))
        for name in ("woken", "gone", "heartbeats"):
            totals[name] += int(result.get(name, 0))
    return totals


def _ended_by(result: ScenarioResult, job_ids: list[str], ending: str) -> list[str]:
    """The jobs whose last wait for news ended so (SAFETY_POLL, or a sweep's wake reason)."""
    by_id = {job.job_id: job for job in result.jobs}
    return [job_id for job_id in job_ids if by_id[job_id].wait_endings[-1:] == (ending,)]


# ----- the sweep failing for ten minutes -----------------------------------------------------------------------------


class SweepFails:
    """Every invocation of the sweep function fails, as a crashing sweep does (Runtime.ExitError)."""

    def __init__(self, stack: LocalStack, run: JobRun) -> None:
        self._runtime = stack.running_cloud.runtime
        self._fault = ExitStack()
        self._lock = threading.Lock()
        self._failed = 0

    def _fail(self, event: Any, context: LambdaContext, call_next: Handler) -> Any:
        with self._lock:
            self._failed += 1
        raise RuntimeFailure("Runtime.ExitError", "Runtime exited with error: exit status 1 (injected)")

    def start(self) -> None:
        self._fault.enter_context(self._runtime.intercepted(SWEEP, self._fail))

    def end(self) -> None:
        self._fault.close()

    def description(self, seconds: float) -> str:
        return (
            f"every sweep fails (Runtime.ExitError) for {seconds:.0f} s: ten minutes at the local stack's "
            f"{TIME_COMPRESSION:.0f}x compressed time (safety poll {SWEEP_SAFETY_POLL_SECONDS} s for 150 s)"
        )

    def injected(self, seconds: float) -> dict[str, int]:
        return {"sweeps failed": self._failed, "seconds without a sweep": round(seconds)}

    def evidence(self) -> dict[str, Any]:
        return {"sweeps_failed": self._failed}

    def conclude(self, result: ScenarioResult) -> None:
        evidence = result.evidence
        during = [*evidence["ending_during_outage"], *evidence["submitted_during_outage"]]
        safety_polled = _ended_by(result, during, SAFETY_POLL)
        evidence["ended_by_safety_poll"] = safety_polled
        result.findings.append(
            f"The sweep failed {evidence['sweeps_failed']} times in a row. Of the {len(during)} jobs that ended or "
            f"were submitted during the outage, {len(safety_polled)} ended through their own safety poll (their wait "
            "for news timed out without a heartbeat), each finished once; the jobs that outlasted the outage ended "
            "after it."
        )


sweep_outage = Outage(
    key="sweep-outage",
    title="Status sweep failing for ten minutes (compressed)",
    name_prefix="sweep-down",
    place=SWEEP_FAULTS_CLUSTER,
    min_job_age=DEFAULT_MIN_JOB_AGE,
    seconds=SWEEP_OUTAGE_SECONDS,
    ending_during=((JobPlan(seconds=2), 2), (JobPlan(seconds=2, exit_code=3, expected_status=FAILED), 1)),
    outlasting=((JobPlan(seconds=3), 1),),
    submitted_during=((JobPlan(seconds=2), 2),),
    outcomes_timeout=240,
    fault=SweepFails,
    parameters=SWEEP_TRACKING,
)


# ----- sweeps held across the jobs' end: stale wakes, and the sweep, a push and the safety poll racing ---------------


class SweepWatch:
    """Around every sweep invocation: which are in flight, since when (time.monotonic())."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._running: dict[int, float] = {}

    def __call__(self, event: Any, context: LambdaContext, call_next: Handler) -> Any:
        with self._lock:
            number, self._next = self._next, self._next + 1
            self._running[number] = time.monotonic()
        try:
            return call_next(event, context)
        finally:
            with self._lock:
                del self._running[number]

    def none_running_from_before(self, moment: float) -> bool:
        with self._lock:
            return all(started >= moment for started in self._running.values())


WHEN_FINISHED = "the jobs' workflows had ended"
AT_SAFETY_POLL = "the first safety poll of a job started"


@dataclass(frozen=True)
class HeldSweep:
    """Jobs wait for news, kept alive by the sweep; then the sweep's head-node commands are held (Pending) and the
    jobs end. Every sweep in flight has read the jobs' wait tokens before their end (and, with the push hook, the
    sweeps the jobs' ENDED pushes ran, after it) and acts on them only when the hold ends: at ``release``. Meanwhile
    no heartbeat comes, so each job's wait ends with its safety poll, which polls the job on its own."""

    key: str
    title: str
    name_prefix: str
    place: ClusterPlace
    jobs: Jobs
    release: str  # WHEN_FINISHED or AT_SAFETY_POLL

    def __call__(self, place: ClusterPlace | None = None) -> ScenarioResult:
        started = time.monotonic()
        with (
            _moments() as moments,
            local_stack(place or self.place, min_job_age=DEFAULT_MIN_JOB_AGE, parameters=SWEEP_TRACKING) as stack,
        ):
            cloud, faults, watch = stack.running_cloud, head_node(stack).faults, SweepWatch()
            with cloud.runtime.intercepted(SWEEP, watch):
                run = JobRun(stack, self.name_prefix)
                end = moments / "end"
                job_ids = _submit(run, self.jobs, after=end)
                run.wait_for_status(job_ids, RUNNING, timeout=WAIT_SECONDS)
                _wait_for(lambda: all("waitToken" in _record(cloud, j) for j in job_ids), WAIT_SECONDS, "waits")
                waiting = time.monotonic()
                # Every sweep that sends a command from now on started after each job waited: it read their tokens.
                _wait_for(lambda: watch.none_running_from_before(waiting), WAIT_SECONDS, "sweep end")
                released_at, records_at_end = self._hold_across_the_end(stack, run, end)
                _wait_for(lambda: watch.none_running_from_before(released_at[1]), WAIT_SECONDS, "held sweeps' end")
                records_after = {job_id: _record(cloud, job_id) for job_id in job_ids}
            invocations = list(cloud.runtime.invocations_of(SWEEP))
            released = released_at[0]
            late = [  # the sweeps in flight when the hold ended
                i
                for i in invocations
                if i.started_at <= released and i.started_at.timestamp() + i.duration_seconds >= released.timestamp()
            ]
            pushed_ends = [  # the job ends the hook's events carried
                change
                for delivery in (cloud.event_delivery.deliveries if cloud.event_delivery is not None else ())
                for change in delivery.event.get("detail", {}).get("jobs", [])
                if change.get("state") == "ENDED"
            ]
            result = ScenarioResult(
                key=self.key,
                title=self.title,
                fault=(
                    "the sweep's head-node commands held (Pending) from before the jobs ended until "
                    f"{self.release}, so that every sweep in flight acts on the wait tokens it read before the end"
                ),
                jobs=run.outcomes(timeout=WAIT_SECONDS),
                faults_injected={"sweep commands held": faults.counters().held_by_action},
                evidence={
                    "held_sweeps": _sweep_totals(late),
                    "all_sweeps": _sweep_totals(invocations),
                    "records_changed_after_the_end": sorted(
                        j for j in job_ids if records_after[j] != records_at_end[j]
                    ),
                    "pushed_ends": len(pushed_ends),
                },
            )
        self._conclude(result, job_ids)
        return result.timed_from(started)

    def _hold_across_the_end(
        self, stack: LocalStack, run: JobRun, end: Path
    ) -> tuple[tuple[datetime, float], dict[str, dict]]:
        """Holds the sweep's commands, ends the jobs, lets the commands go at ``release``; returns when they were let
        go (UTC, monotonic) and the jobs' records once their workflows had ended."""
        cloud, faults = stack.running_cloud, head_node(stack).faults
        released: list[tuple[datetime, float]] = []
        lock = threading.Lock()

        def release() -> None:
            with lock:
                if not released:
                    faults.held_action = None
                    released.append((datetime.now(UTC), time.monotonic()))

        def release_at_safety_poll(event: Any, context: LambdaContext, call_next: Handler) -> Any:
            if (event.get("job", {}).get("news") or {}).get("Error") in SAFETY_POLL_ERRORS:
                release()
            return call_next(event, context)

        held_before = faults.counters().held_by_action
        with ExitStack() as hold:
            hold.callback(release)
            faults.held_action = "sweep"
            if self.release == AT_SAFETY_POLL:
                hold.enter_context(cloud.runtime.intercepted("PollJobFunction", release_at_safety_poll))
            _wait_for(lambda: faults.counters().held_by_action > held_before, WAIT_SECONDS, "held sweep command")
            end.touch()
            if self.release == AT_SAFETY_POLL:
                _wait_for(lambda: bool(released), WAIT_SECONDS, "safety poll")
            run.wait_for_executions(timeout=WAIT_SECONDS)
            records_at_end = {job_id: _record(cloud, job_id) for job_id in run.plans}
        return released[0], records_at_end

    def _conclude(self, result: ScenarioResult, job_ids: list[str]) -> None:
        evidence, held = result.evidence, result.evidence["held_sweeps"]
        evidence["ended_by_safety_poll"] = _ended_by(result, job_ids, SAFETY_POLL)
        evidence["woken_by_sweep"] = _ended_by(result, job_ids, ENDED)
        result.findings.append(
            f"Sweeps held across the end of the {len(job_ids)} jobs: {held['sweeps']} (ENDED pushes delivered: "
            f"{evidence['pushed_ends']}). Once let go, they woke {held['woken']} workflows; Step Functions refused "
            f"{held['gone']} wakes and heartbeats for tasks already closed (an execution ended, a wait timed out), "
            f"which the sweeps ignored; failed sweeps: {held['errors']}. Jobs ended through their safety poll: "
            f"{len(evidence['ended_by_safety_poll'])}, through a sweep's wake: {len(evidence['woken_by_sweep'])}; "
            f"records a sweep changed after the end: {len(evidence['records_changed_after_the_end'])}."
        )


stale_wake = HeldSweep(
    key="stale-wake",
    title="Wake for an execution that already ended",
    name_prefix="stale-wake",
    place=SWEEP_FAULTS_CLUSTER,
    jobs=((JobPlan(seconds=0), 1), (JobPlan(seconds=0, exit_code=3, expected_status=FAILED), 1)),
    release=WHEN_FINISHED,
)
tracking_race = HeldSweep(
    key="tracking-race",
    title="Sweep, push and safety poll on the same job end",
    name_prefix="tracking-race",
    place=PUSH_FAULTS_CLUSTER,
    jobs=((JobPlan(seconds=0), 3), (JobPlan(seconds=0, exit_code=3, expected_status=FAILED), 1)),
    release=AT_SAFETY_POLL,
)


# ----- push events lost, delayed, delivered twice --------------------------------------------------------------------

LOST = "lost"
DELAYED = "delayed"
TWICE = "delivered twice"


@dataclass(frozen=True)
class PushFault:
    """What becomes of every push event of some jobs (the events that carry their starts and ends)."""

    kind: str  # LOST, DELAYED (until the job's workflow has ended) or TWICE (a second delivery at once)
    jobs: Jobs


PUSH_FAULTS = (
    PushFault(LOST, ((JobPlan(seconds=1), 1), (JobPlan(seconds=1, exit_code=3, expected_status=FAILED), 1))),
    PushFault(DELAYED, ((JobPlan(seconds=1), 2),)),
    PushFault(TWICE, ((JobPlan(seconds=1), 1), (JobPlan(seconds=1, exit_code=3, expected_status=FAILED), 1))),
)


class PushDelivery:
    """Around every sweep invocation: a push event of a job whose pushes are faulty is dropped, held until the job's
    workflow has ended, or delivered a second time at once (another invocation, as EventBridge's at-least-once
    delivery may do). A schedule's invocation (no push) passes."""

    def __init__(self, stack: LocalStack, run: JobRun, kind_of: dict[str, str]) -> None:
        self._cloud, self._run, self._kind_of = stack.running_cloud, run, kind_of
        self._lock = threading.Lock()
        self._jobs_by_slurm_id: dict[str, str] = {}
        self._redelivered: set[str] = set()
        self.counts = {LOST: 0, DELAYED: 0, TWICE: 0}  # job changes (a start, an end) in the events so treated
        self.events = {LOST: 0, DELAYED: 0, TWICE: 0}
        self.delayed_after_the_end: list[bool] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, event: Any, context: LambdaContext, call_next: Handler) -> Any:
        push = head_node_push(event)
        if push is None or not push.detail.jobs:
            return call_next(event, context)
        # The hook's sender sends the changes it has at hand in one event: the jobs of one fault's row, which run
        # one row after the other. An event whose jobs do not share a fault is delivered as it is.
        job_ids = [self._job_of(slurm_job_id) for slurm_job_id in push.detail.slurm_job_ids]
        kinds = {self._kind_of.get(job_id or "") for job_id in job_ids}
        kind = kinds.pop() if len(kinds) == 1 else ""
        known = [job_id for job_id in job_ids if job_id is not None]
        changes = len(push.detail.jobs)
        if kind == LOST:
            self._count(LOST, changes)
            return {"dropped": True}  # the sweep never sees it
        if kind == DELAYED and known:
            self._count(DELAYED, changes)

            def ended() -> bool:
                return all(_execution_ended(self._cloud, job_id) for job_id in known)

            _wait_for(ended, 90, "end of the delayed push's jobs")
            with self._lock:
                self.delayed_after_the_end.append(ended())
        if kind == TWICE:
            with self._lock:
                first = event["id"] not in self._redelivered
                self._redelivered.add(event["id"])
            if first:
                self._count(TWICE, changes)
                again = threading.Thread(target=self._cloud.runtime.invoke, args=(SWEEP, event), daemon=True)
                with self._lock:
                    self.threads.append(again)
                again.start()
        return call_next(event, context)

    def settled(self) -> bool:
        """True once every delayed push has been delivered and every second delivery has ended."""
        with self._lock:
            delayed_done = len(self.delayed_after_the_end) >= self.events[DELAYED]
            return delayed_done and not any(thread.is_alive() for thread in self.threads)

    def _count(self, kind: str, changes: int) -> None:
        with self._lock:
            self.counts[kind] += changes
            self.events[kind] += 1

    def _job_of(self, slurm_job_id: str) -> str | None:
        """The API job of this Slurm job (its directory, as Slurm reports it; the record may not have it yet)."""
        deadline = time.monotonic() + 30
        while True:
            with self._lock:
                if slurm_job_id in self._jobs_by_slurm_id:
                    return self._jobs_by_slurm_id[slurm_job_id]
            for job_id, slurm_ids in self._run.slurm.slurm_jobs_named(self._run.name).items():
                with self._lock:
                    self._jobs_by_slurm_id.update(dict.fromkeys(slurm_ids, job_id))
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)


def push_faults(
    place: ClusterPlace = PUSH_FAULTS_CLUSTER, faults: tuple[PushFault, ...] = PUSH_FAULTS
) -> ScenarioResult:
    """The jobs of each row of ``faults`` have their pushes lost, delayed or delivered twice, one row after the other
    (a sweep reports on every active job, so a push for one job is news of all of them); the sweep's schedule does not
    fire, so a job is followed only by its pushes and its safety poll."""
    started = time.monotonic()
    stack_of = local_stack(
        place, min_job_age=DEFAULT_MIN_JOB_AGE, parameters=SWEEP_TRACKING, schedule_period_seconds=NO_SCHEDULE_SECONDS
    )
    with stack_of as stack:
        cloud = stack.running_cloud
        run = JobRun(stack, "push-faults")
        kind_of: dict[str, str] = {}
        delivery = PushDelivery(stack, run, kind_of)
        with cloud.runtime.intercepted(SWEEP, delivery):
            for fault in faults:
                kind_of.update(dict.fromkeys(_submit(run, fault.jobs), fault.kind))
                run.wait_for_executions(timeout=WAIT_SECONDS)
                _wait_for(delivery.settled, 90, "the pushes' deliveries")
        sweeps = list(cloud.runtime.invocations_of(SWEEP))
        result = ScenarioResult(
            key="push-faults",
            title="Push events lost, delayed or delivered twice",
            fault=(
                "the push events of some jobs dropped, of others delivered only after the job's workflow had ended, of "
                "others delivered twice at once; the sweep's schedule does not fire"
            ),
            jobs=run.outcomes(timeout=WAIT_SECONDS),
            faults_injected={f"job changes pushed, {kind}": count for kind, count in delivery.counts.items()},
            evidence={
                "jobs_by_fault": {kind: sorted(j for j, k in kind_of.items() if k == kind) for kind in delivery.counts},
                "delayed_after_the_end": delivery.delayed_after_the_end,
                "push_events_by_fault": dict(delivery.events),
                "sweeps": _sweep_totals(sweeps),
            },
        )
    evidence = result.evidence
    for kind, job_ids in evidence["jobs_by_fault"].items():
        evidence[f"{kind}: ended by"] = {
            ending: len(_ended_by(result, job_ids, ending)) for ending in (SAFETY_POLL, ENDED)
        }
    sweeps = evidence["sweeps"]

    def ended_by(kind: str) -> str:
        counts = evidence[f"{kind}: ended by"]
        return f"{counts[SAFETY_POLL]} through their safety poll, {counts[ENDED]} through a sweep's wake"

    result.findings.append(
        f"Jobs whose pushes were lost ended {ended_by(LOST)}. Pushes delayed past their job's end "
        f"({sum(evidence['delayed_after_the_end'])} of {delivery.counts[DELAYED]} delivered after it) found nothing to "
        f"do; those jobs ended {ended_by(DELAYED)}. Jobs whose pushes were delivered twice ended {ended_by(TWICE)}. "
        f"The {sweeps['sweeps']} sweeps woke {sweeps['woken']} workflows and sent {sweeps['heartbeats']} heartbeats; "
        f"Step Functions refused {sweeps['gone']} wakes and heartbeats for tasks already closed, which the sweeps "
        f"ignored; failed sweeps: {sweeps['errors']}."
    )
    return result.timed_from(started)
