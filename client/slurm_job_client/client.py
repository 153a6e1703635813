"""The Python API: ``Client`` (submit, list, find jobs) and ``Job`` (status, wait, logs, download, cancel).

Views are the API's own JSON objects (dicts, camelCase keys as in the README's API section), so nothing of what the
API answers is lost or renamed here.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from slurm_job_client import endpoint
from slurm_job_client.downloads import ProgressCallback, save_file
from slurm_job_client.errors import NetworkError, SjaError, api_error
from slurm_job_client.transport import Answer, RetryPolicy, SignedTransport, put_url

# The statuses of a job that is still alive (the API's ACTIVE_STATUSES); every other status is an end.
ACTIVE_STATUSES = frozenset({"SUBMITTING", "PENDING", "RUNNING", "SUSPENDED"})
# A script up to this size travels inside POST /jobs; a larger one is uploaded first (POST /inputs, a presigned PUT)
# and named by scriptS3Key, which keeps the request small whatever the script and the environment weigh.
INLINE_SCRIPT_BYTES = 16 * 1024
_UPLOAD_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Spec fields whose camelCase is not the plain one of their Python name.
_FIELD_NAMES = {"memory_mb": "memoryMB", "memory_per_cpu_mb": "memoryPerCpuMB", "script_s3_key": "scriptS3Key"}
LOG_STREAMS = ("stdout", "stderr")
# How long Job.wait keeps trying while the API cannot be reached at all.
NETWORK_PATIENCE_SECONDS = 600.0


def spec_field(name: str) -> str:
    """A spec field's JSON name from its Python name (cpus_per_task → cpusPerTask); camelCase names pass as given."""
    if name in _FIELD_NAMES:
        return _FIELD_NAMES[name]
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def is_final(view: Mapping[str, Any]) -> bool:
    """Whether a job view is its last: the job ended and its workflow finished collecting its results."""
    execution = view.get("execution") or {}
    return view.get("status") not in ACTIVE_STATUSES and execution.get("status") != "RUNNING"


def read_script(script: str | os.PathLike[str]) -> tuple[str, str | None]:
    """(the script's text, its file name if it came from a file): text starting with #! is the script itself,
    anything else a path."""
    if isinstance(script, str) and script.startswith("#!"):
        return script, None
    path = Path(script)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SjaError(f"cannot read the script {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8"), path.name
    except UnicodeDecodeError:
        raise SjaError(f"the script {path} is not UTF-8 text") from None


class Client:
    """A caller of one Slurm Job API.

    The URL: ``api_url``, else env ``SJA_API_URL``, else the ``ApiUrl`` output of the CloudFormation stack
    ``stack_name`` (or env ``SJA_STACK_NAME``). Credentials: botocore's standard chain (``profile``, env, SSO,
    roles). ``region``: the one to sign for (default: from an API Gateway URL, ``AWS_REGION``, the profile's)."""

    def __init__(
        self,
        api_url: str | None = None,
        stack_name: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        *,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        boto = endpoint.session(profile)
        url = endpoint.api_url(api_url, stack_name, region, boto)
        self.transport = SignedTransport(
            url, endpoint.credentials(boto), endpoint.signing_region(url, region, boto), retry=retry, sleep=sleep
        )
        self.sleep = sleep

    @property
    def api_url(self) -> str:
        return self.transport.api_url

    def request(self, method: str, path: str, what: str = "resource", **kwargs: Any) -> Any:
        """The JSON answer of a 2xx; the matching ApiError otherwise (``what`` names the thing asked about)."""
        answer: Answer = self.transport.send(method, path, **kwargs)
        if 200 <= answer.status < 300:
            return answer.json()
        raise api_error(answer.status, answer.json(), what)

    # -- jobs ------------------------------------------------------------------------------------------------------

    def submit(
        self, script: str | os.PathLike[str] | None = None, *, idempotency_key: str | None = None, **options: Any
    ) -> Job:
        """Submits a job: ``script`` is the script's text (starting with #!) or a path to it (or leave it out and
        give ``script_s3_key``); ``options`` are spec fields by Python or JSON name (``time_limit_minutes=10``,
        ``memoryMB=4096``, ``environment={...}``, ``dependency=[{"type": "afterok", "jobId": ...}]``).

        The request carries an Idempotency-Key (a new one per call unless given) and is retried with it on
        timeouts, dropped connections, 429 and 502-504: a lost answer never makes a second job."""
        spec = {spec_field(name): value for name, value in options.items() if value is not None}
        if script is not None:
            if "scriptS3Key" in spec:
                raise ValueError("give a script or script_s3_key, not both")
            text, file_name = read_script(script)
            if len(text.encode("utf-8")) > INLINE_SCRIPT_BYTES:
                spec["scriptS3Key"] = self.upload_script(text, file_name)
            else:
                spec["script"] = text
        key = idempotency_key or str(uuid.uuid4())
        accepted = self.request("POST", "/jobs", "job", body=spec, headers={"Idempotency-Key": key})
        return Job(self, accepted["jobId"], accepted)

    def upload_script(self, text: str, file_name: str | None = None) -> str:
        """Uploads a script under the caller's own inputs prefix (POST /inputs, then a presigned PUT); its key."""
        body = {"fileName": file_name} if file_name and _UPLOAD_FILE_NAME.fullmatch(file_name) else {}
        upload = self.request("POST", "/inputs", "upload", body=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        status = put_url(upload["url"], text.encode("utf-8"), timeout=self.transport.retry.timeout)
        if status // 100 != 2:
            raise SjaError(f"the script upload answered HTTP {status}")
        return upload["key"]

    def job(self, job_id: str) -> Job:
        """The job with this id (no request is made until it is asked something)."""
        return Job(self, job_id)

    def jobs(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The caller's jobs, newest first (every page, or the first ``limit``), optionally of one status."""
        found: list[dict[str, Any]] = []
        token = None
        while limit is None or len(found) < limit:
            page_size = 100 if limit is None else min(100, limit - len(found))
            query = {"status": status, "limit": page_size, "nextToken": token}
            page = self.request("GET", "/jobs", "jobs", query=query)
            found += page.get("jobs", [])
            token = page.get("nextToken")
            if not token:
                break
        return found


class Job:
    """One job of the caller. ``accepted`` is POST /jobs' answer when this object came from ``submit``."""

    def __init__(self, client: Client, job_id: str, accepted: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.job_id = job_id
        self.accepted = dict(accepted or {})

    def __repr__(self) -> str:
        return f"Job({self.job_id!r})"

    @property
    def path(self) -> str:
        return "/jobs/" + quote(self.job_id, safe="")

    def _get(self, suffix: str = "", **query: Any) -> Any:
        return self.client.request("GET", self.path + suffix, f"job {self.job_id}", query=query)

    def status(self) -> dict[str, Any]:
        """The job's view (GET /jobs/{jobId}): status, slurmState, reason, exitCode, times, arrayTaskCounts, ..."""
        return self._get()

    def wait(
        self,
        poll: float = 5.0,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        network_patience: float = NETWORK_PATIENCE_SECONDS,
    ) -> dict[str, Any]:
        """Waits until the job ended and its results are collected; the final view. ``on_update`` sees every view
        read on the way; TimeoutError after ``timeout`` seconds. The API unreachable (after each read's own
        retries) is waited out for up to ``network_patience`` seconds in a row: a long job outlives a network blip."""
        deadline = None if timeout is None else time.monotonic() + timeout
        unreachable_since = None
        while True:
            try:
                view = self.status()
            except NetworkError:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > network_patience:
                    raise
                self.client.sleep(poll)
                continue
            unreachable_since = None
            if on_update is not None:
                on_update(view)
            if is_final(view):
                return view
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.job_id} is still {view.get('status')} after {timeout} s")
            self.client.sleep(poll)

    def logs(
        self, stream: str = "stdout", follow: bool = False, task: int | None = None, poll: float = 2.0
    ) -> Iterator[str]:
        """The job's stdout or stderr (of one array task with ``task``), as pieces of text in order. Without
        ``follow``, what there is now; with it, new text as it comes until the log is complete (the job ended)."""
        if stream not in LOG_STREAMS:
            raise ValueError(f"stream must be one of {LOG_STREAMS}")
        offset = 0
        while True:
            page = self._get("/logs", stream=stream, offset=offset, taskId=task)
            text, next_offset = page.get("text") or "", int(page.get("nextOffset", offset))
            if text:
                yield text
            caught_up = next_offset >= int(page.get("size") or 0)
            if caught_up and page.get("complete"):
                return
            if not follow and (caught_up or not text):
                return
            if next_offset == offset:  # nothing new yet
                self.client.sleep(poll)
            offset = next_offset

    def output_files(self) -> list[dict[str, Any]]:
        """Every collected file, {name, bytes, url} (GET /jobs/{jobId}/output, all pages; links last 15 minutes)."""
        files: list[dict[str, Any]] = []
        token = None
        while True:
            page = self._get("/output", limit=1000, nextToken=token)
            files += page.get("files", [])
            token = page.get("nextToken")
            if not token:
                return files

    def download(self, directory: str | os.PathLike[str] = ".", progress: ProgressCallback | None = None) -> list[Path]:
        """Downloads every collected file into ``directory`` under its own name (made safe: it never leaves the
        directory); the paths written. ``progress(name, bytes_done, bytes_total)`` is called as bytes arrive."""
        target = Path(directory)
        files = self.output_files()
        return [save_file(target, item["name"], item["url"], item.get("bytes"), progress) for item in files]

    def cancel(self) -> dict[str, Any]:
        """Cancels the job (DELETE /jobs/{jobId}): {jobId, status, cancelRequested, slurmCancelSent}."""
        return self.client.request("DELETE", self.path, f"job {self.job_id}")
