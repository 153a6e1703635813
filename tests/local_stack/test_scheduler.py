"""The template's schedules: ScheduleSpec's rate parsing, template.yaml's sweep schedule as the template model reads
it, and LocalScheduler firing schedules through a plain fake `invoke` (no Lambda runtime, no moto)."""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local_stack.scheduler import LocalScheduler, ScheduleRun
from local_stack.template_model import ScheduleSpec, TemplateError, TemplateModel

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
SWEEP_FUNCTION = "SweepJobsFunction"

# Short periods keep the module fast; the waits are bounded polls, generous for a busy 2-core machine.
PERIOD = 0.05
WAIT_SECONDS = 5.0


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def spec(function: str = "TickFunction", expression: str = "rate(1 minute)", *, enabled: bool = True) -> ScheduleSpec:
    return ScheduleSpec(function_logical_id=function, event_name="Tick", expression=expression, enabled=enabled)


# ----- ScheduleSpec.period_seconds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate(3 days)", 3 * 86400),
    ],
)
def test_rate_expressions_give_their_period(expression: str, seconds: int) -> None:
    assert spec(expression=expression).period_seconds == seconds


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 12 * * ? *)",
        "at(2030-01-01T00:00:00)",
        "rate(0 minutes)",
        "rate(1 minutes)",
        "rate(2 minute)",
        "rate(1 hours)",
        "rate(2 day)",
        "rate(5 seconds)",
        "rate(-1 minutes)",
        "rate(1.5 minutes)",
        "rate(5minutes)",
        "garbage",
        "",
    ],
)
def test_other_expressions_are_refused(expression: str) -> None:
    with pytest.raises(TemplateError, match=r"rate\("):
        spec(expression=expression).period_seconds  # noqa: B018 - the property raises


def test_a_refused_expression_names_the_event() -> None:
    with pytest.raises(TemplateError, match=r"Resources\.TickFunction\.Properties\.Events\.Tick.*cron"):
        spec(expression="cron(0 12 * * ? *)").period_seconds  # noqa: B018


# ----- template.yaml's schedules --------------------------------------------------------------------------------------


@functools.cache
def template_model(**overrides: str) -> TemplateModel:
    """template.yaml read with `overrides` (and its one required parameter); each set of overrides is read once."""
    return TemplateModel(
        TEMPLATE, stack_name="scheduler-test", parameter_overrides={"ClusterName": "scheduler-test", **overrides}
    )


@pytest.fixture(scope="module")
def default_model() -> TemplateModel:
    return template_model()


def test_the_sweep_function_has_exactly_one_schedule(default_model: TemplateModel) -> None:
    (schedule,) = default_model.functions[SWEEP_FUNCTION].schedules
    assert schedule.function_logical_id == SWEEP_FUNCTION
    assert schedule.event_name == "Sweep"


def test_no_other_function_has_a_schedule(default_model: TemplateModel) -> None:
    with_schedules = {logical_id for logical_id, function in default_model.functions.items() if function.schedules}
    assert with_schedules == {SWEEP_FUNCTION}
    # Whatever the tracking, the sweep stays the only schedule (disabled, not gone, under per-job polling).
    polling = template_model(JobTracking="per-job-polling")
    assert {logical_id for logical_id, function in polling.functions.items() if function.schedules} == {SWEEP_FUNCTION}


@pytest.mark.parametrize(("job_tracking", "enabled"), [("sweep", True), ("per-job-polling", False)])
def test_the_sweep_schedule_is_enabled_only_when_the_cluster_is_swept(job_tracking: str, enabled: bool) -> None:
    (schedule,) = template_model(JobTracking=job_tracking).functions[SWEEP_FUNCTION].schedules
    assert schedule.enabled is enabled


def test_the_default_tracking_sweeps_every_minute(default_model: TemplateModel) -> None:
    (schedule,) = default_model.functions[SWEEP_FUNCTION].schedules
    assert schedule.enabled is True
    assert (schedule.expression, schedule.period_seconds) == ("rate(1 minute)", 60)


@pytest.mark.parametrize(
    ("minutes", "expression", "seconds"),
    [("1", "rate(1 minute)", 60), ("5", "rate(5 minutes)", 300), ("60", "rate(60 minutes)", 3600)],
)
def test_the_sweep_interval_parameter_sets_the_period(minutes: str, expression: str, seconds: int) -> None:
    (schedule,) = template_model(SweepIntervalMinutes=minutes).functions[SWEEP_FUNCTION].schedules
    assert (schedule.expression, schedule.period_seconds) == (expression, seconds)


# ----- LocalScheduler, with a fake invoke -----------------------------------------------------------------------------


@dataclass
class Call:
    function: str
    event: Any
    thread: int
    started: float
    ended: float | None = None


@dataclass
class FakeInvoke:
    """Records every invocation (with its start and end times); `sleep` and `failing` shape what an invocation does."""

    sleep: dict[str, float] = field(default_factory=dict)
    failing: dict[str, set[int]] = field(default_factory=dict)  # function -> the call numbers (from 0) that raise
    calls: list[Call] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, function: str, event: Any) -> None:
        call = Call(function, event, threading.get_ident(), time.monotonic())
        with self._lock:
            number = sum(1 for earlier in self.calls if earlier.function == function)
            self.calls.append(call)
            self.in_flight[function] = self.in_flight.get(function, 0) + 1
            self.max_in_flight[function] = max(self.max_in_flight.get(function, 0), self.in_flight[function])
        try:
            time.sleep(self.sleep.get(function, 0))
            if number in self.failing.get(function, set()):
                raise RuntimeError(f"{function} call {number} fails")
        finally:
            with self._lock:
                call.ended = time.monotonic()
                self.in_flight[function] -= 1

    def of(self, function: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.function == function]

    def count(self, function: str | None = None) -> int:
        with self._lock:
            return sum(1 for call in self.calls if function is None or call.function == function)


@pytest.fixture
def make_scheduler() -> Iterator[Callable[..., LocalScheduler]]:
    """Builds schedulers and stops every one of them at the end of the test, whatever happened."""
    made: list[LocalScheduler] = []

    def make(
        schedules: list[ScheduleSpec], invoke: FakeInvoke, period_seconds: float | None = PERIOD
    ) -> LocalScheduler:
        scheduler = LocalScheduler(schedules, invoke, period_seconds=period_seconds)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stop()


def run_of(scheduler: LocalScheduler, function: str) -> ScheduleRun:
    (run,) = [run for run in scheduler.runs if run.schedule.function_logical_id == function]
    return run


def schedule_threads_alive() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("schedule-")]


def test_only_enabled_schedules_run(make_scheduler: Callable[..., LocalScheduler]) -> None:
    invoke = FakeInvoke()
    scheduler = make_scheduler([spec("OnFunction"), spec("OffFunction", enabled=False)], invoke)
    assert [run.schedule.function_logical_id for run in scheduler.runs] == ["OnFunction"]
    scheduler.start()
    assert wait_until(lambda: invoke.count("OnFunction") >= 3)
    scheduler.stop()
    assert invoke.count("OffFunction") == 0


def test_each_tick_invokes_the_function_with_an_empty_event(make_scheduler: Callable[..., LocalScheduler]) -> None:
    invoke = FakeInvoke()
    scheduler = make_scheduler([spec("TickFunction")], invoke)
    scheduler.start()
    assert wait_until(lambda: invoke.count() >= 3)
    scheduler.stop()
    assert {(call.function, repr(call.event)) for call in invoke.calls} == {("TickFunction", "{}")}
    assert run_of(scheduler, "TickFunction").fired == invoke.count()
    assert run_of(scheduler, "TickFunction").failed == 0


def test_the_period_override_replaces_the_schedules_own(make_scheduler: Callable[..., LocalScheduler]) -> None:
    overridden = make_scheduler([spec(expression="rate(5 minutes)")], FakeInvoke(), period_seconds=0.1)
    assert [run.period_seconds for run in overridden.runs] == [0.1]
    own = make_scheduler([spec(expression="rate(5 minutes)")], FakeInvoke(), period_seconds=None)
    assert [run.period_seconds for run in own.runs] == [300]


def test_the_first_tick_comes_one_period_after_the_start(make_scheduler: Callable[..., LocalScheduler]) -> None:
    period = 0.3
    invoke = FakeInvoke()
    scheduler = make_scheduler([spec()], invoke, period_seconds=period)
    started = time.monotonic()
    scheduler.start()
    assert wait_until(lambda: invoke.count() >= 1)
    first = invoke.calls[0].started - started
    assert first >= period * 0.9, f"the first tick came {first:.3f} s after the start, not one period ({period} s)"
    assert first < period + 3.0


def test_ticks_of_one_schedule_never_overlap(make_scheduler: Callable[..., LocalScheduler]) -> None:
    # Each invocation lasts three periods: a timer that ignored it would have started the next ones meanwhile.
    invoke = FakeInvoke(sleep={"SlowFunction": 3 * PERIOD})
    scheduler = make_scheduler([spec("SlowFunction")], invoke)
    scheduler.start()
    assert wait_until(lambda: invoke.count() >= 4)
    scheduler.stop()
    calls = invoke.of("SlowFunction")
    assert invoke.max_in_flight["SlowFunction"] == 1
    for earlier, later in itertools.pairwise(calls):
        assert earlier.ended is not None
        # The next period starts when the invocation has ended.
        assert later.started - earlier.ended >= PERIOD * 0.8, [(c.started, c.ended) for c in calls]


def test_schedules_tick_independently(make_scheduler: Callable[..., LocalScheduler]) -> None:
    # A slow schedule holds back only itself: the quick one ticks on meanwhile.
    invoke = FakeInvoke(sleep={"SlowFunction": 1.0})
    scheduler = make_scheduler([spec("SlowFunction"), spec("QuickFunction")], invoke)
    scheduler.start()
    assert wait_until(lambda: invoke.count("SlowFunction") >= 1)
    slow = invoke.of("SlowFunction")[0]
    assert wait_until(lambda: sum(call.started >= slow.started for call in invoke.of("QuickFunction")) >= 3)
    scheduler.stop()  # waits for the slow invocation to end
    assert slow.ended is not None
    during_slow = [call for call in invoke.of("QuickFunction") if slow.started <= call.started <= slow.ended]
    assert len(during_slow) >= 3, f"the quick schedule ticked {len(during_slow)} times during the slow invocation"


def test_a_failed_invocation_is_counted_and_the_schedule_goes_on(
    make_scheduler: Callable[..., LocalScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    invoke = FakeInvoke(failing={"FlakyFunction": {0, 2}})
    scheduler = make_scheduler([spec("FlakyFunction")], invoke)
    scheduler.start()
    assert wait_until(lambda: invoke.count() >= 5)
    scheduler.stop()
    run = run_of(scheduler, "FlakyFunction")
    assert run.failed == 2
    assert run.fired == invoke.count() - 2 >= 3
    assert "scheduled invocation of FlakyFunction failed" in caplog.text


def test_stop_stops_the_ticks(make_scheduler: Callable[..., LocalScheduler]) -> None:
    invoke = FakeInvoke()
    scheduler = make_scheduler([spec()], invoke)
    scheduler.start()
    assert wait_until(lambda: invoke.count() >= 2)
    scheduler.stop()
    assert schedule_threads_alive() == []
    after_stop = invoke.count()
    time.sleep(5 * PERIOD)  # five periods in which a running schedule would have ticked
    assert invoke.count() == after_stop


def test_stop_waits_for_the_invocation_in_flight(make_scheduler: Callable[..., LocalScheduler]) -> None:
    invoke = FakeInvoke(sleep={"SlowFunction": 0.3})
    scheduler = make_scheduler([spec("SlowFunction")], invoke)
    scheduler.start()
    assert wait_until(lambda: invoke.in_flight.get("SlowFunction", 0) == 1)
    scheduler.stop()
    assert invoke.in_flight["SlowFunction"] == 0
    assert all(call.ended is not None for call in invoke.calls)


def test_start_after_stop_ticks_again(make_scheduler: Callable[..., LocalScheduler]) -> None:
    invoke = FakeInvoke()
    scheduler = make_scheduler([spec()], invoke)
    scheduler.start()
    assert wait_until(lambda: invoke.count() >= 1)
    scheduler.stop()
    after_stop = invoke.count()
    scheduler.start()
    assert wait_until(lambda: invoke.count() >= after_stop + 2), "the schedule did not tick again after start()"
    scheduler.stop()
    assert schedule_threads_alive() == []


def test_a_running_schedule_cannot_be_started_twice(make_scheduler: Callable[..., LocalScheduler]) -> None:
    invoke = FakeInvoke()
    scheduler = make_scheduler([spec()], invoke)
    scheduler.start()
    with pytest.raises(RuntimeError, match="already running"):
        scheduler.start()  # two loops of one schedule would overlap its ticks
    scheduler.stop()
    assert schedule_threads_alive() == []


def test_fire_invokes_once_in_the_callers_thread(make_scheduler: Callable[..., LocalScheduler]) -> None:
    invoke = FakeInvoke()
    scheduler = make_scheduler([spec("TickFunction")], invoke)
    run = run_of(scheduler, "TickFunction")
    scheduler.fire(run)
    assert [(call.function, call.event, call.thread) for call in invoke.calls] == [
        ("TickFunction", {}, threading.get_ident())
    ]
    assert (run.fired, run.failed) == (1, 0)


def test_fire_counts_a_failure_without_raising(make_scheduler: Callable[..., LocalScheduler]) -> None:
    invoke = FakeInvoke(failing={"TickFunction": {0}})
    scheduler = make_scheduler([spec("TickFunction")], invoke)
    run = run_of(scheduler, "TickFunction")
    scheduler.fire(run)
    assert (run.fired, run.failed) == (0, 1)
    scheduler.fire(run)
    assert (run.fired, run.failed) == (1, 1)
