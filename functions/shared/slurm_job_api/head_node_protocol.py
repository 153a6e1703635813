"""The head-node program's requests and replies, one type each per action (pure).

The program (head_node_program.py, standard library only) declares the fields it reads and writes once, in
REQUEST_FIELDS, ACTION_REQUEST_FIELDS, REPLY_FIELDS and their kin; these types are the Lambda side of the same
contract, and tests/unit/test_head_node_protocol.py keeps the two equal. HeadNode.run sends a request and returns
its reply type. Optional request fields without a value are left out (the program reads them as absent).
Reply fields listed in a reply's DIAGNOSTICS are logged for people and never acted on.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from slurm_job_api.statuses import Status


class _Message(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Reply(_Message):
    DIAGNOSTICS: ClassVar[tuple[str, ...]] = ()  # fields logged, never acted on

    def diagnostics(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.DIAGNOSTICS}


class Request[ReplyT: Reply](_Message):
    """One action's request, without the fields HeadNode adds to every one (protocol, action, user, Slurm dir)."""

    ACTION: ClassVar[str]

    job_id: str | None = None  # every request names its job: the SSM command's comment and the logs show it

    @classmethod
    def reply_type(cls) -> type[Reply]:
        """The reply type of this request type: the parameter of its Request[...] base."""
        for base in cls.__mro__:
            metadata = getattr(base, "__pydantic_generic_metadata__", None) or {}
            if metadata.get("origin") is Request and metadata.get("args"):
                return metadata["args"][0]
        raise TypeError(f"{cls.__name__} does not say its reply type")

    def fields(self) -> dict[str, Any]:
        """The request's own fields as the program reads them."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- submit ---------------------------------------------------------------------------------------------------------


class SubmitReply(Reply):
    DIAGNOSTICS: ClassVar[tuple[str, ...]] = ("job_directory",)

    slurm_job_id: str
    already_submitted: bool
    job_directory: str | None = None  # the per-submission directory on the head node


class SubmitRequest(Request[SubmitReply]):
    ACTION: ClassVar[str] = "submit"

    job_id: str
    submission_id: str
    script_url: str  # presigned GET of the job script
    sbatch_options: list[str]  # --name=value, checked by the program against its allow-list
    working_directory: str | None = None
    environment_url: str | None = None  # presigned GET of a JSON object of environment variables


# -- status ---------------------------------------------------------------------------------------------------------


class StatusReply(Reply):
    DIAGNOSTICS: ClassVar[tuple[str, ...]] = ("source", "submit_time")

    slurm_job_id: str
    found: bool
    source: Literal["squeue", "sacct", "scontrol", "none"]  # where the answer came from
    accounting_available: bool
    min_job_age: int | None = None
    # Present when found:
    status: Status | None = None
    slurm_state: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    submit_time: str | None = None  # Slurm's submit time (the record keeps the workflow's own submittedAt)
    start_time: str | None = None
    end_time: str | None = None
    array_task_counts: dict[str, int] | None = None


class StatusRequest(Request[StatusReply]):
    ACTION: ClassVar[str] = "status"

    slurm_job_id: str
    is_array: bool = False


# -- cancel ---------------------------------------------------------------------------------------------------------


class CancelReply(Reply):
    slurm_job_id: str
    requested: bool


class CancelRequest(Request[CancelReply]):
    ACTION: ClassVar[str] = "cancel"

    slurm_job_id: str


# -- collect --------------------------------------------------------------------------------------------------------


class Upload(_Message):
    """One file the program uploads to a presigned PUT URL."""

    name: str
    source: Literal["stdout", "stderr", "output"]
    task_id: int | None = None  # an array task's stdout/stderr
    path: str | None = None  # an output, relative to the working directory
    url: str


class FileReport(_Message):
    name: str
    status: Literal["uploaded", "missing", "error"]
    bytes: int | None = None
    message: str | None = None


class CollectReply(Reply):
    files: list[FileReport]


class CollectRequest(Request[CollectReply]):
    ACTION: ClassVar[str] = "collect"

    job_id: str
    submission_id: str
    slurm_job_id: str
    working_directory: str | None = None
    uploads: list[Upload] = Field(default_factory=list)


# -- sweep ----------------------------------------------------------------------------------------------------------


class SweepJob(_Message):
    """One job a sweep asks about."""

    slurm_job_id: str
    is_array: bool = False


class SweepReply(Reply):
    """What the sweep's command prints: the report itself went to `report_url` (it can be larger than the 24,000
    characters of stdout SSM returns), this says how much of it there is and what the sweep cost slurmctld."""

    DIAGNOSTICS: ClassVar[tuple[str, ...]] = ("queries",)

    reported: int  # jobs in the report (every job asked about, found or not)
    report_bytes: int
    queries: dict[str, int]  # Slurm client calls by tool, e.g. {"squeue": 1, "sacct": 1, "scontrol": 0}


class SweepRequest(Request[SweepReply]):
    """The state of many jobs at once: one squeue for all of them; sacct (one call) for those squeue no longer shows
    or shows ended; scontrol (one call each) only for those neither knows completely. The program PUTs the report —
    a SweepReport — to `report_url`, a presigned URL of the results bucket."""

    ACTION: ClassVar[str] = "sweep"

    jobs: list[SweepJob]
    report_url: str


class SweepReport(_Message):
    """The object the sweep uploads: one status result per job asked about, in the order asked (each exactly what
    the status action would have answered for that job)."""

    jobs: list[StatusReply]


# -- check-user -----------------------------------------------------------------------------------------------------


class CheckUserReply(Reply):
    cluster_user: str
    uid: int


class CheckUserRequest(Request[CheckUserReply]):
    """Runs nothing: the program checks the cluster user as for every action and says who it ran as (an operator's
    check of a caller mapping before writing it)."""

    ACTION: ClassVar[str] = "check-user"


# -- read-output ----------------------------------------------------------------------------------------------------


class ReadOutputReply(Reply):
    """A page of a job's stdout or stderr as it is on the head node now."""

    found: bool  # False: no such stream yet (or the job's directory is not there), or not a regular file
    size: int  # the file's size when it was read (0 when not found)
    offset: int  # where the page starts, as asked
    data: str  # base64 of at most `limit` bytes from `offset`, never beyond `size`


class ReadOutputRequest(Request[ReadOutputReply]):
    """At most `limit` bytes (1 to READ_OUTPUT_MAX_BYTES) of a job's stream from `offset`, read as the cluster user
    from the job's directory, relative to its descriptor."""

    ACTION: ClassVar[str] = "read-output"

    job_id: str
    submission_id: str
    stream: Literal["stdout", "stderr"]
    task_id: int | None = None  # an array task's stream
    offset: int
    limit: int


REQUEST_TYPES: tuple[type[Request], ...] = (
    SubmitRequest,
    StatusRequest,
    CancelRequest,
    CollectRequest,
    SweepRequest,
    CheckUserRequest,
    ReadOutputRequest,
)
