"""What a cluster's status sweep does for each active job it saw (pure).

A job whose workflow waits for news (state AwaitNews) is woken only when the workflow has something to do: the job
ended or vanished, a cancel was requested, or it waits for a reason that never lets it start (the never-start clock
starts, stops, or has run out). Anything else the sweep saw — the job started, its pending reason changed, array tasks
moved on — goes into the record, and the wait is kept alive with a heartbeat, sent only once a quarter of the wait's
safety poll has gone by since the sweep's last heartbeat for it (sweeps come more often than that: on a schedule of at
most half the safety poll, and at once on each push; one heartbeat per job and sweep would be most of a sweep's
calls, and of Step Functions' SendTaskHeartbeat quota). A wake is the workflow's poll with the sweep's observation
instead of a command of its own. When that observation ends the job, the sweep writes the end into the record
before it wakes anyone, exactly as the woken poll will (slurm_job_api.progress.observed_end), in a write conditional
on the record being active: GET /jobs/{jobId} answers with the end as soon as the sweep saw it, not once the woken
workflows (whose steps compete for the same services) got their turn. A record so ended whose workflow still waits
is swept again (`swept`) until its wake has gone through. The end's event is published with the results
(slurm_job_api.job_events).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slurm_job_api.head_node_protocol import StatusReply, SweepJob
from slurm_job_api.job_record import JobRecord
from slurm_job_api.progress import JobProgress, observed_end, parse_time
from slurm_job_api.statuses import ACTIVE_STATUSES, PENDING, TERMINAL_STATUSES, never_starts

# A wait is kept alive when this share of its safety poll (its HeartbeatSeconds) has gone by since the last heartbeat
# the sweep sent for it. Sweeps come at most one and a half sweep intervals apart (a tick just after a push's sweep
# is skipped: slurm_job_api.sweep_trigger), and SafetyPollMinSeconds is kept above two intervals, so that is less
# than three quarters of a safety poll: the heartbeat is sent before the wait would time out.
HEARTBEAT_AFTER_SHARE = 0.25

# Why a sweep wakes a waiting workflow.
ENDED = "ended"
NOT_FOUND = "not found"
CANCEL_REQUESTED = "cancel requested"
CANNOT_START = "cannot start"
CANNOT_START_GRACE_OVER = "cannot start, grace over"
CAN_START = "can start again"


@dataclass(frozen=True)
class SweepAction:
    """What the sweep does for one job."""

    job_id: str
    token: str | None  # the waiting workflow's task token (None: nobody waits; the record is brought up to date only)
    wake: dict[str, Any] | None  # the news the workflow is woken with
    record_changes: dict[str, Any]  # stored names; empty when the record already says what the sweep saw
    heartbeat: bool = False  # no wake, and the wait must be kept alive now


def swept(record: JobRecord, tokens_woken: Collection[str] = ()) -> bool:
    """Whether a sweep looks at this record of the active-jobs index: an active job, or one whose end a sweep has
    written while its workflow still waits — unless its token is among `tokens_woken` (the wakes this sweep function
    delivered: that workflow is awake and its PollJob has not run yet). Such a wake had failed or was never sent:
    this sweep wakes it."""
    if record.status in ACTIVE_STATUSES:
        return True
    waits = record.finished_at is None and record.wait_token is not None and record.waiting_progress is not None
    return waits and record.wait_token not in tokens_woken


def swept_jobs(records: list[JobRecord]) -> list[SweepJob]:
    """The jobs a sweep asks Slurm about: those of the records it looks at (`swept`) that have a Slurm job id, once
    each."""
    seen: dict[str, SweepJob] = {}
    for record in records:
        if swept(record) and record.slurm_job_id:
            waiting = _waiting(record)
            is_array = bool(waiting.is_array) if waiting else record.spec.array is not None
            seen.setdefault(record.slurm_job_id, SweepJob(slurm_job_id=record.slurm_job_id, is_array=is_array))
    return list(seen.values())


def _waiting(record: JobRecord) -> JobProgress | None:
    return JobProgress.model_validate(record.waiting_progress) if record.waiting_progress else None


def news(record: JobRecord, observation: StatusReply, *, now: datetime, never_start_grace_seconds: int) -> str | None:
    """Why the job's workflow must act now, or None."""
    if not observation.found:
        return NOT_FOUND
    if observation.status in TERMINAL_STATUSES:
        return ENDED
    if record.cancel_requested:
        return CANCEL_REQUESTED
    waiting = _waiting(record)
    blocked = observation.status == PENDING and never_starts(observation.reason)
    since = parse_time(waiting.never_start_since) if waiting else None
    if blocked and since is None:
        return CANNOT_START
    if blocked and since is not None and (now - since).total_seconds() >= never_start_grace_seconds:
        return CANNOT_START_GRACE_OVER
    if not blocked and since is not None:
        return CAN_START
    return None


def observed_fields(record: JobRecord, observation: StatusReply, now: str) -> dict[str, Any]:
    """The record's changes for what the sweep saw of a job that goes on (empty if it already says so)."""
    changes = JobRecord.stored(
        status=observation.status,
        slurm_state=observation.slurm_state,
        reason=observation.reason,
        started_at=observation.start_time or record.started_at,
        array_task_counts=observation.array_task_counts,
    )
    return {**changes, **JobRecord.stored(updated_at=now)} if record.would_change(changes) else {}


def ended_fields(
    record: JobRecord, observation: StatusReply, *, now: datetime, now_text: str, never_start_grace_seconds: int
) -> dict[str, Any]:
    """The record's changes for an observation that ends the job its workflow waits on (what the woken poll writes),
    or none: the job goes on, the record already says it ended, or no waiting progress says what the workflow
    knows."""
    waiting = _waiting(record)
    if record.status not in ACTIVE_STATUSES or waiting is None or waiting.slurm_job_id != observation.slurm_job_id:
        return {}
    end = observed_end(
        waiting,
        observation,
        now=now,
        cancel_requested=record.cancel_requested,
        never_start_grace_seconds=never_start_grace_seconds,
    )
    return JobRecord.progress_fields(end, now_text) if end is not None else {}


def heartbeat_due(waiting: JobProgress | None, last_heartbeat: datetime | None, now: datetime) -> bool:
    """Whether a wait must be kept alive now: no heartbeat of the sweep's is known for it, or the last one is a
    quarter of its safety poll old (a wait without a safety poll is always kept alive)."""
    if last_heartbeat is None or waiting is None or waiting.safety_poll_seconds <= 0:
        return True
    return (now - last_heartbeat).total_seconds() >= waiting.safety_poll_seconds * HEARTBEAT_AFTER_SHARE


def decide(
    record: JobRecord,
    observation: StatusReply,
    *,
    now: datetime,
    now_text: str,
    never_start_grace_seconds: int,
    last_heartbeat: datetime | None = None,
) -> SweepAction:
    """What the sweep does for `record`, given what Slurm said of its job and when the sweep last sent a heartbeat
    for the wait of its workflow (None: not known)."""
    reason = news(record, observation, now=now, never_start_grace_seconds=never_start_grace_seconds)
    token = record.wait_token if record.waiting_progress else None
    if reason is not None and token is not None:
        wake = {"reason": reason, "observation": observation.model_dump(mode="json", by_alias=True)}
        return SweepAction(
            job_id=record.job_id,
            token=token,
            wake=wake,
            record_changes=ended_fields(
                record, observation, now=now, now_text=now_text, never_start_grace_seconds=never_start_grace_seconds
            ),
        )
    if reason in (ENDED, NOT_FOUND):
        # Nobody waits (the workflow is between two states, or polls on its own): its next poll sees the end.
        return SweepAction(job_id=record.job_id, token=token, wake=None, record_changes={})
    return SweepAction(
        job_id=record.job_id,
        token=token,
        wake=None,
        record_changes=observed_fields(record, observation, now_text),
        heartbeat=token is not None and heartbeat_due(_waiting(record), last_heartbeat, now),
    )
