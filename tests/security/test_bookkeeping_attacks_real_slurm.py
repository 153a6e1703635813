"""Jobs that attack the product's files on the head node (issue 8, item 4), through the HTTP API of a real-Slurm local
stack in the single-tenant mode (CallerMapping=single-tenant, the deployer's explicit choice): every job runs as the
one cluster user, who owns the home directory and the job directories in it; the
product's bookkeeping (locks and markers) lies in root's state directory, outside every home.

1. Job X tries to close, rename, list and plant in the state directory and its parent: refused, all of it. In the home
   it plants a symlink where another caller's next job would go if job ids could be computed from public data (the
   caller's ARN and Idempotency-Key, which the test gives X, modelling an attacker who knows the key; version 1 made
   the id so), then closes the whole tree of job directories (`chmod 000`): both are the user's to do. The collect of
   X's own files opens the tree again; the victim's job gets a random id, so the plant misses it; it COMPLETES.
2. Job Y renames the tree away and puts a symlink to a tree of its own, with its jobs closed, in its place.
3. Job Z renames the tree in a loop, as fast as it can, each time putting its own directory or a symlink in its place,
   and tries to rename the state directory and its parents, while the other caller submits jobs: each is taken by
   Slurm and ends with its record and its result.json (whether it could write its output where the loop left the
   tree is up to the loop: in this shared mode the tree is the attacker's as much as anyone's).

Then a job of each caller COMPLETES, each with its record, its result.json and its stdout; the attackers' own jobs have
ended right too; the bookkeeping of every job is root's and intact.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import time
import uuid
from pathlib import Path

import pytest
import requests

from harness.workflow import finish, submit
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_OTHER
from local_stack.slurm_cluster import checkout_user_name, remove_job_files
from local_stack.stack import LocalStack
from slurm_job_api.head_node_program import JOB_DIRECTORIES
from slurm_job_api.statuses import TERMINAL_STATUSES
from tests.support.tree_attacks import RENAMING_LOOP, remove

CLUSTER_USER = checkout_user_name("sjapi-shared")  # its own user: these jobs move its job directories around
VICTIM_KEY = "nightly-report-2026-11-25"
STOP_FILE = ".stop-renaming"
VICTIMS_DURING_THE_LOOP = 4

CLOSE_AND_PLANT = f"""#!/bin/bash
cd ~
attempt() {{ if "$@" 2>/dev/null; then echo "done: $*"; else echo "refused: $*"; fi; }}
attempt chmod 000 "$STATE"
attempt mv "$STATE" "$STATE.moved"
attempt mv "$(dirname "$STATE")" "$(dirname "$STATE").moved"
attempt ln -s /etc "$STATE/users/$(id -un)"
attempt mkdir "$STATE/mine"
attempt ls "$STATE"
attempt ln -s /etc "{JOB_DIRECTORIES}/$VICTIM"
attempt chmod 000 {JOB_DIRECTORIES}
"""

SWAP_THE_TREE = f"""#!/bin/bash
cd ~
mv {JOB_DIRECTORIES} ".moved-by-job-$SLURM_JOB_ID"
mkdir -p "own-tree-$SLURM_JOB_ID/jobs"
chmod 000 "own-tree-$SLURM_JOB_ID/jobs"
ln -s "own-tree-$SLURM_JOB_ID" {JOB_DIRECTORIES}
echo swapped
"""

# Until the test says stop (or 10 minutes have passed): renames the tree onto one of 64 names, puts its own directory,
# a symlink to /etc or a symlink to a moved tree in its place, and tries the state directory and its parents. It
# writes what it did to ~/own-report-<Slurm job id>: its own stdout lies in a tree it keeps moving.
RENAME_IN_A_LOOP = f"""#!/bin/bash
cd ~
exec python3 - {JOB_DIRECTORIES} /etc "$STATE" {STOP_FILE} "own-report-$SLURM_JOB_ID" <<'EOF'
{RENAMING_LOOP}EOF
"""
HELLO = {"name": "after-the-attacks", "script": "#!/bin/bash\necho hello from $(id -un)\n"}


@pytest.fixture(scope="module")
def stack():
    if os.geteuid() != 0:
        pytest.skip("the local stack runs Slurm daemons and switches users: needs root")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    with LocalStack(
        name="bookkeeping-slurm",
        port_base=11817,
        cluster_user=CLUSTER_USER,
        parameters={"PollMinSeconds": "1", "CallerMapping": "single-tenant"},
    ) as running:
        user = pwd.getpwnam(CLUSTER_USER)
        clean(user)
        try:
            yield running
        finally:
            (Path(user.pw_dir) / STOP_FILE).touch()  # a loop still running (a failed test) stops
            clean(user)


def clean(user: pwd.struct_passwd) -> None:
    """The home without the job directories or what the attacks made (however they closed it), and no bookkeeping of
    the user's: nothing left that would meet the next run's jobs."""
    for path in Path(user.pw_dir).iterdir():
        if path.name.startswith((".moved-", "own-tree-", "own-report-", STOP_FILE)):
            remove(path)
    tree = Path(user.pw_dir) / JOB_DIRECTORIES
    if tree.is_dir() and not tree.is_symlink():
        tree.chmod(0o700)
    remove_job_files(user)


@pytest.fixture(scope="module")
def cloud(stack):
    return stack.running_cloud


def run(cloud, api, spec: dict, headers: dict | None = None) -> tuple[str, dict, dict, dict]:
    """(job id, execution, result.json, job view) of a job run to its end."""
    job_id = submit(api, spec, headers=headers)
    execution, _, result, view = finish(cloud, api, job_id, timeout=180)
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


def assert_ended_with_a_record(view: dict, result: dict) -> None:
    """Taken by Slurm and ended: the record and result.json agree on a terminal status Slurm gave."""
    assert view["slurmJobId"] and result["jobId"] == view["jobId"], view
    assert view["status"] == result["status"] and view["status"] in TERMINAL_STATUSES, (view, result)
    assert view["status"] not in ("SUBMIT_FAILED", "ERROR", "UNKNOWN"), view


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.2)


def test_jobs_cannot_break_other_callers_jobs(stack, cloud):
    developer, other = cloud.api_client(LOCAL_DEVELOPER), cloud.api_client(LOCAL_OTHER)
    user = pwd.getpwnam(CLUSTER_USER)
    home, state = Path(user.pw_dir), cloud.head_node.state_directory
    tree, index = home / JOB_DIRECTORIES, state / "users" / CLUSTER_USER / "jobs"
    # The id version 1 gave the victim's next job: uuid5 of the caller's ARN and Idempotency-Key, public data.
    guess = str(uuid.uuid5(uuid.UUID("6f1d3c52-6a43-4c8e-9f57-5b0f5d1c2a77"), f"{LOCAL_OTHER.arn}\n{VICTIM_KEY}"))
    state_before = sorted(path.name for path in state.parent.iterdir())

    # 1. The state directory: refused, all of it. The home tree: the user's own, so a symlink is planted at the
    #    id version 1 would have given the victim's next job and the tree is closed; X's own collect opens it again.
    spec = {
        "name": "close-and-plant",
        "script": CLOSE_AND_PLANT,
        "environment": {"VICTIM": guess, "STATE": str(state)},
    }
    attacker, execution, result, view = run(cloud, developer, spec)
    assert_ended_right(execution, result, view)
    assert stdout_of(developer, attacker) == "".join(
        [
            f"refused: chmod 000 {state}\n",
            f"refused: mv {state} {state}.moved\n",
            f"refused: mv {state.parent} {state.parent}.moved\n",
            f"refused: ln -s /etc {state}/users/{CLUSTER_USER}\n",
            f"refused: mkdir {state}/mine\n",
            f"refused: ls {state}\n",
            f"done: ln -s /etc {JOB_DIRECTORIES}/{guess}\n",
            f"done: chmod 000 {JOB_DIRECTORIES}\n",
        ]
    )
    assert stat.S_IMODE(os.lstat(tree).st_mode) == 0o700  # opened again by the collect of X's files
    assert os.path.islink(tree / guess)
    # The victim's job (with the key the attacker knew) has a random id: the plant missed it, and stays untouched.
    victim, execution, result, view = run(cloud, other, HELLO, headers={"Idempotency-Key": VICTIM_KEY})
    assert victim != guess and uuid.UUID(victim).version == 4
    assert_ended_right(execution, result, view)
    assert stdout_of(other, victim) == f"hello from {CLUSTER_USER}\n"
    assert os.readlink(tree / guess) == "/etc" and not list(tree.glob(".*.tampered-*"))
    (submission,) = [path for path in (tree / victim).iterdir() if path.is_dir()]
    for level in (tree, tree / victim, submission):
        info = os.lstat(level)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, 0o700), level

    # 2. Swap the tree for one of the job's own: the next command moves the symlink aside and makes a new tree.
    swapper, execution, result, view = run(cloud, developer, {"name": "swap-the-tree", "script": SWAP_THE_TREE})
    assert_ended_right(execution, result, view)
    # Its stdout went on into the tree it moved away, where collect does not look: listed as missing, the job ended.
    assert stdout_of(developer, swapper) is None
    (moved,) = home.glob(".moved-by-job-*")
    assert (moved / swapper).is_dir()

    # 3. Rename the tree in a loop while the other caller's jobs are submitted, run and collected.
    spec = {"name": "rename-in-a-loop", "script": RENAME_IN_A_LOOP, "environment": {"STATE": str(state)}}
    looper = submit(developer, spec)
    wait_for(lambda: any(home.glob(".moved-[0-9]*")), 120, "the loop started")
    during = [
        submit(other, {"name": f"during-the-loop-{n}", "script": HELLO["script"]})
        for n in range(VICTIMS_DURING_THE_LOOP)
    ]
    ended = {job_id: finish(cloud, other, job_id, timeout=240) for job_id in during}
    (home / STOP_FILE).touch()
    execution, _, result, view = finish(cloud, developer, looper, timeout=240)
    assert_ended_right(execution, result, view)
    counts = json.loads((home / f"own-report-{view['slurmJobId']}").read_text())
    outcomes = [(ended[job_id][3]["status"], ended[job_id][3].get("reason")) for job_id in during]
    print(f"the loop: {counts}; the jobs during it (status, reason): {outcomes}")
    assert counts["moved jobs"] > 0, counts  # it did move the tree with jobs in it while they were submitted
    assert counts["state renamed"] == 0 and counts["state refused"] > 0, counts
    for job_id in during:
        _, _, result, view = ended[job_id]
        assert_ended_with_a_record(view, result)
        marker = index / job_id
        (submitted,) = marker.glob("*.submitted")
        assert submitted.read_text() == view["slurmJobId"] and os.lstat(submitted).st_uid == 0

    # 4. Jobs submitted after the attacks, whatever the loop left in the tree's place: one of each caller.
    after = []
    for api in (other, developer):
        job_id, execution, result, view = run(cloud, api, HELLO)
        assert_ended_right(execution, result, view)
        assert stdout_of(api, job_id) == f"hello from {CLUSTER_USER}\n"
        after.append(job_id)

    # The bookkeeping of every job is root's and intact, and the state directory's parent holds nothing new.
    assert sorted(path.name for path in state.parent.iterdir()) == state_before
    assert (os.lstat(state).st_uid, stat.S_IMODE(os.lstat(state).st_mode)) == (0, 0o711)
    for job_id in (attacker, victim, swapper, looper, *during, *after):
        (submitted,) = (index / job_id).glob("*.submitted")
        info = os.lstat(submitted)
        assert (info.st_uid, stat.S_IMODE(info.st_mode), info.st_nlink) == (0, 0o600, 1)
