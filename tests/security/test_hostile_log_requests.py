"""Hostile parameters of GET /jobs/{jobId}/logs through the local API Gateway and the real API function, against a
running job whose output is on the head node (scripted Slurm): every one is a 4xx in the API's error shape that
names what it refused, and no read-output command reaches the head node."""

from __future__ import annotations

import pytest

from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, squeue_line
from harness.workflow import commands_by_action, submit
from local_stack.api_gateway import LOCAL_OTHER
from slurm_job_api.head_node_program import MAX_FILE_OFFSET
from slurm_job_api.jobs_api import LOGS_PAGE_MAX
from tests.support.hostile import BENIGN_SCRIPT
from tests.support.job_logs import job_logs, wait_for_running

OUTPUT = "what the job printed\n"


@pytest.fixture(scope="module")
def jobs(cloud, slurm):
    """A running plain job and a running array job (tasks 1-3) of the local developer, their output written."""
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", "write": {"--output": OUTPUT}, "arrayTasks": [1, 2, 3]}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("RUNNING")],
        }
    )
    api = cloud.api_client()
    made = {
        "plain": submit(api, {"script": BENIGN_SCRIPT}),
        "array": submit(api, {"script": BENIGN_SCRIPT, "array": "1-3"}),
    }
    for job_id in made.values():
        wait_for_running(api, job_id, timeout=30)
    yield made
    for job_id in made.values():
        api.delete(f"/jobs/{job_id}")


def read_output_commands(cloud) -> int:
    return commands_by_action(cloud).get("read-output", 0)


def refused(cloud, client, path: str, query: str) -> dict:
    """The answer to a GET that must be refused: a 4xx in the API's error shape, and no read on the head node."""
    before = read_output_commands(cloud)
    answer = client.get(f"{path}?{query}" if query else path)
    assert 400 <= answer.status_code < 500, (query, answer.status_code, answer.text[:300])
    body = answer.json()
    assert body["code"] and body["message"], body
    assert read_output_commands(cloud) == before, f"{query!r} sent a read-output command"
    return {"status": answer.status_code, **body}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("offset=-1", "offset"),
        (f"offset={MAX_FILE_OFFSET + 1}", "offset"),
        ("offset=" + "9" * 400, "offset"),
        ("offset=1.5", "offset"),
        ("offset=1e3", "offset"),
        ("offset=0x10", "offset"),
        ("offset=true", "offset"),
        ("offset=", "offset"),
        ("limit=0", "limit"),
        ("limit=3", "limit"),
        (f"limit={LOGS_PAGE_MAX + 1}", "limit"),
        ("limit=" + "9" * 40, "limit"),
        ("limit=-5", "limit"),
        ("stream=stdin", "stream"),
        ("stream=STDOUT", "stream"),
        ("stream=../slurm-stdout", "stream"),
        ("stream=stdout%00", "stream"),
        ("stream=slurm-stdout", "stream"),
        ("stream=", "stream"),
        ("taskId=-1", "taskId"),
        ("taskId=x", "taskId"),
        ("taskId=1.5", "taskId"),
        ("taskId=" + "9" * 30, "taskId"),
    ],
)
def test_malformed_parameters_are_422_naming_the_parameter(cloud, jobs, query, parameter):
    body = refused(cloud, cloud.api_client(), f"/jobs/{jobs['plain']}/logs", query)
    assert body["status"] == 422 and body["code"] == "ValidationError", body
    assert body["message"].startswith(f"{parameter}:"), body


@pytest.mark.parametrize(
    ("job", "query"),
    [
        ("array", ""),  # an array job's streams are per task
        ("array", "taskId=0"),
        ("array", "taskId=4"),
        ("array", "taskId=4000000"),
        ("plain", "taskId=0"),  # a plain job's stream has no task: slurm-stdout.0 is nothing of it
        ("plain", "taskId=1"),
    ],
)
def test_task_ids_that_do_not_fit_the_job_are_refused(cloud, jobs, job, query):
    body = refused(cloud, cloud.api_client(), f"/jobs/{jobs[job]}/logs", query)
    assert body["status"] == 422 and "taskId" in body["message"], body


@pytest.mark.parametrize(
    "reference",
    [
        "5b0e7c1a-2f4d-4e8b-9c3a-7d6e5f4a3b21",  # a job id nobody was given (fixed: xdist workers collect alike)
        "..%2F..%2Fetc",
        "%2E%2E",
        "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10%00",
        "arn:aws:states:us-east-1:123456789012:execution:other-jobs:x",
    ],
)
def test_job_references_that_are_no_job_of_the_caller_are_404(cloud, jobs, reference):
    assert refused(cloud, cloud.api_client(), f"/jobs/{reference}/logs", "")["status"] == 404


@pytest.mark.parametrize("query", ["", "stream=stderr", "taskId=2", "offset=0&limit=4"])
def test_another_callers_job_is_404_whatever_the_parameters(cloud, jobs, query):
    other = cloud.api_client(LOCAL_OTHER)
    for job_id in jobs.values():
        body = refused(cloud, other, f"/jobs/{job_id}/logs", query)
        assert body["status"] == 404 and body["code"] == "JobNotFound", body


def test_the_owner_still_reads_both_jobs(cloud, jobs):
    """The refusals above are refusals, not a broken route."""
    api = cloud.api_client()
    assert job_logs(api, jobs["plain"])["text"] == OUTPUT
    assert job_logs(api, jobs["array"], taskId=3)["text"] == OUTPUT
