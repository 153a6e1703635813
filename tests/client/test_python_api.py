"""The Python API against the fake API: submit (inline and uploaded scripts), status, wait, jobs (every page),
logs (the GET /jobs/{jobId}/logs contract), cancel, the error each answer becomes, and where the URL comes from."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from slurm_job_api.head_node_program import ACTIVE_STATUSES as PRODUCT_ACTIVE_STATUSES
from slurm_job_client import (
    Client,
    ConfigurationError,
    Conflict,
    InvalidRequest,
    NetworkError,
    NoSuchJob,
    NotAllowed,
    endpoint,
)
from slurm_job_client.client import ACTIVE_STATUSES, INLINE_SCRIPT_BYTES, is_final, spec_field
from slurm_job_client.transport import RetryPolicy
from tests.client.fake_api import LOST_ANSWER, Reply
from tests.support.http_files import FileServer

JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"


def view(status: str, execution: str = "RUNNING", **fields) -> dict:
    return {"jobId": JOB, "status": status, "execution": {"arn": "arn", "status": execution}, **fields}


def test_the_client_knows_the_products_active_statuses():
    assert set(PRODUCT_ACTIVE_STATUSES) == ACTIVE_STATUSES


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("cpus_per_task", "cpusPerTask"),
        ("memory_mb", "memoryMB"),
        ("memory_per_cpu_mb", "memoryPerCpuMB"),
        ("script_s3_key", "scriptS3Key"),
        ("time_limit_minutes", "timeLimitMinutes"),
        ("memoryMB", "memoryMB"),
        ("name", "name"),
    ],
)
def test_python_names_of_spec_fields(name, field):
    assert spec_field(name) == field


def test_submit_with_python_names(client, fake_api, tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    job = client.submit(script, name="py", time_limit_minutes=5, memory_mb=100, environment={"A": "1"}, nice=None)
    assert fake_api.to("POST", "/v1/jobs")[0].json() == {
        "script": "#!/bin/bash\ntrue\n",
        "name": "py",
        "timeLimitMinutes": 5,
        "memoryMB": 100,
        "environment": {"A": "1"},
    }
    assert job.accepted["status"] == "SUBMITTING" and job.job_id in fake_api.jobs_by_key.values()


def test_a_large_script_is_uploaded_and_named_by_its_key(client, fake_api, tmp_path):
    files = FileServer()
    fake_api.route(
        "POST",
        "/v1/inputs",
        Reply(200, {"key": "inputs/me/1/big.sh", "prefix": "inputs/me/", "method": "PUT", "url": files.url("/up")}),
    )
    text = "#!/bin/bash\n" + "# padding\n" * (INLINE_SCRIPT_BYTES // 10)
    script = tmp_path / "big.sh"
    script.write_text(text)
    client.submit(script)
    (inputs,) = fake_api.to("POST", "/v1/inputs")
    assert inputs.json() == {"fileName": "big.sh"}
    assert files.objects["/up"] == text.encode()
    assert fake_api.to("POST", "/v1/jobs")[0].json() == {"scriptS3Key": "inputs/me/1/big.sh"}


def test_a_script_that_cannot_be_read(client, tmp_path):
    with pytest.raises(Exception, match=r"^cannot read the script .*nothing.sh: No such file or directory$"):
        client.submit(tmp_path / "nothing.sh")
    (tmp_path / "binary.sh").write_bytes(b"#!/bin/sh\n\xff\n")
    with pytest.raises(Exception, match=r"binary.sh is not UTF-8 text$"):
        client.submit(tmp_path / "binary.sh")


def test_wait_returns_the_final_view(client, fake_api, waits):
    views = [view("PENDING"), view("RUNNING"), view("COMPLETED"), view("COMPLETED", "SUCCEEDED", exitCode=0)]
    fake_api.plan("GET", f"/v1/jobs/{JOB}", *(Reply(200, item) for item in views))
    seen = []
    final = client.job(JOB).wait(poll=3, on_update=seen.append)
    assert final == views[-1] and seen == views
    assert waits == [3, 3, 3]  # the third view is COMPLETED, but its results are still being collected


def test_wait_outlasts_a_network_blip_but_not_an_outage(fake_api, waits):
    client = Client(fake_api.url, retry=RetryPolicy(attempts=1), sleep=waits)
    final = view("COMPLETED", "SUCCEEDED")
    fake_api.plan("GET", f"/v1/jobs/{JOB}", LOST_ANSWER, LOST_ANSWER, Reply(200, final))
    assert client.job(JOB).wait(poll=2) == final and waits == [2, 2]
    fake_api.plan("GET", f"/v1/jobs/{JOB}", LOST_ANSWER)
    with pytest.raises(NetworkError):
        client.job(JOB).wait(poll=2, network_patience=-1)


def test_final_views():
    assert is_final(view("FAILED", "FAILED")) and is_final(view("CANCELLED", "ABORTED"))
    assert not is_final(view("RUNNING", "RUNNING")) and not is_final(view("COMPLETED", "RUNNING"))
    assert not is_final(view("PENDING", "UNKNOWN"))


def test_jobs_reads_every_page(client, fake_api):
    fake_api.plan(
        "GET",
        "/v1/jobs",
        Reply(200, {"jobs": [{"jobId": "a"}, {"jobId": "b"}], "nextToken": "t1"}),
        Reply(200, {"jobs": [{"jobId": "c"}], "nextToken": None}),
    )
    assert [job["jobId"] for job in client.jobs(status="RUNNING")] == ["a", "b", "c"]
    first, second = fake_api.to("GET", "/v1/jobs")
    assert first.query == {"status": "RUNNING", "limit": "100"}
    assert second.query == {"status": "RUNNING", "limit": "100", "nextToken": "t1"}


def test_jobs_stops_at_the_limit(client, fake_api):
    fake_api.plan("GET", "/v1/jobs", Reply(200, {"jobs": [{"jobId": "a"}, {"jobId": "b"}], "nextToken": "t1"}))
    assert len(client.jobs(limit=2)) == 2
    assert [request.query for request in fake_api.to("GET", "/v1/jobs")] == [{"limit": "2"}]


def log_page(offset: int, text: str, size: int, complete: bool) -> Reply:
    body = {
        "jobId": JOB,
        "stream": "stdout",
        "taskId": None,
        "offset": offset,
        "nextOffset": offset + len(text),
        "text": text,
        "size": size,
        "complete": complete,
    }
    return Reply(200, body)


def test_logs_follow_reads_from_next_offset_until_complete(client, fake_api, waits):
    fake_api.plan(
        "GET",
        f"/v1/jobs/{JOB}/logs",
        log_page(0, "line 1\n", 7, False),
        log_page(7, "", 7, False),  # nothing new yet: wait
        log_page(7, "line 2\n", 14, False),
        log_page(14, "", 14, True),
    )
    assert list(client.job(JOB).logs(follow=True, poll=1.5)) == ["line 1\n", "line 2\n"]
    offsets = [request.query["offset"] for request in fake_api.to("GET", f"/v1/jobs/{JOB}/logs")]
    assert offsets == ["0", "7", "7", "14"] and waits == [1.5]


def test_logs_without_follow_reads_what_there_is(client, fake_api):
    fake_api.plan("GET", f"/v1/jobs/{JOB}/logs", log_page(0, "abc", 6, False), log_page(3, "def", 6, False))
    assert "".join(client.job(JOB).logs("stderr", task=3)) == "abcdef"
    requests = fake_api.to("GET", f"/v1/jobs/{JOB}/logs")
    assert [request.query for request in requests] == [
        {"stream": "stderr", "offset": "0", "taskId": "3"},
        {"stream": "stderr", "offset": "3", "taskId": "3"},
    ]


def test_cancel(client, fake_api):
    answer = {"jobId": JOB, "status": "RUNNING", "cancelRequested": True, "slurmCancelSent": True}
    fake_api.route("DELETE", f"/v1/jobs/{JOB}", Reply(202, answer))
    assert client.job(JOB).cancel() == answer


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (
            Reply(403, {"message": "User: arn:aws:iam::1:user/x is not authorized to perform: execute-api:Invoke"}),
            NotAllowed,
            "not allowed (403): your AWS identity may not call this API (it needs execute-api:Invoke on it, and valid "
            "credentials): User: arn:aws:iam::1:user/x is not authorized to perform: execute-api:Invoke",
        ),
        (
            Reply(403, {"code": "CallerNotMapped", "message": "arn:aws:iam::1:user/x is not mapped to a cluster user"}),
            NotAllowed,
            "not allowed (403): you are not mapped to a cluster user — arn:aws:iam::1:user/x is not mapped to a "
            "cluster user",
        ),
        (Reply(404, {"code": "JobNotFound", "message": "no such job"}), NoSuchJob, f"no such job {JOB} (404)"),
        (
            Reply(422, {"code": "InvalidJobSpec", "message": "nodes: Input should be less than or equal to 100000"}),
            InvalidRequest,
            "invalid request (422): nodes: Input should be less than or equal to 100000",
        ),
        (
            Reply(409, {"code": "JobAlreadyFinished", "message": "the job already ended"}),
            Conflict,
            f"job {JOB}: the job already ended (409)",
        ),
    ],
)
def test_error_answers_are_one_line(client, fake_api, reply, error, message):
    fake_api.route("DELETE", f"/v1/jobs/{JOB}", reply)
    with pytest.raises(error) as raised:
        client.job(JOB).cancel()
    assert str(raised.value) == message and "\n" not in message


def test_the_url_comes_from_the_argument_then_the_environment(monkeypatch, fake_api):
    monkeypatch.setenv("SJA_API_URL", "http://127.0.0.1:9/from-env/")
    assert Client().api_url == "http://127.0.0.1:9/from-env"
    assert Client(fake_api.url).api_url == fake_api.url


def test_the_url_from_the_stacks_output():
    boto = endpoint.session(None)
    cloudformation = boto.create_client("cloudformation", region_name="eu-west-1")
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"
    outputs = [{"OutputKey": "StateMachineArn", "OutputValue": "arn"}, {"OutputKey": "ApiUrl", "OutputValue": url}]
    with Stubber(cloudformation) as stubs:
        stubs.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "s",
                        "CreationTime": "2026-01-01",
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": outputs,
                    }
                ]
            },
            {"StackName": "slurm-job-api"},
        )
        boto.create_client = lambda *args, **kwargs: cloudformation
        assert endpoint.api_url(None, "slurm-job-api", None, boto) == url
    assert endpoint.signing_region(url, None, boto) == "eu-west-1"


def test_the_signing_region(monkeypatch):
    boto = endpoint.session(None)
    assert endpoint.signing_region("https://x.execute-api.ap-south-2.amazonaws.com/v1", None, boto) == "ap-south-2"
    assert endpoint.signing_region("http://127.0.0.1:1/v1", "us-east-1", boto) == "us-east-1"
    assert endpoint.signing_region("http://127.0.0.1:1/v1", None, boto) == "eu-west-1"  # AWS_REGION
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(ConfigurationError, match=r"^no AWS region: pass --region"):
        endpoint.signing_region("http://127.0.0.1:1/v1", None, boto)


def test_missing_configuration_is_said_in_one_line(monkeypatch):
    with pytest.raises(ConfigurationError, match=r"^no API URL: pass --api-url, set SJA_API_URL"):
        Client()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigurationError, match=r"^no AWS credentials: configure a profile"):
        Client("http://127.0.0.1:1/v1")
    with pytest.raises(ConfigurationError, match=r"^the API URL must start with https://"):
        Client("ftp://example.com")
