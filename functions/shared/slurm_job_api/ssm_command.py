"""The AWS-RunShellScript command that runs the head-node program (pure).

The shell text is fixed: the variable parts — the program and the request — travel as two base64 lines in a quoted
here-document, read by python3 from stdin. Base64 has no quote, no '$' and no '_', so the delimiter below (which
has '_') can never appear as a data line, and the shell expands nothing inside a quoted here-document.
"""

from __future__ import annotations

import base64
import json
import zlib
from functools import cache
from importlib import resources

from slurm_job_api.head_node_program import LOADER, PROTOCOL, PYTHON_OPTIONS

HEREDOC_DELIMITER = "SLURM_JOB_API_INPUT"
NO_PYTHON_REPLY = json.dumps(
    {
        "ok": False,
        "protocol": PROTOCOL,
        "action": None,
        "error": {
            "type": "HeadNodeSetupError",
            "message": "python3 (3.7 or newer) is not installed on the head node",
            "retryable": False,
        },
    },
    separators=(",", ":"),
)


@cache
def program_line() -> str:
    """The head-node program, zlib-compressed and base64-encoded (one line)."""
    source = resources.files("slurm_job_api").joinpath("head_node_program.py").read_bytes()
    return base64.b64encode(zlib.compress(source, 9)).decode("ascii")


def request_line(request: dict) -> str:
    """The request as one line: base64 of the zlib-compressed JSON (the program's decode_request_line reads it)."""
    document = json.dumps(request, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.b64encode(zlib.compress(document, 9)).decode("ascii")


def shell_commands(request: dict) -> list[str]:
    """The `commands` parameter of AWS-RunShellScript for one request to the head-node program."""
    if "'" in LOADER or "'" in NO_PYTHON_REPLY:
        raise AssertionError("the loader and the fallback reply must fit in single quotes")
    return [
        "set -u",
        'PYTHON="$(command -v python3 || true)"',
        f"if [ -z \"$PYTHON\" ]; then echo '{NO_PYTHON_REPLY}'; exit 2; fi",
        f"exec \"$PYTHON\" {' '.join(PYTHON_OPTIONS)} -c '{LOADER}' <<'{HEREDOC_DELIMITER}'",
        program_line(),
        request_line(request),
        HEREDOC_DELIMITER,
    ]


def command_size(commands: list[str]) -> int:
    """Bytes of the parameters as SendCommand carries them (the lines joined by newlines)."""
    return len("\n".join(commands).encode("utf-8"))
