"""Sweeps the cluster: one head-node command reports every active job; waiting workflows are woken or kept waiting
(on the SweepJobs schedule, at once when the head node's push hook says a job ended, and soon when it says one started:
slurm_job_api.sweep_trigger)."""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools.utilities.typing import LambdaContext

from slurm_job_api.clock import utc_now
from slurm_job_api.cluster_sweep import cluster_sweep_for
from slurm_job_api.observability import MetricUnit, logger, metrics, tracer
from slurm_job_api.sweep_trigger import SweepTimes, head_node_push, sweep_needed

# When this environment's last finished sweep began, and what it has seen of the schedule's ticks. Reserved
# concurrency 1 keeps one environment at a time, so these are the cluster's sweeps (a new environment sweeps at once).
sweep_times = SweepTimes()
# When this environment last kept each waiting workflow alive (by task token): a sweep skips the heartbeats that are
# not due yet (slurm_job_api.sweep_news.heartbeat_due).
heartbeats_sent: dict[str, datetime] = {}
# The wakes this environment delivered, while their records are still listed (ClusterSweep.tokens_woken).
tokens_woken: set[str] = set()


@tracer.capture_lambda_handler
@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # What to sweep comes from the jobs table; the event (a schedule's or a push) only says when.
    push = head_node_push(event)
    trigger = "push" if push else "schedule"
    started = utc_now()
    if push is None:
        sweep_times.ticked(started)
    if not sweep_needed(push, sweep_times, started):
        metrics.add_metric(name="SweepsCoalesced", unit=MetricUnit.Count, value=1)
        return {"coalesced": True, "trigger": trigger}
    summary = cluster_sweep_for(
        lambda: context.get_remaining_time_in_millis() / 1000, heartbeats_sent, tokens_woken
    ).run()
    sweep_times.last_sweep_started = started
    return {**summary.to_dict(), "trigger": trigger}
