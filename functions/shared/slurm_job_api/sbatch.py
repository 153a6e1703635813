"""Job spec → sbatch options (pure).

Each option is one argv element, --name=value (or a bare --flag for a boolean field), so a value can never be read as
another option; the head-node program checks the names against its own allow-list and adds the options it owns
(--parsable, --comment, --chdir, --output, --error, --export-file) and the script path.
"""

from __future__ import annotations

from collections.abc import Mapping

from slurm_job_api.spec import JobSpecBase

DEFAULT_JOB_NAME = "slurm-job-api"

# The one table of spec fields with a value: (JobSpec attribute, sbatch option, unit written after the value).
VALUE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("partition", "partition", ""),
    ("nodes", "nodes", ""),
    ("ntasks", "ntasks", ""),
    ("cpus_per_task", "cpus-per-task", ""),
    ("memory_mb", "mem", "M"),
    ("time_limit_minutes", "time", ""),
    ("array", "array", ""),
    ("account", "account", ""),
    ("qos", "qos", ""),
    ("ntasks_per_node", "ntasks-per-node", ""),
    ("memory_per_cpu_mb", "mem-per-cpu", "M"),
    ("gpus", "gpus", ""),
    ("gpus_per_node", "gpus-per-node", ""),
    ("gpus_per_task", "gpus-per-task", ""),
    ("gres", "gres", ""),
    ("constraint", "constraint", ""),
    ("reservation", "reservation", ""),
    ("licenses", "licenses", ""),
    ("begin", "begin", ""),
    ("nice", "nice", ""),
)
# Boolean spec fields: (JobSpec attribute, the flag for true, the flag for false; None: no flag, Slurm's default).
FLAG_OPTIONS: tuple[tuple[str, str, str | None], ...] = (
    ("exclusive", "exclusive", None),
    ("requeue", "requeue", "no-requeue"),
)
# Options whose value is not a spec field's: the name always given, the dependencies as Slurm job ids.
DERIVED_OPTIONS = ("job-name", "dependency")


def option_names() -> frozenset[str]:
    """Every option name sbatch_options can give (the head-node program's allow-list must take exactly these)."""
    flags = {flag for _, *pair in FLAG_OPTIONS for flag in pair if flag}
    return frozenset([*DERIVED_OPTIONS, *(option for _, option, _ in VALUE_OPTIONS), *flags])


def dependency_option(slurm_dependencies: Mapping[str, list[str]]) -> str | None:
    """--dependency=afterok:12:13,afterany:14 (all conditions must hold) from {type: [slurm job ids]}."""
    clauses = [":".join([kind, *ids]) for kind, ids in sorted(slurm_dependencies.items()) if ids]
    return "--dependency=" + ",".join(clauses) if clauses else None


def sbatch_options(spec: JobSpecBase, slurm_dependencies: Mapping[str, list[str]] | None = None) -> list[str]:
    """The sbatch options for a job spec; `slurm_dependencies` are the spec's dependencies as Slurm job ids."""
    options = [f"--job-name={spec.name or DEFAULT_JOB_NAME}"]
    for attribute, option, unit in VALUE_OPTIONS:
        value = getattr(spec, attribute)
        if value is not None:
            options.append(f"--{option}={value}{unit}")
    for attribute, when_true, when_false in FLAG_OPTIONS:
        flag = {True: when_true, False: when_false, None: None}[getattr(spec, attribute)]
        if flag:
            options.append(f"--{flag}")
    dependency = dependency_option(slurm_dependencies or {})
    if dependency:
        options.append(dependency)
    return options
