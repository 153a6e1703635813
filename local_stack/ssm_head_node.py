"""The local head node behind SSM: moto's SendCommand really executed on this machine.

moto 5.2.5 answers SendCommand with an immediate ``Success`` and empty output, and has neither CancelCommand nor
ListCommandInvocations. The local stack runs moto's server in this Python process, so patching moto's SSM classes here
changes what every client of that server sees. :class:`LocalHeadNode` does that: AWS-RunShellScript commands sent to an
instance id registered with it run on this machine the way the SSM agent runs them, with the statuses, limits and
quirks that clients meet on AWS (see docs/architecture.md and docs/facts.md, "AWS Systems Manager Run Command"):

- an invocation is ``Pending`` until a worker picks it up, then ``InProgress``, then ``Success`` (exit 0), ``Failed``
  (non-zero exit), ``TimedOut`` (the document's ``executionTimeout`` passed: the process group is killed) or
  ``Cancelled`` (CancelCommand);
- GetCommandInvocation answers ``InvocationDoesNotExist`` for a short moment after SendCommand, returns output only
  once the command has ended, and truncates it to the first 24,000 (stdout) and 8,000 (stderr) characters;
- injected faults (:class:`SsmFaults`): API throttling and an unreachable instance (delivery timeout).

Commands sent to instances that are not registered keep moto's behaviour.
"""

import contextlib
import dataclasses
import datetime
import logging
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from moto.core.responses import ActionResult, EmptyResult
from moto.ssm.exceptions import SSMException
from moto.ssm.models import Command, SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from local_stack.slurm_cluster import head_node_state_directory

logger = logging.getLogger(__name__)

RUN_SHELL_SCRIPT_DOCUMENT = "AWS-RunShellScript"
RUN_SHELL_SCRIPT_PLUGIN = "aws:runShellScript"

# GetCommandInvocation limits (API reference: StandardOutputContent / StandardErrorContent).
STDOUT_CONTENT_LIMIT = 24_000
STDERR_CONTENT_LIMIT = 8_000
# ListCommandInvocations CommandPlugin.Output holds at most 2,500 characters.
PLUGIN_OUTPUT_LIMIT = 2_500
PLUGIN_OUTPUT_ERROR_HEADER = "\n----------ERROR-------\n"

# AWS-RunShellScript's executionTimeout parameter: default 3,600 s, allowed 1..172,800 s.
DEFAULT_EXECUTION_TIMEOUT_SECONDS = 3_600
MAX_EXECUTION_TIMEOUT_SECONDS = 172_800
# The agent reports this code when it killed the command (timeout or cancel): 128 + SIGKILL.
STOPPED_PREEMPTIVELY_EXIT_CODE = 137
# The agent reports -1 for a script that has not ended, or that died from a signal the agent did not send.
NO_EXIT_CODE = -1

AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The head-node program's STATE_DIRECTORY_VARIABLE (functions/shared/slurm_job_api/head_node_program.py): the directory
# where it keeps the product's bookkeeping, instead of /var/lib/slurm-job-api.
STATE_DIRECTORY_VARIABLE = "SLURM_JOB_API_HEAD_NODE_STATE_DIRECTORY"
SCRIPT_NAME = "_script.sh"

UNSUPPORTED_DOCUMENT_DETAILS = "UnsupportedDocument: the local head node runs only AWS-RunShellScript"
SHUT_DOWN_DETAILS = "Cancelled: the local head node shut down"


class InvocationStatus(StrEnum):
    """GetCommandInvocation ``Status`` values (CommandInvocationStatus) this head node produces."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCESS = "Success"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"


TERMINAL_STATUSES = frozenset(
    {InvocationStatus.SUCCESS, InvocationStatus.FAILED, InvocationStatus.TIMED_OUT, InvocationStatus.CANCELLED}
)
DELIVERY_TIMED_OUT = "DeliveryTimedOut"
EXECUTION_TIMED_OUT = "ExecutionTimedOut"


def _throttling_error() -> SSMException:
    """The error AWS returns under API throttling: HTTP 400, code ThrottlingException."""
    return SSMException("ThrottlingException", "Rate exceeded")


def _invocation_does_not_exist() -> SSMException:
    return SSMException(
        "InvocationDoesNotExist",
        "An error occurred (InvocationDoesNotExist) when calling the GetCommandInvocation operation",
    )


@dataclasses.dataclass(frozen=True)
class FaultCounters:
    """How many faults :class:`SsmFaults` has injected so far."""

    throttled_send_command: int = 0
    throttled_get_command_invocation: int = 0
    held_while_unreachable: int = 0
    delivery_timeouts: int = 0
    held_by_action: int = 0


# The operations the throttle fault applies to, with the FaultCounters field that counts them.
THROTTLE_COUNTER_BY_OPERATION = {
    "SendCommand": "throttled_send_command",
    "GetCommandInvocation": "throttled_get_command_invocation",
}


class SsmFaults:
    """Faults injected into the SSM API and the instance; all off by default, settable at run time, thread-safe.

    ``throttle_rate``: the fraction of SendCommand and GetCommandInvocation calls that fail with ThrottlingException,
    drawn from a ``random.Random`` seeded with ``seed`` so a run is reproducible.
    ``unreachable``: while set, new commands are not delivered; they stay Pending until the fault clears (then they run)
    or their SendCommand ``TimeoutSeconds`` passes (then they end TimedOut / DeliveryTimedOut).
    ``held_action``: while set to a head-node action (e.g. "sweep"), only the commands of that action (their comment
    is "slurm-job-api <action> ...") are held so; every other command is delivered as usual.
    """

    def __init__(self, *, seed: int = 0, on_change: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._throttle_rate = 0.0
        self._unreachable = False
        self._held_action: str | None = None
        self._counters = FaultCounters()
        self._on_change = on_change

    @property
    def throttle_rate(self) -> float:
        with self._lock:
            return self._throttle_rate

    @throttle_rate.setter
    def throttle_rate(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"throttle_rate must be in [0, 1], not {rate}")
        with self._lock:
            self._throttle_rate = rate

    @property
    def unreachable(self) -> bool:
        with self._lock:
            return self._unreachable

    @unreachable.setter
    def unreachable(self, value: bool) -> None:
        with self._lock:
            self._unreachable = value
        # Called without our lock held: the listener takes the head node's lock, which may call back into us.
        if self._on_change is not None:
            self._on_change()

    @property
    def held_action(self) -> str | None:
        with self._lock:
            return self._held_action

    @held_action.setter
    def held_action(self, action: str | None) -> None:
        with self._lock:
            self._held_action = action
        if self._on_change is not None:
            self._on_change()

    def holds(self, comment: str) -> bool:
        """True while the commands with this comment are held (``unreachable``, or ``held_action`` is theirs)."""
        with self._lock:
            if self._unreachable:
                return True
            return self._held_action is not None and comment.split()[:2] == ["slurm-job-api", self._held_action]

    def counters(self) -> FaultCounters:
        with self._lock:
            return self._counters

    def raise_if_throttled(self, operation: str) -> None:
        """Raise ThrottlingException for this call of ``operation`` if the throttle fault picks it."""
        counter = THROTTLE_COUNTER_BY_OPERATION[operation]
        with self._lock:
            if self._throttle_rate == 0.0 or self._random.random() >= self._throttle_rate:
                return
            self._count(counter)
        raise _throttling_error()

    def record_held_command(self) -> None:
        with self._lock:
            self._count("held_while_unreachable" if self._unreachable else "held_by_action")

    def record_delivery_timeout(self) -> None:
        with self._lock:
            self._count("delivery_timeouts")

    def _count(self, field: str) -> None:
        self._counters = dataclasses.replace(self._counters, **{field: getattr(self._counters, field) + 1})


@dataclasses.dataclass(frozen=True)
class CommandRun:
    """One invocation that ended on the local head node (whether or not its script ran).

    ``pid`` is the script's process (also its process group), None if it never started; ``requested_at`` is moto's
    naive UTC time of SendCommand; ``started_at``/``ended_at`` are aware UTC times.
    """

    command_id: str
    instance_id: str
    document_name: str
    status: str
    status_details: str
    response_code: int
    pid: int | None
    requested_at: datetime.datetime
    started_at: datetime.datetime | None
    ended_at: datetime.datetime
    elapsed_seconds: float | None


@dataclasses.dataclass(frozen=True)
class ShellScriptRequest:
    """The parameters of an AWS-RunShellScript command."""

    script: str
    execution_timeout_seconds: int
    working_directory: str | None


def parse_run_shell_script_parameters(parameters: Mapping[str, list[str]]) -> ShellScriptRequest:
    """Check AWS-RunShellScript parameters as SendCommand does; raise InvalidParameters when they do not fit."""
    unknown = sorted(set(parameters) - {"commands", "executionTimeout", "workingDirectory"})
    if unknown:
        raise SSMException("InvalidParameters", f"document {RUN_SHELL_SCRIPT_DOCUMENT} has no parameter {unknown[0]}")
    commands = parameters.get("commands") or []
    if not commands:
        raise SSMException("InvalidParameters", "parameter commands is required")
    timeout_text = _single_value(parameters, "executionTimeout", str(DEFAULT_EXECUTION_TIMEOUT_SECONDS))
    if not timeout_text.isdigit() or not 1 <= int(timeout_text) <= MAX_EXECUTION_TIMEOUT_SECONDS:
        raise SSMException(
            "InvalidParameters",
            f"executionTimeout must be an integer from 1 to {MAX_EXECUTION_TIMEOUT_SECONDS}, not {timeout_text!r}",
        )
    working_directory = _single_value(parameters, "workingDirectory", "") or None
    return ShellScriptRequest("\n".join(commands), int(timeout_text), working_directory)


def _single_value(parameters: Mapping[str, list[str]], name: str, default: str) -> str:
    """A String document parameter (SendCommand sends every parameter as a list of strings)."""
    values = parameters.get(name) or [default]
    if len(values) != 1:
        raise SSMException("InvalidParameters", f"parameter {name} takes one value, not {len(values)}")
    return values[0]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _iso8601(moment: datetime.datetime | None) -> str:
    """The ISO 8601 form GetCommandInvocation uses, e.g. ``2024-05-04T10:11:12.345Z``; empty when unknown."""
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _read_prefix(path: Path, limit: int) -> str:
    """The first ``limit`` characters of a file written by the command (UTF-8, undecodable bytes replaced)."""
    with path.open("rb") as stream:
        # A UTF-8 character is at most 4 bytes, so this many bytes always hold `limit` characters.
        data = stream.read(limit * 4)
    return data.decode("utf-8", errors="replace")[:limit]


def _kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group, as the agent does, while its leader has not been reaped yet."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclasses.dataclass(eq=False)
class _Invocation:
    """The live state of one command on one registered instance; guarded by the head node's lock."""

    command: Command
    instance_id: str
    visible_at: float  # time.monotonic(): GetCommandInvocation knows the invocation from then on
    delivery_deadline: float  # time.monotonic(): undelivered after this, it ends DeliveryTimedOut
    status: InvocationStatus = InvocationStatus.PENDING
    status_details: str = InvocationStatus.PENDING.value
    response_code: int = NO_EXIT_CODE
    stdout: str = ""
    stderr: str = ""
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None
    started_monotonic: float | None = None
    ended_monotonic: float | None = None
    process: subprocess.Popen[bytes] | None = None
    cancel_requested: bool = False
    held: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def elapsed_seconds(self, now: float) -> float | None:
        if self.started_monotonic is None:
            return None
        return (self.ended_monotonic if self.ended_monotonic is not None else now) - self.started_monotonic


class LocalHeadNode:
    """Runs AWS-RunShellScript commands sent through moto's SSM to registered instance ids on this machine.

    ``env`` is added to the agent-like environment of every command (the local stack passes SLURM_CONF there), after
    ``state_directory``: where the head-node program keeps the product's bookkeeping (by default one directory per
    checkout, :func:`local_stack.slurm_cluster.head_node_state_directory`, so that checkouts never share it);
    ``max_workers`` commands run at once, later ones stay Pending; ``shell`` runs the script file;
    ``invocation_visibility_delay`` is how long GetCommandInvocation answers InvocationDoesNotExist after SendCommand;
    ``fault_seed`` seeds the throttling fault.
    """

    _install_lock = threading.Lock()
    _installed: "LocalHeadNode | None" = None

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        state_directory: Path | None = None,
        max_workers: int = 16,
        shell: str = "/bin/bash",
        invocation_visibility_delay: float = 0.2,
        fault_seed: int = 0,
    ) -> None:
        self.state_directory = state_directory or head_node_state_directory()
        self._env = dict(env or {})
        self._shell = shell
        self._visibility_delay = invocation_visibility_delay
        self.faults = SsmFaults(seed=fault_seed, on_change=self._wake_dispatcher)
        self._state = threading.Condition()
        self._instances: set[str] = set()
        self._invocations: WeakKeyDictionary[Command, dict[str, _Invocation]] = WeakKeyDictionary()
        self._undelivered: list[tuple[_Invocation, ShellScriptRequest]] = []
        self._live: set[_Invocation] = set()
        self._runs: list[CommandRun] = []
        self._stopping = False
        # Both start their threads only when used: the executor on the first command, the dispatcher in install().
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ssm-head-node")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="ssm-head-node-dispatch", daemon=True)
        self._saved_attributes: dict[tuple[type, str], Any] = {}

    # ----- public interface -------------------------------------------------------------------------------------

    def register_instance(self, instance_id: str) -> None:
        """From now on, SendCommand to ``instance_id`` runs on this machine."""
        with self._state:
            self._instances.add(instance_id)

    @property
    def commands_run(self) -> tuple[CommandRun, ...]:
        """The invocations that have ended so far, in the order they ended."""
        with self._state:
            return tuple(self._runs)

    def install(self) -> None:
        """Patch moto's SSM classes so that this head node serves them. Calling it again does nothing."""
        with LocalHeadNode._install_lock:
            if LocalHeadNode._installed is self:
                return
            if self._stopping:
                raise RuntimeError("this LocalHeadNode has been shut down")
            if LocalHeadNode._installed is not None:
                raise RuntimeError("another LocalHeadNode is installed; shut it down first")
            self._dispatcher.start()
            for (owner, name), replacement in self._patches().items():
                self._saved_attributes[owner, name] = owner.__dict__.get(name)
                setattr(owner, name, replacement)
            LocalHeadNode._installed = self

    def shutdown(self, wait: bool = True) -> None:
        """Restore moto, cancel what has not ended (killing running commands) and stop the worker threads."""
        with LocalHeadNode._install_lock:
            if LocalHeadNode._installed is self:
                for (owner, name), saved in self._saved_attributes.items():
                    if saved is None:
                        delattr(owner, name)
                    else:
                        setattr(owner, name, saved)
                self._saved_attributes.clear()
                LocalHeadNode._installed = None
        with self._state:
            self._stopping = True
            for invocation in list(self._live):
                self._cancel_locked(invocation, details=SHUT_DOWN_DETAILS)
            self._state.notify_all()
        if self._dispatcher.is_alive():
            self._dispatcher.join()
        self._executor.shutdown(wait=wait, cancel_futures=True)

    # ----- moto patches -----------------------------------------------------------------------------------------

    def _patches(self) -> dict[tuple[type, str], Any]:
        """The attributes of moto's classes that this head node replaces or adds, by (class, name)."""
        node = self
        original_send_command = SimpleSystemManagerBackend.send_command
        original_get_command_invocation = SimpleSystemManagerBackend.get_command_invocation
        original_response_object = Command.response_object
        original_instance_ids_from_targets = Command._get_instance_ids_from_targets

        def send_command(backend: SimpleSystemManagerBackend, *args: Any, **kwargs: Any) -> Command:
            node.faults.raise_if_throttled("SendCommand")
            command = original_send_command(backend, *args, **kwargs)
            node._accept_command(backend, command)
            return command

        def get_command_invocation(
            backend: SimpleSystemManagerBackend, command_id: str, instance_id: str, plugin_name: str | None
        ) -> dict[str, Any]:
            node.faults.raise_if_throttled("GetCommandInvocation")
            command = backend.get_command_by_id(command_id)
            response = node._invocation_response(command, instance_id, plugin_name)
            if response is None:
                return original_get_command_invocation(backend, command_id, instance_id, plugin_name)
            return response

        def instance_ids_from_targets(command: Command) -> list[str]:
            # moto 5.2.5 filters EC2 instances by the targets even when there are none, so a command sent with
            # InstanceIds alone also goes to every instance in the region. On AWS, no targets means no instances.
            return original_instance_ids_from_targets(command) if command.targets else []

        def response_object(command: Command) -> dict[str, Any]:
            response = original_response_object(command)
            node._overlay_command_status(command, response)
            return response

        def cancel_command(response: SimpleSystemManagerResponse) -> EmptyResult:
            command = response.ssm_backend.get_command_by_id(response._get_param("CommandId"))
            node._cancel_command(command, response._get_param("InstanceIds") or None)
            return EmptyResult()

        def list_command_invocations(response: SimpleSystemManagerResponse) -> ActionResult:
            if response._get_param("Filters"):
                raise SSMException("ValidationException", "the local head node does not support Filters here")
            command_id = response._get_param("CommandId")
            instance_id = response._get_param("InstanceId")
            commands = response.ssm_backend.list_commands(command_id, instance_id)
            entries = node._list_entries(commands, instance_id, bool(response._get_param("Details", False)))
            start = int(response._get_param("NextToken") or 0)
            page_size = int(response._get_param("MaxResults") or 50)
            result: dict[str, Any] = {"CommandInvocations": entries[start : start + page_size]}
            if start + page_size < len(entries):
                result["NextToken"] = str(start + page_size)
            return ActionResult(result)

        return {
            (SimpleSystemManagerBackend, "send_command"): send_command,
            (SimpleSystemManagerBackend, "get_command_invocation"): get_command_invocation,
            (Command, "_get_instance_ids_from_targets"): instance_ids_from_targets,
            (Command, "response_object"): response_object,
            (SimpleSystemManagerResponse, "cancel_command"): cancel_command,
            (SimpleSystemManagerResponse, "list_command_invocations"): list_command_invocations,
        }

    def _accept_command(self, backend: SimpleSystemManagerBackend, command: Command) -> None:
        """Take over the invocations of a new command that target registered instances."""
        with self._state:
            instance_ids = [instance_id for instance_id in command.instance_ids if instance_id in self._instances]
        if not instance_ids:
            return
        request = None
        if command.document_name == RUN_SHELL_SCRIPT_DOCUMENT:
            try:
                request = parse_run_shell_script_parameters(command.parameters)
            except SSMException:
                backend._commands.remove(command)  # AWS refuses the whole SendCommand
                raise
        now = time.monotonic()
        with self._state:
            invocations = {}
            for instance_id in instance_ids:
                invocation = _Invocation(
                    command=command,
                    instance_id=instance_id,
                    visible_at=now + self._visibility_delay,
                    delivery_deadline=now + command.timeout_seconds,
                )
                invocations[instance_id] = invocation
                self._live.add(invocation)
                if request is None:
                    invocation.stderr = (
                        f"document {command.document_name!r} is not supported by the local head node, which runs "
                        f"only {RUN_SHELL_SCRIPT_DOCUMENT}"
                    )
                    self._finish_locked(invocation, InvocationStatus.FAILED, UNSUPPORTED_DOCUMENT_DETAILS)
                elif self._stopping:  # a request that raced with shutdown()
                    self._finish_locked(invocation, InvocationStatus.CANCELLED, SHUT_DOWN_DETAILS)
                else:
                    self._undelivered.append((invocation, request))
            self._invocations[command] = invocations
            self._state.notify_all()

    def _find_invocation(self, command: Command, instance_id: str) -> _Invocation | None:
        return self._invocations.get(command, {}).get(instance_id)

    def _invocation_response(
        self, command: Command, instance_id: str, plugin_name: str | None
    ) -> dict[str, Any] | None:
        """GetCommandInvocation for an invocation of ours; None when the invocation is moto's."""
        now = time.monotonic()
        with self._state:
            invocation = self._find_invocation(command, instance_id)
            if invocation is None:
                return None
            if now < invocation.visible_at or plugin_name not in (None, RUN_SHELL_SCRIPT_PLUGIN):
                raise _invocation_does_not_exist()
            elapsed = invocation.elapsed_seconds(now)
            return {
                "CommandId": command.command_id,
                "InstanceId": instance_id,
                "Comment": command.comment,
                "DocumentName": command.document_name,
                "PluginName": RUN_SHELL_SCRIPT_PLUGIN,
                "ResponseCode": invocation.response_code,
                "ExecutionStartDateTime": _iso8601(invocation.started_at),
                "ExecutionElapsedTime": "" if elapsed is None else f"PT{elapsed:.3f}S",
                "ExecutionEndDateTime": _iso8601(invocation.ended_at if invocation.started_at else None),
                "Status": invocation.status.value,
                "StatusDetails": invocation.status_details,
                "StandardOutputContent": invocation.stdout,
                "StandardOutputUrl": "",
                "StandardErrorContent": invocation.stderr,
                "StandardErrorUrl": "",
            }

    def _list_entries(
        self, commands: Iterable[Command], instance_id: str | None, details: bool
    ) -> list[dict[str, Any]]:
        """ListCommandInvocations entries for these commands (ours and moto's), optionally for one instance."""
        now = time.monotonic()
        entries = []
        with self._state:
            for command in commands:
                for target in command.instance_ids:
                    if instance_id is not None and target != instance_id:
                        continue
                    invocation = self._find_invocation(command, target)
                    if invocation is None:
                        moto_invocation = command.get_invocation(target, None)
                        entry = _list_entry(
                            command,
                            target,
                            status=moto_invocation["Status"],
                            status_details=moto_invocation["StatusDetails"],
                            response_code=moto_invocation["ResponseCode"],
                            started_at=command.requested_date_time,
                            ended_at=command.requested_date_time,
                            output="",
                            details=details,
                        )
                    elif now >= invocation.visible_at:
                        output = invocation.stdout
                        if invocation.stderr:
                            output += PLUGIN_OUTPUT_ERROR_HEADER + invocation.stderr
                        entry = _list_entry(
                            command,
                            target,
                            status=invocation.status.value,
                            status_details=invocation.status_details,
                            response_code=invocation.response_code,
                            started_at=invocation.started_at,
                            ended_at=invocation.ended_at if invocation.started_at else None,
                            output=output[:PLUGIN_OUTPUT_LIMIT],
                            details=details,
                        )
                    else:
                        continue
                    entries.append(entry)
        return entries

    def _overlay_command_status(self, command: Command, response: dict[str, Any]) -> None:
        """Make a command's Status and counts (SendCommand, ListCommands) reflect its real invocations."""
        with self._state:
            invocations = self._invocations.get(command)
            if not invocations:
                return
            ours = list(invocations.values())
            statuses = [invocation.status for invocation in ours]
            # The other targets are moto's, which end Success at once.
            statuses += [InvocationStatus.SUCCESS] * (len(command.instance_ids) - len(ours))
            status = _command_status(statuses)
            response["Status"] = status.value
            response["StatusDetails"] = status.value
            response["CompletedCount"] = sum(status in TERMINAL_STATUSES for status in statuses)
            response["ErrorCount"] = sum(
                invocation.status is InvocationStatus.FAILED or invocation.status_details == EXECUTION_TIMED_OUT
                for invocation in ours
            )
            response["DeliveryTimedOutCount"] = sum(
                invocation.status_details == DELIVERY_TIMED_OUT for invocation in ours
            )

    def _cancel_command(self, command: Command, instance_ids: list[str] | None) -> None:
        with self._state:
            for instance_id, invocation in self._invocations.get(command, {}).items():
                if instance_ids is None or instance_id in instance_ids:
                    self._cancel_locked(invocation, details=InvocationStatus.CANCELLED.value)

    # ----- delivery and execution -------------------------------------------------------------------------------

    def _wake_dispatcher(self) -> None:
        with self._state:
            self._state.notify_all()

    def _dispatch_loop(self) -> None:
        """Deliver commands while the instance is reachable; time out those that wait too long for delivery."""
        with self._state:
            while not self._stopping:
                self._state.wait(self._dispatch_locked())

    def _dispatch_locked(self) -> float | None:
        """Deliver or time out the undelivered invocations; return how long to wait before the next deadline."""
        now = time.monotonic()
        waiting = []
        for invocation, request in self._undelivered:
            if invocation.terminal:
                continue  # cancelled before delivery
            if not self.faults.holds(invocation.command.comment or ""):
                self._executor.submit(self._execute, invocation, request)
            elif now >= invocation.delivery_deadline:
                self.faults.record_delivery_timeout()
                self._finish_locked(invocation, InvocationStatus.TIMED_OUT, DELIVERY_TIMED_OUT)
            else:
                if not invocation.held:
                    invocation.held = True
                    self.faults.record_held_command()
                waiting.append((invocation, request))
        self._undelivered = waiting
        if not waiting:
            return None
        return max(0.0, min(invocation.delivery_deadline for invocation, _ in waiting) - now)

    def _execute(self, invocation: _Invocation, request: ShellScriptRequest) -> None:
        """Worker thread: run one delivered invocation to its end."""
        with self._state:
            if invocation.terminal:
                return  # cancelled while it waited for a worker
            invocation.status = InvocationStatus.IN_PROGRESS
            invocation.status_details = InvocationStatus.IN_PROGRESS.value
            invocation.started_at = _utc_now()
            invocation.started_monotonic = time.monotonic()
        try:
            self._run_script(invocation, request)
        except Exception:
            logger.exception("command %s failed on the local head node", invocation.command.command_id)
            with self._state:
                if not invocation.terminal:
                    self._finish_locked(invocation, InvocationStatus.FAILED, InvocationStatus.FAILED.value)

    def _run_script(self, invocation: _Invocation, request: ShellScriptRequest) -> None:
        """Run the script as the SSM agent does and record how it ended."""
        orchestration_directory = Path(tempfile.mkdtemp(prefix="ssm-command-"))  # mode 0700
        try:
            script_path = orchestration_directory / SCRIPT_NAME
            script_fd = os.open(script_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            with os.fdopen(script_fd, "w", encoding="utf-8") as script:
                script.write(request.script + "\n")
            stdout_path = orchestration_directory / "stdout"
            stderr_path = orchestration_directory / "stderr"
            with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
                try:
                    process = subprocess.Popen(
                        [self._shell, str(script_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=stdout,
                        stderr=stderr,
                        cwd=request.working_directory or orchestration_directory,
                        env=self._command_environment(invocation),
                        start_new_session=True,
                    )
                except OSError as error:
                    with self._state:
                        invocation.stderr = f"failed to run commands: {error}"
                        self._finish_locked(invocation, InvocationStatus.FAILED, InvocationStatus.FAILED.value)
                    return
                with self._state:
                    invocation.process = process
                    if invocation.cancel_requested:
                        _kill_process_group(process)
                timed_out = False
                try:
                    returncode = process.wait(timeout=request.execution_timeout_seconds)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    with self._state:
                        _kill_process_group(process)
                    returncode = process.wait()
            output = _read_prefix(stdout_path, STDOUT_CONTENT_LIMIT)
            errors = _read_prefix(stderr_path, STDERR_CONTENT_LIMIT)
        finally:
            shutil.rmtree(orchestration_directory, ignore_errors=True)
        with self._state:
            if invocation.cancel_requested:
                status, details, code = (
                    InvocationStatus.CANCELLED,
                    invocation.status_details,
                    STOPPED_PREEMPTIVELY_EXIT_CODE,
                )
            elif timed_out:
                status, details, code = InvocationStatus.TIMED_OUT, EXECUTION_TIMED_OUT, STOPPED_PREEMPTIVELY_EXIT_CODE
            elif returncode == 0:
                status, details, code = InvocationStatus.SUCCESS, InvocationStatus.SUCCESS.value, 0
            else:
                code = returncode if returncode > 0 else NO_EXIT_CODE
                status, details = InvocationStatus.FAILED, InvocationStatus.FAILED.value
            invocation.response_code = code
            invocation.stdout = output
            invocation.stderr = errors
            self._finish_locked(invocation, status, details)

    def _command_environment(self, invocation: _Invocation) -> dict[str, str]:
        """A minimal agent-like environment, plus the variables the agent sets, plus this head node's ``env``."""
        return {
            "PATH": AGENT_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "AWS_SSM_INSTANCE_ID": invocation.instance_id,
            "AWS_SSM_REGION_NAME": invocation.command.backend_region,
            STATE_DIRECTORY_VARIABLE: str(self.state_directory),
            **self._env,
        }

    def _cancel_locked(self, invocation: _Invocation, *, details: str) -> None:
        """Cancel an invocation: at once if it has not started, else by killing its process group."""
        if invocation.terminal or invocation.cancel_requested:
            return
        if invocation.status is InvocationStatus.PENDING:
            self._finish_locked(invocation, InvocationStatus.CANCELLED, details)
            return
        invocation.cancel_requested = True
        invocation.status = InvocationStatus.CANCELLING
        invocation.status_details = details
        if invocation.process is not None:
            _kill_process_group(invocation.process)

    def _finish_locked(self, invocation: _Invocation, status: InvocationStatus, details: str) -> None:
        invocation.status = status
        invocation.status_details = details
        invocation.ended_at = _utc_now()
        invocation.ended_monotonic = time.monotonic()
        self._live.discard(invocation)
        command = invocation.command
        self._runs.append(
            CommandRun(
                command_id=command.command_id,
                instance_id=invocation.instance_id,
                document_name=command.document_name or "",
                status=status.value,
                status_details=details,
                response_code=invocation.response_code,
                pid=invocation.process.pid if invocation.process else None,
                requested_at=command.requested_date_time,
                started_at=invocation.started_at,
                ended_at=invocation.ended_at,
                elapsed_seconds=invocation.elapsed_seconds(invocation.ended_monotonic),
            )
        )
        logger.debug(
            "command %s on %s ended %s (%s), code %s",
            command.command_id,
            invocation.instance_id,
            status.value,
            details,
            invocation.response_code,
        )


def _command_status(statuses: list[InvocationStatus]) -> InvocationStatus:
    """A command's overall status from its invocations' statuses."""
    if all(status is InvocationStatus.PENDING for status in statuses):
        return InvocationStatus.PENDING
    if InvocationStatus.CANCELLING in statuses:
        return InvocationStatus.CANCELLING
    if any(status not in TERMINAL_STATUSES for status in statuses):
        return InvocationStatus.IN_PROGRESS
    for outcome in (InvocationStatus.FAILED, InvocationStatus.TIMED_OUT, InvocationStatus.CANCELLED):
        if outcome in statuses:
            return outcome
    return InvocationStatus.SUCCESS


def _list_entry(
    command: Command,
    instance_id: str,
    *,
    status: str,
    status_details: str,
    response_code: int,
    started_at: datetime.datetime | None,
    ended_at: datetime.datetime | None,
    output: str,
    details: bool,
) -> dict[str, Any]:
    """One ListCommandInvocations entry (CommandInvocation shape); with ``details``, its plugin and output."""
    entry: dict[str, Any] = {
        "CommandId": command.command_id,
        "InstanceId": instance_id,
        "Comment": command.comment,
        "DocumentName": command.document_name,
        "RequestedDateTime": command.requested_date_time,
        "Status": status,
        "StatusDetails": status_details,
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "ServiceRole": command.service_role_arn,
        "CommandPlugins": [],
    }
    if details:
        plugin: dict[str, Any] = {
            "Name": RUN_SHELL_SCRIPT_PLUGIN,
            "Status": status,
            "StatusDetails": status_details,
            "ResponseCode": response_code,
            "Output": output,
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
        }
        if started_at is not None:
            plugin["ResponseStartDateTime"] = started_at
        if ended_at is not None:
            plugin["ResponseFinishDateTime"] = ended_at
        entry["CommandPlugins"] = [plugin]
    return entry
