"""Through the HTTP API, against real Slurm: the jobs people run and the ways they end.

The TIMEOUT job needs a minute and more (Slurm enforces time limits with minute granularity), so it is submitted by
the first test and checked by the last one of this file, while the others run.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from pathlib import Path

import pytest
import requests

from harness.workflow import finish, submit, wait_for_execution
from local_stack.api_gateway import LOCAL_OTHER
from slurm_job_api.head_node_program import JOB_DIRECTORIES
from tests.security.download_names import DOWNLOAD_NAMES, download_name
from tests.support.idempotency import conflicting_retry


def run_job(cloud, api, spec: dict, **headers) -> tuple[dict, dict, dict]:
    """Submits a job and waits for its workflow: (execution, result.json, job view)."""
    job_id = submit(api, spec, headers=headers)
    execution, _, result, view = finish(cloud, api, job_id, timeout=120)
    return execution, result, view


def output_links(api, job_id: str) -> dict[str, str]:
    answer = api.get(f"/jobs/{job_id}/output")
    assert answer.status_code == 200, answer.text
    return {item["name"]: item["url"] for item in answer.json()["files"]}


@pytest.fixture(scope="module")
def timeout_job(api_module):
    """A job over its one-minute time limit, started before the other tests of this file."""
    return submit(api_module, {"name": "over-time", "script": "#!/bin/bash\nsleep 300\n", "timeLimitMinutes": 1})


@pytest.fixture(scope="module")
def api_module(cloud):
    return cloud.api_client()


def test_a_job_that_completes(cloud, api, timeout_job, cluster_user):
    script = '#!/bin/bash\necho "hello from $(id -un) in $PWD"\necho to-stderr >&2\nstat -c %a "$PWD"\n'
    execution, result, view = run_job(cloud, api, {"name": "hello", "script": script})
    assert execution["status"] == "SUCCEEDED"
    assert (view["status"], view["exitCode"], result["status"], result["exitCode"]) == ("COMPLETED", 0, "COMPLETED", 0)
    links = output_links(api, view["jobId"])
    stdout = requests.get(links["stdout"], timeout=10).text
    job_directory = stdout.split(" in ", 1)[1].split("\n", 1)[0]
    # The job ran as the configured cluster user (never root), in its private per-job directory.
    assert stdout == f"hello from {cluster_user.pw_name} in {job_directory}\n700\n"
    assert requests.get(links["stderr"], timeout=10).text == "to-stderr\n"
    info = os.stat(job_directory)
    assert info.st_uid == cluster_user.pw_uid and stat.S_IMODE(info.st_mode) == 0o700
    assert job_directory.startswith(f"{cluster_user.pw_dir}/{JOB_DIRECTORIES}/{view['jobId']}/")


def test_a_job_that_exits_3(cloud, api, slurm):
    execution, result, view = run_job(cloud, api, {"script": "#!/bin/bash\necho about to fail\nexit 3\n"})
    assert execution["status"] == "FAILED" and execution["error"] == "FAILED"
    assert (view["status"], view["exitCode"], result["status"], result["exitCode"]) == ("FAILED", 3, "FAILED", 3)
    assert slurm.accounted_state(view["slurmJobId"]) == "FAILED"


def test_cancel_of_a_running_job(cloud, api, slurm):
    job_id = submit(api, {"script": "#!/bin/bash\necho started\nsleep 300\n"})
    deadline = time.monotonic() + 60
    while (view := api.get(f"/jobs/{job_id}").json())["status"] != "RUNNING":
        assert time.monotonic() < deadline, view
        time.sleep(0.5)
    answer = api.delete(f"/jobs/{job_id}")
    assert answer.status_code == 202 and answer.json()["slurmCancelSent"] is True
    execution, _, result, view = finish(cloud, api, job_id)
    assert execution["status"] == "FAILED" and execution["error"] == "CANCELLED"
    assert view["status"] == result["status"] == "CANCELLED"
    assert slurm.accounted_state(view["slurmJobId"]).startswith("CANCELLED")  # "CANCELLED by <uid>" from Slurm
    assert requests.get(output_links(api, job_id)["stdout"], timeout=10).text == "started\n"


def test_an_array_job_accounts_for_every_task(cloud, api):
    script = '#!/bin/bash\necho task $SLURM_ARRAY_TASK_ID\n[ "$SLURM_ARRAY_TASK_ID" != 2 ] || exit 5\n'
    execution, result, view = run_job(cloud, api, {"script": script, "array": "1-3"})
    assert view["arrayTaskCounts"] == result["arrayTaskCounts"] == {"COMPLETED": 2, "FAILED": 1}
    assert (view["status"], view["exitCode"]) == ("FAILED", 5)
    links = output_links(api, view["jobId"])
    for task in (1, 2, 3):
        assert requests.get(links[f"tasks/{task}/stdout"], timeout=10).text == f"task {task}\n"
    assert execution["status"] == "FAILED"


def test_a_declared_output_file_is_uploaded_and_downloadable(cloud, api):
    script = "#!/bin/bash\nmkdir -p results\nprintf 'a,b\\n1,2\\n' > results/table.csv\n"
    execution, result, view = run_job(cloud, api, {"script": script, "outputs": ["results/table.csv", "absent.txt"]})
    assert execution["status"] == "SUCCEEDED"
    assert [f["name"] for f in result["files"] if f["name"].startswith("outputs/")] == ["outputs/results/table.csv"]
    links = output_links(api, view["jobId"])
    assert requests.get(links["outputs/results/table.csv"], timeout=10).text == "a,b\n1,2\n"
    assert "outputs/absent.txt" not in links


def test_output_files_of_any_name_download_byte_for_byte_under_their_names(cloud, api):
    """文件.txt, q"; filename="evil.html and the other names of DOWNLOAD_NAMES, written by the job itself."""
    names = {f"NAME_{index}": name for index, name in enumerate(DOWNLOAD_NAMES)}
    script = "#!/bin/bash\n" + "".join(f'printf \'content of %s\\n\\377\' "${var}" > "${var}"\n' for var in names)
    spec = {"script": script, "environment": names, "outputs": list(names.values())}
    execution, result, view = run_job(cloud, api, spec)
    assert execution["status"] == "SUCCEEDED" and view["status"] == "COMPLETED", view
    assert sorted(f["name"] for f in result["files"] if f["name"].startswith("outputs/")) == sorted(
        f"outputs/{name}" for name in DOWNLOAD_NAMES
    )
    links = output_links(api, view["jobId"])
    for name in DOWNLOAD_NAMES:
        download = requests.get(links[f"outputs/{name}"], timeout=10)
        assert download.status_code == 200 and download.content == f"content of {name}\n".encode() + b"\xff", name
        assert download_name(download.headers["Content-Disposition"])[0] == name


def test_a_script_uploaded_through_a_presigned_put_runs_for_its_caller_only(cloud, api, slurm, cluster_user):
    """Caller A asks POST /inputs for an upload, PUTs the script over plain HTTP to the local S3 (no credentials of
    its own) and submits the key: the job COMPLETES on real Slurm. Caller B submitting A's key is refused and Slurm
    never sees that job."""
    upload = api.post("/inputs", json={"fileName": "uploaded.sh"}).json()
    assert upload["url"].startswith(cloud.endpoint_url + "/") and upload["method"] == "PUT"
    script = b'#!/bin/bash\necho "uploaded script ran as $(id -un)"\n'
    assert requests.put(upload["url"], data=script, timeout=10).status_code == 200
    other = cloud.api_client(LOCAL_OTHER)
    borrowed_name = f"borrowed-{uuid.uuid4().hex[:8]}"  # accounting keeps earlier runs' jobs
    borrowed = other.post("/jobs", json={"scriptS3Key": upload["key"], "name": borrowed_name})
    assert borrowed.status_code == 422, borrowed.text
    assert (
        borrowed.json()["message"].startswith("scriptS3Key: ")
        and other.post("/inputs").json()["prefix"] in (borrowed.json()["message"])
    )
    execution, result, view = run_job(cloud, api, {"name": "uploaded-script", "scriptS3Key": upload["key"]})
    assert (execution["status"], view["status"], result["status"]) == ("SUCCEEDED", "COMPLETED", "COMPLETED")
    stdout = requests.get(output_links(api, view["jobId"])["stdout"], timeout=10).text
    assert stdout == f"uploaded script ran as {cluster_user.pw_name}\n"
    assert slurm.job_ids_named(borrowed_name) == []
    assert borrowed_name not in [job["name"] for job in other.get("/jobs", params={"limit": 100}).json()["jobs"]]


def test_the_same_idempotency_key_twice_is_one_slurm_job(cloud, api, slurm):
    name = f"idem-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "script": "#!/bin/bash\necho once\n"}
    key = {"Idempotency-Key": name}
    first = api.post("/jobs", json=spec, headers=key).json()
    again = api.post("/jobs", json=spec, headers=key).json()
    assert first["jobId"] == again["jobId"]
    assert wait_for_execution(cloud, first["jobId"])["status"] == "SUCCEEDED"
    deadline = time.monotonic() + 30
    while not slurm.job_ids_named(name):  # accounting records arrive asynchronously
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert slurm.job_ids_named(name) == [api.get(f"/jobs/{first['jobId']}").json()["slurmJobId"]]


def test_a_retry_with_another_spec_is_refused_and_the_first_job_runs_its_own_script(cloud, api):
    """The Idempotency-Key repeated with another spec while the first attempt's record is not written yet
    (tests/support/idempotency.py), on real Slurm: 422, nothing changed, and the job's stdout is the first script's."""
    first = {"name": "first", "script": "#!/bin/bash\necho first\n"}
    second = {"name": "second", "script": "#!/bin/bash\necho second\n"}
    retry = conflicting_retry(cloud, api, key=f"conflict-{uuid.uuid4().hex[:8]}", first=first, second=second)
    assert retry.status == 422 and retry.answer["code"] == "IdempotencyKeyReused", retry.answer
    assert retry.objects_after == retry.objects_before and retry.executions_after == retry.executions_before
    execution, _, result, view = finish(cloud, api, retry.job_id, timeout=120)
    assert (execution["status"], view["status"], result["status"], view["name"]) == (
        "SUCCEEDED",
        "COMPLETED",
        "COMPLETED",
        "first",
    )
    stdout = requests.get(output_links(api, retry.job_id)["stdout"], timeout=10)
    assert stdout.status_code == 200 and stdout.text == "first\n"


def test_a_job_polled_after_slurmctld_forgot_it_is_read_from_accounting(cloud, api, slurm):
    """The first poll comes only after MinJobAge has passed and slurmctld purged the job: sacct answers."""
    waited_for = {}
    name = f"forgotten-{uuid.uuid4().hex[:8]}"  # this job's first poll only: the module's other jobs run meanwhile
    records = cloud.client("dynamodb")

    def this_job(job_id: str) -> bool:
        item = records.get_item(TableName=cloud.table_name, Key={"jobId": {"S": job_id}}).get("Item", {})
        return item.get("name", {}).get("S") == name

    def late_first_poll(event, context, call_next):
        job = event["job"]
        if job["pollsInExecution"] == 0 and job["slurmJobId"] not in waited_for and this_job(job["jobId"]):
            slurm.wait_until_forgotten(job["slurmJobId"])
            waited_for[job["slurmJobId"]] = slurm.known_to_controller(job["slurmJobId"])
        return call_next(event, context)

    with cloud.runtime.intercepted("PollJobFunction", late_first_poll):
        _, result, view = run_job(cloud, api, {"name": name, "script": "#!/bin/bash\nexit 7\n"})
    assert waited_for == {view["slurmJobId"]: False}
    assert (view["status"], view["exitCode"], result["status"]) == ("FAILED", 7, "FAILED")


def test_twenty_jobs_at_once_all_end_none_lost_none_duplicated(cloud, api, slurm):
    name = f"burst-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "script": "#!/bin/bash\nsleep 1\necho done $SLURM_JOB_ID\n"}
    jobs = [submit(api, spec) for _ in range(20)]
    assert len(set(jobs)) == 20
    results = [finish(cloud, api, job_id, timeout=180) for job_id in jobs]
    assert [view["status"] for _, _, _, view in results] == ["COMPLETED"] * 20
    slurm_ids = [view["slurmJobId"] for _, _, _, view in results]
    assert len(set(slurm_ids)) == 20
    deadline = time.monotonic() + 30
    while len(slurm.job_ids_named(name)) < 20:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert slurm.job_ids_named(name) == sorted(slurm_ids)


def test_a_job_over_its_time_limit_times_out(cloud, api, timeout_job):
    execution, _, result, view = finish(cloud, api, timeout_job, timeout=240)
    assert execution["status"] == "FAILED" and execution["error"] == "TIMEOUT"
    assert view["status"] == result["status"] == "TIMEOUT"


def test_job_directories_stay_private_and_the_bookkeeping_is_roots(cloud, cluster_user, timeout_job):
    """Every level of ~/.slurm-job-api-jobs/<jobId>/<submissionId>/ is the cluster user's and private; the lock and
    marker of each submission are root's, in the state directory, which no job can change."""
    tree = Path(cluster_user.pw_dir) / JOB_DIRECTORIES
    submissions = [path for path in tree.glob("*/*") if path.is_dir() and len(path.name) == 32]
    assert len(submissions) > 5
    for directory in {tree, *(path.parent for path in submissions), *submissions}:
        info = os.lstat(directory)
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, cluster_user.pw_uid), directory
    state = cloud.head_node.state_directory
    index = state / "users" / cluster_user.pw_name / "jobs"
    assert (stat.S_IMODE(os.lstat(state).st_mode), os.lstat(state).st_uid) == (0o711, 0)
    # This module's jobs: submitted after the first one (the state directory keeps earlier runs' too).
    (first_lock,) = (index / timeout_job).glob("*.lock")
    started = first_lock.stat().st_mtime
    markers = [marker for marker in index.glob("*/*.submitted") if marker.stat().st_mtime >= started]
    assert len(markers) > 5
    for marker in markers:
        for path, mode in ((marker.parent, 0o700), (marker, 0o600), (marker.with_suffix(".lock"), 0o600)):
            assert (stat.S_IMODE(os.lstat(path).st_mode), os.lstat(path).st_uid) == (mode, 0), path
        assert marker.read_text().isdigit()
        assert tree / marker.parent.name / marker.stem in submissions
