"""Our real Lambda handlers, run on this machine whenever moto's Lambda is invoked.

moto 5.2.5 without Docker answers every Invoke from ``LambdaSimpleBackend.invoke`` with a canned payload. The local
stack runs moto's server in this process, and the Step Functions interpreter calls Lambda through boto3 and that
server, so replacing that one method here makes every invocation of a template function, from any client, run the
handler from the template's CodeUri, with the layers' ContentUri on the import path, a Lambda-like context and the
function's environment, and answer the way Lambda answers:

- a result: the JSON document (``null`` for None);
- an exception: header ``X-Amz-Function-Error: Unhandled`` and ``{"errorType", "errorMessage", "requestId",
  "stackTrace"}``; Step Functions takes ``errorType`` as the error name its Retry and Catch match;
- a result that is not JSON: ``Runtime.MarshalError``; a handler that cannot be imported: ``Runtime.ImportModuleError``;
- a handler still running after the template Timeout: ``Sandbox.Timedout``, and its execution environment is ended;
- an environment whose process dies (during init or an invocation): ``Runtime.ExitError``.

An init that takes longer than Lambda's init limit (10 s) is not an error in Lambda: "The Init phase is limited to 10
seconds. If all three tasks do not complete within 10 seconds, Lambda retries the Init phase at the time of the first
function invocation with the configured function timeout" (AWS Lambda Developer Guide, "Understanding the Lambda
execution environment lifecycle", https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html). So
here too: the environment is started again and its init gets the function's Timeout, which the retried init then
counts against; only if the init and the handler together outlast the Timeout does the invocation fail, with
``Sandbox.Timedout``. Step Functions names a failed Lambda task by the payload's ``errorType`` (``Lambda.Unknown``
when there is none), and the Invoke call's own failures ``Lambda.<Exception>`` ("Handle Lambda service exceptions",
https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html); the state machine retries
those platform errors (slurm_job_api.errors.LAMBDA_PLATFORM_ERROR_NAMES).

As in Lambda, each execution environment is a process of its own (:mod:`local_stack.lambda_worker`) that runs one
invocation at a time and keeps its module-level state between invocations; concurrent invocations of a function get
environments of their own, and a new environment is a cold start. So nothing a handler or a library keeps in a global
(the event handler's current request, the logger's keys, cached clients) is shared between two requests in flight or
between two functions. An environment's variables are this process's (e.g. POWERTOOLS_LOG_LEVEL), the function's own
template variables (not the other functions'), and the local cloud's endpoint, region and placeholder keys, which win
over a template value of the same name (template.yaml declares AWS_ENDPOINT_URL empty, for `sam local invoke
--env-vars`).
The environments are forked from a ``forkserver`` that has imported boto3, Pydantic and Powertools once, and those
modules of the template's layers whose import reads no variable of a function's and has no other effect
(:mod:`local_stack.layer_preload`), so a cold start costs what importing the rest of the handler's code costs. The
timeout clock starts once the environment is ready, as Lambda's init phase is not counted in the function's Timeout.
The init's own limit counts the time the environment ran or slept, not the time it waited for a CPU: a Lambda
environment has its own, this machine's may all be busy.

As Lambda's concurrency limits do, a function has at most so many environments (:class:`ConcurrencyGate`): its
``ReservedConcurrentExecutions``, else ``environments_per_function`` (DEFAULT_ENVIRONMENTS_PER_FUNCTION, this
machine's bound: an environment is a process of about 200 MB). An invocation beyond them waits, first come first
served, for one to be free; one that has waited THROTTLE_AFTER_SECONDS with none of the function's invocations
ending meanwhile is throttled: :class:`TooManyRequests` from :meth:`LambdaRuntime.invoke`, and Invoke answers 429
``TooManyRequestsException`` with Lambda's ``Reason`` (ReservedFunctionConcurrentInvocationLimitExceeded for a
function with reserved concurrency), which Step Functions names ``Lambda.TooManyRequestsException`` (the state
machine retries it). An asynchronous invocation (the Event invocation type, an EventBridge rule's target, a
schedule's) is not lost when throttled: as Lambda's event queue does, :meth:`LambdaRuntime.invoke_async` tries it
again, 1 s later and then twice as long each time up to 5 minutes, until the event is the function's
``EventInvokeConfig`` ``MaximumEventAgeInSeconds`` old (6 h by default), and only then drops it
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).

Tests inject faults with :meth:`LambdaRuntime.intercepted` (interceptors run in this process, around the call into
the environment) and :meth:`LambdaRuntime.failing_inits` (the next cold starts of a function fail in the environment,
as a runtime reports a failed init: ``Runtime.InitError``), and read :attr:`LambdaRuntime.invocations`.
"""

import json
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.awslambda.exceptions import LambdaClientError, UnknownFunctionException
from moto.awslambda_simple.models import LambdaSimpleBackend

from local_stack import lambda_worker
from local_stack.template_model import FunctionSpec, TemplateModel

logger = logging.getLogger(__name__)

LATEST = lambda_worker.LATEST
# Keys present only so that boto3 in the handlers signs requests; moto accepts any.
LOCAL_ACCESS_KEY_ID = "testing"
LOCAL_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - a placeholder for moto, not a secret
# Variables that would point boto3 somewhere else than the local cloud.
_REMOVED_VARIABLES = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")
# moto's own Invoke, which answers for functions that are not the template's.
_MOTO_INVOKE = LambdaSimpleBackend.invoke
# Imported once by the forkserver, so that every environment starts with them loaded (modules that read no
# environment variable of a function's when imported; a missing one is skipped). aws_xray_sdk.core, which the
# functions' Tracer imports, builds two botocore X-Ray clients when imported (0.3 s of CPU per cold start here); it
# reads only AWS_XRAY_* and LAMBDA_TASK_ROOT, which neither the template nor this runtime sets per function.
_PRELOADED_MODULES = (
    "local_stack.lambda_worker",
    "boto3",
    "botocore.session",
    "botocore.client",
    "pydantic",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_xray_sdk.core",
    "local_stack.forkserver_preload",  # last: the template's layer modules whose import reads nothing of a function's
)
# Lambda's limit on the init phase (importing the handler); an init still running then is retried with the Timeout.
INIT_TIMEOUT_SECONDS = 10
# What a runtime reports when its init fails for a reason of its own (the Runtime API's /runtime/init/error).
INIT_ERROR = "Runtime.InitError"
_INIT_POLL_SECONDS = 0.05
# Execution environments per function at once, for a function without ReservedConcurrentExecutions: this machine's
# bound, not Lambda's (an account's pool is 1000); each environment is a process of about 200 MB.
DEFAULT_ENVIRONMENTS_PER_FUNCTION = 4
# How long an invocation waits for an environment of its function, with none freed meanwhile, before it is throttled.
THROTTLE_AFTER_SECONDS = 20.0
ASYNC_RETRY_FIRST_SECONDS = 1.0  # a throttled asynchronous event is tried again after this, then twice as long ...
ASYNC_RETRY_MOST_SECONDS = 300.0  # ... up to this between two tries
# The Retry-After of a throttled Invoke's answer.
THROTTLED_RETRY_AFTER_SECONDS = 1
_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(list(_PRELOADED_MODULES))

Handler = Callable[[Any, "LambdaContext"], Any]
Interceptor = Callable[[Any, "LambdaContext", Handler], Any]
"""``interceptor(event, context, call_next)``: runs around the handler; call ``call_next(event, context)`` to run it
(or not), raise to make the invocation fail the way a crashing handler does."""


class LambdaContext:
    """The context object a Python Lambda handler receives; the handler gets a copy in its environment.

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

    def fields(self) -> dict[str, Any]:
        """What the environment needs to build its own copy of this context."""
        return {
            "function_name": self.function_name,
            "function_version": self.function_version,
            "invoked_function_arn": self.invoked_function_arn,
            "memory_limit_in_mb": self.memory_limit_in_mb,
            "aws_request_id": self.aws_request_id,
            "log_group_name": self.log_group_name,
            "log_stream_name": self.log_stream_name,
            "remaining_time_in_millis": self.get_remaining_time_in_millis(),
        }


@dataclass(frozen=True)
class Invocation:
    """One finished invocation, for tests: the error is the payload Lambda would return (None on success)."""

    function_logical_id: str
    request_id: str
    event: Any
    result: Any
    error: Mapping[str, Any] | None
    started_at: datetime  # when an environment of the function took it (after any wait for one)
    duration_seconds: float
    requested_at: datetime | None = None  # when Invoke was called (before any wait for an environment)


@dataclass(frozen=True)
class InvocationResult:
    """What Invoke answers: the payload bytes and, for a failed invocation, ``function_error`` ("Unhandled")."""

    payload: bytes
    function_error: str | None

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class _Outcome:
    """Filled in by the thread that runs the invocation."""

    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class RuntimeFailure(Exception):
    """An error the Lambda runtime itself reports (e.g. ``Runtime.ExitError``), not a handler exception."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class InitTimedOut(Exception):
    """The retried init did not finish within the function's Timeout: the invocation timed out (Sandbox.Timedout)."""


class FunctionFailure(Exception):
    """The handler (or its import) failed in its environment; ``payload`` is what Lambda's runtime reported."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.payload = dict(payload)


def error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    """The payload Lambda returns for an invocation that failed with ``error``."""
    if isinstance(error, FunctionFailure):
        return {**error.payload, "requestId": request_id}
    payload = lambda_worker.error_payload(error, request_id, getattr(error, "error_type", None))
    payload["stackTrace"] = [frame for frame in payload["stackTrace"] if f'"{__file__}"' not in frame]
    return payload


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


class TooManyRequests(Exception):
    """The function has no environment free within the wait: Lambda's throttle, ``TooManyRequestsException`` (429).

    ``reason`` is Lambda's: ReservedFunctionConcurrentInvocationLimitExceeded for a function with reserved
    concurrency, ConcurrentInvocationLimitExceeded for the others (their bound here is the local default).
    """

    error_type = "TooManyRequestsException"

    def __init__(self, function: FunctionSpec, bound: int) -> None:
        reserved = function.reserved_concurrent_executions is not None
        self.reason = (
            "ReservedFunctionConcurrentInvocationLimitExceeded" if reserved else "ConcurrentInvocationLimitExceeded"
        )
        super().__init__(f"Rate Exceeded. ({function.logical_id}: all {bound} execution environments stayed busy)")


class ConcurrencyGate:
    """At most ``bound`` invocations of one function at once; the others wait first come, first served.

    A waiter is throttled (:class:`TooManyRequests`) once ``throttle_after`` seconds have passed with no invocation of
    the function ending (an end hands its place to the first waiter, so a queue that moves keeps waiting).
    """

    def __init__(self, function: FunctionSpec, bound: int, throttle_after: float) -> None:
        self.function = function
        self.bound = bound
        self._throttle_after = throttle_after
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: deque[threading.Event] = deque()
        self._last_end = time.monotonic()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def enter(self) -> None:
        """Returns once the caller may run; raises :class:`TooManyRequests` if no place freed up in time."""
        with self._lock:
            if self._running < self.bound and not self._waiters:
                self._running += 1
                return
            if self.bound == 0:  # reserved concurrency 0: the function is throttled, always
                raise TooManyRequests(self.function, self.bound)
            turn = threading.Event()
            self._waiters.append(turn)
            arrived = time.monotonic()
        while True:
            with self._lock:
                patience = max(self._last_end, arrived) + self._throttle_after - time.monotonic()
            if turn.wait(max(patience, 0.0)):
                return
            with self._lock:
                if turn.is_set():
                    return  # handed a place just as the wait ran out
                if max(self._last_end, arrived) + self._throttle_after <= time.monotonic():
                    self._waiters.remove(turn)
                    raise TooManyRequests(self.function, self.bound)

    def leave(self) -> None:
        """The caller's invocation ended: its place goes to the first waiter, if any."""
        with self._lock:
            self._last_end = time.monotonic()
            if self._waiters:
                self._waiters.popleft().set()  # the place passes on; the running count stays
            else:
                self._running -= 1


class ExecutionEnvironment:
    """One execution environment of a function: a process with the handler imported, one invocation at a time.

    ``suppressed_init_seconds``: how long an init that outlasted ``init_timeout`` took when retried; the first
    invocation counts it against the function's Timeout (see the module docstring).
    """

    def __init__(
        self,
        function: FunctionSpec,
        import_paths: list[str],
        environment: Mapping[str, str],
        number: int,
        *,
        init_timeout: float = INIT_TIMEOUT_SECONDS,
        init_failure: str | None = None,
    ):
        self.function = function
        self.suppressed_init_seconds = 0.0
        self._worker_args = (function.handler, import_paths, dict(environment), init_failure)
        self._name = f"lambda-{function.logical_id}-{number}"
        self._state_lock = threading.Lock()
        self._busy = False
        self._ended = False
        if self._initialized(self._start(), init_timeout):
            return
        self._stop_process()  # Lambda retries the init at the first invocation, with the function's Timeout
        retried_at = time.monotonic()
        if not self._initialized(self._start(), function.timeout):
            self.end()
            raise InitTimedOut(f"the init did not finish within the function's Timeout ({function.timeout} s)")
        self.suppressed_init_seconds = time.monotonic() - retried_at

    def _start(self) -> float:
        """Starts the environment's process; returns when its init started (just before the fork: a process whose
        init ends before the parent looks at it must not look instant)."""
        started = time.monotonic()
        self._connection, child = _FORKSERVER.Pipe()
        self._process = _FORKSERVER.Process(
            target=lambda_worker.serve, args=(child, *self._worker_args), name=self._name, daemon=True
        )
        self._process.start()
        child.close()
        return started

    def _initialized(self, init_started: float, timeout: float) -> bool:
        """Waits up to ``timeout`` for the init that started at ``init_started``; False if it is still running;
        raises if it failed."""
        try:
            while not self._connection.poll(_INIT_POLL_SECONDS):
                # The init's own time, as Lambda counts it: not the time its process waited for a CPU on this machine.
                if self._init_seconds(init_started) > timeout:
                    return False
            kind, payload = self._connection.recv()
        except (EOFError, OSError) as error:
            self.end()
            message = f"the execution environment ended during init: {error!r}"
            raise RuntimeFailure("Runtime.ExitError", message) from error
        except BaseException:
            self.end()
            raise
        if kind != "ready":
            self.end()
            raise FunctionFailure(payload)
        # An init that ended between two looks at the connection may still have outlasted the limit (the looks are
        # _INIT_POLL_SECONDS apart, longer than a short limit): it counts as over it, as Lambda would count it.
        return self._init_seconds(init_started) <= timeout

    def _stop_process(self) -> None:
        self._process.kill()
        self._process.join(5)
        self._connection.close()

    def _init_seconds(self, started: float) -> float:
        """The init's time as Lambda would count it: the time since ``started`` (just before the fork), less the time
        the environment's process waited for a CPU (its whole life is the init)."""
        elapsed = time.monotonic() - started
        waited_ns = self._waited_ns()
        if waited_ns is None:
            return elapsed  # the process has ended (its end is noticed on the connection), or no schedstat
        return elapsed - waited_ns / 1e9

    def _waited_ns(self) -> int | None:
        """How long the environment's process has been runnable but waiting for a CPU (Linux's
        /proc/<pid>/schedstat: time on a CPU, time runnable but waiting, in ns); None if it cannot be read."""
        try:
            return int(Path(f"/proc/{self._process.pid}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return None

    @property
    def usable(self) -> bool:
        return not self._ended and self._process.is_alive()

    @property
    def pid(self) -> int:
        return self._process.pid or 0

    def call(self, event: Any, context: LambdaContext) -> Any:
        """Run the handler in the environment; its JSON result, or :class:`FunctionFailure`."""
        with self._state_lock:
            self._busy = True
        try:
            self._connection.send((event, context.fields()))
            kind, payload = self._connection.recv()
        except (EOFError, OSError) as error:
            self._ended = True
            raise RuntimeFailure("Runtime.ExitError", "the execution environment ended before it answered") from error
        finally:
            with self._state_lock:
                self._busy = False
                if self._ended:
                    self._connection.close()
        if kind == "result":
            return json.loads(payload)
        raise FunctionFailure(payload)

    def end(self) -> None:
        """Stop the process (Lambda ends the environment at a timeout; the runtime ends all when uninstalled).

        A call in flight then sees the end of the connection and closes it; otherwise it is closed here.
        """
        with self._state_lock:
            self._ended = True
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        with self._state_lock:
            if not self._busy:
                self._connection.close()


class LambdaRuntime:
    """Runs the template's functions on this machine; :meth:`install` routes moto's Invoke here."""

    _install_lock = threading.Lock()
    _installed: "LambdaRuntime | None" = None

    def __init__(
        self,
        model: TemplateModel,
        *,
        endpoint_url: str,
        init_timeout_seconds: float = INIT_TIMEOUT_SECONDS,
        environments_per_function: int | None = DEFAULT_ENVIRONMENTS_PER_FUNCTION,
        throttle_after_seconds: float = THROTTLE_AFTER_SECONDS,
    ) -> None:
        """``environments_per_function`` bounds the environments of a function without ReservedConcurrentExecutions
        (None: no bound, one environment per concurrent invocation); ``throttle_after_seconds``: see
        :class:`ConcurrencyGate`."""
        self.init_timeout_seconds = init_timeout_seconds
        self._functions = model.functions
        self._gates = {
            logical_id: ConcurrencyGate(function, bound, throttle_after_seconds)
            for logical_id, function in self._functions.items()
            if (bound := _environment_bound(function, environments_per_function)) is not None
        }
        self._by_name = {function.name: function for function in self._functions.values()}
        self._base_environment = {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_DEFAULT_REGION": model.region,
            "AWS_REGION": model.region,
            "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
        }
        self._import_paths = {logical_id: _import_paths(function) for logical_id, function in self._functions.items()}
        self._lock = threading.Lock()
        self._interceptors: dict[str, list[Interceptor]] = {}
        self._invocations: list[Invocation] = []
        self._idle: dict[str, list[ExecutionEnvironment]] = {}
        self._environments: list[ExecutionEnvironment] = []
        self._environments_created: dict[str, int] = {}
        self._init_faults: dict[str, list[str]] = {}  # error types the next cold starts of a function fail with
        self._init_faults_injected: dict[str, int] = {}
        self._inits_retried: dict[str, int] = {}
        self._throttles: dict[str, int] = {}
        self._async_dropped: dict[str, int] = {}
        self._retrying = threading.Event()  # set: throttled asynchronous events are dropped, not retried
        self._peak_environments: dict[str, int] = {}
        self._starting: dict[str, int] = {}  # environments in their init, not yet in _environments
        self._accepting = True  # until uninstalled

    # ----- installation -----------------------------------------------------------------------------------------

    def install(self) -> None:
        """Make moto's Invoke run our handlers."""
        with LambdaRuntime._install_lock:
            if LambdaRuntime._installed is not None:
                raise RuntimeError("a LambdaRuntime is already installed in this process; uninstall it first")
            runtime = self

            def invoke(backend: LambdaSimpleBackend, *args: Any, **kwargs: Any) -> str | bytes | None:
                return runtime._moto_invoke(backend, *args, **kwargs)

            LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
            LambdaRuntime._installed = self

    def stop_retrying(self) -> None:
        """Throttled asynchronous events are dropped from now on (the cloud is stopping), those waiting to be tried
        again at once."""
        self._retrying.set()

    def uninstall(self) -> None:
        """Undo :meth:`install` and end every execution environment; the runtime runs nothing afterwards."""
        self.stop_retrying()
        with LambdaRuntime._install_lock:
            if LambdaRuntime._installed is self:
                LambdaSimpleBackend.invoke = _MOTO_INVOKE  # type: ignore[method-assign]
                LambdaRuntime._installed = None
        with self._lock:
            self._accepting = False
            environments, self._environments = self._environments, []
            self._idle.clear()
        for environment in environments:
            environment.end()

    # ----- test hooks -------------------------------------------------------------------------------------------

    @contextmanager
    def intercepted(self, function_logical_id: str, interceptor: Interceptor) -> Iterator[None]:
        """Run ``interceptor`` around every invocation of the function that starts inside the ``with`` block.

        Interceptors nest: the one whose block was entered first is the outermost.
        """
        self._function(function_logical_id)
        with self._lock:
            self._interceptors.setdefault(function_logical_id, []).append(interceptor)
        try:
            yield
        finally:
            with self._lock:
                self._interceptors[function_logical_id].remove(interceptor)

    @contextmanager
    def failing_inits(self, function_logical_id: str, count: int, error_type: str = INIT_ERROR) -> Iterator[None]:
        """In the ``with`` block, the next ``count`` cold starts of the function fail in their new environment, as a
        runtime reports a failed init (the invocation that needed the environment fails with ``error_type``)."""
        self._function(function_logical_id)
        with self._lock:
            self._init_faults[function_logical_id] = [error_type] * count
        try:
            yield
        finally:
            with self._lock:
                self._init_faults.pop(function_logical_id, None)

    def inits_retried(self, function_logical_id: str) -> int:
        """How many cold starts of the function outlasted the init limit and had their init retried."""
        with self._lock:
            return self._inits_retried.get(function_logical_id, 0)

    def init_faults_injected(self, function_logical_id: str) -> int:
        """How many cold starts of the function :meth:`failing_inits` has failed."""
        with self._lock:
            return self._init_faults_injected.get(function_logical_id, 0)

    @property
    def invocations(self) -> tuple[Invocation, ...]:
        """The finished invocations, in the order they finished."""
        with self._lock:
            return tuple(self._invocations)

    def invocations_of(self, function_logical_id: str) -> tuple[Invocation, ...]:
        return tuple(entry for entry in self.invocations if entry.function_logical_id == function_logical_id)

    def environments_created(self, function_logical_id: str) -> int:
        """How many execution environments (cold starts) the function has had."""
        with self._lock:
            return self._environments_created.get(function_logical_id, 0)

    def live_environments(self, function_logical_id: str) -> int:
        """How many execution environments of the function are up (idle or running an invocation)."""
        with self._lock:
            return self._live_environments(function_logical_id)

    def _live_environments(self, function_logical_id: str) -> int:
        environments = [env for env in self._environments if env.function.logical_id == function_logical_id]
        return sum(environment.usable for environment in environments)

    def peak_environments(self, function_logical_id: str) -> int:
        """The most execution environments of the function that were up at once, those in their init included
        (counted at each cold start)."""
        with self._lock:
            return self._peak_environments.get(function_logical_id, 0)

    def environment_pids(self) -> list[int]:
        """The process ids of the environments that are up, of every function (e.g. to measure their memory)."""
        with self._lock:
            return [env.pid for env in self._environments if env.usable]

    def environment_bound(self, function_logical_id: str) -> int | None:
        """At most this many environments of the function at once (None: no bound)."""
        gate = self._gates.get(self._function(function_logical_id).logical_id)
        return gate.bound if gate is not None else None

    def waiting(self, function_logical_id: str) -> int:
        """How many invocations of the function wait for one of its environments."""
        gate = self._gates.get(self._function(function_logical_id).logical_id)
        return gate.waiting if gate is not None else 0

    def throttles(self, function_logical_id: str) -> int:
        """How many invocations of the function were throttled (:class:`TooManyRequests`)."""
        with self._lock:
            return self._throttles.get(function_logical_id, 0)

    def async_dropped(self, function_logical_id: str) -> int:
        """How many asynchronous events of the function were dropped, throttled until too old (or at the stop)."""
        with self._lock:
            return self._async_dropped.get(function_logical_id, 0)

    # ----- invoking ---------------------------------------------------------------------------------------------

    def invoke(
        self, function_logical_id: str, event: Any, *, invoked_function_arn: str | None = None
    ) -> InvocationResult:
        """Run the function's handler synchronously, as Lambda's RequestResponse Invoke does.

        Waits for one of the function's environments if all are busy; raises :class:`TooManyRequests` if none
        freed up in time (nothing ran)."""
        function = self._function(function_logical_id)
        requested_at = datetime.now(UTC)
        event = json.loads(json.dumps(event))  # the handler gets its own copy, as if it came over the wire
        gate = self._gates.get(function_logical_id)
        if gate is None:
            return self._invoke(function, event, invoked_function_arn, requested_at)
        try:
            gate.enter()
        except TooManyRequests:
            with self._lock:
                self._throttles[function_logical_id] = self._throttles.get(function_logical_id, 0) + 1
            logger.info("%s throttled: its %d environments stayed busy", function_logical_id, gate.bound)
            raise
        try:
            return self._invoke(function, event, invoked_function_arn, requested_at)
        finally:
            gate.leave()

    def invoke_async(
        self, function_logical_id: str, event: Any, *, invoked_function_arn: str | None = None
    ) -> InvocationResult | None:
        """Run the function's handler as Lambda runs an asynchronous event: a throttled try is repeated, 1 s later
        and then twice as long each time (at most ASYNC_RETRY_MOST_SECONDS), while the event is younger than the
        function's MaximumEventAgeInSeconds; None when it was dropped."""
        function = self._function(function_logical_id)
        received = time.monotonic()
        pause = ASYNC_RETRY_FIRST_SECONDS
        while True:
            try:
                return self.invoke(function_logical_id, event, invoked_function_arn=invoked_function_arn)
            except TooManyRequests:
                too_old = time.monotonic() + pause - received > function.maximum_event_age_seconds
                if too_old or self._retrying.wait(pause):
                    with self._lock:
                        self._async_dropped[function_logical_id] = self._async_dropped.get(function_logical_id, 0) + 1
                    logger.warning("an asynchronous event of %s was throttled until dropped", function_logical_id)
                    return None
                pause = min(2 * pause, ASYNC_RETRY_MOST_SECONDS)

    def _invoke(
        self, function: FunctionSpec, event: Any, invoked_function_arn: str | None, requested_at: datetime
    ) -> InvocationResult:
        function_logical_id = function.logical_id
        request_id = str(uuid.uuid4())
        started_at = datetime.now(UTC)
        started = time.monotonic()
        outcome = _Outcome()
        environment: ExecutionEnvironment | None = None
        try:
            environment = self._checkout(function)
        except InitTimedOut:
            finished = False  # the retried init used up the function's Timeout
        except Exception as error:  # noqa: BLE001 - an init failure is this invocation's error
            outcome.error = error
            finished = True
        else:
            # The init phase is not counted in the Timeout, except an init retried after it outlasted the init limit.
            budget = function.timeout - environment.suppressed_init_seconds
            environment.suppressed_init_seconds = 0.0
            deadline = time.monotonic() + budget
            context = LambdaContext(function, invoked_function_arn or function.arn, request_id, deadline)
            worker = threading.Thread(
                target=self._run,
                args=(function, environment, event, context, outcome),
                name=f"lambda-{function.logical_id}-{request_id[:8]}",
                daemon=True,
            )
            worker.start()
            finished = outcome.done.wait(budget)
            self._release(environment, timed_out=not finished)
        duration = time.monotonic() - started
        result, error, payload = _response(outcome if finished else None, function, request_id)
        with self._lock:
            self._invocations.append(
                Invocation(function_logical_id, request_id, event, result, error, started_at, duration, requested_at)
            )
        if error is not None:
            logger.info("%s %s failed: %s", function_logical_id, request_id, error["errorType"])
        return InvocationResult(payload, "Unhandled" if error is not None else None)

    def _run(
        self,
        function: FunctionSpec,
        environment: ExecutionEnvironment,
        event: Any,
        context: LambdaContext,
        outcome: _Outcome,
    ) -> None:
        try:
            call: Handler = environment.call
            with self._lock:
                interceptors = list(self._interceptors.get(function.logical_id, ()))
            for interceptor in reversed(interceptors):
                call = _wrap(interceptor, call)
            outcome.result = call(event, context)
        except BaseException as error:  # noqa: BLE001 - Lambda reports whatever escapes the handler
            outcome.error = error
        finally:
            outcome.done.set()

    def _checkout(self, function: FunctionSpec) -> ExecutionEnvironment:
        """An idle execution environment of the function, or a new one (a cold start)."""
        with self._lock:
            if not self._accepting:
                raise RuntimeFailure("Runtime.Unavailable", "the local Lambda runtime is not installed")
            idle = self._idle.get(function.logical_id)
            while idle:
                environment = idle.pop()
                if environment.usable:
                    return environment
                self._environments.remove(environment)
            number = self._environments_created.get(function.logical_id, 0)
            self._environments_created[function.logical_id] = number + 1
            faults = self._init_faults.get(function.logical_id)
            init_failure = faults.pop() if faults else None
            if init_failure:
                injected = self._init_faults_injected
                injected[function.logical_id] = injected.get(function.logical_id, 0) + 1
            starting = self._starting
            starting[function.logical_id] = starting.get(function.logical_id, 0) + 1
            peak = self._peak_environments
            up = self._live_environments(function.logical_id) + starting[function.logical_id]
            peak[function.logical_id] = max(peak.get(function.logical_id, 0), up)
        # The local cloud's endpoint, region and keys win over the template's values: the template declares
        # AWS_ENDPOINT_URL empty (unset, on AWS) so that a local run may set it, as `sam local invoke --env-vars` does.
        variables = {
            **{name: value for name, value in os.environ.items() if name not in _REMOVED_VARIABLES},
            **function.environment,
            **self._base_environment,
        }
        try:
            environment = ExecutionEnvironment(
                function,
                self._import_paths[function.logical_id],
                variables,
                number,
                init_timeout=self.init_timeout_seconds,
                init_failure=init_failure,
            )
        finally:
            with self._lock:
                starting[function.logical_id] -= 1
        with self._lock:
            if environment.suppressed_init_seconds:
                self._inits_retried[function.logical_id] = self._inits_retried.get(function.logical_id, 0) + 1
            if self._accepting:
                self._environments.append(environment)
                return environment
        environment.end()
        raise RuntimeFailure("Runtime.Unavailable", "the local Lambda runtime was uninstalled")

    def _release(self, environment: ExecutionEnvironment, *, timed_out: bool) -> None:
        """After an invocation: a timed-out environment is ended (as Lambda does), a usable one waits for the next."""
        if timed_out:
            environment.end()
        with self._lock:
            if environment.usable and self._accepting:
                self._idle.setdefault(environment.function.logical_id, []).append(environment)
            elif environment in self._environments:
                self._environments.remove(environment)

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
                target=self._invoke_event,
                args=(function.logical_id, event),
                kwargs={"invoked_function_arn": invoked_arn},
                name=f"lambda-event-{function.logical_id}",
                daemon=True,
            ).start()
            return b""
        try:
            result = self.invoke(function.logical_id, event, invoked_function_arn=invoked_arn)
        except TooManyRequests as throttled:
            raise ThrottledInvoke(throttled) from throttled
        if result.function_error:
            response_headers["x-amz-function-error"] = result.function_error
        response_headers["x-amz-executed-version"] = LATEST
        return result.payload

    def _invoke_event(self, function_logical_id: str, event: Any, *, invoked_function_arn: str) -> None:
        """An asynchronous invocation (Event): retried while throttled (:meth:`invoke_async`)."""
        self.invoke_async(function_logical_id, event, invoked_function_arn=invoked_function_arn)

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


class ThrottledInvoke(LambdaClientError):
    """What the Invoke API answers for a throttled invocation: HTTP 429 ``TooManyRequestsException`` with Lambda's
    ``Reason`` and a ``Retry-After`` header; Step Functions names it ``Lambda.TooManyRequestsException``."""

    code = 429

    def __init__(self, throttled: TooManyRequests) -> None:
        super().__init__(TooManyRequests.error_type, "Rate Exceeded.")
        self.description = json.dumps(
            {"__type": self.error_type, "Reason": throttled.reason, "Type": "User", "message": self.message}
        )

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), ("Retry-After", str(THROTTLED_RETRY_AFTER_SECONDS))]


def _environment_bound(function: FunctionSpec, default: int | None) -> int | None:
    """The function's ReservedConcurrentExecutions if it has one, else the local default (None: no bound)."""
    if function.reserved_concurrent_executions is not None:
        return function.reserved_concurrent_executions
    return default


def _wrap(interceptor: Interceptor, call_next: Handler) -> Handler:
    def call(event: Any, context: LambdaContext) -> Any:
        return interceptor(event, context, call_next)

    return call


def _import_paths(function: FunctionSpec) -> list[str]:
    """The function's import path, as in Lambda: its code (/var/task) first, then its layers (/opt/python)."""
    directories = [function.code_uri, *(layer.content_uri for layer in function.layers)]
    return [str(directory) for directory in dict.fromkeys(directories)]
