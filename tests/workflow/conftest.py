"""The local cloud over scripted Slurm: template.yaml's resources in moto, real handlers, the real head-node program
run through SSM on this machine as the cluster user, and recording stand-ins for the Slurm commands."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from local_stack.cloud import LocalCloud
from local_stack.slurm_cluster import ensure_cluster_user
from local_stack.ssm_head_node import LocalHeadNode
from tests.support.fake_slurm import FakeSlurm

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
USER = "sjapi-test"
CONFIG = "MinJobAge = 300 sec\nAccountingStorageType = accounting_storage/none\n"
TIMES = "2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T10:05:00"
NO_EARLIER_JOB = {"stdout": ""}  # the submit's look-up of an earlier submission by comment finds nothing
INVALID_JOB = {"rc": 1, "stderr": "slurm_load_jobs error: Invalid job id specified\n"}

if os.geteuid() != 0:
    pytest.skip("the head-node program switches to the cluster user: needs root", allow_module_level=True)


def squeue_line(state: str, reason: str = "None", job: str = "101") -> dict:
    return {"stdout": f"{job}|{job}|N/A|{state}|{reason}|{TIMES}\n"}


def scontrol_line(state: str, exit_code: str, job: str = "101") -> dict:
    return {
        "stdout": f"JobId={job} JobName=x JobState={state} Reason=None ExitCode={exit_code} "
        "SubmitTime=2026-11-25T10:00:00 StartTime=2026-11-25T10:00:01 EndTime=2026-11-25T10:00:09\n"
    }


@pytest.fixture(scope="session")
def slurm():
    user = ensure_cluster_user(USER)
    directory = Path(tempfile.mkdtemp(prefix="sjapi-workflow-slurm-"))
    directory.chmod(0o755)
    fake = FakeSlurm(directory / "bin", user)
    yield fake
    fake.remove()
    directory.rmdir()
    shutil.rmtree(Path(user.pw_dir) / ".slurm-job-api", ignore_errors=True)  # the per-job directories


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
    return cloud.api_client()
