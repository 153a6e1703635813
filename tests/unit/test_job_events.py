"""Which writes of a job record make a "Slurm Job State Change" event, and what it says (pure: no AWS, no mock)."""

from __future__ import annotations

import json

import pytest

from slurm_job_api.job_events import SOURCE, JobStateChange, state_change
from slurm_job_api.job_record import JobRecord, JobState, StoredResults
from slurm_job_api.push_hook import DETAIL_TYPE, EVENT_SOURCE
from slurm_job_api.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES
from tests.support.job_records import accepted_record, changed_record

JOB = "0b5c9b1e-0000-4000-8000-000000000001"
CLUSTER = "test-cluster"


def change(old: JobRecord | None, new: JobRecord) -> JobStateChange | None:
    return state_change(old, new, change_id="event-1", cluster_name=CLUSTER)


def finished(record: JobRecord, status: str, cause: str, **state: object) -> JobRecord:
    fields = JobRecord.finish_fields(
        JobState(status=status, **state),
        status=status,
        cause=cause,
        error=None,
        results=StoredResults(bucket="b", prefix=f"jobs/{JOB}/", result_key=f"jobs/{JOB}/result.json"),
        finished_at="2026-11-25T12:05:00.000Z",
    )
    return JobRecord.model_validate(record.item() | {k: v for k, v in fields.items() if v is not None})


def test_a_new_record_is_published_as_submitting():
    record = accepted_record(JOB)
    event = change(None, record)
    assert event is not None
    assert (event.status, event.job_id, event.owner, event.cluster_name) == ("SUBMITTING", JOB, record.owner, CLUSTER)
    assert (event.created_at, event.updated_at, event.change_id) == (record.created_at, record.updated_at, "event-1")
    assert event.result_key is None and event.slurm_job_id is None


def test_each_change_to_another_active_status_is_published():
    submitting = accepted_record(JOB)
    pending = changed_record(submitting, status="PENDING", slurm_job_id="101", updated_at="2026-11-25T12:00:01.000Z")
    running = changed_record(pending, status="RUNNING", started_at="2026-11-25T12:01:00Z")
    assert change(submitting, pending).status == "PENDING"
    event = change(pending, running)
    assert (event.status, event.slurm_job_id, event.started_at) == ("RUNNING", "101", "2026-11-25T12:01:00Z")


@pytest.mark.parametrize(
    "fields",
    [
        {"reason": "Resources"},
        {"swept_at": "2026-11-25T12:02:00.000Z"},
        {"wait_token": "token", "waiting_since": "2026-11-25T12:02:00.000Z"},
        {"array_task_counts": {"RUNNING": 2, "PENDING": 3}},
        {"cancel_requested": True, "cancel_requested_at": "2026-11-25T12:02:00.000Z"},
    ],
)
def test_a_write_that_keeps_the_status_is_not_published(fields):
    pending = changed_record(accepted_record(JOB), status="PENDING", slurm_job_id="101")
    assert change(pending, changed_record(pending, **fields)) is None


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_the_end_is_published_when_the_results_are_recorded_not_when_a_poll_saw_it(status):
    running = changed_record(accepted_record(JOB), status="RUNNING", slurm_job_id="101")
    seen_ended = changed_record(running, status=status, exit_code=3)  # a poll or a sweep wrote the status only
    assert change(running, seen_ended) is None
    ended = finished(seen_ended, status, f"Slurm job 101 ended: {status}", exit_code=3, slurm_job_id="101")
    event = change(seen_ended, ended)
    assert (event.status, event.exit_code, event.status_reason) == (status, 3, f"Slurm job 101 ended: {status}")
    assert event.result_key == f"jobs/{JOB}/result.json" and event.ended_at
    assert change(ended, changed_record(ended, updated_at="2026-11-25T12:06:00.000Z")) is None  # published once


def test_an_end_written_straight_after_an_active_status_is_published_once():
    pending = changed_record(accepted_record(JOB), status="PENDING", slurm_job_id="101")
    ended = finished(pending, "CANCELLED", "cancelled by its owner", slurm_job_id="101")
    assert change(pending, ended).status == "CANCELLED"


def test_the_state_machines_own_error_record_is_published():
    """RecordFinishFailure sets status ERROR, cause and finishedAt (no results): it is the job's end."""
    running = changed_record(accepted_record(JOB), status="RUNNING", slurm_job_id="101")
    errored = changed_record(
        running, status="ERROR", cause="the finish step failed", finished_at="2026-11-25T12:05:00.000Z"
    )
    event = change(running, errored)
    assert (event.status, event.status_reason, event.result_key) == ("ERROR", "the finish step failed", None)


def test_every_status_can_be_published():
    record = accepted_record(JOB)
    for status in sorted(ACTIVE_STATUSES - {"SUBMITTING"}):
        assert change(record, changed_record(record, status=status)).status == status


def test_the_entry_names_the_bus_the_source_and_the_execution():
    record = accepted_record(JOB)
    entry = change(None, record).entry("the-bus")
    assert (entry["EventBusName"], entry["Source"], entry["DetailType"]) == ("the-bus", SOURCE, DETAIL_TYPE)
    assert entry["Resources"] == [record.execution_arn]
    detail = json.loads(entry["Detail"])
    assert detail["jobId"] == JOB and detail["status"] == "SUBMITTING" and detail["changeId"] == "event-1"
    assert set(detail) == {field.alias for field in JobStateChange.model_fields.values()}


def test_the_products_source_is_not_the_head_nodes():
    """The sweep's rule and the head node's policy name the hook's source; the product publishes under its own."""
    assert SOURCE != EVENT_SOURCE and not EVENT_SOURCE.startswith(SOURCE + "-")
