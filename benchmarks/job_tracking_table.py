"""docs/job-tracking.md from the job-tracking benchmark's figures (pure: figures in, text out)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks.report_markdown import _table

DESIGNS = ("per-job-polling", "sweep", "sweep+push")
# The targets (issue 9, item 6).
PUSH_DETECTION_P95_SECONDS = 5.0
DETECTION_SLACK_SECONDS = 5.0  # without the push: one sweep period plus this
STATUS_COMMANDS_PER_SWEEP = 2
MAX_TRANSITIONS_PER_JOB = 12


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (the smallest value with at least ``fraction`` of the values at or below it);
    None for no values."""
    if not 0 < fraction <= 1:
        raise ValueError(f"a percentile's fraction is in (0, 1], not {fraction}")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class RunFigures:
    """What one run (one design, N concurrent jobs, a fresh local stack) measured."""

    design: str
    jobs: int
    sweep_period_seconds: float
    window_seconds: float  # from the first POST /jobs to the last job seen terminal
    status_commands: int  # SSM commands that ask Slurm about jobs' statuses (actions status and sweep)
    commands_by_action: Mapping[str, int]
    ssm_cpu_seconds: float  # the SSM commands' processes and their children on the head node
    daemon_cpu_seconds: float  # slurmctld, slurmdbd, mariadbd
    hook_cpu_seconds: float  # the push hook's runs (0 without the push)
    slurmctld_rpcs: int  # sdiag, every message type but sdiag's own
    invocations_by_function: Mapping[str, int]
    transitions_per_job: Sequence[int]  # states entered, per job (all of its executions)
    history_events_per_job: Sequence[int]
    detection_seconds: Sequence[float]  # Slurm's End (sacct, whole seconds) to the record first seen terminal
    lost: int
    duplicated: int
    throttled_posts: int  # 429 answers retried with the same Idempotency-Key
    peak_memory_gib: float  # MemTotal minus the lowest MemAvailable during the run (the machine's other work too)
    memory_rise_gib: float  # MemAvailable before the stack started minus its lowest during the run
    notes: Sequence[str] = field(default_factory=tuple)

    @property
    def minutes(self) -> float:
        return max(self.window_seconds, 1e-9) / 60

    def per_minute(self, count: float) -> float:
        return count / self.minutes

    @property
    def invocations(self) -> int:
        return sum(self.invocations_by_function.values())

    def target_misses(self) -> list[str]:
        """The issue's targets this run missed, each with by how much. Those of the commands, the detection and the
        transitions are the sweep's (per-job polling is the baseline); no job may be lost or duplicated in any."""
        misses: list[str] = []
        p95 = percentile(self.detection_seconds, 0.95)
        if self.design != "per-job-polling":
            allowed = STATUS_COMMANDS_PER_SWEEP * 60 / self.sweep_period_seconds
            if self.per_minute(self.status_commands) > allowed:
                misses.append(
                    f"status SSM commands {self.per_minute(self.status_commands):.1f}/min > {allowed:.0f}/min"
                )
            limit = (
                PUSH_DETECTION_P95_SECONDS
                if self.design == "sweep+push"
                else self.sweep_period_seconds + DETECTION_SLACK_SECONDS
            )
            if p95 is None or p95 > limit:
                misses.append(f"detection p95 {_maybe_seconds(p95)} > {limit:.0f} s")
            if self.transitions_per_job and max(self.transitions_per_job) > MAX_TRANSITIONS_PER_JOB:
                most = max(self.transitions_per_job)
                misses.append(f"transitions per job up to {most} > {MAX_TRANSITIONS_PER_JOB}")
        if self.lost:
            misses.append(f"{self.lost} lost")
        if self.duplicated:
            misses.append(f"{self.duplicated} duplicated")
        return misses


def _maybe_seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _mean_max(values: Sequence[int]) -> str:
    if not values:
        return "—"
    return f"{sum(values) / len(values):.1f} ({max(values)})"


def summary_rows(runs: Sequence[RunFigures]) -> list[list[object]]:
    rows: list[list[object]] = []
    for run in runs:
        rows.append(
            [
                run.design,
                run.jobs,
                f"{run.window_seconds:.0f} s",
                f"{run.per_minute(run.status_commands):.1f} ({run.status_commands})",
                f"{run.ssm_cpu_seconds:.1f} + {run.daemon_cpu_seconds:.1f} + {run.hook_cpu_seconds:.1f}",
                f"{run.per_minute(run.slurmctld_rpcs):.0f}",
                f"{run.invocations / run.jobs:.1f}",
                _mean_max(run.transitions_per_job),
                _mean_max(run.history_events_per_job),
                f"{_maybe_seconds(percentile(run.detection_seconds, 0.5))} / "
                f"{_maybe_seconds(percentile(run.detection_seconds, 0.95))}",
                run.lost,
                run.duplicated,
                "; ".join(run.target_misses())
                or ("baseline: none lost or duplicated" if run.design == DESIGNS[0] else "all met"),
            ]
        )
    return rows


SUMMARY_HEADER = (
    "design",
    "N",
    "window",
    "status SSM commands/min (total)",
    "head-node CPU s: SSM commands + Slurm daemons + push hook",
    "slurmctld RPCs/min",
    "Lambda invocations/job",
    "transitions/job, mean (max)",
    "history events/job, mean (max)",
    "detection p50 / p95",
    "lost",
    "duplicated",
    "targets",
)


def invocation_rows(runs: Sequence[RunFigures]) -> tuple[list[str], list[list[object]]]:
    functions = sorted({name for run in runs for name in run.invocations_by_function})
    header = ["design", "N", *functions, "SSM commands by action", "429s retried", "peak memory used (rise in the run)"]
    rows = [
        [
            run.design,
            run.jobs,
            *(run.invocations_by_function.get(name, 0) for name in functions),
            ", ".join(f"{action}: {count}" for action, count in sorted(run.commands_by_action.items())) or "—",
            run.throttled_posts,
            f"{run.peak_memory_gib:.1f} GiB ({run.memory_rise_gib:+.1f} GiB)",
        ]
        for run in runs
    ]
    return header, rows


def render(
    runs: Sequence[RunFigures],
    *,
    command: str,
    environment: Mapping[str, str],
    introduction: str,
) -> str:
    lines = ["# Job tracking: per-job polling and the sweep, side by side", "", introduction, ""]
    lines += [f"Regenerate with `make tracking-benchmark` (all designs, N = 1, 100, 500). This table: `{command}`.", ""]
    lines += [f"- {label}: {value}" for label, value in environment.items()]
    lines += ["", "## Figures", ""]
    lines += _table(SUMMARY_HEADER, summary_rows(runs))
    header, rows = invocation_rows(runs)
    lines += ["", "## Lambda invocations by function, SSM commands by action, memory", ""]
    lines += _table(header, rows)
    notes = [f"- {run.design}, N={run.jobs}: {note}" for run in runs for note in run.notes]
    if notes:
        lines += ["", "## Notes of the runs", "", *notes]
    return "\n".join(lines) + "\n"
