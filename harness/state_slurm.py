"""Slurm stand-ins for one job, answering from the job's current state (running, then ended), as tiny shell scripts.

The long-job benchmark polls a job a hundred times and more. tests/support/fake_slurm.py answers from a list of
answers consumed call by call, through a Python interpreter per call; here each command is a ``cat`` of the answer
for the job's state now, so a poll costs what the product costs, and the state changes when the virtual clock says
so (:meth:`StateSlurm.show`), whatever the number of calls before. The answers are in the formats the head-node
program reads (harness/scripted_slurm.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from harness.scripted_slurm import scontrol_line, squeue_line

SLURM_JOB_ID = "101"
_TIMES = "2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T10:05:00"


def slurm_config(*, accounting: bool, min_job_age: int) -> str:
    """The `scontrol show config` lines the head-node program reads."""
    storage = "accounting_storage/slurmdbd" if accounting else "accounting_storage/none"
    return f"MinJobAge = {min_job_age} sec\nAccountingStorageType = {storage}\n"


# While the job runs, squeue answers alone (the program asks sacct and scontrol only about an ended job).
RUNNING_ANSWERS: Mapping[str, str] = {
    "squeue": squeue_line("RUNNING", job=SLURM_JOB_ID)["stdout"],
    "sacct": "",
    "scontrol": "",
}
ENDED_ANSWERS: Mapping[str, str] = {
    "squeue": squeue_line("COMPLETED", job=SLURM_JOB_ID)["stdout"],
    "sacct": f"{SLURM_JOB_ID}|{SLURM_JOB_ID}|COMPLETED|0:0|None|{_TIMES}\n",
    "scontrol": scontrol_line("COMPLETED", "0:0", job=SLURM_JOB_ID)["stdout"],
}


class StateSlurm:
    """sbatch, squeue, sacct, scontrol and scancel for the one job ``SLURM_JOB_ID``, in ``directory/bin`` (readable
    and executable by everyone: the head-node program runs them as the cluster user).

    squeue also answers the submit's look-up of an earlier submission: its line carries no job comment of ours, so
    the program finds none and runs sbatch.
    """

    def __init__(self, directory: Path) -> None:
        self.bin_dir = directory / "bin"
        self._answers = directory / "answers"
        for path in (directory, self.bin_dir, self._answers):
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.chmod(0o755)
        self.configure(slurm_config(accounting=True, min_job_age=300))
        self._write("sbatch", f"{SLURM_JOB_ID}\n")
        self.show(RUNNING_ANSWERS)
        scripts = {
            "sbatch": f'exec cat "{self._answers}/sbatch"',
            "squeue": f'exec cat "{self._answers}/squeue"',
            "sacct": f'exec cat "{self._answers}/sacct"',
            "scontrol": f'case "$*" in *config*) exec cat "{self._answers}/config" ;; esac\n'
            f'exec cat "{self._answers}/scontrol"',
            "scancel": "exit 0",
        }
        for tool, body in scripts.items():
            path = self.bin_dir / tool
            path.write_text(f"#!/bin/sh\n{body}\n")
            path.chmod(0o755)

    def configure(self, config: str) -> None:
        """What `scontrol show config` answers (accounting, MinJobAge)."""
        self._write("config", config)

    def show(self, answers: Mapping[str, str]) -> None:
        """From now on, the tools answer these (by tool name)."""
        for tool, text in answers.items():
            self._write(tool, text)

    def _write(self, name: str, text: str) -> None:
        """Atomically, so that a command running meanwhile reads the old answer or the new one, never half."""
        temporary = self._answers / f".{name}.tmp"
        temporary.write_text(text)
        temporary.chmod(0o644)
        temporary.replace(self._answers / name)

    def remove(self) -> None:
        shutil.rmtree(self.bin_dir.parent, ignore_errors=True)
