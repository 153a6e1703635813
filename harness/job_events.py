"""A subscriber of the product's "Slurm Job State Change" events, as an integration would be one: an EventBridge rule
on the stack's bus with an SQS queue as its target (moto delivers rules to SQS itself)."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict

from local_stack.cloud import LocalCloud
from slurm_job_api.job_events import SOURCE
from slurm_job_api.push_hook import DETAIL_TYPE
from slurm_job_api.statuses import TERMINAL_STATUSES

PATTERN = {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}


class JobEventSubscriber:
    """Every event of the product on the cloud's bus from the moment it is made, by job id (in arrival order)."""

    def __init__(self, cloud: LocalCloud, pattern: dict | None = None) -> None:
        self._sqs = cloud.client("sqs")
        (self.bus_name,) = cloud.model.event_buses.values()
        name = f"job-events-{uuid.uuid4().hex[:12]}"
        self._queue_url = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events = cloud.client("events")
        events.put_rule(Name=name, EventBusName=self.bus_name, EventPattern=json.dumps(pattern or PATTERN))
        events.put_targets(Rule=name, EventBusName=self.bus_name, Targets=[{"Id": "queue", "Arn": queue_arn}])
        self._events: dict[str, list[dict]] = defaultdict(list)

    def _receive(self) -> int:
        messages = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            event = json.loads(message["Body"])
            self._events[event["detail"]["jobId"]].append(event)
            self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def events_for(self, job_id: str) -> list[dict]:
        """The job's events received so far."""
        while self._receive():
            pass
        return list(self._events[job_id])

    def until_ended(self, job_ids: list[str], timeout: float = 60) -> dict[str, list[dict]]:
        """Each job's events, once each has its end event (the one with a terminal status), or after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            received = {job_id: self.events_for(job_id) for job_id in job_ids}
            ended = all(any(e["detail"]["status"] in TERMINAL_STATUSES for e in events) for events in received.values())
            if ended or time.monotonic() > deadline:
                return received
            time.sleep(0.2)

    def settle(self, seconds: float = 2.0) -> None:
        """Waits `seconds` more for late events (a duplicate would arrive in that time)."""
        time.sleep(seconds)
        while self._receive():
            pass


def statuses(events: list[dict]) -> list[str]:
    """The statuses of a job's events, in the order of the changes (updatedAt; arrival order is not guaranteed)."""
    ordered = sorted(events, key=lambda event: (event["detail"]["updatedAt"] or "", event["detail"]["createdAt"]))
    return [event["detail"]["status"] for event in ordered]
