"""Abuse of the HTTP protocol rather than of the job spec, through the local API Gateway and the real API function
(scripted Slurm). Extends tests/handlers/test_api.py, which already covers one malformed body, text/plain, a 300 KiB
body, an Idempotency-Key with a space, limit 0/101/x, a garbage nextToken, an unknown status, GET by another state
machine's execution ARN, another caller's job by id, GET of an unknown route, PUT /jobs and an unsigned GET.

Every refusal must be a 4xx in the API's error shape ({"code", "message"}; the gateway's own 403/413 answer
{"message"}), and a refused POST must start no execution.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness.workflow import execution_arn, submit
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_OTHER
from local_stack.sigv4 import Principal
from tests.security.harness import every_job_completes, wait_for_all_executions, wait_for_execution
from tests.support.hostile import BENIGN_SCRIPT

SPEC = json.dumps({"script": BENIGN_SCRIPT}).encode()
JSON = {"Content-Type": "application/json"}


class Sfn:
    """The state machine's executions, through one client."""

    def __init__(self, cloud) -> None:
        self.cloud = cloud
        self.client = cloud.client("stepfunctions")

    def newest(self) -> str | None:
        """The newest execution: a request that started one changes it."""
        listed = self.client.list_executions(stateMachineArn=self.cloud.state_machine_arn, maxResults=1)["executions"]
        return listed[0]["executionArn"] if listed else None

    def wait(self, job_id: str) -> dict:
        return wait_for_execution(self.client, execution_arn(self.cloud, job_id))


@pytest.fixture(scope="module")
def sfn(cloud) -> Iterator[Sfn]:
    executions = Sfn(cloud)
    yield executions
    wait_for_all_executions(executions.client, cloud.state_machine_arn)


@pytest.fixture(scope="module")
def me(cloud):
    return cloud.api_client()


@pytest.fixture(scope="module")
def other(cloud):
    return cloud.api_client(LOCAL_OTHER)


@pytest.fixture(scope="module", autouse=True)
def scripted_slurm(slurm) -> None:
    every_job_completes(slurm)  # for the few requests meant to be accepted


@pytest.fixture(scope="module")
def jobs(sfn, me, other) -> dict[str, list[str]]:
    """Three ended jobs of each caller."""
    made = {"mine": [submit(me, {"script": BENIGN_SCRIPT}) for _ in range(3)]}
    made["theirs"] = [submit(other, {"script": BENIGN_SCRIPT}) for _ in range(3)]
    for job_id in made["mine"] + made["theirs"]:
        sfn.wait(job_id)
    return made


@pytest.fixture
def starts_nothing(sfn) -> Iterator[None]:
    before = sfn.newest()
    yield
    assert sfn.newest() == before, "a refused request started an execution"


def api_error(answer: requests.Response, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text[:300]
    body = answer.json()
    assert body["code"] == code and body["message"], body
    return body


# -- bodies -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"script": "#!/bin/sh',
        b'{"script": "#!/bin/sh\\n"} trailing',
        b'{"script": "\xff\xfe"}',  # not UTF-8: the gateway passes it base64-encoded
        b'\xef\xbb\xbf{"script": "#!/bin/sh\\n"}',  # a byte-order mark
        b'{"nodes": ' + b"1" * 5000 + b"}",  # more digits than Python parses
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser recurses
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        b"   ",
        b"{'script': 'single quotes'}",
    ],
    ids=["truncated", "trailing", "not-utf8", "bom", "huge-int", "deep-list", "deep-object", "blank", "quotes"],
)
def test_malformed_json_is_400(me, starts_nothing, body):
    api_error(me.post("/jobs", data=body, headers=JSON), 400, "MalformedJson")


@pytest.mark.parametrize("body", [b"[]", b'"#!/bin/sh\\n"', b"42", b"null", b"true", b"NaN", b'[{"script": "#!/"}]'])
def test_json_that_is_not_an_object_is_422_naming_the_body(me, starts_nothing, body):
    assert "body" in api_error(me.post("/jobs", data=body, headers=JSON), 422, "ValidationError")["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/jsonx",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json-patch+json",
        "APPLICATION/JSON",
    ],
)
def test_a_body_that_is_not_declared_json_is_415(me, starts_nothing, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    api_error(me.post("/jobs", data=SPEC, headers=headers), 415, "UnsupportedMediaType")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-16",
        "application/json;charset=UTF-16",
        'application/json; charset="utf-16"',
        "application/json; CHARSET=Utf-16LE",
        "application/json; charset=iso-8859-1",
        "application/json; charset=us-ascii",
        "application/json; charset=utf8",  # not the registered name
        "application/json; charset=",
        "application/json; charset=utf-8; charset=utf-16",
        "application/json; charset*=utf-8''utf-16",  # RFC 2231 form
    ],
)
def test_json_declared_in_another_charset_is_415_and_recorded_nowhere(cloud, me, starts_nothing, content_type):
    dynamodb = cloud.client("dynamodb")
    records_before = dynamodb.scan(TableName=cloud.table_name, Select="COUNT")["Count"]
    body = api_error(me.post("/jobs", data=SPEC, headers={"Content-Type": content_type}), 415, "UnsupportedMediaType")
    assert "UTF-8" in body["message"]
    assert dynamodb.scan(TableName=cloud.table_name, Select="COUNT")["Count"] == records_before


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json; version=1",
    ],
)
def test_json_with_media_type_parameters_is_accepted(sfn, me, content_type):
    answer = me.post("/jobs", data=SPEC, headers={"Content-Type": content_type})
    assert answer.status_code == 202, answer.text
    assert sfn.wait(answer.json()["jobId"])["status"] == "SUCCEEDED"


def test_body_size_limits(me, sfn):
    before = sfn.newest()
    padding = 256 * 1024 - len(json.dumps({"script": "#!/bin/sh\n"}))
    at_limit = json.dumps({"script": "#!/bin/sh\n" + "#" * padding}).encode()
    assert len(at_limit) == 256 * 1024
    assert "script" in api_error(me.post("/jobs", data=at_limit, headers=JSON), 422, "ValidationError")["message"]
    over = at_limit[:-2] + b'#"}'
    api_error(me.post("/jobs", data=over, headers=JSON), 413, "PayloadTooLarge")
    api_error(me.request("GET", "/jobs", data=over, headers=JSON), 413, "PayloadTooLarge")
    beyond_gateway = me.post("/jobs", data=b"{" + b" " * (10 * 1024 * 1024) + b"}", headers=JSON)
    assert (beyond_gateway.status_code, beyond_gateway.json()) == (413, {"message": "Request Too Long"})
    assert sfn.newest() == before


# -- routes and methods -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/jobs/x/y/z", "/JOBS", "/%2e%2e/%2e%2e/etc/passwd", "/jobs/%00/output/x", "/openapi.json/x", "/v1/jobs"],
)
def test_unknown_routes_are_404(me, path):
    answer = me.get(path)
    api_error(answer, 404, "NotFound")
    assert "root:" not in answer.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/jobs", {"GET", "POST"}),
        ("PATCH", "/jobs", {"GET", "POST"}),
        ("OPTIONS", "/jobs", {"GET", "POST"}),
        ("POST", "/jobs/0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10", {"GET", "DELETE"}),
        ("PUT", "/jobs/0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10/output", {"GET"}),
        ("DELETE", "/openapi.json", {"GET"}),
        ("GET", "/inputs", {"POST"}),
        ("PUT", "/inputs", {"POST"}),
    ],
)
def test_wrong_methods_are_405_with_allow(me, starts_nothing, method, path, allowed):
    answer = me.request(method, path, data=SPEC, headers=JSON)
    api_error(answer, 405, "MethodNotAllowed")
    assert set(answer.headers["Allow"].split(", ")) == allowed


# -- listing ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=99999999999999999999999",
        "limit=1.5",
        "limit=true",
        "limit=false",
        "limit=",
        "limit=1e2",
        "limit=%D9%A1",  # an Arabic-Indic one
        "limit=1&limit=2",
        "nextToken=" + "A" * 1025,
    ],
)
def test_absurd_list_parameters_are_422(me, query):
    api_error(me.get("/jobs?" + query), 422, "ValidationError")


def token(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "next_token",
    [
        "-1",
        "%00",
        token([1, 2]),
        token({"createdAt": "yesterday", "jobId": "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"}),
        token({"createdAt": "2026-11-25T10:00:00.000Z", "jobId": "../../x"}),
        token({"createdAt": 1, "jobId": 2}),
        token("just a string"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_tokens_of_another_shape_are_400(me, next_token):
    api_error(me.get("/jobs", params={"nextToken": next_token}), 400, "InvalidNextToken")


@pytest.mark.parametrize("status", ["RUNNING' OR '1'='1", "RUNNING\n", "running", "*"])
def test_status_filter_takes_only_known_statuses(me, status):
    api_error(me.get("/jobs", params={"status": status}), 400, "BadRequest")


def listed(client, **params) -> list[str]:
    answer = client.get("/jobs", params={"limit": 100, **params})
    assert answer.status_code == 200, answer.text
    return [job["jobId"] for job in answer.json()["jobs"]]


def test_a_token_pointing_at_another_callers_jobs_reveals_none(me, other, jobs):
    mine, theirs = set(listed(me)), set(listed(other))
    assert set(jobs["mine"]) <= mine and set(jobs["theirs"]) <= theirs and not mine & theirs
    their_page = other.get("/jobs", params={"limit": 1}).json()
    assert their_page["nextToken"]
    their_view = other.get(f"/jobs/{jobs['theirs'][-1]}").json()
    forged = [
        their_page["nextToken"],  # a token the API gave to the other caller
        token({"createdAt": their_view["createdAt"], "jobId": their_view["jobId"]}),
        token({"createdAt": their_view["createdAt"], "jobId": their_view["jobId"], "owner": LOCAL_OTHER.arn}),
    ]
    for next_token in forged:
        seen = set(listed(me, nextToken=next_token))
        assert seen <= mine and not seen & theirs, next_token


# -- other callers' jobs and other state machines ---------------------------------------------------------------------


def test_execution_arns_that_are_not_this_callers_jobs_are_404(cloud, me, jobs):
    theirs = jobs["theirs"][0]
    arn = execution_arn(cloud, jobs["mine"][0])
    references = [
        arn.replace(":slurm-job-api-local-jobs:", ":someone-elses:"),  # another state machine
        arn.replace(":123456789012:", ":210987654321:"),  # another account
        arn.replace(":us-east-1:", ":eu-west-1:"),  # another region
        execution_arn(cloud, theirs),  # another caller's job
        execution_arn(cloud, theirs + "_1"),  # a continuation of another caller's job
        arn + "/../" + theirs,
        arn.replace(jobs["mine"][0], "../" + theirs),
    ]
    for reference in references:
        encoded = quote(reference, safe="")
        for method, path in (
            ("GET", f"/jobs/{encoded}"),
            ("GET", f"/jobs/{encoded}/output"),
            ("DELETE", f"/jobs/{encoded}"),
        ):
            api_error(me.request(method, path), 404, "JobNotFound")
    assert me.get("/jobs/" + quote(arn, safe="")).status_code == 200  # the caller's own job, by its ARN


def test_another_callers_job_is_404_not_403_and_stays_untouched(sfn, me, other):
    theirs = submit(other, {"script": BENIGN_SCRIPT})
    for method, path in (("GET", f"/jobs/{theirs}"), ("GET", f"/jobs/{theirs}/output"), ("DELETE", f"/jobs/{theirs}")):
        api_error(me.request(method, path), 404, "JobNotFound")
    assert theirs not in listed(me) and theirs not in listed(me, status="SUBMITTING")
    sfn.wait(theirs)
    view = other.get(f"/jobs/{theirs}").json()
    assert view["cancelRequested"] is False and view["status"] == "COMPLETED"


# -- signatures -------------------------------------------------------------------------------------------------------


def signed_headers(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    principal: Principal = LOCAL_DEVELOPER,
    secret: str | None = None,
    region: str = "us-east-1",
    service: str = "execute-api",
    when: datetime.datetime | None = None,
) -> dict[str, str]:
    """The headers of a SigV4-signed request, with any part of the signature chosen by the test."""
    credentials = Credentials(principal.access_key_id, secret or principal.secret_access_key)
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    signer = SigV4Auth(credentials, service, region)
    request.context["timestamp"] = (when or datetime.datetime.now(datetime.UTC)).strftime(SIGV4_TIMESTAMP)
    signer._modify_request_before_signing(request)
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signer._inject_signature_to_request(request, signature)
    return dict(request.headers)


def test_unsigned_and_badly_signed_requests_are_403_from_the_gateway(cloud, sfn):
    url = cloud.api_url + "/jobs"
    other_key = Principal("AKIANOTAREALKEY00000", "x" * 40, "arn:aws:iam::123456789012:user/nobody")
    stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    good = signed_headers("POST", url, SPEC)
    attempts = {
        "unsigned": {"Content-Type": "application/json"},
        "wrong secret": signed_headers("POST", url, SPEC, secret="y" * 40),
        "unknown key": signed_headers("POST", url, SPEC, principal=other_key),
        "other path": signed_headers("POST", cloud.api_url + "/jobs/x", SPEC),
        "other method": signed_headers("GET", url, SPEC),
        "stale": signed_headers("POST", url, SPEC, when=stale),
        "other region": signed_headers("POST", url, SPEC, region="eu-west-1"),
        "other service": signed_headers("POST", url, SPEC, service="s3"),
        "session token": {**good, "X-Amz-Security-Token": "forged"},
        "garbage": {**good, "Authorization": "AWS4-HMAC-SHA256 garbage"},
        "basic": {**good, "Authorization": "Basic YWRtaW46YWRtaW4="},
    }
    before = sfn.newest()
    for name, headers in attempts.items():
        answer = requests.post(url, data=SPEC, headers=headers, timeout=30)
        assert answer.status_code == 403 and answer.json()["message"], (name, answer.text[:300])
    tampered = requests.post(url, data=SPEC.replace(b"true", b"id  "), headers=good, timeout=30)
    assert tampered.status_code == 403, tampered.text[:300]
    assert requests.post(url, data=SPEC, headers=good, timeout=30).status_code == 202  # the untampered original
    for path in ("/nothing-here", "/jobs/x/output"):
        assert requests.get(cloud.api_url + path, timeout=30).status_code == 403
    assert sfn.newest() != before  # only the good request started one
    newest = sfn.client.describe_execution(executionArn=sfn.newest())
    assert json.loads(newest["input"])["owner"] == LOCAL_DEVELOPER.arn


def test_a_signed_request_with_a_non_ascii_query_parameter_is_authenticated(me):
    """SigV4 sorts query parameters once encoded ("%C2%B3" before "limit"); the gateway must agree with clients."""
    assert me.get("/jobs", params={"limit": "5", "\u00b3": "x", "nextToken": ""}).status_code == 200


# -- Idempotency-Key --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("k" * 256, 422),
        ("", 400),
        ("a\x01b", 400),
        ("a\x7fb", 400),
        ("a\tb", 400),
        ("key é", 400),
        ("$(touch /tmp/sjapi-canary-idempotency)", 400),
    ],
)
def test_idempotency_key_abuse_is_refused(me, starts_nothing, key, status):
    answer = me.post("/jobs", data=SPEC, headers={**JSON, "Idempotency-Key": key.encode("latin-1")})
    assert answer.status_code == status, answer.text[:300]
    assert "dempotency" in answer.json()["message"]


def test_the_longest_idempotency_key_works_and_replays(sfn, me):
    key = {"Idempotency-Key": "k" * 255}
    first = me.post("/jobs", data=SPEC, headers={**JSON, **key})
    again = me.post("/jobs", data=SPEC, headers={**JSON, **key})
    assert first.status_code == again.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"] and again.headers["Idempotent-Replayed"] == "true"
    sfn.wait(first.json()["jobId"])
