"""Job records as POST /jobs creates them (the example caller, spec and times the unit tests share), and as later
steps change them."""

from __future__ import annotations

from typing import Any

from slurm_job_api.job_record import JobRecord
from slurm_job_api.spec import JobSpec

EXAMPLE_SPEC = {"script": "#!/bin/bash\n", "name": "n"}


def accepted_record(
    job_id: str, *, spec: dict[str, Any] | None = None, cluster_name: str = "test-cluster"
) -> JobRecord:
    """The record of a job just accepted: alice's (running as the cluster user alice), created
    2026-11-25T12:00:00Z, its execution named after it."""
    return JobRecord.new(
        job_id=job_id,
        submission_id="ab" * 16,
        owner="arn:aws:iam::123456789012:user/alice",
        spec=JobSpec.model_validate(spec if spec is not None else EXAMPLE_SPEC),
        created_at="2026-11-25T12:00:00.000Z",
        request_hash="h",
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:" + job_id,
        retention_days=30,
        cluster_name=cluster_name,
        cluster_user="alice",
    )


def changed_record(record: JobRecord, **fields: Any) -> JobRecord:
    """`record` as later steps changed it (`fields` by attribute name)."""
    return JobRecord.model_validate(record.item() | JobRecord.stored(**fields))
