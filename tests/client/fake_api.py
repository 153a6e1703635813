"""A stand-in for the Slurm Job API on 127.0.0.1, for the client's unit tests: it records every request (headers and
body as received) and answers as planned, then as a tiny API would.

A plan is a list of what the next requests to a route get, in order: a ``Reply``, ``LOST_ANSWER`` (the request is
handled — a job is created — and the connection is closed before any answer) or ``Slow(seconds)`` (handled, then
answered late). Once a route's plan is used up, POST /jobs creates one job per Idempotency-Key (the same key: the
same job, as the real API does) and other routes answer from ``routes``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Reply:
    status: int
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Slow:
    seconds: float


LOST_ANSWER = "lost answer"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class FakeApi:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.plans: dict[tuple[str, str], list[object]] = defaultdict(list)
        self.routes: dict[tuple[str, str], Callable[[Recorded], Reply]] = {}
        self.jobs_by_key: dict[str, str] = {}
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def plan(self, method: str, path: str, *steps: object) -> None:
        self.plans[(method, path)].extend(steps)

    def route(self, method: str, path: str, answer: Callable[[Recorded], Reply] | Reply) -> None:
        self.routes[(method, path)] = answer if callable(answer) else (lambda _request: answer)

    def to(self, method: str, path: str) -> list[Recorded]:
        return [request for request in self.requests if (request.method, request.path) == (method, path)]

    def create_job(self, request: Recorded) -> Reply:
        key = request.headers.get("idempotency-key") or str(uuid.uuid4())
        with self.lock:
            job_id = self.jobs_by_key.setdefault(key, str(uuid.uuid4()))
        body = {"jobId": job_id, "executionArn": f"arn:aws:states:::execution:jobs:{job_id}", "status": "SUBMITTING"}
        return Reply(202, {**body, "location": f"/jobs/{job_id}"})

    def _default(self, request: Recorded) -> Reply:
        key = (request.method, request.path)
        if key in self.routes:
            return self.routes[key](request)
        if key == ("POST", "/v1/jobs"):
            return self.create_job(request)
        return Reply(404, {"code": "NotFound", "message": "no such route"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                split = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Recorded(
                    self.command,
                    split.path,
                    dict(parse_qsl(split.query)),
                    {name.lower(): value for name, value in self.headers.items()},
                    body,
                )
                with api.lock:
                    api.requests.append(request)
                    plan = api.plans[(request.method, request.path)]
                    step = plan.pop(0) if plan else None
                if isinstance(step, Slow):
                    time.sleep(step.seconds)
                reply = step if isinstance(step, Reply) else api._default(request)
                if step == LOST_ANSWER:
                    self.close_connection = True
                    return
                data = b"" if reply.body is None else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up on a slow answer

            do_GET = do_POST = do_DELETE = do_PUT = handle_one

            def log_message(self, *args: object) -> None:
                pass

        return Handler
