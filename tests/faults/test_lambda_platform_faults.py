"""Lambda itself failing, on the real local stack over real Slurm: inits that fail with Runtime.InitError in the
submit, poll and finish functions, and a cold-start storm whose every init outlasts the init limit. A hiccup of the
platform is retried by the state machine and never ends a job: each ends right, with a record and a result.json, and
Slurm ran it exactly once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.fault_stacks import DEFAULT_MIN_JOB_AGE, ClusterPlace, cluster_kept_running
from harness.lambda_platform_scenarios import (
    LAMBDA_FAULTS_CLUSTER,
    WORKFLOW_FUNCTIONS,
    cold_start_storm,
    failing_inits,
)
from harness.reliability import ScenarioResult

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def lambda_faults_cluster() -> Iterator[ClusterPlace]:
    if os.geteuid() != 0:
        pytest.skip("the local stack runs Slurm daemons and switches users: needs root")
    with cluster_kept_running(LAMBDA_FAULTS_CLUSTER, min_job_age=DEFAULT_MIN_JOB_AGE):
        yield LAMBDA_FAULTS_CLUSTER


def assert_every_job_completed_once(result: ScenarioResult, jobs: int) -> None:
    assert len(result.jobs) == jobs
    assert (result.lost, result.duplicated, result.wrong_state) == (0, 0, 0), result.problems()
    for job in result.jobs:
        assert (job.status, job.result_status, job.exit_code) == ("COMPLETED", "COMPLETED", 0), job.describe()
        assert len(job.slurm_job_ids) == job.runs == 1, job.describe()


def test_inits_failing_in_submit_poll_and_finish_are_retried(lambda_faults_cluster):
    result = failing_inits(lambda_faults_cluster, jobs=3)
    assert_every_job_completed_once(result, jobs=3)
    assert result.faults_injected == {f"{function} inits failed": 3 for function in WORKFLOW_FUNCTIONS}
    # Each injected failure was one failed task attempt that Step Functions retried, and nothing else failed.
    assert result.retried_errors() == {"Runtime.InitError": 9}, result.retried_errors()


def test_a_cold_start_storm_over_the_init_limit_fails_nothing(lambda_faults_cluster):
    result = cold_start_storm(lambda_faults_cluster, jobs=8)
    assert_every_job_completed_once(result, jobs=8)
    assert result.retried_errors() == {}, result.retried_errors()
    cold_starts = result.evidence["cold_starts"]
    for function in WORKFLOW_FUNCTIONS:
        # Every cold start outlasted the init limit and had its init retried within the Timeout.
        assert result.faults_injected[f"{function} inits retried"] == cold_starts[function] >= 1, result.evidence
