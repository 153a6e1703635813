"""Each caller's jobs run as their own cluster user, kept apart by Slurm and the file system (issue 10), through the
HTTP API of a real-Slurm local stack whose caller mappings give LOCAL_DEVELOPER the user A and LOCAL_OTHER the user B.

1. B's jobs try everything a hostile neighbour would against A's running job: list, read and write A's job
   directory, read A's stdout and script directly and through a symlink B's job makes, scancel A's Slurm job,
   declare A's output as their own (through that symlink, and with A's directory as their working directory). Each
   attempt is refused by the kernel, by Slurm or by the collect; B's results hold nothing of A's; A's job COMPLETES
   with its output intact; sacct shows each job's own user; the directories in a home are 0700.
2. A principal no mapping maps (LOCAL_UNMAPPED) gets 403 CallerNotMapped on every route, and nothing is recorded or
   reaches Slurm.
3. The operators' command (scripts/caller-mappings) refuses a mapping to root by name and to a uid below the minimum
   on the head node, records who changed what, and its mapping takes effect at once; a mapping written around it
   (straight into the table) to root is refused by the API, to a low uid or a user the head node does not have by the
   head node (SUBMIT_FAILED, saying why).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from harness.workflow import finish, submit
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_OTHER, LOCAL_UNMAPPED
from local_stack.cloud import CALLER_MAPPINGS_COMMAND
from local_stack.slurm_cluster import checkout_user_name, remove_job_files
from local_stack.stack import CLUSTER_NAME, LocalStack
from slurm_job_api.head_node_program import JOB_DIRECTORIES, MIN_CLUSTER_UID, output_name

USER_A = checkout_user_name("sjapi-iso-a")
USER_B = checkout_user_name("sjapi-iso-b")
SYSTEM_USER = checkout_user_name("sjapi-iso-sys")  # made with useradd --system: a uid below MIN_CLUSTER_UID
USERADD_LOCK = "/run/lock/slurm-job-api-useradd.lock"
A_SECRET = "a-secret-" + uuid.uuid4().hex

# A's job: an output file, a line of stdout, then long enough asleep for B's jobs to try to cancel and read it.
A_SCRIPT = f"#!/bin/bash\necho {A_SECRET} > secret.txt\necho {A_SECRET}\nsleep 20\necho done\n"


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
    with LocalStack(
        name="iso-a",
        port_base=24817,
        cluster_user=USER_A,
        other_cluster_user=USER_B,
        accounting=True,
        parameters={"PollMinSeconds": "1"},
    ) as running:
        users = [pwd.getpwnam(USER_A), pwd.getpwnam(USER_B)]
        for user in users:
            remove_job_files(user)
        try:
            yield running
        finally:
            for user in users:
                remove_job_files(user)


@pytest.fixture(scope="module")
def system_user():
    """An account in the system range (uid below the minimum), as a head node has many."""
    with open(USERADD_LOCK, "w") as lock:  # one useradd at a time on this machine (local_stack.slurm_cluster)
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["/usr/sbin/userdel", SYSTEM_USER], capture_output=True, check=False)
        subprocess.run(["/usr/sbin/useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
        assert entry.pw_uid < MIN_CLUSTER_UID
        yield entry
    finally:
        subprocess.run(["/usr/sbin/userdel", SYSTEM_USER], capture_output=True, check=False)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def downloaded(api, job_id: str) -> dict[str, bytes]:
    """Every collected file of the job, by name, through the output links the caller gets."""
    links = api.get(f"/jobs/{job_id}/output").json()["files"]
    return {link["name"]: requests.get(link["url"], timeout=30).content for link in links}


def sacct_users(stack, slurm_job_ids: list[str]) -> dict[str, str]:
    users = {}
    for slurm_job_id in slurm_job_ids:
        argv = [str(stack.cluster.bin_dir / "sacct"), "-X", "-n", "-P", "-o", "User", "-j", slurm_job_id]
        users[slurm_job_id] = wait_for(
            lambda argv=argv: subprocess.run(argv, capture_output=True, text=True, env=stack.cluster.env()).stdout,
            30,
            "sacct",
        ).strip()
    return users


def newest_slurm_job(stack) -> int:
    """The highest Slurm job id the cluster knows of: slurmctld's (squeue, every state, jobs still within MinJobAge)
    and accounting's. Both: accounting learns of a job a moment after slurmctld, later still on a busy machine, so a
    count of sacct's records alone can grow after the fact. Ids only grow, so a job submitted after this call has a
    higher one."""
    env, bin_dir = stack.cluster.env(), stack.cluster.bin_dir
    queued = [str(bin_dir / "squeue"), "-h", "-t", "all", "-o", "%i"]
    accounted = [str(bin_dir / "sacct"), "-X", "-n", "-P", "-a", "-S", "2020-01-01", "-o", "JobID"]
    ids = [0]
    for argv in (queued, accounted):
        output = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
        ids.extend(int(job.split("_")[0]) for job in output.split() if job.split("_")[0].isdigit())
    return max(ids)


def caller_mappings(stack, *arguments: str) -> subprocess.CompletedProcess:
    """The operators' command against the stack's table and head node."""
    cloud = stack.running_cloud
    argv = [
        str(CALLER_MAPPINGS_COMMAND),
        *cloud.caller_mappings_arguments(),
        "--cluster-name",
        CLUSTER_NAME,
        "--slurm-bin-dir",
        str(stack.cluster.bin_dir),
        *arguments,
    ]
    env = {**os.environ, **cloud.operator_environment()}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_another_callers_jobs_get_nothing_of_a_job_and_cannot_cancel_it(stack):
    cloud = stack.running_cloud
    api_a, api_b = cloud.api_client(LOCAL_DEVELOPER), cloud.api_client(LOCAL_OTHER)
    a_home = pwd.getpwnam(USER_A).pw_dir
    job_a = submit(api_a, {"name": "a", "script": A_SCRIPT, "outputs": ["secret.txt"]})
    view = wait_for(
        lambda: (v := api_a.get(f"/jobs/{job_a}").json()).get("status") == "RUNNING" and v, 90, "A's job to run"
    )
    assert view["clusterUser"] == USER_A
    a_slurm_job_id = view["slurmJobId"]
    (a_directory,) = (Path(a_home) / JOB_DIRECTORIES / job_a).iterdir()
    wait_for(lambda: (a_directory / "secret.txt").exists(), 30, "A's output file")

    # B's jobs, through the API as LOCAL_OTHER: the attempts (declaring A's file, through its symlink, as an
    # output), and a job whose working directory is A's, declaring A's file by its name there.
    attempts_job = submit(
        api_b,
        {
            "name": "b",
            "script": b_script(a_home, str(a_directory), a_slurm_job_id),
            "outputs": ["a-link/secret.txt", "a-link"],
        },
    )
    chdir_job = submit(
        api_b,
        {
            "name": "b-chdir",
            "script": "#!/bin/bash\ncat secret.txt\nls\n",
            "workingDirectory": str(a_directory),
            "outputs": ["secret.txt"],
        },
    )
    _, _, attempts_result, attempts_view = finish(cloud, api_b, attempts_job, timeout=120)
    assert attempts_view["clusterUser"] == USER_B and attempts_view["status"] == "COMPLETED", attempts_view
    b_files = downloaded(api_b, attempts_job)
    report = b_files["stdout"].decode()
    assert f"me: {USER_B}" in report
    attempts = [line for line in report.splitlines() if line.startswith(("done:", "refused:"))]
    assert len(attempts) == 8 and all(line.startswith("refused:") for line in attempts), report
    declared = {item["name"]: item for item in attempts_result["files"]}
    assert "outputs/a-link/secret.txt" not in declared and "outputs/a-link" not in declared, attempts_result["files"]

    _, _, chdir_result, chdir_view = finish(cloud, api_b, chdir_job, timeout=120)
    assert chdir_view["clusterUser"] == USER_B and chdir_view["status"] in ("COMPLETED", "FAILED"), chdir_view
    chdir_files = downloaded(api_b, chdir_job)
    assert not [name for name in chdir_files if name.startswith("outputs/")], chdir_result["files"]
    for content in [*b_files.values(), *chdir_files.values()]:
        assert A_SECRET.encode() not in content

    # A's job was not cancelled: it completes, its output intact and nothing of B's in its directory.
    _, _, result, final = finish(cloud, api_a, job_a, timeout=120)
    assert final["status"] == result["status"] == "COMPLETED", (final, result)
    a_files = downloaded(api_a, job_a)
    assert a_files["stdout"] == f"{A_SECRET}\ndone\n".encode()
    assert a_files["outputs/secret.txt"] == f"{A_SECRET}\n".encode()
    assert not (a_directory / "planted-by-b").exists()

    # Slurm's accounting tells the users apart; each job directory is in its own user's home.
    b_slurm_job_ids = [attempts_view["slurmJobId"], chdir_view["slurmJobId"]]
    assert sacct_users(stack, [a_slurm_job_id, *b_slurm_job_ids]) == {
        a_slurm_job_id: USER_A,
        **dict.fromkeys(b_slurm_job_ids, USER_B),
    }
    assert (Path(pwd.getpwnam(USER_B).pw_dir) / JOB_DIRECTORIES / attempts_job).is_dir()
    assert not (Path(a_home) / JOB_DIRECTORIES / attempts_job).exists()

    # Every directory the product made in A's home is A's own and closed to everyone else.
    for path in (Path(a_home) / JOB_DIRECTORIES, a_directory.parent, a_directory):
        info = path.stat()
        assert info.st_uid == pwd.getpwnam(USER_A).pw_uid and stat.S_IMODE(info.st_mode) == 0o700, path


def test_an_unmapped_caller_is_refused_on_every_route_and_nothing_reaches_slurm(stack):
    cloud = stack.running_cloud
    job_a = submit(cloud.api_client(LOCAL_DEVELOPER), {"name": "a", "script": "#!/bin/bash\necho a\n"})
    *_, view_a = finish(cloud, cloud.api_client(LOCAL_DEVELOPER), job_a, timeout=120)
    dynamodb = cloud.client("dynamodb")
    records_before = dynamodb.scan(TableName=cloud.table_name, Select="COUNT")["Count"]
    newest_before = max(newest_slurm_job(stack), int(view_a["slurmJobId"]))
    unmapped = cloud.api_client(LOCAL_UNMAPPED)
    answers = {
        "POST /jobs": unmapped.post("/jobs", json={"script": "#!/bin/bash\necho x\n"}),
        "POST /jobs (invalid spec)": unmapped.post("/jobs", json={"nodes": -1}),
        "POST /inputs": unmapped.post("/inputs", json={}),
        "GET /jobs": unmapped.get("/jobs"),
        "GET /jobs/{id}": unmapped.get(f"/jobs/{job_a}"),
        "GET /jobs/{id}/output": unmapped.get(f"/jobs/{job_a}/output"),
        "DELETE /jobs/{id}": unmapped.delete(f"/jobs/{job_a}"),
        "GET /openapi.json": unmapped.get("/openapi.json"),
        "GET /no-such-route": unmapped.get("/no-such-route"),
    }
    for route, answer in answers.items():
        body = answer.json()
        assert answer.status_code == 403 and body["code"] == "CallerNotMapped", (route, answer.status_code, body)
        assert LOCAL_UNMAPPED.arn in body["message"] and "scripts/caller-mappings add" in body["message"], body
    assert dynamodb.scan(TableName=cloud.table_name, Select="COUNT")["Count"] == records_before
    assert newest_slurm_job(stack) == newest_before  # no job submitted since


def test_mappings_to_root_or_a_system_uid_are_refused_written_and_used(stack, system_user):
    cloud = stack.running_cloud
    unmapped = cloud.api_client(LOCAL_UNMAPPED)
    # Refused when written: root by name, before anything is asked of AWS; a system uid by the head node.
    refused = caller_mappings(stack, "add", LOCAL_UNMAPPED.arn, "root")
    assert refused.returncode == 1 and "never run as root" in refused.stderr, refused
    refused = caller_mappings(stack, "add", LOCAL_UNMAPPED.arn, SYSTEM_USER)
    assert refused.returncode == 1, refused
    assert f"uid {system_user.pw_uid}, below the minimum {MIN_CLUSTER_UID}" in refused.stderr, refused.stderr
    missing = caller_mappings(stack, "add", LOCAL_UNMAPPED.arn, checkout_user_name("sjapi-nobody-here"))
    assert missing.returncode == 1 and "does not exist on the head node" in missing.stderr, missing.stderr
    assert caller_mappings(stack, "resolve", LOCAL_UNMAPPED.arn).returncode == 1
    assert unmapped.get("/jobs").status_code == 403

    # Written around the command, straight into the table: root is refused by the API, the system uid by the head
    # node at the job's first command (SUBMIT_FAILED, saying why), and nothing runs in Slurm.
    table = cloud.client("dynamodb")
    mappings_table = cloud.model.caller_mappings_table.name

    def store(user: str) -> None:
        item = {"principal": {"S": LOCAL_UNMAPPED.arn}, "entry": {"S": "mapping"}, "clusterUser": {"S": user}}
        table.put_item(TableName=mappings_table, Item=item)

    store("root")
    answer = unmapped.post("/jobs", json={"script": "#!/bin/bash\nid\n"})
    assert answer.status_code == 403 and "never run as root" in answer.json()["message"], answer.text
    store(SYSTEM_USER)
    newest_before = newest_slurm_job(stack)
    job = submit(unmapped, {"script": "#!/bin/bash\nid\n"})
    _, _, result, view = finish(cloud, unmapped, job, timeout=120)
    assert view["status"] == result["status"] == "SUBMIT_FAILED", view
    assert view["clusterUser"] == SYSTEM_USER
    assert f"below the minimum {MIN_CLUSTER_UID}" in view["cause"], view["cause"]
    store(checkout_user_name("sjapi-nobody-here"))  # a user the head node does not have
    job = submit(unmapped, {"script": "#!/bin/bash\nid\n"})
    _, _, result, view = finish(cloud, unmapped, job, timeout=120)
    assert view["status"] == result["status"] == "SUBMIT_FAILED", view
    assert "does not exist on the head node" in view["cause"], view["cause"]
    assert newest_slurm_job(stack) == newest_before  # neither reached Slurm
    table.delete_item(TableName=mappings_table, Key={"principal": {"S": LOCAL_UNMAPPED.arn}, "entry": {"S": "mapping"}})

    # The command's own mapping: checked on the head node, in force at once, removed at once, every change recorded.
    added = caller_mappings(stack, "add", LOCAL_UNMAPPED.arn, USER_B)
    assert added.returncode == 0 and f"add: {LOCAL_UNMAPPED.arn} -> {USER_B}" in added.stdout, added
    assert f"uid {pwd.getpwnam(USER_B).pw_uid} on the head node" in added.stdout
    assert caller_mappings(stack, "resolve", LOCAL_UNMAPPED.arn).stdout.startswith(USER_B + "\t")
    assert unmapped.get("/jobs").status_code == 200
    removed = caller_mappings(stack, "remove", LOCAL_UNMAPPED.arn)
    assert removed.returncode == 0 and f"removed {LOCAL_UNMAPPED.arn} (was {USER_B})" in removed.stdout, removed
    assert unmapped.get("/jobs").status_code == 403
    history = caller_mappings(stack, "history", LOCAL_UNMAPPED.arn).stdout.splitlines()
    assert [line.split("\t")[2] for line in history] == [
        f"add: {LOCAL_UNMAPPED.arn} -> {USER_B}",
        f"removed {LOCAL_UNMAPPED.arn} (was {USER_B})",
    ]
    assert all(line.split("\t")[1].startswith("arn:aws:") for line in history), history  # who: the STS identity
    listed = caller_mappings(stack, "list").stdout
    assert f"{LOCAL_DEVELOPER.arn}\t{USER_A}" in listed and f"{LOCAL_OTHER.arn}\t{USER_B}" in listed
    assert LOCAL_UNMAPPED.arn not in listed
