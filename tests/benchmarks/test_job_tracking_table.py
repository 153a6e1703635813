"""The pure part of the job-tracking benchmark (benchmarks/job_tracking_table.py): percentiles, the targets and the
table of docs/job-tracking.md."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.job_tracking_table import RunFigures, percentile, render, summary_rows


def figures(**changes) -> RunFigures:
    base = RunFigures(
        design="sweep",
        jobs=4,
        sweep_period_seconds=10,
        window_seconds=120,
        status_commands=20,
        commands_by_action={"submit": 4, "sweep": 12, "status": 8, "collect": 4},
        ssm_cpu_seconds=1.25,
        daemon_cpu_seconds=0.5,
        hook_cpu_seconds=0.0,
        slurmctld_rpcs=300,
        invocations_by_function={"ApiFunction": 4, "SweepJobsFunction": 12},
        transitions_per_job=[9, 9, 9, 11],
        history_events_per_job=[33, 33, 33, 40],
        detection_seconds=[4.0, 1.0, 3.0, 2.0],
        lost=0,
        duplicated=0,
        throttled_posts=1,
        peak_memory_gib=7.5,
        memory_rise_gib=2.0,
    )
    return dataclasses.replace(base, **changes)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(list(reversed(values)), 1.0) == 100
    assert percentile([7.0], 0.95) == 7
    assert percentile([2.0, 1.0], 0.5) == 1  # the lower one: half of the values are at or below it
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_figures_per_minute_and_the_sweeps_targets() -> None:
    run = figures()
    assert run.per_minute(run.status_commands) == 10  # 20 in two minutes
    assert run.target_misses() == []
    # 2 per 10 s period: 12 a minute is the most; the detection may take a period + 5 s.
    slow = figures(status_commands=26, detection_seconds=[16.0] * 20, transitions_per_job=[13])
    assert slow.target_misses() == [
        "status SSM commands 13.0/min > 12/min",
        "detection p95 16.0 s > 15 s",
        "transitions per job up to 13 > 12",
    ]
    assert figures(design="sweep+push", detection_seconds=[6.0]).target_misses() == ["detection p95 6.0 s > 5 s"]
    assert figures(detection_seconds=[]).target_misses() == ["detection p95 — > 15 s"]


def test_per_job_polling_is_the_baseline_but_may_lose_or_duplicate_nothing() -> None:
    polling = figures(design="per-job-polling", status_commands=900, transitions_per_job=[15], detection_seconds=[30])
    assert polling.target_misses() == []
    assert figures(design="per-job-polling", lost=2, duplicated=1).target_misses() == ["2 lost", "1 duplicated"]


def test_the_table_has_one_row_per_run_with_the_issues_figures() -> None:
    runs = [figures(design="per-job-polling", status_commands=60), figures(), figures(design="sweep+push", jobs=1)]
    (row, *_) = summary_rows(runs[1:])
    assert row == [
        "sweep", 4, "120 s", "10.0 (20)", "1.2 + 0.5 + 0.0", "150", "4.0", "9.5 (11)", "34.8 (40)", "2.0 s / 4.0 s",
        0, 0, "all met",
    ]  # fmt: skip
    text = render(runs, command="make tracking-benchmark", environment={"date": "today"}, introduction="Intro.")
    lines = text.splitlines()
    assert lines[0].startswith("# ") and "Intro." in lines and "- date: today" in lines
    table = [line for line in lines if line.startswith("| per-job-polling") or line.startswith("| sweep")]
    assert len(table) == 6  # each run in both tables
    assert "| baseline: none lost or duplicated |" in table[0]  # per-job polling is not held to the sweep's targets
    assert "collect: 4, status: 8, submit: 4, sweep: 12" in text and "7.5 GiB (+2.0 GiB)" in text
    assert all(line.count("|") == lines[lines.index(table[0]) - 2].count("|") for line in table[:3])
