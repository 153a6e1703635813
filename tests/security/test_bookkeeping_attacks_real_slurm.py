"""Jobs that attack the product's bookkeeping on the head node (issue 8, item 4), through the HTTP API of a real-Slurm
local stack. Every job runs as the one cluster user, who owns the home directory where the per-job directories live.

1. Job X closes the index (`chmod 000 ~/.slurm-job-api/jobs`, and the top) and plants a symlink and a directory where
   another caller's next job will go: it computes that job's id (uuid5 of the caller's ARN and Idempotency-Key; the
   test gives X the key, modelling an attacker who knows it). Root owns the index: every attempt fails.
2. Job Y does what its owner may do in its home: renames the whole tree away and puts a symlink to a tree of its own,
   with jobs/ closed, in its place. The head node moves the symlink aside at its next command and makes the tree anew.

Then the other caller's job (with that key) and another job of X's caller COMPLETE, each with its record, its
result.json and its stdout, and the attackers' own jobs have ended right too.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import uuid
from pathlib import Path

import pytest
import requests

from harness.workflow import finish, submit
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_OTHER
from local_stack.slurm_cluster import checkout_user_name
from local_stack.stack import LocalStack
from slurm_job_api.jobs_api import IDEMPOTENCY_NAMESPACE

CLUSTER_USER = checkout_user_name("sjapi-shared")  # its own user: these jobs move its bookkeeping aside
VICTIM_KEY = "nightly-report-2026-11-25"

CLOSE_AND_PLANT = """#!/bin/bash
cd ~
attempt() { if "$@" 2>/dev/null; then echo "done: $*"; else echo "refused: $*"; fi; }
attempt chmod 000 .slurm-job-api/jobs
attempt chmod 000 .slurm-job-api
attempt ln -s /etc ".slurm-job-api/jobs/$VICTIM"
attempt mkdir ".slurm-job-api/jobs/$VICTIM"
attempt ls .slurm-job-api/jobs
"""

SWAP_THE_TREE = """#!/bin/bash
cd ~
mv .slurm-job-api ".moved-by-job-$SLURM_JOB_ID"
mkdir -p "own-tree-$SLURM_JOB_ID/jobs"
chmod 000 "own-tree-$SLURM_JOB_ID/jobs"
ln -s "own-tree-$SLURM_JOB_ID" .slurm-job-api
echo swapped
"""


@pytest.fixture(scope="module")
def stack():
    if os.geteuid() != 0:
        pytest.skip("the local stack runs Slurm daemons and switches users: needs root")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    with LocalStack(
        name="bookkeeping-slurm", port_base=11817, cluster_user=CLUSTER_USER, parameters={"PollMinSeconds": "1"}
    ) as running:
        home = Path(pwd.getpwnam(CLUSTER_USER).pw_dir)
        clean(home)
        yield running
        clean(home)


def clean(home: Path) -> None:
    for path in home.iterdir():
        if path.name.startswith((".slurm-job-api", ".moved-by-job-", "own-tree-")):
            if path.is_dir() and not path.is_symlink():
                for inner in path.rglob("*"):
                    if inner.is_dir() and not inner.is_symlink():
                        inner.chmod(0o700)  # the closed jobs/ of a job's own tree
                shutil.rmtree(path)
            else:
                path.unlink()


@pytest.fixture(scope="module")
def cloud(stack):
    return stack.running_cloud


def run(cloud, api, spec: dict, headers: dict | None = None) -> tuple[str, dict, dict, dict]:
    """(job id, execution, result.json, job view) of a job run to its end."""
    job_id = submit(api, spec, headers=headers)
    execution, _, result, view = finish(cloud, api, job_id, timeout=120)
    return job_id, execution, result, view


def stdout_of(api, job_id: str) -> str | None:
    answer = api.get(f"/jobs/{job_id}/output")
    assert answer.status_code == 200, answer.text
    links = {item["name"]: item["url"] for item in answer.json()["files"]}
    return requests.get(links["stdout"], timeout=10).text if "stdout" in links else None


def assert_ended_right(execution: dict, result: dict, view: dict) -> None:
    """COMPLETED: the execution, the job record and its result.json (read from S3) agree."""
    assert execution["status"] == "SUCCEEDED"
    assert view["status"] == result["status"] == "COMPLETED" and result["jobId"] == view["jobId"]


def test_jobs_cannot_break_other_callers_jobs(stack, cloud):
    developer, other = cloud.api_client(LOCAL_DEVELOPER), cloud.api_client(LOCAL_OTHER)
    home = Path(pwd.getpwnam(CLUSTER_USER).pw_dir)
    victim = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{LOCAL_OTHER.arn}\n{VICTIM_KEY}"))

    # 1. Close the index and plant at the victim's future job: refused, all of it.
    spec = {"name": "close-and-plant", "script": CLOSE_AND_PLANT, "environment": {"VICTIM": victim}}
    attacker, execution, result, view = run(cloud, developer, spec)
    assert_ended_right(execution, result, view)
    assert stdout_of(developer, attacker) == "".join(
        f"refused: {attempt}\n"
        for attempt in (
            "chmod 000 .slurm-job-api/jobs",
            "chmod 000 .slurm-job-api",
            f"ln -s /etc .slurm-job-api/jobs/{victim}",
            f"mkdir .slurm-job-api/jobs/{victim}",
            "ls .slurm-job-api/jobs",
        )
    )
    assert not os.path.lexists(home / ".slurm-job-api" / "jobs" / victim)

    # 2. Swap the tree for one of the job's own: the head node moves it aside at its next command.
    swapper, execution, result, view = run(cloud, developer, {"name": "swap-the-tree", "script": SWAP_THE_TREE})
    assert_ended_right(execution, result, view)
    # Its stdout went on into the tree it moved away, where collect no longer looks: listed as missing, the job ended.
    assert stdout_of(developer, swapper) is None
    moved = list(home.glob(".moved-by-job-*"))
    assert len(moved) == 1 and (moved[0] / "jobs" / swapper).is_dir()

    # 3. Jobs submitted after the attacks: the victim's (with the key the attacker knew) and another of X's caller.
    hello = {"name": "after-the-attacks", "script": "#!/bin/bash\necho hello from $(id -un)\n"}
    victim_job, execution, result, view = run(cloud, other, hello, headers={"Idempotency-Key": VICTIM_KEY})
    assert victim_job == victim  # the attacker had computed it right
    assert_ended_right(execution, result, view)
    assert stdout_of(other, victim) == f"hello from {CLUSTER_USER}\n"
    later, execution, result, view = run(cloud, developer, hello)
    assert_ended_right(execution, result, view)
    assert stdout_of(developer, later) == f"hello from {CLUSTER_USER}\n"

    # The bookkeeping is root's again; the swapped-in symlink lies aside; what it pointed at is as the job left it.
    top = home / ".slurm-job-api"
    assert [os.lstat(path).st_uid for path in (top, top / "jobs", top / "jobs" / victim)] == [0, 0, 0]
    assert stat.S_ISDIR(os.lstat(top).st_mode)
    (aside,) = home.glob(".slurm-job-api.tampered-*")
    assert aside.is_symlink() and os.readlink(aside).startswith("own-tree-")
    assert [path.name for path in home.glob("own-tree-*/*")] == ["jobs"]
    (submission,) = [path for path in (top / "jobs" / victim).iterdir() if path.is_dir()]
    info = os.lstat(submission)
    assert info.st_uid == pwd.getpwnam(CLUSTER_USER).pw_uid and stat.S_IMODE(info.st_mode) == 0o700
    assert sorted(path.name for path in (top / "jobs" / victim).iterdir()) == sorted(
        [submission.name, f"{submission.name}.lock", f"{submission.name}.submitted"]
    )
