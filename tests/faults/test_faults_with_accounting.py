"""Faults injected on the real local stack over a Slurm cluster with accounting (slurmdbd): SSM throttling,
slurmctld stopped for a minute (with each workflow polling its job, and with the cluster's sweep tracking them), the
submit function dying after sbatch, and finished jobs purged before their first
poll. Every accepted job must end in the right state with a record and a result.json, and Slurm must have run it
exactly once (sacct by the scenario's unique job name, and the jobs' own run ledger)."""

from __future__ import annotations

import pytest

from harness.fault_scenarios import (
    CONTROLLER_OUTAGE_SECONDS,
    SWEEP_CONTROLLER_OUTAGE_SECONDS,
    slurmctld_outage,
    slurmctld_outage_under_sweep,
    ssm_throttling,
    submit_crash_after_sbatch,
)
from harness.purge_scenarios import purged_job_read_from_accounting
from harness.reliability import ScenarioResult

pytestmark = pytest.mark.slurm


def assert_every_job_ended_right(result: ScenarioResult, jobs: int) -> None:
    assert len(result.jobs) == jobs
    assert (result.lost, result.duplicated, result.wrong_state) == (0, 0, 0), result.problems()
    assert all(len(job.slurm_job_ids) == job.runs == 1 for job in result.jobs), result.problems()


def test_ssm_throttling_loses_and_duplicates_nothing(accounting_cluster):
    result = ssm_throttling(accounting_cluster)
    assert_every_job_ended_right(result, jobs=8)
    assert result.faults_injected["SendCommand throttled"] > 0
    assert result.faults_injected["GetCommandInvocation throttled"] > 0
    assert sorted(job.status for job in result.jobs) == ["COMPLETED"] * 6 + ["FAILED"] * 2


def test_slurmctld_stopped_for_a_minute(accounting_cluster):
    result = slurmctld_outage(accounting_cluster)
    assert_every_job_ended_right(result, jobs=7)
    evidence = result.evidence
    old_pid, new_pid = evidence["controller_pids"]
    assert old_pid != new_pid and evidence["outage_seconds"] >= CONTROLLER_OUTAGE_SECONDS
    # The jobs accepted while slurmctld was down were submitted only after their submit attempts were retried.
    assert evidence["submitted_during_outage_retried"] == len(evidence["submitted_during_outage"]) == 3
    by_id = {job.job_id: job for job in result.jobs}
    for job_id in evidence["ending_during_outage"] + evidence["outlasting_outage"]:
        assert "SlurmControllerUnavailable" in by_id[job_id].task_failures, by_id[job_id].describe()


def test_slurmctld_stopped_while_the_sweep_tracks_the_jobs(accounting_cluster):
    result = slurmctld_outage_under_sweep(accounting_cluster)
    assert_every_job_ended_right(result, jobs=7)
    evidence = result.evidence
    assert evidence["outage_seconds"] >= SWEEP_CONTROLLER_OUTAGE_SECONDS
    # The sweeps failed while slurmctld was down, so no wait got a heartbeat ...
    assert evidence["sweeps_during_outage"]["failed"] >= 1, evidence["sweeps_during_outage"]
    by_id = {job.job_id: job for job in result.jobs}
    for job_id in evidence["ending_during_outage"] + evidence["outlasting_outage"]:
        job = by_id[job_id]
        assert "AwaitNews" in job.states, job.describe()
        # ... and each wait ended with its safety poll, which met the outage and was retried until slurmctld was back.
        assert "SlurmControllerUnavailable" in job.task_failures, job.describe()
    assert evidence["submitted_during_outage_retried"] == len(evidence["submitted_during_outage"]) == 3


def test_submit_dying_after_sbatch_is_retried_without_a_second_sbatch(accounting_cluster):
    result = submit_crash_after_sbatch(accounting_cluster)
    assert_every_job_ended_right(result, jobs=4)
    assert result.faults_injected["submit attempts killed after sbatch"] == 4
    assert [job.task_failures for job in result.jobs] == [("Sandbox.Timedout",)] * 4


def test_a_job_purged_before_its_first_poll_is_read_from_accounting(accounting_cluster):
    result = purged_job_read_from_accounting(accounting_cluster)
    assert_every_job_ended_right(result, jobs=2)
    assert len(result.evidence["seconds_until_purged"]) == 2  # slurmctld had forgotten both before the poll
    assert sorted((job.status, job.exit_code) for job in result.jobs) == [("COMPLETED", 0), ("FAILED", 7)]
