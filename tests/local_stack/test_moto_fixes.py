"""local_stack/moto_fixes.py: moto's Step Functions callbacks refuse a task token whose task was already closed; a
DynamoDB index query outlives an item that leaves the index while it runs, and an item's size one that grows."""

from __future__ import annotations

import pytest
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.stepfunctions.parser.api import TaskTimedOut
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackConsumerTimeout,
    CallbackOutcomeSuccess,
    CallbackPoolManager,
)

from local_stack import moto_fixes


@pytest.fixture
def pool() -> CallbackPoolManager:
    moto_fixes.install()
    return CallbackPoolManager(activity_store={})


def test_a_token_is_woken_once_then_refused_as_gone(pool):
    endpoint = pool.add("token-1")
    endpoint.setup_heartbeat_endpoint(heartbeat_seconds=10)
    assert pool.heartbeat("token-1") is True  # a waiting task takes heartbeats ...
    assert pool.notify("token-1", CallbackOutcomeSuccess(callback_id="token-1", output='{"n": 1}')) is True
    # ... and, once closed, neither a second wake nor a heartbeat: AWS answers them TaskTimedOut.
    with pytest.raises(TaskTimedOut):
        pool.notify("token-1", CallbackOutcomeSuccess(callback_id="token-1", output='{"n": 2}'))
    with pytest.raises(TaskTimedOut):
        pool.heartbeat("token-1")
    assert endpoint.get_outcome().output == '{"n": 1}'  # the first wake's outcome stands


def test_a_token_nobody_knows_is_still_not_found(pool):
    assert pool.notify("unknown", CallbackOutcomeSuccess(callback_id="unknown", output="{}")) is False


def test_a_token_whose_heartbeat_timed_out_is_refused(pool):
    endpoint = pool.add("token-2")
    endpoint.report(CallbackConsumerTimeout())  # what the fixed wait does when no heartbeat came in time
    with pytest.raises(TaskTimedOut) as refused:
        pool.notify("token-2", CallbackOutcomeSuccess(callback_id="token-2", output="{}"))
    assert refused.value.get_body() == (
        """{"__type": "TaskTimedOut", "message": "Task Timed Out: 'Provided task does not exist anymore'"}"""
    )


def jobs_table(**indexes: object) -> Table:
    """A moto table keyed by jobId, with the fixes installed."""
    moto_fixes.install()
    return Table(
        "jobs",
        account_id="123456789012",
        region="us-east-1",
        schema=[{"AttributeName": "jobId", "KeyType": "HASH"}],
        attr=[{"AttributeName": "jobId", "AttributeType": "S"}, {"AttributeName": "active", "AttributeType": "S"}],
        **indexes,
    )


def test_an_index_query_leaves_out_an_item_whose_key_was_removed_while_it_ran():
    table = jobs_table(
        global_indexes=[
            {
                "IndexName": "active",
                "KeySchema": [{"AttributeName": "active", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    for job_id in ("b", "a", "c"):
        table.put_item({"jobId": {"S": job_id}, "active": {"S": "cluster"}})
    items = [table.get_item(DynamoType({"S": job_id})) for job_id in ("b", "a", "c")]
    del items[1].attrs["active"]  # an UpdateItem's REMOVE, between the query's pick and its sort
    kept = table.sorted_items(["active", "jobId"], [None, None], items)
    assert [item.attrs["jobId"].value for item in kept] == ["b", "c"]


def test_an_items_size_is_read_while_another_thread_adds_an_attribute():
    table = jobs_table()
    table.put_item({"jobId": {"S": "a"}, "status": {"S": "RUNNING"}})
    item = table.get_item(DynamoType({"S": "a"}))

    class Growing(DynamoType):
        def size(self) -> int:  # an UpdateItem's SET of a new attribute, while the size is summed
            item.attrs.setdefault("endedAt", DynamoType({"S": "2026-12-08T00:00:00Z"}))
            return super().size()

    item.attrs["status"] = Growing({"S": "COMPLETED"})
    assert item.size() > 0 and "endedAt" in item.attrs
    assert [found.attrs["jobId"].value for found in table.all_items()] == ["a"]
