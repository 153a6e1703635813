"""Stand-ins for Slurm's client commands that record how they were called (for head-node program tests).

Each tool is a copy of one Python script; it answers from a scenario file and appends its argv, working directory
and environment to calls.jsonl, and for sbatch what it read: the script (stdin) and the environment file (the
descriptor --export-file names). The directory is made writable for the unprivileged cluster user the program
switches to.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOOLS = ("sbatch", "squeue", "scontrol", "sacct", "scancel")

_SCRIPT = r"""#!/usr/bin/python3
import base64, fcntl, json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
tool = os.path.basename(sys.argv[0])
if tool == "scontrol" and "config" in sys.argv[1:]:
    tool = "scontrol-config"
with open(os.path.join(here, "scenario.json")) as handle:
    scenario = json.load(handle)
answers = scenario.get(tool, [{"rc": 0, "stdout": "", "stderr": ""}])
state_path = os.path.join(here, "state-" + tool)
stdin = sys.stdin.buffer.read() if tool == "sbatch" else b""  # sbatch reads the script from stdin
export_file = None
for arg in sys.argv[1:]:  # --export-file=<a descriptor number>, as sbatch(1) reads it
    if arg.startswith("--export-file=") and arg.split("=", 1)[1].isdigit():
        with os.fdopen(int(arg.split("=", 1)[1]), "rb") as handle:
            export_file = base64.b64encode(handle.read()).decode()
with open(os.path.join(here, "lock"), "a") as lock:  # tools called at the same time (many jobs in flight) take turns
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(os.path.join(here, "calls.jsonl"), "a") as log:
        log.write(json.dumps({"tool": tool, "argv": sys.argv[1:], "cwd": os.getcwd(), "uid": os.getuid(),
                              "env": dict(os.environ), "stdin": base64.b64encode(stdin).decode(),
                              "exportFile": export_file}) + "\n")
    count = int(open(state_path).read()) if os.path.exists(state_path) else 0
    with open(state_path, "w") as handle:
        handle.write(str(count + 1))
answer = answers[min(count, len(answers) - 1)]
options = dict(arg.split("=", 1) for arg in sys.argv[1:] if arg.startswith("--") and "=" in arg)
for option, content in answer.get("write", {}).items():  # e.g. {"--output": "..."}: what the job would have printed
    if option in options:
        for task in answer.get("arrayTasks") or [None]:  # an array job's files: %a is the task id
            path = options[option] if task is None else options[option].replace("%a", str(task))
            with open(path, "w") as handle:
                handle.write(content)
for relative, content in answer.get("writeOutputs", {}).items():  # declared outputs, under --chdir
    path = os.path.join(options["--chdir"], relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(content)
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("rc", 0))
"""


class FakeSlurm:
    def __init__(self, directory: Path, user: pwd.struct_passwd) -> None:
        self.bin_dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        for tool in TOOLS:
            path = directory / tool
            path.write_text(_SCRIPT)
            path.chmod(0o755)
        self.set({})
        os.chown(directory, user.pw_uid, user.pw_gid)
        directory.chmod(0o755)

    def set(self, scenario: dict) -> None:
        """scenario: {tool: [{"rc", "stdout", "stderr"}, ...]} answered in order (the last one repeats).

        `scontrol show config` answers as the tool "scontrol-config", so that it does not use up scontrol's answers.
        An answer may also "write" {option: content}: the file named by that option's value gets the content (so a
        fake sbatch can leave the output a job would have written), once per task of "arrayTasks" [ids] if given (%a
        in the value is the task id); and "writeOutputs" {relative path: content}: files under --chdir.
        """
        (self.bin_dir / "scenario.json").write_text(json.dumps(scenario))
        (self.bin_dir / "scenario.json").chmod(0o644)
        for path in [*self.bin_dir.glob("state-*"), self.bin_dir / "calls.jsonl"]:
            path.unlink(missing_ok=True)

    def calls(self, tool: str | None = None) -> list[dict]:
        log = self.bin_dir / "calls.jsonl"
        if not log.exists():
            return []
        text = log.read_text()
        complete = text[: text.rfind("\n") + 1]  # a line still being written shows at the next look
        entries = [json.loads(line) for line in complete.splitlines()]
        return [entry for entry in entries if tool is None or entry["tool"] == tool]

    @staticmethod
    def script(call: dict) -> bytes:
        """The script an sbatch call read from its stdin."""
        return base64.b64decode(call["stdin"])

    @staticmethod
    def export_file(call: dict) -> bytes | None:
        """The environment file an sbatch call read from the descriptor its --export-file named, or None."""
        return None if call["exportFile"] is None else base64.b64decode(call["exportFile"])

    def sbatch_calls_for(self, job_id: str) -> list[dict]:
        """The sbatch calls that submitted this job of the API (found by the comment the program adds)."""
        wanted = f"--comment=slurm-job-api:{job_id}:"
        return [call for call in self.calls("sbatch") if any(arg.startswith(wanted) for arg in call["argv"])]

    def remove(self) -> None:
        shutil.rmtree(self.bin_dir, ignore_errors=True)


@contextmanager
def fake_slurm(user: pwd.struct_passwd, prefix: str) -> Iterator[FakeSlurm]:
    """Recording Slurm stand-ins for `user`, in a fresh directory the cluster user can reach (not under pytest's
    tmp directory: that one is private to root), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    fake = FakeSlurm(directory / "bin", user)
    try:
        yield fake
    finally:
        fake.remove()
        directory.rmdir()
