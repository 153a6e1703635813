"""One Lambda execution environment: a process that imports one function's handler and runs its invocations.

Lambda runs each execution environment in its own process, one invocation at a time, and keeps module-level state
between the invocations it serves. :class:`~local_stack.lambda_runtime.LambdaRuntime` starts one of these processes
per environment (through a ``forkserver`` that has the heavy libraries imported already) and talks to it over a
``multiprocessing`` connection:

- the process first answers ``("ready", None)``, or ``("init_error", payload)`` if the handler cannot be imported
  (or a test made the init fail: ``init_failure`` names the error type a runtime reports, then the process ends);
- then, per invocation, it receives ``(event, context_fields)`` and answers ``("result", json_text)`` or
  ``("error", payload)`` with the payload Lambda's Python runtime returns for a failed invocation.

This module imports only the standard library: the forkserver imports it in every new environment.
"""

import importlib
import importlib.machinery
import json
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

LATEST = "$LATEST"
# The packages the forkserver preloaded from the template's layers (local_stack.layer_preload): name -> the __file__
# of the package (or module) it imported. An environment keeps one only if its own import path finds that same file.
PRELOADED_PACKAGES: dict[str, str] = {}


class WorkerContext:
    """The context object a Python Lambda handler receives (``memory_limit_in_mb`` is a string, as in awslambdaric)."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.function_name: str = fields["function_name"]
        self.function_version: str = fields.get("function_version", LATEST)
        self.invoked_function_arn: str = fields["invoked_function_arn"]
        self.memory_limit_in_mb: str = fields["memory_limit_in_mb"]
        self.aws_request_id: str = fields["aws_request_id"]
        self.log_group_name: str = fields["log_group_name"]
        self.log_stream_name: str = fields["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + fields["remaining_time_in_millis"] / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def error_payload(error: BaseException, request_id: str | None, error_type: str | None = None) -> dict[str, Any]:
    """The payload the Python runtime returns for an exception that escaped the handler."""
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(
            [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__]
        ),
    }


def _drop_foreign_preloads() -> None:
    """Forget each preloaded package that this environment's import path would find elsewhere, or not at all."""
    for name, origin in PRELOADED_PACKAGES.items():
        spec = importlib.machinery.PathFinder.find_spec(name, sys.path)
        if spec is None or spec.origin != origin:
            for module in [module for module in sys.modules if module == name or module.startswith(name + ".")]:
                del sys.modules[module]


def serve(
    connection: Any,
    handler_path: str,
    import_paths: Sequence[str],
    environment: Mapping[str, str],
    init_failure: str | None = None,
) -> None:
    """The environment's main loop: import ``module.function`` from ``handler_path``, then run invocations."""
    os.environ.clear()
    os.environ.update(environment)
    if init_failure:
        message = f"the runtime failed to initialize ({init_failure}, injected by a test)"
        connection.send(("init_error", {"errorType": init_failure, "errorMessage": message, "stackTrace": []}))
        return
    sys.path[:0] = [path for path in import_paths if path not in sys.path]
    _drop_foreign_preloads()
    module_name, _, attribute = handler_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - Lambda reports any import failure the same way
        failure = error_payload(error, None, "Runtime.ImportModuleError")
        failure["errorMessage"] = f"Unable to import module '{module_name}': {error}"
        connection.send(("init_error", failure))
        return
    handler = getattr(module, attribute, None)
    if not callable(handler):
        message = f"Handler '{attribute}' missing on module '{module_name}'"
        connection.send(("init_error", {"errorType": "Runtime.HandlerNotFound", "errorMessage": message}))
        return
    connection.send(("ready", None))
    while True:
        try:
            event, context_fields = connection.recv()
        except EOFError:
            return
        context = WorkerContext(context_fields)
        try:
            result = handler(event, context)
        except BaseException as error:  # noqa: BLE001 - Lambda reports whatever escapes the handler
            connection.send(("error", error_payload(error, context.aws_request_id)))
            continue
        try:
            text = json.dumps(result)
        except (TypeError, ValueError) as marshal_error:
            connection.send(
                (
                    "error",
                    {
                        "errorMessage": f"Unable to marshal response: {marshal_error}",
                        "errorType": "Runtime.MarshalError",
                        "requestId": context.aws_request_id,
                        "stackTrace": [],
                    },
                )
            )
            continue
        connection.send(("result", text))
