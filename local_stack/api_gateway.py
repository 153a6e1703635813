"""A local stand-in for the template's REST API (API Gateway, Lambda proxy integration, AWS_IAM authorization).

moto's API Gateway is a control plane only, so this HTTP server on 127.0.0.1 plays the data plane for the one
``AWS::Serverless::Api`` of the template, mounted under its stage like the real URL
(``https://<api-id>.execute-api.<region>.amazonaws.com/<stage>/...`` becomes ``http://127.0.0.1:<port>/<stage>/...``):

- routes come from the functions' ``Api`` events. Like API Gateway, the most specific resource wins: at each path
  level a literal segment beats ``{name}``, which beats the greedy ``{proxy+}``; the resource is chosen from the path
  alone, then the method (or ``ANY``). No resource or no method: 403 ``Missing Authentication Token``;
- AWS_IAM authorization: a SigV4 signature (service ``execute-api``) from a key in the principals table, verified
  with botocore; failures answer 403 with API Gateway's messages (:mod:`local_stack.sigv4`);
- the request becomes the REST proxy event (version 1.0 shape): ``path`` keeps the client's percent-encoding,
  ``pathParameters`` and ``queryStringParameters`` are decoded; a body that is not UTF-8, or whose Content-Type is one
  of the API's BinaryMediaTypes, is passed base64-encoded;
- the integration is the function run by :class:`~local_stack.lambda_runtime.LambdaRuntime`; a function error or a
  malformed proxy response is a 502 ``Internal server error``, no answer within 29 s a 504;
- bodies over 10 MB: 413. Chunked request bodies are not supported (411);
- load: the server queues up to ``listen_backlog`` connections (1024) and serves ``max_requests_in_flight`` requests
  (16) at once; a request beyond those is answered at once with API Gateway's throttling answer, 429
  ``{"message": "Too Many Requests"}``, plus a ``Retry-After`` header (this stand-in's addition), so that a burst
  is answered, never dropped. A throttled function (the local runtime's ``TooManyRequestsException``:
  all its execution environments stayed busy) is a 500 ``Internal server error``, as API Gateway answers when a Lambda
  integration is throttled ("How do I troubleshoot issues for API Gateway endpoints that integrate with Lambda?",
  https://repost.aws/knowledge-center/api-gateway-internal-server-error: "If the backend service throttled because
  of a high number of requests, then the API Gateway API might return an Internal server error").

The principals table maps access key ids to :class:`~local_stack.sigv4.Principal`. The defaults are two local users
whose keys are published here on purpose: they exist only in this emulator and authenticate nothing on AWS.
"""

import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

import requests

from local_stack.lambda_runtime import InvocationResult, LambdaRuntime, TooManyRequests
from local_stack.sigv4 import (
    AuthenticationFailed,
    Principal,
    missing_token,
    signed_session,
    verify_request,
)
from local_stack.template_model import ApiRoute, TemplateError, TemplateModel

logger = logging.getLogger(__name__)

# Local-only credentials, published on purpose: they are not AWS keys and authenticate nothing outside this emulator.
LOCAL_DEVELOPER = Principal(
    access_key_id="AKIALOCALDEVELOPER01",
    secret_access_key="local-developer-secret-key-not-for-aws-000",  # noqa: S106 - public, local-only
    arn="arn:aws:iam::123456789012:user/local-developer",
)
LOCAL_OTHER = Principal(
    access_key_id="AKIALOCALOTHERUSER01",
    secret_access_key="local-other-secret-key-not-for-aws-0000000",  # noqa: S106 - public, local-only
    arn="arn:aws:iam::123456789012:user/local-other",
)
# Signs requests like the other two, but no caller mapping maps it: every route refuses it (403 CallerNotMapped).
LOCAL_UNMAPPED = Principal(
    access_key_id="AKIALOCALUNMAPPED001",
    secret_access_key="local-unmapped-secret-key-not-for-aws-000",  # noqa: S106 - public, local-only
    arn="arn:aws:iam::123456789012:user/local-unmapped",
)
# The caller of the example API events in events/ (`sam local invoke ApiFunction -e events/api-*.json`).
EVENTS_CALLER_ARN = "arn:aws:iam::123456789012:user/alice"
DEFAULT_PRINCIPALS: Mapping[str, Principal] = {
    principal.access_key_id: principal for principal in (LOCAL_DEVELOPER, LOCAL_OTHER, LOCAL_UNMAPPED)
}

# API Gateway quotas: https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_SECONDS = 29.0
# This stand-in's own bounds (API Gateway's are its account and stage throttling, 10,000 requests per second).
MAX_REQUESTS_IN_FLIGHT = 16
LISTEN_BACKLOG = 1024
RETRY_AFTER_SECONDS = 1
_MAX_DISCARDED_BYTES = 4 * MAX_PAYLOAD_BYTES
PROXY_RESPONSE_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})
IAM_AUTHORIZER = "AWS_IAM"
NO_AUTHORIZER = "NONE"
# Headers of the client request that the stand-in does not forward, as a proxy would not.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"})


@dataclass(frozen=True)
class Route:
    """A resource path template split into segments, the method (or ANY), the function and the authorizer."""

    resource: str
    segments: tuple[str, ...]
    method: str
    function_logical_id: str
    authorizer: str | None


def _segment_kind(segment: str) -> int:
    """Sort key: literal (0) before ``{name}`` (1) before ``{name+}`` (2)."""
    if segment.startswith("{") and segment.endswith("+}"):
        return 2
    if segment.startswith("{") and segment.endswith("}"):
        return 1
    return 0


class RouteTable:
    """API Gateway's resource selection over the routes of one API."""

    def __init__(self, routes: list[Route]) -> None:
        self._resources: dict[tuple[str, ...], dict[str, Route]] = {}
        for route in routes:
            methods = self._resources.setdefault(route.segments, {})
            if route.method in methods:
                raise TemplateError(f"two Api events for {route.method} {route.resource}")
            methods[route.method] = route

    def match(self, raw_segments: list[str], method: str) -> tuple[Route, dict[str, str]] | None:
        """The route for a request path (percent-encoded segments, stage removed) and method, with path parameters."""
        matched = self._match_resource(raw_segments)
        if matched is None:
            return None
        segments, parameters = matched
        methods = self._resources[segments]
        route = methods.get(method) or methods.get("ANY")
        return (route, parameters) if route is not None else None

    def _match_resource(self, raw_segments: list[str]) -> tuple[tuple[str, ...], dict[str, str]] | None:
        candidates = []
        for segments in self._resources:
            parameters = _bind(segments, raw_segments)
            if parameters is not None:
                candidates.append((tuple(_segment_kind(segment) for segment in segments), segments, parameters))
        if not candidates:
            return None
        _, segments, parameters = min(candidates, key=lambda candidate: candidate[0])
        return segments, parameters


def _bind(template: tuple[str, ...], raw_segments: list[str]) -> dict[str, str] | None:
    """Path parameters if the resource template matches the request segments, else None."""
    parameters: dict[str, str] = {}
    for index, segment in enumerate(template):
        kind = _segment_kind(segment)
        if kind == 2:
            rest = raw_segments[index:]
            if not rest or not "".join(rest):
                return None
            parameters[segment[1:-2]] = unquote("/".join(rest))
            return parameters
        if index >= len(raw_segments) or not raw_segments[index]:
            return None
        value = unquote(raw_segments[index])
        if kind == 1:
            parameters[segment[1:-1]] = value
        elif value != segment:
            return None
    return parameters if len(template) == len(raw_segments) else None


def _split_path(path: str) -> list[str]:
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


def routes_for(model: TemplateModel, api_logical_id: str) -> list[Route]:
    """The routes of one API from the functions' Api events."""
    routes = []
    for function in model.functions.values():
        for event in function.api_routes:
            if event.api_logical_id == api_logical_id:
                routes.append(_route(event))
    return routes


def _route(event: ApiRoute) -> Route:
    return Route(
        resource=event.path,
        segments=tuple(_split_path(event.path)),
        method=event.method,
        function_logical_id=event.function_logical_id,
        authorizer=event.authorizer,
    )


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _gateway_error(status: int, message: str, error_type: str = "") -> GatewayResponse:
    headers = [("Content-Type", "application/json")]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return GatewayResponse(status, headers, json.dumps({"message": message}).encode())


def _internal_error() -> GatewayResponse:
    return _gateway_error(502, "Internal server error")


def _throttled_integration() -> GatewayResponse:
    """A Lambda integration whose function was throttled (see the module docstring)."""
    return _gateway_error(500, "Internal server error")


def _too_many_requests() -> GatewayResponse:
    """API Gateway's throttling answer, with a Retry-After."""
    throttled = _gateway_error(429, "Too Many Requests")
    return GatewayResponse(
        throttled.status, [*throttled.headers, ("Retry-After", str(RETRY_AFTER_SECONDS))], throttled.body
    )


def proxy_response(result: Any) -> GatewayResponse:
    """Map a Lambda proxy integration result to the HTTP response; malformed results are a 502, as on AWS."""
    if not isinstance(result, dict) or not set(result) <= PROXY_RESPONSE_KEYS:
        logger.warning("malformed Lambda proxy response (not an object of %s): %r", sorted(PROXY_RESPONSE_KEYS), result)
        return _internal_error()
    status = result.get("statusCode", 200)
    headers = result.get("headers") or {}
    multi_value_headers = result.get("multiValueHeaders") or {}
    body = result.get("body")
    valid = (
        isinstance(status, int)
        and 100 <= status <= 599
        and isinstance(headers, dict)
        and isinstance(multi_value_headers, dict)
        and all(isinstance(values, list) for values in multi_value_headers.values())
        and (body is None or isinstance(body, str))
    )
    if not valid:
        logger.warning("malformed Lambda proxy response: %r", result)
        return _internal_error()
    payload = (body or "").encode()
    if result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body or "", validate=True)
        except binascii.Error:
            logger.warning("Lambda proxy response isBase64Encoded but the body is not base64")
            return _internal_error()
    pairs = [(str(name), str(value)) for name, values in multi_value_headers.items() for value in values]
    multi_names = {name.lower() for name, _ in pairs}
    pairs += [(str(name), str(value)) for name, value in headers.items() if str(name).lower() not in multi_names]
    if not any(name.lower() == "content-type" for name, _ in pairs):
        pairs.append(("Content-Type", "application/json"))
    return GatewayResponse(status, pairs, payload)


class LocalApiGateway:
    """The HTTP server; use as a context manager or call :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        model: TemplateModel,
        runtime: LambdaRuntime,
        *,
        principals: Mapping[str, Principal] = DEFAULT_PRINCIPALS,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
        max_requests_in_flight: int | None = MAX_REQUESTS_IN_FLIGHT,
        listen_backlog: int = LISTEN_BACKLOG,
    ) -> None:
        """``max_requests_in_flight`` None: no bound (every request waits for its integration)."""
        self._api = model.api
        self._in_flight = None if max_requests_in_flight is None else threading.BoundedSemaphore(max_requests_in_flight)
        self._listen_backlog = listen_backlog
        self._region = model.region
        self._account_id = model.account_id
        self._runtime = runtime
        self._principals = dict(principals)
        self._integration_timeout = integration_timeout
        routes = routes_for(model, self._api.logical_id)
        self._routes = RouteTable(routes)
        self._binary_media_types = tuple(media_type.replace("~1", "/") for media_type in self._api.binary_media_types)
        for route in routes:
            authorizer = route.authorizer or self._api.default_authorizer or NO_AUTHORIZER
            if authorizer not in (IAM_AUTHORIZER, NO_AUTHORIZER):
                raise TemplateError(f"{route.method} {route.resource}: authorizer {authorizer!r} is not emulated")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The stage's base URL, e.g. ``http://127.0.0.1:8123/v1``."""
        if self._server is None:
            raise RuntimeError("the local API is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{self._api.stage_name}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self), bind_and_activate=False)
        self._server.request_queue_size = self._listen_backlog  # the listen() backlog (the class's default is 5)
        try:
            self._server.server_bind()
            self._server.server_activate()
        except OSError:
            self._server.server_close()
            self._server = None
            raise
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="local-api-gateway", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "LocalApiGateway":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- request handling -------------------------------------------------------------------------------------

    def admit(
        self, method: str, target: str, headers: Message, body: bytes, source_ip: str
    ) -> tuple[GatewayResponse, str]:
        """:meth:`handle` the request if fewer than ``max_requests_in_flight`` are, else answer 429 at once."""
        if self._in_flight is None:
            return self.handle(method, target, headers, body, source_ip)
        if not self._in_flight.acquire(blocking=False):
            return _too_many_requests(), str(uuid.uuid4())
        try:
            return self.handle(method, target, headers, body, source_ip)
        finally:
            self._in_flight.release()

    def handle(
        self, method: str, target: str, headers: Message, body: bytes, source_ip: str
    ) -> tuple[GatewayResponse, str]:
        """Answer one request; also returns the request id (header ``x-amzn-RequestId``)."""
        request_id = str(uuid.uuid4())
        path, _, query = target.partition("?")
        segments = _split_path(path)
        matched = self._routes.match(segments[1:], method) if segments[:1] == [self._api.stage_name] else None
        if matched is None:
            no_route = missing_token()
            return _gateway_error(403, no_route.message, no_route.error_type), request_id
        route, path_parameters = matched
        principal = None
        if (route.authorizer or self._api.default_authorizer) == IAM_AUTHORIZER:
            try:
                principal = verify_request(
                    method=method,
                    target=target,
                    headers=headers,
                    body=body,
                    principals=self._principals,
                    region=self._region,
                )
            except AuthenticationFailed as failure:
                return _gateway_error(403, failure.message, failure.error_type), request_id
        event = self._event(
            route, method, path, query, path_parameters, headers, body, source_ip, principal, request_id
        )
        result = self._integrate(route.function_logical_id, event)
        if result is None:
            return _gateway_error(504, "Endpoint request timed out"), request_id
        if isinstance(result, TooManyRequests):
            return _throttled_integration(), request_id
        if result.function_error is not None:
            return _internal_error(), request_id
        return proxy_response(result.json()), request_id

    def _integrate(self, function_logical_id: str, event: dict[str, Any]) -> InvocationResult | TooManyRequests | None:
        """Invoke the function; None if it has not answered within the integration timeout (it runs on)."""
        answer: list[InvocationResult | TooManyRequests] = []
        done = threading.Event()

        def invoke() -> None:
            try:
                answer.append(self._runtime.invoke(function_logical_id, event))
            except TooManyRequests as throttled:
                answer.append(throttled)
            finally:
                done.set()

        threading.Thread(target=invoke, name=f"api-integration-{function_logical_id}", daemon=True).start()
        if not done.wait(self._integration_timeout) or not answer:
            return None
        return answer[0]

    def _event(
        self,
        route: Route,
        method: str,
        full_path: str,
        query: str,
        path_parameters: dict[str, str],
        headers: Message,
        body: bytes,
        source_ip: str,
        principal: Principal | None,
        request_id: str,
    ) -> dict[str, Any]:
        """The REST API Lambda proxy event (payload format 1.0)."""
        stage = self._api.stage_name
        path = full_path[len(stage) + 1 :] or "/"
        multi_headers: dict[str, list[str]] = {}
        for name, value in headers.items():
            if name.lower() not in _HOP_BY_HOP:
                multi_headers.setdefault(name, []).append(value)
        multi_query: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            multi_query.setdefault(name, []).append(value)
        now = datetime.now(UTC)
        text, is_base64 = self._event_body(body, headers.get("Content-Type", ""))
        user_agent = headers.get("User-Agent")
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": _stable_id(route.resource),
                "resourcePath": route.resource,
                "httpMethod": method,
                "extendedRequestId": _stable_id(request_id),
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "path": full_path,
                "accountId": self._account_id,
                "protocol": "HTTP/1.1",
                "stage": stage,
                "domainPrefix": self._api.api_id,
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "requestId": request_id,
                "identity": {
                    "cognitoIdentityPoolId": None,
                    "accountId": principal.account_id if principal else None,
                    "cognitoIdentityId": None,
                    "caller": principal.unique_id if principal else None,
                    "sourceIp": source_ip,
                    "principalOrgId": None,
                    "accessKey": principal.access_key_id if principal else None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                    "userArn": principal.arn if principal else None,
                    "userAgent": user_agent,
                    "user": principal.unique_id if principal else None,
                },
                "domainName": headers.get("Host", ""),
                "apiId": self._api.api_id,
            },
            "body": text,
            "isBase64Encoded": is_base64,
        }

    def _event_body(self, body: bytes, content_type: str) -> tuple[str | None, bool]:
        if not body:
            return None, False
        media_type = content_type.split(";", 1)[0].strip().lower()
        if not any(fnmatch(media_type, pattern.lower()) for pattern in self._binary_media_types):
            try:
                return body.decode("utf-8"), False
            except UnicodeDecodeError:
                pass
        return base64.b64encode(body).decode(), True


def _stable_id(text: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, text).hex[:10]


def _handler_class(gateway: LocalApiGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "LocalApiGateway"

        def _serve(self) -> None:
            started = time.monotonic()
            if self.headers.get("Transfer-Encoding"):
                self._send(_gateway_error(411, "Length Required"), str(uuid.uuid4()), close=True)
                return
            length_header = self.headers.get("Content-Length") or "0"
            if not length_header.isdigit():
                self._send(_gateway_error(400, "Bad Request"), str(uuid.uuid4()), close=True)
                return
            length = int(length_header)
            if length > MAX_PAYLOAD_BYTES:
                self._discard_body(length)
                self._send(_gateway_error(413, "Request Too Long"), str(uuid.uuid4()), close=True)
                return
            body = self.rfile.read(length) if length else b""
            try:
                response, request_id = gateway.admit(
                    self.command, self.path, self.headers, body, self.client_address[0]
                )
            except Exception:
                logger.exception("local API failed on %s %s", self.command, self.path)
                response, request_id = _internal_error(), str(uuid.uuid4())
            self._send(response, request_id)
            logger.debug("%s %s -> %s in %.3fs", self.command, self.path, response.status, time.monotonic() - started)

        def _discard_body(self, length: int) -> None:
            """Read a refused body (when not absurdly large) so the client gets to read the answer."""
            if length > _MAX_DISCARDED_BYTES:
                return
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    return
                length -= len(chunk)

        def _send(self, response: GatewayResponse, request_id: str, close: bool = False) -> None:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("x-amzn-RequestId", request_id)
            self.send_header("Content-Length", str(len(response.body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("local API: " + format, *args)

    return Handler


class ApiClient:
    """``requests`` with SigV4 signing and the API's base URL: ``ApiClient(url).get("/jobs/abc")``.

    Works against the local API or a deployed one (given real credentials as a :class:`Principal`).
    """

    def __init__(self, base_url: str, principal: Principal = LOCAL_DEVELOPER, region: str = "us-east-1") -> None:
        self.base_url = base_url.rstrip("/")
        self.principal = principal
        self.session = signed_session(principal, region)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", INTEGRATION_TIMEOUT_SECONDS + 5)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)
