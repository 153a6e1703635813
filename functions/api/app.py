"""HTTP API of Slurm Job API: API Gateway (REST, AWS_IAM) → this function (Powertools event handler).

Routes are thin: they validate input (Pydantic, via the resolver's validation), take the caller from the IAM
request context, and delegate to slurm_job_api.jobs_api.
"""

import json
from email.message import Message
from email.utils import collapse_rfc2231_value
from functools import cache
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Route
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from slurm_job_api import aws_clients, services
from slurm_job_api.api_models import (
    CancelAccepted,
    ErrorBody,
    InputUpload,
    InputUploadRequest,
    JobAccepted,
    JobList,
    JobLogs,
    JobOutput,
    JobView,
)
from slurm_job_api.caller_mapping import Caller
from slurm_job_api.jobs_api import (
    LOGS_OFFSET_MAX,
    LOGS_PAGE_MAX,
    LOGS_PAGE_MIN,
    LOGS_TASK_ID_MAX,
    OUTPUT_PAGE_MAX,
    OUTPUT_PAGE_SIZE,
    ApiError,
    JobsApi,
    dump,
)
from slurm_job_api.observability import logger, metrics, tracer
from slurm_job_api.settings import settings
from slurm_job_api.spec import JobSpec

MAX_BODY_BYTES = 256 * 1024
# The order of the methods in an Allow header: the order RFC 9110 section 9.3 defines them in.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")

app = APIGatewayRestResolver(enable_validation=True)


class BodyNotAnObject(ApiError):
    """A body that is JSON but not an object: the resolver would read a list as its first item."""

    status, code = 422, "ValidationError"


JobReference = Annotated[
    str,
    Path(
        alias="jobId",
        description="A job id, or the (URL-encoded) ARN of the job's Step Functions execution",
        max_length=512,
    ),
]


def _doc(description: str, model: type) -> dict:
    """An OpenAPI response entry with a JSON body of `model`."""
    return {"description": description, "content": {"application/json": {"model": model}}}


# Declared on every route: the resolver's own 422 entry describes a body this API never sends (see invalid_request).
INVALID_REQUEST = {422: _doc("Invalid parameters or body: the message names each field", ErrorBody)}


def _error(status: int, code: str, message: str, details: list | None = None, headers: dict | None = None) -> Response:
    body = ErrorBody(code=code, message=message, details=details).model_dump(by_alias=True, exclude_none=True)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


@cache
def jobs_api() -> JobsApi:
    return JobsApi(
        settings=settings(),
        store=services.job_store(),
        bucket=services.results_bucket(),
        stepfunctions=aws_clients.client("stepfunctions"),
        head_node=services.head_node(),
        caller_mappings=services.caller_mappings(),
    )


def principal_of(event: dict) -> str:
    """The IAM principal that signed the request (API Gateway's AWS_IAM authorizer puts it in the context)."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    principal = identity.get("userArn") or identity.get("caller")
    if not principal or not isinstance(principal, str):
        raise ApiError("the request carries no IAM identity")
    return principal


def caller() -> Caller:
    """This request's caller and the cluster user its jobs run as (resolved by lambda_handler before any route)."""
    return app.context["caller"]


def _remaining_seconds() -> float:
    """The time this invocation has left (30 s, the function's timeout, outside Lambda)."""
    return app.lambda_context.get_remaining_time_in_millis() / 1000 if app.lambda_context else 30.0


def _base_path() -> str:
    """The stage prefix of this request's URL (/v1), so that Location works relative to the host."""
    context_path = app.current_event.request_context.path or ""
    path = app.current_event.path
    return context_path[: -len(path)] if path and context_path.endswith(path) else ""


@app.post(
    "/jobs",
    summary="Submit a job",
    responses={
        202: _doc("Accepted: the job will be submitted to Slurm", JobAccepted),
        400: _doc("Malformed JSON, or an Idempotency-Key that is not 1 to 255 printable ASCII characters", ErrorBody),
        413: _doc("The body is over 256 KiB", ErrorBody),
        415: _doc("The body is not Content-Type: application/json", ErrorBody),
        422: _doc("Invalid job spec (the message names the field), or the key reused for another spec", ErrorBody),
        503: _doc("The job could not be started: retry with the same Idempotency-Key", ErrorBody),
    },
)
@tracer.capture_method
def submit_job(
    spec: JobSpec,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="idempotency-key",
            description="Makes retries safe: the same key from the same caller returns the same job",
            max_length=255,
        ),
    ] = None,
) -> Response[JobAccepted]:
    if not isinstance(app.current_event.json_body, dict):
        raise BodyNotAnObject("body: the job spec must be a JSON object")
    accepted, replayed = jobs_api().submit(caller(), spec, idempotency_key)
    accepted.location = _base_path() + accepted.location
    headers = {"Location": accepted.location}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=dump(accepted), headers=headers)


@app.post(
    "/inputs",
    summary="A presigned PUT URL for a new script object under your own inputs prefix",
    responses={
        200: _doc("The new key (pass it as scriptS3Key) and its upload URL, valid for 15 minutes", InputUpload),
        400: _doc("Malformed JSON", ErrorBody),
        415: _doc("A body that is not Content-Type: application/json", ErrorBody),
        **INVALID_REQUEST,
    },
)
@tracer.capture_method
def create_input_upload(request: InputUploadRequest | None = None) -> InputUpload:
    if app.current_event.body and not isinstance(app.current_event.json_body, dict):
        raise BodyNotAnObject('body: must be a JSON object, e.g. {"fileName": "run.sh"}')
    file_name = (request or InputUploadRequest()).file_name
    return jobs_api().new_input_upload(caller().owner, file_name)


@app.get(
    "/jobs",
    summary="List your jobs, newest first",
    responses={
        200: _doc("Your jobs, newest first", JobList),
        400: _doc("An unknown status, or a nextToken this API did not give out", ErrorBody),
        **INVALID_REQUEST,
    },
)
@tracer.capture_method
def list_jobs(
    status: Annotated[str | None, Query(description="Only jobs with this status", max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page")] = 20,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=1024)] = None,
) -> JobList:
    return jobs_api().list(caller().owner, status=status, limit=limit, next_token=next_token)


@app.get(
    "/jobs/<jobId>",
    summary="A job's status",
    responses={200: _doc("The job", JobView), 404: _doc("No such job", ErrorBody), **INVALID_REQUEST},
)
@tracer.capture_method
def get_job(job_reference: JobReference) -> JobView:
    return jobs_api().describe(caller().owner, job_reference)


@app.delete(
    "/jobs/<jobId>",
    summary="Cancel a job",
    responses={
        202: _doc("Cancellation requested", CancelAccepted),
        404: _doc("No such job", ErrorBody),
        409: _doc("The job already ended", ErrorBody),
        **INVALID_REQUEST,
    },
)
@tracer.capture_method
def cancel_job(job_reference: JobReference) -> Response[CancelAccepted]:
    accepted = jobs_api().cancel(caller().owner, job_reference, _remaining_seconds())
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=dump(accepted))


@app.get(
    "/jobs/<jobId>/output",
    summary="Presigned links to the job's stdout, stderr, outputs and result.json",
    responses={
        200: _doc("One page of presigned links, valid for 15 minutes", JobOutput),
        400: _doc("A nextToken this API did not give out for this job", ErrorBody),
        404: _doc("No such job", ErrorBody),
        409: _doc("Not collected yet", ErrorBody),
        **INVALID_REQUEST,
    },
)
@tracer.capture_method
def job_output(
    job_reference: JobReference,
    limit: Annotated[int, Query(ge=1, le=OUTPUT_PAGE_MAX, description="Files per page")] = OUTPUT_PAGE_SIZE,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=1024)] = None,
) -> JobOutput:
    return jobs_api().output(caller().owner, job_reference, limit=limit, next_token=next_token)


@app.get(
    "/jobs/<jobId>/logs",
    summary="A page of the job's stdout or stderr, also while it runs",
    responses={
        200: _doc("A page of the stream as UTF-8 text; pass nextOffset as offset for the next", JobLogs),
        404: _doc("No such job", ErrorBody),
        422: _doc(
            "Invalid parameters (the message names each), or a taskId that does not fit the job: required for an "
            "array job and one of its tasks, refused for any other",
            ErrorBody,
        ),
        503: _doc("The cluster cannot be reached now: retry after Retry-After seconds", ErrorBody),
    },
)
@tracer.capture_method
def job_logs(
    job_reference: JobReference,
    stream: Annotated[Literal["stdout", "stderr"], Query(description="Which of the job's streams")] = "stdout",
    offset: Annotated[int, Query(ge=0, le=LOGS_OFFSET_MAX, description="Where the page starts, in bytes")] = 0,
    limit: Annotated[
        int, Query(ge=LOGS_PAGE_MIN, le=LOGS_PAGE_MAX, description="Bytes of the stream at most in the page")
    ] = LOGS_PAGE_MAX,
    task_id: Annotated[
        int | None, Query(alias="taskId", ge=0, le=LOGS_TASK_ID_MAX, description="The array task (array jobs only)")
    ] = None,
) -> JobLogs:
    return jobs_api().logs(
        caller().owner,
        job_reference,
        stream=stream,
        offset=offset,
        limit=limit,
        task_id=task_id,
        remaining_seconds=_remaining_seconds(),
    )


@app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
def openapi_document():
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="Slurm Job API", version="1.0.0"),
    )


@app.exception_handler(ApiError)
def api_error(error: ApiError) -> Response:
    return Response(
        status_code=error.status, content_type=content_types.APPLICATION_JSON, body=error.body(), headers=error.headers
    )


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response:
    details = [
        {"field": ".".join(str(part) for part in problem["loc"][1:] or problem["loc"]), "problem": problem["msg"]}
        for problem in error.errors()
    ]
    message = "; ".join(f"{item['field']}: {item['problem']}" for item in details) or "invalid request"
    return _error(422, "ValidationError", message, details)


@app.exception_handler(RequestUnsupportedContentType)
def unsupported_media_type(_: RequestUnsupportedContentType) -> Response:
    """A media type _precheck lets through but the resolver does not parse (it compares case-sensitively)."""
    return _error(415, "UnsupportedMediaType", "send the body as Content-Type: application/json")


@app.not_found
def not_found(_: NotFoundError) -> Response:
    path, method = app.current_event.path, app.current_event.http_method
    allowed = _allowed_methods(path)
    if allowed:
        return _error(
            405, "MethodNotAllowed", f"{method} is not allowed on {path}", headers={"Allow": ", ".join(allowed)}
        )
    return _error(404, "NotFound", f"no route {method} {path}")


def registered_routes(resolver: APIGatewayRestResolver) -> list[Route]:
    """The resolver's route table, in the order it matches requests: one Route (method, path, rule) per method.

    Powertools has no public way to list a resolver's routes; 3.x keeps them in `_static_routes` and
    `_dynamic_routes`. This is the one place that reads them: tests/static/test_api_routes.py fails if that changes.
    """
    return [*resolver._static_routes, *resolver._dynamic_routes]


def _allowed_methods(path: str) -> tuple[str, ...]:
    """The methods of the routes whose rule matches `path`, in METHOD_ORDER (empty: no route has this path)."""
    methods = {route.method for route in registered_routes(app) if route.rule.match(path)}
    return tuple(method for method in METHOD_ORDER if method in methods)


def _precheck(event: dict) -> tuple[int, str, str] | None:
    """(status, code, message) for requests the resolver should never see: oversized or non-JSON bodies."""
    body = event.get("body") or ""
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        return 413, "PayloadTooLarge", f"the request body must be at most {MAX_BODY_BYTES} bytes"
    if event.get("httpMethod") == "POST" and body:
        headers = {key.lower(): value for key, value in (event.get("headers") or {}).items()}
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return 415, "UnsupportedMediaType", "send the body as Content-Type: application/json"
        # JSON is UTF-8 (RFC 8259): a body declared in another charset is refused, not read as UTF-8 regardless.
        media_type = Message()
        media_type["content-type"] = content_type
        charsets = [
            str(collapse_rfc2231_value(value)).strip().lower()
            for name, value in media_type.get_params(failobj=[])[1:]
            if name == "charset"
        ]
        if any(charset != "utf-8" for charset in charsets):
            return 415, "UnsupportedMediaType", "send the body as UTF-8 JSON (charset=utf-8, or no charset)"
        try:
            json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            return 400, "MalformedJson", "the request body is not valid JSON"
    return None


@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # Who may call comes first, on every route (default deny: an unmapped caller learns nothing else and changes
    # nothing), then requests the resolver should never see.
    try:
        app.append_context(caller=jobs_api().caller(principal_of(event)))
    except ApiError as error:
        return _plain_response(error.status, error.body(), error.headers)
    problem = _precheck(event)
    if problem is not None:
        status, code, message = problem
        body = ErrorBody(code=code, message=message).model_dump(by_alias=True, exclude_none=True)
        return _plain_response(status, body)
    return app.resolve(event, context)


def _plain_response(status: int, body: dict, headers: dict[str, str] | None = None) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
