"""Caches for work moto 5.2.5 repeats on every request or execution although its answer cannot change (moto is pinned
exactly). Each one memoizes a pure function of its arguments; what moto answers stays the same. Measured on the
hostile corpus module (py-spy, 40 Hz), these were a fifth of the test process's CPU:

- ``AmazonStateLanguageParser.parse``: every execution runs ANTLR over the state machine's definition again. The
  parse tree is a pure function of the definition and nothing writes to it; the evaluation components are still
  built fresh from it for each execution (they carry an execution's state).
- ``DomainDispatcherApplication.get_backend_for_host``: every request lists moto's package directory (an
  ``os.listdir`` and 200 ``isdir`` calls) and tries each service's URL patterns, under one lock for all requests. The
  answer is a pure function of the host name.
- JSONPath expressions: every Path, InputPath, ResultPath and OutputPath is parsed again at each state. The parsed
  expression is immutable (``find`` only reads it).
- ``boto_client_for``: every Lambda task makes a new boto3 client (about 20 ms of CPU each). Its arguments, apart
  from credentials it ignores, are the region and the service; boto3 clients are thread-safe.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from jsonpath_ng import parse as parse_jsonpath
from jsonpath_ng.ext import parse as parse_jsonpath_ext
from moto.core.models import botocore_stubber
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.settings import moto_server_port
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_dynamodb,
    state_task_service_events,
    state_task_service_sfn,
    state_task_service_sqs,
)
from moto.stepfunctions.parser.asl.parse import asl_parser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import boto_client, json_path

# The modules whose tasks the product's state machine and the tests' workflows use; each imported boto_client_for
# by name, so each one's name is rebound.
_CLIENT_USERS = (
    lambda_eval_utils,
    state_task_service_dynamodb,
    state_task_service_events,
    state_task_service_sfn,
    state_task_service_sqs,
)

_original_parse = asl_parser.AmazonStateLanguageParser.parse
_original_backend_for_host = DomainDispatcherApplication.get_backend_for_host
_original_client_for = boto_client.boto_client_for
_lock = threading.Lock()
_installed = False


@functools.lru_cache(maxsize=64)
def _parse_tree(definition: str) -> Any:
    """The definition's ANTLR parse tree (a syntax error raises, and is not cached)."""
    return _original_parse(definition)[1]


def _parse(definition: str) -> tuple[Any, Any]:
    tree = _parse_tree(definition)
    return Preprocessor().visit(tree), tree


_backend_for_host: dict[str | None, Any] = {}


def _get_backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
    # Called with moto's own dispatch lock held; the dict is only read and written under it.
    if host not in _backend_for_host:
        _backend_for_host[host] = _original_backend_for_host(self, host)
    return _backend_for_host[host]


_clients: dict[tuple[str, str, bool, int], Any] = {}


def _boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    key = (region, service, bool(botocore_stubber.enabled), moto_server_port())
    with _lock:
        if key not in _clients:
            _clients[key] = _original_client_for(region=region, service=service, state_credentials=state_credentials)
        return _clients[key]


def install() -> None:
    """Installs the caches in this process's moto (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        asl_parser.AmazonStateLanguageParser.parse = staticmethod(_parse)
        DomainDispatcherApplication.get_backend_for_host = _get_backend_for_host
        json_path.parse = functools.lru_cache(maxsize=4096)(parse_jsonpath_ext)
        result_path.parse = functools.lru_cache(maxsize=1024)(parse_jsonpath)
        for module in _CLIENT_USERS:
            module.boto_client_for = _boto_client_for
        _installed = True
