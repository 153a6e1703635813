"""The execution input and the events the state machine's Task states send to the submit, poll and finish functions.

Workflow state stays small whatever the spec: the execution input and every state carry references (ids, the key of
the stored spec, the request hash) and the job's progress, never the script, the environment or per-file lists.
Step Functions fails an execution whose input or any state's data exceeds 256 KiB (States.DataLimitExceeded).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from slurm_job_api.head_node_protocol import StatusReply
from slurm_job_api.progress import JobProgress


class _Event(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class WorkflowInput(_Event):
    """The execution input POST /jobs starts a job's workflow with (a continuation execution adds `job`)."""

    job_id: str
    submission_id: str
    owner: str
    cluster_user: str | None = Field(default=None, description="The POSIX user the job runs as (its record's)")
    created_at: str
    request_hash: str = Field(description="sha256 of the accepted spec: the idempotency replay check compares it")
    spec_key: str = Field(description="Key of the accepted spec in the results bucket (jobs/<jobId>/input/spec.json)")

    def to_input(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class SubmitJobEvent(WorkflowInput):
    execution_arn: str


class AwaitNewsEvent(_Event):
    """What AwaitNews invokes the AwaitNews function with (lambda:invoke.waitForTaskToken): the function keeps the
    token in the job's record, where the cluster's sweep finds it, and returns; the state then waits for the token."""

    task_token: str
    job_id: str
    job: JobProgress


class News(_Event):
    """What woke the workflow ($.news): a sweep's news (why, and what Slurm said of the job), or the Catch result of
    AwaitNews — States.HeartbeatTimeout when no sweep kept the wait alive: the safety poll."""

    reason: str | None = None
    observation: StatusReply | None = None
    error: str | None = Field(default=None, alias="Error")


class PollJobEvent(_Event):
    """PollJob's event. After AwaitNews, `$.job.news` holds what woke the workflow (AwaitNews puts it there, and
    PollJob's result, the new `$.job`, drops it: news is never read twice); it is taken out of `job` here."""

    job_id: str
    job: JobProgress
    state_machine_arn: str
    execution_arn: str
    news: News | None = None
    # NoteHeadNodeOutage: PollJob's retries ran out on an outage error; the Catch result {"Error", "Cause"}.
    outage: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _news_from_job(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("job"), dict) and "news" in data["job"]:
            job = dict(data["job"])
            return {**data, "job": job, "news": job.pop("news")}
        return data


class WorkflowState(WorkflowInput):
    """The state FinishJob gets: the execution input, the job's progress once submitted, the error if one ended it."""

    job: JobProgress | None = None
    error: dict[str, Any] | None = Field(default=None, description="A Catch result: {Error, Cause}")


class FinishJobEvent(_Event):
    state: WorkflowState
    execution_arn: str
    retry_count: int = 0
