"""Each caller's own inputs prefix in the results bucket, and which keys a caller may name as scriptS3Key (pure).

A caller's prefix is `inputs/<callerKey>/`, where callerKey is the SHA-256 of the job owner (the IAM principal
API Gateway authenticated, `requestContext.identity.userArn`) in lowercase hex: 64 characters whatever the
principal, URL-safe, stable for a principal, and no ARN text in any key. It is derived on the server from the
authenticated principal only; nothing a caller sends names it. Knowing another caller's prefix grants nothing: a key
is accepted only under the prefix of the caller who signed the request.
"""

from __future__ import annotations

import hashlib
import re

INPUTS_ROOT = "inputs/"
CALLER_KEY_LENGTH = 64
# POST /inputs: the file name of a new upload, the last part of its key (the default when the caller gives none).
DEFAULT_UPLOAD_FILE_NAME = "script.sh"
UPLOAD_FILE_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


def caller_key(owner: str) -> str:
    """The fixed-length, URL-safe name of a caller's inputs: SHA-256 of the owner identity, lowercase hex."""
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()


def inputs_prefix(owner: str) -> str:
    """`inputs/<callerKey>/`: the only prefix under which `owner` may upload and name scripts."""
    return f"{INPUTS_ROOT}{caller_key(owner)}/"


def is_own_input(owner: str, key: str) -> bool:
    """True if `key` names an object under `owner`'s own prefix: not the prefix itself, not another caller's prefix
    (nor one that merely starts with the same characters), no empty, "." or ".." part."""
    prefix = inputs_prefix(owner)
    if not key.startswith(prefix):
        return False
    rest = key[len(prefix) :]
    return bool(rest) and all(part not in ("", ".", "..") for part in rest.split("/"))


def upload_key(owner: str, upload_id: str, file_name: str = DEFAULT_UPLOAD_FILE_NAME) -> str:
    """The key of a new upload: `inputs/<callerKey>/<uploadId>/<fileName>`, where uploadId is fresh for each upload
    (32 lowercase hex digits), so that no upload can overwrite an earlier one."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise ValueError("an upload id is 32 lowercase hex digits")
    if not re.fullmatch(UPLOAD_FILE_NAME_PATTERN, file_name):
        raise ValueError(f"file name {file_name!r} must match {UPLOAD_FILE_NAME_PATTERN}")
    return f"{inputs_prefix(owner)}{upload_id}/{file_name}"
