"""The stack's event bus: where the product publishes a "Slurm Job State Change" for each change of a job's status,
made from the jobs table's stream records (slurm_job_api.job_events says which writes make one)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from slurm_job_api.job_events import JobStateChange, state_change
from slurm_job_api.job_record import JobRecord
from slurm_job_api.job_store import plain


class EventNotPublished(Exception):
    """EventBridge did not take the event (PutEvents answered with a failed entry); the stream record is retried."""


def _job_record(image: dict[str, Any] | None) -> JobRecord | None:
    """A stream image as a job record; None for no image (a new item, a removed one) or an item that is not a job's
    (an Idempotency-Key's claim has no status)."""
    if not image or "status" not in image:
        return None
    return JobRecord.model_validate(plain(image))


class JobEventBus:
    def __init__(self, events: Any, bus_name: str, cluster_name: str) -> None:
        self._events = events
        self._bus_name = bus_name
        self._cluster_name = cluster_name

    def publish_change(self, record: DynamoDBRecord) -> JobStateChange | None:
        """Publishes the event the stream record's write makes, if it makes one; returns it."""
        new = _job_record(record.dynamodb.new_image if record.dynamodb else None)
        if new is None:
            return None  # a record expired (its TTL) or was removed, or a claim was written
        old = _job_record(record.dynamodb.old_image)
        change = state_change(old, new, change_id=str(record.event_id), cluster_name=self._cluster_name)
        if change is None:
            return None
        response = self._events.put_events(Entries=[change.entry(self._bus_name)])
        if response.get("FailedEntryCount"):
            failed = response["Entries"][0]
            raise EventNotPublished(f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")
        return change
