"""Sweeps the cluster: one head-node command reports every active job; waiting workflows are woken or kept waiting
(on the SweepJobs schedule)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from slurm_job_api.cluster_sweep import cluster_sweep_for
from slurm_job_api.observability import logger, metrics, tracer


@tracer.capture_lambda_handler
@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # The event (a schedule's, or an EventBridge event) only says "now": what to sweep comes from the jobs table.
    return cluster_sweep_for(lambda: context.get_remaining_time_in_millis() / 1000).run().to_dict()
