"""Fixes for moto 5.2.5 behaviour that differs from AWS in ways the product relies on (moto is pinned exactly).

- The Step Functions interpreter's optimized `states:startExecution` integration passes the ASL parameter names
  (StateMachineArn, Name, Input — AWS's documented casing) to boto3 unchanged, whose Step Functions API names are
  stateMachineArn, name, input; the call then fails with States.Runtime 'StateMachineArn'. On AWS it works. The fix
  maps each parameter to the botocore member of the same name, case-insensitively.
- A task token whose task has already been closed (by SendTaskSuccess or SendTaskFailure) is accepted again by
  moto's callback pool as long as its execution runs: a second SendTaskSuccess "succeeds" (and replaces an outcome
  nobody reads), and so does a heartbeat. AWS refuses both (TaskTimedOut: "the task associated with the token has
  already been closed"). The fix refuses them as a task that is gone (moto then answers TaskDoesNotExist; the product
  treats TaskTimedOut, TaskDoesNotExist and InvalidToken alike), so that a duplicate wake is seen as one.
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.session
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn
from moto.stepfunctions.parser.asl.eval.callback import callback

_SfnService = state_task_service_sfn.StateTaskServiceSfn
_original_normalise = _SfnService._normalise_parameters
_Pool = callback.CallbackPoolManager
_original_notify = _Pool.notify
_original_heartbeat = _Pool.heartbeat
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


def _refuse_if_closed(pool: Any, callback_id: str) -> None:
    endpoint = pool.get(callback_id)
    if endpoint is not None and endpoint.consumer_error is None and endpoint.get_outcome() is not None:
        raise callback.CallbackNotifyConsumerError(callback_consumer_error=callback.CallbackConsumerTimeout())


def _notify(self, callback_id, outcome):
    with _callbacks_lock:
        _refuse_if_closed(self, callback_id)
        return _original_notify(self, callback_id, outcome)


def _heartbeat(self, callback_id):
    with _callbacks_lock:
        _refuse_if_closed(self, callback_id)
        return _original_heartbeat(self, callback_id)


def install() -> None:
    """Applies the fixes to this process's moto (idempotent)."""
    global _installed
    if not _installed:
        _SfnService._normalise_parameters = _normalise_parameters
        _Pool.notify = _notify
        _Pool.heartbeat = _heartbeat
        _installed = True
