"""The local API Gateway: SigV4 (AWS_IAM) verification, routing, the proxy event, the response mapping, limits.

Route and signature checks run without a server; the end-to-end checks use one LocalCloud for the module, from
tests/local_stack/fixtures/cloud/template.yaml, whose ApiFunction echoes the event it receives.
"""

import base64
import datetime
import json
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local_stack.api_gateway import (
    LOCAL_DEVELOPER,
    LOCAL_OTHER,
    ApiClient,
    LocalApiGateway,
    Route,
    RouteTable,
    proxy_response,
)
from local_stack.cloud import LocalCloud
from local_stack.sigv4 import SIGNATURE_MISMATCH, AuthenticationFailed, Principal, verify_request

FIXTURES = Path(__file__).parent / "fixtures"
CLOUD_TEMPLATE = FIXTURES / "cloud" / "template.yaml"
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:jobs:3f2a"
PRINCIPALS = {principal.access_key_id: principal for principal in (LOCAL_DEVELOPER, LOCAL_OTHER)}


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(CLOUD_TEMPLATE, stack_name="api-test") as running:
        yield running


@pytest.fixture(scope="module")
def client(cloud: LocalCloud) -> ApiClient:
    return cloud.api_client(LOCAL_DEVELOPER)


def echoed_event(response: requests.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()["event"]


# ----- routing (no server) ------------------------------------------------------------------------------------------


def route(resource: str, method: str = "GET") -> Route:
    segments = tuple(part for part in resource.split("/") if part)
    return Route(resource, segments, method, "Fn", None)


ROUTES = RouteTable(
    [
        route("/items/{itemId}"),
        route("/items/special"),
        route("/items", "POST"),
        route("/{proxy+}", "ANY"),
        route("/items/{itemId}/files/{proxy+}"),
    ]
)


@pytest.mark.parametrize(
    ("path", "method", "resource", "parameters"),
    [
        ("/items/special", "GET", "/items/special", {}),  # a literal beats {itemId}
        ("/items/abc", "GET", "/items/{itemId}", {"itemId": "abc"}),
        ("/items/arn%3Aaws%3Ax", "GET", "/items/{itemId}", {"itemId": "arn:aws:x"}),
        ("/items", "POST", "/items", {}),
        ("/other/deep/path", "DELETE", "/{proxy+}", {"proxy": "other/deep/path"}),
        ("/items/a/files/x/y.txt", "GET", "/items/{itemId}/files/{proxy+}", {"itemId": "a", "proxy": "x/y.txt"}),
    ],
)
def test_the_most_specific_resource_wins(path: str, method: str, resource: str, parameters: dict[str, str]) -> None:
    matched = ROUTES.match([segment for segment in path.split("/") if segment], method)
    assert matched is not None
    assert (matched[0].resource, matched[1]) == (resource, parameters)


def test_a_resource_without_the_method_does_not_match() -> None:
    # The resource is chosen from the path alone; the greedy {proxy+} (ANY) does not take over its missing methods.
    assert ROUTES.match(["items", "abc"], "DELETE") is None
    assert ROUTES.match(["items"], "GET") is None
    assert RouteTable([route("/{proxy+}", "ANY")]).match([], "GET") is None  # {proxy+} needs a segment


# ----- signature verification (no server) ---------------------------------------------------------------------------


def signed_headers(principal: Principal, method: str, url: str, body: bytes = b"", **extra: str) -> Message:
    request = AWSRequest(method=method, url=url, data=body, headers=extra)
    SigV4Auth(Credentials(principal.access_key_id, principal.secret_access_key), "execute-api", "us-east-1").add_auth(
        request
    )
    headers = Message()
    headers["Host"] = "127.0.0.1:8080"
    for name, value in request.headers.items():
        headers[name] = value
    return headers


def verify(headers: Message, target: str = "/v1/items/a?x=1", body: bytes = b"", **kwargs: Any) -> Principal:
    return verify_request(
        method="GET", target=target, headers=headers, body=body, principals=PRINCIPALS, region="us-east-1", **kwargs
    )


def test_a_botocore_signature_is_accepted_and_names_the_principal() -> None:
    headers = signed_headers(LOCAL_OTHER, "GET", "http://127.0.0.1:8080/v1/items/a?x=1")
    assert verify(headers) == LOCAL_OTHER


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "/v1/items/b?x=1"}, SIGNATURE_MISMATCH),  # another path than the one signed
        ({"target": "/v1/items/a?x=2"}, SIGNATURE_MISMATCH),  # another query
        ({"body": b"smuggled"}, SIGNATURE_MISMATCH),  # another body
        ({"now": datetime.timedelta(minutes=6)}, "Signature expired"),  # checked 6 minutes after signing
    ],
)
def test_a_changed_request_or_an_old_signature_is_refused(change: dict[str, Any], message: str) -> None:
    headers = signed_headers(LOCAL_DEVELOPER, "GET", "http://127.0.0.1:8080/v1/items/a?x=1")
    if "now" in change:  # from the signing time, not from collection (the module may run minutes after it)
        change = {**change, "now": datetime.datetime.now(datetime.UTC) + change["now"]}
    with pytest.raises(AuthenticationFailed) as raised:
        verify(headers, **change)
    assert raised.value.message.startswith(message)


def test_unknown_keys_wrong_secrets_and_wrong_scopes_are_refused() -> None:
    url = "http://127.0.0.1:8080/v1/items/a?x=1"
    stranger = Principal("AKIAUNKNOWNKEY000000", "whatever", "arn:aws:iam::123456789012:user/stranger")
    with pytest.raises(AuthenticationFailed, match=r"^The security token included in the request is invalid\.$"):
        verify(signed_headers(stranger, "GET", url))
    impostor = Principal(LOCAL_DEVELOPER.access_key_id, "not-the-secret", LOCAL_DEVELOPER.arn)
    with pytest.raises(AuthenticationFailed, match=r"^The request signature we calculated does not match"):
        verify(signed_headers(impostor, "GET", url))
    wrong_service = signed_headers(LOCAL_DEVELOPER, "GET", url)
    wrong_service.replace_header("Authorization", wrong_service["Authorization"].replace("/execute-api/", "/lambda/"))
    with pytest.raises(AuthenticationFailed, match="Credential should be scoped to correct service: 'execute-api'"):
        verify(wrong_service)


def test_a_header_signed_but_not_sent_as_signed_is_refused() -> None:
    headers = signed_headers(
        LOCAL_DEVELOPER, "GET", "http://127.0.0.1:8080/v1/items/a?x=1", **{"X-Owner": "local-developer"}
    )
    headers.replace_header("X-Owner", "local-other")
    with pytest.raises(AuthenticationFailed, match=r"^The request signature we calculated does not match"):
        verify(headers)


# ----- proxy response mapping (no server) ---------------------------------------------------------------------------


def test_proxy_response_defaults_and_multi_value_headers() -> None:
    response = proxy_response({"statusCode": 202, "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": "{}"})
    assert response.status == 202
    assert response.headers == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Type", "application/json")]
    assert response.body == b"{}"


@pytest.mark.parametrize(
    "result",
    [
        "just a string",
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": "200"},
        {"statusCode": 200, "extra": 1},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    ],
)
def test_a_malformed_proxy_response_is_a_502(result: Any) -> None:
    response = proxy_response(result)
    assert (response.status, json.loads(response.body)) == (502, {"message": "Internal server error"})


# ----- end to end ---------------------------------------------------------------------------------------------------


def test_the_proxy_event_has_the_rest_api_shape(cloud: LocalCloud, client: ApiClient) -> None:
    event = echoed_event(client.get("/items/abc", headers={"X-Trace": "t1"}))
    assert set(event) == {
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    }
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/items/{itemId}", "/items/abc", "GET")
    assert event["pathParameters"] == {"itemId": "abc"}
    assert (event["queryStringParameters"], event["stageVariables"], event["body"]) == (None, None, None)
    assert event["isBase64Encoded"] is False
    assert event["headers"]["X-Trace"] == "t1" and event["multiValueHeaders"]["X-Trace"] == ["t1"]
    context = event["requestContext"]
    api = cloud.model.api
    assert (context["stage"], context["path"], context["resourcePath"]) == ("v1", "/v1/items/abc", "/items/{itemId}")
    assert (context["apiId"], context["accountId"], context["httpMethod"]) == (api.api_id, "123456789012", "GET")
    assert context["requestId"] and context["requestTimeEpoch"] > 0
    identity = context["identity"]
    assert identity["userArn"] == LOCAL_DEVELOPER.arn
    assert identity["accessKey"] == LOCAL_DEVELOPER.access_key_id
    assert identity["accountId"] == "123456789012"
    assert identity["caller"] == identity["user"] == LOCAL_DEVELOPER.unique_id
    assert identity["sourceIp"] == "127.0.0.1"
    assert identity["userAgent"].startswith("python-requests/")


def test_each_principal_is_its_own_caller(cloud: LocalCloud) -> None:
    event = echoed_event(cloud.api_client(LOCAL_OTHER).get("/items/abc"))
    assert event["requestContext"]["identity"]["userArn"] == LOCAL_OTHER.arn


def test_routing_end_to_end(client: ApiClient) -> None:
    assert echoed_event(client.get("/items/special"))["resource"] == "/items/special"
    created = client.post("/items", json={"name": "x"})
    assert created.status_code == 201
    assert echoed_event(created)["resource"] == "/items"
    proxied = echoed_event(client.delete("/somewhere/else"))
    assert (proxied["resource"], proxied["pathParameters"]) == ("/{proxy+}", {"proxy": "somewhere/else"})
    assert proxied["httpMethod"] == "DELETE"


def test_encoded_path_parameters_are_decoded_and_the_path_is_not(client: ApiClient) -> None:
    encoded = requests.utils.quote(EXECUTION_ARN, safe="")
    event = echoed_event(client.get(f"/items/{encoded}"))
    assert event["pathParameters"] == {"itemId": EXECUTION_ARN}
    assert event["path"] == f"/items/{encoded}"
    assert event["requestContext"]["path"] == f"/v1/items/{encoded}"


def test_query_strings_single_and_multi_value(client: ApiClient) -> None:
    event = echoed_event(client.get("/items/abc?state=RUNNING&state=PENDING&owner=a%20b&empty="))
    assert event["queryStringParameters"] == {"state": "PENDING", "owner": "a b", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "state": ["RUNNING", "PENDING"],
        "owner": ["a b"],
        "empty": [""],
    }


def test_text_and_binary_request_bodies(client: ApiClient) -> None:
    text = echoed_event(
        client.post(
            "/items", data=json.dumps({"script": "echo é"}).encode(), headers={"Content-Type": "application/json"}
        )
    )
    assert (json.loads(text["body"]), text["isBase64Encoded"]) == ({"script": "echo é"}, False)
    raw = bytes(range(256))
    binary = echoed_event(client.post("/items", data=raw, headers={"Content-Type": "application/octet-stream"}))
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == raw


def test_responses_are_mapped_from_the_proxy_result(client: ApiClient) -> None:
    echoed = client.get("/items/abc")
    assert echoed.headers["X-Single"] == "single"
    assert echoed.raw.headers.getlist("X-Echo") == ["one", "two"]
    assert echoed.headers["Content-Type"] == "application/json"  # API Gateway's default
    assert echoed.headers["x-amzn-RequestId"] == echoed.json()["event"]["requestContext"]["requestId"]
    binary = client.get("/items/abc?respond=binary")
    assert (binary.status_code, binary.content) == (200, bytes(range(256)))
    for respond in ("raise", "malformed"):
        failed = client.get(f"/items/abc?respond={respond}")
        assert (failed.status_code, failed.json()) == (502, {"message": "Internal server error"})


def test_an_integration_slower_than_the_timeout_is_a_504(cloud: LocalCloud) -> None:
    with LocalApiGateway(cloud.model, cloud.runtime, integration_timeout=0.3) as impatient:
        slow = ApiClient(impatient.url).get("/items/abc?respond=slowly")
        assert (slow.status_code, slow.json()) == (504, {"message": "Endpoint request timed out"})
        assert ApiClient(impatient.url).get("/items/abc").status_code == 200


def test_requests_without_a_valid_signature_are_refused(cloud: LocalCloud) -> None:
    calls_before = len(cloud.runtime.invocations)
    unsigned = requests.get(f"{cloud.api_url}/items/abc", timeout=10)
    assert (unsigned.status_code, unsigned.json()) == (403, {"message": "Missing Authentication Token"})
    stranger = Principal("AKIAUNKNOWNKEY000000", "whatever", "arn:aws:iam::123456789012:user/stranger")
    unknown = ApiClient(cloud.api_url, stranger).get("/items/abc")
    assert (unknown.status_code, unknown.json()) == (
        403,
        {"message": "The security token included in the request is invalid."},
    )
    impostor = Principal(LOCAL_DEVELOPER.access_key_id, "not-the-secret", LOCAL_DEVELOPER.arn)
    forged = ApiClient(cloud.api_url, impostor).get("/items/abc")
    assert forged.status_code == 403
    assert forged.json()["message"].startswith(SIGNATURE_MISMATCH)
    assert len(cloud.runtime.invocations) == calls_before  # the function was not called


def test_unknown_stage_or_resource_is_missing_authentication_token(cloud: LocalCloud, client: ApiClient) -> None:
    wrong_stage = ApiClient(cloud.api_url.rsplit("/", 1)[0] + "/prod").get("/items/abc")
    assert (wrong_stage.status_code, wrong_stage.json()) == (403, {"message": "Missing Authentication Token"})
    no_method = client.request("PUT", "/items/abc")  # /items/{itemId} has GET only
    assert (no_method.status_code, no_method.json()) == (403, {"message": "Missing Authentication Token"})


def test_bodies_over_10_mb_are_refused_with_413(client: ApiClient, cloud: LocalCloud) -> None:
    calls_before = len(cloud.runtime.invocations)
    too_big = client.post("/items", data=b"x" * (10 * 1024 * 1024 + 1))
    assert (too_big.status_code, too_big.json()) == (413, {"message": "Request Too Long"})
    assert len(cloud.runtime.invocations) == calls_before  # the function was not called


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_aws_sigv4_is_accepted(cloud: LocalCloud) -> None:
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--aws-sigv4",
            "aws:amz:us-east-1:execute-api",
            "--user",
            f"{LOCAL_OTHER.access_key_id}:{LOCAL_OTHER.secret_access_key}",
            "--header",
            "Content-Type: application/json",
            "--data",
            '{"from": "curl"}',
            f"{cloud.api_url}/items",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    event = json.loads(result.stdout)["event"]
    assert (event["body"], event["requestContext"]["identity"]["userArn"]) == ('{"from": "curl"}', LOCAL_OTHER.arn)


# ----- load: requests in flight, bursts, throttled functions ---------------------------------------------------------


def test_a_request_beyond_the_ones_in_flight_is_answered_429_at_once(cloud: LocalCloud) -> None:
    """One request is held inside the integration (an interceptor waits for the test), so the bound of one is full."""
    entered, release = threading.Event(), threading.Event()

    def hold(event: Any, context: Any, call_next: Any) -> Any:
        entered.set()
        assert release.wait(120), "the test never released the held request"
        return call_next(event, context)

    with LocalApiGateway(cloud.model, cloud.runtime, max_requests_in_flight=1) as gateway:
        held: list[requests.Response] = []
        with cloud.runtime.intercepted("ApiFunction", hold):
            holder = threading.Thread(target=lambda: held.append(ApiClient(gateway.url).get("/items/held")))
            holder.start()
            try:
                assert entered.wait(120), "the first request never reached its integration"
                refused = ApiClient(gateway.url).get("/items/refused")
            finally:
                release.set()
                holder.join(120)
        assert (refused.status_code, refused.json()) == (429, {"message": "Too Many Requests"})
        assert refused.headers["Retry-After"] == "1" and refused.headers["x-amzn-RequestId"]
        assert held[0].status_code == 200
        assert ApiClient(gateway.url).get("/items/after").status_code == 200  # the place was given back


def test_a_burst_of_200_concurrent_posts_is_answered_in_full(cloud: LocalCloud) -> None:
    """200 connections at once: each gets an answer (201 from the function, or 429 beyond the requests in flight),
    none is refused or dropped. The clients are made beforehand and released together, and the function has a warm
    environment first: its invocations then keep ending while the others wait, and none waits long enough to be
    throttled while the cold starts of the others are slow."""
    assert cloud.api_client(LOCAL_DEVELOPER).get("/items/warm-up").status_code == 200
    clients = [cloud.api_client(LOCAL_DEVELOPER) for _ in range(200)]
    together = threading.Barrier(len(clients))
    statuses: list[int] = []
    failures: list[BaseException] = []

    def post(client: ApiClient) -> None:
        together.wait()
        try:
            statuses.append(client.post("/items", json={"burst": True}, timeout=120).status_code)
        except requests.RequestException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=post, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(statuses) == 200 and set(statuses) <= {201, 429}, Counter(statuses)
    assert 201 in statuses


def test_a_throttled_function_is_an_internal_server_error(client: ApiClient) -> None:
    """ThrottledFunction reserves no concurrency: API Gateway answers a throttled Lambda integration with a 500."""
    throttled = client.get("/throttled")
    assert (throttled.status_code, throttled.json()) == (500, {"message": "Internal server error"})
