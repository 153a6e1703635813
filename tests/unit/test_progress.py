"""How each poll advances the workflow's view of a job."""

from datetime import UTC, datetime, timedelta

import pytest

from slurm_job_api.errors import HeadNodeOutageLimitReached
from slurm_job_api.head_node_protocol import StatusReply
from slurm_job_api.poll_schedule import PollSchedule
from slurm_job_api.progress import (
    NOT_FOUND_POLL_LIMIT,
    OUTAGE_REPOLL_SECONDS,
    JobProgress,
    after_lost_contact,
    continuation_name,
    job_id_of_execution_name,
    newly_unsatisfiable,
    observe,
    submitted,
)

JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"
T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
SCHEDULE = PollSchedule(min_seconds=10, max_seconds=3600, fraction=0.1)


def fresh() -> JobProgress:
    return submitted(
        JOB,
        submission_id="ab" * 16,
        slurm_job_id="42",
        is_array=False,
        now="2026-11-25T12:00:00.000Z",
        schedule=SCHEDULE,
    )


def running(**extra):
    observation = {"found": True, "status": "RUNNING", "slurmState": "RUNNING", "accountingAvailable": True}
    return observation | {"minJobAge": 300} | extra


def step(job, observation, *, minutes=0, cancel=False, max_polls=2000, grace_minutes=60):
    """One poll; `observation` holds the status reply's fields that matter to the test."""
    reply = {"slurmJobId": "42", "source": "squeue" if observation["found"] else "none", "accountingAvailable": False}
    return observe(
        job,
        StatusReply.model_validate(reply | observation),
        now=T0 + timedelta(minutes=minutes),
        schedule=SCHEDULE,
        max_polls_per_execution=max_polls,
        cancel_requested=cancel,
        never_start_grace_seconds=grace_minutes * 60,
    )


def test_running_job_waits_a_tenth_of_its_time_in_slurm():
    job = step(fresh(), running(startTime="2026-11-25T12:00:05Z"), minutes=100)
    assert (job.status, job.done, job.next_poll_seconds, job.polls) == ("RUNNING", False, 600, 1)
    assert job.started_at == "2026-11-25T12:00:05Z"


def test_terminal_state_ends_polling():
    job = step(fresh(), running(status="FAILED", slurmState="FAILED", exitCode=3, endTime="2026-11-25T12:01:00Z"))
    assert job.done and job.exit_code == 3 and job.next_poll_seconds == 0


def test_no_accounting_keeps_polls_within_min_job_age():
    job = step(fresh(), running(accountingAvailable=False, minJobAge=300), minutes=600)
    assert job.next_poll_seconds == 150


def test_cancel_request_polls_again_soon():
    assert step(fresh(), running(), minutes=600, cancel=True).next_poll_seconds == SCHEDULE.min_seconds


def test_job_unknown_to_slurm_several_times_is_unknown():
    job = fresh()
    for _ in range(NOT_FOUND_POLL_LIMIT - 1):
        job = step(job, {"found": False, "accountingAvailable": False, "minJobAge": 300})
        assert not job.done and job.next_poll_seconds == SCHEDULE.min_seconds
    job = step(job, {"found": False, "accountingAvailable": False, "minJobAge": 300})
    assert job.done and job.status == "UNKNOWN" and "42" in job.reason


def test_found_again_resets_the_not_found_count():
    job = step(fresh(), {"found": False})
    assert step(job, running()).not_found_polls == 0


def test_long_polling_continues_as_a_new_execution():
    job = step(fresh(), running(), max_polls=1)
    assert job.continue_as_new and job.execution_sequence == 1 and job.polls_in_execution == 0
    assert job.next_execution_name == f"{JOB}_1" == continuation_name(JOB, 1)
    assert job_id_of_execution_name(job.next_execution_name) == JOB == job_id_of_execution_name(JOB)
    assert not step(job, running(), max_polls=2).continue_as_new


def test_state_round_trips_through_the_state_machine_json():
    job = step(fresh(), running(arrayTaskCounts={"RUNNING": 2, "PENDING": 1}))
    state = job.to_state()
    assert state["jobId"] == JOB and state["done"] is False and state["continueAsNew"] is False
    assert JobProgress.model_validate(state) == job


def pending(reason: str) -> dict:
    return {"found": True, "status": "PENDING", "slurmState": "PENDING", "reason": reason, "minJobAge": 300}


def test_a_job_pending_for_a_never_reason_past_the_grace_period_is_to_be_cancelled():
    job = fresh()
    for minutes in (1, 30, 60):
        job = step(job, pending("PartitionConfig"), minutes=minutes)
        assert job.ended_as_unsatisfiable_at is None and not job.done
        assert (job.never_start_reason, job.never_start_since) == ("PartitionConfig", "2026-11-25T12:01:00.000Z")
    decided = step(job, pending("PartitionConfig"), minutes=61)
    assert decided.ended_as_unsatisfiable_at == "2026-11-25T13:01:00.000Z" and not decided.done
    assert newly_unsatisfiable(job, decided) and decided.next_poll_seconds == SCHEDULE.min_seconds
    # scancel takes a moment: the next poll may still see it pending, and decides nothing new.
    still = step(decided, pending("PartitionConfig"), minutes=62)
    assert not newly_unsatisfiable(decided, still)
    ended = step(still, running(status="CANCELLED", slurmState="CANCELLED", reason=None), minutes=63)
    assert ended.done and ended.status == "CANCELLED" and ended.reason == "PartitionConfig"


def test_not_yet_reasons_never_end_a_job_even_without_grace():
    job = fresh()
    for minutes, reason in enumerate(["Resources", "Priority", "ReqNodeNotAvail, UnavailableNodes:n1", "Dependency"]):
        job = step(job, pending(reason), minutes=minutes * 1000, grace_minutes=0)
        assert job.ended_as_unsatisfiable_at is None and job.never_start_since is None and job.reason == reason


def test_the_grace_period_starts_again_when_the_job_may_start_after_all():
    job = step(fresh(), pending("PartitionNodeLimit"), minutes=1)
    job = step(job, pending("Resources"), minutes=50)  # e.g. a DOWN node was replaced, the partition grew
    assert job.never_start_since is None
    job = step(job, pending("PartitionNodeLimit"), minutes=90)
    assert job.never_start_since == "2026-11-25T13:30:00.000Z" and job.ended_as_unsatisfiable_at is None
    assert step(job, pending("PartitionNodeLimit"), minutes=150).ended_as_unsatisfiable_at


def test_a_requested_cancel_is_not_taken_over():
    job = step(fresh(), pending("InvalidAccount"), minutes=1, grace_minutes=0, cancel=True)
    assert job.ended_as_unsatisfiable_at is None
    assert step(fresh(), pending("InvalidAccount"), minutes=1, grace_minutes=0).ended_as_unsatisfiable_at


# -- lost contact: PollJob's retries ran out on an outage error ---------------------------------------------------

LIMIT = 24 * 3600


def lost(job, *, hours, limit=LIMIT, floor=150):
    return after_lost_contact(
        job,
        error="HeadNodeUnreachable",
        now=T0 + timedelta(hours=hours),
        limit_seconds=limit,
        safety_floor_seconds=floor,
    )


def test_a_poll_that_reaches_slurm_is_the_last_contact_and_ends_an_outage():
    job = fresh().model_copy(update={"unreachable_since": "2026-11-25T12:00:00.000Z", "longest_outage_seconds": 7200})
    after = step(job, running(), minutes=150)
    assert after.last_contact_at == "2026-11-25T14:30:00.000Z" and after.unreachable_since is None
    assert after.longest_outage_seconds == 7200  # the record keeps the longest outage


def test_an_outage_is_noted_from_the_last_contact_and_tracking_goes_on():
    job = step(fresh(), running(), minutes=30)  # last contact 12:30
    noted = lost(job, hours=2.5)  # PollJob's retries ran out two hours later
    assert (noted.unreachable_since, noted.longest_outage_seconds) == ("2026-11-25T12:30:00.000Z", 2 * 3600)
    assert not noted.done and noted.status == "RUNNING"  # no ERROR while the job may still run
    assert noted.next_poll_seconds == OUTAGE_REPOLL_SECONDS
    assert noted.wait_for_news and noted.safety_poll_seconds == OUTAGE_REPOLL_SECONDS
    again = lost(noted, hours=5)  # still no answer: the outage runs from the same moment
    assert (again.unreachable_since, again.longest_outage_seconds) == ("2026-11-25T12:30:00.000Z", int(4.5 * 3600))


def test_an_outage_of_a_job_never_polled_runs_from_its_submission():
    noted = lost(fresh(), hours=3, floor=None)  # per-job polling
    assert noted.unreachable_since == "2026-11-25T12:00:00.000Z" and noted.longest_outage_seconds == 3 * 3600
    assert not noted.wait_for_news and noted.next_poll_seconds == OUTAGE_REPOLL_SECONDS


def test_contact_lost_for_the_limit_ends_tracking_with_an_error_that_says_so():
    job = step(fresh(), running(), minutes=0)
    with pytest.raises(HeadNodeOutageLimitReached, match=r"since 2026-11-25T12:00:00.000Z \(24.0 h, last HeadNode"):
        lost(job, hours=24)
    assert lost(job, hours=23.9).unreachable_since  # just under: still tracked
