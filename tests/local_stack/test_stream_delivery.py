"""The local DynamoDB stream event source mapping against moto's stream (a moto server on loopback; the function is a
Python callable standing in for the runtime, which tests/workflow/test_job_events.py runs for real)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from local_stack.stream_delivery import LocalStreamDelivery
from local_stack.template_model import StreamSourceSpec
from tests.support.moto_server import REGION, moto_client, moto_server

ONLY_JOBS = {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {"status": {"S": [{"exists": True}]}}}}


def source(**overrides) -> StreamSourceSpec:
    settings = {
        "function_logical_id": "Publisher",
        "event_name": "Changes",
        "table_logical_id": "Table",
        "starting_position": "TRIM_HORIZON",
        "batch_size": 100,
        "maximum_retry_attempts": -1,
        "bisect_batch_on_function_error": False,
        "report_batch_item_failures": False,
        "filter_patterns": (),
    }
    return StreamSourceSpec(**(settings | overrides))


class Function:
    """Records each batch it gets; `answer(records)` says what the invocation returns: (error or None, answer)."""

    def __init__(self, answer: Callable[[list[dict]], tuple[str | None, object]] | None = None) -> None:
        self.batches: list[list[dict]] = []
        self._answer = answer or (lambda records: (None, None))
        self._lock = threading.Lock()

    def __call__(self, function_logical_id: str, event: dict) -> tuple[str | None, object]:
        assert function_logical_id == "Publisher"
        with self._lock:
            self.batches.append(event["Records"])
        return self._answer(event["Records"])

    def job_ids(self) -> list[str]:
        """The jobIds delivered, in delivery order (a retried record appears again)."""
        return [record["dynamodb"]["Keys"]["jobId"]["S"] for batch in self.batches for record in batch]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


class Table:
    """A new table with a stream, on the moto server."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.name = f"jobs-{uuid.uuid4().hex[:8]}"
        self.dynamodb = moto_client(endpoint, "dynamodb")
        described = self.dynamodb.create_table(
            TableName=self.name,
            KeySchema=[{"AttributeName": "jobId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "jobId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        self.stream_arn = described["TableDescription"]["LatestStreamArn"]

    def put(self, job_id: str, **attributes: str) -> None:
        item = {"jobId": {"S": job_id}} | {name: {"S": value} for name, value in attributes.items()}
        self.dynamodb.put_item(TableName=self.name, Item=item)

    def delete(self, job_id: str) -> None:
        self.dynamodb.delete_item(TableName=self.name, Key={"jobId": {"S": job_id}})

    @contextmanager
    def running(self, function: Function, **overrides) -> Iterator[LocalStreamDelivery]:
        """The stream delivered to `function` while the block runs."""
        delivery = self.delivery(function, **overrides)
        delivery.start()
        try:
            yield delivery
        finally:
            delivery.stop()

    def delivery(self, function: Function, **overrides) -> LocalStreamDelivery:
        return LocalStreamDelivery(
            [(source(**overrides), self.stream_arn)],
            lambda: moto_client(self.endpoint, "dynamodbstreams"),
            function,
            region=REGION,
            poll_seconds=0.05,
        )


@pytest.fixture
def table(endpoint: str) -> Table:
    return Table(endpoint)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the stream was not delivered in time"
        time.sleep(0.05)


def test_records_reach_the_function_in_order_as_lambda_sends_them(table):
    function = Function()
    with table.running(function) as running:
        for index in range(5):
            table.put(f"job-{index}", status="PENDING")
        table.put("job-0", status="RUNNING")
        wait_for(lambda: len(function.job_ids()) == 6)
    assert function.job_ids() == ["job-0", "job-1", "job-2", "job-3", "job-4", "job-0"]
    last = function.batches[-1][-1]
    assert last["eventName"] == "MODIFY" and last["eventSourceARN"] == table.stream_arn and last["awsRegion"] == REGION
    assert last["dynamodb"]["OldImage"]["status"] == {"S": "PENDING"}
    assert last["dynamodb"]["NewImage"]["status"] == {"S": "RUNNING"}
    assert isinstance(last["dynamodb"]["ApproximateCreationDateTime"], float)
    assert all(batch.error is None for batch in running.batches)


def test_filters_drop_the_records_no_pattern_matches(table):
    function = Function()
    with table.running(function, filter_patterns=(ONLY_JOBS,)):
        table.put("claim-1", claimedJobId="job-1")  # no status: not a job record
        table.put("job-1", status="PENDING")
        table.delete("job-1")  # REMOVE
        table.put("job-2", status="PENDING")
        wait_for(lambda: "job-2" in function.job_ids())
    assert function.job_ids() == ["job-1", "job-2"]


def test_batches_hold_at_most_batch_size_records(table):
    for index in range(7):
        table.put(f"job-{index}", status="PENDING")
    function = Function()
    with table.running(function, batch_size=3):
        wait_for(lambda: len(function.job_ids()) == 7)
    assert [len(batch) for batch in function.batches] == [3, 3, 1]


def test_latest_starts_after_the_records_written_before(table):
    table.put("before", status="PENDING")
    function = Function()
    with table.running(function, starting_position="LATEST"):
        table.put("after", status="PENDING")
        wait_for(lambda: "after" in function.job_ids())
    assert function.job_ids() == ["after"]


def test_a_partial_failure_is_retried_from_the_first_failed_record(table):
    for index in range(4):
        table.put(f"job-{index}", status="PENDING")
    failed_once: list[str] = []

    def answer(records):
        first_failure = [r for r in records if r["dynamodb"]["Keys"]["jobId"]["S"] in ("job-2", "job-3")]
        if first_failure and not failed_once:
            failed_once.append("yes")
            return None, {
                "batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in records[2:]]
            }
        return None, {"batchItemFailures": []}

    function = Function(answer)
    with table.running(function, report_batch_item_failures=True) as running:
        wait_for(lambda: len(function.batches) == 2)
    assert function.job_ids() == ["job-0", "job-1", "job-2", "job-3", "job-2", "job-3"]
    first, second = running.batches
    assert first.error == "BatchItemFailures" and first.failed_from == first.sequence_numbers[2]
    assert second.error is None and second.sequence_numbers == first.sequence_numbers[2:]


def test_an_identifier_not_in_the_batch_fails_all_of_it(table):
    table.put("job-0", status="PENDING")
    table.put("job-1", status="PENDING")
    answers = iter([(None, {"batchItemFailures": [{"itemIdentifier": "not-a-sequence-number"}]})])
    function = Function(lambda records: next(answers, (None, None)))
    with table.running(function, report_batch_item_failures=True):
        wait_for(lambda: len(function.batches) == 2)
    assert function.job_ids() == ["job-0", "job-1", "job-0", "job-1"]


def test_a_function_error_is_bisected_until_the_bad_record_is_alone(table):
    for index in range(4):
        table.put(f"job-{index}", status="BAD" if index == 3 else "PENDING")

    def answer(records):
        bad = any(r["dynamodb"]["NewImage"]["status"]["S"] == "BAD" for r in records)
        return ("ValueError", {"errorType": "ValueError"}) if bad else (None, None)

    function = Function(answer)
    with table.running(function, bisect_batch_on_function_error=True, maximum_retry_attempts=2) as running:
        wait_for(lambda: any(batch.discarded for batch in running.batches))
        table.put("job-4", status="PENDING")  # the shard goes on after the bad record is given up
        wait_for(lambda: "job-4" in function.job_ids())
    delivered = {n for b in running.batches if b.error is None for n in b.sequence_numbers}
    (discarded,) = [batch for batch in running.batches if batch.discarded]
    assert len(discarded.sequence_numbers) == 1 and discarded.sequence_numbers[0] not in delivered
    assert len(delivered) == 4  # job-0..2 and job-4, each delivered


def test_retries_stop_at_maximum_retry_attempts(table):
    table.put("job-0", status="PENDING")
    function = Function(lambda records: ("Runtime.ExitError", None))
    with table.running(function, maximum_retry_attempts=2) as running:
        wait_for(lambda: any(batch.discarded for batch in running.batches))
        time.sleep(0.3)
    assert len(function.batches) == 3  # the first attempt and two retries
    assert [batch.discarded for batch in running.batches] == [False, False, True]
