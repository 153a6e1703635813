"""What a day-long job costs with the template's default poll schedule, on the real state machine with time
compressed (harness/long_jobs.py): a change to the schedule that makes long jobs expensive fails here."""

from __future__ import annotations

import os

import pytest

from harness.long_jobs import CASES, SWEEPS_PER_JOB, ScriptedCloud, measure_long_job

# A fixed 60 s poll would cost a day-long job about 13,000 events; the growing wait keeps it to a few hundred.
DAY_EVENT_BUDGET = 1_000
DAY_TRANSITION_BUDGET = 300


@pytest.mark.skipif(os.geteuid() != 0, reason="the head-node program switches to the cluster user: needs root")
def test_a_day_long_job_costs_a_few_hundred_transitions_in_one_execution():
    case = CASES["24 h"]
    with ScriptedCloud() as scripted:
        cost = measure_long_job(scripted, case, timeout=300)
    assert cost.status == "COMPLETED" and cost.executions == 1
    assert cost.events < DAY_EVENT_BUDGET and cost.transitions < DAY_TRANSITION_BUDGET, cost
    # Each poll round is a Wait, a Task and a Choice: the transitions follow the polls.
    assert 3 * cost.polls <= cost.transitions <= 3 * cost.polls + 10
    # The end was noticed within PollFraction (0.1) of the run time, as the schedule promises.
    assert 0 <= cost.noticed_after_seconds <= 0.1 * case.job_seconds + 10


@pytest.mark.skipif(os.geteuid() != 0, reason="the head-node program switches to the cluster user: needs root")
def test_a_week_long_job_under_the_sweep_costs_at_most_twelve_transitions():
    """Waiting for news, a job costs the same whatever its length: heartbeats are neither transitions nor events."""
    case = CASES["7 d, sweep"]
    with ScriptedCloud(dict(case.parameters)) as scripted:
        cost = measure_long_job(scripted, case, timeout=300)
    assert cost.status == "COMPLETED" and cost.executions == 1, cost
    assert cost.transitions <= 12 and cost.polls == 1, cost  # the one PollJob the sweep's news woke
    assert cost.events < 100, cost
    assert 0 <= cost.noticed_after_seconds <= case.job_seconds / SWEEPS_PER_JOB, cost
