"""What can go wrong when talking to the API, each with a one-line message for people."""

from __future__ import annotations


class SjaError(Exception):
    """Every error of the client; ``str(error)`` is one line that says what happened."""


class ConfigurationError(SjaError):
    """No API URL, no credentials or no region could be found."""


class NetworkError(SjaError):
    """The API could not be reached (after the retries): the URL and the reason."""

    def __init__(self, method: str, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url} ({method}): {reason}")
        self.url = url
        self.reason = reason


class ApiError(SjaError):
    """The API answered with an error status; ``code`` and ``api_message`` are the API's own."""

    def __init__(self, status: int, code: str, api_message: str, line: str | None = None) -> None:
        super().__init__(line or f"the API answered {status} {code}: {api_message}")
        self.status = status
        self.code = code
        self.api_message = api_message


class NotAllowed(ApiError):
    """403: the caller's IAM identity may not call the API, or no operator mapped it to a cluster user."""


class NoSuchJob(ApiError):
    """404: no job of the caller has this id."""


class InvalidRequest(ApiError):
    """400, 413, 415 or 422: the request was refused; the message names the field."""


class Conflict(ApiError):
    """409: the job already ended (cancel), or its output is not collected yet (download)."""


# The API's 403 for a signed caller no operator mapped to a cluster user (README, "Mapping callers to cluster users").
CALLER_NOT_MAPPED = "CallerNotMapped"


def api_error(status: int, body: object, what: str) -> ApiError:
    """The error for an answer with ``status`` and JSON ``body`` to a request about ``what`` (e.g. "job <id>")."""
    code, message = "", ""
    if isinstance(body, dict):
        code = str(body.get("code") or "")
        message = str(body.get("message") or body.get("Message") or "")
    message = " ".join(message.split())  # one line, whatever the API sent
    if status == 403 and code == CALLER_NOT_MAPPED:
        return NotAllowed(status, code, message, f"not allowed (403): you are not mapped to a cluster user — {message}")
    if status == 403:
        return NotAllowed(
            status,
            code or "Forbidden",
            message,
            f"not allowed (403): your AWS identity may not call this API (it needs execute-api:Invoke on it, and "
            f"valid credentials): {message or 'no message'}",
        )
    if status == 404:
        return NoSuchJob(status, code or "NotFound", message, f"no such {what} (404)")
    if status in (400, 413, 415, 422):
        return InvalidRequest(status, code, message, f"invalid request ({status}): {message or code}")
    if status == 409:
        return Conflict(status, code, message, f"{what}: {message or code} (409)")
    return ApiError(status, code or "Error", message)
