"""GET /jobs/{jobId}/logs on the real local stack: a job's stdout while it runs on real Slurm (read on the head node
through SSM, as the cluster user), and after its end from the collected copy — page after page from nextOffset,
byte for byte what was collected."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

import requests

from harness.workflow import commands_by_action, finish, submit
from local_stack.api_gateway import LOCAL_OTHER
from slurm_job_api.jobs_api import LOGS_PAGE_MAX
from tests.support.job_logs import job_logs as logs
from tests.support.job_logs import read_stream, wait_for_running

# The job prints its directory and a line, then waits (at most two minutes) for the test to create `go` in its
# directory, then prints a last line: what GET logs shows before `go` is what the job printed while it ran.
WAITING_SCRIPT = """#!/bin/bash
echo "directory $PWD"
echo "first lines é漢🙂"
echo "to stderr" >&2
{bulk}
for i in $(seq 600); do [ -e go ] && break; sleep 0.2; done
echo "the last line"
"""
# Each task of an array prints its own line, waits for `go` as above, then prints the last line.
ARRAY_SCRIPT = """#!/bin/bash
echo "directory $PWD"
echo "task $SLURM_ARRAY_TASK_ID"
for i in $(seq 600); do [ -e go ] && break; sleep 0.2; done
echo "the last line"
"""
# About 200 KB of lines with characters of 2, 3 and 4 bytes in UTF-8: many pages, and pages that end inside them.
LINE_TEXT = "é漢🙂 and some more text to make it longer"
BULK = f'for i in $(seq 4000); do echo "line $i: {LINE_TEXT}"; done'


def wait_for_text(api, job_id: str, wanted: str, timeout: float = 60) -> dict:
    """The stream's last page (its last 1,000 bytes at most) once `wanted` is in it."""
    deadline = time.monotonic() + timeout
    while True:
        size = logs(api, job_id, limit=4)["size"]
        page = logs(api, job_id, offset=max(0, size - 1000), limit=1000)
        if wanted in page["text"]:
            return page
        assert time.monotonic() < deadline, page
        time.sleep(0.5)


def release(directory: str) -> None:
    Path(directory, "go").touch()  # as root, in the job's directory (the cluster user's, 0700)


def test_a_running_jobs_first_lines_show_before_it_ends_and_then_its_whole_output(cloud, api):
    job_id = submit(api, {"name": "logs-while-running", "script": WAITING_SCRIPT.format(bulk="")})
    wait_for_running(api, job_id)
    page = wait_for_text(api, job_id, "first lines é漢🙂\n")
    assert api.get(f"/jobs/{job_id}").json()["status"] == "RUNNING"
    assert "the last line" not in page["text"] and page["complete"] is False
    assert page["nextOffset"] == page["size"] == len(page["text"].encode())
    assert logs(api, job_id, stream="stderr")["text"] == "to stderr\n"

    release(page["text"].split("\n", 1)[0].removeprefix("directory "))
    execution, _, _, view = finish(cloud, api, job_id)
    assert execution["status"] == "SUCCEEDED" and view["status"] == "COMPLETED"
    ended = logs(api, job_id)
    assert ended["text"] == page["text"] + "the last line\n" and ended["complete"] is True
    stderr = logs(api, job_id, stream="stderr")
    assert stderr["text"] == "to stderr\n" and stderr["complete"] is True


def test_paging_through_a_large_output_gives_the_collected_stdout_byte_for_byte(cloud, api):
    job_id = submit(api, {"name": "logs-paged", "script": WAITING_SCRIPT.format(bulk=BULK)})
    wait_for_running(api, job_id)
    printed = wait_for_text(api, job_id, "line 4000:")  # the job is waiting, all but its last line printed
    commands_before = commands_by_action(cloud).get("read-output", 0)
    on_head_node, pages = read_stream(api, job_id)
    assert len(on_head_node) > 200_000 and len(pages) >= len(on_head_node) // LOGS_PAGE_MAX
    assert not any(page["complete"] for page in pages)  # the job runs: more may come
    assert commands_by_action(cloud).get("read-output", 0) - commands_before == len(pages)
    assert len(on_head_node) == printed["size"] and on_head_node.decode().endswith("line 4000: " + LINE_TEXT + "\n")

    release(on_head_node.decode().split("\n", 1)[0].removeprefix("directory "))
    assert finish(cloud, api, job_id)[0]["status"] == "SUCCEEDED"
    files = {item["name"]: item["url"] for item in api.get(f"/jobs/{job_id}/output").json()["files"]}
    collected = requests.get(files["stdout"], timeout=30).content
    assert collected == on_head_node + b"the last line\n"

    commands_before = commands_by_action(cloud).get("read-output", 0)
    from_s3, pages = read_stream(api, job_id, limit=5000)
    assert from_s3 == collected and pages[-1]["complete"] is True and len(pages) > 40
    assert commands_by_action(cloud).get("read-output", 0) == commands_before, "collected: read from S3 only"


def test_another_principal_gets_404_for_the_logs(cloud, api):
    job_id = submit(api, {"name": "logs-private", "script": WAITING_SCRIPT.format(bulk="")})
    wait_for_running(api, job_id)
    page = wait_for_text(api, job_id, "first lines")
    other = cloud.api_client(LOCAL_OTHER)
    for params in ({}, {"stream": "stderr"}, {"offset": 0, "limit": 100}):
        answer = other.get(f"/jobs/{job_id}/logs", params=params)
        assert answer.status_code == 404 and answer.json()["code"] == "JobNotFound", answer.text
    assert api.delete(f"/jobs/{job_id}").status_code == 202
    release(page["text"].split("\n", 1)[0].removeprefix("directory "))
    finish(cloud, api, job_id)
    assert other.get(f"/jobs/{job_id}/logs").status_code == 404


def test_an_array_tasks_logs_while_it_runs_and_each_tasks_after_collect(cloud, api):
    job_id = submit(api, {"name": "logs-array", "script": ARRAY_SCRIPT, "array": "1-2"})
    wait_for_running(api, job_id)
    deadline = time.monotonic() + 60
    while "task 1\n" not in (page := logs(api, job_id, taskId=1))["text"]:
        assert time.monotonic() < deadline, page
        time.sleep(0.5)
    assert page["taskId"] == 1 and page["complete"] is False and "the last line" not in page["text"]
    assert api.get(f"/jobs/{job_id}/logs").status_code == 422  # which task's?
    release(page["text"].split("\n", 1)[0].removeprefix("directory "))
    assert finish(cloud, api, job_id)[0]["status"] == "SUCCEEDED"
    files = {item["name"]: item["url"] for item in api.get(f"/jobs/{job_id}/output").json()["files"]}
    for task in (1, 2):
        collected = requests.get(files[f"tasks/{task}/stdout"], timeout=30).content
        assert collected.endswith(f"task {task}\nthe last line\n".encode())
        assert read_stream(api, job_id, taskId=task)[0] == collected


def test_each_callers_logs_are_read_as_that_callers_own_cluster_user(cloud, api, stack):
    """LOCAL_OTHER's jobs run as another cluster user (its home, its 0700 job directory): its running job's logs are
    read on the head node as that user, and the job's directory is that user's."""
    other = cloud.api_client(LOCAL_OTHER)
    job_id = submit(other, {"name": "logs-other-user", "script": WAITING_SCRIPT.format(bulk="")})
    wait_for_running(other, job_id)
    page = wait_for_text(other, job_id, "first lines")
    directory = page["text"].split("\n", 1)[0].removeprefix("directory ")
    other_user = pwd.getpwnam(stack.other_cluster_user)
    assert directory.startswith(other_user.pw_dir + "/") and os.stat(directory).st_uid == other_user.pw_uid
    assert api.get(f"/jobs/{job_id}/logs").status_code == 404
    release(directory)
    assert finish(cloud, other, job_id)[0]["status"] == "SUCCEEDED"
    assert logs(other, job_id)["text"].endswith("the last line\n")
