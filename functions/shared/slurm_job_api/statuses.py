"""The job statuses, the one table from Slurm job states to them, and the Slurm reasons that explain an ending.

They are declared once, in the head-node program: it must stay one standard-library file shipped to the head node,
and it reports statuses in its replies. Every Lambda-side module imports them from here.
"""

from __future__ import annotations

from typing import Literal

from slurm_job_api.head_node_program import (
    ACTIVE_STATUSES,
    ALL_STATUSES,
    BOOT_FAIL,
    CANCELLED,
    COMPLETED,
    DEADLINE,
    DEPENDENCY_NEVER_SATISFIED,
    ENDING_REASONS,
    ERROR,
    FAILED,
    NODE_FAIL,
    OUT_OF_MEMORY,
    PENDING,
    PREEMPTED,
    RUNNING,
    SLURM_STATE_TO_STATUS,
    SUBMIT_FAILED,
    SUBMITTING,
    SUSPENDED,
    TERMINAL_STATUSES,
    TIMEOUT,
    UNKNOWN,
)

Status = Literal[tuple(sorted(ALL_STATUSES))]  # type: ignore[valid-type]

__all__ = [
    "ACTIVE_STATUSES",
    "ALL_STATUSES",
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "DEPENDENCY_NEVER_SATISFIED",
    "ENDING_REASONS",
    "ERROR",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PENDING",
    "PREEMPTED",
    "RUNNING",
    "SLURM_STATE_TO_STATUS",
    "SUBMITTING",
    "SUBMIT_FAILED",
    "SUSPENDED",
    "TERMINAL_STATUSES",
    "TIMEOUT",
    "UNKNOWN",
    "Status",
]
