"""Every route of the HTTP API, through the local API Gateway (SigV4) and the real API function, against moto
resources built from template.yaml; Slurm is scripted (tests/support/fake_slurm.py)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from harness.limits import RECORD_BUDGET_BYTES
from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import (
    SCRIPT,
    execution_arn,
    record_bytes,
    result_json,
    submit,
    upload_script,
    wait_for_execution,
)
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_OTHER
from slurm_job_api.inputs import inputs_prefix
from slurm_job_api.spec import MAX_SCRIPT_BYTES
from tests.security.download_names import DOWNLOAD_NAMES, download_name
from tests.support.api_routes import documented_operations
from tests.support.idempotency import conflicting_retry

FULL_SPEC = {
    "name": "full",
    "script": SCRIPT,
    "partition": "debug",
    "nodes": 1,
    "ntasks": 2,
    "cpusPerTask": 3,
    "memoryMB": 400,
    "timeLimitMinutes": 5,
    "array": "1-2%1",
    "environment": {"ALPHA": "a b c"},
    "workingDirectory": "/tmp",
    "account": "physics",
    "qos": "normal",
    "outputs": ["out.txt"],
}


def completes(slurm, **sbatch):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", **sbatch}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )


# The fields README.md's route table names for GET /jobs/{jobId} and for each job of GET /jobs.
README = Path(__file__).resolve().parents[2] / "README.md"
VIEW_FIELDS = {
    "jobId",
    "name",
    "clusterUser",
    "status",
    "slurmJobId",
    "slurmState",
    "reason",
    "exitCode",
    "signal",
    "createdAt",
    "updatedAt",
    "submittedAt",
    "startedAt",
    "unreachableSince",
    "longestOutageSeconds",
    "endedAt",
    "finishedAt",
    "execution",
    "arrayTaskCounts",
    "cancelRequested",
    "results",
    "cause",
    "error",
    "spec",
}
LIST_FIELDS = {"jobId", "name", "status", "slurmJobId", "reason", "exitCode", "createdAt", "updatedAt"}


def readme_route_row(route: str) -> str:
    return next(line for line in README.read_text().splitlines() if line.startswith(f"| `{route}` |"))


def keeps_running(slurm):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("RUNNING")],
        }
    )


@pytest.fixture
def other(cloud):
    return cloud.api_client(LOCAL_OTHER)


def wait_until_status(api, job_id: str, wanted: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = api.get(f"/jobs/{job_id}").json()
        if view["status"] in wanted or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


# -- POST /jobs -----------------------------------------------------------------------------------------------------


def test_submit_answers_202_with_location_and_execution(cloud, api, slurm):
    completes(slurm)
    answer = api.post("/jobs", json={"script": SCRIPT})
    body = answer.json()
    assert answer.status_code == 202 and body["status"] == "SUBMITTING"
    assert answer.headers["Location"] == f"/v1/jobs/{body['jobId']}" == body["location"]
    assert body["executionArn"] == execution_arn(cloud, body["jobId"])
    assert wait_for_execution(cloud, body["jobId"])["status"] == "SUCCEEDED"


def test_every_spec_field_reaches_sbatch_as_its_own_argument(cloud, api, slurm):
    completes(slurm)
    job_id = submit(api, FULL_SPEC)
    wait_for_execution(cloud, job_id)
    (call,) = slurm.sbatch_calls_for(job_id)
    argv = call["argv"]
    for option in (
        "--job-name=full",
        "--partition=debug",
        "--nodes=1",
        "--ntasks=2",
        "--cpus-per-task=3",
        "--mem=400M",
        "--time=5",
        "--array=1-2%1",
        "--account=physics",
        "--qos=normal",
        "--chdir=/tmp",
    ):
        assert option in argv
    export_file = next(arg for arg in argv if arg.startswith("--export-file="))
    assert export_file.split("=", 1)[1].isdigit()  # a descriptor of the environment file
    assert not argv[-1].startswith("/")  # no script path: sbatch reads the script from its stdin


def test_dependencies_are_sent_as_slurm_job_ids(cloud, api, slurm):
    keeps_running(slurm)
    first = submit(api)
    assert wait_until_status(api, first, {"RUNNING"})["slurmJobId"] == "101"
    slurm.set({"sbatch": [{"stdout": "102\n"}], "squeue": [NO_EARLIER_JOB, squeue_line("RUNNING", job="102")]})
    second = submit(api, {"script": SCRIPT, "dependency": [{"type": "afterok", "jobId": first}]})
    wait_until_status(api, second, {"RUNNING"})
    assert "--dependency=afterok:101" in slurm.sbatch_calls_for(second)[0]["argv"]
    for job in (first, second):
        assert api.delete(f"/jobs/{job}").status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"script": SCRIPT, "nodez": 2}, "nodez"),
        ({"script": "no shebang"}, "script"),
        ({"script": SCRIPT, "environment": {"BAD-NAME": "x"}}, "environment"),
        ({"script": SCRIPT, "outputs": ["../etc/passwd"]}, "outputs"),
        ({"script": SCRIPT, "array": "1-100000"}, "array"),
    ],
)
def test_invalid_specs_get_422_naming_the_field_and_start_nothing(cloud, api, body, field):
    before = len(cloud.client("stepfunctions").list_executions(stateMachineArn=cloud.state_machine_arn)["executions"])
    answer = api.post("/jobs", json=body)
    assert answer.status_code == 422
    error = answer.json()
    assert error["code"] == "ValidationError" and field in error["message"]
    assert any(detail["field"] == field for detail in error["details"])
    after = len(cloud.client("stepfunctions").list_executions(stateMachineArn=cloud.state_machine_arn)["executions"])
    assert before == after


def test_references_are_checked_before_anything_starts(api, other):
    missing = {"scriptS3Key": inputs_prefix(LOCAL_DEVELOPER.arn) + "not-there.sh"}
    answer = api.post("/jobs", json=missing)
    assert answer.status_code == 422
    assert answer.json()["message"] == f"scriptS3Key: no object {missing['scriptS3Key']} in the results bucket"
    theirs = submit(other)
    answer = api.post("/jobs", json={"script": SCRIPT, "dependency": [{"jobId": theirs}]})
    assert answer.status_code == 422 and "dependency[0].jobId" in answer.json()["message"]


def test_a_script_uploaded_through_post_inputs_runs(cloud, api, slurm):
    completes(slurm)
    key = upload_script(api, b"#!/bin/sh\necho from-s3\n", "run.sh")
    job_id = submit(api, {"scriptS3Key": key})
    assert wait_for_execution(cloud, job_id)["status"] == "SUCCEEDED"
    (call,) = slurm.sbatch_calls_for(job_id)
    assert slurm.script(call) == b"#!/bin/sh\necho from-s3\n"  # what sbatch read on its stdin
    output = next(arg.split("=", 1)[1] for arg in call["argv"] if arg.startswith("--output="))
    assert (Path(output).parent / "job.sh").read_bytes() == b"#!/bin/sh\necho from-s3\n"  # the copy left for people


# -- POST /inputs and scriptS3Key -------------------------------------------------------------------------------------


def counts(cloud) -> tuple[int, int, int]:
    """(job records and claims, executions, objects under jobs/): what a refused request must leave as it was."""
    items = cloud.client("dynamodb").scan(TableName=cloud.table_name, Select="COUNT")["Count"]
    sfn = cloud.client("stepfunctions")
    executions = len(sfn.list_executions(stateMachineArn=cloud.state_machine_arn)["executions"])
    objects = cloud.client("s3").list_objects_v2(Bucket=cloud.bucket_name, Prefix="jobs/").get("KeyCount", 0)
    return items, executions, objects


def test_post_inputs_gives_a_fresh_presigned_put_under_the_callers_own_prefix(cloud, api, other):
    before = datetime.now(UTC)
    first, second = api.post("/inputs", json={"fileName": "run.sh"}), api.post("/inputs")
    assert first.status_code == second.status_code == 200, first.text
    mine = inputs_prefix(LOCAL_DEVELOPER.arn)
    for upload in (first.json(), second.json()):
        assert upload["key"].startswith(mine) and upload["prefix"] == mine and upload["method"] == "PUT"
        assert upload["expiresInSeconds"] == 900 and upload["maxBytes"] == MAX_SCRIPT_BYTES
        expires_at = datetime.fromisoformat(upload["expiresAt"])
        assert timedelta(minutes=14) < expires_at - before < timedelta(minutes=16)
        assert "X-Amz-Expires=900" in upload["url"] and quote(upload["key"], safe="/") in upload["url"]
    assert first.json()["key"].endswith("/run.sh") and second.json()["key"].endswith("/script.sh")
    assert first.json()["key"].rsplit("/", 2)[1] != second.json()["key"].rsplit("/", 2)[1]  # a fresh key each time
    theirs = other.post("/inputs").json()
    assert theirs["prefix"] == inputs_prefix(LOCAL_OTHER.arn) != mine
    assert requests.put(first.json()["url"], data=b"#!/bin/sh\ntrue\n", timeout=10).status_code == 200
    stored = cloud.client("s3").get_object(Bucket=cloud.bucket_name, Key=first.json()["key"])["Body"].read()
    assert stored == b"#!/bin/sh\ntrue\n"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"fileName": "../x.sh"}, 422, "fileName"),
        ({"fileName": "a/b.sh"}, 422, "fileName"),
        ({"fileName": ""}, 422, "fileName"),
        ({"fileName": 7}, 422, "fileName"),
        ({"fileName": "run.sh", "prefix": "inputs/"}, 422, "prefix"),
        (["run.sh"], 422, "body"),
    ],
)
def test_post_inputs_refuses_bad_bodies(api, body, status, field):
    answer = api.post("/inputs", json=body)
    assert answer.status_code == status and field in answer.json()["message"], answer.text


def test_script_keys_outside_the_callers_own_prefix_are_refused_and_change_nothing(cloud, api, other):
    """Another caller's uploaded script and an object at the root of inputs/ exist and are refused, as are a job's
    own input and look-alikes of the caller's prefix: 422 naming scriptS3Key and the caller's prefix, before any
    write, claim or execution (the prefix is checked before the object, so no answer tells whether theirs exists)."""
    theirs = upload_script(other, b"#!/bin/sh\necho theirs\n")
    s3 = cloud.client("s3")
    s3.put_object(Bucket=cloud.bucket_name, Key="inputs/shared.sh", Body=b"#!/bin/sh\necho shared\n")
    mine = inputs_prefix(LOCAL_DEVELOPER.arn)
    before = counts(cloud)
    for key in (
        theirs,
        theirs.replace("/script.sh", "/missing.sh"),  # the same answer for an object of theirs that does not exist
        "inputs/shared.sh",
        "jobs/0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10/input/spec.json",
        mine.rstrip("/") + theirs[len("inputs/") :],  # my prefix's characters without its "/", then theirs
        theirs.replace(inputs_prefix(LOCAL_OTHER.arn), mine.upper().replace("INPUTS/", "inputs/")),
    ):
        answer = api.post("/jobs", json={"scriptS3Key": key}, headers={"Idempotency-Key": "not-mine-" + key[-12:]})
        assert answer.status_code == 422, answer.text
        assert answer.json()["message"] == (
            f"scriptS3Key: must name an object under your own inputs prefix {mine} (POST /inputs gives one)"
        )
    assert counts(cloud) == before


def test_a_script_object_over_the_script_limit_is_refused(cloud, api, slurm):
    """The inline script's limit holds for an object too (checked with HEAD: a larger object is never read)."""
    completes(slurm)
    at_limit = upload_script(api, b"#!/bin/sh\n" + b"#" * (MAX_SCRIPT_BYTES - 10))
    over = upload_script(api, b"#!/bin/sh\n" + b"#" * (MAX_SCRIPT_BYTES - 9))
    before = counts(cloud)
    answer = api.post("/jobs", json={"scriptS3Key": over})
    assert answer.status_code == 422, answer.text
    assert answer.json()["message"] == (
        f"scriptS3Key: the object is {MAX_SCRIPT_BYTES + 1} bytes; a script is at most {MAX_SCRIPT_BYTES} bytes"
    )
    assert counts(cloud) == before
    assert api.post("/jobs", json={"scriptS3Key": at_limit}).status_code == 202


def test_idempotency_key_returns_the_same_job_and_starts_nothing_new(cloud, api, other, slurm):
    completes(slurm)
    headers = {"Idempotency-Key": "retry-me-1"}
    first = api.post("/jobs", json={"script": SCRIPT}, headers=headers)
    again = api.post("/jobs", json={"script": SCRIPT}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"] and again.headers["Idempotent-Replayed"] == "true"
    changed = api.post("/jobs", json={"script": SCRIPT, "nodes": 2}, headers=headers)
    assert changed.status_code == 422 and changed.json()["code"] == "IdempotencyKeyReused"
    theirs = other.post("/jobs", json={"script": SCRIPT}, headers=headers)
    assert theirs.status_code == 202 and theirs.json()["jobId"] != first.json()["jobId"]
    executions = cloud.client("stepfunctions").list_executions(stateMachineArn=cloud.state_machine_arn)["executions"]
    assert [e["name"] for e in executions].count(first.json()["jobId"]) == 1
    wait_for_execution(cloud, first.json()["jobId"])
    wait_for_execution(cloud, theirs.json()["jobId"])
    assert len(slurm.sbatch_calls_for(first.json()["jobId"])) == 1  # none for the replay
    assert len(slurm.sbatch_calls_for(theirs.json()["jobId"])) == 1


def test_job_ids_with_an_idempotency_key_are_random_and_a_refused_request_claims_nothing(cloud, api, slurm):
    """Nobody can compute another caller's next job id from public data (their ARN and key): the key names a random id
    that its first accepted request claimed; a request refused for its spec writes no claim, so the key stays free."""
    completes(slurm)
    dynamodb = cloud.client("dynamodb")
    items_before = dynamodb.scan(TableName=cloud.table_name, Select="COUNT")["Count"]
    missing = {"script": SCRIPT, "dependency": [{"jobId": "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"}]}
    refused = api.post("/jobs", json=missing, headers={"Idempotency-Key": "random-1"})
    assert refused.status_code == 422 and "dependency[0].jobId" in refused.json()["message"]
    assert dynamodb.scan(TableName=cloud.table_name, Select="COUNT")["Count"] == items_before
    ids = [
        api.post("/jobs", json={"script": SCRIPT}, headers={"Idempotency-Key": key}).json()["jobId"]
        for key in ("random-1", "random-2", "random-1")
    ]
    assert ids[0] == ids[2] != ids[1]
    assert all(uuid.UUID(job_id).version == 4 for job_id in ids)
    listed = {job["jobId"] for job in api.get("/jobs").json()["jobs"]}
    assert set(ids) <= listed and not any(job_id.startswith("idempotency-key#") for job_id in listed)
    for job_id in set(ids):
        wait_for_execution(cloud, job_id)


def test_a_retry_with_another_spec_changes_nothing_and_the_first_job_runs_its_own_script(cloud, api, slurm):
    """The Idempotency-Key repeated with another spec while the first attempt's record is not written yet (see
    tests/support/idempotency.py): 422, and the first job's spec.json and script.sh stay byte for byte its own."""
    completes(slurm)
    first = {"name": "first", "script": "#!/bin/bash\necho first\n"}
    retry = conflicting_retry(
        cloud, api, key="conflict-1", first=first, second={"name": "second", "script": "#!/bin/bash\necho second\n"}
    )
    assert retry.status == 422 and retry.answer["code"] == "IdempotencyKeyReused", retry.answer
    job_id = retry.job_id
    assert retry.objects_after == retry.objects_before
    assert retry.objects_before[f"jobs/{job_id}/input/script.sh"] == first["script"].encode()
    assert json.loads(retry.objects_before[f"jobs/{job_id}/input/spec.json"]) == first
    assert retry.executions_after == retry.executions_before and retry.record_after is None  # nothing started or made
    assert wait_for_execution(cloud, job_id)["status"] == "SUCCEEDED"
    view = api.get(f"/jobs/{job_id}").json()
    assert view["status"] == "COMPLETED" and view["name"] == "first", view
    (call,) = slurm.sbatch_calls_for(job_id)
    assert slurm.script(call) == first["script"].encode()  # the script sbatch ran (on its stdin) is the first one's
    replayed = api.post("/jobs", json=first, headers={"Idempotency-Key": "conflict-1"})
    assert replayed.status_code == 202 and replayed.json()["jobId"] == job_id


def test_malformed_requests(api):
    assert api.post("/jobs", data="{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post("/jobs", data="{}", headers={"Content-Type": "text/plain"}).status_code == 415
    huge = {"script": "#!/bin/sh\n" + "x" * (300 * 1024)}
    assert api.post("/jobs", json=huge).status_code == 413
    bad_key = api.post("/jobs", json={"script": SCRIPT}, headers={"Idempotency-Key": "has space"})
    assert bad_key.status_code == 400


# -- GET /jobs/{jobId} ----------------------------------------------------------------------------------------------


def test_job_by_id_and_by_url_encoded_execution_arn(cloud, api, slurm):
    completes(slurm)
    job_id = submit(api)
    wait_for_execution(cloud, job_id)
    by_id = api.get(f"/jobs/{job_id}").json()
    by_arn = api.get("/jobs/" + quote(execution_arn(cloud, job_id), safe="")).json()
    assert by_id == by_arn
    assert by_id["status"] == "COMPLETED" and by_id["slurmJobId"] == "101" and by_id["exitCode"] == 0
    for field in ("createdAt", "submittedAt", "startedAt", "endedAt", "finishedAt"):
        assert by_id[field], field
    assert by_id["execution"] == {"arn": execution_arn(cloud, job_id), "status": "SUCCEEDED"}
    assert by_id["results"]["resultKey"] == f"jobs/{job_id}/result.json" and by_id["results"]["available"]
    other_machine = execution_arn(cloud, job_id).replace(":slurm-job-api-local-jobs:", ":someone-elses:")
    assert api.get("/jobs/" + quote(other_machine, safe="")).status_code == 404
    assert api.get("/jobs/not-a-job").status_code == 404


def test_the_job_view_and_the_list_answer_the_fields_the_readme_names(cloud, api, slurm):
    """GET /jobs/{jobId} answers exactly the fields README.md documents, its spec a summary (the large fields by
    size); result.json keeps the whole spec; the record stays small; GET /jobs answers the documented fields."""
    completes(slurm)
    job_id = submit(api, FULL_SPEC)
    wait_for_execution(cloud, job_id)
    view = api.get(f"/jobs/{job_id}").json()
    assert set(view) == VIEW_FIELDS
    row = readme_route_row("GET /jobs/{jobId}")
    assert [name for name in sorted(VIEW_FIELDS) if f"`{name}`" not in row] == []
    small = {name: value for name, value in FULL_SPEC.items() if name not in ("script", "environment", "outputs")}
    sizes = {"scriptBytes": len(SCRIPT.encode()), "environmentVariables": 1, "environmentBytes": 5 + 5 + 2}
    sizes["outputCount"] = 1
    assert view["spec"] == {**small, **sizes}
    assert [name for name in sizes if f"`{name}`" not in row] == []
    assert result_json(cloud, job_id)["spec"] == FULL_SPEC  # result.json: the whole spec, as before
    assert record_bytes(cloud, job_id) < RECORD_BUDGET_BYTES
    (listed,) = [job for job in api.get("/jobs", params={"limit": 100}).json()["jobs"] if job["jobId"] == job_id]
    assert set(listed) == LIST_FIELDS
    assert {name: listed[name] for name in LIST_FIELDS} == {name: view[name] for name in LIST_FIELDS}
    list_row = readme_route_row("GET /jobs?status=&limit=&nextToken=")
    assert [name for name in sorted(LIST_FIELDS) if f"`{name}`" not in list_row] == []


def test_other_callers_get_404_for_my_jobs(cloud, api, other, slurm):
    completes(slurm)
    job_id = submit(api)
    wait_for_execution(cloud, job_id)
    for answer in (
        other.get(f"/jobs/{job_id}"),
        other.get(f"/jobs/{job_id}/output"),
        other.delete(f"/jobs/{job_id}"),
    ):
        assert answer.status_code == 404 and answer.json()["code"] == "JobNotFound"
    assert job_id not in [job["jobId"] for job in other.get("/jobs?limit=100").json()["jobs"]]


# -- GET /jobs ------------------------------------------------------------------------------------------------------


def test_list_is_newest_first_filterable_and_paginated(cloud, api, slurm):
    completes(slurm)
    mine = [submit(api) for _ in range(3)]
    for job_id in mine:
        wait_for_execution(cloud, job_id)
    keeps_running(slurm)
    running = submit(api)
    wait_until_status(api, running, {"RUNNING"})
    seen, token = [], None
    while True:
        page = api.get("/jobs", params={"limit": 2, **({"nextToken": token} if token else {})}).json()
        assert len(page["jobs"]) <= 2
        seen += page["jobs"]
        token = page.get("nextToken")
        if not token:
            break
    ids = [job["jobId"] for job in seen]
    assert ids.index(running) < ids.index(mine[2]) < ids.index(mine[1]) < ids.index(mine[0])
    created = [job["createdAt"] for job in seen]
    assert created == sorted(created, reverse=True) and len(set(ids)) == len(ids)
    only_running = api.get("/jobs", params={"status": "RUNNING", "limit": 100}).json()["jobs"]
    assert running in [job["jobId"] for job in only_running]
    assert all(job["status"] == "RUNNING" for job in only_running)
    assert api.delete(f"/jobs/{running}").status_code == 202


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"limit": "0"}, 422),
        ({"limit": "101"}, 422),
        ({"limit": "x"}, 422),
        ({"limit": "true"}, 422),
        ({"limit": "1.5"}, 422),
        ({"nextToken": "garbage"}, 400),
        ({"status": "SLEEPING"}, 400),
    ],
)
def test_list_refuses_bad_parameters(api, query, status):
    assert api.get("/jobs", params=query).status_code == status


# -- DELETE /jobs/{jobId} -------------------------------------------------------------------------------------------


def test_cancel_unknown_and_finished_jobs(cloud, api, slurm):
    assert api.delete("/jobs/0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10").status_code == 404
    completes(slurm)
    job_id = submit(api)
    wait_for_execution(cloud, job_id)
    answer = api.delete(f"/jobs/{job_id}")
    assert answer.status_code == 409 and answer.json()["code"] == "JobAlreadyFinished"


# -- GET /jobs/{jobId}/output ---------------------------------------------------------------------------------------


def test_output_is_409_until_collected_then_presigned_links(cloud, api, slurm):
    keeps_running(slurm)
    running = submit(api)
    wait_until_status(api, running, {"RUNNING"})
    early = api.get(f"/jobs/{running}/output")
    assert early.status_code == 409 and early.json()["code"] == "OutputNotReady"
    api.delete(f"/jobs/{running}")

    completes(slurm, write={"--output": "the output\n"})
    job_id = submit(api)
    wait_for_execution(cloud, job_id)
    output = api.get(f"/jobs/{job_id}/output").json()
    links = {item["name"]: item for item in output["files"]}
    assert set(links) == {"stdout", "result.json"} and output["expiresInSeconds"] == 900
    assert links["stdout"]["bytes"] == len("the output\n")
    assert requests.get(links["stdout"]["url"], timeout=10).text == "the output\n"
    assert requests.get(links["result.json"]["url"], timeout=10).json()["status"] == "COMPLETED"


def test_output_links_download_files_of_any_name_as_exactly_that_name(cloud, api, slurm):
    """Through the local S3: non-ASCII names and names that try to add a header parameter arrive intact."""
    directory = Path(tempfile.mkdtemp(prefix="sjapi-names-"))
    try:
        directory.chmod(0o755)
        contents = {name: name.encode() + b"\x00\xff\r\n" + bytes(range(256)) for name in DOWNLOAD_NAMES}
        for name, content in contents.items():
            (directory / name).write_bytes(content)
            (directory / name).chmod(0o644)
        completes(slurm)
        job_id = submit(api, {"script": SCRIPT, "workingDirectory": str(directory), "outputs": DOWNLOAD_NAMES})
        assert wait_for_execution(cloud, job_id)["status"] == "SUCCEEDED"
        links = {item["name"]: item["url"] for item in api.get(f"/jobs/{job_id}/output").json()["files"]}
        for name, content in contents.items():
            download = requests.get(links[f"outputs/{name}"], timeout=10)
            assert download.status_code == 200 and download.content == content, name
            saved_as, fallback = download_name(download.headers["Content-Disposition"])
            assert saved_as == name and fallback.isascii()
    finally:
        shutil.rmtree(directory)


# -- the rest ---------------------------------------------------------------------------------------------------------


def test_openapi_document_is_generated_from_the_routes(cloud, api):
    document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert described == documented_operations(cloud.model)
    spec_schema = document["components"]["schemas"]["JobSpec"]
    assert spec_schema["additionalProperties"] is False and "cpusPerTask" in spec_schema["properties"]


def test_unknown_routes_and_methods(api):
    missing = api.get("/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
    wrong = api.request("PUT", "/jobs", json={})
    assert wrong.status_code == 405 and set(wrong.headers["Allow"].split(", ")) == {"GET", "POST"}


def test_unsigned_requests_are_refused_by_the_gateway(cloud):
    answer = requests.get(cloud.api_url + "/jobs", timeout=10)
    assert answer.status_code == 403 and json.loads(answer.text)["message"] == "Missing Authentication Token"


def test_concurrent_requests_from_two_callers_never_mix(cloud, api, other, slurm):
    """Lambda runs one request at a time per execution environment; the local runtime must too, or the API router's
    current request would leak between requests in flight."""
    keeps_running(slurm)
    sent = [(client, f"{who}-{i}") for i in range(12) for who, client in (("mine", api), ("theirs", other))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda pair: pair[0].post("/jobs", json={"script": SCRIPT, "name": pair[1]}), sent))
    assert [answer.status_code for answer in answers] == [202] * len(sent)
    for (client, name), answer in zip(sent, answers, strict=True):
        view = client.get(f"/jobs/{answer.json()['jobId']}")
        assert view.status_code == 200 and view.json()["name"] == name
