"""The job record: one DynamoDB item per job, its fields, and the changes each step makes to it (pure).

Stored field names are the camelCase aliases below; JobStore reads and writes records through this model, the API's
JobView and JobSummary and result.json are built from it, and the state machine's RecordFinishFailure state writes
only fields declared here (a test parses statemachine/job.asl.json to prove it).

The record stays small whatever the spec: every status update writes the whole item, and DynamoDB bills a write per
started 1 KB of it (and as much again for the OwnerCreatedAtIndex, which projects every attribute). So the record
keeps a summary of the spec (SpecSummary), never the script, the environment or the outputs; the whole spec is
jobs/<jobId>/input/spec.json in the results bucket, where the workflow reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from pydantic.alias_generators import to_camel

from slurm_job_api.spec import JobSpec, JobSpecBase, environment_bytes
from slurm_job_api.statuses import SUBMITTING, Status


class _Stored(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class JobState(_Stored):
    """What is known of the job in Slurm. The record, the workflow's progress and the API's view all carry it."""

    status: Status
    slurm_job_id: str | None = None
    slurm_state: str | None = Field(default=None, description="Slurm's own state name, e.g. PENDING or COMPLETING")
    reason: str | None = Field(default=None, description="Slurm's pending reason, e.g. Resources or Priority")
    exit_code: int | None = None
    signal: int | None = Field(default=None, description="Signal that ended the job, if any")
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    array_task_counts: dict[str, int] | None = Field(default=None, description="Tasks of an array job per status")
    unreachable_since: str | None = Field(
        default=None, description="While the job's state cannot be asked (head node, slurmctld or AWS down): since when"
    )
    longest_outage_seconds: int | None = Field(
        default=None, description="The longest time so far that the job's state could not be asked"
    )

    def state_fields(self) -> dict[str, Any]:
        """The job-state fields under their stored names (None for what is not known)."""
        return self.model_dump(mode="json", by_alias=True, include=set(JobState.model_fields))


class StoredResults(_Stored):
    """Where the job's results are (set by the finish step)."""

    bucket: str
    prefix: str
    result_key: str
    file_count: int | None = None
    collection: str | None = Field(default=None, description="complete, partial, failed or skipped")


class SpecSummary(JobSpecBase):
    """The accepted spec as the record keeps it and GET /jobs/{jobId} shows it: every field of the spec given (the
    small ones, JobSpecBase), and for the three that can be large — the script (64 KiB), the environment (64 KiB)
    and the outputs (100 paths of up to 1024 characters) — their sizes instead. At most about 9 KB whatever the
    spec; the whole spec is jobs/<jobId>/input/spec.json, and result.json repeats it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    script_bytes: int | None = Field(default=None, description="Size of the inline script in UTF-8 bytes")
    environment_variables: int | None = Field(default=None, description="How many environment variables were given")
    environment_bytes: int | None = Field(
        default=None, description="Size of the environment as its 64 KiB limit counts it (names, values, 2 per entry)"
    )
    output_count: int | None = Field(default=None, description="How many outputs were declared")

    @classmethod
    def of(cls, spec: JobSpec) -> SpecSummary:
        return cls.model_validate(spec.to_json_dict())

    @model_validator(mode="before")
    @classmethod
    def _summarized(cls, data: Any) -> Any:
        """A whole spec (JobSpec.to_json_dict(), or a record written before records kept summaries) → its summary."""
        if not isinstance(data, Mapping) or not {"script", "environment", "outputs"} & set(data):
            return data
        summary = {name: value for name, value in data.items() if name not in ("script", "environment", "outputs")}
        if isinstance(data.get("script"), str):
            summary["scriptBytes"] = len(data["script"].encode("utf-8"))
        if isinstance(data.get("environment"), Mapping):
            summary["environmentVariables"] = len(data["environment"])
            summary["environmentBytes"] = environment_bytes(dict(data["environment"]))
        if isinstance(data.get("outputs"), list):
            summary["outputCount"] = len(data["outputs"])
        return summary

    @model_serializer(mode="wrap")
    def _given_fields_only(self, handler: SerializerFunctionWrapHandler):  # unannotated: the schema stays the model's
        """Like the spec itself, the summary leaves out the fields that were not given (no null for each)."""
        return {name: value for name, value in handler(self).items() if value is not None}


class JobRecord(JobState):
    """One job as the jobs table holds it."""

    job_id: str
    submission_id: str | None = None
    owner: str
    # The POSIX user the job runs as on the cluster (the caller's mapping when the job was accepted; every head-node
    # command for the job runs as it). Records made before mappings have none: they ran as ClusterUser.
    cluster_user: str | None = None
    name: str | None = None
    created_at: str
    updated_at: str | None = None
    spec: SpecSummary
    request_hash: str = ""
    execution_arn: str
    cancel_requested: bool = False
    cancel_requested_at: str | None = None
    expires_at: int | None = None  # the table's TTL attribute (epoch seconds)
    cause: str | None = None
    finished_at: str | None = None
    error: dict[str, str] | None = None  # {"code", "message"}
    results: StoredResults | None = None
    # While the job is active: the cluster it runs on, the hash key of the sparse ActiveJobsIndex the cluster's status
    # sweep queries (finish removes it, so the index holds only active jobs).
    active_on_cluster: str | None = None
    # While its workflow waits for news (state AwaitNews): the task token that wakes it and the progress it waits
    # with. Only the workflow and the sweep read them; no API view shows them.
    wait_token: str | None = None
    waiting_progress: dict[str, Any] | None = None
    waiting_since: str | None = None
    swept_at: str | None = None  # when a sweep last saw the job

    @classmethod
    def new(
        cls,
        *,
        job_id: str,
        submission_id: str,
        owner: str,
        spec: JobSpec,
        created_at: str,
        request_hash: str,
        execution_arn: str,
        retention_days: int,
        cluster_name: str,
        cluster_user: str,
    ) -> JobRecord:
        """A job record as POST /jobs creates it."""
        expires = datetime.fromisoformat(created_at.replace("Z", "+00:00")) + timedelta(days=retention_days)
        return cls(
            job_id=job_id,
            submission_id=submission_id,
            owner=owner,
            cluster_user=cluster_user,
            name=spec.name,
            status=SUBMITTING,
            created_at=created_at,
            updated_at=created_at,
            spec=SpecSummary.of(spec),
            request_hash=request_hash,
            execution_arn=execution_arn,
            cancel_requested=False,
            expires_at=int(expires.timestamp()),
            active_on_cluster=cluster_name,
        )

    def item(self) -> dict[str, Any]:
        """The record as stored: the fields it was made or read with, under their stored names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @classmethod
    def stored(cls, **fields: Any) -> dict[str, Any]:
        """Fields of the record (by attribute name) under their stored names; a name that is not a field fails."""
        return {cls.model_fields[name].alias or name: value for name, value in fields.items()}

    # -- the changes each step makes (None removes a field) ----------------------------------------------------------

    @classmethod
    def progress_fields(cls, state: JobState, now: str) -> dict[str, Any]:
        """The fields a submit or poll step sets from the job's progress."""
        return {**state.state_fields(), **cls.stored(updated_at=now)}

    def would_change(self, fields: Mapping[str, Any]) -> bool:
        """True if setting `fields` changes anything but updatedAt."""
        current = self.model_dump(mode="json", by_alias=True)
        ignored = self.stored(updated_at=None).keys()
        return any(current.get(name) != value for name, value in fields.items() if name not in ignored)

    @classmethod
    def finish_fields(
        cls,
        state: JobState | None,
        *,
        status: str,
        cause: str,
        error: dict[str, str] | None,
        results: StoredResults,
        finished_at: str,
    ) -> dict[str, Any]:
        """The fields the finish step sets: how the job ended and where its results are."""
        fields = cls.progress_fields(state, finished_at) if state else cls.stored(updated_at=finished_at)
        fields.update(
            cls.stored(
                status=status,
                cause=cause,
                ended_at=state.ended_at if state and state.ended_at else finished_at,
                finished_at=finished_at,
                error=error,
                results=results.model_dump(mode="json", by_alias=True),
                **cls.no_longer_tracked(),
            )
        )
        return fields

    @classmethod
    def no_longer_tracked(cls) -> dict[str, None]:
        """What an ended job drops: its place in the active-jobs index and its workflow's wait (attribute names)."""
        return {"active_on_cluster": None, **cls.wait_over()}

    @classmethod
    def wait_over(cls) -> dict[str, None]:
        """What a workflow that no longer waits for news drops (attribute names): PollJob runs only after the wait
        ended, and a sweep then has nobody to wake until the next AwaitNews keeps a new token."""
        return dict.fromkeys(("wait_token", "waiting_progress", "waiting_since"))

    @classmethod
    def waiting_fields(cls, token: str, progress: Mapping[str, Any], now: str) -> dict[str, Any]:
        """The fields AwaitNews sets: the token that wakes the workflow and the progress it waits with."""
        return cls.stored(wait_token=token, waiting_progress=dict(progress), waiting_since=now)

    @classmethod
    def cancel_mark(cls, now: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fields DELETE sets on an active job: (always set, set only if absent — the first request's time)."""
        return cls.stored(cancel_requested=True, updated_at=now), cls.stored(cancel_requested_at=now)
