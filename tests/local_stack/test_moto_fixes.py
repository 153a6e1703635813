"""local_stack/moto_fixes.py: moto's Step Functions callbacks refuse a task token whose task was already closed."""

from __future__ import annotations

import pytest
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
