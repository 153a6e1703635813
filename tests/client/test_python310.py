"""The client runs on Python 3.10 (its requires-python): vermin finds nothing newer in it, and ``sja`` under a real
3.10 interpreter (pyenv's, when this machine has one) submits a job to the fake API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import botocore
import pytest

import slurm_job_client

PACKAGE = Path(slurm_job_client.__file__).parent
PYTHON310 = sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))


def test_vermin_finds_nothing_newer_than_python_310():
    vermin = Path(sys.executable).parent / "vermin"
    done = subprocess.run(
        [str(vermin), "--target=3.10-", "--violations", "--no-tips", "--eval-annotations", str(PACKAGE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not PYTHON310, reason="no Python 3.10 interpreter (pyenv) on this machine")
def test_sja_submits_under_python_310(fake_api, tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    # botocore and its dependencies are pure Python: this environment's copies serve 3.10 as well.
    path = os.pathsep.join([str(PACKAGE.parent), str(Path(botocore.__file__).parents[1])])
    done = subprocess.run(
        [str(PYTHON310[0]), "-m", "slurm_job_client", "--api-url", fake_api.url, "submit", "-t", "1:30", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert fake_api.to("POST", "/v1/jobs")[0].json() == {"script": "#!/bin/bash\ntrue\n", "timeLimitMinutes": 2}
    assert done.stdout == f"Submitted job {next(iter(fake_api.jobs_by_key.values()))}\n"
