"""The job record model: its stored names, its creation, and every writer of the record agrees with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from slurm_job_api.job_record import JobRecord, StoredResults
from slurm_job_api.progress import JobProgress
from slurm_job_api.spec import JobSpec
from slurm_job_api.statuses import ALL_STATUSES

ASL = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "job.asl.json").read_text())
JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"
STORED_NAMES = {field.alias for field in JobRecord.model_fields.values()}


def new_record() -> JobRecord:
    return JobRecord.new(
        job_id=JOB,
        submission_id="ab" * 16,
        owner="arn:aws:iam::123456789012:user/alice",
        spec=JobSpec.model_validate({"script": "#!/bin/bash\n", "name": "n"}),
        created_at="2026-11-25T12:00:00.000Z",
        request_hash="h",
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:" + JOB,
        retention_days=30,
    )


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
    assert written == {"status", "cause", "finishedAt", "updatedAt"}  # the scan found the writes at all
    assert written <= STORED_NAMES
    assert parameters["ExpressionAttributeValues"][":status"]["S"] in ALL_STATUSES


def test_a_new_record_is_stored_under_the_names_records_always_had():
    assert new_record().item() == {
        "jobId": JOB,
        "submissionId": "ab" * 16,
        "owner": "arn:aws:iam::123456789012:user/alice",
        "name": "n",
        "status": "SUBMITTING",
        "createdAt": "2026-11-25T12:00:00.000Z",
        "updatedAt": "2026-11-25T12:00:00.000Z",
        "spec": {"script": "#!/bin/bash\n", "name": "n"},
        "requestHash": "h",
        "executionArn": "arn:aws:states:us-east-1:123456789012:execution:m:" + JOB,
        "cancelRequested": False,
        "expiresAt": 1798200000,  # 2026-12-25T12:00:00Z, 30 days after createdAt
    }


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
    }


def test_the_cancel_mark_sets_the_flag_and_keeps_the_first_request_time():
    always, if_absent = JobRecord.cancel_mark("now")
    assert always == {"cancelRequested": True, "updatedAt": "now"} and if_absent == {"cancelRequestedAt": "now"}
    assert set(always) | set(if_absent) <= STORED_NAMES
