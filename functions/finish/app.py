"""Collects the job's files to S3 and records how it ended (state FinishJob)."""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from slurm_job_api.observability import logger, metrics, tracer
from slurm_job_api.workflow import workflow_for
from slurm_job_api.workflow_events import FinishJobEvent


@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path="state.jobId")
@metrics.log_metrics
@event_parser(model=FinishJobEvent)
def lambda_handler(event: FinishJobEvent, context: LambdaContext) -> dict:
    return workflow_for(lambda: context.get_remaining_time_in_millis() / 1000).finish(event)
