"""Where a job's files live in the results bucket, and the presigned URLs that move them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

PRESIGNED_URL_SECONDS = 900
# No file on the head node has a longer name (NAME_MAX): a longer download name is cut, its extension kept.
MAX_NAME_BYTES = 255
MAX_KEPT_EXTENSION_BYTES = 16
# RFC 8187 attr-char beyond what urllib.parse.quote always leaves alone (ALPHA, DIGIT, "-", ".", "_", "~").
_ATTR_CHARACTERS = "!#$&+^`|"
_UNSAFE_IN_FALLBACK = re.compile(r'[^\x20-\x7e]|["\\%;]')
# A conditional write (If-None-Match: *) fails with 412 PreconditionFailed if the key exists, and with 409
# ConditionalRequestConflict while another conditional write of that key is in progress (docs/facts.md).
OBJECT_EXISTS = "PreconditionFailed"
CONCURRENT_WRITE = "ConditionalRequestConflict"
# What S3 answers for a key with no object: without s3:ListBucket (not granted), 403 rather than 404.
NO_OBJECT = frozenset(["403", "404", "NoSuchKey", "NotFound", "AccessDenied"])
# A range that starts at or past the object's end (every range of an empty object).
RANGE_NOT_SATISFIABLE = "InvalidRange"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def script_key(job_id: str) -> str:
    return f"jobs/{job_id}/input/script.sh"


def spec_key(job_id: str) -> str:
    """The accepted spec, stored by POST /jobs: the workflow's state carries only this key."""
    return f"jobs/{job_id}/input/spec.json"


def environment_key(job_id: str) -> str:
    return f"jobs/{job_id}/input/environment.json"


def result_key(job_id: str) -> str:
    return f"jobs/{job_id}/result.json"


def stream_key(job_id: str, stream: str, task_id: int | None = None) -> str:
    """stdout/stderr of a job, or of one task of an array job."""
    if task_id is None:
        return f"jobs/{job_id}/{stream}"
    return f"jobs/{job_id}/tasks/{task_id}/{stream}"


def output_key(job_id: str, relative_path: str) -> str:
    return f"jobs/{job_id}/outputs/{relative_path}"


@dataclass(frozen=True)
class ObjectRange:
    """Part of an object: `data` from the offset asked, and the whole object's size (found False: no object)."""

    found: bool
    size: int
    data: bytes


@dataclass(frozen=True)
class PlannedUpload:
    """One file the head node should upload after a job: its name in results, where it comes from, its key."""

    name: str
    source: str  # stdout | stderr | output
    key: str
    task_id: int | None = None
    path: str | None = None


def planned_uploads(job_id: str, *, array_task_ids: list[int] | None, outputs: list[str]) -> list[PlannedUpload]:
    """Every file a finished job may have produced (pure)."""
    uploads: list[PlannedUpload] = []
    for task_id in array_task_ids or [None]:
        for stream in ("stdout", "stderr"):
            name = stream if task_id is None else f"tasks/{task_id}/{stream}"
            uploads.append(PlannedUpload(name, stream, stream_key(job_id, stream, task_id), task_id=task_id))
    for path in outputs:
        uploads.append(PlannedUpload(f"outputs/{path}", "output", output_key(job_id, path), path=path))
    return uploads


def attachment(filename: str) -> str:
    """The Content-Disposition of a download named `filename` (pure; RFC 6266 with the name in RFC 8187 form):
    `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<exact name>`, or "attachment" alone if no name.

    The name goes in only in two safe shapes, so the header is plain ASCII, which S3 can send whatever the name:
    the fallback, for clients that do not read `filename*`, has every character that is not printable ASCII, and
    the quote, backslash, percent sign and semicolon, replaced by "_" (no quoted-pair escape that clients disagree
    on, no "%" a client might decode, no ";" a naive splitter might take for the next parameter); `filename*` is the
    exact name, percent-encoded except for attr-char.
    """
    name = shortened(filename)
    if not name:
        return "attachment"
    fallback = _UNSAFE_IN_FALLBACK.sub("_", name)
    # A lone surrogate cannot be UTF-8: it becomes "?" (the job spec refuses such names, so none reaches here).
    exact = quote(name, safe=_ATTR_CHARACTERS, encoding="utf-8", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def shortened(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """`name` if it is at most `limit` UTF-8 bytes; else cut at a character boundary, keeping a short extension."""
    if _utf8_length(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or _utf8_length(dot + extension) > MAX_KEPT_EXTENSION_BYTES:
        stem, extension, dot = name, "", ""
    room = limit - _utf8_length(dot + extension)
    cut = stem.encode("utf-8", errors="replace")[:room].decode("utf-8", errors="ignore")
    return cut + dot + extension


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


class ResultsBucket:
    def __init__(self, s3: Any, bucket_name: str) -> None:
        self._s3 = s3
        self.name = bucket_name

    def put_script(self, job_id: str, script: str, *, only_if_new: bool = False) -> bool:
        """Stores a job's inline script; with `only_if_new`, only if it has none (False then)."""
        body = script.encode("utf-8")
        return self._put(script_key(job_id), body, "text/x-shellscript; charset=utf-8", only_if_new=only_if_new)

    def put_environment(self, job_id: str, environment: dict[str, str]) -> str:
        key = environment_key(job_id)
        self.put_json(key, environment)
        return key

    def put_json(self, key: str, document: dict, *, only_if_new: bool = False) -> bool:
        """Stores a JSON document (UTF-8, non-ASCII text as is) under `key`; with `only_if_new`, only if there is no
        object under `key` (False then, and the object is left as it was)."""
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self._put(key, body, "application/json", only_if_new=only_if_new)

    def _put(self, key: str, body: bytes, content_type: str, *, only_if_new: bool) -> bool:
        condition = {"IfNoneMatch": "*"} if only_if_new else {}
        try:
            self._s3.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type, **condition)
        except ClientError as error:
            if only_if_new and error.response.get("Error", {}).get("Code") == OBJECT_EXISTS:
                return False
            raise
        return True

    def read_json(self, key: str) -> dict | None:
        """A JSON object stored in the bucket, or None if there is no such object."""
        try:
            body = self._s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return json.loads(body)

    def object_size(self, key: str) -> int | None:
        """The size in bytes of the object under `key`, or None if there is none."""
        try:
            head = self._s3.head_object(Bucket=self.name, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in NO_OBJECT:
                return None
            raise
        return int(head["ContentLength"])

    def read_range(self, key: str, offset: int, limit: int) -> ObjectRange:
        """At most `limit` bytes of the object under `key` from `offset` (one ranged GET), and its size."""
        try:
            answer = self._s3.get_object(Bucket=self.name, Key=key, Range=f"bytes={offset}-{offset + limit - 1}")
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in NO_OBJECT:
                return ObjectRange(found=False, size=0, data=b"")
            if code != RANGE_NOT_SATISFIABLE:
                raise
            size = self.object_size(key)  # the offset is at or past the end: nothing to read, only the size to say
            return ObjectRange(found=size is not None, size=size or 0, data=b"")
        data = answer["Body"].read()
        total = answer.get("ContentRange", "").rpartition("/")[2]  # "bytes <first>-<last>/<size>"
        if not total.isdigit():
            raise ValueError(f"a ranged GET of {key} answered no object size: {answer.get('ContentRange')!r}")
        return ObjectRange(found=True, size=int(total), data=data[:limit])

    def presigned_get(self, key: str, *, seconds: int = PRESIGNED_URL_SECONDS, filename: str | None = None) -> str:
        """A GET link; with `filename`, the download is an attachment of that name (see `attachment`)."""
        params: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = attachment(filename)
        return self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)

    def presigned_put(self, key: str, *, seconds: int = PRESIGNED_URL_SECONDS) -> str:
        params = {"Bucket": self.name, "Key": key}
        return self._s3.generate_presigned_url("put_object", Params=params, ExpiresIn=seconds)
