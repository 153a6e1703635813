"""The head node's push events going wrong, on the real local stack over real Slurm whose slurmctld runs the product's
push hook: events lost, delayed past the job's end, delivered twice; and the sweep, a push and the safety poll acting
on the same job end. Never a double finish: every job ends once with the right status, a record and a result.json."""

from __future__ import annotations

import pytest

from harness.sweep_scenarios import DELAYED, LOST, TWICE, push_faults, tracking_race
from harness.workflow import SAFETY_POLL
from slurm_job_api.sweep_news import ENDED
from tests.faults.test_sweep_faults import assert_every_job_ended_once

pytestmark = pytest.mark.slurm


def test_pushes_lost_delayed_or_delivered_twice_never_finish_a_job_twice(push_faults_cluster):
    result = push_faults(push_faults_cluster)
    assert_every_job_ended_once(result, jobs=6)
    evidence, injected = result.evidence, result.faults_injected
    # Each job pushed its start and its end, in events the hook's sender filled with what it had at hand: two jobs
    # of each row, so four changes each in the events lost, delayed and delivered twice.
    kinds = (LOST, DELAYED, TWICE)
    assert injected == {f"job changes pushed, {kind}": 4 for kind in kinds}, injected
    assert all(1 <= evidence["push_events_by_fault"][kind] <= 4 for kind in kinds), evidence["push_events_by_fault"]
    assert evidence[f"{LOST}: ended by"] == {SAFETY_POLL: 2, ENDED: 0}, evidence
    # Every delayed event was delivered after its jobs had ended, through their safety polls.
    assert evidence["delayed_after_the_end"] == [True] * evidence["push_events_by_fault"][DELAYED]
    assert evidence[f"{DELAYED}: ended by"] == {SAFETY_POLL: 2, ENDED: 0}, evidence
    assert sum(evidence[f"{TWICE}: ended by"].values()) == 2, evidence
    # Step Functions took one wake per woken workflow: a second delivery's wake was refused (counted gone), not taken.
    assert evidence["sweeps"]["woken"] == evidence[f"{TWICE}: ended by"][ENDED], evidence
    assert evidence["sweeps"]["errors"] == 0, evidence["sweeps"]


def test_sweep_push_and_safety_poll_on_the_same_job_end_finish_it_once(push_faults_cluster):
    result = tracking_race(push_faults_cluster)
    assert_every_job_ended_once(result, jobs=4)
    evidence, held = result.evidence, result.evidence["held_sweeps"]
    assert evidence["pushed_ends"] >= 4  # every job's end was pushed ...
    # ... and the sweeps held across the end (the scheduled one and the pushes', which a busy machine may coalesce
    # into one) each acted on every job's end (a wake, or one for a task that had moved on) once let go, while the
    # safety polls acted too.
    assert held["sweeps"] >= 1 and held["woken"] + held["gone"] >= 4 * held["sweeps"], held
    assert any(SAFETY_POLL in job.wait_endings for job in result.jobs), result.problems()  # (the hold's end)
    # Each job's last wait ended once: by one accepted wake or by its safety poll; every other wake was refused.
    job_ids = sorted(job.job_id for job in result.jobs)
    assert sorted(evidence["woken_by_sweep"] + evidence["ended_by_safety_poll"]) == job_ids, evidence
    assert evidence["all_sweeps"]["woken"] == len(evidence["woken_by_sweep"]), evidence
    assert evidence["all_sweeps"]["errors"] == 0, evidence["all_sweeps"]
    assert evidence["records_changed_after_the_end"] == []
