"""The two real Slurm clusters the fault scenarios run on, and the local stacks over them.

Each cluster has its own state directory and ports (see README "The local stack"), so the fault tests can run beside
the other real-Slurm tests. Only one process may use a cluster at a time: the tests give each cluster to one test
module, and ``make reliability-report`` must not run while those tests do.

A scenario builds its own :class:`~local_stack.stack.LocalStack` (a fresh local cloud: its own interceptors, fault
switches and counters) over the cluster. :func:`cluster_kept_running` keeps the cluster up between scenarios, so that
a scenario's stack finds it running and leaves it running; a scenario that needs another MinJobAge reconfigures it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from local_stack.slurm_cluster import SlurmCluster, local_state_root
from local_stack.ssm_head_node import LocalHeadNode
from local_stack.stack import LOCAL_SCHEDULE_PERIOD_SECONDS, LocalStack


@dataclass(frozen=True)
class ClusterPlace:
    """Where a cluster lives: its state directory name under the local state root, and its first port."""

    name: str
    port_base: int
    accounting: bool
    push_hook: bool = False  # slurmctld runs the product's push hook (LocalStack(push_hook=True))


ACCOUNTING_CLUSTER = ClusterPlace(name="faults-slurm", port_base=8817, accounting=True)
NO_ACCOUNTING_CLUSTER = ClusterPlace(name="faults-noacct", port_base=9817, accounting=False)
# The accounting cluster forgets finished jobs after 5 s, so that "read back from accounting" happens within a test.
ACCOUNTING_MIN_JOB_AGE = 5
# Without accounting: short enough that a late poll meets a forgotten job within a test, long enough that the capped
# wait (MinJobAge // 2) is several seconds.
SHORT_MIN_JOB_AGE = 10
# Slurm's default: jobs that end while the head node is unreachable are still known to slurmctld afterwards.
DEFAULT_MIN_JOB_AGE = 300
# Version 1's tracking (each workflow polls its own job), every second at first, so that short jobs end in seconds;
# the rest of the schedule is the template's. The scenarios were written for it; the ones that run under the sweep
# say so with SWEEP_TRACKING.
FAST_POLLING: Mapping[str, str] = {"JobTracking": "per-job-polling", "PollMinSeconds": "1"}
# JobTracking sweep (the default): the local stack sweeps every LOCAL_SCHEDULE_PERIOD_SECONDS; a wait no sweep keeps
# alive ends with a safety poll after 10 s (the template's default is 150 s).
SWEEP_SAFETY_POLL_SECONDS = 10
SWEEP_TRACKING: Mapping[str, str] = {"JobTracking": "sweep", "SafetyPollMinSeconds": str(SWEEP_SAFETY_POLL_SECONDS)}


def local_stack(
    place: ClusterPlace,
    *,
    min_job_age: int,
    parameters: Mapping[str, str] | None = None,
    schedule_period_seconds: float = LOCAL_SCHEDULE_PERIOD_SECONDS,
) -> LocalStack:
    """A local stack over the cluster at ``place`` (start it with ``with``); ``schedule_period_seconds``: how often
    the sweep's schedule fires."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    return LocalStack(
        name=place.name,
        port_base=place.port_base,
        accounting=place.accounting,
        min_job_age=min_job_age,
        parameters={**FAST_POLLING, **(parameters or {})},
        schedule_period_seconds=schedule_period_seconds,
        push_hook=place.push_hook,
    )


def head_node(stack: LocalStack) -> LocalHeadNode:
    node = stack.running_cloud.head_node
    if node is None:
        raise RuntimeError("the local stack has no head node")
    return node


@contextmanager
def cluster_kept_running(place: ClusterPlace, *, min_job_age: int) -> Iterator[SlurmCluster]:
    """Starts the cluster at ``place`` and stops it at the end, whatever the scenarios in between do."""
    cluster = SlurmCluster(
        local_state_root() / place.name,
        accounting=place.accounting,
        min_job_age=min_job_age,
        port_base=place.port_base,
        push_hook=place.push_hook,
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
