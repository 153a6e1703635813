"""Keeps the waiting workflow's task token in the job's record for the cluster's sweep (state AwaitNews)."""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from slurm_job_api.observability import logger, metrics, tracer
from slurm_job_api.workflow import workflow_for
from slurm_job_api.workflow_events import AwaitNewsEvent


@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path="jobId")
@metrics.log_metrics
@event_parser(model=AwaitNewsEvent)
def lambda_handler(event: AwaitNewsEvent, context: LambdaContext) -> None:
    workflow_for(lambda: context.get_remaining_time_in_millis() / 1000).await_news(event)
