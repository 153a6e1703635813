"""The job record model: its stored names, its creation, and every writer of the record agrees with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.limits import RECORD_WORST_CASE_BYTES, dynamodb_item_bytes, largest_spec, write_units
from slurm_job_api.job_record import JobRecord, SpecSummary, StoredResults
from slurm_job_api.outcome import error_details, final_status
from slurm_job_api.progress import JobProgress
from slurm_job_api.spec import JobSpec
from slurm_job_api.statuses import ALL_STATUSES
from tests.support.job_records import accepted_record

ASL = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "job.asl.json").read_text())
JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"
STORED_NAMES = {field.alias for field in JobRecord.model_fields.values()}


def new_record() -> JobRecord:
    return accepted_record(JOB)


def updated_names(expression: str, names: dict[str, str]) -> set[str]:
    """The attributes an UpdateExpression's SET and REMOVE clauses write (placeholders resolved)."""
    written = set()
    for clause in re.split(r"\b(?=SET |REMOVE |ADD |DELETE )", expression.strip()):
        if not clause:
            continue
        _, _, body = clause.partition(" ")
        for action in body.split(","):
            target = action.split("=", 1)[0].strip()
            written.add(names.get(target, target))
    return written


def test_record_finish_failure_writes_only_fields_of_the_record():
    parameters = ASL["States"]["RecordFinishFailure"]["Parameters"]
    written = updated_names(parameters["UpdateExpression"], parameters.get("ExpressionAttributeNames", {}))
    dropped = set(JobRecord.stored(**JobRecord.no_longer_tracked()))
    assert dropped == {"activeOnCluster", "waitToken", "waitingProgress", "waitingSince"}
    # It ends the record as the finish step does: the job leaves the active-jobs index, its wait is forgotten.
    assert written == {"status", "cause", "finishedAt", "updatedAt"} | dropped  # the scan found the writes at all
    assert written <= STORED_NAMES
    assert parameters["ExpressionAttributeValues"][":status"]["S"] in ALL_STATUSES


def test_a_new_record_is_stored_under_the_names_records_always_had():
    assert new_record().item() == {
        "jobId": JOB,
        "submissionId": "ab" * 16,
        "owner": "arn:aws:iam::123456789012:user/alice",
        "clusterUser": "alice",  # who the job runs as on the cluster: the caller's mapping when it was accepted
        "name": "n",
        "status": "SUBMITTING",
        "createdAt": "2026-11-25T12:00:00.000Z",
        "updatedAt": "2026-11-25T12:00:00.000Z",
        "spec": {"name": "n", "scriptBytes": 12},  # a summary: the whole spec is spec.json in S3
        "requestHash": "h",
        "executionArn": "arn:aws:states:us-east-1:123456789012:execution:m:" + JOB,
        "cancelRequested": False,
        "expiresAt": 1798200000,  # 2026-12-25T12:00:00Z, 30 days after createdAt
        "activeOnCluster": "test-cluster",  # the ActiveJobsIndex key, until the job ends
    }


def test_the_spec_summary_keeps_the_small_fields_and_the_sizes_of_the_large_ones():
    spec = JobSpec.model_validate(
        {
            "name": "n",
            "script": "#!/bin/sh\necho \u6587\n",
            "nodes": 2,
            "array": "1-3",
            "dependency": [{"type": "afterany", "jobId": JOB}],
            "workingDirectory": "/srv/w",
            "environment": {"A": "b", "NAME": "\u6587"},
            "outputs": ["o1", "o2", "o3"],
        }
    )
    summary = SpecSummary.of(spec)
    assert summary.model_dump(mode="json", by_alias=True) == {
        "name": "n",
        "nodes": 2,
        "array": "1-3",
        "dependency": [{"type": "afterany", "jobId": JOB}],
        "workingDirectory": "/srv/w",
        "scriptBytes": 19,  # UTF-8 bytes: 文 is three
        "environmentVariables": 2,
        "environmentBytes": (1 + 1 + 2) + (4 + 3 + 2),  # as the 64 KiB limit counts: name, value, "=" and NUL
        "outputCount": 3,
    }
    assert SpecSummary.model_validate(summary.model_dump(mode="json", by_alias=True)) == summary
    # every field of the spec is either kept or summarized, so a new field of the spec cannot be silently dropped
    kept = set(SpecSummary.model_fields) & set(JobSpec.model_fields)
    assert set(JobSpec.model_fields) - kept == {"script", "environment", "outputs"}


def test_a_record_written_with_the_whole_spec_reads_back_with_its_summary():
    item = new_record().item() | {"spec": {"script": "#!/bin/bash\n", "name": "n", "outputs": ["a"]}}
    assert JobRecord.model_validate(item).spec == SpecSummary(name="n", script_bytes=12, output_count=1)


def test_a_stored_record_reads_back_as_it_was():
    record = new_record()
    assert JobRecord.model_validate(record.item()) == record


def test_progress_fields_set_the_job_state_and_remove_what_is_unknown():
    job = JobProgress(job_id=JOB, slurm_job_id="7", status="RUNNING", started_at="t")
    fields = JobRecord.progress_fields(job, "now")
    assert fields["status"] == "RUNNING" and fields["slurmJobId"] == "7" and fields["startedAt"] == "t"
    assert fields["endedAt"] is None and fields["updatedAt"] == "now"
    assert set(fields) <= STORED_NAMES
    assert new_record().would_change(fields)
    same = new_record().model_copy(update={"status": "RUNNING", "slurm_job_id": "7", "started_at": "t"})
    assert not same.would_change(fields)


def test_finish_fields_end_the_record_and_say_where_the_results_are():
    results = StoredResults(bucket="b", prefix="p/", result_key="p/result.json", file_count=2, collection="complete")
    fields = JobRecord.finish_fields(
        None, status="SUBMIT_FAILED", cause="c", error={"code": "E", "message": "m"}, results=results, finished_at="f"
    )
    assert fields == {
        "updatedAt": "f",
        "status": "SUBMIT_FAILED",
        "cause": "c",
        "endedAt": "f",
        "finishedAt": "f",
        "error": {"code": "E", "message": "m"},
        "results": {
            "bucket": "b",
            "prefix": "p/",
            "resultKey": "p/result.json",
            "fileCount": 2,
            "collection": "complete",
        },
        # Out of the active-jobs index, no wait left.
        "activeOnCluster": None,
        "waitToken": None,
        "waitingProgress": None,
        "waitingSince": None,
    }


def test_the_cancel_mark_sets_the_flag_and_keeps_the_first_request_time():
    always, if_absent = JobRecord.cancel_mark("now")
    assert always == {"cancelRequested": True, "updatedAt": "now"} and if_absent == {"cancelRequestedAt": "now"}
    assert set(always) | set(if_absent) <= STORED_NAMES


def test_no_record_outgrows_its_budget_whatever_the_spec_and_however_the_job_ends():
    """The largest spec (every field at its maximum, the 1024-character scriptS3Key variant: larger than the script's
    size), the longest owner and execution ARN, every progress field, an array's counts, the longest cause and error
    the finish step writes, a cancel request: the record stays under RECORD_WORST_CASE_BYTES (DynamoDB bills each
    status update per started KB of the whole item)."""
    spec = largest_spec(wide=True, dependency_job_id=JOB)
    del spec["script"]
    spec["scriptS3Key"] = "inputs/" + "k" * (1024 - len("inputs/"))
    record = JobRecord.new(
        job_id=JOB,
        submission_id="ab" * 16,
        owner="arn:aws:sts::123456789012:assumed-role/" + "r" * 64 + "/" + "s" * 64,
        spec=JobSpec.model_validate(spec),
        created_at="2026-11-25T12:00:00.000Z",
        request_hash="h" * 64,
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:" + "m" * 80 + ":" + JOB + "_12",
        retention_days=30,
        cluster_name="test-cluster",
        cluster_user="u" * 32,  # the longest POSIX name
    )
    item = record.item()
    job = JobProgress(
        job_id=JOB,
        slurm_job_id="1234567890",
        status="RUNNING",
        slurm_state="RUNNING",
        reason="r" * 200,
        submitted_at="2026-11-25T12:00:00Z",
        started_at="2026-11-25T12:00:00Z",
        array_task_counts=dict.fromkeys(ALL_STATUSES, 1000),
    )
    error = {"Error": "HeadNodeProtocolError", "Cause": json.dumps({"errorMessage": "x" * 40_000})}
    status, cause = final_status(job, error)
    results = StoredResults(
        bucket="b" * 63,
        prefix=f"jobs/{JOB}/",
        result_key=f"jobs/{JOB}/result.json",
        file_count=2100,
        collection="partial",
    )
    finished = JobRecord.finish_fields(
        job, status=status, cause=cause, error=error_details(error), results=results, finished_at=item["createdAt"]
    )
    always, if_absent = JobRecord.cancel_mark(item["createdAt"])
    # While it waits for news the record holds the task token (at most 1,024 characters) and the waiting progress;
    # counted here with the finished fields, more than any record ever holds at once.
    waiting = JobRecord.waiting_fields("t" * 1024, job.to_state(), item["createdAt"])
    merged = {**waiting, **finished, **always, **if_absent}
    item.update({name: value for name, value in merged.items() if value is not None})
    item.update(waiting)
    size = dynamodb_item_bytes(item)
    print(f"largest possible record: {size} bytes ({write_units(size)} write units per update)")
    assert size <= RECORD_WORST_CASE_BYTES, size
    assert dynamodb_item_bytes({"spec": item["spec"]}) < 9 * 1024  # the summary of the largest spec
