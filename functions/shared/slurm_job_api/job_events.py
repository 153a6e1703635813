"""The product's "Slurm Job State Change" events: one for every change of a job's status (pure: no AWS import).

Integrations (a pipeline's next step, a notifier, an audit log) subscribe to them with an EventBridge rule on the
stack's bus (output JobEventsBusName), as they would to AWS Batch's "Batch Job State Change"
(https://docs.aws.amazon.com/batch/latest/userguide/batch_job_events.html): the detail names the job, its new status
and why, its Slurm job id and exit code, its owner and its times. The events are derived from the jobs table's
stream (NEW_AND_OLD_IMAGES): every write of a record, by any function or by the state machine itself, passes through
it. An event is made for a new record (SUBMITTING), for each change to another active status (PENDING, RUNNING,
SUSPENDED, ...), and for the end: when the record gets its ``finishedAt``, in the same write as its final status,
result.json and the stored outputs (a poll that saw the job end writes the status first; the end is published when
the results are there, so a consumer that reacts to it can read them).

Delivery is at least once and in no guaranteed order (EventBridge's own terms, and a stream batch that failed is
retried): ``changeId`` is the same for every delivery of one change, and ``updatedAt`` orders a job's changes.
The head node's push hook publishes under the same detail type with its own source (slurm-job-api.head-node); these
events' source is ``slurm-job-api``, so the sweep's rule never matches them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from slurm_job_api.job_record import JobRecord
from slurm_job_api.push_hook import DETAIL_TYPE
from slurm_job_api.statuses import TERMINAL_STATUSES, Status

SOURCE = "slurm-job-api"
"""The source of the product's events (the head node's hints are slurm-job-api.head-node)."""


class JobStateChange(BaseModel):
    """The detail of one event: the job as its record stands after the change."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    change_id: str = Field(description="The same for every delivery of this change (the stream record's eventID)")
    job_id: str
    job_name: str | None = None
    status: Status
    status_reason: str | None = Field(
        default=None, description="Why: the cause of an ending, or Slurm's pending reason (e.g. Resources)"
    )
    cluster_name: str
    owner: str = Field(description="The IAM principal that submitted the job")
    slurm_job_id: str | None = None
    slurm_state: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    error_code: str | None = Field(default=None, description="The error's code when the job ended in error")
    array_task_counts: dict[str, int] | None = None
    created_at: str
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str | None = None
    execution_arn: str
    result_key: str | None = Field(default=None, description="result.json in the results bucket, once the job ended")

    def entry(self, bus_name: str) -> dict[str, Any]:
        """The PutEvents entry for the bus: the execution as the event's resource, as Batch names the job's ARN."""
        return {
            "EventBusName": bus_name,
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Resources": [self.execution_arn],
            "Detail": self.model_dump_json(by_alias=True),
        }


def state_change(old: JobRecord | None, new: JobRecord, *, change_id: str, cluster_name: str) -> JobStateChange | None:
    """The event for a write that took the record from `old` (None: it is new) to `new`, or None: the write changed
    no published status (a sweep's bookkeeping, a wait's token, a reason or a task count, or a final status whose
    results are not collected yet)."""
    ended = new.finished_at is not None
    if old is not None:
        if ended:
            if old.finished_at is not None:
                return None
        elif new.status == old.status or new.status in TERMINAL_STATUSES:
            return None
    return JobStateChange(
        change_id=change_id,
        job_id=new.job_id,
        job_name=new.name,
        status=new.status,
        status_reason=new.cause if ended else new.reason,
        cluster_name=cluster_name,
        owner=new.owner,
        slurm_job_id=new.slurm_job_id,
        slurm_state=new.slurm_state,
        exit_code=new.exit_code,
        signal=new.signal,
        error_code=new.error.get("code") if new.error else None,
        array_task_counts=new.array_task_counts,
        created_at=new.created_at,
        submitted_at=new.submitted_at,
        started_at=new.started_at,
        ended_at=new.ended_at,
        updated_at=new.updated_at,
        execution_arn=new.execution_arn,
        result_key=new.results.result_key if new.results else None,
    )
