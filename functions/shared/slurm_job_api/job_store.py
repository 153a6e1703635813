"""Job records in DynamoDB (one item per job, keyed by jobId; GSI OwnerCreatedAtIndex lists an owner's jobs)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from slurm_job_api.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES

OWNER_INDEX = "OwnerCreatedAtIndex"


def plain(value: Any) -> Any:
    """DynamoDB values as plain JSON values (Decimal → int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(item) for item in value]
    return value


def _storable(value: Any) -> Any:
    """Plain JSON values as DynamoDB accepts them (float → Decimal)."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {key: _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def _conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class JobStore:
    def __init__(self, table: Any) -> None:
        self._table = table

    def create(self, record: Mapping[str, Any]) -> bool:
        """Stores a new record; False if a record with this jobId exists already."""
        try:
            self._table.put_item(Item=_storable(dict(record)), ConditionExpression=Attr("jobId").not_exists())
        except ClientError as error:
            if _conditional_failure(error):
                return False
            raise
        return True

    def get(self, job_id: str) -> dict | None:
        item = self._table.get_item(Key={"jobId": job_id}, ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def get_owned(self, job_id: str, owner: str) -> dict | None:
        """The record if it exists and belongs to `owner`; otherwise None (callers answer 404 either way)."""
        record = self.get(job_id)
        return record if record and record.get("owner") == owner else None

    def update(self, job_id: str, fields: Mapping[str, Any], *, only_if_active: bool = False) -> dict | None:
        """Sets fields (None removes one); returns the new record, or None if only_if_active and it had ended."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        removes: list[str] = []
        for index, (name, value) in enumerate(sorted(fields.items())):
            names[f"#f{index}"] = name
            if value is None:
                removes.append(f"#f{index}")
            else:
                values[f":v{index}"] = _storable(value)
                sets.append(f"#f{index} = :v{index}")
        clauses = []
        if sets:
            clauses.append("SET " + ", ".join(sets))
        if removes:
            clauses.append("REMOVE " + ", ".join(removes))
        expression = " ".join(clauses)
        condition = Attr("jobId").exists()
        if only_if_active:
            condition = condition & Attr("status").is_in(sorted(ACTIVE_STATUSES))
        try:
            response = self._table.update_item(
                Key={"jobId": job_id},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _conditional_failure(error):
                return None
            raise
        return plain(response["Attributes"])

    def request_cancel(self, job_id: str, owner: str, now: str) -> dict | None:
        """Marks an active job of `owner` for cancellation; None if it is not active (or not theirs)."""
        try:
            response = self._table.update_item(
                Key={"jobId": job_id},
                UpdateExpression="SET cancelRequested = :true, updatedAt = :now, "
                "cancelRequestedAt = if_not_exists(cancelRequestedAt, :now)",
                ConditionExpression=Attr("owner").eq(owner) & Attr("status").is_in(sorted(ACTIVE_STATUSES)),
                ExpressionAttributeValues={":true": True, ":now": now},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _conditional_failure(error):
                return None
            raise
        return plain(response["Attributes"])

    def list_for_owner(
        self,
        owner: str,
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        status: str | None = None,
        max_pages: int = 20,
    ) -> tuple[list[dict], tuple[str, str] | None]:
        """The owner's jobs, newest first, resuming after (createdAt, jobId); also where the next page starts."""
        items: list[dict] = []
        start_key = {"owner": owner, "createdAt": after[0], "jobId": after[1]} if after else None
        for _ in range(max_pages):
            query: dict[str, Any] = {
                "IndexName": OWNER_INDEX,
                "KeyConditionExpression": Key("owner").eq(owner),
                "ScanIndexForward": False,
                "Limit": limit - len(items) if status is None else max(limit, 25),
            }
            if status is not None:
                query["FilterExpression"] = Attr("status").eq(status)
            if start_key:
                query["ExclusiveStartKey"] = start_key
            page = self._table.query(**query)
            for item in page.get("Items", []):
                items.append(plain(item))
                if len(items) == limit:
                    last = items[-1]
                    return items, (last["createdAt"], last["jobId"])
            start_key = page.get("LastEvaluatedKey")
            if not start_key:
                return items, None
        # Many pages filtered away: hand back a token so the client can continue where the scan stopped.
        return items, (start_key["createdAt"], start_key["jobId"]) if start_key else None


def is_terminal(record: Mapping[str, Any]) -> bool:
    return record.get("status") in TERMINAL_STATUSES
