"""SigV4-signed JSON requests to the API, retried on what a retry cannot make worse.

A request is retried — signed again, with the same body and headers, so a POST keeps its Idempotency-Key — on a
timeout, a dropped or refused connection, and the answers 429, 502, 503 and 504; 429 and 503 may say how long to
wait (Retry-After, seconds or an HTTP date). The waits grow exponentially up to a cap, with jitter. Anything else is
answered at once: a 4xx is the caller's to fix, a 500 is not known to be transient.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from slurm_job_client._version import __version__
from slurm_job_client.errors import NetworkError

RETRIED_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = f"sja/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``attempts`` in all; the n-th wait is about ``base * 2**n`` seconds, never
    over ``cap`` (a Retry-After over ``cap`` is waited for ``cap``); ``timeout`` is each attempt's socket timeout."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 20.0
    timeout: float = 40.0

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (0 for the first): half fixed, half random."""
        ceiling = min(self.cap, self.base * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return {"message": self.body[:300].decode("utf-8", "replace")}


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """A Retry-After header's wait in seconds (delay-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError):
        return None


def transient_reason(error: BaseException) -> str | None:
    """Why a failed attempt may succeed when repeated (a timeout, a connection dropped, reset or refused), or None
    for errors a retry cannot fix (a name that does not resolve, a TLS failure)."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, socket.gaierror):
        return None
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the connection was closed without an answer"
    if isinstance(error, ConnectionError | http.client.IncompleteRead | http.client.BadStatusLine):
        return str(error) or type(error).__name__
    return None


def http_request(url: str, **options: Any) -> urllib.request.Request:
    """A urllib request for an http(s) URL only: a link in an answer can never open a local file."""
    if not url.startswith(("https://", "http://")):
        raise NetworkError(options.get("method") or "GET", url.split("?", 1)[0], "not an http(s) URL")
    return urllib.request.Request(url, **options)  # noqa: S310 - the scheme is checked above


def query_string(parameters: Mapping[str, object] | None) -> str:
    items = {name: str(value) for name, value in (parameters or {}).items() if value is not None}
    return urlencode(items, quote_via=quote) if items else ""


class SignedTransport:
    """Sends requests to one API: ``send("GET", "/jobs", query={...})`` → Answer. Signs each attempt with the
    credentials of the moment (a refreshed SSO or assumed-role session is picked up)."""

    def __init__(
        self,
        api_url: str,
        credentials: Callable[[], Credentials],
        region: str,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.credentials = credentials
        self.region = region
        self.retry = retry
        self.sleep = sleep
        # No redirects: a signed request must not be replayed to another host.
        self.opener = opener or urllib.request.build_opener(_NoRedirect)

    def url(self, path: str, query: Mapping[str, object] | None = None) -> str:
        text = query_string(query)
        return f"{self.api_url}{path}" + (f"?{text}" if text else "")

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        url = self.url(path, query)
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        fixed = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if data is not None:
            fixed["Content-Type"] = "application/json"
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                answer = self._attempt(method, url, data, fixed)
            except OSError as error:  # URLError, timeouts and dropped connections are all OSErrors
                reason = transient_reason(error)
                if reason is None or last:
                    raise NetworkError(method, url, reason or _reason(error)) from error
                self.sleep(self.retry.backoff(attempt))
                continue
            except http.client.HTTPException as error:
                if transient_reason(error) is None or last:
                    raise NetworkError(method, url, _reason(error)) from error
                self.sleep(self.retry.backoff(attempt))
                continue
            if answer.status not in RETRIED_STATUSES or last:
                return answer
            asked = retry_after_seconds(answer.headers.get("Retry-After"))
            self.sleep(min(self.retry.cap, asked) if asked is not None else self.retry.backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _attempt(self, method: str, url: str, data: bytes | None, headers: Mapping[str, str]) -> Answer:
        request = AWSRequest(method=method, url=url, data=data, headers=dict(headers))
        SigV4Auth(self.credentials(), "execute-api", self.region).add_auth(request)
        prepared = http_request(url, data=data, headers=dict(request.headers.items()), method=method)
        try:
            with self.opener.open(prepared, timeout=self.retry.timeout) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, error.headers, error.read())


def stream_url(url: str, timeout: float = 60.0, chunk_size: int = 1 << 20) -> Iterator[tuple[int | None, bytes]]:
    """The body of a plain GET (a presigned S3 link), chunk by chunk, each with the total size if known;
    NetworkError (naming the link without its signature) if it cannot be read whole."""
    request = http_request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
            total = response.headers.get("Content-Length")
            size = int(total) if total and total.isdigit() else None
            while chunk := response.read(chunk_size):
                yield size, chunk
    except (OSError, http.client.HTTPException) as error:
        raise NetworkError("GET", url.split("?", 1)[0], _reason(error)) from error


def put_url(url: str, data: bytes, timeout: float = 60.0) -> int:
    """A plain PUT of ``data`` to a presigned S3 link; the HTTP status."""
    # urllib would label the body a form (application/x-www-form-urlencoded), which a server may decode: it is bytes.
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/octet-stream"}
    request = http_request(url, data=data, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
            return response.status
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return str(error.reason)
    return str(error) or type(error).__name__


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
