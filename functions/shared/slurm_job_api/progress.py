"""The job's progress through the state machine (`$.job`) and how each poll advances it (pure)."""

from __future__ import annotations

from datetime import datetime

from slurm_job_api.clock import iso
from slurm_job_api.errors import HeadNodeOutageLimitReached
from slurm_job_api.head_node_protocol import StatusReply
from slurm_job_api.job_record import JobState
from slurm_job_api.poll_schedule import PollSchedule
from slurm_job_api.statuses import (
    CANCELLED,
    PENDING,
    SUBMITTING,
    TERMINAL_STATUSES,
    UNKNOWN,
    Status,
    never_starts,
)

# A job Slurm has no record of, on this many polls in a row, has ended in a way nobody can tell.
NOT_FOUND_POLL_LIMIT = 3
# After PollJob's retries ran out on an outage (errors.OUTAGE_ERROR_NAMES), the wait before it polls again.
OUTAGE_REPOLL_SECONDS = 300


class JobProgress(JobState):
    """What the workflow knows of a job; the submit and poll functions return it, the Choice state reads `done`."""

    status: Status = SUBMITTING
    job_id: str
    submission_id: str | None = None
    is_array: bool = False
    accounting_available: bool | None = None
    min_job_age: int | None = None
    done: bool = False
    continue_as_new: bool = False
    next_poll_seconds: int = 1
    # JobTracking "sweep": the workflow waits for news (AwaitNews) instead of waiting next_poll_seconds, and polls the
    # job itself only when no sweep kept the wait alive for safety_poll_seconds (its heartbeat).
    wait_for_news: bool = False
    safety_poll_seconds: int = 0
    polls: int = 0
    polls_in_execution: int = 0
    not_found_polls: int = 0
    execution_sequence: int = 0
    next_execution_name: str | None = None
    # Slurm's reason that the job cannot start under the cluster's configuration (statuses.NEVER_START_REASONS), and
    # since when every poll has seen the job pending with such a reason.
    never_start_reason: str | None = None
    never_start_since: str | None = None
    # When the product decided to cancel the job because that reason outlasted the grace period.
    ended_as_unsatisfiable_at: str | None = None
    # When the head node last answered for the job (a poll, or the sweep's news that woke the workflow).
    last_contact_at: str | None = None

    def to_state(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def elapsed_seconds(progress: JobProgress, now: datetime) -> float:
    start = parse_time(progress.submitted_at)
    return (now - start).total_seconds() if start else 0.0


def observe(
    progress: JobProgress,
    observation: StatusReply,
    *,
    now: datetime,
    schedule: PollSchedule,
    max_polls_per_execution: int,
    cancel_requested: bool,
    never_start_grace_seconds: int,
    safety_floor_seconds: int | None = None,
) -> JobProgress:
    """The progress after one poll of the head node (`observation` is the program's status result).

    A job that every poll for `never_start_grace_seconds` saw pending with a reason that means "never under this
    configuration" is to be cancelled: the progress gets `ended_as_unsatisfiable_at` (the poll step then cancels it).
    """
    advanced = _observed(
        progress,
        observation,
        now=now,
        cancel_requested=cancel_requested,
        never_start_grace_seconds=never_start_grace_seconds,
    )
    if advanced.done:
        return advanced
    advanced.next_poll_seconds = (
        schedule.min_seconds
        if cancel_requested or not observation.found or advanced.ended_as_unsatisfiable_at
        else schedule.next_wait(
            elapsed_seconds(advanced, now),
            min_job_age=advanced.min_job_age,
            accounting=bool(advanced.accounting_available),
        )
    )
    _track(advanced, safety_floor_seconds)
    if advanced.polls_in_execution >= max_polls_per_execution:
        # Step Functions caps an execution's history at 25,000 events; a fresh execution carries on.
        advanced.continue_as_new = True
        advanced.execution_sequence += 1
        advanced.polls_in_execution = 0
        advanced.next_execution_name = continuation_name(advanced.job_id, advanced.execution_sequence)
    return advanced


def observed_end(
    progress: JobProgress,
    observation: StatusReply,
    *,
    now: datetime,
    cancel_requested: bool,
    never_start_grace_seconds: int,
) -> JobProgress | None:
    """The progress a poll with `observation` ends the job with (what `observe` returns), or None when the
    observation does not end it. The cluster's sweep writes it to the record when it wakes the workflow, so the API
    answers with the end as soon as the sweep saw it; the woken poll then computes the same."""
    advanced = _observed(
        progress,
        observation,
        now=now,
        cancel_requested=cancel_requested,
        never_start_grace_seconds=never_start_grace_seconds,
    )
    return advanced if advanced.done else None


def _observed(
    progress: JobProgress,
    observation: StatusReply,
    *,
    now: datetime,
    cancel_requested: bool,
    never_start_grace_seconds: int,
) -> JobProgress:
    """What a poll with `observation` knows of the job, before it plans the next wait (done: the job has ended)."""
    update: dict = {
        "polls": progress.polls + 1,
        "polls_in_execution": progress.polls_in_execution + 1,
        "accounting_available": observation.accounting_available,
        "min_job_age": observation.min_job_age,
        "continue_as_new": False,
        "next_execution_name": None,
        "last_contact_at": iso(now),
        "unreachable_since": None,
    }
    if observation.found:
        update.update(
            not_found_polls=0,
            status=observation.status,
            slurm_state=observation.slurm_state,
            reason=observation.reason,
            exit_code=observation.exit_code,
            signal=observation.signal,
            started_at=observation.start_time or progress.started_at,
            ended_at=observation.end_time,
            array_task_counts=observation.array_task_counts,
        )
    else:
        missing = progress.not_found_polls + 1
        update["not_found_polls"] = missing
        if missing >= NOT_FOUND_POLL_LIMIT:
            update.update(
                status=UNKNOWN,
                slurm_state=None,
                reason=(
                    f"Slurm no longer knows job {progress.slurm_job_id} and the cluster keeps no accounting record "
                    "of it, so how it ended cannot be told"
                ),
            )
    advanced = progress.model_copy(update=update)
    _watch_never_start(advanced, now=now, grace_seconds=never_start_grace_seconds, cancel_requested=cancel_requested)
    advanced.done = advanced.status in TERMINAL_STATUSES
    if advanced.done:
        advanced.next_poll_seconds = 0
    return advanced


def after_lost_contact(
    progress: JobProgress, *, error: str, now: datetime, limit_seconds: float, safety_floor_seconds: int | None
) -> JobProgress:
    """The progress after PollJob's retries ran out on `error`, one of the errors that mean the job's state could not
    be asked (errors.OUTAGE_ERROR_NAMES): the job may still run, so the workflow notes since when contact is lost
    (the last contact, else the submission) and polls again after OUTAGE_REPOLL_SECONDS. Raises
    HeadNodeOutageLimitReached once contact has been lost for `limit_seconds` (the workflow then ends the job as
    ERROR, saying that it may still run)."""
    since = parse_time(progress.unreachable_since or progress.last_contact_at or progress.submitted_at) or now
    lost_seconds = max(0.0, (now - since).total_seconds())
    if lost_seconds >= limit_seconds:
        raise HeadNodeOutageLimitReached(
            f"no answer about the job since {iso(since)} ({lost_seconds / 3600:.1f} h, last {error}); "
            f"HeadNodeOutageLimitHours is {limit_seconds / 3600:g}"
        )
    advanced = progress.model_copy(
        update={
            "unreachable_since": iso(since),
            "longest_outage_seconds": max(progress.longest_outage_seconds or 0, int(lost_seconds)),
            "next_poll_seconds": OUTAGE_REPOLL_SECONDS,
            "done": False,
            "continue_as_new": False,
        }
    )
    _track(advanced, safety_floor_seconds)
    return advanced


def _track(job: JobProgress, safety_floor_seconds: int | None) -> None:
    """How the workflow waits next (in place): for news, with a safety poll no sooner than `safety_floor_seconds`
    (None: JobTracking per-job-polling, a Wait of next_poll_seconds)."""
    job.wait_for_news = safety_floor_seconds is not None
    job.safety_poll_seconds = max(job.next_poll_seconds, safety_floor_seconds or 0) if job.wait_for_news else 0


def _watch_never_start(job: JobProgress, *, now: datetime, grace_seconds: int, cancel_requested: bool) -> None:
    """Keeps the never-start clock of `job` (changed in place) and decides when it has run out."""
    if job.ended_as_unsatisfiable_at:
        if job.status == CANCELLED:
            job.reason = job.never_start_reason  # why it was cancelled, not the stale reason Slurm ends it with
        return
    if job.status != PENDING or not never_starts(job.reason):
        job.never_start_reason = job.never_start_since = None  # "not yet": the clock starts again
        return
    job.never_start_reason = job.reason
    job.never_start_since = job.never_start_since or iso(now)
    since = parse_time(job.never_start_since)
    if not cancel_requested and since and (now - since).total_seconds() >= grace_seconds:
        job.ended_as_unsatisfiable_at = iso(now)


def newly_unsatisfiable(before: JobProgress, after: JobProgress) -> bool:
    """True on the poll that decided to cancel the job for a reason that never lets it start."""
    return bool(after.ended_as_unsatisfiable_at) and not before.ended_as_unsatisfiable_at


def continuation_name(job_id: str, sequence: int) -> str:
    """Execution name of the sequence-th continuation of a job's workflow (the first execution is named jobId)."""
    return job_id if sequence == 0 else f"{job_id}_{sequence}"


def job_id_of_execution_name(name: str) -> str:
    return name.split("_", 1)[0]


def submitted(
    job_id: str,
    *,
    submission_id: str,
    slurm_job_id: str,
    is_array: bool,
    now: str,
    schedule: PollSchedule,
    safety_floor_seconds: int | None = None,
) -> JobProgress:
    """The progress right after sbatch accepted the job."""
    job = JobProgress(
        job_id=job_id,
        submission_id=submission_id,
        slurm_job_id=slurm_job_id,
        is_array=is_array,
        status=PENDING,
        submitted_at=now,
        next_poll_seconds=schedule.min_seconds,
    )
    _track(job, safety_floor_seconds)
    return job


def cancelled_before_submission(job_id: str, *, now: str) -> JobProgress:
    return JobProgress(
        job_id=job_id,
        status=CANCELLED,
        reason="cancelled before it was submitted to Slurm",
        ended_at=now,
        done=True,
        next_poll_seconds=0,
    )
