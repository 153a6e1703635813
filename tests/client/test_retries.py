"""A POST whose answer is lost — the connection dropped, a timeout, 502/503/504, 429 — is sent again with the same
Idempotency-Key, so the API makes one job of it; what a retry cannot fix is answered at once."""

from __future__ import annotations

import http.client
import socket
import urllib.error

import pytest

from slurm_job_client import Client, InvalidRequest, NetworkError
from slurm_job_client.transport import RetryPolicy, retry_after_seconds, transient_reason
from tests.client.fake_api import LOST_ANSWER, Reply, Slow

SCRIPT = "#!/bin/bash\necho hello\n"
UNAVAILABLE = Reply(503, {"code": "ServiceUnavailable", "message": "try again"})


def test_a_lost_answer_then_a_503_make_one_job_under_one_key(client, fake_api, waits):
    fake_api.plan("POST", "/v1/jobs", LOST_ANSWER, UNAVAILABLE)
    job = client.submit(SCRIPT, name="once")
    posts = fake_api.to("POST", "/v1/jobs")
    keys = {request.headers["idempotency-key"] for request in posts}
    assert len(posts) == 3 and len(keys) == 1, posts
    # The first request made the job; its answer was lost; the third got that same job back.
    assert list(fake_api.jobs_by_key.values()) == [job.job_id]
    assert all(request.json() == {"name": "once", "script": SCRIPT} for request in posts)
    assert len(waits) == 2 and all(0 < wait <= RetryPolicy().cap for wait in waits)


def test_a_timed_out_request_is_sent_again_with_its_key(fake_api, waits):
    client = Client(fake_api.url, retry=RetryPolicy(timeout=0.3), sleep=waits)
    fake_api.plan("POST", "/v1/jobs", Slow(1.0))
    job = client.submit(SCRIPT)
    posts = fake_api.to("POST", "/v1/jobs")
    assert len(posts) == 2 and posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert list(fake_api.jobs_by_key.values()) == [job.job_id]


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_each_transient_status_is_retried(client, fake_api, status):
    fake_api.plan("POST", "/v1/jobs", Reply(status, {"message": "busy"}))
    client.submit(SCRIPT, idempotency_key="my-key-1")
    assert [request.headers["idempotency-key"] for request in fake_api.to("POST", "/v1/jobs")] == ["my-key-1"] * 2


def test_retry_after_is_honoured(client, fake_api, waits):
    fake_api.plan("POST", "/v1/jobs", Reply(429, {"message": "Too Many Requests"}, {"Retry-After": "7"}))
    client.submit(SCRIPT)
    assert waits == [7.0]


def test_a_retry_after_over_the_cap_waits_the_cap(client, fake_api, waits):
    fake_api.plan("POST", "/v1/jobs", Reply(503, {}, {"Retry-After": "3600"}))
    client.submit(SCRIPT)
    assert waits == [RetryPolicy().cap]


def test_every_request_is_signed_again(client, fake_api):
    fake_api.plan("POST", "/v1/jobs", UNAVAILABLE)
    client.submit(SCRIPT)
    first, second = fake_api.to("POST", "/v1/jobs")
    for request in (first, second):
        assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAUNITTEST00000000/")
        assert "/eu-west-1/execute-api/aws4_request" in request.headers["authorization"]
        assert "idempotency-key" in request.headers["authorization"]  # the key is part of what is signed
    assert first.headers["x-amz-date"] <= second.headers["x-amz-date"]


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422, 500])
def test_other_answers_are_not_retried(client, fake_api, waits, status):
    fake_api.plan("POST", "/v1/jobs", Reply(status, {"code": "X", "message": "no"}))
    with pytest.raises(Exception):  # noqa: B017 - which error is test_errors.py's
        client.submit(SCRIPT)
    assert len(fake_api.to("POST", "/v1/jobs")) == 1 and waits == []


def test_the_retries_end_with_a_network_error_naming_the_url(fake_api, waits):
    client = Client(fake_api.url, retry=RetryPolicy(attempts=3), sleep=waits)
    fake_api.plan("POST", "/v1/jobs", LOST_ANSWER, LOST_ANSWER, LOST_ANSWER)
    with pytest.raises(NetworkError) as raised:
        client.submit(SCRIPT)
    assert str(raised.value) == (
        f"cannot reach {fake_api.url}/jobs (POST): the connection was closed without an answer"
    )
    assert len(fake_api.to("POST", "/v1/jobs")) == 3 and len(waits) == 2


def test_the_last_transient_answer_is_reported(fake_api, waits):
    client = Client(fake_api.url, retry=RetryPolicy(attempts=2), sleep=waits)
    fake_api.plan("POST", "/v1/jobs", UNAVAILABLE, Reply(422, {"code": "InvalidJobSpec", "message": "nodes: bad"}))
    with pytest.raises(InvalidRequest, match="nodes: bad"):
        client.submit(SCRIPT)


def test_a_refused_connection_is_retried_then_reported(waits):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}/v1", retry=RetryPolicy(attempts=3), sleep=waits)
    with pytest.raises(NetworkError, match=rf"^cannot reach http://127.0.0.1:{port}/v1/jobs/x \(GET\): .*refused"):
        client.job("x").status()
    assert len(waits) == 2


def test_the_backoff_grows_to_its_cap():
    policy = RetryPolicy(base=1, cap=5)
    ceilings = [min(5, 2**attempt) for attempt in range(6)]
    for attempt, ceiling in enumerate(ceilings):
        assert ceiling / 2 <= policy.backoff(attempt) <= ceiling


def test_retry_after_forms():
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_which_errors_are_transient():
    assert transient_reason(urllib.error.URLError(TimeoutError("timed out"))) == "timed out"
    assert transient_reason(http.client.RemoteDisconnected("x")) == "the connection was closed without an answer"
    assert transient_reason(ConnectionResetError("reset")) == "reset"
    assert transient_reason(urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))) is None
