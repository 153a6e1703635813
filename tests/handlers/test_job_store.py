"""JobStore on DynamoDB (moto): records in and out as JobRecord, and the conditional writes."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from slurm_job_api.job_record import JobRecord
from slurm_job_api.job_store import JobStore
from slurm_job_api.progress import cancelled_before_submission
from slurm_job_api.spec import JobSpec

JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"


@pytest.fixture
def store():
    with mock_aws():
        table = boto3.resource("dynamodb", region_name="us-east-1").create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "jobId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "jobId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        store = JobStore(table)
        record = JobRecord.new(
            job_id=JOB,
            submission_id="ab" * 16,
            owner="alice",
            spec=JobSpec.model_validate({"script": "#!/bin/sh\n"}),
            created_at="2026-11-25T12:00:00.000Z",
            request_hash="h",
            execution_arn="arn:x",
            retention_days=30,
            cluster_name="test-cluster",
            cluster_user="alice",
        )
        assert store.create(record) and not store.create(record)
        assert store.get(JOB) == record
        yield store


def test_the_cancel_mark_keeps_the_first_request_time_and_only_marks_the_owners_active_job(store):
    first = store.request_cancel(JOB, "alice", "T1")
    again = store.request_cancel(JOB, "alice", "T2")
    assert (first.cancel_requested, first.cancel_requested_at) == (True, "T1")
    assert (again.cancel_requested_at, again.updated_at) == ("T1", "T2")
    assert store.request_cancel(JOB, "mallory", "T3") is None
    store.update(JOB, {"status": "COMPLETED"})
    assert store.request_cancel(JOB, "alice", "T4") is None


def test_an_update_only_if_active_sets_every_field_and_stops_once_the_job_ended(store):
    cancelled = cancelled_before_submission(JOB, now="T1")
    updated = store.update(JOB, JobRecord.progress_fields(cancelled, "T1"), only_if_active=True)
    # endedAt sorts among the first fields: its placeholder must not meet the condition builder's own (:v0, :v1...)
    assert (updated.status, updated.ended_at, updated.reason) == ("CANCELLED", "T1", cancelled.reason)
    assert store.update(JOB, JobRecord.progress_fields(cancelled, "T2"), only_if_active=True) is None
    assert store.get(JOB).updated_at == "T1"


def test_get_owned_answers_only_the_owner(store):
    assert store.get_owned(JOB, "mallory") is None and store.get_owned(JOB, "alice").job_id == JOB


def test_an_idempotency_key_names_the_id_its_first_request_claimed_for_that_caller_only(store):
    assert store.claimed_job_id("alice", "k") is None
    first = "11111111-1111-4111-8111-111111111111"
    second = "22222222-2222-4222-8222-222222222222"
    assert store.claim_job_id("alice", "k", first, expires_at=1) == first
    # A concurrent request with the same key proposed another id: it gets the first one.
    assert store.claim_job_id("alice", "k", second, expires_at=2) == first
    assert store.claimed_job_id("alice", "k") == first
    # Another caller's same key is another claim; the key's claim is no record and names no job of anyone.
    assert store.claim_job_id("bob", "k", second, expires_at=2) == second
    claim = store._table.get_item(Key={"jobId": store.claim_key("alice", "k")})["Item"]
    assert claim == {"jobId": store.claim_key("alice", "k"), "claimedJobId": first, "expiresAt": 1}
    assert store.get_owned(first, "alice") is None and store.claim_key("alice", "k").startswith("idempotency-key#")
