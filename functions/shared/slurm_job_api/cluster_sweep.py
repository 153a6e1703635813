"""The cluster's status sweep: one head-node command reports every active job; waiting workflows are woken or kept
waiting (the SweepJobs function runs it on a schedule; slurm_job_api.sweep_news decides what to do per job).

The report goes to S3 (sweeps/<time>-<id>.json, expired by the bucket's lifecycle) because the state of thousands of
jobs does not fit the 24,000 characters of stdout SSM returns; the command's own reply is a few counts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from slurm_job_api import errors
from slurm_job_api.clock import iso, utc_now
from slurm_job_api.head_node import HeadNode, ssm_wait_seconds
from slurm_job_api.head_node_protocol import StatusReply, SweepReport, SweepRequest
from slurm_job_api.job_record import JobRecord
from slurm_job_api.job_store import JobStore
from slurm_job_api.observability import MetricUnit, logger, metrics
from slurm_job_api.results import ResultsBucket
from slurm_job_api.settings import Settings
from slurm_job_api.sweep_news import SweepAction, decide, swept, swept_jobs

SWEEP_REPORT_PREFIX = "sweeps/"
# A token whose task has moved on (woken, timed out, execution ended): the wake or heartbeat is simply not needed.
_GONE_TASK_CODES = frozenset(["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
# A sweep that saw jobs end asks again about the jobs that went on (one more command each time), at most this many
# observations in all: before it wakes the workflows while each observation finds more ends, then while the wakes
# are being sent.
MAX_OBSERVATIONS = 6
REOBSERVE_MIN_REMAINING_SECONDS = 60  # the function's time left for another observation and the wakes after it
# The sweep's command is polled at least this often: one sweep per cluster, so at most 4 GetCommandInvocation calls a
# second during its command (SSM publishes no rate for them), and an observation's answer is read within 0.25 s of
# its end, not up to POLL_EVERY_SECONDS later, for each of the observations of a burst of ends.
SWEEP_POLL_EVERY_SECONDS = 0.25
PARALLEL_CALLS = 16  # Step Functions and DynamoDB calls in flight at once (SendTask*: 500 per second refill)


def sweep_report_key(now: datetime) -> str:
    return f"{SWEEP_REPORT_PREFIX}{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex}.json"


@dataclass
class SweepSummary:
    active: int = 0
    asked: int = 0
    commands: int = 0
    woken: int = 0
    heartbeats: int = 0
    records_updated: int = 0
    gone: int = 0  # wakes and heartbeats for tasks that had moved on
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "asked": self.asked,
            "commands": self.commands,
            "woken": self.woken,
            "heartbeats": self.heartbeats,
            "recordsUpdated": self.records_updated,
            "gone": self.gone,
            "reasons": dict(sorted(self.reasons.items())),
        }


@dataclass
class ClusterSweep:
    settings: Settings
    store: JobStore
    bucket: ResultsBucket
    head_node: HeadNode
    states: Any
    remaining_seconds: Callable[[], float] = lambda: 120.0
    now: Callable[[], datetime] = utc_now
    # When this function last sent a heartbeat for each waiting workflow's token (kept by the handler between sweeps;
    # a new execution environment starts without, and keeps every wait alive at its first sweep).
    heartbeats_sent: dict[str, datetime] = field(default_factory=dict)
    # The tokens of the wakes this function delivered whose records were still listed at its last sweep (kept by the
    # handler too): a record ended by a sweep and woken is not woken again while its PollJob waits for its turn.
    tokens_woken: set[str] = field(default_factory=set)

    def run(self) -> SweepSummary:
        summary = SweepSummary()
        listed = self.store.active_on_cluster(self.settings.cluster_name)
        self.tokens_woken.intersection_update(record.wait_token for record in listed if record.wait_token)
        records = [record for record in listed if swept(record, self.tokens_woken)]
        summary.active = len(records)
        jobs = swept_jobs(records)
        summary.asked = len(jobs)
        if not jobs:
            return summary
        actions = self._decide(records, self._observe(SweepRequest(jobs=jobs, report_url=""), summary))
        with (
            ThreadPoolExecutor(max_workers=PARALLEL_CALLS) as writes,
            ThreadPoolExecutor(max_workers=PARALLEL_CALLS) as calls,
        ):
            # The ends first, then the wakes, then the rest: a job's end is what its caller waits for, and each wake
            # starts work (the woken workflow's steps) that competes with the sweep's own calls.
            ends = _ends(actions)
            list(writes.map(self._write_end, ends))
            rounds = 1  # observations so far
            while ends and rounds < MAX_OBSERVATIONS:
                # Jobs end in bursts (an array, a parameter sweep): ask again about those that went on, so that the
                # burst's later ends are written now rather than after this sweep's wakes and the next sweep.
                again = self._observe_going_on(records, actions, summary)
                if again is None:
                    break
                rounds += 1
                actions = _newest(actions, again)
                ends = _ends(again)
                list(writes.map(self._write_end, ends))
            woken = {action.job_id for action in actions if action.wake is not None}
            wakes = [calls.submit(self._apply, action) for action in actions if action.job_id in woken]
            while rounds < MAX_OBSERVATIONS and not all(wake.done() for wake in wakes):
                # Sending the wakes takes a while (each starts a workflow's steps): the jobs that go on are watched
                # meanwhile, and the ends that come are written and woken at once, not at the next sweep.
                again = self._observe_going_on(records, actions, summary)
                if again is None:
                    break
                rounds += 1
                actions = _newest(actions, again)
                list(writes.map(self._write_end, _ends(again)))
                for action in again:
                    if action.wake is not None and action.job_id not in woken:
                        woken.add(action.job_id)
                        wakes.append(calls.submit(self._apply, action))
            outcomes = [wake.result() for wake in wakes]
            outcomes += calls.map(self._apply, [action for action in actions if action.job_id not in woken])
            for outcome in outcomes:
                summary.woken += outcome == "woken"
                summary.heartbeats += outcome == "heartbeat"
                summary.gone += outcome == "gone"
        waiting_tokens = {action.token for action in actions if action.token and action.wake is None}
        for token in self.heartbeats_sent.keys() - waiting_tokens:
            del self.heartbeats_sent[token]  # woken, moved on, or no longer active
        for action in actions:
            summary.records_updated += bool(action.record_changes)
            if action.wake:
                reason = action.wake["reason"]
                summary.reasons[reason] = summary.reasons.get(reason, 0) + 1
        metrics.add_metric(name="SweptJobs", unit=MetricUnit.Count, value=summary.asked)
        metrics.add_metric(name="WorkflowsWoken", unit=MetricUnit.Count, value=summary.woken)
        logger.info("cluster swept", extra=summary.to_dict())
        return summary

    def _observe_going_on(
        self, records: list[JobRecord], actions: list[SweepAction], summary: SweepSummary
    ) -> list[SweepAction] | None:
        """What to do for the jobs that went on (no wake in `actions`), observed once more; None when no such job is
        left to ask about or the function's time is too short for another observation and what follows it."""
        going_on = {action.job_id for action in actions if action.wake is None}
        rest = [record for record in records if record.job_id in going_on]
        jobs = swept_jobs(rest)
        if not jobs or self.remaining_seconds() < REOBSERVE_MIN_REMAINING_SECONDS:
            return None
        return self._decide(rest, self._observe(SweepRequest(jobs=jobs, report_url=""), summary))

    def _decide(self, records: list[JobRecord], observations: dict[str, StatusReply]) -> list[SweepAction]:
        """What to do for each record whose job was observed (sweep_news.decide)."""
        now = self.now()
        return [
            decide(
                record,
                observations[record.slurm_job_id],
                now=now,
                now_text=iso(now),
                never_start_grace_seconds=self.settings.never_start_grace_seconds,
                last_heartbeat=self.heartbeats_sent.get(record.wait_token or ""),
            )
            for record in records
            if record.slurm_job_id in observations
        ]

    def _observe(self, request: SweepRequest, summary: SweepSummary) -> dict[str, StatusReply]:
        """The status of every job of `request`, by Slurm job id: one command per batch (HeadNode.sweep_batches)."""
        observations: dict[str, StatusReply] = {}
        for batch in self.head_node.sweep_batches(request.jobs):
            key = sweep_report_key(self.now())
            asked = batch.model_copy(update={"report_url": self.bucket.presigned_put(key)})
            reply = self.head_node.run(
                asked,
                wait_seconds=ssm_wait_seconds(self.remaining_seconds()),
                poll_every_seconds=SWEEP_POLL_EVERY_SECONDS,
            )
            summary.commands += 1
            stored = self.bucket.read_json(key)
            if stored is None:
                raise errors.HeadNodeProtocolError(f"the sweep reported {reply.reported} jobs but uploaded no {key}")
            report = SweepReport.model_validate(stored)
            if [job.slurm_job_id for job in report.jobs] != [job.slurm_job_id for job in batch.jobs]:
                raise errors.HeadNodeProtocolError("the sweep's report does not answer for the jobs it was asked")
            observations.update((job.slurm_job_id, job) for job in report.jobs)
            logger.debug("sweep batch reported", extra={"jobs": len(report.jobs), **reply.diagnostics()})
        return observations

    def _write_end(self, action: SweepAction) -> None:
        """Writes the end the sweep saw into the record (if it is still active), before the wake: a wake that then
        fails leaves a record ended but waiting, which the next sweep looks at again (sweep_news.swept) and wakes."""
        self.store.update(action.job_id, action.record_changes, only_if_active=True)

    def _apply(self, action: SweepAction) -> str:
        """Carries out one job's action but the end's write; says what happened ("woken", "heartbeat", "gone",
        "updated", "none")."""
        if action.token is not None and action.wake is not None:
            outcome = self._to_task(
                lambda: self.states.send_task_success(taskToken=action.token, output=json.dumps(action.wake)), "woken"
            )
            if outcome == "woken":
                self.tokens_woken.add(action.token)
            return outcome
        if action.record_changes:
            self.store.update(action.job_id, action.record_changes, only_if_active=True)
        if action.token is None or not action.heartbeat:
            return "updated" if action.record_changes else "none"
        sent = self.now()  # before the call: the wait's clock restarts no sooner
        outcome = self._to_task(lambda: self.states.send_task_heartbeat(taskToken=action.token), "heartbeat")
        if outcome == "heartbeat":
            self.heartbeats_sent[action.token] = sent
        return outcome

    @staticmethod
    def _to_task(call: Callable[[], Any], outcome: str) -> str:
        """`outcome` once `call` (a SendTask* call) went through, "gone" if its task had moved on."""
        try:
            call()
            return outcome
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _GONE_TASK_CODES:
                return "gone"
            raise


def _newest(actions: list[SweepAction], again: list[SweepAction]) -> list[SweepAction]:
    """`actions` with each job observed again given its newer action."""
    newer = {action.job_id: action for action in again}
    return [newer.get(action.job_id, action) for action in actions]


def _ends(actions: list[SweepAction]) -> list[SweepAction]:
    """The actions that bring a job's end into its record."""
    return [action for action in actions if action.wake is not None and action.record_changes]


def cluster_sweep_for(
    remaining_seconds: Callable[[], float],
    heartbeats_sent: dict[str, datetime] | None = None,
    tokens_woken: set[str] | None = None,
) -> ClusterSweep:
    """The sweep wired to this Lambda container's AWS clients."""
    from slurm_job_api import aws_clients, services
    from slurm_job_api.settings import settings

    return ClusterSweep(
        settings=settings(),
        store=services.job_store(),
        bucket=services.results_bucket(),
        head_node=services.head_node(),
        states=aws_clients.client("stepfunctions"),
        remaining_seconds=remaining_seconds,
        heartbeats_sent=heartbeats_sent if heartbeats_sent is not None else {},
        tokens_woken=tokens_woken if tokens_woken is not None else set(),
    )
