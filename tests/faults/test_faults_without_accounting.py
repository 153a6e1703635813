"""Faults injected on the real local stack over a Slurm cluster without accounting: the poll wait capped below
MinJobAge/2, a poll late anyway (UNKNOWN, said honestly), Slurm missing on the head node, and the head node
unreachable for longer than SendCommand's delivery timeout. Slurm's answer here is slurmctld's memory (squeue by the
scenario's unique job name) and the jobs' own run ledger."""

from __future__ import annotations

import pytest

from harness.fault_scenarios import (
    MISSING_SLURM_BIN_DIR,
    head_node_unreachable,
    missing_slurm_binaries,
)
from harness.purge_scenarios import capped_polling_without_accounting, late_poll_without_accounting
from harness.reliability import ScenarioResult
from slurm_job_api.head_node import DELIVERY_TIMEOUT_SECONDS

pytestmark = pytest.mark.slurm


def assert_no_job_lost_duplicated_or_wrong(result: ScenarioResult, jobs: int) -> None:
    assert len(result.jobs) == jobs
    assert (result.lost, result.duplicated, result.wrong_state) == (0, 0, 0), result.problems()


def test_poll_wait_stays_under_half_min_job_age(no_accounting_cluster):
    result = capped_polling_without_accounting(no_accounting_cluster)
    assert_no_job_lost_duplicated_or_wrong(result, jobs=2)
    evidence = result.evidence
    assert evidence["longest_wait"] <= evidence["min_job_age"] // 2
    # Uncapped, the schedule would have waited longer than slurmctld remembers a finished job.
    assert evidence["longest_uncapped_wait"] > evidence["min_job_age"]
    assert sorted((job.status, job.exit_code) for job in result.jobs) == [("COMPLETED", 0), ("FAILED", 3)]


def test_a_poll_too_late_without_accounting_says_unknown(no_accounting_cluster):
    result = late_poll_without_accounting(no_accounting_cluster)
    assert_no_job_lost_duplicated_or_wrong(result, jobs=1)
    (job,) = result.jobs
    assert job.status == job.result_status == "UNKNOWN" and job.runs == 1
    assert "no longer knows" in job.cause and "cannot be told" in job.cause


def test_slurm_missing_on_the_head_node_fails_the_submission_clearly(no_accounting_cluster):
    result = missing_slurm_binaries(no_accounting_cluster)
    assert_no_job_lost_duplicated_or_wrong(result, jobs=2)
    for job in result.jobs:
        assert (job.status, job.error_code, job.runs) == ("SUBMIT_FAILED", "HeadNodeSetupError", 0)
        assert f"{MISSING_SLURM_BIN_DIR}/" in job.cause and "SlurmBinDir" in job.cause
        # A clear error, not a hang: one submit attempt failed, it was not retried, and the workflow never polled.
        assert job.task_failures == ("HeadNodeSetupError",), job.task_failures
        assert job.states == ("IsContinuation", "SubmitJob", "FinishJob", "DidJobComplete", "JobDidNotComplete")


def test_head_node_unreachable_past_the_delivery_timeout(no_accounting_cluster):
    result = head_node_unreachable(no_accounting_cluster)
    assert_no_job_lost_duplicated_or_wrong(result, jobs=7)
    assert all(job.runs == 1 for job in result.jobs), result.problems()
    assert result.evidence["outage_seconds"] > DELIVERY_TIMEOUT_SECONDS
    assert result.faults_injected["delivery timeouts"] > 0
    assert result.faults_injected["commands held while unreachable"] > 0
    retried = result.retried_errors()
    assert retried.get("HeadNodeUnreachable", 0) > 0, retried
