"""Dependencies between jobs of this API, resolved to Slurm job ids (pure).

A dependency names another job of the same owner by its job id. If that job has already ended, Slurm may have
forgotten it (MinJobAge), so the condition is decided here from the job's final status instead of being sent to
Slurm: satisfied conditions are dropped and unsatisfiable ones fail the submission with a clear message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from slurm_job_api.errors import DependencyNotSubmitted, DependencyUnsatisfiable
from slurm_job_api.spec import Dependency
from slurm_job_api.statuses import COMPLETED, TERMINAL_STATUSES


@dataclass(frozen=True)
class DependencyTarget:
    """What is known of the job a dependency names."""

    job_id: str
    status: str
    slurm_job_id: str | None
    started: bool


@dataclass
class ResolvedDependencies:
    slurm: dict[str, list[str]] = field(default_factory=dict)  # {type: [slurm job ids]} still to wait for
    satisfied: list[str] = field(default_factory=list)  # job ids whose condition already holds


def _holds(kind: str, target: DependencyTarget) -> bool:
    if kind == "afterok":
        return target.status == COMPLETED
    if kind == "afternotok":
        return target.status != COMPLETED
    if kind == "after":
        return target.started
    return True  # afterany: the job has ended


def resolve(dependencies: Iterable[Dependency], targets: Mapping[str, DependencyTarget]) -> ResolvedDependencies:
    """Slurm dependency ids for the conditions still open; raises when one cannot be met or is not ready yet."""
    resolved = ResolvedDependencies()
    for dependency in dependencies:
        target = targets.get(dependency.job_id)
        if target is None:
            raise DependencyUnsatisfiable(f"dependency job {dependency.job_id} does not exist")
        if target.status in TERMINAL_STATUSES:
            if not _holds(dependency.type, target):
                raise DependencyUnsatisfiable(
                    f"dependency {dependency.type} on job {dependency.job_id} can never be satisfied: "
                    f"that job ended {target.status}"
                )
            resolved.satisfied.append(dependency.job_id)
        elif target.slurm_job_id is None:
            raise DependencyNotSubmitted(f"dependency job {dependency.job_id} has not been submitted to Slurm yet")
        elif dependency.type == "after" and target.started:
            resolved.satisfied.append(dependency.job_id)
        else:
            resolved.slurm.setdefault(dependency.type, []).append(target.slurm_job_id)
    return resolved
