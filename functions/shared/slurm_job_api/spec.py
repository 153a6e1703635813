"""The job spec a client sends to POST /jobs (pure: Pydantic only).

Every value is checked here so that what reaches the head node is well-formed, and each value reaches sbatch as its
own argv element or as file content (never inside shell text). Unknown fields are refused, and values are taken in
their own JSON type only (strict mode): an integer field refuses true, "2" and 2.0 alike (2.0 is a JSON number but not
an integer literal: one spelling per value, so what is stored and echoed is what was meant).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from slurm_job_api.head_node_program import expand_array_indices

MAX_SCRIPT_BYTES = 64 * 1024
MAX_ARRAY_TASKS = 1000
MAX_ENVIRONMENT_BYTES = 64 * 1024
RESERVED_ENVIRONMENT_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")

JobId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    Field(description="A job id of this API (a lowercase UUID)", examples=["0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"]),
]
SlurmName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"),
]
# Slurm's nice range: sbatch refuses an adjustment beyond NICE_OFFSET - 3 either way (a negative one needs privileges).
MAX_NICE = 2**31 - 3
# Resource lists (gres, GPUs, licenses) and constraint expressions: ASCII names, counts without a leading zero.
_RESOURCE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}"
_COUNT = r"[1-9][0-9]{0,8}"


def _comma_list(item: str, max_length: int, description: str, examples: list[str]) -> object:
    """A string type: one or more `item`s (a regular expression), comma-separated, at most `max_length` characters."""
    return Annotated[
        str,
        StringConstraints(max_length=max_length, pattern=rf"^{item}(?:,{item})*$"),
        Field(description=description, examples=examples),
    ]


GpuList = _comma_list(
    rf"(?:{_RESOURCE_NAME}:)?{_COUNT}", 64, "[type:]count, comma-separated for several types", ["2", "a100:2,v100:1"]
)
GresList = _comma_list(
    rf"{_RESOURCE_NAME}(?::{_RESOURCE_NAME})?(?::{_COUNT}[KMGT]?)?",
    128,
    "Generic resources per node, name[:type][:count] (sbatch --gres)",
    ["gpu:a100:2,shard:1"],
)
LicenseList = _comma_list(
    rf"{_RESOURCE_NAME}(?:@{_RESOURCE_NAME})?(?::{_COUNT})?",
    128,
    "Licenses the job needs, name[@server][:count] (sbatch --licenses)",
    ["matlab:2,ansys"],
)
_CONSTRAINT_TOKEN = re.compile(
    rf"(?P<feature>{_RESOURCE_NAME}(?:\*{_COUNT})?)|(?P<operator>[&|])|(?P<open>[\[(])|(?P<close>[\])](?:\*{_COUNT})?)",
    re.ASCII,
)
_BEGIN_OFFSET = re.compile(r"now(?:\+[0-9]{1,7}(?:seconds?|minutes?|hours?|days?|weeks?)?)?", re.ASCII)
_BEGIN_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%H:%M", "%H:%M:%S")
_BEGIN_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?|[0-9]{2}:[0-9]{2}(?::[0-9]{2})?", re.ASCII
)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# Slurm's array syntax is ASCII: no whitespace (a newline would never reach sbatch) and no other scripts' digits.
_ARRAY_CHARACTERS = re.compile(r"[0-9,:%-]+")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", frozen=True, strict=True
    )


class Dependency(_Model):
    """Start this job only after another job of this API reached a condition (Slurm --dependency)."""

    type: Literal["after", "afterany", "afterok", "afternotok"] = Field(
        default="afterok",
        description="after: the other job started; afterany: it ended; afterok: it completed with exit code 0; "
        "afternotok: it ended in any other way",
    )
    job_id: JobId


def _check_path_text(value: str, what: str) -> str:
    if _SURROGATES.search(value):  # JSON "\ud800" decodes to text that cannot be stored
        raise ValueError(f"{what} must be valid Unicode text (no lone surrogates)")
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError(f"{what} must not contain control characters")
    parts = value.split("/")
    if any(part in ("..", ".") for part in parts):
        raise ValueError(f"{what} must not contain '.' or '..' components")
    return value


def check_constraint(expression: str) -> str:
    """A Slurm --constraint expression: features (feature*count) joined by & and |, grouped in ( ) and in [ ]
    (not nested in another [ ]). ValueError if it is anything else."""
    expect_operand, opened, position = True, [], 0
    while position < len(expression):
        token = _CONSTRAINT_TOKEN.match(expression, position)
        if token is None:
            raise ValueError(f"unexpected character {expression[position]!r} at {position}")
        kind, text = token.lastgroup, token.group()
        if expect_operand != (kind in ("feature", "open")):
            raise ValueError(f"unexpected {text!r} at {position}")
        if kind == "open":
            if text == "[" and "[" in opened:
                raise ValueError("[ ] cannot be nested")
            opened.append(text)
        elif kind == "close" and (not opened or opened.pop() != {"]": "[", ")": "("}[text[0]]):
            raise ValueError(f"unbalanced {text[0]!r} at {position}")
        expect_operand = kind in ("operator", "open")
        position = token.end()
    if expect_operand or opened:
        raise ValueError("the expression is incomplete")
    return expression


def check_begin(value: str) -> str:
    """A Slurm --begin time in one of three forms: now[+count[seconds|minutes|hours|days|weeks]], an ISO date or date
    and time (YYYY-MM-DD[THH:MM[:SS]]), a time of day (HH:MM[:SS]). ValueError if it is anything else."""
    if _BEGIN_OFFSET.fullmatch(value):
        return value
    if _BEGIN_SHAPE.fullmatch(value):
        for form in _BEGIN_FORMATS:
            try:
                datetime.strptime(value, form)  # the fields only: Slurm reads its own time zone
            except ValueError:
                continue
            return value
    raise ValueError(
        "begin must be now[+count[seconds|minutes|hours|days|weeks]], YYYY-MM-DD[THH:MM[:SS]] or HH:MM[:SS]"
    )


class JobSpecBase(_Model):
    """The fields of the spec whose size stays small (a few KiB in all, whatever the values): every field but the
    script, the environment and the outputs. The job record keeps these (slurm_job_api.job_record.SpecSummary)."""

    name: SlurmName | None = Field(default=None, description="Slurm job name", examples=["hello"])
    script_s3_key: str | None = Field(
        default=None,
        alias="scriptS3Key",
        max_length=1024,
        # Which prefix is the caller's own is checked by the API, which knows the caller (slurm_job_api.inputs).
        pattern=r"^[A-Za-z0-9!_.*'()/-]+$",
        description="Key of the batch script under your own inputs prefix, as POST /inputs gives it (instead of "
        "script; at most 64 KiB)",
    )
    partition: SlurmName | None = None
    nodes: int | None = Field(default=None, ge=1, le=100_000)
    ntasks: int | None = Field(default=None, ge=1, le=10_000_000)
    cpus_per_task: int | None = Field(default=None, ge=1, le=4096)
    memory_mb: int | None = Field(
        default=None, alias="memoryMB", ge=1, le=1024 * 1024 * 1024, description="Memory per node (sbatch --mem)"
    )
    time_limit_minutes: int | None = Field(default=None, ge=1, le=366 * 24 * 60)
    array: str | None = Field(
        default=None, max_length=256, description="Job array indices, e.g. 1-10%2", examples=["1-10%2"]
    )
    dependency: list[Dependency] | None = Field(default=None, min_length=1, max_length=32)
    working_directory: str | None = Field(
        default=None, max_length=4096, description="Absolute directory the job starts in (default: a per-job one)"
    )
    account: SlurmName | None = None
    qos: SlurmName | None = None
    ntasks_per_node: int | None = Field(default=None, ge=1, le=4096, description="sbatch --ntasks-per-node")
    memory_per_cpu_mb: int | None = Field(
        default=None,
        alias="memoryPerCpuMB",
        ge=1,
        le=1024 * 1024 * 1024,
        description="Memory per allocated CPU (sbatch --mem-per-cpu); not with memoryMB",
    )
    gpus: GpuList | None = Field(default=None, description="GPUs for the whole job (sbatch --gpus)")
    gpus_per_node: GpuList | None = Field(default=None, description="GPUs on each node (sbatch --gpus-per-node)")
    gpus_per_task: GpuList | None = Field(default=None, description="GPUs for each task (sbatch --gpus-per-task)")
    gres: GresList | None = None
    constraint: str | None = Field(
        default=None,
        max_length=128,
        description="Node features the job needs, joined by & (and) and | (or), with [ ], ( ) and *count "
        "(sbatch --constraint)",
        examples=["intel&ib", "[rack1*2&rack2*4]"],
    )
    exclusive: bool | None = Field(
        default=None, description="true: the job's nodes run no other job (sbatch --exclusive); false: as the partition"
    )
    begin: str | None = Field(
        default=None,
        max_length=32,
        description="Earliest start (sbatch --begin): now+1hour, 2026-12-24T18:00 or 18:00",
        examples=["now+1hour"],
    )
    reservation: SlurmName | None = Field(default=None, description="sbatch --reservation")
    requeue: bool | None = Field(
        default=None, description="Whether Slurm may requeue the job (true: sbatch --requeue, false: --no-requeue)"
    )
    nice: int | None = Field(
        default=None, ge=-MAX_NICE, le=MAX_NICE, description="Lowers the job's priority by this much (sbatch --nice)"
    )
    licenses: LicenseList | None = None

    @field_validator("constraint")
    @classmethod
    def _constraint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            return check_constraint(value)
        except ValueError as error:
            raise ValueError(f"constraint: {error} (e.g. intel&ib or [rack1*2&rack2*4])") from None

    @field_validator("begin")
    @classmethod
    def _begin(cls, value: str | None) -> str | None:
        return value if value is None else check_begin(value)

    @field_validator("script_s3_key")
    @classmethod
    def _script_s3_key(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _check_path_text(value, "scriptS3Key")
        if "//" in value or value.endswith("/"):
            raise ValueError("scriptS3Key must name an object, not a prefix")
        return value

    @field_validator("array")
    @classmethod
    def _array(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            if not _ARRAY_CHARACTERS.fullmatch(value):
                raise ValueError(f"not a Slurm array expression: {value!r}")
            expand_array_indices(value, limit=MAX_ARRAY_TASKS)
        except ValueError as error:
            raise ValueError(f"array: {error} (at most {MAX_ARRAY_TASKS} tasks, e.g. 1-10%2 or 1,3,5-9:2)") from None
        return value

    @field_validator("working_directory")
    @classmethod
    def _working_directory(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith("/"):
            raise ValueError("workingDirectory must be an absolute path")
        return _check_path_text(value, "workingDirectory")

    @property
    def array_task_ids(self) -> list[int] | None:
        return expand_array_indices(self.array, limit=MAX_ARRAY_TASKS) if self.array else None


def environment_bytes(environment: dict[str, str]) -> int:
    """The size of an environment as its limit counts it: each name, its value in UTF-8 and 2 bytes ("=", NUL)."""
    return sum(len(name) + len(text.encode("utf-8")) + 2 for name, text in environment.items())


class JobSpec(JobSpecBase):
    """What to run and with which resources."""

    script: str | None = Field(
        default=None,
        description="The batch script itself (at most 64 KiB, starting with #!)",
        examples=["#!/bin/bash\necho hello\n"],
    )
    environment: dict[str, str] | None = Field(
        default=None, max_length=256, description="Variables added to the job's environment"
    )
    outputs: list[str] | None = Field(
        default=None,
        max_length=100,
        description="Files (relative to the working directory) copied to S3 after the job",
        examples=[["results/summary.csv"]],
    )

    @field_validator("script")
    @classmethod
    def _script(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if len(value.encode("utf-8")) > MAX_SCRIPT_BYTES:
            raise ValueError(f"script must be at most {MAX_SCRIPT_BYTES} bytes")
        if not value.startswith("#!"):
            raise ValueError("script must start with #! and an interpreter, e.g. #!/bin/bash")
        if "\x00" in value:
            raise ValueError("script must not contain NUL characters")
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        for name, text in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", name):
                raise ValueError(f"environment variable name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
            if name.upper().startswith(RESERVED_ENVIRONMENT_PREFIXES):
                raise ValueError(f"environment variable {name!r} is reserved for Slurm")
            if "\x00" in text:
                raise ValueError(f"environment variable {name!r} must not contain NUL characters")
        if environment_bytes(value) > MAX_ENVIRONMENT_BYTES:
            raise ValueError(f"environment must be at most {MAX_ENVIRONMENT_BYTES} bytes in all")
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        for path in value:
            if not path or len(path) > 1024:
                raise ValueError("each output must be a relative path of 1 to 1024 characters")
            if path.startswith("/"):
                raise ValueError(f"output {path!r} must be relative to the working directory")
            if "//" in path or path.endswith("/"):
                raise ValueError(f"output {path!r} must name a file")
            _check_path_text(path, f"output {path!r}")
        if len(set(value)) != len(value):
            raise ValueError("outputs must not repeat a path")
        return value

    @model_validator(mode="after")
    def _no_conflicting_fields(self) -> JobSpec:
        """Fields that exclude one another, every conflict named at once."""
        conflicts = []
        if (self.script is None) == (self.script_s3_key is None):
            conflicts.append("give exactly one of script or scriptS3Key")
        if self.memory_mb is not None and self.memory_per_cpu_mb is not None:
            conflicts.append("give at most one of memoryMB (per node) and memoryPerCpuMB (per CPU)")
        if conflicts:
            raise ValueError("; ".join(conflicts))
        return self

    def to_json_dict(self) -> dict:
        """The spec as the API shows it (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
