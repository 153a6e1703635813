"""The real Slurm clusters of the fault scenarios (harness/fault_stacks.py, harness/sweep_scenarios.py), kept up for a
test module.

Each cluster belongs to one test module (a module runs whole on one xdist worker), since a scenario may stop its
slurmctld or change its MinJobAge: the accounting and no-accounting clusters to the two modules of
test_faults_with(out)_accounting.py, the sweep faults cluster to test_sweep_faults.py, the push faults cluster (its
slurmctld runs the push hook) to test_push_faults.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.fault_stacks import (
    ACCOUNTING_CLUSTER,
    ACCOUNTING_MIN_JOB_AGE,
    DEFAULT_MIN_JOB_AGE,
    NO_ACCOUNTING_CLUSTER,
    SHORT_MIN_JOB_AGE,
    ClusterPlace,
    cluster_kept_running,
)
from harness.sweep_scenarios import PUSH_FAULTS_CLUSTER, SWEEP_FAULTS_CLUSTER


def _kept_running(place: ClusterPlace, min_job_age: int) -> Iterator[ClusterPlace]:
    if os.geteuid() != 0:
        pytest.skip("the local stack runs Slurm daemons and switches users: needs root")
    with cluster_kept_running(place, min_job_age=min_job_age):
        yield place


@pytest.fixture(scope="module")
def accounting_cluster() -> Iterator[ClusterPlace]:
    yield from _kept_running(ACCOUNTING_CLUSTER, ACCOUNTING_MIN_JOB_AGE)


@pytest.fixture(scope="module")
def no_accounting_cluster() -> Iterator[ClusterPlace]:
    yield from _kept_running(NO_ACCOUNTING_CLUSTER, SHORT_MIN_JOB_AGE)


@pytest.fixture(scope="module")
def sweep_faults_cluster() -> Iterator[ClusterPlace]:
    """tests/faults/test_sweep_faults.py's."""
    yield from _kept_running(SWEEP_FAULTS_CLUSTER, DEFAULT_MIN_JOB_AGE)


@pytest.fixture(scope="module")
def push_faults_cluster() -> Iterator[ClusterPlace]:
    """tests/faults/test_push_faults.py's: slurmctld runs the product's push hook."""
    yield from _kept_running(PUSH_FAULTS_CLUSTER, DEFAULT_MIN_JOB_AGE)
