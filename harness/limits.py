"""The largest job specs the README allows, for the tests and the reliability report that check the workflow's state
stays small whatever the spec (Step Functions fails an execution whose input or state exceeds 256 KiB)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

SCRIPT_BYTES = 64 * 1024  # the README's limits (slurm_job_api.spec)
ENVIRONMENT_BYTES = 64 * 1024
ENVIRONMENT_VARIABLES = 256
OUTPUTS = 100
OUTPUT_PATH_CHARACTERS = 1024
WORKING_DIRECTORY_CHARACTERS = 4096
ARRAY_CHARACTERS = 256
ARRAY_TASKS = 1000
DEPENDENCIES = 32
SLURM_NAME = "n" * 64
WIDE_CHARACTER = "\u6587"  # 文: three bytes in UTF-8, six (\u6587) in JSON with ASCII escapes
# The sbatch-option fields at their longest (spec.py): lists of resources up to their limits (64 characters for a
# GPU list, 128 for gres, constraint and licenses), the longest begin time and Slurm name, the widest numbers.
# memoryPerCpuMB stands for memoryMB (a spec gives at most one of them): the longer name of the two.
LARGEST_SBATCH_OPTIONS = {
    "ntasksPerNode": 4096,
    "memoryPerCpuMB": 1024**3,
    "gpus": "g" * 32 + ":999999999," + "h" * 11 + ":999999999",
    "gpusPerNode": "g" * 32 + ":999999999," + "h" * 11 + ":999999999",
    "gpusPerTask": "g" * 32 + ":999999999," + "h" * 11 + ":999999999",
    "gres": "n" * 32 + ":" + "t" * 32 + ":999999999G," + "m" * 20 + ":" + "u" * 19 + ":999999999G",
    "constraint": "f" * 32 + ("&" + "f" * 31) * 3,
    "reservation": SLURM_NAME,
    "licenses": "l" * 32 + "@" + "s" * 32 + ":999999999," + "m" * 20 + "@" + "t" * 21 + ":999999999",
    "begin": "2026-12-24T18:00:00",
    "nice": -(2**31 - 3),
    "exclusive": True,
    "requeue": False,
}
# What the workflow's execution input and each state may hold at most, well below Step Functions' 256 KiB: the
# largest measured is about 1.1 KiB (docs/reliability.md), whatever the spec.
STATE_BUDGET_BYTES = 16 * 1024


def _filled(prefix: str, unit: str, total_bytes: int, line_bytes: int = 96) -> str:
    """`prefix` then lines of `unit`s, padded with ASCII to exactly `total_bytes` bytes of UTF-8."""
    text, size = [prefix], len(prefix.encode())
    unit_bytes = len(unit.encode())
    per_line = max(1, (line_bytes - 3) // unit_bytes)
    line = "# " + unit * per_line + "\n"
    while size + len(line.encode()) <= total_bytes - 5:  # room for "true\n"
        text.append(line)
        size += len(line.encode())
    text.append("true\n")
    size += 5
    text.append("#" * (total_bytes - size))
    return "".join(text)


def _path(first: str, characters: int) -> str:
    """A path of exactly `characters` characters in components of at most 200."""
    parts, length = [first], len(first)
    while length < characters:
        part = "p" * min(200, characters - length - 1)
        if not part:  # one character left: lengthen the last component instead of ending with "/"
            parts[-1] += "p"
            break
        parts.append(part)
        length += 1 + len(part)
    return "/".join(parts)


def largest_spec(*, wide: bool, dependency_job_id: str) -> dict:
    """Every field at its maximum. `wide`: the script and the environment's values are three-byte UTF-8 characters
    (the outputs stay ASCII: 100 outputs of 1024 such characters would not fit the 256 KiB request body)."""
    unit = WIDE_CHARACTER if wide else "x"
    per_variable = ENVIRONMENT_BYTES // ENVIRONMENT_VARIABLES  # name + value + 2, as the spec counts them
    environment = {}
    for index in range(ENVIRONMENT_VARIABLES):
        name = f"E{index:03d}"
        value_bytes = per_variable - len(name) - 2
        value = unit * (value_bytes // len(unit.encode()))
        environment[name] = value + "v" * (value_bytes - len(value.encode()))
    array_ids: list[str] = []
    while len(",".join([*array_ids, str(len(array_ids) + 1)])) <= ARRAY_CHARACTERS:
        array_ids.append(str(len(array_ids) + 1))
    array = ",".join(array_ids)
    array = "0" * (ARRAY_CHARACTERS - len(array)) + array  # leading zeros make it exactly the longest allowed
    return {
        "name": SLURM_NAME,
        "script": _filled("#!/bin/bash\n", unit, SCRIPT_BYTES),
        "partition": SLURM_NAME,
        "account": SLURM_NAME,
        "qos": SLURM_NAME,
        "nodes": 100_000,
        "ntasks": 10_000_000,
        "cpusPerTask": 4096,
        "timeLimitMinutes": 366 * 24 * 60,
        "array": array,
        "dependency": [{"type": "afterany", "jobId": dependency_job_id}] * DEPENDENCIES,
        "environment": environment,
        "workingDirectory": _path("/srv", WORKING_DIRECTORY_CHARACTERS),
        "outputs": [_path(f"o{index:03d}", OUTPUT_PATH_CHARACTERS) for index in range(OUTPUTS)],
        **LARGEST_SBATCH_OPTIONS,
    }


def largest_array_spec() -> dict:
    """The most tasks with the most outputs: 1000 x (stdout, stderr) + 100 outputs = 2100 files to collect."""
    return {
        "name": "largest-array",
        "script": "#!/bin/bash\ntrue\n",
        "array": f"1-{ARRAY_TASKS}",
        "outputs": [f"results/out-{index:03d}.csv" for index in range(OUTPUTS)],
    }


def largest_array_file_names() -> list[str]:
    """The names result.json lists for largest_array_spec() when every file exists, in its order."""
    tasks = [f"tasks/{task}/{stream}" for task in range(1, ARRAY_TASKS + 1) for stream in ("stdout", "stderr")]
    return [*tasks, *(f"outputs/results/out-{index:03d}.csv" for index in range(OUTPUTS))]


# What one job record (DynamoDB item) may hold: every status update writes the whole item, billed per started 1 KB
# (DynamoDB's write units), so the record keeps a summary of the spec, never the script, the environment or the
# outputs. RECORD_BUDGET_BYTES: the record of the largest spec (measured about 7 KiB, docs/reliability.md);
# RECORD_WORST_CASE_BYTES: any record, whatever the spec and however the job ends (the longest cause and error).
RECORD_BUDGET_BYTES = 16 * 1024
RECORD_WORST_CASE_BYTES = 20 * 1024
DYNAMODB_ITEM_LIMIT_BYTES = 400 * 1024
DYNAMODB_WRITE_UNIT_BYTES = 1024


def dynamodb_item_bytes(item: Mapping[str, Any]) -> int:
    """The size DynamoDB bills for an item of plain values (str, int, Decimal, bool, None, lists, maps), by the rules
    of "DynamoDB item sizes and formats" (docs/facts.md): names and strings in UTF-8 bytes, a number 1 byte per two
    significant digits plus 1, a boolean or null 1 byte, a list or map 3 bytes plus 1 byte per element plus its
    elements (a map's element counts its name too)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, int | float | Decimal):
        digits = format(Decimal(value).normalize(), "f").lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if isinstance(value, Mapping):
        return 3 + sum(1 + len(name.encode()) + _value_bytes(element) for name, element in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(1 + _value_bytes(element) for element in value)
    raise TypeError(f"not a DynamoDB value: {value!r}")


def write_units(item_bytes: int) -> int:
    """Write units one write of an item of this size costs: 1 per started KB (a global secondary index that projects
    every attribute, as OwnerCreatedAtIndex does, costs as much again)."""
    return -(-item_bytes // DYNAMODB_WRITE_UNIT_BYTES)
