"""Asks Slurm how the job is doing; cancels it first if a cancel was requested (state PollJob)."""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from slurm_job_api.observability import logger, metrics, tracer
from slurm_job_api.workflow import workflow_for
from slurm_job_api.workflow_events import PollJobEvent


@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path="jobId")
@metrics.log_metrics
@event_parser(model=PollJobEvent)
def lambda_handler(event: PollJobEvent, context: LambdaContext) -> dict:
    return workflow_for(lambda: context.get_remaining_time_in_millis() / 1000).poll(event)
