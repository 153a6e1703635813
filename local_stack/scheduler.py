"""The template's schedules, fired on this machine (moto's EventBridge and Scheduler store schedules, never fire them).

Each enabled ``Schedule``/``ScheduleV2`` event of a function invokes the function through the local Lambda runtime
every period, with an empty event (the schedules declare no Input), one invocation at a time per schedule (the next
period starts when the invocation has ended, as a function with a reserved concurrency of 1 never runs twice at once).
``period_seconds`` overrides every period: the local stack compresses time with it (EventBridge's shortest rate is
one minute).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local_stack.template_model import ScheduleSpec

logger = logging.getLogger(__name__)

Invoke = Callable[[str, Any], Any]


@dataclass
class ScheduleRun:
    schedule: ScheduleSpec
    period_seconds: float
    fired: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None


class LocalScheduler:
    def __init__(self, schedules: list[ScheduleSpec], invoke: Invoke, *, period_seconds: float | None = None) -> None:
        enabled = [schedule for schedule in schedules if schedule.enabled]
        self._runs = [ScheduleRun(schedule, period_seconds or schedule.period_seconds) for schedule in enabled]
        self._invoke = invoke

    @property
    def runs(self) -> list[ScheduleRun]:
        return list(self._runs)

    def start(self) -> None:
        """Starts every schedule's ticks (again, after stop: the first tick comes one period later)."""
        for run in self._runs:
            if run._thread is not None:
                raise RuntimeError(f"the schedule of {run.schedule.function_logical_id} is already running")
            run._stop.clear()
            run._thread = threading.Thread(
                target=self._loop, args=(run,), name=f"schedule-{run.schedule.function_logical_id}", daemon=True
            )
            run._thread.start()

    def stop(self) -> None:
        for run in self._runs:
            run._stop.set()
        for run in self._runs:
            if run._thread is not None:
                run._thread.join(timeout=150)  # an invocation in flight ends within its function's timeout
                if run._thread.is_alive():
                    raise RuntimeError(f"the schedule of {run.schedule.function_logical_id} did not stop")
                run._thread = None

    def _loop(self, run: ScheduleRun) -> None:
        # The first tick comes one period after the start, as a new schedule's does.
        while not run._stop.wait(run.period_seconds):
            self.fire(run)

    def fire(self, run: ScheduleRun) -> None:
        """One tick of `run`'s schedule: its function, invoked once (here, in the caller's thread)."""
        try:
            self._invoke(run.schedule.function_logical_id, {})
            run.fired += 1
        except Exception:  # a failed invocation is the function's business; the schedule goes on
            run.failed += 1
            logger.exception("scheduled invocation of %s failed", run.schedule.function_logical_id)
