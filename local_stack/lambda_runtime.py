"""Our real Lambda handlers, run in this process whenever moto's Lambda is invoked.

moto 5.2.5 without Docker answers every Invoke from ``LambdaSimpleBackend.invoke`` with a canned payload. The local
stack runs moto's server in this process, and the Step Functions interpreter calls Lambda through boto3 and that
server, so replacing that one method here makes every invocation of a template function, from any client, run the
handler from the template's CodeUri, with the layers' ContentUri on the import path, a Lambda-like context and the
function's environment, and answer the way Lambda answers:

- a result: the JSON document (``null`` for None);
- an exception: header ``X-Amz-Function-Error: Unhandled`` and ``{"errorType", "errorMessage", "requestId",
  "stackTrace"}``; Step Functions takes ``errorType`` as the error name its Retry and Catch match;
- a result that is not JSON: ``Runtime.MarshalError``; a handler that cannot be imported: ``Runtime.ImportModuleError``;
- a handler still running after the template Timeout: ``Sandbox.Timedout`` (the handler thread cannot be killed; it
  runs on and its outcome is discarded, as Lambda discards a frozen sandbox).

Limits of running everything in one process: every handler shares ``os.environ``, so the runtime sets the union of all
functions' template variables (two different values for one variable is an error, see
:meth:`TemplateModel.combined_environment`), and per-invocation facts (function name, memory, request id) are in the
context only. Top-level module names of the code and layer directories must not collide, since they share
``sys.modules``; the handler module itself is imported under a name unique to its function.

Tests inject faults with :meth:`LambdaRuntime.add_interceptor` and read :attr:`LambdaRuntime.invocations`.
"""

import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from moto.awslambda.exceptions import LambdaClientError, UnknownFunctionException
from moto.awslambda_simple.models import LambdaSimpleBackend

from local_stack.template_model import FunctionSpec, TemplateModel

logger = logging.getLogger(__name__)

LATEST = "$LATEST"
# Keys present only so that boto3 in the handlers signs requests; moto accepts any.
LOCAL_ACCESS_KEY_ID = "testing"
LOCAL_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - a placeholder for moto, not a secret
# Variables that would point boto3 somewhere else than the local cloud while the runtime is installed.
_REMOVED_VARIABLES = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")
# moto's own Invoke, which answers for functions that are not the template's.
_MOTO_INVOKE = LambdaSimpleBackend.invoke

Handler = Callable[[Any, "LambdaContext"], Any]
Interceptor = Callable[[Any, "LambdaContext", Handler], Any]
"""``interceptor(event, context, call_next)``: runs around the handler; call ``call_next(event, context)`` to run it
(or not), raise to make the invocation fail the way a crashing handler does."""


class LambdaContext:
    """The context object a Python Lambda handler receives.

    As in the Python runtime (awslambdaric), ``memory_limit_in_mb`` is a string.
    """

    def __init__(self, function: FunctionSpec, invoked_function_arn: str, request_id: str, deadline: float) -> None:
        self.function_name = function.name
        self.function_version = LATEST
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = str(function.memory_size)
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[{LATEST}]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """One finished invocation, for tests: the error is the payload Lambda would return (None on success)."""

    function_logical_id: str
    request_id: str
    event: Any
    result: Any
    error: Mapping[str, Any] | None
    started_at: datetime
    duration_seconds: float


@dataclass(frozen=True)
class InvocationResult:
    """What Invoke answers: the payload bytes and, for a failed invocation, ``function_error`` ("Unhandled")."""

    payload: bytes
    function_error: str | None

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class _Outcome:
    """Filled in by the thread that runs the handler."""

    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class RuntimeFailure(Exception):
    """An error the Lambda runtime itself reports (e.g. ``Runtime.ImportModuleError``), not a handler exception."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    """The payload the Python runtime returns for an exception that escaped the handler."""
    return {
        "errorMessage": str(error),
        "errorType": error.error_type if isinstance(error, RuntimeFailure) else type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(
            [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__]
        ),
    }


def _response(
    outcome: _Outcome | None, function: FunctionSpec, request_id: str
) -> tuple[Any, dict[str, Any] | None, bytes]:
    """(result, error payload, response payload) of an invocation; ``outcome`` None: it ran past its Timeout."""
    if outcome is None:
        message = f"RequestId: {request_id} Error: Task timed out after {function.timeout:.2f} seconds"
        error = {"errorType": "Sandbox.Timedout", "errorMessage": message}
        return None, error, json.dumps(error).encode()
    if outcome.error is not None:
        error = error_payload(outcome.error, request_id)
        return None, error, json.dumps(error).encode()
    try:
        return outcome.result, None, json.dumps(outcome.result).encode()
    except (TypeError, ValueError) as marshal_error:
        error = {
            "errorMessage": f"Unable to marshal response: {marshal_error}",
            "errorType": "Runtime.MarshalError",
            "requestId": request_id,
            "stackTrace": [],
        }
        return None, error, json.dumps(error).encode()


class LambdaRuntime:
    """Runs the template's functions in-process; :meth:`install` routes moto's Invoke here."""

    _install_lock = threading.Lock()
    _installed: "LambdaRuntime | None" = None

    def __init__(self, model: TemplateModel, *, endpoint_url: str) -> None:
        self._functions = model.functions
        self._by_name = {function.name: function for function in self._functions.values()}
        self._environment = {
            **model.combined_environment(),
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_DEFAULT_REGION": model.region,
            "AWS_REGION": model.region,
            "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
        }
        self._import_paths = _import_paths(list(self._functions.values()))
        self._lock = threading.Lock()
        self._interceptors: dict[str, list[Interceptor]] = {}
        self._invocations: list[Invocation] = []
        # Idle execution environments per function: Lambda runs one request at a time in each, so concurrent
        # invocations each get their own copy of the handler module (its module-level state, e.g. the API router's
        # current request, is never shared between two requests in flight).
        self._idle_handlers: dict[str, list[Handler]] = {}
        self._environments_created: dict[str, int] = {}
        self._import_locks = {logical_id: threading.Lock() for logical_id in self._functions}
        self._saved_environment: dict[str, str | None] = {}
        self._added_paths: list[str] = []

    # ----- installation -----------------------------------------------------------------------------------------

    def install(self) -> None:
        """Set the environment and import path, and make moto's Invoke run our handlers."""
        with LambdaRuntime._install_lock:
            if LambdaRuntime._installed is not None:
                raise RuntimeError("a LambdaRuntime is already installed in this process; uninstall it first")
            for name in (*self._environment, *_REMOVED_VARIABLES):
                self._saved_environment[name] = os.environ.get(name)
            for name in _REMOVED_VARIABLES:
                os.environ.pop(name, None)
            os.environ.update(self._environment)
            _forget_modules_under(self._import_paths)  # a new runtime is a cold start: no state from an earlier one
            for path in self._import_paths:
                if path not in sys.path:
                    sys.path.append(path)
                    self._added_paths.append(path)
            runtime = self

            def invoke(backend: LambdaSimpleBackend, *args: Any, **kwargs: Any) -> str | bytes | None:
                return runtime._moto_invoke(backend, *args, **kwargs)

            LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
            LambdaRuntime._installed = self

    def uninstall(self) -> None:
        """Undo :meth:`install`: moto's Invoke, the environment and the import path are as they were."""
        with LambdaRuntime._install_lock:
            if LambdaRuntime._installed is not self:
                return
            LambdaSimpleBackend.invoke = _MOTO_INVOKE  # type: ignore[method-assign]
            for name, value in self._saved_environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            for path in self._added_paths:
                if path in sys.path:
                    sys.path.remove(path)
            self._added_paths.clear()
            LambdaRuntime._installed = None

    # ----- test hooks -------------------------------------------------------------------------------------------

    def add_interceptor(self, function_logical_id: str, interceptor: Interceptor) -> Callable[[], None]:
        """Run ``interceptor`` around every later invocation of the function; returns a function that removes it.

        The first interceptor added is the outermost.
        """
        self._function(function_logical_id)
        with self._lock:
            self._interceptors.setdefault(function_logical_id, []).append(interceptor)

        def remove() -> None:
            with self._lock:
                self._interceptors[function_logical_id].remove(interceptor)

        return remove

    @property
    def invocations(self) -> tuple[Invocation, ...]:
        """The finished invocations, in the order they finished."""
        with self._lock:
            return tuple(self._invocations)

    def invocations_of(self, function_logical_id: str) -> tuple[Invocation, ...]:
        return tuple(entry for entry in self.invocations if entry.function_logical_id == function_logical_id)

    # ----- invoking ---------------------------------------------------------------------------------------------

    def invoke(
        self, function_logical_id: str, event: Any, *, invoked_function_arn: str | None = None
    ) -> InvocationResult:
        """Run the function's handler synchronously, as Lambda's RequestResponse Invoke does."""
        function = self._function(function_logical_id)
        event = json.loads(json.dumps(event))  # the handler gets its own copy, as if it came over the wire
        request_id = str(uuid.uuid4())
        started_at = datetime.now(UTC)
        started = time.monotonic()
        deadline = started + function.timeout
        context = LambdaContext(function, invoked_function_arn or function.arn, request_id, deadline)
        outcome = _Outcome()
        worker = threading.Thread(
            target=self._run_handler,
            args=(function, event, context, outcome),
            name=f"lambda-{function.logical_id}-{request_id[:8]}",
            daemon=True,
        )
        worker.start()
        finished = outcome.done.wait(function.timeout)
        duration = time.monotonic() - started
        result, error, payload = _response(outcome if finished else None, function, request_id)
        with self._lock:
            self._invocations.append(
                Invocation(function_logical_id, request_id, event, result, error, started_at, duration)
            )
        if error is not None:
            logger.info("%s %s failed: %s", function_logical_id, request_id, error["errorType"])
        return InvocationResult(payload, "Unhandled" if error is not None else None)

    def _run_handler(self, function: FunctionSpec, event: Any, context: LambdaContext, outcome: _Outcome) -> None:
        handler: Handler | None = None
        try:
            handler = self._checkout_handler(function)
            call: Handler = handler
            with self._lock:
                interceptors = list(self._interceptors.get(function.logical_id, ()))
            for interceptor in reversed(interceptors):
                call = _wrap(interceptor, call)
            outcome.result = call(event, context)
        except BaseException as error:  # noqa: BLE001 - Lambda reports whatever escapes the handler
            outcome.error = error
        finally:
            if handler is not None:
                with self._lock:
                    self._idle_handlers.setdefault(function.logical_id, []).append(handler)
            outcome.done.set()

    def _checkout_handler(self, function: FunctionSpec) -> Handler:
        """An idle execution environment's handler, or a new environment's (a cold start: its module is imported)."""
        with self._lock:
            idle = self._idle_handlers.get(function.logical_id)
            if idle:
                return idle.pop()
            number = self._environments_created.get(function.logical_id, 0)
            self._environments_created[function.logical_id] = number + 1
        with self._import_locks[function.logical_id]:
            module_name, _, attribute = function.handler.rpartition(".")
            module = _import_handler_module(function, module_name, number)
            handler = getattr(module, attribute, None)
            if not callable(handler):
                raise RuntimeFailure("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module")
            return handler

    def _function(self, logical_id: str) -> FunctionSpec:
        if logical_id not in self._functions:
            raise KeyError(f"{logical_id!r} is not a function of the template; known: {sorted(self._functions)}")
        return self._functions[logical_id]

    # ----- moto entry point -------------------------------------------------------------------------------------

    def _moto_invoke(
        self,
        backend: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> str | bytes | None:
        """Replacement for ``LambdaSimpleBackend.invoke``: our functions run here, others keep moto's behaviour."""
        function, invoked_arn = self._resolve(function_name, qualifier)
        if function is None:
            return _MOTO_INVOKE(backend, function_name, qualifier, body, headers, response_headers)
        raw = body.decode() if isinstance(body, bytes) else (body or "")
        try:
            event = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as error:
            raise LambdaClientError(
                "InvalidRequestContentException", f"Could not parse request body into json: {error}"
            ) from error
        invocation_type = headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            threading.Thread(
                target=self.invoke,
                args=(function.logical_id, event),
                kwargs={"invoked_function_arn": invoked_arn},
                name=f"lambda-event-{function.logical_id}",
                daemon=True,
            ).start()
            return b""
        result = self.invoke(function.logical_id, event, invoked_function_arn=invoked_arn)
        if result.function_error:
            response_headers["x-amz-function-error"] = result.function_error
        response_headers["x-amz-executed-version"] = LATEST
        return result.payload

    def _resolve(self, function_name: str, qualifier: str | None) -> tuple[FunctionSpec | None, str]:
        """Our function for a FunctionName (name, ARN or partial ARN, maybe ``:qualifier``) and the invoked ARN."""
        name = function_name.split(":function:", 1)[1] if ":function:" in function_name else function_name
        name, _, name_qualifier = name.partition(":")
        function = self._by_name.get(name)
        if function is None:
            return None, function_name
        qualifier = qualifier or name_qualifier or None
        if qualifier not in (None, LATEST):
            raise UnknownFunctionException(f"{function.arn}:{qualifier}")
        return function, function.arn if qualifier is None else f"{function.arn}:{qualifier}"


def _wrap(interceptor: Interceptor, call_next: Handler) -> Handler:
    def call(event: Any, context: LambdaContext) -> Any:
        return interceptor(event, context, call_next)

    return call


def _import_handler_module(function: FunctionSpec, module_name: str, environment: int = 0) -> ModuleType:
    """Import the handler module from the CodeUri under a name unique to this function."""
    if not module_name or "." in module_name or "/" in module_name:
        raise RuntimeFailure(
            "Runtime.ImportModuleError",
            f"Unable to import module '{module_name}': the local runtime supports top-level handler modules only",
        )
    path = function.code_uri / f"{module_name}.py"
    unique_name = f"_local_lambda_{function.logical_id}_{module_name}_{environment}"
    spec = importlib.util.spec_from_file_location(unique_name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise RuntimeFailure("Runtime.ImportModuleError", f"Unable to import module '{module_name}': no {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[unique_name]
        raise RuntimeFailure(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}"
        ) from error
    return module


def _forget_modules_under(directories: Collection[str]) -> None:
    """Drops already imported modules loaded from these directories, so that the next import runs them afresh.

    Lambda runs each function in its own process; in one process, module-level state (cached settings, clients bound
    to an earlier moto endpoint) would otherwise outlive the cloud it was made for.
    """
    roots = [Path(directory).resolve() for directory in directories]
    for name, module in list(sys.modules.items()):
        location = getattr(module, "__file__", None)
        if location and any(Path(location).resolve().is_relative_to(root) for root in roots):
            del sys.modules[name]


def _top_level_modules(directory: Path) -> Iterator[str]:
    for entry in directory.iterdir():
        if entry.suffix == ".py" and entry.is_file():
            yield entry.stem
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            yield entry.name


def _import_paths(functions: Collection[FunctionSpec]) -> list[str]:
    """Layer directories, then code directories; fails if two of them define the same top-level module.

    The handler modules are exempt: each is imported under a name unique to its function.
    """
    directories: list[Path] = []
    handler_modules: set[str] = set()
    for function in functions:
        handler_modules.add(function.handler.rpartition(".")[0])
        for layer in function.layers:
            if layer.content_uri not in directories:
                directories.append(layer.content_uri)
    for function in functions:
        if function.code_uri not in directories:
            directories.append(function.code_uri)
    owners: dict[str, Path] = {}
    for directory in directories:
        for module in _top_level_modules(directory):
            if module in handler_modules:
                continue
            if module in owners:
                raise RuntimeError(
                    f"module {module!r} is in both {owners[module]} and {directory}; the local runtime imports all"
                    " functions into one process and cannot tell them apart"
                )
            owners[module] = directory
    return [str(directory) for directory in directories]
