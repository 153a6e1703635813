"""What starts a sweep, and whether a push from the head node still needs one (pure: no AWS import).

The SweepJobs function runs on its schedule and on every "Slurm Job State Change" the head node's push hook
publishes (functions/shared/slurm_job_api/push_hook.py: one event for the changes of one or more jobs). A push says
only that something happened to those jobs by ``pushedAt``; a sweep that started after that moment has seen it
already, so the push is answered without another head-node command. A burst of job ends (an array finishing) then
costs a few pushes and sweeps, not one per job. The head node's
clock and Lambda's may differ a little: a sweep counts only when it started PUSH_CLOCK_MARGIN after the push (a skew
larger than that costs one more sweep, never a missed end; and the scheduled sweep comes anyway).

A job's start is news for its record (RUNNING), not for its workflow, which waits for the end: a push that a job
started sweeps only when no sweep has started for START_PUSH_SPACING, so a burst of starts (hundreds of jobs
submitted at once) costs at most one sweep per START_PUSH_SPACING besides the schedule's, and a start is seen within
START_PUSH_SPACING or at the next scheduled sweep. A push that a job ended always sweeps unless coalesced: the end is
what callers and the workflow wait for.

A schedule's tick is answered by a sweep begun less than half the schedule's period before it (a push's sweep that
came just before the tick has seen all of it). The period is the shortest time this environment has seen between
two ticks (a manual invocation between ticks can only shorten it, so the error is a sweep too many, never one too
few); sweeps then stay at most one and a half periods apart, within the heartbeat's margin (sweep_news).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

HEAD_NODE_SOURCE = "slurm-job-api.head-node"  # push_hook.EVENT_SOURCE; the template's rule matches it
JOB_STATE_CHANGE = "Slurm Job State Change"
PUSH_CLOCK_MARGIN = timedelta(seconds=1)
START_PUSH_SPACING = timedelta(seconds=10)
TICK_SKIP_SHARE = 0.5  # of the schedule's period


class PushedJob(BaseModel):
    """One job's change among those of a push."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    slurm_job_id: str = Field(alias="slurmJobId")
    state: Literal["STARTING", "ENDED"]


class PushDetail(BaseModel):
    """A push: the changes the head node's sender had at hand, its state the most urgent of theirs (ENDED before
    STARTING) and its time the latest."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    cluster_name: str = Field(alias="clusterName")
    state: Literal["STARTING", "ENDED"]
    pushed_at: datetime = Field(alias="pushedAt")
    jobs: list[PushedJob] = Field(default_factory=list, max_length=1000)

    @property
    def slurm_job_ids(self) -> list[str]:
        return [job.slurm_job_id for job in self.jobs]


class HeadNodePush(BaseModel):
    """The EventBridge event of the push hook, as the rule delivers it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    source: Literal["slurm-job-api.head-node"]
    detail_type: Literal["Slurm Job State Change"] = Field(alias="detail-type")
    detail: PushDetail


def head_node_push(event: Any) -> HeadNodePush | None:
    """The push this event is, or None (a schedule's event, or anything else: those always sweep)."""
    if not isinstance(event, dict) or event.get("source") != HEAD_NODE_SOURCE:
        return None
    try:
        return HeadNodePush.model_validate(event)
    except ValidationError:
        return None


@dataclass
class SweepTimes:
    """What one SweepJobs environment knows of when sweeps run (reserved concurrency 1: the cluster's sweeps)."""

    last_sweep_started: datetime | None = None  # of the last sweep that finished
    last_tick: datetime | None = None
    tick_period: timedelta | None = None  # the shortest time seen between two ticks of the schedule

    def ticked(self, now: datetime) -> None:
        """A schedule's tick (or another event that is not a push) arrived at `now`."""
        if self.last_tick is not None and now > self.last_tick:
            seen = now - self.last_tick
            self.tick_period = seen if self.tick_period is None else min(self.tick_period, seen)
        self.last_tick = now


def sweep_needed(push: HeadNodePush | None, times: SweepTimes, now: datetime) -> bool:
    """False for a tick less than half a period after the last sweep began, for a push that a finished sweep, begun
    after it (with the margin), has already answered, and for a push of a start less than START_PUSH_SPACING after
    the last sweep began; True for anything else."""
    last = times.last_sweep_started
    if last is None:
        return True
    if push is None:
        return times.tick_period is None or now - last >= times.tick_period * TICK_SKIP_SHARE
    if last >= push.detail.pushed_at + PUSH_CLOCK_MARGIN:
        return False
    return push.detail.state == "ENDED" or now - last >= START_PUSH_SPACING
