"""Dependencies on other jobs of the API, decided from their status or sent to Slurm."""

import pytest

from slurm_job_api.dependencies import DependencyTarget, resolve
from slurm_job_api.errors import DependencyNotSubmitted, DependencyUnsatisfiable
from slurm_job_api.spec import Dependency

A = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"


def dep(kind: str) -> Dependency:
    return Dependency.model_validate({"type": kind, "jobId": A})


def target(status: str, slurm_job_id: str | None = "41", started: bool = False) -> dict:
    return {A: DependencyTarget(A, status, slurm_job_id, started)}


@pytest.mark.parametrize("kind", ["after", "afterany", "afterok", "afternotok"])
def test_active_jobs_become_slurm_dependencies(kind):
    assert resolve([dep(kind)], target("RUNNING" if kind != "after" else "PENDING")).slurm == {kind: ["41"]}


def test_after_a_started_job_is_already_satisfied():
    resolved = resolve([dep("after")], target("RUNNING", started=True))
    assert resolved.slurm == {} and resolved.satisfied == [A]


@pytest.mark.parametrize(
    ("kind", "status", "holds"),
    [
        ("afterok", "COMPLETED", True),
        ("afterok", "FAILED", False),
        ("afterok", "CANCELLED", False),
        ("afternotok", "FAILED", True),
        ("afternotok", "COMPLETED", False),
        ("afterany", "TIMEOUT", True),
        ("afterany", "SUBMIT_FAILED", True),
    ],
)
def test_ended_jobs_are_decided_here(kind, status, holds):
    if holds:
        assert resolve([dep(kind)], target(status)).satisfied == [A]
    else:
        with pytest.raises(DependencyUnsatisfiable, match=status):
            resolve([dep(kind)], target(status))


def test_after_a_job_that_never_started_cannot_hold():
    with pytest.raises(DependencyUnsatisfiable):
        resolve([dep("after")], target("SUBMIT_FAILED", slurm_job_id=None, started=False))


def test_unsubmitted_dependency_is_transient():
    with pytest.raises(DependencyNotSubmitted):
        resolve([dep("afterok")], target("SUBMITTING", slurm_job_id=None))


def test_unknown_dependency_is_refused():
    with pytest.raises(DependencyUnsatisfiable, match="does not exist"):
        resolve([dep("afterok")], {})
