"""Fixtures of the local cloud over scripted Slurm — template.yaml's resources in moto, the real handlers, the real
head-node program run through SSM on this machine as the cluster user, recording stand-ins for Slurm commands.

Not a conftest: they need the local stack (moto etc.), so only the test directories that use them import them, from
their own conftest.py (tests/handlers, tests/workflow, tests/security); tests/unit collects without them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from local_stack.cloud import LocalCloud
from local_stack.slurm_cluster import checkout_user_name, ensure_cluster_user, remove_job_files
from local_stack.ssm_head_node import LocalHeadNode
from tests.support.fake_slurm import fake_slurm

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
USER = checkout_user_name("sjapi-test")


@pytest.fixture(scope="session")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("the head-node program switches to the cluster user: needs root")
    user = ensure_cluster_user(USER)
    with fake_slurm(user, "sjapi-workflow-slurm-") as fake:
        yield fake
    remove_job_files(user)


@pytest.fixture(scope="session")
def make_cloud(slurm):
    def make(**parameters: str) -> LocalCloud:
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        return LocalCloud(
            TEMPLATE,
            parameter_overrides={
                "ClusterName": "workflow-test",
                "ClusterUser": USER,
                "SlurmBinDir": str(slurm.bin_dir),
                "PollMinSeconds": "1",
                # Scripted Slurm answers each tool by how many times it was called: a sweep's squeue would take a
                # poll's answer. These tests script per-job polls; the sweep is tested on real Slurm
                # (tests/e2e/test_sweep_on_real_slurm.py) and by its own unit tests.
                "JobTracking": "per-job-polling",
                **parameters,
            },
            head_node=LocalHeadNode(),
        )

    return make


@pytest.fixture(scope="module")
def cloud(make_cloud):
    with make_cloud() as running:
        yield running


@pytest.fixture
def api(cloud):
    """A signed client of the local API; executions a test leaves running are stopped after it."""
    yield cloud.api_client()
    sfn = cloud.client("stepfunctions")
    for execution in sfn.list_executions(stateMachineArn=cloud.state_machine_arn, statusFilter="RUNNING")["executions"]:
        sfn.stop_execution(executionArn=execution["executionArn"], cause="test over")
