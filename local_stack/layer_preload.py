"""The template's layer modules that the Lambda forkserver imports once, so a cold start does not import them again.

Importing the layer (its Pydantic models above all) was most of a cold start's CPU: 0.37 of 0.39 CPU-s to import a
handler here. The forkserver of :mod:`local_stack.lambda_runtime` imports, from each layer of the repository's
template (its ``ContentUri``, read from template.yaml; the local stack names no module of the product), every module
whose import has no effect that an execution environment could tell from importing it itself:

- a probe, forked from the forkserver, imports every module of the layers first, with an audit hook refusing
  processes, threads, sockets, signals and changes to files, and with the variables that a function may have a value
  of its own for unreadable (the template's function variables, and AWS_*, LAMBDA_*, POWERTOOLS_*, ..., which Lambda
  or this runtime sets per function). A module is preloaded only if its import, with the imports it made, finished
  in the probe without touching any of them. So a module that reads such a variable (Powertools' Logger, Metrics and
  Tracer, boto3 clients, ...), or imports one that does, is imported by the handler in its environment, under the
  function's own variables, as before; any other variable an environment has is this process's, as the forkserver's;
- an environment whose import path would find a preloaded package somewhere else (its code, or another layer, comes
  first; or it does not have the layer) drops the preloaded package before it imports its handler
  (:func:`local_stack.lambda_worker.serve`), so it imports what its own import path gives, as before.

:mod:`local_stack.forkserver_preload` runs :func:`preload` when the forkserver imports it. The layers' directories are
on the forkserver's import path only while it imports them, so an environment finds a layer only on its own import
path. A layer module that the handler does not import is loaded but unused.
"""

import json
import logging
import os
import pkgutil
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from local_stack import lambda_worker
from local_stack.template_model import REPOSITORY_TEMPLATE, function_variable_names, layer_content_uris

logger = logging.getLogger(__name__)

# Audit events (https://docs.python.org/3/library/audit_events.html) of an import with an effect outside the module:
# processes, threads, network, signals, and changes to files ("open" only for writing, see _refuse_effects).
_EFFECT_EVENTS = frozenset(
    {
        "os.system",
        "os.exec",
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.kill",
        "os.killpg",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.putenv",
        "os.unsetenv",
        "subprocess.Popen",
        "_thread.start_new_thread",
        "socket.connect",
        "socket.bind",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "signal.signal",
        "shutil.rmtree",
        "shutil.copyfile",
    }
)
# Variables that Lambda or this runtime sets per function (besides the template's): an import must not read them. Any
# other variable an environment has is this process's, as the forkserver's is (e.g. HOME, which sysconfig reads, or
# PYDANTIC_DISABLE_PLUGINS, which every Pydantic model class reads; the Powertools that the forkserver preloads
# already builds models).
_FUNCTION_VARIABLE_PREFIXES = ("AWS_", "LAMBDA_", "POWERTOOLS_", "_AWS", "_X_AMZN", "_HANDLER")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class _ImportEffect(BaseException):
    """Raised in the probe when an import reads the environment or has an effect (a BaseException, so that an
    ``except Exception`` in the module does not hide it; a hidden one is noticed anyway, see _Probe)."""


class _Probe:
    """Runs in the forked probe process only: makes the environment unreadable and refuses effects."""

    def __init__(self, directories: Sequence[Path]) -> None:
        self.directories = [str(directory) + os.sep for directory in directories]
        self.tainted: set[str] = set()  # layer modules whose import touched something (even if they caught it)
        self.active = False

    def touched(self, what: str) -> None:
        if not self.active:
            return
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == "<module>" and frame.f_code.co_filename.startswith(tuple(self.directories)):
                self.tainted.add(frame.f_globals.get("__name__", ""))
            frame = frame.f_back
        raise _ImportEffect(what)

    def audit(self, event: str, args: tuple) -> None:
        if event in _EFFECT_EVENTS:
            self.touched(event)
        elif event == "open" and len(args) == 3:
            _path, mode, flags = args
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & _WRITE_FLAGS:
                self.touched(f"open for writing: {args[0]!r}")


class _UnreadableVariables(dict):
    """Stands for os.environ's data in the probe: reading a variable a function may have a value of its own for
    (or all the variables at once) is an effect; other variables read their real values."""

    def __init__(self, probe: _Probe, real: dict, function_variables: frozenset[str]) -> None:
        super().__init__()
        self._probe = probe
        self._real = real
        self._function_variables = function_variables

    def _configuration(self, key: object) -> bool:
        name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        return not name.startswith(_FUNCTION_VARIABLE_PREFIXES) and name not in self._function_variables

    def __getitem__(self, key: object) -> str:
        if self._configuration(key):
            return self._real[key]
        self._probe.touched(f"os.environ[{key!r}]")
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if self._configuration(key):
            return key in self._real
        self._probe.touched(f"{key!r} in os.environ")
        return False

    def __iter__(self) -> Iterator[str]:
        self._probe.touched("iterating os.environ")
        return iter(())

    def __len__(self) -> int:
        self._probe.touched("len(os.environ)")
        return 0

    def __setitem__(self, key: object, value: object) -> None:
        self._probe.touched(f"os.environ[{key!r}] = ...")

    def __delitem__(self, key: object) -> None:
        self._probe.touched(f"del os.environ[{key!r}]")


def layer_modules(directory: Path) -> list[str]:
    """Every module and package of a layer directory, packages before their modules, without importing any."""
    names: list[str] = []

    def walk(path: Path, prefix: str) -> None:
        for module in sorted(pkgutil.iter_modules([str(path)]), key=lambda module: module.name):
            names.append(prefix + module.name)
            if module.ispkg:
                walk(path / module.name, f"{prefix}{module.name}.")

    walk(directory, "")
    return names


def _probe(directories: Sequence[Path], candidates: Sequence[str], function_variables: frozenset[str]) -> list[str]:
    """In the (forked, single-threaded) probe process: the candidates whose import touched nothing."""
    probe = _Probe(directories)
    sys.dont_write_bytecode = True  # the import system's own writes (bytecode caches) are not the module's effects
    sys.addaudithook(probe.audit)
    # Every reference to os.environ (and os.getenv, and os.environb, which shares its data) reads this.
    os.environ._data = _UnreadableVariables(probe, os.environ._data, function_variables)  # type: ignore[attr-defined]
    if hasattr(os, "environb"):
        os.environb._data = os.environ._data  # type: ignore[attr-defined]
    sys.path[:0] = [str(directory) for directory in directories]
    finished = []
    for name in candidates:
        probe.active = True
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001, S112 - any failure, or an effect: the module is not preloaded
            continue
        finally:
            probe.active = False
        finished.append(name)
    if probe.tainted:
        # A module that caught the refusal finished anyway, and a module imported after it may depend on it unseen.
        return [] if probe.tainted & set(finished) else [name for name in finished if name not in probe.tainted]
    return finished


def preloadable(directories: Sequence[Path], function_variables: Iterable[str] = ()) -> list[str]:
    """The modules of the layer directories whose import touches nothing, found by a forked probe process (this
    process must have one thread, as the forkserver has); ``function_variables``: the template's variable names."""
    candidates = list(dict.fromkeys(name for directory in directories for name in layer_modules(directory)))
    if not candidates:
        return []
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the probe
        status = 1
        try:
            os.close(read_end)
            answer = json.dumps(_probe(directories, candidates, frozenset(function_variables))).encode()
            os.write(write_end, answer)  # os.write is no audit event: the hook lets the answer through
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer_stream:
        answer = answer_stream.read()
    _, status = os.waitpid(pid, 0)
    return json.loads(answer) if status == 0 and answer else []


def preload(template_path: Path = REPOSITORY_TEMPLATE) -> list[str]:
    """Import the preloadable modules of the template's layers; record where each top-level package came from."""
    if threading.active_count() > 1:
        return []  # only in a single-threaded process (the forkserver): the probe is a fork
    directories = layer_content_uris(template_path)
    names = preloadable(directories, function_variable_names(template_path))
    if not names:
        return []
    saved_path = list(sys.path)
    sys.path[:0] = [str(directory) for directory in directories]
    try:
        for name in names:
            __import__(name)
    finally:
        sys.path[:] = saved_path
    for name in names:
        if "." not in name:
            module = sys.modules[name]
            lambda_worker.PRELOADED_PACKAGES[name] = getattr(module, "__file__", None) or ""
    return names
