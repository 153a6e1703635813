"""How a job ended, in words and in result.json (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from slurm_job_api.job_record import JobRecord
from slurm_job_api.progress import JobProgress, parse_time
from slurm_job_api.spec import JobSpec
from slurm_job_api.statuses import (
    BOOT_FAIL,
    CANCELLED,
    COMPLETED,
    DEADLINE,
    DEPENDENCY_NEVER_SATISFIED,
    ERROR,
    FAILED,
    NEVER_START_REASONS,
    NODE_FAIL,
    OUT_OF_MEMORY,
    PREEMPTED,
    SUBMIT_FAILED,
    TIMEOUT,
    UNKNOWN,
    reason_code,
)

RESULT_FORMAT_VERSION = 1

_ENDINGS = {
    COMPLETED: "completed",
    CANCELLED: "was cancelled",
    TIMEOUT: "reached its time limit",
    OUT_OF_MEMORY: "ran out of memory",
    NODE_FAIL: "ended because a node it ran on failed",
    PREEMPTED: "was preempted",
    BOOT_FAIL: "ended because its nodes failed to boot",
    DEADLINE: "missed its deadline",
    UNKNOWN: "ended in a way that cannot be told",
}
# Why Slurm itself cancelled a job, by its reason.
_CANCELLED_BY_SLURM = {
    DEPENDENCY_NEVER_SATISFIED: "a job it depends on ended in a way that can never satisfy its dependency",
}


def error_details(error: Mapping[str, Any] | None) -> dict[str, str] | None:
    """{"code", "message"} from a Catch result ({"Error": name, "Cause": Lambda error JSON or text})."""
    if not error:
        return None
    code = str(error.get("Error") or "Error")
    cause = error.get("Cause") or ""
    message = cause
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        message = parsed["errorMessage"]
    return {"code": code, "message": str(message)[:4000]}


def _subject(progress: JobProgress | None) -> str:
    if progress and progress.slurm_job_id:
        return f"Slurm job {progress.slurm_job_id}"
    return "The job"


def _unsatisfiable_cause(progress: JobProgress, subject: str) -> str:
    reason = progress.never_start_reason or ""
    meaning = NEVER_START_REASONS.get(reason_code(reason) or "", "")
    since, until = parse_time(progress.never_start_since), parse_time(progress.ended_as_unsatisfiable_at)
    minutes = int((until - since).total_seconds() // 60) if since and until else 0
    return (
        f"{subject} was cancelled by the product: the cluster cannot ever run this request as it is configured. "
        f"Slurm kept it pending for {minutes} minutes with reason {reason}: {meaning}"
    )


def final_status(progress: JobProgress | None, error: Mapping[str, Any] | None) -> tuple[str, str]:
    """(status, cause) of a finished workflow: from the job's own end, or from the error that stopped it."""
    details = error_details(error)
    if details is None and progress is not None and progress.done:
        status = progress.status
        subject = _subject(progress)
        if status == FAILED:
            if progress.signal:
                return status, f"{subject} failed: killed by signal {progress.signal}"
            return status, f"{subject} failed with exit code {progress.exit_code}"
        if status == COMPLETED:
            return status, f"{subject} completed with exit code {progress.exit_code or 0}"
        if status == UNKNOWN and progress.reason:
            return status, progress.reason
        if status == CANCELLED and progress.ended_as_unsatisfiable_at:
            return status, _unsatisfiable_cause(progress, subject)
        if status == CANCELLED and progress.reason in _CANCELLED_BY_SLURM:
            why = _CANCELLED_BY_SLURM[progress.reason]
            return status, f"{subject} was cancelled by Slurm: {why} ({progress.reason})"
        ending = _ENDINGS.get(status, f"ended {status}")
        reason = f" ({progress.reason})" if status == CANCELLED and progress.reason else ""
        return status, f"{subject} {ending}{reason}"
    if details is None:
        details = {"code": "WorkflowError", "message": "the workflow ended before the job did"}
    if progress is None or not progress.slurm_job_id:
        return SUBMIT_FAILED, f"The job could not be submitted: {details['code']}: {details['message']}"
    return ERROR, (
        f"Lost track of Slurm job {progress.slurm_job_id} ({details['code']}: {details['message']}); "
        "the job may still be running on the cluster"
    )


def result_document(
    *,
    record: JobRecord,
    spec: JobSpec,
    progress: JobProgress | None,
    status: str,
    cause: str,
    error: Mapping[str, Any] | None,
    files: list[dict],
    collection: dict,
    execution_arn: str,
    finished_at: str,
) -> dict:
    """The content of result.json: the record's identity, the whole accepted spec (the record keeps a summary), the
    job's state as the workflow last knew it."""
    known = progress or JobProgress(job_id=record.job_id)
    return {
        "formatVersion": RESULT_FORMAT_VERSION,
        "jobId": record.job_id,
        "name": record.name,
        **known.state_fields(),
        "status": status,
        "cause": cause,
        "createdAt": record.created_at,
        "finishedAt": finished_at,
        "executionArn": execution_arn,
        "spec": spec.to_json_dict(),
        "files": files,
        "collection": collection,
        "error": error_details(error),
    }
