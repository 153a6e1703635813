"""The SSM command is fixed shell text plus base64: request data can never become shell syntax."""

import base64
import json
import re
import subprocess
import zlib

from slurm_job_api.ssm_command import HEREDOC_DELIMITER, command_size, program_line, shell_commands

BASE64_LINE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def test_variable_parts_are_base64_lines_only():
    hostile = {"action": "status", "x": "'; rm -rf / #\n$(touch /tmp/pwned)`id`\nSLURM_JOB_API_INPUT\n"}
    commands = shell_commands(hostile)
    fixed = shell_commands({"action": "status"})
    assert commands[:4] == fixed[:4] and commands[-1] == HEREDOC_DELIMITER
    assert commands[4] == program_line() and BASE64_LINE.match(commands[4])
    assert BASE64_LINE.match(commands[5]) and json.loads(zlib.decompress(base64.b64decode(commands[5]))) == hostile
    assert "_" not in commands[4] + commands[5]  # so no data line can end the here-document early


def test_program_line_is_the_head_node_program():
    source = zlib.decompress(base64.b64decode(program_line())).decode()
    assert "def main(" in source and "SLURM_STATE_TO_STATUS" in source


def test_the_shell_hands_both_lines_to_python_unchanged(tmp_path):
    """Run the real command text with bash, with python3 replaced by a recorder of its stdin."""
    fake = tmp_path / "python3"
    fake.write_text(f"#!/bin/sh\ncat > {tmp_path}/stdin\necho '{{\"ok\": true}}'\n")
    fake.chmod(0o755)
    commands = shell_commands({"action": "status", "evil": f"$(touch {tmp_path}/pwned)"})
    done = subprocess.run(
        ["/bin/bash", "-c", "\n".join(commands)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == '{"ok": true}'
    lines = (tmp_path / "stdin").read_text().splitlines()
    assert lines == [commands[4], commands[5]]
    assert not (tmp_path / "pwned").exists()


def test_missing_python_gives_a_clear_reply(tmp_path):
    done = subprocess.run(
        ["/bin/bash", "-c", "\n".join(shell_commands({"action": "status"}))],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    reply = json.loads(done.stdout)
    assert done.returncode == 2 and reply["error"]["type"] == "HeadNodeSetupError"


def test_command_size_counts_the_joined_text():
    assert command_size(["ab", "c"]) == 4


def test_the_program_reads_the_compressed_request_line_and_refuses_anything_else():
    from slurm_job_api import head_node_program as program
    from slurm_job_api.ssm_command import request_line

    request = {"action": "collect", "uploads": [{"url": "https://example.invalid/" + "x" * 900}] * 50}
    assert program.decode_request_line(request_line(request) + "\n") == request
    assert len(request_line(request)) < len(json.dumps(request)) // 10  # many URLs sharing their text compress well
    plain = base64.b64encode(json.dumps(request).encode()).decode()
    bomb = base64.b64encode(zlib.compress(b" " * (program.MAX_REQUEST_BYTES + 1))).decode()
    cut = request_line(request)[:-8]
    for bad in (plain, bomb, cut, "not base64!"):
        try:
            program.decode_request_line(bad)
        except program.BadRequest:
            continue
        raise AssertionError(f"accepted a bad request line {bad[:40]!r}")
