"""Submits the job to Slurm through the head node (state SubmitJob)."""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from slurm_job_api.observability import logger, metrics, tracer
from slurm_job_api.workflow import workflow_for
from slurm_job_api.workflow_events import SubmitJobEvent


@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path="jobId")
@metrics.log_metrics
@event_parser(model=SubmitJobEvent)
def lambda_handler(event: SubmitJobEvent, context: LambdaContext) -> dict:
    return workflow_for(lambda: context.get_remaining_time_in_millis() / 1000).submit(event)
