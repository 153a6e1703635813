"""What a long job costs in Step Functions history events and state transitions, measured with time compressed.

The real state machine (statemachine/job.asl.json) runs in moto with the real handlers and the real head-node program
(through SSM on this machine) over scripted Slurm (harness/state_slurm.py). Time is compressed, not computed:

- moto's Wait state does not sleep: it advances a virtual clock by the seconds it would have waited;
- the poll step sees the virtual elapsed time: its event's ``job.submittedAt`` is moved back by the virtual time, so
  the product's poll schedule (poll_schedule.py) grows the wait exactly as it would in real time;
- the scripted Slurm answers RUNNING until the virtual clock passes the job's length, then COMPLETED.

Under ``JobTracking`` sweep there is no Wait: the workflow waits in AwaitNews, and the cluster's sweep (fired by the
local scheduler every SWEEP_PERIOD_SECONDS of real time) keeps it alive with heartbeats until it sees the job end.
Each real sweep advances the virtual clock by 1/SWEEPS_PER_JOB of the job's length: it stands for the sweeps of that
span, every one of which would find the job running and send a heartbeat, which Step Functions counts neither as a
transition nor as a history event. So the counts are those of a sweep every minute; only the end is noticed up to
one step late here (what a real sweep period costs in latency is measured on real Slurm, not here).

Every poll and every sweep still runs for real (Lambda handler, SSM command, head-node program, scripted squeue), and
the counts come from ``get_execution_history`` of every execution of the job (a long job continues as new
executions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from itertools import groupby
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

from harness.state_slurm import ENDED_ANSWERS, RUNNING_ANSWERS, StateSlurm, slurm_config
from harness.workflow import execution_arn, history, submit
from local_stack.cloud import LocalCloud
from local_stack.lambda_runtime import Interceptor
from local_stack.slurm_cluster import checkout_user_name, ensure_cluster_user, remove_job_files
from local_stack.ssm_head_node import LocalHeadNode
from slurm_job_api.clock import iso
from slurm_job_api.poll_schedule import PollSchedule

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
# The user the scripted head node runs jobs as; its own, so that no other test's clean-up removes its job directories.
BENCHMARK_USER = checkout_user_name("sjapi-bench")
JOB_LENGTHS: Mapping[str, int] = {"1 h": 3_600, "24 h": 86_400, "7 d": 604_800}
# Step Functions fails an execution at this many history events (docs/facts.md, "AWS Step Functions").
EXECUTION_EVENT_LIMIT = 25_000
CONTINUED = "ContinuedAsNewExecution"


# Under the sweep: real seconds between two sweeps, and how many sweeps a job's length is cut into.
SWEEP_PERIOD_SECONDS = 0.2
SWEEPS_PER_JOB = 8


class VirtualClock:
    """Seconds of waiting skipped so far; runs ``action`` once when the clock first reaches ``at_seconds``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0
        self._alarms: list[tuple[float, Callable[[], None]]] = []

    @property
    def seconds(self) -> float:
        with self._lock:
            return self._seconds

    def when(self, at_seconds: float, action: Callable[[], None]) -> None:
        with self._lock:
            self._alarms.append((at_seconds, action))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._seconds += seconds
            due = [alarm for alarm in self._alarms if alarm[0] <= self._seconds]
            self._alarms = [alarm for alarm in self._alarms if alarm[0] > self._seconds]
        for _, action in due:
            action()


@contextmanager
def waits_on(clock: VirtualClock) -> Iterator[None]:
    """moto's Wait states advance ``clock`` instead of sleeping (this process, while the context lasts)."""
    original = WaitFunction._wait_interval

    def advance(self: WaitFunction, env: Any, wait_seconds: int) -> None:
        clock.advance(wait_seconds)

    WaitFunction._wait_interval = advance  # type: ignore[method-assign]
    try:
        yield
    finally:
        WaitFunction._wait_interval = original  # type: ignore[method-assign]


# The times of the job's progress the poll function holds against its own clock: the last contact and the start of an
# outage (progress.after_lost_contact). They are kept in virtual time: moved back on the way in, forward on the way out.
CONTACT_TIMES = ("lastContactAt", "unreachableSince")


def _shifted(text: str, seconds: float) -> str:
    return iso(datetime.fromisoformat(text) + timedelta(seconds=seconds))


def in_virtual_time(clock: VirtualClock) -> Interceptor:
    """A PollJobFunction interceptor: the handler sees the job submitted ``clock.seconds`` earlier than it was, and
    its last contact and outage as long ago as they were in virtual time.

    The real submission time goes back into the state the handler returns, so the shift never accumulates.
    """

    def interceptor(event: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        seconds = clock.seconds
        job = event["job"]
        submitted_at = job["submittedAt"]
        job["submittedAt"] = _shifted(submitted_at, -seconds)
        for name in CONTACT_TIMES:
            if job.get(name):
                job[name] = _shifted(job[name], -seconds)
        result = call_next(event, context)
        if isinstance(result, dict):
            result["submittedAt"] = submitted_at
            for name in CONTACT_TIMES:
                if result.get(name):
                    result[name] = _shifted(result[name], seconds)
        return result

    return interceptor


@contextmanager
def retries_on(clock: VirtualClock) -> Iterator[None]:
    """moto's Retry intervals advance ``clock`` instead of sleeping (this process, while the context lasts)."""
    saved = retrier_decl.time
    retrier_decl.time = SimpleNamespace(sleep=clock.advance)  # the module's only use of time is its sleep
    try:
        yield
    finally:
        retrier_decl.time = saved


class SweepsInVirtualTime:
    """Interceptors that make each sweep move the virtual clock on by ``step_seconds``, from when the job's workflow
    waits for news (a sweep before that finds no job to stand for) to the sweep that saw the job end."""

    def __init__(self, clock: VirtualClock, step_seconds: float) -> None:
        self._clock = clock
        self._step_seconds = step_seconds
        self._waiting = threading.Event()
        self.noticed_at: float | None = None

    def await_news(self, event: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        result = call_next(event, context)
        self._waiting.set()
        return result

    def sweep(self, event: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        if self._waiting.is_set() and self.noticed_at is None:
            self._clock.advance(self._step_seconds)
        result = call_next(event, context)
        if isinstance(result, dict) and result.get("reasons", {}).get("ended") and self.noticed_at is None:
            self.noticed_at = self._clock.seconds  # the virtual time of the sweep that saw the end
        return result


@dataclass(frozen=True)
class LongJobCase:
    """A job length and the configuration it runs under (template parameters, what the cluster reports)."""

    label: str
    job_seconds: int
    accounting: bool = True
    min_job_age: int = 300
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def swept(self) -> bool:
        return dict(self.parameters).get("JobTracking") == "sweep"


SWEPT = (("JobTracking", "sweep"),)
DEFAULT_SCHEDULE_CASES = tuple(LongJobCase(label, seconds) for label, seconds in JOB_LENGTHS.items())
CAP_CASES = (
    LongJobCase("24 h, MaxPollsPerExecution 10", JOB_LENGTHS["24 h"], parameters=(("MaxPollsPerExecution", "10"),)),
    LongJobCase("24 h, no accounting (MinJobAge 300 s)", JOB_LENGTHS["24 h"], accounting=False),
)
SWEEP_CASES = tuple(LongJobCase(f"{label}, sweep", seconds, parameters=SWEPT) for label, seconds in JOB_LENGTHS.items())
CASES = {case.label: case for case in (*DEFAULT_SCHEDULE_CASES, *CAP_CASES, *SWEEP_CASES)}


def predicted_polls(case: LongJobCase) -> int:
    """The polls the product's poll schedule alone predicts for the case, as if polling took no time: a cross-check
    of the measurement (the first wait is PollMinSeconds, as after a submission)."""
    parameters = dict(case.parameters)
    schedule = PollSchedule(
        min_seconds=int(parameters.get("PollMinSeconds", PollSchedule.min_seconds)),
        max_seconds=int(parameters.get("PollMaxSeconds", PollSchedule.max_seconds)),
        fraction=float(parameters.get("PollFraction", PollSchedule.fraction)),
    )
    elapsed, polls = float(schedule.min_seconds), 1
    while elapsed < case.job_seconds:
        elapsed += schedule.next_wait(elapsed, min_job_age=case.min_job_age, accounting=case.accounting)
        polls += 1
    return polls


@dataclass(frozen=True)
class LongJobCost:
    """What one job of ``job_seconds`` cost, over all executions of its workflow."""

    label: str
    job_seconds: int
    accounting: bool
    min_job_age: int
    max_polls_per_execution: int
    status: str
    executions: int
    events: int
    transitions: int
    polls: int
    max_events_per_execution: int
    noticed_after_seconds: float  # virtual seconds from the job's end to the poll that saw it
    wall_seconds: float


@dataclass(frozen=True)
class ExecutionCount:
    name: str
    status: str
    events: int
    transitions: int
    polls: int
    continued: bool


def count_execution(cloud: LocalCloud, name: str, timeout: float) -> ExecutionCount:
    """Waits for one execution to end and counts its history: events, states entered, PollJob entered."""
    sfn = cloud.client("stepfunctions")
    arn = execution_arn(cloud, name)
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {name} still running after {timeout:.0f} s")
        time.sleep(0.2)
    events = history(cloud, arn)
    entered = [event["stateEnteredEventDetails"]["name"] for event in events if "stateEnteredEventDetails" in event]
    return ExecutionCount(
        name=name,
        status=described["status"],
        events=len(events),
        transitions=len(entered),
        polls=entered.count("PollJob"),
        continued=bool(entered) and entered[-1] == CONTINUED,
    )


class ScriptedCloud:
    """The local cloud over scripted Slurm, with the template's default poll schedule unless ``parameters`` say
    otherwise. The head node makes command invocations visible at once (it only saves wall time: the workflow's
    history is the same)."""

    def __init__(self, parameters: Mapping[str, str] | None = None) -> None:
        self.parameters = {"JobTracking": "per-job-polling", **(parameters or {})}
        self._directory: Path | None = None
        self.slurm: StateSlurm | None = None
        self.cloud: LocalCloud | None = None

    def __enter__(self) -> ScriptedCloud:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        ensure_cluster_user(BENCHMARK_USER)
        self._directory = Path(tempfile.mkdtemp(prefix="sjapi-long-jobs-"))
        self._directory.chmod(0o755)
        self.slurm = StateSlurm(self._directory)
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        self.cloud = LocalCloud(
            TEMPLATE,
            parameter_overrides={
                "ClusterName": "long-jobs",
                "ClusterUser": BENCHMARK_USER,
                "SlurmBinDir": str(self.slurm.bin_dir),
                # Per-job polling (the default here): each workflow polls its own job on the virtual clock. Under
                # the sweep, a job waits in one AwaitNews state kept alive by the sweep's heartbeats.
                **self.parameters,
            },
            head_node=LocalHeadNode(invocation_visibility_delay=0.0),
            schedule_period_seconds=SWEEP_PERIOD_SECONDS if self.parameters["JobTracking"] == "sweep" else None,
        )
        self.cloud.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.cloud is not None:
            self.cloud.stop()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        remove_job_files(ensure_cluster_user(BENCHMARK_USER))


def measure_long_job(scripted: ScriptedCloud, case: LongJobCase, *, timeout: float = 1800) -> LongJobCost:
    """Runs one job of ``case.job_seconds`` (virtual) through the API and counts what its workflow cost.

    ``scripted`` must run with ``case.parameters`` (see :func:`measure`).
    """
    cloud, slurm = scripted.cloud, scripted.slurm
    if cloud is None or slurm is None:
        raise RuntimeError("use measure_long_job inside `with ScriptedCloud(...)`")
    config = slurm_config(accounting=case.accounting, min_job_age=case.min_job_age)
    slurm.configure(config)
    slurm.show(RUNNING_ANSWERS)
    clock = VirtualClock()
    clock.when(case.job_seconds, lambda: slurm.show(ENDED_ANSWERS))
    started = time.monotonic()
    sweeps = SweepsInVirtualTime(clock, case.job_seconds / SWEEPS_PER_JOB)
    with (
        cloud.runtime.intercepted("PollJobFunction", in_virtual_time(clock)),
        cloud.runtime.intercepted("AwaitNewsFunction", sweeps.await_news),
        cloud.runtime.intercepted("SweepJobsFunction", sweeps.sweep),
        waits_on(clock),
    ):
        job_id = submit(cloud.api_client(), {"name": "long-job", "script": "#!/bin/bash\nsleep infinity\n"})
        executions = [count_execution(cloud, job_id, timeout)]
        while executions[-1].continued:
            executions.append(count_execution(cloud, f"{job_id}_{len(executions)}", timeout))
    return LongJobCost(
        label=case.label,
        job_seconds=case.job_seconds,
        accounting=case.accounting,
        min_job_age=case.min_job_age,
        max_polls_per_execution=int(scripted.parameters.get("MaxPollsPerExecution", "2000")),
        status=cloud.api_client().get(f"/jobs/{job_id}").json()["status"],
        executions=len(executions),
        events=sum(execution.events for execution in executions),
        transitions=sum(execution.transitions for execution in executions),
        polls=sum(execution.polls for execution in executions),
        max_events_per_execution=max(execution.events for execution in executions),
        noticed_after_seconds=(sweeps.noticed_at if case.swept and sweeps.noticed_at is not None else clock.seconds)
        - case.job_seconds,
        wall_seconds=round(time.monotonic() - started, 1),
    )


def measure(cases: Iterable[LongJobCase]) -> list[LongJobCost]:
    """Measures the cases in order, one local cloud per distinct set of template parameters."""
    costs = []
    for parameters, group in groupby(cases, key=lambda case: case.parameters):
        with ScriptedCloud(dict(parameters)) as scripted:
            costs.extend(measure_long_job(scripted, case) for case in group)
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.long_jobs", description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=list(CASES), choices=list(CASES), metavar="CASE")
    parser.add_argument("--json", type=Path, help="write the costs to this file as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    costs = measure(CASES[label] for label in args.cases)
    if args.json:
        args.json.write_text(json.dumps([asdict(cost) for cost in costs], indent=2))
    for cost in costs:
        print(cost, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
