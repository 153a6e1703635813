"""A POST /jobs that repeats an Idempotency-Key with a different spec, sent at the one moment the API cannot tell
from the job record that the key was used: its first attempt started the workflow and stopped before it wrote the
record (a Lambda timeout, a lost connection). The first job's submit step is held and its record removed — the state
such an attempt leaves — while the second request is sent; then the first job goes on (its submit step makes the
record again from the execution input and spec.json).

Used by tests/handlers (scripted Slurm) and tests/security (real Slurm), which check that the second request got 422
and changed nothing: the first job's stored inputs are byte-identical, and it runs its own script."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from local_stack.cloud import LocalCloud

HOLD_SECONDS = 120


@dataclass
class ConflictingRetry:
    job_id: str
    status: int  # of the second request
    answer: dict
    objects_before: dict[str, bytes]  # every object under jobs/<jobId>/, before the second request and after it
    objects_after: dict[str, bytes]
    record_after: dict | None  # the job's item right after the second request (None: not there)
    executions_before: list[str]
    executions_after: list[str]


def job_objects(cloud: LocalCloud, job_id: str) -> dict[str, bytes]:
    s3 = cloud.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=cloud.bucket_name, Prefix=f"jobs/{job_id}/")
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=cloud.bucket_name, Key=key)["Body"].read() for key in keys}


def execution_names(cloud: LocalCloud) -> list[str]:
    pages = cloud.client("stepfunctions").get_paginator("list_executions")
    return sorted(
        execution["name"]
        for page in pages.paginate(stateMachineArn=cloud.state_machine_arn)
        for execution in page["executions"]
    )


def conflicting_retry(cloud: LocalCloud, api: Any, *, key: str, first: dict, second: dict) -> ConflictingRetry:
    """Sends `first` with Idempotency-Key `key`, then — while the first job's submit step is held and its record is
    absent — `second` with the same key. Returns once the first job's submit step has been let go."""
    headers = {"Idempotency-Key": key}
    held: set[str] = set()
    changed, release = threading.Condition(), threading.Event()

    def hold_submit_steps(event: Any, context: Any, call_next: Any) -> Any:
        with changed:
            held.add(event.get("jobId"))
            changed.notify_all()
        release.wait(HOLD_SECONDS)  # every submit step that starts in the block: the first job's may come first
        return call_next(event, context)

    table = cloud.client("dynamodb")
    with cloud.runtime.intercepted("SubmitJobFunction", hold_submit_steps):
        try:
            accepted = api.post("/jobs", json=first, headers=headers)
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["jobId"]
            with changed:
                assert changed.wait_for(lambda: job_id in held, timeout=60), "the first job's submit step never began"
            table.delete_item(TableName=cloud.table_name, Key={"jobId": {"S": job_id}})
            objects_before, executions_before = job_objects(cloud, job_id), execution_names(cloud)
            answer = api.post("/jobs", json=second, headers=headers)
            objects_after, executions_after = job_objects(cloud, job_id), execution_names(cloud)
            record_after = table.get_item(TableName=cloud.table_name, Key={"jobId": {"S": job_id}}).get("Item")
        finally:
            release.set()
    try:
        body = answer.json()
    except ValueError:
        body = {"unparsed": answer.text[:500]}
    return ConflictingRetry(
        job_id=job_id,
        status=answer.status_code,
        answer=body,
        objects_before=objects_before,
        objects_after=objects_after,
        record_after=record_after,
        executions_before=executions_before,
        executions_after=executions_after,
    )
