"""Job spec → sbatch options (pure).

Each option is one argv element of the form --name=value, so a value can never be read as another option; the
head-node program checks the names against its own allow-list and adds the options it owns (--parsable, --comment,
--chdir, --output, --error, --export-file) and the script path.
"""

from __future__ import annotations

from collections.abc import Mapping

from slurm_job_api.spec import JobSpec

DEFAULT_JOB_NAME = "slurm-job-api"


def dependency_option(slurm_dependencies: Mapping[str, list[str]]) -> str | None:
    """--dependency=afterok:12:13,afterany:14 (all conditions must hold) from {type: [slurm job ids]}."""
    clauses = [":".join([kind, *ids]) for kind, ids in sorted(slurm_dependencies.items()) if ids]
    return "--dependency=" + ",".join(clauses) if clauses else None


def sbatch_options(spec: JobSpec, slurm_dependencies: Mapping[str, list[str]] | None = None) -> list[str]:
    """The sbatch options for a job spec; `slurm_dependencies` are the spec's dependencies as Slurm job ids."""
    options = [f"--job-name={spec.name or DEFAULT_JOB_NAME}"]
    for flag, value in (
        ("partition", spec.partition),
        ("nodes", spec.nodes),
        ("ntasks", spec.ntasks),
        ("cpus-per-task", spec.cpus_per_task),
        ("mem", f"{spec.memory_mb}M" if spec.memory_mb is not None else None),
        ("time", spec.time_limit_minutes),
        ("array", spec.array),
        ("account", spec.account),
        ("qos", spec.qos),
    ):
        if value is not None:
            options.append(f"--{flag}={value}")
    dependency = dependency_option(slurm_dependencies or {})
    if dependency:
        options.append(dependency)
    return options
