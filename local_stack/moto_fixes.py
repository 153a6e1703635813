"""Fixes for moto 5.2.5 behaviour that differs from AWS in ways the product relies on (moto is pinned exactly).

- The Step Functions interpreter's optimized `states:startExecution` integration passes the ASL parameter names
  (StateMachineArn, Name, Input — AWS's documented casing) to boto3 unchanged, whose Step Functions API names are
  stateMachineArn, name, input; the call then fails with States.Runtime 'StateMachineArn'. On AWS it works. The fix
  maps each parameter to the botocore member of the same name, case-insensitively.
"""

from __future__ import annotations

import botocore.session
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn

_SfnService = state_task_service_sfn.StateTaskServiceSfn
_original_normalise = _SfnService._normalise_parameters
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


def install() -> None:
    """Applies the fixes to this process's moto (idempotent)."""
    global _installed
    if not _installed:
        _SfnService._normalise_parameters = _normalise_parameters
        _installed = True
