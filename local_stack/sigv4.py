"""AWS Signature Version 4 for the local API: verify requests as API Gateway's AWS_IAM authorization does, and sign
them as a client does.

Both directions use botocore's SigV4 code (service ``execute-api``). Verification rebuilds the canonical request from
exactly the headers the client says it signed, with the query string normalised as the SigV4 specification says
(decode, then encode everything but ``A-Za-z0-9-_.~``, sort), and the path double-encoded as for every service but S3.
Failures carry the messages API Gateway answers with.
"""

import datetime
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, quote, urlsplit

import requests
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Principal:
    """An IAM identity the local API accepts, with its (local-only) access key."""

    access_key_id: str
    secret_access_key: str
    arn: str

    @property
    def account_id(self) -> str:
        return self.arn.split(":")[4]

    @property
    def unique_id(self) -> str:
        """A stable stand-in for the IAM unique id (``AIDA...`` for users) that API Gateway reports as the caller."""
        return "AIDA" + hashlib.sha256(self.arn.encode()).hexdigest().upper()[:17]


class AuthenticationFailed(Exception):
    """The request is not authenticated; ``message`` and ``error_type`` are what API Gateway answers (HTTP 403)."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


MISSING_TOKEN_MESSAGE = "Missing Authentication Token"  # noqa: S105 - an error message
INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."  # noqa: S105 - an error message
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key"
    " and signing method. Consult the service documentation for details."
)


def missing_token() -> AuthenticationFailed:
    return AuthenticationFailed(MISSING_TOKEN_MESSAGE, "MissingAuthenticationTokenException")


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def _parse_authorization(value: str, headers: Message) -> _Authorization:
    """Split ``AWS4-HMAC-SHA256 Credential=.../..., SignedHeaders=a;b, Signature=hex``."""
    algorithm, _, rest = value.strip().partition(" ")
    fields = {}
    if algorithm == ALGORITHM:
        for part in rest.split(","):
            name, _, field_value = part.strip().partition("=")
            fields[name] = field_value
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    if problems and not (headers.get("X-Amz-Date") or headers.get("Date")):
        problems.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if problems:
        raise AuthenticationFailed(f"{' '.join(problems)} Authorization={value}", "IncompleteSignatureException")
    scope = fields["Credential"].split("/")
    if len(scope) != 5:
        raise AuthenticationFailed(
            f"Credential should be scoped to a valid region, service and date: {fields['Credential']}",
            "IncompleteSignatureException",
        )
    return _Authorization(*scope, tuple(fields["SignedHeaders"].split(";")), fields["Signature"])  # type: ignore[call-arg]


class _ReceivedRequestSigner(SigV4Auth):
    """botocore's SigV4 over exactly the headers the client signed, with the query normalised as the spec says."""

    def __init__(self, credentials: Credentials, region: str, signed_headers: tuple[str, ...]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed_headers = signed_headers

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self._signed_headers:
            for value in request.headers.get_all(name) or []:
                headers[name] = value
        return headers

    def canonical_query_string(self, request: AWSRequest) -> str:
        pairs = parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
        # Sorted once encoded, as the specification says: "%C2%B3" (a "³") sorts before "n"; decoded, it sorts after.
        encoded = sorted((quote(key, safe="-_.~"), quote(value, safe="-_.~")) for key, value in pairs)
        return "&".join(f"{key}={value}" for key, value in encoded)


def _request_time(headers: Message) -> str:
    """The request's SigV4 timestamp (``YYYYMMDDTHHMMSSZ``) from X-Amz-Date, or from Date."""
    if headers.get("X-Amz-Date"):
        value = headers["X-Amz-Date"]
        try:
            datetime.datetime.strptime(value, SIGV4_TIMESTAMP)
        except ValueError:
            raise AuthenticationFailed(
                f"X-Amz-Date {value!r} is not in the form {SIGV4_TIMESTAMP}", "IncompleteSignatureException"
            ) from None
        return value
    if headers.get("Date"):
        try:
            return parsedate_to_datetime(headers["Date"]).astimezone(datetime.UTC).strftime(SIGV4_TIMESTAMP)
        except (TypeError, ValueError):
            pass
    raise AuthenticationFailed(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        "IncompleteSignatureException",
    )


def _check_clock(timestamp: str, now: datetime.datetime) -> None:
    moment = datetime.datetime.strptime(timestamp, SIGV4_TIMESTAMP).replace(tzinfo=datetime.UTC)
    stamp = SIGV4_TIMESTAMP
    if moment < now - MAX_CLOCK_SKEW:
        raise AuthenticationFailed(
            f"Signature expired: {timestamp} is now earlier than {(now - MAX_CLOCK_SKEW):{stamp}}"
            f" ({now:{stamp}} - 5 min.)",
            "InvalidSignatureException",
        )
    if moment > now + MAX_CLOCK_SKEW:
        raise AuthenticationFailed(
            f"Signature not yet current: {timestamp} is still later than {(now + MAX_CLOCK_SKEW):{stamp}}"
            f" ({now:{stamp}} + 5 min.)",
            "InvalidSignatureException",
        )


def verify_request(
    *,
    method: str,
    target: str,
    headers: Message,
    body: bytes,
    principals: Mapping[str, Principal],
    region: str,
    now: datetime.datetime | None = None,
) -> Principal:
    """The principal whose key signed this request, or :class:`AuthenticationFailed`.

    ``target`` is the request target exactly as received (path and query, still percent-encoded).
    """
    authorization = headers.get("Authorization")
    if not authorization:
        raise missing_token()
    parsed = _parse_authorization(authorization, headers)
    principal = principals.get(parsed.access_key_id)
    if principal is None or headers.get("X-Amz-Security-Token"):
        # The local principals have long-term keys only, so a session token cannot be valid.
        raise AuthenticationFailed(INVALID_TOKEN_MESSAGE, "UnrecognizedClientException")
    timestamp = _request_time(headers)
    if parsed.region != region:
        raise AuthenticationFailed(
            f"Credential should be scoped to a valid region, not '{parsed.region}'.", "InvalidSignatureException"
        )
    if parsed.service != SERVICE or parsed.terminator != "aws4_request":
        raise AuthenticationFailed(
            f"Credential should be scoped to correct service: '{SERVICE}'.", "InvalidSignatureException"
        )
    if parsed.date != timestamp[:8]:
        raise AuthenticationFailed(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP:"
            f" '{parsed.date}' != '{timestamp[:8]}', from '{timestamp}'.",
            "InvalidSignatureException",
        )
    if "host" not in parsed.signed_headers:
        raise AuthenticationFailed(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.", "InvalidSignatureException"
        )
    _check_clock(timestamp, now or datetime.datetime.now(datetime.UTC))
    declared_hash = headers.get("X-Amz-Content-SHA256")
    if declared_hash is not None and declared_hash != hashlib.sha256(body).hexdigest():
        raise AuthenticationFailed(
            "The provided 'x-amz-content-sha256' header does not match what was computed.", "InvalidSignatureException"
        )

    host = headers.get("Host", "localhost")
    request = AWSRequest(
        method=method,
        url=f"http://{host}{target}",
        data=body,
        headers={name: ",".join(headers.get_all(name) or []) for name in parsed.signed_headers},
    )
    request.context["timestamp"] = timestamp
    credentials = Credentials(principal.access_key_id, principal.secret_access_key)
    signer = _ReceivedRequestSigner(credentials, region, parsed.signed_headers)
    canonical_request = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical_request)
    expected = signer.signature(string_to_sign, request)
    if not hmac.compare_digest(expected, parsed.signature):
        raise AuthenticationFailed(
            f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'{canonical_request}'"
            f"\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n",
            "InvalidSignatureException",
        )
    return principal


class SigV4RequestsAuth(requests.auth.AuthBase):
    """A ``requests`` auth that signs each request with a principal's key, as the AWS SDKs sign execute-api calls."""

    def __init__(self, principal: Principal, region: str) -> None:
        self._credentials = Credentials(principal.access_key_id, principal.secret_access_key)
        self._region = region

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.url is None or request.method is None:
            raise ValueError("only prepared requests (with a method and a URL) can be signed")
        parts = urlsplit(request.url)
        body = request.body.encode() if isinstance(request.body, str) else request.body or b""
        signed = {name: value for name, value in request.headers.items() if name.lower() == "content-type"}
        to_sign = AWSRequest(
            method=request.method,
            url=parts._replace(query="").geturl(),
            params=parse_qsl(parts.query, keep_blank_values=True),
            data=body,
            headers=signed,
        )
        SigV4Auth(self._credentials, SERVICE, self._region).add_auth(to_sign)
        for name in ("Authorization", "X-Amz-Date"):
            request.headers[name] = to_sign.headers[name]
        return request


def signed_session(principal: Principal, region: str) -> requests.Session:
    """A ``requests`` session whose every request is signed with ``principal``'s key."""
    session = requests.Session()
    session.auth = SigV4RequestsAuth(principal, region)
    return session
