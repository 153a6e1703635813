"""What the API must do with a job spec, decided from the documented rules alone (README "The job spec").

This is the tests' own reading of the contract, written without the product's code: it says whether a spec must be
accepted, which fields a refusal must name, and — for an accepted spec — exactly what sbatch must receive. It never
calls the product's validation or its sbatch_options.

Integer fields take JSON integers only: the same value in another JSON type (``"4"``, ``2.0``, ``true``) is invalid,
and the refusal must name the field.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 256 * 1024
MAX_SCRIPT_BYTES = 64 * 1024
MAX_ENVIRONMENT_BYTES = 64 * 1024
MAX_ARRAY_TASKS = 1000
DEFAULT_JOB_NAME = "slurm-job-api"
SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
RESERVED_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
S3_KEY = re.compile(r"[A-Za-z0-9!_.*'()/-]+", re.ASCII)
ARRAY = re.compile(r"(\d+(-\d+(:\d+)?)?)(,\d+(-\d+(:\d+)?)?)*(%\d+)?", re.ASCII)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INT_RANGES = {
    "nodes": (1, 100_000),
    "ntasks": (1, 10_000_000),
    "cpusPerTask": (1, 4096),
    "memoryMB": (1, 1024**3),
    "timeLimitMinutes": (1, 366 * 24 * 60),
    "ntasksPerNode": (1, 4096),
    "memoryPerCpuMB": (1, 1024**3),
    "nice": (-2_147_483_645, 2_147_483_645),
}
BOOLEAN_FIELDS = ("exclusive", "requeue")
# The README's resource syntax: names of [A-Za-z0-9_][A-Za-z0-9_.-], at most 32 characters; counts 1 to 999999999.
RESOURCE = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}"
COUNT = r"[1-9][0-9]{0,8}"
GPU_ITEM = rf"(?:{RESOURCE}:)?{COUNT}"
GPU_LIST = re.compile(rf"{GPU_ITEM}(?:,{GPU_ITEM})*", re.ASCII)
GRES_ITEM = rf"{RESOURCE}(?::{RESOURCE})?(?::{COUNT}[KMGT]?)?"
GRES_LIST = re.compile(rf"{GRES_ITEM}(?:,{GRES_ITEM})*", re.ASCII)
LICENSE_ITEM = rf"{RESOURCE}(?:@{RESOURCE})?(?::{COUNT})?"
LICENSE_LIST = re.compile(rf"{LICENSE_ITEM}(?:,{LICENSE_ITEM})*", re.ASCII)
BEGIN_OFFSET = re.compile(r"now(\+[0-9]{1,7}(seconds?|minutes?|hours?|days?|weeks?)?)?", re.ASCII)
BEGIN_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)?", re.ASCII)
BEGIN_TIME = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?", re.ASCII)
DEPENDENCY_TYPES = ("after", "afterany", "afterok", "afternotok")
# Fields that each give one sbatch option their value, checked by a pattern, a range or a type alone (README table
# "field, sbatch option, client flag").
SBATCH_OPTION_FIELDS = (
    "ntasksPerNode",
    "memoryPerCpuMB",
    "gpus",
    "gpusPerNode",
    "gpusPerTask",
    "gres",
    "constraint",
    "reservation",
    "licenses",
    "begin",
    "nice",
    "exclusive",
    "requeue",
)
SPEC_FIELDS = (
    "name",
    "script",
    "scriptS3Key",
    "partition",
    "nodes",
    "ntasks",
    "cpusPerTask",
    "memoryMB",
    "timeLimitMinutes",
    "array",
    "dependency",
    "environment",
    "workingDirectory",
    "account",
    "qos",
    "outputs",
    *SBATCH_OPTION_FIELDS,
)
KNOWN_FIELDS = frozenset(SPEC_FIELDS)


def caller_inputs_prefix(principal_arn: str) -> str:
    """The only prefix under which a caller may name a script (README "The API"): inputs/<SHA-256 of the caller's
    principal ARN, lowercase hex>/."""
    return f"inputs/{hashlib.sha256(principal_arn.encode()).hexdigest()}/"


class Invalid(Exception):
    """A field's value breaks the documented rules."""


@dataclass
class Verdict:
    """accept: the API must answer 202. Otherwise `status` and the words the error message must contain."""

    accept: bool
    status: int
    must_name: list[str] = field(default_factory=list)  # the fields a refusal names
    must_say: list[str] = field(default_factory=list)  # and what else it must say (the caller's inputs prefix)
    spec: dict[str, Any] = field(default_factory=dict)  # accepted: the values as sbatch must get them

    def problem(self, status: int, answer: Any) -> str | None:
        """Why an answer (status, JSON body) is not the documented one for this spec; None if it is."""
        if status >= 500:
            return f"server error {status}: {answer}"
        if status == 202:
            return None if self.accept else f"accepted, but {self.must_name} break the documented rules"
        message = answer.get("message", "") if isinstance(answer, dict) else ""
        wanted = [*self.must_name, *self.must_say]
        right = not self.accept and status == self.status and all(words in message for words in wanted)
        return None if right else f"{status} {answer}, expected {self.status} naming {wanted}"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: Any) -> str:
    if not isinstance(value, str) or not _encodable(value):
        raise Invalid
    return value


def _slurm_name(value: Any) -> str:
    if not SLURM_NAME.fullmatch(_text(value)):
        raise Invalid
    return value


def _integer(name: str, value: Any) -> int:
    low, high = INT_RANGES[name]
    if type(value) is not int or not low <= value <= high:  # a JSON integer: not true/false, "1" or 1.0
        raise Invalid
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:  # a JSON true or false: not 1, "true" or "yes"
        raise Invalid
    return value


def _pattern(expression: re.Pattern[str], max_length: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value)
        if len(text) > max_length or not expression.fullmatch(text):
            raise Invalid
        return text

    return check


# Constraint groups, innermost first: ( ) may hold [ ] and ( ), [ ] may hold ( ) but no [ ]; a group may take *count.
FEATURE = rf"(?:{RESOURCE}|\x01|\x02)(?:\*{COUNT})?"
PAREN_GROUP = re.compile(rf"\({FEATURE}(?:[&|]{FEATURE})*\)(?:\*{COUNT})?", re.ASCII)
BRACKET_FEATURE = rf"(?:{RESOURCE}|\x02)(?:\*{COUNT})?"
BRACKET_GROUP = re.compile(rf"\[{BRACKET_FEATURE}(?:[&|]{BRACKET_FEATURE})*\](?:\*{COUNT})?", re.ASCII)
CONSTRAINT = re.compile(rf"{FEATURE}(?:[&|]{FEATURE})*", re.ASCII)


def _constraint(value: Any) -> str:
    """Reduces each innermost group to a marker (\x02 for ( ), \x01 for [ ]) until none is left."""
    text = _text(value)
    if len(text) > 128 or "\x01" in text or "\x02" in text:
        raise Invalid
    reduced, previous = text, None
    while reduced != previous:
        previous = reduced
        reduced = BRACKET_GROUP.sub("\x01", PAREN_GROUP.sub("\x02", reduced))
    if not CONSTRAINT.fullmatch(reduced):
        raise Invalid
    return text


def _begin(value: Any) -> str:
    text = _text(value)
    if BEGIN_OFFSET.fullmatch(text):
        return text
    if date := BEGIN_DATE.fullmatch(text):
        year, month, day = (int(part) for part in date.groups()[:3])
        clock = [int(part or 0) for part in date.groups()[3:]]
        if year >= 1 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1] and _clock(*clock):
            return text
    if (time_of_day := BEGIN_TIME.fullmatch(text)) and _clock(*(int(part or 0) for part in time_of_day.groups())):
        return text
    raise Invalid


def _clock(hours: int, minutes: int, seconds: int) -> bool:
    return hours < 24 and minutes < 60 and seconds < 60


def array_task_count(expression: str) -> int:
    """Tasks of a Slurm --array expression in the documented ASCII form (ValueError if malformed)."""
    if not ARRAY.fullmatch(expression):
        raise ValueError(expression)
    indices: set[int] = set()
    for part in expression.split("%", 1)[0].split(","):
        bounds, _, step_text = part.partition(":")
        start_text, dash, end_text = bounds.partition("-")
        start, end, step = int(start_text), int(end_text) if dash else int(start_text), int(step_text or 1)
        if step <= 0 or end < start or (end - start) // step + 1 > MAX_ARRAY_TASKS:
            raise ValueError(expression)
        indices.update(range(start, end + 1, step))
        if len(indices) > MAX_ARRAY_TASKS:
            raise ValueError(expression)
    return len(indices)


def _array(value: Any) -> str:
    text = _text(value)
    if len(text) > 256:
        raise Invalid
    try:
        array_task_count(text)
    except ValueError:
        raise Invalid from None
    return text


def _path_text(value: str) -> str:
    if CONTROL.search(value) or any(part in (".", "..") for part in value.split("/")):
        raise Invalid
    return value


def _script(value: Any) -> str:
    text = _text(value)
    if not text.startswith("#!") or "\x00" in text or len(text.encode("utf-8")) > MAX_SCRIPT_BYTES:
        raise Invalid
    return text


def _script_key(value: Any) -> str:
    text = _text(value)
    if len(text) > 1024 or not S3_KEY.fullmatch(text) or "//" in text or text.endswith("/"):
        raise Invalid
    return _path_text(text)


def _working_directory(value: Any) -> str:
    text = _text(value)
    if len(text) > 4096 or not text.startswith("/"):
        raise Invalid
    return _path_text(text)


def _outputs(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 100:
        raise Invalid
    for path in value:
        text = _text(path)
        if not 1 <= len(text) <= 1024 or text.startswith("/") or "//" in text or text.endswith("/"):
            raise Invalid
        _path_text(text)
    if len(set(value)) != len(value):
        raise Invalid
    return value


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 256:
        raise Invalid
    total = 0
    for name, text in value.items():
        if not ENV_NAME.fullmatch(name) or name.upper().startswith(RESERVED_ENV_PREFIXES):
            raise Invalid
        if "\x00" in _text(text):
            raise Invalid
        total += len(name) + len(text.encode("utf-8")) + 2
    if total > MAX_ENVIRONMENT_BYTES:
        raise Invalid
    return value


def _dependency(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not 1 <= len(value) <= 32:
        raise Invalid
    entries = []
    for entry in value:
        if not isinstance(entry, dict) or not set(entry) <= {"type", "jobId"} or "jobId" not in entry:
            raise Invalid
        kind = entry.get("type", "afterok")
        if kind not in DEPENDENCY_TYPES or not isinstance(entry["jobId"], str) or not JOB_ID.fullmatch(entry["jobId"]):
            raise Invalid
        entries.append({"type": kind, "jobId": entry["jobId"]})
    return entries


CHECKS = {
    "name": _slurm_name,
    "partition": _slurm_name,
    "account": _slurm_name,
    "qos": _slurm_name,
    "script": _script,
    "scriptS3Key": _script_key,
    "array": _array,
    "dependency": _dependency,
    "environment": _environment,
    "workingDirectory": _working_directory,
    "outputs": _outputs,
    "reservation": _slurm_name,
    "gpus": _pattern(GPU_LIST, 64),
    "gpusPerNode": _pattern(GPU_LIST, 64),
    "gpusPerTask": _pattern(GPU_LIST, 64),
    "gres": _pattern(GRES_LIST, 128),
    "licenses": _pattern(LICENSE_LIST, 128),
    "constraint": _constraint,
    "begin": _begin,
    "exclusive": _boolean,
    "requeue": _boolean,
}


def judge(body: Any, *, body_bytes: int, existing_keys: set[str], my_jobs: set[str], my_inputs: str) -> Verdict:
    """The documented answer to POST /jobs with this JSON body (`body_bytes`: its size as sent) from the caller whose
    inputs prefix is `my_inputs` (caller_inputs_prefix)."""
    if body_bytes > MAX_BODY_BYTES:
        return Verdict(accept=False, status=413)
    if not isinstance(body, dict):
        return Verdict(accept=False, status=422, must_name=["body"])
    invalid: list[str] = [name for name in body if name not in KNOWN_FIELDS]
    spec: dict[str, Any] = {}
    for name, value in body.items():
        if name not in KNOWN_FIELDS or value is None:
            continue  # null is the same as leaving the field out
        try:
            spec[name] = _integer(name, value) if name in INT_RANGES else CHECKS[name](value)
        except Invalid:
            invalid.append(name)
    if invalid:
        return Verdict(accept=False, status=422, must_name=invalid)
    conflicting = []
    if ("script" in spec) == ("scriptS3Key" in spec):
        conflicting += ["script", "scriptS3Key"]
    if "memoryMB" in spec and "memoryPerCpuMB" in spec:
        conflicting += ["memoryMB", "memoryPerCpuMB"]
    if conflicting:
        return Verdict(accept=False, status=422, must_name=conflicting)
    references, must_say = [], []
    if "scriptS3Key" in spec:
        key = spec["scriptS3Key"]
        if not key.startswith(my_inputs):  # another caller's, the root of inputs/, jobs/, ...
            references.append("scriptS3Key")
            must_say.append(my_inputs)
        elif key not in existing_keys:
            references.append("scriptS3Key")
    for index, entry in enumerate(spec.get("dependency", [])):
        if entry["jobId"] not in my_jobs:
            references.append(f"dependency[{index}].jobId")
    if references:
        return Verdict(accept=False, status=422, must_name=references, must_say=must_say)
    return Verdict(accept=True, status=202, spec=spec)


def expected_sbatch_argv(
    spec: Mapping[str, Any], *, directory: str, comment: str, slurm_ids: Mapping[str, str]
) -> list[str]:
    """The exact sbatch argv for an accepted spec: the options the head node owns (its job directory, the comment
    that identifies the submission, where output goes, the environment file as EXPORT_FILE_DESCRIPTOR), one
    --name=value per spec field; no script (sbatch reads it from its stdin). `slurm_ids`: the Slurm job id of each job
    the spec depends on."""
    array = "array" in spec
    argv = [
        "--parsable",
        f"--comment={comment}",
        f"--chdir={spec.get('workingDirectory') or directory}",
        f"--output={directory}/slurm-stdout" + (".%a" if array else ""),
        f"--error={directory}/slurm-stderr" + (".%a" if array else ""),
        "--kill-on-invalid-dep=yes",
    ]
    if spec.get("environment"):
        argv.append(f"--export-file={EXPORT_FILE_DESCRIPTOR}")
    argv.append(f"--job-name={spec.get('name') or DEFAULT_JOB_NAME}")
    for flag, key in (
        ("partition", "partition"),
        ("nodes", "nodes"),
        ("ntasks", "ntasks"),
        ("cpus-per-task", "cpusPerTask"),
        ("mem", "memoryMB"),
        ("time", "timeLimitMinutes"),
        ("array", "array"),
        ("account", "account"),
        ("qos", "qos"),
        ("ntasks-per-node", "ntasksPerNode"),
        ("mem-per-cpu", "memoryPerCpuMB"),
        ("gpus", "gpus"),
        ("gpus-per-node", "gpusPerNode"),
        ("gpus-per-task", "gpusPerTask"),
        ("gres", "gres"),
        ("constraint", "constraint"),
        ("reservation", "reservation"),
        ("licenses", "licenses"),
        ("begin", "begin"),
        ("nice", "nice"),
    ):
        if key in spec:
            argv.append(f"--{flag}={spec[key]}" + ("M" if key in ("memoryMB", "memoryPerCpuMB") else ""))
    if spec.get("exclusive"):
        argv.append("--exclusive")  # false: no flag, the partition's default
    if "requeue" in spec:
        argv.append("--requeue" if spec["requeue"] else "--no-requeue")
    waits: dict[str, list[str]] = {}
    for entry in spec.get("dependency", []):
        waits.setdefault(entry["type"], []).append(slurm_ids[entry["jobId"]])
    if waits:
        argv.append("--dependency=" + ",".join(":".join([kind, *waits[kind]]) for kind in sorted(waits)))
    return argv


# Stands for the descriptor number in --export-file=<n>, whichever the program's sbatch got.
EXPORT_FILE_DESCRIPTOR = "<descriptor>"


def with_export_descriptor(argv: list[str]) -> list[str]:
    """An sbatch argv with its --export-file descriptor number written as EXPORT_FILE_DESCRIPTOR."""
    return [
        f"--export-file={EXPORT_FILE_DESCRIPTOR}"
        if arg.startswith("--export-file=") and arg.split("=", 1)[1].isdigit()
        else arg
        for arg in argv
    ]


def environment_file_entries(environment: Mapping[str, str]) -> list[bytes]:
    """The NAME=value entries the job's environment file must hold (NUL-terminated each)."""
    return sorted(f"{name}={value}".encode() for name, value in environment.items())
