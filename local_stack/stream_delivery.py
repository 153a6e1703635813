"""DynamoDB stream event source mappings, run on this machine.

moto records a table's stream (DescribeStream, GetShardIterator, GetRecords of its DynamoDB Streams API) but runs an
event source mapping only if it is created through moto's Lambda API, and then invokes the function inside the
table's write, synchronously, with every record the shard holds. :class:`LocalStreamDelivery` does instead what
Lambda's event source mapping does for each ``DynamoDB`` event of the template ("Using AWS Lambda with Amazon
DynamoDB", https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html, and "Configuring partial batch response",
https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html):

- it polls the stream's shard through the DynamoDB Streams API (four times a second, as Lambda does), from
  TRIM_HORIZON or LATEST, and drops the records that no pattern of the event's FilterCriteria matches;
- it invokes the function synchronously with a batch of at most BatchSize records, one batch at a time, in the
  stream's order, with the records as Lambda sends them (``eventSourceARN`` added);
- a function error fails the whole batch; with ReportBatchItemFailures an answer ``{"batchItemFailures":
  [{"itemIdentifier": <sequence number>}]}`` fails the batch from the lowest sequence number it names (an identifier
  that is not in the batch fails all of it);
- a failed batch is retried: from the failed record with ReportBatchItemFailures, split in halves that are retried on
  their own with BisectBatchOnFunctionError, up to MaximumRetryAttempts (-1: for ever); then it is discarded and the
  shard goes on, as Lambda does once the retries are spent.

Every invocation is recorded (:attr:`LocalStreamDelivery.batches`) for tests.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from moto.events.models import EventPattern

from local_stack.template_model import StreamSourceSpec

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
RETRY_PAUSE_SECONDS = 0.5
Invoke = Callable[[str, Any], tuple[str | None, Any]]
"""``invoke(function_logical_id, event)``: runs the function; returns (its error type or None, its answer)."""


@dataclass(frozen=True)
class StreamBatch:
    """One invocation of a stream's function: the sequence numbers it carried and how it ended."""

    function_logical_id: str
    sequence_numbers: tuple[str, ...]
    error: str | None  # the function's error type, or "BatchItemFailures" for a partial failure
    failed_from: str | None  # the first sequence number that failed (None: the batch was delivered)
    discarded: bool = False  # the retries are spent: the shard went on without these records


def _lambda_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A GetRecords record as Lambda hands it to the function (timestamps as epoch seconds, the stream's ARN)."""
    dynamodb = dict(record["dynamodb"])
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = created.timestamp()
    return {**record, "awsRegion": region, "dynamodb": dynamodb, "eventSourceARN": stream_arn}


def _failed_from(answer: Any, batch: Sequence[Mapping[str, Any]]) -> int | None:
    """The index of the first record a partial batch response fails (None: none failed; 0: an answer that is not a
    valid response fails the whole batch)."""
    if not isinstance(answer, Mapping) or not answer.get("batchItemFailures"):
        return None
    numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
    indexes = []
    for failure in answer["batchItemFailures"]:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if identifier not in numbers:
            return 0
        indexes.append(numbers.index(identifier))
    return min(indexes)


class _Mapping:
    """One DynamoDB event of a function: its stream, its filters and its place in the shard."""

    def __init__(self, source: StreamSourceSpec, stream_arn: str) -> None:
        self.source = source
        self.stream_arn = stream_arn
        self.patterns = [EventPattern.load(json.dumps(pattern)) for pattern in source.filter_patterns]

    def wanted(self, record: Mapping[str, Any]) -> bool:
        return not self.patterns or any(pattern.matches_event(record) for pattern in self.patterns)


class LocalStreamDelivery:
    """Runs the template's DynamoDB stream event sources against moto's streams, one thread per source."""

    def __init__(
        self,
        sources: Sequence[tuple[StreamSourceSpec, str]],
        streams_client: Callable[[], Any],
        invoke: Invoke,
        *,
        region: str,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        """``sources``: each event source with its stream's ARN; ``streams_client()``: a dynamodbstreams client."""
        self._mappings = [_Mapping(source, stream_arn) for source, stream_arn in sources]
        self._streams_client = streams_client
        self._invoke = invoke
        self._region = region
        self._poll_seconds = poll_seconds
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._batches: list[StreamBatch] = []

    def start(self) -> None:
        for mapping in self._mappings:
            iterator = self._first_iterator(mapping)  # before start() returns: no write after it is missed
            thread = threading.Thread(
                target=self._poll,
                args=(mapping, iterator),
                name=f"stream-{mapping.source.function_logical_id}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stops polling; a batch in flight finishes (up to ``timeout``)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    @property
    def batches(self) -> tuple[StreamBatch, ...]:
        """The invocations made so far, in order."""
        with self._lock:
            return tuple(self._batches)

    def _first_iterator(self, mapping: _Mapping) -> str:
        streams = self._streams_client()
        shard = streams.describe_stream(StreamArn=mapping.stream_arn)["StreamDescription"]["Shards"][0]
        return streams.get_shard_iterator(
            StreamArn=mapping.stream_arn,
            ShardId=shard["ShardId"],
            ShardIteratorType=mapping.source.starting_position,
        )["ShardIterator"]

    def _poll(self, mapping: _Mapping, iterator: str) -> None:
        streams = self._streams_client()
        while not self._stopping.is_set():
            try:
                page = streams.get_records(ShardIterator=iterator, Limit=1000)
            except Exception:
                logger.debug("GetRecords failed for %s", mapping.stream_arn, exc_info=True)
                self._stopping.wait(self._poll_seconds)
                continue
            iterator = page["NextShardIterator"]
            records = [_lambda_record(record, mapping.stream_arn, self._region) for record in page["Records"]]
            records = [record for record in records if mapping.wanted(record)]
            size = mapping.source.batch_size
            for start in range(0, len(records), size):
                self._deliver(mapping, records[start : start + size], mapping.source.maximum_retry_attempts)
            if not page["Records"]:
                self._stopping.wait(self._poll_seconds)

    def _deliver(self, mapping: _Mapping, batch: list[dict[str, Any]], retries_left: int) -> None:
        """Invokes the function with `batch` until it is delivered or its retries are spent."""
        source = mapping.source
        while batch:
            error, answer = self._invoke(source.function_logical_id, {"Records": batch})
            if error is not None:
                failed: int | None = 0
            else:
                failed = _failed_from(answer, batch) if source.report_batch_item_failures else None
            numbers = tuple(record["dynamodb"]["SequenceNumber"] for record in batch)
            if failed is None:
                self._record(StreamBatch(source.function_logical_id, numbers, None, None))
                return
            spent = retries_left == 0 or self._stopping.is_set()
            self._record(
                StreamBatch(
                    source.function_logical_id, numbers, error or "BatchItemFailures", numbers[failed], discarded=spent
                )
            )
            if spent:
                logger.warning("stream batch for %s discarded: %s", source.function_logical_id, error)
                return
            retries_left -= 1
            self._stopping.wait(RETRY_PAUSE_SECONDS)
            if failed == 0 and error is not None and source.bisect_batch_on_function_error and len(batch) > 1:
                half = len(batch) // 2
                self._deliver(mapping, batch[:half], retries_left)
                self._deliver(mapping, batch[half:], retries_left)
                return
            batch = batch[failed:]

    def _record(self, batch: StreamBatch) -> None:
        with self._lock:
            self._batches.append(batch)
