"""Job tracking on the local stack: per-job polling, the sweep, and the sweep with the push hook, side by side.

    make tracking-benchmark   # or: .venv/bin/python -m benchmarks.job_tracking [--jobs 1,100,500]
                              #       [--designs per-job-polling,sweep,sweep+push] [--output docs/job-tracking.md]

Each run (one design, N jobs) gets a fresh local stack: a real Slurm cluster with accounting, advertising enough
CPUs for the N jobs at once, with its own name (bench-tracking-<design>) and port base. It submits N `sleep` jobs
through the local API concurrently (20 clients against the API's 16 requests in flight; a 429 is retried after its
Retry-After with the same Idempotency-Key), waits until every job's record is terminal and its workflow has ended,
and measures over that window what INTRODUCTION (the head of docs/job-tracking.md) lists. Needs root. Not a test:
figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import ClientError

from benchmarks.api_burst import MemoryPeak, meminfo_kb
from benchmarks.job_tracking_table import DESIGNS, RunFigures, percentile, render
from benchmarks.run_environment import describe_environment, product_commit
from harness.slurm_records import api_job_of
from harness.workflow import commands_by_action, entered, execution_arn, execution_statuses, history
from local_stack.api_gateway import ApiClient
from local_stack.slurm_cluster import DEFAULT_ADVERTISED_CPUS
from local_stack.stack import LocalStack
from slurm_job_api.head_node_program import TERMINAL_STATUSES

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "job-tracking.md"
DEFAULT_JOBS = (1, 100, 500)
PORT_BASE = 19817  # +10 per design; shifted by $SLURM_JOB_API_PORT_OFFSET
JOB_SECONDS = 30
# The local scheduler fires the sweep's schedule this often (the template's rate is SweepIntervalMinutes, 1 minute
# at least): short enough to measure several periods within a run.
SWEEP_PERIOD_SECONDS = 10.0
SUBMITTERS = 20  # clients: more than the local API's 16 requests in flight, so that 429s are retried
SCAN_SECONDS = 0.5
GO_CHECK_SECONDS = 2
STATUS_ACTIONS = ("status", "sweep")
DAEMONS = ("slurmctld", "slurmdbd", "mariadbd")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOOK_PROBE_RUNS = 20  # runs of the push hook at once whose CPU time (its sender included) is measured
INTRODUCTION = f"""\
What following running jobs costs in each `JobTracking` design, measured on the local stack (README, "The local
stack": a real Slurm 22.05 cluster with accounting, moto running the real state machine, the real handlers in
bounded local Lambda execution environments, this machine as the head node behind SSM). Each run starts a fresh
stack, submits N jobs through the local API at once (20 clients, 16 requests in flight: a 429 is retried after its
Retry-After with the same Idempotency-Key, as a 502, 503 or 504 is) and waits for all of them to end. Each job waits
until all N have been submitted (a file it checks every {GO_CHECK_SECONDS} s), then runs `sleep {JOB_SECONDS}`: the N
jobs run at once and end within seconds of each other, however long the submissions take on this machine. Designs:
`per-job-polling` (version 1; the template's poll schedule, PollMinSeconds 10), `sweep` (the schedule fired every
{SWEEP_PERIOD_SECONDS:g} s instead of every SweepIntervalMinutes; SafetyPollMinSeconds 150), `sweep+push` (the same,
with the push hook installed in slurmctld).

- **window**: from the first POST /jobs to the last job's record seen terminal (the submissions included: their
  time is in the notes); per-minute figures divide by it.
- **status SSM commands**: SendCommand of the head-node actions `status` and `sweep` (from the commands'
  comments); submit, collect and cancel commands are per job in every design and counted in the second table.
- **head-node CPU**: user + system seconds of the SSM commands' processes and their children (the scripts and the
  Slurm commands they run; `getrusage(RUSAGE_CHILDREN)` of the local head node's process), then of slurmctld,
  slurmdbd and mariadbd with their waited-for children (`/proc/<pid>/stat`), then, with the push, of the hook's
  runs: its sender detaches from slurmctld (setsid), so one job change's CPU is measured after the window (the
  installed hook run {HOOK_PROBE_RUNS} times at once under a child subreaper, its sender included) and multiplied
  by the job changes delivered.
- **slurmctld RPCs**: `sdiag`'s RPCs by message type, reset when the window starts, sdiag's own excluded.
- **transitions**: states entered in each job's execution history; **history events**: all of its events.
- **detection**: from Slurm's End (sacct, whole seconds) to the first scan of the jobs table (every
  {SCAN_SECONDS:g} s) that shows the job's record in a terminal status, as GET /jobs/{{id}} would answer.
- **lost**: a job whose record is not terminal, whose workflow did not succeed or that has no `result.json`;
  **duplicated**: an API job Slurm ran more than once (sacct, by the job's directory), or a POST retried after a 429
  that got another job id.
- Targets (issue 9): status SSM commands per minute independent of N, at most 2 per sweep period; detection p95
  at most 5 s with the push and one sweep period + 5 s without; at most 12 transitions per job; 0 lost, 0
  duplicated."""


@dataclass
class CpuSnapshot:
    children_seconds: float
    daemon_seconds: float

    @classmethod
    def take(cls, stack: LocalStack) -> CpuSnapshot:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        pids = stack.cluster.pids()
        return cls(usage.ru_utime + usage.ru_stime, sum(_process_cpu_seconds(pids[name]) for name in DAEMONS))


def _process_cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (its waited-for children included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


# Runs the installed push hook as slurmctld would, as a child subreaper (prctl PR_SET_CHILD_SUBREAPER) so that the
# senders the hook detaches are reparented to it and their CPU time is counted; prints the CPU seconds of all runs.
HOOK_PROBE = """
import ctypes, os, resource, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
hook, runs = sys.argv[1], int(sys.argv[2])
for run in range(runs):
    context = ("prolog_slurmctld", "epilog_slurmctld")[run % 2]
    subprocess.run([hook], env={"SLURM_SCRIPT_CONTEXT": context, "SLURM_JOB_ID": "999999999"}, check=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_utime + usage.ru_stime)
"""


def push_hook_cpu_seconds_per_run(stack: LocalStack) -> float:
    """CPU seconds one run of the installed push hook costs the head node, its detached sender's share included
    (HOOK_PROBE_RUNS runs at once, one sender for all; the probe's events reach the stack's bus like any other: they
    cost a sweep of no job)."""
    done = subprocess.run(
        [sys.executable, "-c", HOOK_PROBE, str(stack.cluster.push_hook_path), str(HOOK_PROBE_RUNS)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return float(done.stdout.strip()) / HOOK_PROBE_RUNS


def slurmctld_rpcs(stack: LocalStack) -> int:
    """RPCs slurmctld counted since the last reset, by message type, without sdiag's own (REQUEST_STATS_INFO)."""
    shown = stack.cluster.run("sdiag").stdout
    section = shown.split("Remote Procedure Call statistics by message type", 1)[-1]
    section = section.split("Remote Procedure Call statistics by user", 1)[0]
    total = 0
    for line in section.splitlines():
        name, _, rest = line.strip().partition(" ")
        if "count:" in rest and name != "REQUEST_STATS_INFO":
            total += int(rest.split("count:", 1)[1].split()[0])
    return total


@dataclass
class TerminalWatch:
    """When each job's record was first seen terminal: one Scan of the jobs table every SCAN_SECONDS."""

    stack: LocalStack
    job_ids: set[str] = field(default_factory=set)
    seen: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def follow(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name="terminal-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        dynamodb = self.stack.running_cloud.client("dynamodb")
        table = self.stack.running_cloud.table_name
        while not self._stop.wait(SCAN_SECONDS):
            now = time.time()
            pages = dynamodb.get_paginator("scan").paginate(
                TableName=table, ProjectionExpression="jobId, #s", ExpressionAttributeNames={"#s": "status"}
            )
            try:
                items = [item for page in pages for item in page["Items"]]
            except ClientError:  # moto's Scan can fail while items are written (retried by botocore, then here)
                continue
            for item in items:
                job_id, status = item["jobId"]["S"], item.get("status", {}).get("S")
                if status in TERMINAL_STATUSES and job_id not in self.seen:
                    self.seen[job_id] = now


def go_file(stack: LocalStack, name: str) -> Path:
    """The file whose existence lets the run's jobs go on from their start to their sleep (in the cluster's state
    directory, which the cluster user can search)."""
    return stack.cluster.state_dir / f"{name}.go"


def job_script(go: Path) -> str:
    """Waits until every job of the run has been submitted (``go`` exists), then sleeps JOB_SECONDS: all N jobs run
    at once and end within a few seconds of each other, however long the submissions took."""
    return f"#!/bin/bash\nuntil [ -e {go} ]; do sleep {GO_CHECK_SECONDS}; done\nsleep {JOB_SECONDS}\n"


# Answers a client retries with the same Idempotency-Key (the API may have accepted the job: the retry says which).
RETRIED_STATUSES = {429: "429", 502: "5xx", 503: "5xx", 504: "5xx"}
MAX_SERVER_ERROR_RETRIES = 10


def submit_all(stack: LocalStack, count: int, name: str) -> tuple[list[str], int, int, int]:
    """POSTs ``count`` jobs, SUBMITTERS at a time; (job ids, 429s retried, retries answered with another job id,
    502/503/504 answers retried)."""
    cloud = stack.running_cloud
    spec = {"name": name, "script": job_script(go_file(stack, name))}
    local = threading.local()
    throttled = Counter()
    lock = threading.Lock()

    def post(_index: int) -> str:
        if not hasattr(local, "client"):
            local.client = ApiClient(cloud.api_client().base_url, region=cloud.region)
        key = str(uuid.uuid4())
        server_errors = 0
        while True:
            answer = local.client.post("/jobs", json=spec, headers={"Idempotency-Key": key})
            kind = RETRIED_STATUSES.get(answer.status_code)
            if kind is None or (kind == "5xx" and server_errors >= MAX_SERVER_ERROR_RETRIES):
                break
            server_errors += kind == "5xx"
            with lock:
                throttled[kind] += 1
            time.sleep(float(answer.headers.get("Retry-After", "1")))
        if answer.status_code not in (200, 201, 202):
            raise RuntimeError(f"POST /jobs answered {answer.status_code}: {answer.text}")
        return answer.json()["jobId"]

    with ThreadPoolExecutor(max_workers=SUBMITTERS, thread_name_prefix="submitter") as pool:
        job_ids = list(pool.map(post, range(count)))
    return job_ids, throttled["429"], count - len(set(job_ids)), throttled["5xx"]


def slurm_ends(stack: LocalStack, name: str) -> tuple[dict[str, list[datetime]], int]:
    """Slurm's End of each allocation by API job (sacct, by the job's directory), and the most allocations that ran
    at once."""
    done = stack.cluster.run(
        "sacct", "--noheader", "--parsable2", "--allocations", "--allusers", f"--name={name}",
        "--starttime=now-1days", "--format=Start,End,WorkDir",
    )  # fmt: skip
    ends: dict[str, list[datetime]] = {}
    changes: list[tuple[datetime, int]] = []
    for line in done.stdout.splitlines():
        start, end, directory = line.split("|", 2)
        job_id = api_job_of(directory)
        if job_id and end not in ("", "Unknown"):
            ends.setdefault(job_id, []).append(datetime.fromisoformat(end).astimezone(UTC))
            if start not in ("", "Unknown", "None"):
                changes += [(datetime.fromisoformat(start), 1), (datetime.fromisoformat(end), -1)]
    running = most = 0
    for _moment, change in sorted(changes):
        running += change
        most = max(most, running)
    return ends, most


def cancel_leftover_jobs(stack: LocalStack) -> int:
    """Cancels the jobs a run that was interrupted left in the cluster (a running cluster is reused as it is): they
    would hold its CPUs and poll for a go file that never comes. Returns how many there were."""
    left = len(stack.cluster.run("squeue", "--noheader", "--format=%i").stdout.split())
    if left:
        stack.cluster.cancel_jobs()
    return left


def run_design(design: str, jobs: int, index: int, say: Callable[[str], None]) -> RunFigures:
    push = design == "sweep+push"
    stack = LocalStack(
        name=f"bench-tracking-{design.replace('+', '-')}",
        port_base=PORT_BASE + 10 * index,
        accounting=True,
        advertised_cpus=max(jobs, DEFAULT_ADVERTISED_CPUS),
        parameters={"JobTracking": "per-job-polling" if design == "per-job-polling" else "sweep"},
        schedule_period_seconds=SWEEP_PERIOD_SECONDS,
        push_hook=push,
    )
    name = f"bt{uuid.uuid4().hex[:8]}"
    notes: list[str] = []
    available_before_kb = meminfo_kb("MemAvailable")
    with stack:
        if left := cancel_leftover_jobs(stack):
            say(f"  {design} N={jobs}: cancelled {left} jobs an interrupted run had left in the cluster")
        cloud = stack.running_cloud
        watch = TerminalWatch(stack)
        memory = MemoryPeak()
        sampler = memory.follow()
        stack.cluster.run("sdiag", "--reset")
        before = CpuSnapshot.take(stack)
        watcher = watch.follow()
        started = time.time()
        job_ids, throttled, other_ids, server_errors = submit_all(stack, jobs, name)
        submitted = time.time() - started
        say(f"  {design} N={jobs}: submitted in {submitted:.0f} s ({throttled} 429s, {server_errors} 5xx retried)")
        go_file(stack, name).touch()
        notes.append(f"submitted in {submitted:.0f} s, then the jobs went on together")
        if server_errors:
            notes.append(f"{server_errors} POSTs answered 502/503/504 and retried with the same Idempotency-Key")
        watch.job_ids = set(job_ids)
        deadline = time.monotonic() + JOB_SECONDS + 300 + 3 * jobs
        while not watch.job_ids <= watch.seen.keys() and time.monotonic() < deadline:
            time.sleep(1)
        statuses = execution_statuses(cloud, job_ids, timeout=max(30, deadline - time.monotonic()))
        ended = max((watch.seen[job_id] for job_id in job_ids if job_id in watch.seen), default=time.time())
        window = ended - started
        after = CpuSnapshot.take(stack)
        rpcs = slurmctld_rpcs(stack)
        watch.stop()
        watcher.join()
        memory.stop()
        sampler.join()
        pushes = [d for d in cloud.event_delivery.deliveries if d.rule_name.startswith("SweepJobsFunction")]
        hook_runs = sum(len(d.event.get("detail", {}).get("jobs", [])) for d in pushes)
        hook_seconds = push_hook_cpu_seconds_per_run(stack) * hook_runs if push else 0.0
        if push:
            notes.append(
                f"push hook: {hook_runs} job changes in {len(pushes)} events delivered, "
                f"{hook_seconds / max(hook_runs, 1):.3f} CPU s each (hook and sender; {HOOK_PROBE_RUNS} at once)"
            )
        by_action = commands_by_action(cloud)
        invocations = Counter(entry.function_logical_id for entry in cloud.runtime.invocations)
        transitions, events_per_job, lost = [], [], 0
        histories = {job_id: history(cloud, execution_arn(cloud, job_id)) for job_id in job_ids}
        for job_id in job_ids:
            events = histories[job_id]
            transitions.append(len(entered(events)))
            events_per_job.append(len(events))
            lost += not _ended_well(stack, job_id, statuses.get(job_id), job_id in watch.seen)
        go_file(stack, name).unlink(missing_ok=True)
        ends, most_at_once = slurm_ends(stack, name)
        notes.append(f"at most {most_at_once} jobs running at once (sacct Start and End)")
        duplicated = other_ids + sum(len(ends.get(job_id, [])) > 1 for job_id in job_ids)
        detection = [
            watch.seen[job_id] - ends[job_id][0].timestamp()
            for job_id in job_ids
            if job_id in watch.seen and len(ends.get(job_id, [])) == 1
        ]
        notes.extend(detection_breakdown(cloud, histories, watch.seen, ends))
        if push:
            notes.extend(push_breakdown(cloud, slurm_job_ids(cloud), watch.seen, ends))
        if len(detection) < len(job_ids):
            notes.append(f"{len(job_ids) - len(detection)} jobs without a single Slurm End and a terminal record")
        not_succeeded = Counter(status for status in statuses.values() if status != "SUCCEEDED")
        if not_succeeded:
            notes.append(f"executions not SUCCEEDED: {dict(not_succeeded)}")
    total_kb = meminfo_kb("MemTotal")
    figures = RunFigures(
        design=design,
        jobs=jobs,
        sweep_period_seconds=SWEEP_PERIOD_SECONDS,
        window_seconds=window,
        status_commands=sum(by_action.get(action, 0) for action in STATUS_ACTIONS),
        commands_by_action=by_action,
        ssm_cpu_seconds=after.children_seconds - before.children_seconds,
        daemon_cpu_seconds=after.daemon_seconds - before.daemon_seconds,
        hook_cpu_seconds=hook_seconds,
        slurmctld_rpcs=rpcs,
        invocations_by_function=dict(invocations),
        transitions_per_job=transitions,
        history_events_per_job=events_per_job,
        detection_seconds=detection,
        lost=lost,
        duplicated=duplicated,
        throttled_posts=throttled,
        peak_memory_gib=(total_kb - memory.lowest_available_kb) / 1024**2,
        memory_rise_gib=(available_before_kb - memory.lowest_available_kb) / 1024**2,
        notes=notes,
    )
    return figures


def p50_p95(values: list[float]) -> str:
    """The median and 95th percentile of durations, as the notes print them."""
    return " / ".join(f"{percentile(values, q):.1f} s" if values else "—" for q in (0.5, 0.95))


def detection_breakdown(
    cloud, histories: dict[str, list[dict]], seen: dict[str, float], ends: dict[str, list[datetime]]
) -> list[str]:
    """Where the detection time goes, per job: Slurm's End to the wake of its workflow (the sweep's SendTaskSuccess,
    as the execution's history records it; a job that no wake ended has none), to the Invoke of the PollJob that
    found the end, to an environment of PollJob taking it (the wait for a free one), and from there to the record
    seen terminal (the poll itself, FinishJob's first write); and how long the sweeps took."""
    last_poll: dict[str, tuple[float, float]] = {}
    for entry in cloud.runtime.invocations_of("PollJobFunction"):
        job_id = entry.event.get("jobId") if isinstance(entry.event, dict) else None
        started = entry.started_at.timestamp()
        requested = (entry.requested_at or entry.started_at).timestamp()
        if started > last_poll.get(job_id, (0.0, 0.0))[1]:
            last_poll[job_id] = (requested, started)
    to_wake, wake_to_invoke, to_invoke, waited, to_seen = [], [], [], [], []
    waits_ended: Counter[str] = Counter()
    for events in histories.values():
        waits_ended.update(await_news_endings(events))
    for job_id, events in histories.items():
        if job_id not in seen or job_id not in last_poll or len(ends.get(job_id, [])) != 1:
            continue
        end = ends[job_id][0].timestamp()
        requested, started = last_poll[job_id]
        woken = last_wake(events)
        if woken is not None and woken <= requested:
            to_wake.append(woken - end)
            wake_to_invoke.append(requested - woken)
        to_invoke.append(requested - end)
        waited.append(started - requested)
        to_seen.append(seen[job_id] - started)
    sweeps = [
        entry.duration_seconds
        for entry in cloud.runtime.invocations_of("SweepJobsFunction")
        if isinstance(entry.result, dict) and entry.result.get("asked")
    ]

    lines = [
        f"detection split (p50 / p95): End to the final PollJob's Invoke {p50_p95(to_invoke)} (negative: it was "
        f"invoked before the end); its wait for an environment {p50_p95(waited)}; from its start to the record seen "
        f"terminal {p50_p95(to_seen)}"
    ]
    if to_wake:
        lines.append(
            f"{len(to_wake)} jobs ended by a wake: End to the wake {p50_p95(to_wake)}, the wake to PollJob's Invoke "
            f"{p50_p95(wake_to_invoke)} (p50 / p95)"
        )
    if waits_ended:
        lines.append(
            "waits for news ended: " + ", ".join(f"{count} {how}" for how, count in sorted(waits_ended.items()))
        )
    if sweeps:
        lines.append(f"{len(sweeps)} sweeps of at least one job took {p50_p95(sweeps)} (p50 / p95) each")
    sweep_outcomes = sweep_outcome_counts(cloud)
    if sweep_outcomes:
        lines.append("SweepJobs invocations: " + ", ".join(f"{how} {n}" for how, n in sweep_outcomes.items()))
    for action, (queued, ran) in head_node_seconds(cloud).items():
        lines.append(f"{action} commands on the head node: queued {p50_p95(queued)}, ran {p50_p95(ran)} (p50 / p95)")
    return lines


def slurm_job_ids(cloud) -> dict[str, str]:
    """The API job of each Slurm job id, from the jobs table."""
    dynamodb = cloud.client("dynamodb")
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=cloud.table_name, ProjectionExpression="jobId, slurmJobId"
    )
    return {
        item["slurmJobId"]["S"]: item["jobId"]["S"] for page in pages for item in page["Items"] if "slurmJobId" in item
    }


def push_breakdown(
    cloud, api_jobs: dict[str, str], seen: dict[str, float], ends: dict[str, list[datetime]]
) -> list[str]:
    """Where a pushed end's detection time goes: Slurm's End to the hook's record of it (its pushedAt), to the
    SweepJobs invocation of the event that carried it, to the start of the first sweep that began after the record,
    and from that start to the record seen terminal."""
    invocations = cloud.runtime.invocations_of("SweepJobsFunction")
    sweep_starts = sorted(
        entry.started_at.timestamp()
        for entry in invocations
        if isinstance(entry.result, dict) and not entry.result.get("coalesced")
    )
    to_push, to_invoke, to_sweep, to_seen = [], [], [], []
    for entry in invocations:
        detail = entry.event.get("detail", {}) if isinstance(entry.event, dict) else {}
        for change in detail.get("jobs", []):
            job_id = api_jobs.get(str(change.get("slurmJobId")))
            if change.get("state") != "ENDED" or job_id not in seen or len(ends.get(job_id, [])) != 1:
                continue
            pushed = datetime.fromisoformat(change["pushedAt"].replace("Z", "+00:00")).timestamp()
            to_push.append(pushed - ends[job_id][0].timestamp())
            to_invoke.append((entry.requested_at or entry.started_at).timestamp() - pushed)
            after = next((start for start in sweep_starts if start >= pushed), None)
            if after is not None:
                to_sweep.append(after - pushed)
                to_seen.append(seen[job_id] - after)

    return [
        f"pushed ends ({len(to_push)}), p50 / p95: End to the hook's record {p50_p95(to_push)}, to its event's "
        f"SweepJobs invocation {p50_p95(to_invoke)}, to the next sweep's start {p50_p95(to_sweep)}, that start to "
        f"the record seen terminal {p50_p95(to_seen)}"
    ]


# How a Task state's attempt ends, by history event type; an AwaitNews that ends otherwise is a safety poll's cause.
_TASK_ENDINGS = {
    "TaskSucceeded": "woken",
    "TaskTimedOut": "timed out (no heartbeat: a safety poll)",
    "TaskFailed": "failed",
    "LambdaFunctionFailed": "failed",
}


def await_news_endings(events: list[dict]) -> list[str]:
    """How each of the execution's AwaitNews attempts ended (woken, timed out, failed)."""
    endings, in_await = [], False
    for event in events:
        if "stateEnteredEventDetails" in event:
            in_await = event["stateEnteredEventDetails"]["name"] == "AwaitNews"
        elif in_await and event["type"] in _TASK_ENDINGS:
            endings.append(_TASK_ENDINGS[event["type"]])
    return endings


def sweep_outcome_counts(cloud) -> dict[str, int]:
    """What the SweepJobs invocations did: sweeps, coalesced pushes, failures by error type, throttled invocations,
    and the wakes and heartbeats the sweeps sent (the tasks gone among them)."""
    counts: Counter[str] = Counter()
    for entry in cloud.runtime.invocations_of("SweepJobsFunction"):
        if entry.error is not None:
            counts[f"failed ({entry.error.get('errorType')})"] += 1
        elif isinstance(entry.result, dict) and entry.result.get("coalesced"):
            counts["coalesced"] += 1
        elif isinstance(entry.result, dict):
            counts["swept"] += 1
            for key in ("woken", "heartbeats", "gone"):
                counts[key] += int(entry.result.get(key, 0))
    throttled = cloud.runtime.throttles("SweepJobsFunction")
    if throttled:
        counts["throttled"] = throttled
    return dict(counts)


def last_wake(events: list[dict]) -> float | None:
    """When the execution's last AwaitNews task was woken (its TaskSucceeded event), as a POSIX time."""
    woken = [
        event["timestamp"].timestamp()
        for event in events
        if event["type"] == "TaskSucceeded"
        and "waitForTaskToken"
        in event["taskSucceededEventDetails"]["resourceType"] + event["taskSucceededEventDetails"]["resource"]
    ]
    return max(woken, default=None)


def head_node_seconds(cloud) -> dict[str, tuple[list[float], list[float]]]:
    """Per status action, how long its SSM commands waited for one of the local head node's workers and ran."""
    actions = {}
    for page in cloud.client("ssm").get_paginator("list_commands").paginate():
        for command in page["Commands"]:
            words = command.get("Comment", "").split()
            if words[:1] == ["slurm-job-api"] and len(words) > 1 and words[1] in STATUS_ACTIONS:
                actions[command["CommandId"]] = words[1]
    seconds: dict[str, tuple[list[float], list[float]]] = {}
    for run in cloud.head_node.commands_run:
        action = actions.get(run.command_id)
        if action is None or run.started_at is None or run.elapsed_seconds is None:
            continue
        queued = (run.started_at - run.requested_at.replace(tzinfo=UTC)).total_seconds()
        seconds.setdefault(action, ([], []))[0].append(queued)
        seconds[action][1].append(run.elapsed_seconds)
    return seconds


def _ended_well(stack: LocalStack, job_id: str, execution_status: str | None, seen_terminal: bool) -> bool:
    cloud = stack.running_cloud
    try:
        cloud.client("s3").head_object(Bucket=cloud.bucket_name, Key=f"jobs/{job_id}/result.json")
    except Exception:  # noqa: BLE001 - any failure to find it: no result
        return False
    return execution_status == "SUCCEEDED" and seen_terminal


def _list(kind: Callable[[str], object], allowed: Sequence[object] | None = None) -> Callable[[str], list]:
    def parse(text: str) -> list:
        values = [kind(item) for item in text.split(",") if item]
        if not values or (allowed is not None and any(value not in allowed for value in values)):
            raise argparse.ArgumentTypeError(f"a comma-separated list of {allowed or 'numbers'}, not {text!r}")
        return values

    return parse


def main(argv: list[str] | None = None, say: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=_list(int), default=list(DEFAULT_JOBS), help="e.g. 1,100,500")
    parser.add_argument("--designs", type=_list(str, DESIGNS), default=list(DESIGNS))
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the Markdown file to write")
    args = parser.parse_args(argv)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    load = os.getloadavg()[0]
    commit = product_commit()  # before the first run rewrites the report, a tracked file
    started = time.monotonic()
    runs: list[RunFigures] = []
    words = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m benchmarks.job_tracking", *map(shlex.quote, words)])
    text = ""
    for jobs in args.jobs:
        for design in args.designs:
            runs.append(run_design(design, jobs, DESIGNS.index(design), say))
            say(render_run_line(runs[-1]))
            # Written after every run: what is done survives a run that cannot finish.
            environment = describe_environment(
                minutes=(time.monotonic() - started) / 60, load_at_start=load, commit=commit
            )
            environment["port offset ($SLURM_JOB_API_PORT_OFFSET)"] = os.environ.get("SLURM_JOB_API_PORT_OFFSET", "0")
            text = render(runs, command=command, environment=environment, introduction=INTRODUCTION)
            args.output.write_text(text)
    say(text)
    return 0


def render_run_line(run: RunFigures) -> str:
    misses = "; ".join(run.target_misses()) or "targets met"
    return f"  {run.design} N={run.jobs}: window {run.window_seconds:.0f} s, {misses}"


if __name__ == "__main__":
    raise SystemExit(main())
