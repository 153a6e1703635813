"""Job tracking under JobTracking sweep when the sweep itself fails, on the real local stack over real Slurm: the
sweep failing for ten minutes (compressed 15x), and a wake for an execution that has already ended. Every job must end
once: with the right status, a record and a result.json, one finish, and Slurm ran it exactly once."""

from __future__ import annotations

import pytest

from harness.reliability import ScenarioResult
from harness.sweep_scenarios import SWEEP_OUTAGE_SECONDS, stale_wake, sweep_outage

pytestmark = pytest.mark.slurm


def assert_every_job_ended_once(result: ScenarioResult, jobs: int) -> None:
    assert len(result.jobs) == jobs
    assert (result.lost, result.duplicated, result.wrong_state) == (0, 0, 0), result.problems()
    for job in result.jobs:
        # One finish: one result.json write and the record's final fields, untouched since, saying the same status.
        assert (job.finishes, job.result_json_writes, job.final_record_writes) == (1, 1, 1), job.describe()
        assert not job.written_after_finish, job.describe()
        assert job.result_status == job.status and len(job.slurm_job_ids) == job.runs == 1, job.describe()


def test_the_sweep_failing_for_ten_minutes_leaves_every_job_to_its_safety_poll(sweep_faults_cluster):
    result = sweep_outage(sweep_faults_cluster)
    assert_every_job_ended_once(result, jobs=6)
    evidence = result.evidence
    assert evidence["outage_seconds"] >= SWEEP_OUTAGE_SECONDS
    # The sweep's schedule went on firing, and every sweep it fired failed (one already running may have ended well).
    assert evidence["sweeps_failed"] >= 2 and evidence["sweeps_during_outage"]["failed"] >= 2, evidence
    assert evidence["sweeps_during_outage"]["fired"] <= 1, evidence
    during = evidence["ending_during_outage"] + evidence["submitted_during_outage"]
    assert sorted(evidence["ended_by_safety_poll"]) == sorted(during), result.problems() or evidence


def test_a_wake_for_an_execution_that_already_ended_is_ignored(sweep_faults_cluster):
    result = stale_wake(sweep_faults_cluster)
    assert_every_job_ended_once(result, jobs=2)
    evidence = result.evidence
    job_ids = sorted(job.job_id for job in result.jobs)
    assert sorted(evidence["ended_by_safety_poll"]) == job_ids  # the sweep was held: the safety polls finished them
    held = evidence["held_sweeps"]
    # The held sweep then sent each ended execution's stale token: SendTaskSuccess refused it, the sweep counted it
    # gone, and neither failed nor changed a record.
    assert (held["sweeps"], held["woken"], held["gone"], held["errors"]) == (1, 0, 2, 0), held
    assert evidence["all_sweeps"]["errors"] == 0, evidence["all_sweeps"]
    assert evidence["records_changed_after_the_end"] == []
