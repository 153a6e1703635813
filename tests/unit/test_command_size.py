"""SendCommand requests are size-limited: every command we send, for any valid spec, stays within the product's
command budget (head_node.COMMAND_BUDGET_BYTES, 48 KiB), well under 64 KiB.

The biggest valid spec is built field by field at its limits; the URLs are real SigV4 presigned URLs made with a
Lambda-sized session token, for the longest bucket name S3 allows.
"""

from __future__ import annotations

import random
import uuid

import boto3
import pytest
from botocore.config import Config

from harness.limits import LARGEST_SBATCH_OPTIONS
from slurm_job_api import head_node_program as program
from slurm_job_api.head_node import COMMAND_BUDGET_BYTES, SSM_STDOUT_CHARACTERS, HeadNode
from slurm_job_api.head_node_protocol import CancelRequest, StatusRequest, SweepJob, SweepRequest
from slurm_job_api.progress import JobProgress
from slurm_job_api.results import ResultsBucket, planned_uploads
from slurm_job_api.spec import MAX_ARRAY_TASKS, JobSpec
from slurm_job_api.ssm_command import command_size, shell_commands
from slurm_job_api.workflow import collect_request, submit_request

LIMIT = 64 * 1024
JOB_ID = str(uuid.uuid4())
SUBMISSION_ID = uuid.uuid4().hex


@pytest.fixture(scope="module")
def bucket() -> ResultsBucket:
    s3 = boto3.client(
        "s3",
        region_name="ap-southeast-2",
        aws_access_key_id="ASIA" + "X" * 16,
        aws_secret_access_key="s" * 40,
        aws_session_token="T" * 1200,  # Lambda role session tokens run to about a kilobyte
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
    )
    return ResultsBucket(s3, "b" * 63)


@pytest.fixture(scope="module")
def head_node() -> HeadNode:
    return HeadNode(cluster_name="c" * 60, cluster_user="u" * 32, slurm_bin_dir="/" + "d" * 200, ssm=None, ec2=None)


def largest_spec() -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "n" * 64,
            "script": "#!/bin/sh\n" + "x" * (64 * 1024 - 20),
            "partition": "p" * 64,
            "nodes": 100_000,
            "ntasks": 10_000_000,
            "cpusPerTask": 4096,
            "timeLimitMinutes": 527040,
            "array": ",".join(str(1_000_000 + i) for i in range(31)) + "%99",
            "dependency": [{"type": "afternotok", "jobId": str(uuid.uuid4())} for _ in range(32)],
            "environment": {f"V{i:03d}": "v" * 240 for i in range(256)},
            "workingDirectory": "/" + "/".join(["w" * 250] * 16),
            "account": "a" * 64,
            "qos": "q" * 64,
            "outputs": [f"{i:03d}/" + "o" * 1018 for i in range(100)],
            **LARGEST_SBATCH_OPTIONS,
        }
    )


def test_the_largest_submit_command_is_well_under_the_limit(bucket, head_node):
    spec = largest_spec()
    request = submit_request(
        job_id=JOB_ID,
        submission_id=SUBMISSION_ID,
        spec=spec,
        slurm_dependencies={"afternotok": [str(4_000_000_000 + i) for i in range(32)]},
        script_url=bucket.presigned_get(f"jobs/{JOB_ID}/input/script.sh"),
        environment_url=bucket.presigned_get(f"jobs/{JOB_ID}/input/environment.json"),
    )
    size = command_size(shell_commands(head_node.document(request)))
    print(f"largest submit command: {size} bytes")
    assert size <= COMMAND_BUDGET_BYTES < LIMIT


@pytest.mark.parametrize(
    "request_",
    [
        StatusRequest(job_id=JOB_ID, slurm_job_id="4294967295", is_array=True),
        CancelRequest(job_id=JOB_ID, slurm_job_id="4294967295"),
    ],
    ids=["status", "cancel"],
)
def test_status_and_cancel_commands_are_small(head_node, request_):
    size = command_size(shell_commands(head_node.document(request_)))
    assert size <= COMMAND_BUDGET_BYTES < LIMIT


def test_collect_batches_stay_within_the_budget_for_the_largest_array_and_outputs(bucket, head_node):
    spec = largest_spec().model_copy(update={"array": f"1-{MAX_ARRAY_TASKS}"})
    planned = planned_uploads(JOB_ID, array_task_ids=spec.array_task_ids, outputs=spec.outputs or [])
    job = JobProgress(job_id=JOB_ID, submission_id=SUBMISSION_ID, slurm_job_id="4294967295", is_array=True)
    request = collect_request(job, spec, planned, bucket.presigned_put)
    batches = head_node.collect_batches(request)
    sizes = [command_size(shell_commands(head_node.document(batch))) for batch in batches]
    print(f"{len(planned)} uploads in {len(batches)} commands, the largest {max(sizes)} bytes")
    assert sum(len(batch.uploads) for batch in batches) == len(planned) == 2 * MAX_ARRAY_TASKS + 100
    assert max(sizes) <= COMMAND_BUDGET_BYTES < LIMIT
    # Each batch's reply fits what SSM returns of stdout (24,000 characters), even if every file failed with the
    # longest message the program gives, and with the reply's envelope.
    for batch in batches:
        worst = [
            {
                "name": u.name,
                "status": "error",
                "bytes": program.MAX_UPLOAD_BYTES,
                "message": "m" * program.COLLECT_MESSAGE_CHARACTERS,
            }
            for u in batch.uploads
        ]
        assert len(program._reply("collect", result={"files": worst})) + 1 <= SSM_STDOUT_CHARACTERS


@pytest.mark.parametrize(
    ("count", "ids"),
    [
        (program.MAX_SWEEP_JOBS, lambda count: [str(4_000_000_000 + n) for n in range(count)]),  # a cluster's jobs
        (1000, lambda count: [str(n) for n in random.Random(7).sample(range(10**9, 4 * 10**9), count)]),  # scattered
    ],
    ids=["largest-consecutive", "1000-scattered"],
)
def test_sweep_commands_stay_within_the_budget(bucket, head_node, count, ids):
    """The largest sweep the program takes fits one command when its ids are close together, as a cluster's are (that
    many random 10-digit ids would not: the Lambda sizes its sweeps by the command)."""
    jobs = [SweepJob(slurm_job_id=slurm_job_id, is_array=n % 10 == 0) for n, slurm_job_id in enumerate(ids(count))]
    request = SweepRequest(jobs=jobs, report_url=bucket.presigned_put("sweeps/" + "s" * 36 + "/report.json"))
    size = command_size(shell_commands(head_node.document(request)))
    print(f"sweep of {count} jobs: {size} bytes")
    assert size <= COMMAND_BUDGET_BYTES < LIMIT
