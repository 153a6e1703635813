"""The writes that finish a job, counted where they land: in moto's S3 and DynamoDB backends, which the local cloud
runs in this process. A finish writes ``jobs/<jobId>/result.json`` (PutObject, by the finish step or the state
machine's fallback) and the record's final fields (an UpdateItem that sets ``finishedAt``, by the finish step or the
state machine's RecordFinishFailure); a job finished once has one of each.

:func:`install` wraps the two backend methods once per process (idempotent, never undone: counting is all the
wrappers add); a write that fails (a conditional update refused) is not counted. Job ids are random, so the counts of
one scenario's jobs are theirs alone, whatever ran before in the process.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.s3.models import S3Backend

RESULT_KEY = re.compile(r"^jobs/([^/]+)/result\.json$")
FINISHED_AT = "finishedAt"

_lock = threading.Lock()
_result_writes: Counter[str] = Counter()
_final_record_writes: Counter[str] = Counter()
_installed = False


def _sets_finished_at(update_expression: str, names: dict[str, Any] | None) -> bool:
    return FINISHED_AT in update_expression or FINISHED_AT in (names or {}).values()


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        put_object, update_item = S3Backend.put_object, DynamoDBBackend.update_item

        def counted_put_object(self: S3Backend, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
            stored = put_object(self, bucket_name, key_name, *args, **kwargs)
            if match := RESULT_KEY.match(key_name):
                with _lock:
                    _result_writes[match.group(1)] += 1
            return stored

        def counted_update_item(
            self: DynamoDBBackend,
            table_name: str,
            key: dict[str, dict[str, Any]],
            update_expression: str,
            expression_attribute_names: dict[str, Any],
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            item = update_item(self, table_name, key, update_expression, expression_attribute_names, *args, **kwargs)
            job_id = key.get("jobId", {}).get("S")
            if job_id and _sets_finished_at(update_expression, expression_attribute_names):
                with _lock:
                    _final_record_writes[job_id] += 1
            return item

        S3Backend.put_object = counted_put_object  # type: ignore[method-assign]
        DynamoDBBackend.update_item = counted_update_item  # type: ignore[method-assign]
        _installed = True


def result_json_writes(job_id: str) -> int:
    with _lock:
        return _result_writes[job_id]


def final_record_writes(job_id: str) -> int:
    with _lock:
        return _final_record_writes[job_id]
