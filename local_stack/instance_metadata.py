"""The head node's instance metadata service (IMDSv2), on a loopback port: what the push hook reads its credentials
from on EC2 (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-metadata-retrieval.html).

Version 2 only, as ParallelCluster configures head nodes (``Imds/ImdsSupport: v2.0``): a session token from
``PUT /latest/api/token`` (with ``X-aws-ec2-metadata-token-ttl-seconds``) must accompany every read, else 401. The
role's credentials are the local cloud's placeholder keys (moto accepts any).
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local_stack.lambda_runtime import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY

ROLE_NAME = "slurm-job-api-local-head-node"
_CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"


class LocalInstanceMetadata:
    """Context manager: serves IMDSv2 on 127.0.0.1 (``url``) and counts the credential reads."""

    def __init__(self) -> None:
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self.credential_reads = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the instance metadata service is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, name="imds", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalInstanceMetadata:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _new_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        return token

    def _valid(self, token: str | None) -> bool:
        with self._lock:
            return token in self._tokens

    def _credentials(self) -> dict[str, Any]:
        with self._lock:
            self.credential_reads += 1
        return {
            "Code": "Success",
            "Type": "AWS-HMAC",
            "AccessKeyId": LOCAL_ACCESS_KEY_ID,
            "SecretAccessKey": LOCAL_SECRET_ACCESS_KEY,
            "Token": "local-session-token",
            "Expiration": "2099-01-01T00:00:00Z",
        }


def _handler(service: LocalInstanceMetadata) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self._answer(400, "")
                return
            self._answer(200, service._new_token())

        def do_GET(self) -> None:
            if not service._valid(self.headers.get("X-aws-ec2-metadata-token")):
                self._answer(401, "")
            elif self.path == _CREDENTIALS_PATH:
                self._answer(200, ROLE_NAME)
            elif self.path == _CREDENTIALS_PATH + ROLE_NAME:
                self._answer(200, json.dumps(service._credentials()))
            else:
                self._answer(404, "")

        def _answer(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
