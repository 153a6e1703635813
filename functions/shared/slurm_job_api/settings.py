"""Configuration of the functions, read from the environment that template.yaml gives them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from slurm_job_api.poll_schedule import PollSchedule


@dataclass(frozen=True)
class Settings:
    jobs_table_name: str
    results_bucket_name: str
    cluster_name: str
    cluster_user: str
    slurm_bin_dir: str
    poll_schedule: PollSchedule
    max_polls_per_execution: int
    never_start_grace_seconds: int
    result_retention_days: int
    state_machine_arn: str | None
    job_tracking: str = "sweep"  # JobTracking: "sweep" (wait for news, safety poll) or "per-job-polling"
    safety_poll_min_seconds: int = 150
    job_events_bus_name: str | None = None  # the stack's bus for "Slurm Job State Change" events
    head_node_outage_limit_seconds: float = 24 * 3600  # HeadNodeOutageLimitHours
    caller_mapping: str = "single-tenant"  # CallerMapping: "table" (CallerMappingsTable) or "single-tenant"
    caller_mappings_table_name: str | None = None

    @property
    def maps_callers(self) -> bool:
        return self.caller_mapping == "table"

    @property
    def waits_for_news(self) -> bool:
        return self.job_tracking == "sweep"

    @property
    def safety_floor_seconds(self) -> int | None:
        """The shortest safety poll of a workflow waiting for news (None: per-job polling)."""
        return self.safety_poll_min_seconds if self.waits_for_news else None

    @classmethod
    def from_environment(cls, environ: os._Environ[str] | dict[str, str] = os.environ) -> Settings:
        return cls(
            jobs_table_name=environ["JOBS_TABLE_NAME"],
            results_bucket_name=environ["RESULTS_BUCKET_NAME"],
            cluster_name=environ["CLUSTER_NAME"],
            cluster_user=environ["CLUSTER_USER"],
            slurm_bin_dir=environ["SLURM_BIN_DIR"],
            poll_schedule=PollSchedule(
                min_seconds=int(environ["POLL_MIN_SECONDS"]),
                max_seconds=int(environ["POLL_MAX_SECONDS"]),
                fraction=float(environ["POLL_FRACTION"]),
            ),
            max_polls_per_execution=int(environ["MAX_POLLS_PER_EXECUTION"]),
            never_start_grace_seconds=60 * int(environ["UNSATISFIABLE_GRACE_MINUTES"]),
            result_retention_days=int(environ["RESULT_RETENTION_DAYS"]),
            state_machine_arn=environ.get("STATE_MACHINE_ARN"),
            job_tracking=environ["JOB_TRACKING"],
            safety_poll_min_seconds=int(environ["SAFETY_POLL_MIN_SECONDS"]),
            job_events_bus_name=environ["JOB_EVENTS_BUS_NAME"],
            head_node_outage_limit_seconds=3600 * float(environ["HEAD_NODE_OUTAGE_LIMIT_HOURS"]),
            caller_mapping=environ["CALLER_MAPPING"],
            caller_mappings_table_name=environ["CALLER_MAPPINGS_TABLE_NAME"],
        )


@cache
def settings() -> Settings:
    """The settings of this Lambda environment (read once per container)."""
    return Settings.from_environment()
