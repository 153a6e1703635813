"""A burst of concurrent POST /jobs on the local stack, in the previous design and in the bounded one; prints figures.

    make api-burst        # or: .venv/bin/python -m benchmarks.api_burst [--bursts previous:50 bounded:50 ...]

Each burst runs on a fresh local cloud built from template.yaml (no Slurm cluster: the jobs' executions start and
fail to find a head node, which is load too). Its clients are made beforehand and released together. Designs:

- ``previous``: no bound on execution environments (one per concurrent invocation) and the local API as it was, a
  listen backlog of 5 and no bound on requests in flight;
- ``bounded``: the local stack's defaults, at most DEFAULT_ENVIRONMENTS_PER_FUNCTION environments per function and
  the local API's backlog of LISTEN_BACKLOG with MAX_REQUESTS_IN_FLIGHT requests in flight (429 beyond them).

Per burst: answers and their statuses, connection errors (refused, timed out or dropped), the most environment
processes up at once (counted from the start of their init: the forkserver's children) and their peak memory (the
sum of their PSS, and of their RSS, which counts the pages the forked environments share once per process), and the
lowest MemAvailable of the machine meanwhile. Not a test: figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from local_stack.api_gateway import LISTEN_BACKLOG, MAX_REQUESTS_IN_FLIGHT, ApiClient, LocalApiGateway
from local_stack.cloud import LocalCloud
from local_stack.lambda_runtime import DEFAULT_ENVIRONMENTS_PER_FUNCTION
from local_stack.template_model import REPOSITORY_TEMPLATE

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_EVENT = REPO_ROOT / "events" / "api-submit-job.json"
PREVIOUS_LISTEN_BACKLOG = 5  # socketserver's default, which the local API had
DEFAULT_BURSTS = ("previous:50", "bounded:50", "bounded:200")
SAMPLE_SECONDS = 0.25
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 90.0
SETTLE_SECONDS = 3.0  # measured on after the last answer, while the executions the burst started run


@dataclass
class MemoryPeak:
    """The most environments up at once and the peak sums of their PSS and RSS (kB), sampled in a thread."""

    environments: int = 0
    pss_kb: int = 0
    rss_kb: int = 0
    lowest_available_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def follow(self) -> threading.Thread:
        self.lowest_available_kb = meminfo_kb("MemAvailable")
        sampler = threading.Thread(target=self._sample, name="memory-sampler", daemon=True)
        sampler.start()
        return sampler

    def stop(self) -> None:
        self._stop.set()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            pids = _environment_processes()
            totals = [_rollup_kb(pid) for pid in pids]
            self.environments = max(self.environments, len(pids))
            self.pss_kb = max(self.pss_kb, sum(pss for pss, _ in totals))
            self.rss_kb = max(self.rss_kb, sum(rss for _, rss in totals))
            self.lowest_available_kb = min(self.lowest_available_kb, meminfo_kb("MemAvailable"))


def _children(pid: int) -> list[int]:
    """The processes any thread of ``pid`` started (Linux's /proc/<pid>/task/<tid>/children)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def _environment_processes() -> list[int]:
    """The execution environments' processes, from their start (the init included): the children of the
    forkserver, which is a child of this process (this process starts no other process that has children)."""
    return [pid for child in _children(os.getpid()) for pid in _children(child)]


def _rollup_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in kB from /proc/<pid>/smaps_rollup; zeros if it has ended."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0
    values = {line.split(":")[0]: int(line.split()[1]) for line in lines[1:] if line.endswith("kB")}
    return values.get("Pss", 0), values.get("Rss", 0)


def meminfo_kb(name: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class BurstResult:
    design: str
    requests: int
    statuses: Counter[int]
    connection_errors: Counter[str]
    seconds: float
    memory: MemoryPeak

    def lines(self) -> list[str]:
        answered = sum(self.statuses.values())
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items())) or "none"
        errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.connection_errors.items())) or "none"
        return [
            f"{self.design} design, {self.requests} concurrent POST /jobs ({self.seconds:.1f} s):",
            f"  answered {answered} of {self.requests}; statuses {statuses}; connection errors {errors}",
            f"  environments up at once (all functions): {self.memory.environments}; their peak PSS "
            f"{self.memory.pss_kb / 1024**2:.2f} GiB, peak RSS sum {self.memory.rss_kb / 1024**2:.2f} GiB; "
            f"lowest MemAvailable {self.memory.lowest_available_kb / 1024**2:.1f} GiB",
        ]


def _job_spec() -> dict:
    return json.loads(json.loads(EXAMPLE_EVENT.read_text())["body"])


def _post_together(clients: list[ApiClient], spec: dict) -> tuple[Counter[int], Counter[str]]:
    """Each client POSTs once, all released at the same moment; the statuses and the connection errors by kind."""
    together = threading.Barrier(len(clients))
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def post(client: ApiClient) -> None:
        together.wait()
        try:
            status = client.post(
                "/jobs", json=spec, timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
            ).status_code
        except requests.RequestException as error:
            with lock:
                errors[type(error).__name__] += 1
            return
        with lock:
            statuses[status] += 1

    threads = [threading.Thread(target=post, args=(client,), name="burst-client") for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, errors


def run_burst(design: str, count: int) -> BurstResult:
    """One burst of ``count`` POSTs on a fresh local cloud in the ``design`` ("previous" or "bounded")."""
    previous = design == "previous"
    with LocalCloud(
        REPOSITORY_TEMPLATE,
        stack_name=f"burst-{design}",
        parameter_overrides={"ClusterName": "burst"},
        environments_per_function=None if previous else DEFAULT_ENVIRONMENTS_PER_FUNCTION,
    ) as cloud:
        gateway = LocalApiGateway(
            cloud.model,
            cloud.runtime,
            max_requests_in_flight=None if previous else MAX_REQUESTS_IN_FLIGHT,
            listen_backlog=PREVIOUS_LISTEN_BACKLOG if previous else LISTEN_BACKLOG,
        )
        with gateway:
            clients = [ApiClient(gateway.url, region=cloud.region) for _ in range(count)]
            memory = MemoryPeak()
            sampler = memory.follow()
            started = time.monotonic()
            statuses, errors = _post_together(clients, _job_spec())
            seconds = time.monotonic() - started
            time.sleep(SETTLE_SECONDS)
            memory.stop()
            sampler.join()
    return BurstResult(design, count, statuses, errors, seconds, memory)


def _burst(text: str) -> tuple[str, int]:
    design, _, count = text.partition(":")
    if design not in ("previous", "bounded") or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"DESIGN:COUNT with DESIGN previous or bounded, not {text!r}")
    return design, int(count)


def main(argv: list[str] | None = None, say: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", nargs="+", type=_burst, default=[_burst(text) for text in DEFAULT_BURSTS])
    args = parser.parse_args(argv)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    logging.basicConfig(level=logging.ERROR)
    # moto's ASL interpreter logs each failed task at ERROR, with its whole state; the jobs here fail by design.
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    say(f"{os.cpu_count()} CPUs, MemTotal {meminfo_kb('MemTotal') / 1024**2:.1f} GiB")
    for design, count in args.bursts:
        for line in run_burst(design, count).lines():
            say(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
