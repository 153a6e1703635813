"""Final status and cause of a workflow, and the result document."""

import json

import pytest

from slurm_job_api.job_record import JobRecord
from slurm_job_api.outcome import error_details, final_status, result_document
from slurm_job_api.progress import JobProgress
from slurm_job_api.spec import JobSpec

JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"
OTHER_RECORD_FIELDS = {"owner": "o", "status": "RUNNING", "executionArn": "arn:x"}


def ended(status, **extra):
    return JobProgress(job_id=JOB, slurm_job_id="7", status=status, done=True, **extra)


@pytest.mark.parametrize(
    ("job", "status", "words"),
    [
        (ended("COMPLETED", exit_code=0), "COMPLETED", "completed with exit code 0"),
        (ended("FAILED", exit_code=3), "FAILED", "failed with exit code 3"),
        (ended("FAILED", exit_code=0, signal=9), "FAILED", "killed by signal 9"),
        (ended("CANCELLED"), "CANCELLED", "was cancelled"),
        (ended("TIMEOUT"), "TIMEOUT", "time limit"),
        (ended("OUT_OF_MEMORY"), "OUT_OF_MEMORY", "out of memory"),
        (ended("NODE_FAIL"), "NODE_FAIL", "node"),
        (ended("PREEMPTED"), "PREEMPTED", "preempted"),
        (ended("BOOT_FAIL"), "BOOT_FAIL", "boot"),
        (ended("DEADLINE"), "DEADLINE", "deadline"),
        (ended("UNKNOWN", reason="Slurm no longer knows job 7"), "UNKNOWN", "no longer knows"),
    ],
)
def test_the_jobs_own_end(job, status, words):
    got_status, cause = final_status(job, None)
    assert got_status == status and words in cause and "7" in cause


def test_a_job_slurm_cancelled_for_a_dependency_says_why():
    status, cause = final_status(ended("CANCELLED", reason="DependencyNeverSatisfied"), None)
    assert status == "CANCELLED"
    assert cause == (
        "Slurm job 7 was cancelled by Slurm: a job it depends on ended in a way that can never satisfy its dependency "
        "(DependencyNeverSatisfied)"
    )


def test_a_job_the_product_cancelled_because_it_can_never_start_quotes_slurms_reason():
    job = ended(
        "CANCELLED",
        reason="PartitionConfig",
        never_start_reason="PartitionConfig",
        never_start_since="2026-11-25T12:00:00.000Z",
        ended_as_unsatisfiable_at="2026-11-25T13:05:00.000Z",
    )
    assert final_status(job, None) == (
        "CANCELLED",
        "Slurm job 7 was cancelled by the product: the cluster cannot ever run this request as it is configured. "
        "Slurm kept it pending for 65 minutes with reason PartitionConfig: the partition cannot hold the request "
        "(more nodes, CPUs or memory than it has)",
    )


def lambda_error(name, message):
    return {"Error": name, "Cause": json.dumps({"errorType": name, "errorMessage": message, "stackTrace": []})}


def test_error_before_submission_is_submit_failed():
    status, cause = final_status(None, lambda_error("SbatchRejected", "Invalid partition name specified"))
    assert status == "SUBMIT_FAILED" and "Invalid partition name specified" in cause


def test_error_after_submission_is_error_and_says_the_job_may_run():
    job = JobProgress(job_id=JOB, slurm_job_id="7", status="RUNNING")
    status, cause = final_status(job, lambda_error("HeadNodeUnreachable", "still Pending"))
    assert status == "ERROR" and "may still be running" in cause and "HeadNodeUnreachable" in cause


def test_error_details_of_plain_causes():
    assert error_details({"Error": "States.Runtime", "Cause": "bad path"}) == {
        "code": "States.Runtime",
        "message": "bad path",
    }
    assert error_details(None) is None


def test_result_document_has_everything_a_client_needs():
    job = ended("COMPLETED", exit_code=0, submitted_at="s", started_at="t", ended_at="e")
    spec = {"script": "#!/bin/sh\n", "environment": {"A": "b"}, "outputs": ["o.txt"]}
    document = result_document(
        record=JobRecord.model_validate(
            {"jobId": JOB, "name": "n", "createdAt": "c", "spec": spec} | OTHER_RECORD_FIELDS
        ),
        spec=JobSpec.model_validate(spec),
        progress=job,
        status="COMPLETED",
        cause="done",
        error=None,
        files=[{"name": "stdout", "key": f"jobs/{JOB}/stdout", "bytes": 3}],
        collection={"status": "complete", "message": None},
        execution_arn="arn:x",
        finished_at="f",
    )
    assert document["status"] == "COMPLETED" and document["exitCode"] == 0 and document["slurmJobId"] == "7"
    assert (document["createdAt"], document["submittedAt"], document["startedAt"], document["endedAt"]) == (
        "c",
        "s",
        "t",
        "e",
    )
    assert document["files"][0]["bytes"] == 3 and json.dumps(document)
    assert document["spec"] == spec  # the whole spec, though the record keeps only its summary
