"""sbatch-style command-line values → the job spec's fields (pure: standard library only).

Each option of ``sja submit`` is declared once in ``SUBMIT_OPTIONS``: its flags (sbatch's), the spec field it sets
and how its text becomes the field's JSON value. Values are read here only as far as sbatch's notation goes (a time,
a memory size, a dependency); everything else — ranges, names, expressions — is the API's to check, which answers
422 naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEPENDENCY_TYPES = ("after", "afterany", "afterok", "afternotok")
_MEMORY = re.compile(r"([0-9]+)([KMGT]?)", re.IGNORECASE | re.ASCII)
_MEMORY_UNIT_KIB = {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class OptionError(ValueError):
    """A command-line value that is not what its option takes; the message says what it should be."""


def time_limit_minutes(text: str) -> int:
    """An sbatch --time value in minutes, rounded up: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S."""
    has_days = "-" in text
    days, _, clock = text.partition("-") if has_days else ("0", "", text)
    parts = clock.split(":")
    if not all(part.isascii() and part.isdigit() for part in [days, *parts]) or len(parts) > 3:
        raise OptionError(f"not an sbatch time: {text!r} (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S)")
    numbers = [int(part) for part in parts]
    if has_days:  # D-H, D-H:M, D-H:M:S: hours first
        hours, minutes, seconds = [*numbers, 0, 0][:3]
        total_seconds = ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
        total_seconds = (hours * 60 + minutes) * 60 + seconds
    else:
        minutes, seconds = [*numbers, 0][:2]
        total_seconds = minutes * 60 + seconds
    minutes_up = -(-total_seconds // 60)
    if minutes_up < 1:
        raise OptionError(f"a time limit must be at least one second: {text!r}")
    return minutes_up


def memory_mb(text: str) -> int:
    """An sbatch memory size in MiB, rounded up: a number with an optional unit K, M (the default), G or T."""
    match = _MEMORY.fullmatch(text)
    if not match:
        raise OptionError(f"not a memory size: {text!r} (e.g. 500M, 4G; units K, M, G, T)")
    kib = int(match.group(1)) * _MEMORY_UNIT_KIB[(match.group(2) or "M").upper()]
    if kib == 0:
        raise OptionError(f"memory must be more than 0: {text!r}")
    return -(-kib // 1024)


def dependencies(text: str) -> list[dict[str, str]]:
    """An sbatch --dependency value: type:jobId[:jobId...], several joined by ',' (all must hold)."""
    found = []
    for condition in text.split(","):
        kind, _, ids = condition.partition(":")
        if kind not in DEPENDENCY_TYPES or not ids:
            raise OptionError(
                f"not a dependency: {condition!r} (type:jobId with type one of {', '.join(DEPENDENCY_TYPES)})"
            )
        for job_id in ids.split(":"):
            if not job_id:
                raise OptionError(f"a dependency names an empty job id: {condition!r}")
            found.append({"type": kind, "jobId": job_id})
    return found


def environment_variable(text: str) -> tuple[str, str]:
    """NAME=VALUE (one variable per --export; the value is taken as it is, commas included)."""
    name, equals, value = text.partition("=")
    if not equals or not _ENVIRONMENT_NAME.fullmatch(name):
        raise OptionError(f"not NAME=VALUE: {text!r} (one variable per --export)")
    return name, value


def integer(text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise OptionError(f"not a whole number: {text!r}") from None


def text_value(text: str) -> str:
    return text


@dataclass(frozen=True)
class SubmitOption:
    """One option of ``sja submit``: its flags, the spec field and how a value becomes that field's value.
    ``kind`` is "value" (one value), "flag" (true when given), "append" (repeatable, collected in a list) or
    "negatable" (--x true, --no-x false)."""

    flags: tuple[str, ...]
    field: str
    convert: Callable[[str], Any] = text_value
    kind: str = "value"
    metavar: str | None = None
    help: str = ""
    extra: dict = field(default_factory=dict)


SUBMIT_OPTIONS: tuple[SubmitOption, ...] = (
    SubmitOption(("-J", "--job-name"), "name", help="job name"),
    SubmitOption(("-p", "--partition"), "partition"),
    SubmitOption(("-A", "--account"), "account"),
    SubmitOption(("-q", "--qos"), "qos"),
    SubmitOption(("-N", "--nodes"), "nodes", integer, metavar="N"),
    SubmitOption(("-n", "--ntasks"), "ntasks", integer, metavar="N"),
    SubmitOption(("-c", "--cpus-per-task"), "cpusPerTask", integer, metavar="N"),
    SubmitOption(("--ntasks-per-node",), "ntasksPerNode", integer, metavar="N"),
    SubmitOption(("--mem",), "memoryMB", memory_mb, metavar="SIZE", help="memory per node, e.g. 500M, 4G"),
    SubmitOption(("--mem-per-cpu",), "memoryPerCpuMB", memory_mb, metavar="SIZE", help="memory per CPU"),
    SubmitOption(("-G", "--gpus"), "gpus", metavar="[TYPE:]N"),
    SubmitOption(("--gpus-per-node",), "gpusPerNode", metavar="[TYPE:]N"),
    SubmitOption(("--gpus-per-task",), "gpusPerTask", metavar="[TYPE:]N"),
    SubmitOption(("--gres",), "gres", metavar="LIST"),
    SubmitOption(("-C", "--constraint"), "constraint", metavar="EXPR"),
    SubmitOption(("--exclusive",), "exclusive", kind="flag", help="nodes run no other job"),
    SubmitOption(
        ("-t", "--time"), "timeLimitMinutes", time_limit_minutes, metavar="TIME", help="M, M:S, H:M:S, D-H[:M[:S]]"
    ),
    SubmitOption(("-b", "--begin"), "begin", metavar="TIME", help="now+1hour, 2026-12-24T18:00, 18:00"),
    SubmitOption(("--reservation",), "reservation"),
    SubmitOption(("--requeue",), "requeue", kind="negatable", help="Slurm may requeue the job (--no-requeue: never)"),
    SubmitOption(("--nice",), "nice", integer, metavar="N", extra={"nargs": "?", "const": 100}),
    SubmitOption(("-L", "--licenses"), "licenses", metavar="LIST"),
    SubmitOption(("-a", "--array"), "array", metavar="INDICES", help="e.g. 1-10%%2"),
    SubmitOption(
        ("-d", "--dependency"),
        "dependency",
        dependencies,
        kind="append",
        metavar="TYPE:JOBID",
        help="afterok|afterany|afternotok|after:<jobId>[:<jobId>...] (repeatable)",
    ),
    SubmitOption(
        ("--export",), "environment", environment_variable, kind="append", metavar="NAME=VALUE", help="repeatable"
    ),
    SubmitOption(("-D", "--chdir"), "workingDirectory", metavar="DIR", help="absolute directory the job starts in"),
    SubmitOption(
        ("--output-file",),
        "outputs",
        kind="append",
        metavar="PATH",
        help="a file (relative to the working directory) to collect after the job (repeatable)",
    ),
    SubmitOption(("--script-s3-key",), "scriptS3Key", metavar="KEY", help="a script uploaded with POST /inputs"),
)


def spec_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The spec's fields from the options' parsed values (keyed by field; None: not given)."""
    spec: dict[str, Any] = {}
    for option in SUBMIT_OPTIONS:
        value = values.get(option.field)
        if value is None:
            continue
        if option.field == "dependency":
            value = [condition for given in value for condition in given]
        elif option.field == "environment":
            value = dict(value)
        spec[option.field] = value
    return spec
