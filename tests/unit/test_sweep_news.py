"""What a cluster's status sweep does for each active job it saw: which jobs it asks about, when it wakes a waiting
workflow, and what it writes to the record otherwise (slurm_job_api.sweep_news, pure: no mocks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slurm_job_api import progress
from slurm_job_api.clock import iso
from slurm_job_api.head_node_protocol import StatusReply, SweepJob
from slurm_job_api.job_record import JobRecord
from slurm_job_api.poll_schedule import PollSchedule
from slurm_job_api.progress import JobProgress
from slurm_job_api.statuses import (
    ACTIVE_STATUSES,
    CANCELLED,
    COMPLETED,
    FAILED,
    NEVER_START_REASONS,
    PENDING,
    RUNNING,
    SUBMITTING,
    SUSPENDED,
    TERMINAL_STATUSES,
)
from slurm_job_api.sweep_news import (
    CAN_START,
    CANCEL_REQUESTED,
    CANNOT_START,
    CANNOT_START_GRACE_OVER,
    ENDED,
    NOT_FOUND,
    SweepAction,
    decide,
    news,
    swept,
    swept_jobs,
)
from tests.support.job_records import EXAMPLE_SPEC, accepted_record, changed_record

JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"
NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=UTC)
NOW_TEXT = iso(NOW)
GRACE = 3600
TOKEN = "AAAAKgAAAAIAAAAAAAAAAT0ken"


def record(*, array: str | None = None, **fields: Any) -> JobRecord:
    """A job record as POST /jobs creates it, then as later steps changed it (`fields` by attribute name)."""
    spec = EXAMPLE_SPEC | ({"array": array} if array else {})
    return changed_record(accepted_record(fields.pop("job_id", JOB), spec=spec), **fields)


def waiting(**progress: Any) -> dict[str, Any]:
    """The progress a workflow waits with in AwaitNews, as the record keeps it (waitingProgress)."""
    base = {"job_id": JOB, "slurm_job_id": "42", "status": PENDING, "wait_for_news": True}
    return JobProgress(**(base | progress)).to_state()


def waiting_record(progress: dict[str, Any] | None = None, **fields: Any) -> JobRecord:
    """A record whose workflow waits for news with `progress`."""
    defaults = {"status": PENDING, "slurm_job_id": "42", "slurm_state": "PENDING", "reason": "Priority"}
    return record(
        **(defaults | fields),
        wait_token=TOKEN,
        waiting_progress=progress if progress is not None else waiting(),
        waiting_since="2026-11-25T12:30:00.000Z",
    )


def reply(**fields: Any) -> StatusReply:
    """What the sweep's report says of job 42: found by squeue unless told otherwise."""
    base = {"slurm_job_id": "42", "found": True, "source": "squeue", "accounting_available": True}
    return StatusReply(**(base | fields))


def pending(reason: str = "Priority") -> StatusReply:
    return reply(status=PENDING, slurm_state="PENDING", reason=reason)


def running(**fields: Any) -> StatusReply:
    return reply(**({"status": RUNNING, "slurm_state": "RUNNING", "start_time": "2026-11-25T12:10:00"} | fields))


def gone() -> StatusReply:
    return reply(found=False, source="none")


def news_of(job: JobRecord, observation: StatusReply, *, now: datetime = NOW) -> str | None:
    return news(job, observation, now=now, never_start_grace_seconds=GRACE)


def decided(job: JobRecord, observation: StatusReply) -> SweepAction:
    return decide(job, observation, now=NOW, now_text=NOW_TEXT, never_start_grace_seconds=GRACE)


NEVER = "PartitionTimeLimit"


# -- swept_jobs -----------------------------------------------------------------------------------------------------


def test_the_sweep_asks_about_active_jobs_with_a_slurm_job_id_once_each_in_the_order_seen():
    records = [
        record(job_id="j1", status=PENDING, slurm_job_id="42"),
        record(job_id="j2", status=SUBMITTING),  # not in Slurm yet: nothing to ask
        record(job_id="j3", status=COMPLETED, slurm_job_id="43"),  # ended (the index lags): not asked
        record(job_id="j4", status=SUSPENDED, slurm_job_id="44"),
        record(job_id="j5", status=RUNNING, slurm_job_id="42"),  # the same Slurm job twice: asked once
        record(job_id="j6", status=RUNNING, slurm_job_id="41"),
    ]
    assert swept_jobs(records) == [
        SweepJob(slurm_job_id="42", is_array=False),
        SweepJob(slurm_job_id="44", is_array=False),
        SweepJob(slurm_job_id="41", is_array=False),
    ]


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_no_ended_job_is_asked_about(status):
    assert swept_jobs([record(status=status, slurm_job_id="42")]) == []


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_an_end_a_sweep_wrote_is_asked_about_again_while_its_workflow_waits(status):
    ended_but_waiting = waiting_record(status=status)
    assert swept(ended_but_waiting) and swept_jobs([ended_but_waiting]) == [SweepJob(slurm_job_id="42")]
    finished = waiting_record(status=status, finished_at="2026-11-25T12:59:30.000Z")
    assert not swept(finished)
    assert not swept(record(status=status, slurm_job_id="42", wait_token=TOKEN))  # no waiting progress


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_an_end_already_in_the_record_is_not_written_again(status):
    action = decided(waiting_record(status=status), reply(status=COMPLETED, slurm_state="COMPLETED"))
    assert (action.wake["reason"], action.record_changes) == (ENDED, {})


@pytest.mark.parametrize("status", sorted(ACTIVE_STATUSES))
def test_every_active_status_is_asked_about(status):
    assert swept_jobs([record(status=status, slurm_job_id="42")]) == [SweepJob(slurm_job_id="42")]


def test_without_waiting_progress_the_spec_says_whether_the_job_is_an_array():
    records = [
        record(job_id="j1", status=PENDING, slurm_job_id="42", array="1-10%2"),
        record(job_id="j2", status=PENDING, slurm_job_id="43"),
    ]
    assert swept_jobs(records) == [
        SweepJob(slurm_job_id="42", is_array=True),
        SweepJob(slurm_job_id="43", is_array=False),
    ]


def test_the_waiting_progress_says_whether_the_job_is_an_array_whatever_the_spec():
    records = [
        waiting_record(waiting(slurm_job_id="42", is_array=True), job_id="j1", slurm_job_id="42"),
        waiting_record(waiting(slurm_job_id="43", is_array=False), job_id="j2", slurm_job_id="43", array="1-3"),
    ]
    assert swept_jobs(records) == [
        SweepJob(slurm_job_id="42", is_array=True),
        SweepJob(slurm_job_id="43", is_array=False),
    ]


def test_the_first_record_of_a_slurm_job_says_whether_it_is_an_array():
    records = [
        record(job_id="j1", status=PENDING, slurm_job_id="42", array="1-3"),
        record(job_id="j2", status=PENDING, slurm_job_id="42"),
    ]
    assert swept_jobs(records) == [SweepJob(slurm_job_id="42", is_array=True)]


# -- news -----------------------------------------------------------------------------------------------------------


def test_a_job_slurm_no_longer_knows_is_news():
    assert news_of(waiting_record(), gone()) == NOT_FOUND
    assert news_of(waiting_record(cancel_requested=True), gone()) == NOT_FOUND  # before the cancel


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_a_job_that_ended_is_news_whatever_its_end(status):
    assert news_of(waiting_record(), reply(status=status, slurm_state=status)) == ENDED
    assert news_of(waiting_record(cancel_requested=True), reply(status=status)) == ENDED  # before the cancel


def test_a_cancel_request_is_news_for_a_job_that_goes_on():
    job = waiting_record(cancel_requested=True, cancel_requested_at="2026-11-25T12:50:00.000Z")
    assert news_of(job, running()) == CANCEL_REQUESTED
    assert news_of(job, pending(NEVER)) == CANCEL_REQUESTED  # before the never-start clock


@pytest.mark.parametrize("reason", sorted(NEVER_START_REASONS))
def test_a_job_pending_for_a_never_start_reason_is_news_while_its_clock_has_not_started(reason):
    assert news_of(waiting_record(), pending(reason)) == CANNOT_START


def test_a_never_start_reason_with_details_is_still_one():
    assert news_of(waiting_record(), pending(f"{NEVER}, some detail")) == CANNOT_START


def test_a_record_nobody_waits_on_has_no_clock_so_a_never_start_reason_is_news():
    assert news_of(record(status=PENDING, slurm_job_id="42"), pending(NEVER)) == CANNOT_START


def test_the_grace_period_over_is_news_and_not_a_second_sooner():
    started = NOW - timedelta(seconds=GRACE)
    job = waiting_record(waiting(never_start_reason=NEVER, never_start_since=iso(started)), reason=NEVER)
    assert news_of(job, pending(NEVER)) == CANNOT_START_GRACE_OVER
    assert news_of(job, pending(NEVER), now=NOW + timedelta(hours=5)) == CANNOT_START_GRACE_OVER
    assert news_of(job, pending(NEVER), now=NOW - timedelta(seconds=1)) is None  # the clock runs: nothing to do


def test_a_job_no_longer_blocked_while_its_clock_runs_can_start_again():
    clock = waiting(never_start_reason=NEVER, never_start_since=iso(NOW - timedelta(minutes=5)))
    job = waiting_record(clock, reason=NEVER)
    assert news_of(job, pending("Resources")) == CAN_START
    assert news_of(job, running()) == CAN_START
    # A never-start reason on a job that is not pending does not block it.
    assert news_of(job, reply(status=SUSPENDED, slurm_state="SUSPENDED", reason=NEVER)) == CAN_START


@pytest.mark.parametrize(
    "observation",
    [running(), pending("Priority"), pending("Resources"), reply(status=SUSPENDED, reason=NEVER)],
    ids=["running", "priority", "resources", "suspended-with-a-never-reason"],
)
def test_an_ordinary_job_that_goes_on_is_no_news(observation):
    assert news_of(waiting_record(), observation) is None
    assert news_of(record(status=PENDING, slurm_job_id="42"), observation) is None


# -- decide ---------------------------------------------------------------------------------------------------------


def test_an_end_wakes_the_waiting_workflow_with_the_observation_as_json_and_writes_the_end_into_the_record():
    ended = reply(status=COMPLETED, slurm_state="COMPLETED", exit_code=0, end_time="2026-11-25T12:59:00")
    progress_known = waiting(status=RUNNING, submitted_at="2026-11-25T12:00:00.000Z", started_at="2026-11-25T12:10:00")
    action = decided(waiting_record(progress_known), ended)
    assert action == SweepAction(
        job_id=JOB,
        token=TOKEN,
        wake={
            "reason": ENDED,
            "observation": {
                "slurmJobId": "42",
                "found": True,
                "source": "squeue",
                "accountingAvailable": True,
                "minJobAge": None,
                "status": "COMPLETED",
                "slurmState": "COMPLETED",
                "reason": None,
                "exitCode": 0,
                "signal": None,
                "submitTime": None,
                "startTime": None,
                "endTime": "2026-11-25T12:59:00",
                "arrayTaskCounts": None,
            },
        },
        record_changes={
            "status": "COMPLETED",
            "slurmJobId": "42",
            "slurmState": "COMPLETED",
            "reason": None,
            "exitCode": 0,
            "signal": None,
            "submittedAt": "2026-11-25T12:00:00.000Z",
            "startedAt": "2026-11-25T12:10:00",
            "endedAt": "2026-11-25T12:59:00",
            "arrayTaskCounts": None,
            "unreachableSince": None,
            "longestOutageSeconds": None,
            "updatedAt": NOW_TEXT,
        },
    )
    assert StatusReply.model_validate(json.loads(json.dumps(action.wake))["observation"]) == ended


def poll_writes(job: JobRecord, observation: StatusReply) -> dict[str, Any]:
    """What the woken PollJob writes to the record with the sweep's observation (slurm_job_api.workflow.poll)."""
    advanced = progress.observe(
        JobProgress.model_validate(job.waiting_progress),
        observation,
        now=NOW,
        schedule=PollSchedule(min_seconds=10, max_seconds=3600, fraction=0.1),
        max_polls_per_execution=500,
        cancel_requested=job.cancel_requested,
        never_start_grace_seconds=GRACE,
        safety_floor_seconds=150,
    )
    assert advanced.done
    return JobRecord.progress_fields(advanced, NOW_TEXT)


@pytest.mark.parametrize(
    ("job", "observation"),
    [
        (waiting_record(), reply(status=FAILED, slurm_state="FAILED", exit_code=3, end_time="2026-11-25T12:59:00")),
        (waiting_record(cancel_requested=True), reply(status=CANCELLED, slurm_state="CANCELLED", signal=15)),
        (
            waiting_record(
                waiting(
                    status=PENDING,
                    never_start_reason=NEVER,
                    never_start_since="2026-11-25T11:00:00.000Z",
                    ended_as_unsatisfiable_at="2026-11-25T12:01:00.000Z",
                )
            ),
            reply(status=CANCELLED, slurm_state="CANCELLED", reason="None"),
        ),
        (waiting_record(waiting(is_array=True)), reply(status=COMPLETED, array_task_counts={"COMPLETED": 4})),
    ],
    ids=["failed", "cancel-requested", "cancelled-as-unsatisfiable", "array"],
)
def test_the_end_the_sweep_writes_is_what_the_woken_poll_writes(job, observation):
    action = decided(job, observation)
    assert action.wake is not None and action.wake["reason"] == ENDED
    assert action.record_changes == poll_writes(job, observation)


def test_an_end_seen_of_another_slurm_job_than_the_one_waited_on_writes_nothing():
    job = waiting_record(waiting(slurm_job_id="41"))
    assert decided(job, reply(status=COMPLETED, slurm_state="COMPLETED")).record_changes == {}


@pytest.mark.parametrize(
    ("job", "observation", "reason"),
    [
        (waiting_record(), gone(), NOT_FOUND),
        (waiting_record(cancel_requested=True), running(), CANCEL_REQUESTED),
        (waiting_record(), pending(NEVER), CANNOT_START),
        (
            waiting_record(waiting(never_start_reason=NEVER, never_start_since="2026-11-25T11:00:00.000Z")),
            pending(NEVER),
            CANNOT_START_GRACE_OVER,
        ),
        (
            waiting_record(waiting(never_start_reason=NEVER, never_start_since="2026-11-25T12:55:00.000Z")),
            running(),
            CAN_START,
        ),
    ],
    ids=["not-found", "cancel", "cannot-start", "grace-over", "can-start"],
)
def test_every_reason_wakes_the_waiting_workflow(job, observation, reason):
    action = decided(job, observation)
    assert (action.token, action.wake["reason"], action.record_changes) == (TOKEN, reason, {})
    assert action.wake["observation"] == observation.model_dump(mode="json", by_alias=True)


@pytest.mark.parametrize("observation", [gone(), reply(status=COMPLETED, slurm_state="COMPLETED", exit_code=0)])
def test_an_end_nobody_waits_for_changes_nothing_and_wakes_nobody(observation):
    job = record(status=RUNNING, slurm_job_id="42", slurm_state="RUNNING")
    assert decided(job, observation) == SweepAction(job_id=JOB, token=None, wake=None, record_changes={})


def test_a_token_left_without_waiting_progress_is_not_used():
    job = record(status=RUNNING, slurm_job_id="42", wait_token=TOKEN)  # the workflow no longer waits
    action = decided(job, reply(status=COMPLETED))
    assert (action.token, action.wake, action.record_changes) == (None, None, {})


def test_what_changed_of_a_job_that_goes_on_is_written_and_its_wait_kept_alive():
    counts = {"PENDING": 2, "RUNNING": 1}
    observation = running(reason="None", array_task_counts=counts)
    action = decided(waiting_record(), observation)
    assert action == SweepAction(
        job_id=JOB,
        token=TOKEN,
        wake=None,
        record_changes={
            "status": "RUNNING",
            "slurmState": "RUNNING",
            "reason": "None",
            "startedAt": "2026-11-25T12:10:00",
            "arrayTaskCounts": counts,
            "updatedAt": NOW_TEXT,
        },
        heartbeat=True,  # no heartbeat of this sweep's is known for the wait
    )


def test_a_record_that_already_says_what_the_sweep_saw_is_not_written():
    job = waiting_record(status=RUNNING, slurm_state="RUNNING", reason=None, started_at="2026-11-25T12:10:00")
    assert decided(job, running()) == SweepAction(job_id=JOB, token=TOKEN, wake=None, record_changes={}, heartbeat=True)


# -- heartbeats -----------------------------------------------------------------------------------------------------


def heartbeat_after(seconds_ago: float | None, safety_poll_seconds: int = 200) -> bool:
    """Whether the sweep keeps a waiting job alive when its last heartbeat was `seconds_ago` (None: none known)."""
    job = waiting_record(waiting(safety_poll_seconds=safety_poll_seconds))
    last = None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago)
    action = decide(job, pending(), now=NOW, now_text=NOW_TEXT, never_start_grace_seconds=GRACE, last_heartbeat=last)
    assert action.wake is None and action.token == TOKEN
    return action.heartbeat


def test_a_wait_is_kept_alive_once_a_quarter_of_its_safety_poll_went_by_since_the_last_heartbeat():
    assert heartbeat_after(None)  # a new sweep function, or a new wait: always
    assert not heartbeat_after(0)
    assert not heartbeat_after(49.9)
    assert heartbeat_after(50)  # 200 s * 0.25
    assert heartbeat_after(10_000)


def test_a_wait_without_a_safety_poll_is_kept_alive_at_every_sweep():
    assert heartbeat_after(1, safety_poll_seconds=0)


def test_a_wake_is_never_held_back_by_a_recent_heartbeat():
    action = decide(
        waiting_record(),
        reply(status=COMPLETED, slurm_state="COMPLETED"),
        now=NOW,
        now_text=NOW_TEXT,
        never_start_grace_seconds=GRACE,
        last_heartbeat=NOW,
    )
    assert action.wake is not None and action.wake["reason"] == ENDED and not action.heartbeat


def test_a_start_time_the_sweep_did_not_see_keeps_the_one_recorded():
    job = waiting_record(status=RUNNING, slurm_state="RUNNING", reason=None, started_at="2026-11-25T12:10:00")
    assert decided(job, running(start_time=None)).record_changes == {}
    moved = decided(job, running(start_time=None, slurm_state="COMPLETING"))
    assert moved.record_changes["startedAt"] == "2026-11-25T12:10:00"
    assert moved.record_changes["slurmState"] == "COMPLETING"


def test_only_a_pending_reason_that_changed_is_written():
    job = waiting_record(reason="Priority")
    assert decided(job, pending("Priority")).record_changes == {}
    assert decided(job, pending("Resources")).record_changes == {
        "status": "PENDING",
        "slurmState": "PENDING",
        "reason": "Resources",
        "startedAt": None,
        "arrayTaskCounts": None,
        "updatedAt": NOW_TEXT,
    }


def test_news_for_a_record_nobody_waits_on_only_brings_the_record_up_to_date():
    job = record(status=PENDING, slurm_job_id="42", slurm_state="PENDING", reason="Priority")
    action = decided(job, pending(NEVER))  # cannot start, but no workflow waits to be told
    assert (action.token, action.wake) == (None, None)
    assert action.record_changes == {
        "status": "PENDING",
        "slurmState": "PENDING",
        "reason": NEVER,
        "startedAt": None,
        "arrayTaskCounts": None,
        "updatedAt": NOW_TEXT,
    }
