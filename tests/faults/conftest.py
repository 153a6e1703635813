"""The two real Slurm clusters of the fault scenarios (harness/fault_stacks.py), kept up for a test module.

Each cluster belongs to one test module (a module runs whole on one xdist worker), since a scenario may stop its
slurmctld or change its MinJobAge.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.fault_stacks import (
    ACCOUNTING_CLUSTER,
    ACCOUNTING_MIN_JOB_AGE,
    NO_ACCOUNTING_CLUSTER,
    SHORT_MIN_JOB_AGE,
    ClusterPlace,
    cluster_kept_running,
)


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the local stack runs Slurm daemons and switches users: needs root")


@pytest.fixture(scope="module")
def accounting_cluster() -> Iterator[ClusterPlace]:
    _require_root()
    with cluster_kept_running(ACCOUNTING_CLUSTER, min_job_age=ACCOUNTING_MIN_JOB_AGE):
        yield ACCOUNTING_CLUSTER


@pytest.fixture(scope="module")
def no_accounting_cluster() -> Iterator[ClusterPlace]:
    _require_root()
    with cluster_kept_running(NO_ACCOUNTING_CLUSTER, min_job_age=SHORT_MIN_JOB_AGE):
        yield NO_ACCOUNTING_CLUSTER
