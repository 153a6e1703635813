"""Fixes for moto 5.2.5 behaviour that differs from AWS in ways the product relies on (moto is pinned exactly).

- The Step Functions interpreter's optimized `states:startExecution` integration passes the ASL parameter names
  (StateMachineArn, Name, Input — AWS's documented casing) to boto3 unchanged, whose Step Functions API names are
  stateMachineArn, name, input; the call then fails with States.Runtime 'StateMachineArn'. On AWS it works. The fix
  maps each parameter to the botocore member of the same name, case-insensitively.
- A Lambda task whose Resource is the function's ARN names every failure of the Invoke call itself (a ClientError:
  TooManyRequestsException when the function is throttled, ServiceException, ...) ``Exception``; AWS names it
  ``Lambda.<Exception>`` ("Handle Lambda service exceptions",
  https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html), as moto's
  ``arn:aws:states:::lambda:invoke`` integration already does, and the state machine's Retry matches those names.
  The fix names them so, with that integration's error and cause.
- A task token whose task has already been closed is accepted again by moto's callback pool as long as its
  execution runs: after a SendTaskSuccess or SendTaskFailure, and after the task's heartbeat timed out, a
  SendTaskSuccess "succeeds" (its outcome replaces one nobody reads, or is never read) and so does a heartbeat. AWS
  refuses them: TaskTimedOut, "the task token has either expired or the task associated with the token has already
  been closed". The fix closes a task once (its first outcome, or its heartbeat timeout, whichever comes first) and
  answers any later call with TaskTimedOut, so that a duplicate or late wake is seen as one. (moto's own answer for a
  closed task cannot be sent: its TaskTimedOut and TaskDoesNotExist are built without the message they require.)
- A DynamoDB Query on an index picks the items that have the index's keys, then sorts them reading those keys again;
  an UpdateItem in another of the server's threads that removes a key in between (a job leaving ActiveJobsIndex as
  it ends) makes the Query fail with a KeyError (HTTP 500), where DynamoDB answers with the index as it was. The
  fix reads each item's keys once and leaves out an item that no longer has them.
- A Query or Scan iterates over the table's items and each item's attributes while an UpdateItem in another thread
  adds or removes some: "dictionary changed size during iteration" (HTTP 500), where DynamoDB answers. The fix
  iterates over a snapshot of each (``list()`` of a dict is one step for the other threads).
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.session
from botocore.exceptions import ClientError
from moto.dynamodb.models.dynamo_type import Item, bytesize
from moto.dynamodb.models.table import Table
from moto.stepfunctions.parser.api import HistoryEventType, LambdaFunctionFailedEventDetails, TaskTimedOut
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_lambda
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback,
    state_task_service_lambda,
    state_task_service_sfn,
)
from moto.stepfunctions.parser.asl.eval.callback import callback
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

_SfnService = state_task_service_sfn.StateTaskServiceSfn
_original_normalise = _SfnService._normalise_parameters
_LambdaTask = state_task_lambda.StateTaskLambda
_original_lambda_task_error = _LambdaTask._from_error
_invoke_error_and_cause = state_task_service_lambda.StateTaskServiceLambda._error_cause_from_client_error
_Pool = callback.CallbackPoolManager
_original_notify = _Pool.notify
_original_heartbeat = _Pool.heartbeat
_CallbackTask = state_task_service_callback.StateTaskServiceCallback
_original_wait_with_heartbeat = _CallbackTask._wait_for_task_token_heartbeat
_original_sorted_items = Table.sorted_items
_callbacks_lock = threading.Lock()  # a closed check and the close it guards are one step
_installed = False


def _member_names(operation: str) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model("stepfunctions").operation_model(operation)
    return {name.lower(): name for name in model.input_shape.members}


def _normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
    _original_normalise(self, parameters, boto_service_name, service_action_name)
    if service_action_name is None:
        operation = self._get_boto_service_action()
        operation_name = "".join(part.capitalize() for part in operation.split("_"))
        members = _member_names(operation_name)
        for key in list(parameters):
            wanted = members.get(key.lower())
            if wanted and wanted != key:
                parameters[wanted] = parameters.pop(key)


def _lambda_task_error(self, env, ex):
    if not isinstance(ex, ClientError):
        return _original_lambda_task_error(self, env, ex)
    error, cause = _invoke_error_and_cause(ex)
    return FailureEvent(
        env=env,
        error_name=CustomErrorName(error),
        event_type=HistoryEventType.LambdaFunctionFailed,
        event_details=EventDetails(
            lambdaFunctionFailedEventDetails=LambdaFunctionFailedEventDetails(error=error, cause=cause)
        ),
    )


def _refuse_if_closed(pool: Any, callback_id: str) -> None:
    endpoint = pool.get(callback_id)
    if endpoint is not None and (endpoint.consumer_error is not None or endpoint.get_outcome() is not None):
        raise TaskTimedOut(
            "Task Timed Out: 'Provided task does not exist anymore'", exception_type="TaskTimedOut", status=400
        )


def _notify(self, callback_id, outcome):
    with _callbacks_lock:
        _refuse_if_closed(self, callback_id)
        return _original_notify(self, callback_id, outcome)


def _heartbeat(self, callback_id):
    with _callbacks_lock:
        _refuse_if_closed(self, callback_id)
        return _original_heartbeat(self, callback_id)


def _wait_for_task_token_heartbeat(self, env, callback_endpoint, heartbeat_endpoint):
    outcome = _original_wait_with_heartbeat(self, env, callback_endpoint, heartbeat_endpoint)
    if isinstance(outcome, callback.HeartbeatTimedOut):
        with _callbacks_lock:
            arrived = callback_endpoint.get_outcome()
            if arrived is not None:
                return arrived  # a wake accepted as the heartbeat timed out: it closed the task first
            callback_endpoint.report(callback.CallbackConsumerTimeout())
    return outcome


def _sorted_items(self, hash_key_attrs, range_key_attrs, items):
    attributes = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
    keyed = []
    for item in items:
        values = [item.attrs.get(attribute) for attribute in attributes]  # each read once
        if all(value is not None for value in values):
            keyed.append((tuple(values), item))
    keyed.sort(key=lambda pair: pair[0])
    items[:] = [item for _, item in keyed]
    return items


def _item_size(self) -> int:
    return sum(bytesize(key) + value.size() for key, value in list(self.attrs.items()))


def _all_items(self) -> list:
    items = []
    for hash_set in list(self.items.values()):
        if self.range_key_attr:
            items.extend(list(hash_set.values()))
        else:
            items.append(hash_set)
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def install() -> None:
    """Applies the fixes to this process's moto (idempotent)."""
    global _installed
    if not _installed:
        _SfnService._normalise_parameters = _normalise_parameters
        _LambdaTask._from_error = _lambda_task_error
        _Pool.notify = _notify
        _Pool.heartbeat = _heartbeat
        _CallbackTask._wait_for_task_token_heartbeat = _wait_for_task_token_heartbeat
        Table.sorted_items = _sorted_items
        Table.all_items = _all_items
        Item.size = _item_size
        _installed = True
