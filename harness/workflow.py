"""Helpers for tests that run jobs through the local cloud: start executions, read their history and results."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import requests
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from harness.limits import dynamodb_item_bytes
from local_stack.cloud import LocalCloud
from slurm_job_api import arns

SCRIPT = "#!/bin/bash\necho hello\n"


def submit(api, spec: dict | None = None, headers: dict | None = None) -> str:
    answer = api.post("/jobs", json=spec or {"script": SCRIPT, "name": "wf"}, headers=headers or {})
    if answer.status_code != 202:
        raise AssertionError(answer.text)
    return answer.json()["jobId"]


def upload_script(api, script: bytes, file_name: str | None = None) -> str:
    """Uploads a script as a caller does: POST /inputs for a presigned URL under the caller's own prefix, then a plain
    HTTP PUT of the bytes (no AWS credentials); returns the key to pass as scriptS3Key."""
    answer = api.post("/inputs", json={"fileName": file_name} if file_name else {})
    if answer.status_code != 200:
        raise AssertionError(answer.text)
    upload = answer.json()
    stored = requests.put(upload["url"], data=script, timeout=30)
    if stored.status_code != 200:
        raise AssertionError(f"PUT {upload['key']}: {stored.status_code} {stored.text[:300]}")
    return upload["key"]


def execution_arn(cloud: LocalCloud, name: str) -> str:
    return arns.execution_arn(cloud.state_machine_arn, name)


def wait_for_execution(cloud: LocalCloud, name: str, timeout: float = 90) -> dict:
    sfn = cloud.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution_arn(cloud, name))
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)
    raise AssertionError(f"execution {name} still running after {timeout} s")


def execution_statuses(
    cloud: LocalCloud, names: Iterable[str], timeout: float, interval: float = 0.5
) -> dict[str, str]:
    """Waits until none of the executions named ``names`` runs any more, or ``timeout``; returns their statuses. One
    ListExecutions of the running ones per round, whatever the number of jobs (not one DescribeExecution each)."""
    sfn = cloud.client("stepfunctions")
    wanted = set(names)
    deadline = time.monotonic() + timeout

    def listed(**status_filter: str) -> dict[str, str]:
        # moto's page token names the next item of the filtered list: when that execution stops running between two
        # pages, the token is refused (InvalidToken; AWS's tokens outlive that). The listing then starts again.
        while True:
            pages = sfn.get_paginator("list_executions").paginate(
                stateMachineArn=cloud.state_machine_arn, **status_filter
            )
            try:
                return {
                    item["name"]: item["status"]
                    for page in pages
                    for item in page["executions"]
                    if item["name"] in wanted
                }
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "InvalidToken":
                    raise

    while listed(statusFilter="RUNNING") and time.monotonic() < deadline:
        time.sleep(interval)
    statuses = listed()
    return {name: statuses.get(name, "MISSING") for name in sorted(wanted)}


def history(cloud: LocalCloud, arn: str) -> list[dict]:
    pages = cloud.client("stepfunctions").get_paginator("get_execution_history").paginate(executionArn=arn)
    return [event for page in pages for event in page["events"]]


POLL_LOOP = ["WaitBeforePoll", "PollJob", "IsJobFinished"]


def path(events: list[dict]) -> list[str]:
    """The states entered, in order, with repeats of the poll loop collapsed into one round."""
    names = [event[key]["name"] for event in events for key in event if key == "stateEnteredEventDetails"]
    collapsed: list[str] = []
    for name in names:
        if name == "WaitBeforePoll" and collapsed[-3:] == POLL_LOOP:
            del collapsed[-3:]
        collapsed.append(name)
    return collapsed


def poll_news(events: list[dict]) -> list[dict | None]:
    """What each PollJob was woken with ($.job.news in its input; None for a poll of the per-job schedule)."""
    inputs = [
        json.loads(event["stateEnteredEventDetails"]["input"])
        for event in events
        if event.get("stateEnteredEventDetails", {}).get("name") == "PollJob"
    ]
    return [state["job"].get("news") for state in inputs]


# A wait for news that no sweep kept alive ends with this error: AWS names a missed heartbeat States.HeartbeatTimeout,
# moto's interpreter reports it as States.Timeout.
SAFETY_POLL_ERRORS = ("States.HeartbeatTimeout", "States.Timeout")
SAFETY_POLL = "safety poll"


def wait_endings(events: list[dict]) -> list[str]:
    """How each wait for news ended, in order: the sweep's wake reason (e.g. "ended"), or SAFETY_POLL."""
    endings = []
    for news in poll_news(events):
        if news is None:
            continue
        endings.append(SAFETY_POLL if news.get("Error") in SAFETY_POLL_ERRORS else str(news.get("reason")))
    return endings


def finish_counts(cloud: LocalCloud, job_ids: Iterable[str]) -> dict[str, int]:
    """Successful FinishJob invocations by job: each wrote the job's result.json and its final record once."""
    wanted = set(job_ids)
    counts = dict.fromkeys(wanted, 0)
    for invocation in cloud.runtime.invocations_of("FinishJobFunction"):
        job_id = invocation.event.get("state", {}).get("jobId") if isinstance(invocation.event, dict) else None
        if job_id in wanted and invocation.error is None:
            counts[job_id] += 1
    return counts


def entered(events: list[dict]) -> list[str]:
    """The states entered, in order (each one a state transition)."""
    return [event["stateEnteredEventDetails"]["name"] for event in events if "stateEnteredEventDetails" in event]


def commands_by_action(cloud) -> dict[str, int]:
    """SSM commands sent so far, by head-node action (their comment is "slurm-job-api <action> <jobId>")."""
    counts: dict[str, int] = {}
    for page in cloud.client("ssm").get_paginator("list_commands").paginate():
        for command in page["Commands"]:
            words = command.get("Comment", "").split()
            if len(words) >= 2 and words[0] == "slurm-job-api":
                counts[words[1]] = counts.get(words[1], 0) + 1
    return counts


def task_failures(events: list[dict]) -> list[str]:
    """Error names of failed task attempts (Lambda tasks by function ARN report LambdaFunctionFailed)."""
    details = {"TaskFailed": "taskFailedEventDetails", "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails"}
    return [event[details[event["type"]]]["error"] for event in events if event["type"] in details]


def failure(events: list[dict]) -> dict:
    return next(event for event in events if event["type"] == "ExecutionFailed")["executionFailedEventDetails"]


def result_json(cloud: LocalCloud, job_id: str) -> dict:
    body = cloud.client("s3").get_object(Bucket=cloud.bucket_name, Key=f"jobs/{job_id}/result.json")["Body"]
    return json.loads(body.read())


def finish(cloud: LocalCloud, api, job_id: str, timeout: float = 90) -> tuple[dict, list[dict], dict, dict]:
    """(execution, history, result.json, job view) once the job's workflow has ended."""
    execution = wait_for_execution(cloud, job_id, timeout)
    events = history(cloud, execution["executionArn"])
    return execution, events, result_json(cloud, job_id), api.get(f"/jobs/{job_id}").json()


def record_bytes(cloud: LocalCloud, job_id: str) -> int:
    """The size DynamoDB bills for the job's record as it is stored now (harness.limits.dynamodb_item_bytes)."""
    item = cloud.client("dynamodb").get_item(TableName=cloud.table_name, Key={"jobId": {"S": job_id}})["Item"]
    return dynamodb_item_bytes({name: TypeDeserializer().deserialize(value) for name, value in item.items()})


def state_sizes(cloud: LocalCloud, execution: dict, events: list[dict]) -> dict[str, int]:
    """Bytes (UTF-8, as Step Functions counts them) of the execution input and of the largest input/output of each
    state in the history (stateEntered/stateExited, and every task's result): the data Step Functions caps at
    256 KiB."""
    described = cloud.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    sizes = {"execution input": len(described["input"].encode("utf-8"))}
    for event in events:
        for key, details in event.items():
            if not key.endswith("EventDetails") or not isinstance(details, dict):
                continue
            where = details.get("name") or event["type"]
            for field in ("input", "output"):
                if isinstance(details.get(field), str):
                    size = len(details[field].encode("utf-8"))
                    label = f"{where} {field}"
                    sizes[label] = max(sizes.get(label, 0), size)
    return sizes
