"""Publishes a "Slurm Job State Change" on the stack's bus for each change of a job's status, from the jobs table's
stream (slurm_job_api.job_events). A record that fails is reported, and Lambda retries from it."""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from slurm_job_api.observability import MetricUnit, logger, metrics, tracer
from slurm_job_api.services import job_event_bus

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def publish_change(record: DynamoDBRecord) -> None:
    change = job_event_bus().publish_change(record)
    if change is not None:
        logger.info("job state change published", jobId=change.job_id, status=change.status)
        metrics.add_metric(name="JobEventsPublished", unit=MetricUnit.Count, value=1)


@tracer.capture_lambda_handler
@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=publish_change, processor=processor, context=context)
