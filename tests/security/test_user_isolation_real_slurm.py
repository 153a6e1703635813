"""Two cluster users on real Slurm, kept apart by Slurm and the file system (issue 10, the head-node side).

User A's job runs through the HTTP API of a real-Slurm local stack whose ClusterUser is A. User B's job is submitted
through the same head-node program and SSM, as the per-caller mapping will send it (HeadNode with B as the cluster
user). B's script tries everything a hostile neighbour would: list, read and write A's job directory, read A's stdout
and script through a symlink it makes in its own directory, and scancel A's Slurm job. Each attempt is refused by the
kernel or by Slurm; A's job COMPLETES with its output intact; Slurm's accounting shows each job's own user; and the
directories the product makes in a home are closed to everyone else (0700).
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.workflow import finish, submit
from local_stack.slurm_cluster import checkout_user_name, ensure_cluster_user, remove_job_files
from local_stack.stack import CLUSTER_NAME, LocalStack
from slurm_job_api.head_node import HeadNode
from slurm_job_api.head_node_program import JOB_DIRECTORIES, output_name
from slurm_job_api.head_node_protocol import StatusRequest, SubmitRequest
from slurm_job_api.statuses import TERMINAL_STATUSES

USER_A = checkout_user_name("sjapi-iso-a")
USER_B = checkout_user_name("sjapi-iso-b")
A_SECRET = "a-secret-" + uuid.uuid4().hex

# A's job: an output file, a line of stdout, then long enough asleep for B's job to try to cancel it.
A_SCRIPT = f"#!/bin/bash\necho {A_SECRET} > secret.txt\necho {A_SECRET}\nsleep 15\necho done\n"


def b_script(a_home: str, a_directory: str, a_slurm_job_id: str) -> str:
    """What B's job tries against A; one line per attempt, `done:` or `refused:`, and what it read, if anything."""
    return f"""#!/bin/bash
attempt() {{ if out=$("$@" 2>&1); then echo "done: $*: $out"; else echo "refused: $*"; fi; }}
attempt ls {a_home}/{JOB_DIRECTORIES}
attempt ls {a_directory}
attempt cat {a_directory}/{output_name("stdout")}
attempt cat {a_directory}/job.sh
attempt cat {a_directory}/secret.txt
attempt touch {a_directory}/planted-by-b
ln -s {a_directory} a-link
attempt cat a-link/secret.txt
attempt scancel {a_slurm_job_id}
echo "me: $(id -un)"
"""


@pytest.fixture(scope="module")
def stack():
    if os.geteuid() != 0:
        pytest.skip("the local stack runs Slurm daemons and switches users: needs root")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    ensure_cluster_user(USER_B)
    with LocalStack(
        name="iso-a", port_base=24817, cluster_user=USER_A, accounting=True, parameters={"PollMinSeconds": "1"}
    ) as running:
        users = [pwd.getpwnam(USER_A), pwd.getpwnam(USER_B)]
        for user in users:
            remove_job_files(user)
        try:
            yield running
        finally:
            for user in users:
                remove_job_files(user)


def head_node_as(stack, cloud, user: str) -> HeadNode:
    return HeadNode(
        cluster_name=CLUSTER_NAME,
        cluster_user=user,
        slurm_bin_dir=str(stack.cluster.bin_dir),
        ssm=cloud.client("ssm"),
        ec2=cloud.client("ec2"),
    )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_another_users_job_gets_nothing_of_a_job_and_cannot_cancel_it(stack):
    cloud = stack.running_cloud
    api = cloud.api_client()
    a_home = pwd.getpwnam(USER_A).pw_dir
    job_a = submit(api, {"name": "a", "script": A_SCRIPT, "outputs": ["secret.txt"]})
    view = wait_for(
        lambda: (v := api.get(f"/jobs/{job_a}").json()).get("status") == "RUNNING" and v, 90, "A's job to run"
    )
    a_slurm_job_id = view["slurmJobId"]
    (a_directory,) = (Path(a_home) / JOB_DIRECTORIES / job_a).iterdir()
    wait_for(lambda: (a_directory / "secret.txt").exists(), 30, "A's output file")

    # B's job, through SSM and the head-node program, as B.
    node_b = head_node_as(stack, cloud, USER_B)
    s3 = cloud.client("s3")
    key = f"isolation/{uuid.uuid4().hex}/script"
    s3.put_object(Bucket=cloud.bucket_name, Key=key, Body=b_script(a_home, str(a_directory), a_slurm_job_id).encode())
    script_url = s3.generate_presigned_url("get_object", Params={"Bucket": cloud.bucket_name, "Key": key})
    job_b = str(uuid.uuid4())
    submitted = node_b.run(
        SubmitRequest(
            job_id=job_b,
            submission_id=uuid.uuid4().hex,
            script_url=script_url,
            sbatch_options=["--job-name=b"],
        ),
        wait_seconds=60,
    )
    b_directory = Path(submitted.job_directory)
    assert b_directory.is_relative_to(pwd.getpwnam(USER_B).pw_dir)

    def b_ended():
        reply = node_b.run(StatusRequest(job_id=job_b, slurm_job_id=submitted.slurm_job_id), wait_seconds=60)
        return reply.found and reply.status in TERMINAL_STATUSES and reply

    b_status = wait_for(b_ended, 90, "B's job to end")
    report = (b_directory / output_name("stdout")).read_text()
    assert b_status.status == "COMPLETED", (b_status, report)
    assert f"me: {USER_B}" in report
    attempts = [line for line in report.splitlines() if line.startswith(("done:", "refused:"))]
    assert len(attempts) == 8 and all(line.startswith("refused:") for line in attempts), report
    assert A_SECRET not in report

    # A's job was not cancelled: it completes, its output intact and nothing of B's in its directory.
    _, _, result, final = finish(cloud, api, job_a, timeout=120)
    assert final["status"] == result["status"] == "COMPLETED", (final, result)
    assert (a_directory / output_name("stdout")).read_text() == f"{A_SECRET}\ndone\n"
    assert (a_directory / "secret.txt").read_text() == f"{A_SECRET}\n"
    assert not (a_directory / "planted-by-b").exists()

    # Slurm's accounting tells the two users apart.
    users = {}
    for slurm_job_id in (a_slurm_job_id, submitted.slurm_job_id):
        sacct = [str(stack.cluster.bin_dir / "sacct"), "-X", "-n", "-P", "-o", "User", "-j", slurm_job_id]
        users[slurm_job_id] = wait_for(
            lambda argv=sacct: subprocess.run(argv, capture_output=True, text=True, env=stack.cluster.env()).stdout,
            30,
            "sacct",
        ).strip()
    assert users == {a_slurm_job_id: USER_A, submitted.slurm_job_id: USER_B}

    # Every directory the product made in A's home is A's own and closed to everyone else.
    for path in (Path(a_home) / JOB_DIRECTORIES, a_directory.parent, a_directory):
        info = path.stat()
        assert info.st_uid == pwd.getpwnam(USER_A).pw_uid and stat.S_IMODE(info.st_mode) == 0o700, path
