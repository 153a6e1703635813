"""GET /jobs/{jobId}/logs through the local API Gateway and the real API function: the head node's file (read-output
through SSM, the real program as the cluster user) while the job runs, the collected object in S3 after; Slurm is
scripted (tests/support/fake_slurm.py: its sbatch writes what the job would have printed)."""

from __future__ import annotations

import uuid

import pytest

from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import SCRIPT, commands_by_action, submit, wait_for_execution
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_OTHER
from slurm_job_api.job_store import JobStore
from slurm_job_api.jobs_api import LOGS_PAGE_MAX
from tests.support.job_logs import job_logs as logs
from tests.support.job_logs import read_stream, wait_for_running
from tests.support.job_records import accepted_record, changed_record

# ASCII, then characters of 2, 3 and 4 bytes in UTF-8, so that pages can end inside each.
OUTPUT = "first line\n" + "é漢🙂" * 700 + "\nlast line\n"
OUTPUT_BYTES = OUTPUT.encode()
ERRORS = "warning: something\n"


def running_job_writes(slurm, stdout: str = OUTPUT, stderr: str | None = ERRORS, tasks: list[int] | None = None):
    """Scripted Slurm: sbatch leaves the job's stdout (and stderr) in its directory, and the job keeps running."""
    written = {"--output": stdout, **({"--error": stderr} if stderr is not None else {})}
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", "write": written, **({"arrayTasks": tasks} if tasks else {})}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("RUNNING")],
        }
    )


def completed_job_writes(slurm, stdout: str = OUTPUT):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", "write": {"--output": stdout}}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )


def running(api, spec: dict | None = None) -> str:
    """A job that reached Slurm and runs."""
    job_id = submit(api, spec or {"script": SCRIPT})
    wait_for_running(api, job_id, timeout=30)
    return job_id


def read_all(api, job_id: str, limit: int, **params) -> tuple[str, list[dict]]:
    data, pages = read_stream(api, job_id, limit=limit, **params)
    return data.decode(), pages


def read_output_commands(cloud) -> int:
    return commands_by_action(cloud).get("read-output", 0)


@pytest.fixture
def other(cloud):
    return cloud.api_client(LOCAL_OTHER)


def test_a_running_jobs_stdout_and_stderr_are_read_on_the_head_node(cloud, api, slurm):
    running_job_writes(slurm)
    job_id = running(api)
    before = read_output_commands(cloud)
    page = logs(api, job_id)
    assert page == {
        "jobId": job_id,
        "stream": "stdout",
        "taskId": None,
        "offset": 0,
        "nextOffset": len(OUTPUT_BYTES),
        "text": OUTPUT,
        "size": len(OUTPUT_BYTES),
        "complete": False,  # the job runs: more may come
    }
    assert logs(api, job_id, stream="stderr")["text"] == ERRORS
    assert read_output_commands(cloud) == before + 2
    end = logs(api, job_id, offset=len(OUTPUT_BYTES))
    assert end["text"] == "" and end["nextOffset"] == end["size"] == len(OUTPUT_BYTES) and not end["complete"]
    api.delete(f"/jobs/{job_id}")


def test_pages_never_end_inside_a_utf8_sequence_and_reassemble_the_stream(cloud, api, slurm):
    short = "first line\n" + "é漢🙂" * 4 + "\n"  # one command per page: a few pages of a short stream
    running_job_writes(slurm, stdout=short)
    job_id = running(api)
    first = logs(api, job_id, offset=0, limit=12)  # "first line\n" and the first byte of "é"
    assert first["text"] == "first line\n" and first["nextOffset"] == 11
    for limit in (4, 5, 7):
        text, pages = read_all(api, job_id, limit)
        assert text == short, limit
        assert all(len(page["text"].encode()) == page["nextOffset"] - page["offset"] for page in pages)
    text, pages = read_all(api, job_id, 1000)
    assert text == short and len(pages) == 1
    api.delete(f"/jobs/{job_id}")


def test_before_the_job_reaches_slurm_the_logs_are_empty(cloud, api):
    """A job still SUBMITTING (its record as POST /jobs wrote it, no Slurm job yet): nothing to read, no command."""
    job_id = str(uuid.uuid4())
    record = changed_record(accepted_record(job_id), owner=LOCAL_DEVELOPER.arn)
    table = cloud.session().resource("dynamodb", endpoint_url=cloud.endpoint_url).Table(cloud.table_name)
    JobStore(table).create(record)
    before = read_output_commands(cloud)
    page = logs(api, job_id, offset=5)
    assert page["text"] == "" and page["size"] == 0 and page["nextOffset"] == 5 and page["complete"] is False
    assert read_output_commands(cloud) == before


def test_after_collect_the_logs_come_from_s3_with_no_command(cloud, api, slurm):
    completed_job_writes(slurm)
    job_id = submit(api)
    assert wait_for_execution(cloud, job_id)["status"] == "SUCCEEDED"
    before = read_output_commands(cloud)
    text, pages = read_all(api, job_id, 1000)
    assert text == OUTPUT and len(pages) > 3
    assert pages[-1]["complete"] is True and not any(page["complete"] for page in pages[:-1])
    past = logs(api, job_id, offset=len(OUTPUT_BYTES) + 100)
    assert past["text"] == "" and past["size"] == len(OUTPUT_BYTES) and past["complete"] is True
    missing = logs(api, job_id, stream="stderr")  # the job wrote no stderr: nothing was collected
    assert missing["text"] == "" and missing["size"] == 0 and missing["complete"] is True
    assert read_output_commands(cloud) == before, "a collected job's logs must not be read on the head node"


def test_bytes_that_are_not_utf8_are_replaced_and_a_cut_sequence_at_the_end_is_given_whole(cloud, api, slurm):
    completed_job_writes(slurm)
    job_id = submit(api)
    assert wait_for_execution(cloud, job_id)["status"] == "SUCCEEDED"
    stored = b"ok \xff\xfe bad\n" + "漢".encode()[:2]  # invalid bytes, and a sequence the job never finished
    cloud.client("s3").put_object(Bucket=cloud.bucket_name, Key=f"jobs/{job_id}/stdout", Body=stored)
    page = logs(api, job_id)
    assert page["text"] == "ok \ufffd\ufffd bad\n\ufffd" and page["nextOffset"] == page["size"] == len(stored)
    assert page["complete"] is True


def test_array_jobs_need_one_of_their_tasks_and_other_jobs_refuse_a_task(cloud, api, slurm):
    running_job_writes(slurm, stdout="a task's output\n", tasks=[1, 2])
    array_job = running(api, {"script": SCRIPT, "array": "1-2"})
    before = read_output_commands(cloud)
    for params, problem in (({}, "required"), ({"taskId": 3}, "not a task"), ({"taskId": 0}, "not a task")):
        answer = api.get(f"/jobs/{array_job}/logs", params=params)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "ValidationError" and "taskId" in answer.json()["message"]
        assert problem in answer.json()["message"]
    assert read_output_commands(cloud) == before
    page = logs(api, array_job, taskId=2)
    assert page["text"] == "a task's output\n" and page["taskId"] == 2
    api.delete(f"/jobs/{array_job}")

    running_job_writes(slurm)
    plain = running(api)
    answer = api.get(f"/jobs/{plain}/logs", params={"taskId": 1})
    assert answer.status_code == 422 and "taskId" in answer.json()["message"]
    api.delete(f"/jobs/{plain}")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"stream": "stdin"}, "stream"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"limit": "3"}, "limit"),
        ({"limit": str(LOGS_PAGE_MAX + 1)}, "limit"),
        ({"taskId": "-1"}, "taskId"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(api, params, field):
    answer = api.get(f"/jobs/{uuid.uuid4()}/logs", params=params)
    assert answer.status_code == 422 and answer.json()["code"] == "ValidationError"
    assert answer.json()["message"].startswith(f"{field}:"), answer.text


def test_another_callers_job_is_404_and_reads_nothing(cloud, api, other, slurm):
    running_job_writes(slurm)
    job_id = running(api)
    before = read_output_commands(cloud)
    for params in ({}, {"stream": "stderr"}, {"taskId": 1}):
        answer = other.get(f"/jobs/{job_id}/logs", params=params)
        assert answer.status_code == 404 and answer.json() == other.get(f"/jobs/{job_id}").json()
    assert other.get(f"/jobs/{uuid.uuid4()}/logs").status_code == 404
    assert read_output_commands(cloud) == before
    api.delete(f"/jobs/{job_id}")


def test_a_head_node_that_cannot_be_reached_is_503_with_retry_after(cloud, api, slurm):
    running_job_writes(slurm)
    job_id = running(api)
    cloud.head_node.faults.unreachable = True
    try:
        answer = api.get(f"/jobs/{job_id}/logs")
    finally:
        cloud.head_node.faults.unreachable = False
    assert answer.status_code == 503 and answer.json()["code"] == "ServiceUnavailable", answer.text
    assert int(answer.headers["Retry-After"]) > 0
    assert logs(api, job_id)["text"] == OUTPUT
    api.delete(f"/jobs/{job_id}")
