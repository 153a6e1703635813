"""The real local stack: a real Slurm cluster (with accounting, and a low MinJobAge so that finished jobs leave the
controller quickly), this machine as the head node behind SSM, the real state machine and handlers in moto."""

from __future__ import annotations

import os
import pwd

import pytest

from harness.slurm_records import SlurmRecords
from local_stack.stack import LocalStack

MIN_JOB_AGE = 5


# Each module of this directory gets a cluster of its own (`make test` runs modules side by side on its workers, and
# one module's jobs must never take another's nodes): its state directory name and its ports (+0, +1, +2).
CLUSTERS = {
    "test_jobs_on_real_slurm": ("e2e-slurm", 7817),
    "test_dependency_never_satisfied": ("e2e-deps", 7827),
    "test_never_start": ("e2e-never", 7837),
    "test_limits_on_real_slurm": ("e2e-limits", 7847),
    "test_sweep_on_real_slurm": ("e2e-sweep", 7857),
    "test_push_on_real_slurm": ("e2e-push", 7867),
    "test_sbatch_options_on_real_slurm": ("e2e-sbopts", 21817),
    "test_logs_on_real_slurm": ("e2e-logs", 22817),
    "test_client_on_real_slurm": ("e2e-client", 23817),
}


@pytest.fixture(scope="module")
def stack(request):
    if os.geteuid() != 0:
        pytest.skip("the local stack runs Slurm daemons and switches users: needs root")
    module = request.module.__name__.rsplit(".", 1)[-1]
    if module not in CLUSTERS:
        raise AssertionError(f"tests/e2e/{module}.py needs a cluster of its own in CLUSTERS (tests/e2e/conftest.py)")
    name, port_base = CLUSTERS[module]
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    stack = LocalStack(
        name=name,
        port_base=port_base,
        accounting=True,
        min_job_age=MIN_JOB_AGE,
        # A job pending for a "never" reason ends at the first poll that sees it (tests/e2e/test_never_start.py).
        parameters={
            "PollMinSeconds": "1",
            "UnsatisfiableGraceMinutes": "0",
            **getattr(request.module, "STACK_PARAMETERS", {}),  # a module's own
        },
        **getattr(request.module, "STACK_OPTIONS", {}),  # e.g. the push hook, the schedules' period
    )
    with stack as running:
        yield running


@pytest.fixture(scope="module")
def cloud(stack):
    return stack.running_cloud


@pytest.fixture
def api(cloud):
    return cloud.api_client()


class SlurmView(SlurmRecords):
    """Asks the real Slurm directly (as root), to check what the API says against Slurm's own answer."""

    def __init__(self, stack: LocalStack) -> None:
        super().__init__(stack.cluster, stack.cluster_user)

    def accounted_state(self, slurm_job_id: str) -> str:
        done = self.cluster.run(
            "sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={slurm_job_id}", "--format=State"
        )
        return done.stdout.strip()

    def job_ids_named(self, name: str) -> list[str]:
        """Slurm job ids (array tasks folded) of every job with this name, from accounting."""
        done = self.cluster.run(
            "sacct",
            "--noheader",
            "--parsable2",
            "--allocations",
            "--allusers",
            f"--name={name}",
            "--starttime=now-1hours",
            "--format=JobIDRaw,JobID",
        )
        return sorted({line.split("|")[1].split("_")[0] for line in done.stdout.splitlines() if line})


@pytest.fixture(scope="module")
def slurm(stack):
    return SlurmView(stack)


@pytest.fixture(scope="module")
def cluster_user(stack):
    return pwd.getpwnam(stack.cluster_user)
