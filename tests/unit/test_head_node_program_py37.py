"""The head-node program must run on the oldest python3 a ParallelCluster head node has: Python 3.7."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from slurm_job_api import head_node_program

PROGRAM = Path(head_node_program.__file__)
PYTHON37 = sorted(Path.home().glob(".pyenv/versions/3.7*/bin/python3.7"))

# Exercises the pure parts on real-shaped Slurm output and the request handling up to the privilege switch, and
# prints what it got as JSON, so that the result under 3.7 can be compared with the result here.
DRIVER = r"""
import io, json, sys
namespace = {"__name__": "head_node_program"}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), namespace)
squeue = "7_1|8|1|COMPLETED|None|2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T10:00:02\n" \
         "7_2|9|2|RUNNING|None|2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T11:00:01\n" \
         "7_[3-5%2]|7|N/A|PENDING|JobArrayTaskLimit|2026-11-25T10:00:00|N/A|N/A\n"
scontrol = "JobId=5 JobName=a b JobState=CANCELLED Reason=None ExitCode=0:15 ArrayTaskId=N/A\n"
sacct = "6|6|CANCELLED by 1001|0:0|None|2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T10:00:05\n"
utc = namespace["datetime"].timezone.utc
out = {
    "array": namespace["expand_array_indices"]("1-9:4,20%2"),
    "squeue": namespace["summarize"](namespace["parse_squeue"](squeue, utc), True),
    "scontrol": namespace["summarize"](namespace["parse_scontrol_jobs"](scontrol, utc), False),
    "sacct": namespace["summarize"](namespace["parse_sacct"](sacct, utc), False),
}
reply = io.StringIO()
code = namespace["main"](stdin=io.StringIO("bm90IGpzb24=\n"), stdout=reply)
out["main"] = [code, json.loads(reply.getvalue())]
print(json.dumps(out, sort_keys=True))
"""


def run_driver(python: str) -> dict:
    done = subprocess.run([python, "-c", DRIVER, str(PROGRAM)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_vermin_finds_nothing_newer_than_python_37():
    venv_bin = Path(__file__).resolve().parents[2] / ".venv" / "bin"
    done = subprocess.run(
        [str(venv_bin / "vermin"), "--target=3.7-", "--violations", "--no-tips", "--eval-annotations", str(PROGRAM)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not PYTHON37, reason="no Python 3.7 interpreter (pyenv) on this machine")
def test_runs_the_same_on_python_37_as_here():
    old, here = run_driver(str(PYTHON37[0])), run_driver("python3")
    assert old == here
    assert old["squeue"]["arrayTaskCounts"] == {"COMPLETED": 1, "RUNNING": 1, "PENDING": 3}
    assert old["sacct"]["status"] == "CANCELLED" and old["scontrol"]["signal"] == 15
    assert old["main"][0] == 2 and old["main"][1]["error"]["type"] == "BadRequest"
