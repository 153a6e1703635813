"""What the HTTP API answers, and the body of POST /inputs (Pydantic models; the OpenAPI document is generated from
them and the routes; the job spec of POST /jobs is slurm_job_api.spec.JobSpec)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from slurm_job_api.inputs import DEFAULT_UPLOAD_FILE_NAME, UPLOAD_FILE_NAME_PATTERN
from slurm_job_api.job_record import JobRecord, JobState, SpecSummary, StoredResults
from slurm_job_api.statuses import Status


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ErrorBody(_Out):
    code: str = Field(description="Machine-readable error code", examples=["JobNotFound"])
    message: str = Field(description="What went wrong, for people")
    details: list[dict] | None = Field(default=None, description="Per-field problems of a rejected request")


class JobAccepted(_Out):
    job_id: str
    execution_arn: str = Field(description="The Step Functions execution that runs the job")
    status: Status
    location: str = Field(description="Path of the job resource (also in the Location header)")


class ExecutionView(_Out):
    arn: str
    status: str = Field(description="RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED; UNKNOWN if it could not be read")


class ResultsView(StoredResults, _Out):
    available: bool = Field(description="True once result.json has been written")


class JobView(JobState, _Out):
    job_id: str
    name: str | None = None
    cluster_user: str | None = Field(default=None, description="The cluster (POSIX) user the job runs as")
    cause: str | None = Field(default=None, description="Why the job ended as it did")
    created_at: str
    finished_at: str | None = Field(default=None, description="When the results were collected")
    updated_at: str | None = None
    cancel_requested: bool = False
    execution: ExecutionView
    results: ResultsView | None = None
    error: ErrorBody | None = None
    spec: SpecSummary = Field(
        description="The accepted spec, with the script, the environment and the outputs given by their sizes "
        "(scriptBytes, environmentVariables, environmentBytes, outputCount); result.json holds the whole spec"
    )

    @classmethod
    def from_record(cls, record: JobRecord, execution_status: str) -> JobView:
        """The API's view of a record; its results count as available once the execution has ended."""
        own = set(cls.model_fields) - {"execution", "results", "error", "spec"}
        return cls.model_validate(
            {
                **record.model_dump(include=own),
                "spec": record.spec,
                "execution": ExecutionView(arn=record.execution_arn, status=execution_status),
                "results": ResultsView(
                    available=execution_status not in ("RUNNING", "UNKNOWN"), **record.results.model_dump()
                )
                if record.results
                else None,
                "error": ErrorBody(**record.error) if record.error else None,
            }
        )


class JobSummary(_Out):
    job_id: str
    name: str | None = None
    status: Status
    slurm_job_id: str | None = None
    reason: str | None = JobState.model_fields["reason"]
    exit_code: int | None = None
    created_at: str
    updated_at: str | None = None

    @classmethod
    def from_record(cls, record: JobRecord) -> JobSummary:
        return cls.model_validate(record.model_dump(include=set(cls.model_fields)))


class JobList(_Out):
    jobs: list[JobSummary]
    next_token: str | None = Field(default=None, description="Pass as nextToken to get the next page")


class CancelAccepted(_Out):
    job_id: str
    status: Status
    cancel_requested: bool = True
    slurm_cancel_sent: bool = Field(description="True if scancel already ran on the cluster")


class OutputFile(_Out):
    name: str = Field(examples=["stdout", "tasks/3/stderr", "outputs/results/summary.csv", "result.json"])
    bytes: int | None = None
    url: str = Field(description="Presigned S3 GET URL")


class JobOutput(_Out):
    job_id: str
    expires_in_seconds: int
    files: list[OutputFile] = Field(
        description="One page of the collected files in result.json's order; result.json itself ends the last page"
    )
    next_token: str | None = Field(default=None, description="Pass as nextToken to get the next page")


class JobLogs(_Out):
    """A page of a job's stdout or stderr, as far as it is written: from the head node while the job runs (and until
    its files are collected), from the collected copy in S3 after."""

    job_id: str
    stream: Literal["stdout", "stderr"]
    task_id: int | None = Field(default=None, description="The array task whose stream this is (array jobs only)")
    offset: int = Field(description="Where this page starts, in bytes of the stream")
    next_offset: int = Field(
        description="Pass as offset for the next page: where the text ends, never inside a UTF-8 sequence (one the "
        "page cut short is left for the next page, from its first byte)"
    )
    text: str = Field(description="The page as text: the stream's bytes as UTF-8, bytes that are not UTF-8 as U+FFFD")
    size: int = Field(description="The stream's size in bytes so far (0 while it has not been written)")
    complete: bool = Field(
        description="True when the job has ended and nextOffset is at (or past) the end: nothing more will come"
    )


class InputUploadRequest(BaseModel):
    """The body of POST /inputs (optional): the file name that ends the new object's key."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", strict=True, frozen=True)

    file_name: str = Field(
        default=DEFAULT_UPLOAD_FILE_NAME,
        pattern=UPLOAD_FILE_NAME_PATTERN,
        description="The last part of the new object's key",
        examples=["run.sh"],
    )


class InputUpload(_Out):
    key: str = Field(
        description="The new object's key, under your own inputs prefix: pass it as scriptS3Key",
        examples=["inputs/6f1c.../0b6f1c9e3f7a4c1e9a532a8f6f2b9d10/run.sh"],
    )
    prefix: str = Field(description="Your own inputs prefix: the only one scriptS3Key may name")
    method: Literal["PUT"] = Field(default="PUT", description="The HTTP method the URL is signed for")
    url: str = Field(description="Presigned S3 PUT URL: send the script as the body")
    expires_in_seconds: int
    expires_at: str = Field(description="When the URL stops working (UTC)")
    max_bytes: int = Field(description="The largest script POST /jobs accepts from an object")
