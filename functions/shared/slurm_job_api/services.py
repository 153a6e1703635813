"""The AWS-backed collaborators of the handlers, built once per Lambda container from the settings."""

from __future__ import annotations

from functools import cache

from slurm_job_api import aws_clients
from slurm_job_api.caller_mapping_store import CallerMappingStore
from slurm_job_api.event_bus import JobEventBus
from slurm_job_api.head_node import HeadNode
from slurm_job_api.job_store import JobStore
from slurm_job_api.results import ResultsBucket
from slurm_job_api.settings import settings


@cache
def job_store() -> JobStore:
    return JobStore(aws_clients.resource("dynamodb").Table(settings().jobs_table_name))


@cache
def results_bucket() -> ResultsBucket:
    return ResultsBucket(aws_clients.s3_client(), settings().results_bucket_name)


@cache
def head_node() -> HeadNode:
    config = settings()
    return HeadNode(
        cluster_name=config.cluster_name,
        cluster_user=config.cluster_user,
        slurm_bin_dir=config.slurm_bin_dir,
        ssm=aws_clients.client("ssm"),
        ec2=aws_clients.client("ec2"),
    )


@cache
def caller_mappings() -> CallerMappingStore | None:
    """The caller mappings (None in the single-tenant mode: every caller runs as ClusterUser)."""
    config = settings()
    if not config.maps_callers:
        return None
    if not config.caller_mappings_table_name:
        raise RuntimeError("CALLER_MAPPINGS_TABLE_NAME is not set: the template gives it to every function")
    return CallerMappingStore(aws_clients.resource("dynamodb").Table(config.caller_mappings_table_name))


@cache
def job_event_bus() -> JobEventBus:
    config = settings()
    if not config.job_events_bus_name:
        raise RuntimeError("JOB_EVENTS_BUS_NAME is not set: the template gives it to every function")
    return JobEventBus(aws_clients.client("events"), config.job_events_bus_name, config.cluster_name)
