"""The events the state machine's Task states send to the submit, poll and finish functions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from slurm_job_api.progress import JobProgress


class _Event(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SubmitJobEvent(_Event):
    job_id: str
    submission_id: str
    owner: str
    created_at: str
    spec: dict
    execution_arn: str


class PollJobEvent(_Event):
    job_id: str
    job: JobProgress
    state_machine_arn: str
    execution_arn: str


class FinishJobEvent(_Event):
    state: dict = Field(description="The whole workflow state: jobId, owner, createdAt, spec, job?, error?")
    execution_arn: str
    retry_count: int = 0
