"""What the HTTP API does, independent of the HTTP layer (functions/api/app.py routes requests here)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from slurm_job_api import arns, errors, inputs, results
from slurm_job_api.api_models import (
    CancelAccepted,
    ErrorBody,
    InputUpload,
    JobAccepted,
    JobList,
    JobLogs,
    JobOutput,
    JobSummary,
    JobView,
    OutputFile,
)
from slurm_job_api.caller_mapping import Caller, InvalidMapping, cluster_user_of
from slurm_job_api.caller_mapping_store import CallerMappingStore
from slurm_job_api.clock import iso, utc_now
from slurm_job_api.head_node import HeadNode, ssm_wait_seconds
from slurm_job_api.head_node_program import MAX_FILE_OFFSET, MAX_TASK_ID, READ_OUTPUT_MAX_BYTES
from slurm_job_api.head_node_protocol import CancelRequest, ReadOutputRequest
from slurm_job_api.job_record import JobRecord
from slurm_job_api.job_store import JobStore
from slurm_job_api.log_pages import MAX_SEQUENCE_BYTES, page_text
from slurm_job_api.observability import logger
from slurm_job_api.progress import job_id_of_execution_name
from slurm_job_api.results import PRESIGNED_URL_SECONDS, ObjectRange, ResultsBucket
from slurm_job_api.settings import Settings
from slurm_job_api.spec import MAX_SCRIPT_BYTES, JobSpec
from slurm_job_api.statuses import ACTIVE_STATUSES, ALL_STATUSES, TERMINAL_STATUSES
from slurm_job_api.workflow_events import WorkflowInput

IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NEXT_TOKEN_CREATED_AT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# DELETE (scancel) and GET logs wait for the head node within API Gateway's 29 s integration timeout.
HEAD_NODE_WAIT_SECONDS = 20
HEAD_NODE_MARGIN_SECONDS = 5
# GET /jobs/{jobId}/output: links per page (each presigned URL is about 1 KB; an array job may have 2100 files).
OUTPUT_PAGE_SIZE = 100
OUTPUT_PAGE_MAX = 1000
# GET /jobs/{jobId}/logs: bytes per page, at most what one head-node reply carries (and by default); at least one
# UTF-8 sequence, so that every page can hold a character.
LOGS_PAGE_MAX = READ_OUTPUT_MAX_BYTES
LOGS_PAGE_MIN = MAX_SEQUENCE_BYTES
LOGS_OFFSET_MAX = MAX_FILE_OFFSET
LOGS_TASK_ID_MAX = MAX_TASK_ID
# How soon a caller may try again when the head node cannot be reached (Retry-After).
HEAD_NODE_RETRY_SECONDS = 5


class ApiError(Exception):
    """An error the API answers with {"code", "message"} and an HTTP status."""

    status = 400
    code = "BadRequest"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return ErrorBody(code=self.code, message=self.message).model_dump(by_alias=True, exclude_none=True)


class BadRequest(ApiError):
    status, code = 400, "BadRequest"


class InvalidNextToken(ApiError):
    status, code = 400, "InvalidNextToken"


class CallerNotMapped(ApiError):
    status, code = 403, "CallerNotMapped"


class JobNotFound(ApiError):
    status, code = 404, "JobNotFound"


class JobAlreadyFinished(ApiError):
    status, code = 409, "JobAlreadyFinished"


class OutputNotReady(ApiError):
    status, code = 409, "OutputNotReady"


class InvalidParameter(ApiError):
    """A parameter that is well-formed but does not fit the job (the resolver's own check answers the same code)."""

    status, code = 422, "ValidationError"


class IdempotencyKeyReused(ApiError):
    status, code = 422, "IdempotencyKeyReused"


class InvalidJobSpec(ApiError):
    status, code = 422, "InvalidJobSpec"


class ServiceUnavailable(ApiError):
    status, code = 503, "ServiceUnavailable"


def request_hash(spec: JobSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_json_dict(), sort_keys=True).encode("utf-8")).hexdigest()


def _encode_token(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decoded_token(token: str, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The values of `fields` in a token made by _encode_token; InvalidNextToken for anything else."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return tuple(data[name] for name in fields)
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidNextToken("nextToken is not a token this API gave out") from None


def encode_next_token(position: tuple[str, str]) -> str:
    return _encode_token({"createdAt": position[0], "jobId": position[1]})


def decode_next_token(token: str) -> tuple[str, str]:
    """The (createdAt, jobId) a page resumes after. The owner is never taken from the token."""
    created_at, job_id = _decoded_token(token, ("createdAt", "jobId"))
    if (
        not isinstance(created_at, str)
        or not isinstance(job_id, str)
        or not NEXT_TOKEN_CREATED_AT_RE.match(created_at)
        or not JOB_ID_RE.match(job_id)
    ):
        raise InvalidNextToken("nextToken is not a token this API gave out")
    return created_at, job_id


def encode_output_token(offset: int) -> str:
    return _encode_token({"fileOffset": offset})


def decode_output_token(token: str, total: int) -> int:
    """Where a page of GET /jobs/{jobId}/output resumes, within the `total` entries of the listing."""
    (offset,) = _decoded_token(token, ("fileOffset",))
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 < offset < total:
        raise InvalidNextToken("nextToken is not a token this API gave out for this job")
    return offset


@dataclass
class JobsApi:
    settings: Settings
    store: JobStore
    bucket: ResultsBucket
    stepfunctions: Any
    head_node: HeadNode
    caller_mappings: CallerMappingStore | None = None  # None: single-tenant, every caller runs as ClusterUser
    now: Callable[[], datetime] = utc_now

    # -- references ------------------------------------------------------------------------------------------------

    @property
    def state_machine_arn(self) -> str:
        if not self.settings.state_machine_arn:
            raise RuntimeError("STATE_MACHINE_ARN is not set for the API function")
        return self.settings.state_machine_arn

    def execution_arn(self, name: str) -> str:
        return arns.execution_arn(self.state_machine_arn, name)

    def job_id_of(self, reference: str) -> str:
        """A job id from a job id or an (URL-encoded) execution ARN of this API's state machine."""
        text = unquote(reference) if "%" in reference else reference
        if text.startswith("arn:"):
            prefix = self.execution_arn("")
            if not text.startswith(prefix):
                raise JobNotFound("no such job")
            text = job_id_of_execution_name(text[len(prefix) :])
        if not JOB_ID_RE.match(text):
            raise JobNotFound("no such job")
        return text

    def caller(self, principal: str) -> Caller:
        """The caller of a request, with the cluster user its jobs run as; CallerNotMapped (403) for a principal no
        mapping maps — on every route, before anything is read, recorded or started."""
        if self.caller_mappings is None:
            return Caller(owner=principal, cluster_user=self.settings.cluster_user)
        mapping = self.caller_mappings.find(principal)
        how = (
            f"an operator maps it with `scripts/caller-mappings add '{principal}' <cluster user>` "
            '(README, "Mapping callers to cluster users")'
        )
        if mapping is None:
            raise CallerNotMapped(f"{principal} is not mapped to a cluster user: {how}")
        try:
            return Caller(owner=principal, cluster_user=cluster_user_of(principal, mapping))
        except InvalidMapping as error:
            logger.warning("a caller's mapping gives no usable cluster user", extra={"mapping": mapping.principal})
            problem = f"the mapping {mapping.principal} gives {principal} no cluster user: {error}; {how}"
            raise CallerNotMapped(problem) from None

    def _owned(self, reference: str, owner: str) -> JobRecord:
        job_id = self.job_id_of(reference)
        logger.set_correlation_id(job_id)
        record = self.store.get_owned(job_id, owner)
        if record is None:
            raise JobNotFound("no such job")  # the same answer for another caller's job: nothing leaks
        return record

    # -- POST /jobs ------------------------------------------------------------------------------------------------

    def submit(self, caller: Caller, spec: JobSpec, idempotency_key: str | None) -> tuple[JobAccepted, bool]:
        """Accepts a job, to run as the caller's cluster user; returns (answer, replayed) — replayed when the
        Idempotency-Key was seen before."""
        owner = caller.owner
        digest = request_hash(spec)
        if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.match(idempotency_key):
            raise BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")
        # Job ids are random (uuid4), with or without a key: nobody can compute another caller's next job id. A key
        # names the id its first request claimed (JobStore.claim_job_id).
        claimed = None if idempotency_key is None else self.store.claimed_job_id(owner, idempotency_key)
        if claimed is not None and (existing := self.store.get(claimed)) is not None:
            return self._replay(existing, digest), True
        self._check_references(owner, spec, claimed)  # before anything is written: a refused request changes nothing
        job_id = claimed or str(uuid.uuid4())
        if idempotency_key is not None and claimed is None:
            expires_at = int(self.now().timestamp()) + self.settings.result_retention_days * 86400
            job_id = self.store.claim_job_id(owner, idempotency_key, job_id, expires_at)
            if (existing := self.store.get(job_id)) is not None:  # a concurrent request with the key got there first
                return self._replay(existing, digest), True

        spec_key = self._store_inputs(job_id, spec)
        created_at = iso(self.now())
        submission_id = uuid.uuid4().hex
        # The execution input holds references only: the spec itself is in S3, whatever its size.
        execution_input = WorkflowInput(
            job_id=job_id,
            submission_id=submission_id,
            owner=owner,
            cluster_user=caller.cluster_user,
            created_at=created_at,
            request_hash=digest,
            spec_key=spec_key,
        )
        replayed = False
        try:
            execution_arn = self.stepfunctions.start_execution(
                stateMachineArn=self.state_machine_arn, name=job_id, input=json.dumps(execution_input.to_input())
            )["executionArn"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code != "ExecutionAlreadyExists":
                logger.exception("StartExecution failed")
                raise ServiceUnavailable(
                    "the job could not be started; retry with the same Idempotency-Key", headers={"Retry-After": "2"}
                ) from error
            # A retry of a request whose earlier attempt started the execution but stopped before answering.
            execution_arn = self.execution_arn(job_id)
            self._check_same_request(execution_arn, digest)
            replayed = True
        record = JobRecord.new(
            job_id=job_id,
            submission_id=submission_id,
            owner=owner,
            spec=spec,
            created_at=created_at,
            request_hash=digest,
            execution_arn=execution_arn,
            retention_days=self.settings.result_retention_days,
            cluster_name=self.settings.cluster_name,
            cluster_user=caller.cluster_user,
        )
        self.store.create(record)  # False if the workflow already made it from the execution input: same content
        logger.set_correlation_id(job_id)
        logger.info("job accepted", extra={"replayed": replayed})
        current = self.store.get(job_id) or record
        return self._accepted(current), replayed

    def _store_inputs(self, job_id: str, spec: JobSpec) -> str:
        """Stores the accepted spec and an inline script for the workflow; returns the spec's key.

        A job id's inputs are written once (S3 conditional writes): spec.json first, and only if there is none. If
        there is one, an earlier attempt of this request (same caller, same Idempotency-Key) stored it and may have
        started the workflow without writing the record yet; a different spec is then refused before anything is
        written, so the first job runs with its own inputs whatever is retried. The same spec goes on (the script,
        part of the spec, is the same too)."""
        key = results.spec_key(job_id)
        document = spec.to_json_dict()
        try:
            if not self.bucket.put_json(key, document, only_if_new=True) and self.bucket.read_json(key) != document:
                raise IdempotencyKeyReused("this Idempotency-Key was used for a different job spec")
            if spec.script is not None:
                self.bucket.put_script(job_id, spec.script, only_if_new=True)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != results.CONCURRENT_WRITE:
                raise
            # Another request with this key is writing the same object right now: the retry will see what it wrote.
            raise ServiceUnavailable(
                "a request with this Idempotency-Key is in progress; retry", headers={"Retry-After": "1"}
            ) from error
        return key

    def _check_references(self, owner: str, spec: JobSpec, job_id: str | None) -> None:
        problems = []
        if spec.script_s3_key is not None:
            problems += self._script_object_problems(owner, spec.script_s3_key)
        for index, dependency in enumerate(spec.dependency or []):
            if dependency.job_id == job_id:
                problems.append(f"dependency[{index}].jobId: a job cannot depend on itself")
            elif self.store.get_owned(dependency.job_id, owner) is None:
                problems.append(f"dependency[{index}].jobId: no such job {dependency.job_id}")
        if problems:
            raise InvalidJobSpec("; ".join(problems))

    def _script_object_problems(self, owner: str, key: str) -> list[str]:
        """Why `key` cannot be this caller's script: not under their own prefix (checked first, so that nobody learns
        whether another caller's object exists), no such object, or larger than an inline script may be."""
        prefix = inputs.inputs_prefix(owner)
        if not inputs.is_own_input(owner, key):
            return [f"scriptS3Key: must name an object under your own inputs prefix {prefix} (POST /inputs gives one)"]
        size = self.bucket.object_size(key)
        if size is None:
            return [f"scriptS3Key: no object {key} in the results bucket"]
        if size > MAX_SCRIPT_BYTES:
            return [f"scriptS3Key: the object is {size} bytes; a script is at most {MAX_SCRIPT_BYTES} bytes"]
        return []

    def _replay(self, record: JobRecord, digest: str) -> JobAccepted:
        if record.request_hash and record.request_hash != digest:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different job spec")
        return self._accepted(record)

    def _check_same_request(self, execution_arn: str, digest: str) -> None:
        described = self.stepfunctions.describe_execution(executionArn=execution_arn)
        if WorkflowInput.model_validate_json(described["input"]).request_hash != digest:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different job spec")

    @staticmethod
    def _accepted(record: JobRecord) -> JobAccepted:
        return JobAccepted(
            job_id=record.job_id,
            execution_arn=record.execution_arn,
            status=record.status,
            location=f"/jobs/{record.job_id}",
        )

    # -- POST /inputs ----------------------------------------------------------------------------------------------

    def new_input_upload(self, owner: str, file_name: str) -> InputUpload:
        """A presigned PUT URL for a new object under the caller's own prefix (a fresh key each time)."""
        key = inputs.upload_key(owner, uuid.uuid4().hex, file_name)
        expires_at = self.now() + timedelta(seconds=PRESIGNED_URL_SECONDS)
        logger.info("input upload issued", extra={"key": key})
        return InputUpload(
            key=key,
            prefix=inputs.inputs_prefix(owner),
            url=self.bucket.presigned_put(key),
            expires_in_seconds=PRESIGNED_URL_SECONDS,
            expires_at=iso(expires_at),
            max_bytes=MAX_SCRIPT_BYTES,
        )

    # -- GET /jobs/{jobId} -----------------------------------------------------------------------------------------

    def describe(self, owner: str, reference: str) -> JobView:
        record = self._owned(reference, owner)
        return JobView.from_record(record, self._execution_status(record.execution_arn))

    def _execution_status(self, execution_arn: str) -> str:
        try:
            return self.stepfunctions.describe_execution(executionArn=execution_arn)["status"]
        except ClientError:
            logger.warning("DescribeExecution failed", exc_info=True)
            return "UNKNOWN"

    # -- GET /jobs -------------------------------------------------------------------------------------------------

    def list(self, owner: str, *, status: str | None, limit: int, next_token: str | None) -> JobList:
        if status is not None and status not in ALL_STATUSES:
            raise BadRequest(f"status must be one of {', '.join(sorted(ALL_STATUSES))}")
        after = decode_next_token(next_token) if next_token else None
        items, position = self.store.list_for_owner(owner, limit=limit, after=after, status=status)
        return JobList(
            jobs=[JobSummary.from_record(item) for item in items],
            next_token=encode_next_token(position) if position else None,
        )

    # -- DELETE /jobs/{jobId} --------------------------------------------------------------------------------------

    def cancel(self, owner: str, reference: str, remaining_seconds: float) -> CancelAccepted:
        record = self._owned(reference, owner)
        if record.status in TERMINAL_STATUSES:
            raise JobAlreadyFinished(f"the job already ended {record.status}")
        marked = self.store.request_cancel(record.job_id, owner, iso(self.now()))
        if marked is None:
            latest = self._owned(reference, owner)
            raise JobAlreadyFinished(f"the job already ended {latest.status}")
        sent = False
        if marked.slurm_job_id and marked.status in ACTIVE_STATUSES:
            try:
                self.head_node.as_user(marked.cluster_user).run(
                    CancelRequest(job_id=marked.job_id, slurm_job_id=marked.slurm_job_id),
                    wait_seconds=self._head_node_wait(remaining_seconds),
                )
                sent = True
            except errors.SlurmJobApiError:
                # The workflow cancels at its next poll; the request is recorded either way.
                logger.warning("scancel from the API failed; the next poll retries it", exc_info=True)
        logger.info("cancel requested", extra={"slurm_cancel_sent": sent})
        return CancelAccepted(job_id=marked.job_id, status=marked.status, slurm_cancel_sent=sent)

    # -- GET /jobs/{jobId}/output ----------------------------------------------------------------------------------

    def output(
        self, owner: str, reference: str, *, limit: int = OUTPUT_PAGE_SIZE, next_token: str | None = None
    ) -> JobOutput:
        """One page of links: the collected files in result.json's order, then result.json itself (on the last page,
        so the pages together list each file once)."""
        record = self._owned(reference, owner)
        stored = record.results
        if record.status not in TERMINAL_STATUSES or not stored:
            raise OutputNotReady("outputs are collected when the job ends; it is " + record.status)
        result = self.bucket.read_json(stored.result_key)
        if result is None:
            raise OutputNotReady("the job's results are being written; try again in a few seconds")
        collected = result.get("files", [])
        total = len(collected) + 1  # result.json comes last
        start = decode_output_token(next_token, total) if next_token else 0
        end = min(start + limit, total)
        files = [
            OutputFile(
                name=item["name"],
                bytes=item.get("bytes"),
                url=self.bucket.presigned_get(item["key"], filename=item["name"].rsplit("/", 1)[-1]),
            )
            for item in collected[start:end]
        ]
        if end == total:
            files.append(OutputFile(name="result.json", bytes=None, url=self.bucket.presigned_get(stored.result_key)))
        return JobOutput(
            job_id=record.job_id,
            expires_in_seconds=PRESIGNED_URL_SECONDS,
            files=files,
            next_token=encode_output_token(end) if end < total else None,
        )

    # -- GET /jobs/{jobId}/logs ------------------------------------------------------------------------------------

    def logs(
        self,
        owner: str,
        reference: str,
        *,
        stream: str,
        offset: int,
        limit: int,
        task_id: int | None,
        remaining_seconds: float,
    ) -> JobLogs:
        """A page of the job's stream from `offset`: nothing yet before the job reached Slurm, the file on the head
        node while it runs and until its files are collected, the collected object after (one ranged GET)."""
        record = self._owned(reference, owner)
        task_ids = record.spec.array_task_ids
        if task_ids is None and task_id is not None:
            raise InvalidParameter("taskId: the job is not an array job; leave taskId out")
        if task_ids is not None and task_id not in task_ids:
            raise InvalidParameter(
                f"taskId: required for an array job, one of its tasks ({record.spec.array})"
                if task_id is None
                else f"taskId: {task_id} is not a task of this job ({record.spec.array})"
            )
        if record.results:
            page = self.bucket.read_range(results.stream_key(record.job_id, stream, task_id), offset, limit)
        elif record.slurm_job_id and record.submission_id:
            page = self._read_on_head_node(record, stream, task_id, offset, limit, remaining_seconds)
        else:
            page = ObjectRange(found=False, size=0, data=b"")  # not in Slurm yet (or never: SUBMIT_FAILED)
        ended = record.status in TERMINAL_STATUSES
        text, used = page_text(page.data, at_the_end=ended and offset + len(page.data) >= page.size)
        next_offset = offset + used
        return JobLogs(
            job_id=record.job_id,
            stream=stream,
            task_id=task_id,
            offset=offset,
            next_offset=next_offset,
            text=text,
            size=page.size,
            complete=ended and next_offset >= page.size,
        )

    def _read_on_head_node(
        self, record: JobRecord, stream: str, task_id: int | None, offset: int, limit: int, remaining_seconds: float
    ) -> ObjectRange:
        """The one place the API reads a job's stream on the head node: read-output, as the job's own cluster user."""
        request = ReadOutputRequest(
            job_id=record.job_id,
            submission_id=record.submission_id,
            stream=stream,
            task_id=task_id,
            offset=offset,
            limit=limit,
        )
        try:
            reply = self.head_node.as_user(record.cluster_user).run(
                request, wait_seconds=self._head_node_wait(remaining_seconds)
            )
        except errors.TransientError as error:
            logger.warning("reading the job's output on the head node failed", exc_info=True)
            raise ServiceUnavailable(
                f"the job's output cannot be read from the cluster now ({type(error).__name__}); retry",
                headers={"Retry-After": str(HEAD_NODE_RETRY_SECONDS)},
            ) from error
        try:
            data = base64.b64decode(reply.data, validate=True)
        except binascii.Error:
            data = None
        if data is None or reply.offset != offset or len(data) > min(limit, max(0, reply.size - offset)):
            raise errors.HeadNodeProtocolError("the head-node program's read-output reply is not the page asked for")
        return ObjectRange(found=reply.found, size=reply.size, data=data)

    @staticmethod
    def _head_node_wait(remaining_seconds: float) -> float:
        return ssm_wait_seconds(
            remaining_seconds, cap=HEAD_NODE_WAIT_SECONDS, margin=HEAD_NODE_MARGIN_SECONDS, minimum=1.0
        )


def dump(model: Any) -> dict:
    return model.model_dump(mode="json", by_alias=True)
