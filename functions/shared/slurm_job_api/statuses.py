"""The job statuses, the one table from Slurm job states to them, and the Slurm reasons that explain an ending.

They are declared once, in the head-node program: it must stay one standard-library file shipped to the head node,
and it reports statuses in its replies. Every Lambda-side module imports them from here. The table of pending
reasons that mean "never" (NEVER_START_REASONS) is used by the workflow only, and is declared here.
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

# Pending reasons that say a job cannot start under the cluster's configuration as it is — only an operator's change
# (a bigger partition, a longer MaxTime, an account, QOS or limit changed) would let it run — with what each means.
# Names as squeue's %r and scontrol's Reason= print them: "JOB REASON CODES" in squeue(1),
# https://slurm.schedmd.com/job_reason_codes.html and https://slurm.schedmd.com/resource_limits.html.
# Every other reason means "not yet" and the job keeps waiting: Resources, Priority, Dependency, BeginTime,
# ReqNodeNotAvail, NodeDown, PartitionDown, PartitionInactive, JobHeldUser, JobHeldAdmin, Licenses, Reservation,
# the aggregate Grp*/MaxJobs* limits (they clear when other jobs end), WaitingForScheduling, ...
# On an elastic cluster these are still "never": ParallelCluster lists every node a queue can grow to in slurm.conf
# (dynamic nodes powered down, State=CLOUD), and Slurm counts them, so a job that only waits for nodes to be launched
# pends with Resources (or ReqNodeNotAvail, or is CONFIGURING), not with a reason below. The workflow still ends a job
# only after it showed one of them for UnsatisfiableGraceMinutes, to outlast a reconfiguration (pcluster update-cluster
# and `scontrol reconfigure`) or the replacement of a DOWN node (PartitionNodeLimit can also mean that).
NEVER_START_REASONS: dict[str, str] = {
    "PartitionConfig": "the partition cannot hold the request (more nodes, CPUs or memory than it has)",
    "PartitionNodeLimit": "the node count is outside the partition's limits",
    "PartitionTimeLimit": "the time limit exceeds the partition's MaxTime",
    "BadConstraints": "the job's constraints can never be satisfied",
    "InvalidAccount": "the job's account is invalid",
    "InvalidQOS": "the job's QOS is invalid",
    "AccountNotAllowed": "the job's account may not use the partition",
    "QOSNotAllowed": "the job's QOS may not be used in the partition",
    "MaxMemPerLimit": "the memory requested exceeds the partition's MaxMemPerCPU or MaxMemPerNode",
    "QOSMaxCpuPerJobLimit": "the job asks for more CPUs than its QOS allows a job",
    "QOSMaxNodePerJobLimit": "the job asks for more nodes than its QOS allows a job",
    "QOSMaxWallDurationPerJobLimit": "the time limit exceeds what its QOS allows a job",
    "AssocMaxCpuPerJobLimit": "the job asks for more CPUs than its association allows a job",
    "AssocMaxNodePerJobLimit": "the job asks for more nodes than its association allows a job",
    "AssocMaxWallDurationPerJobLimit": "the time limit exceeds what its association allows a job",
}


def reason_code(reason: str | None) -> str | None:
    """The reason's code: squeue prints some with details ("ReqNodeNotAvail, UnavailableNodes:node1")."""
    return reason.split(",", 1)[0].strip() if reason else None


def never_starts(reason: str | None) -> bool:
    """True if a job pending for this reason cannot start under the cluster's configuration."""
    return reason_code(reason) in NEVER_START_REASONS


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
    "NEVER_START_REASONS",
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
    "never_starts",
    "reason_code",
]
