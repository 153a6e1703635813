"""Job records in DynamoDB (one item per job, keyed by jobId; GSI OwnerCreatedAtIndex lists an owner's jobs, the
sparse GSI ActiveJobsIndex a cluster's active jobs), and
the claims of Idempotency-Keys (one item per caller and key, keyed by `idempotency-key#<sha256>`, holding the random
job id the key names; a claim has no owner, so no listing shows it)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from slurm_job_api.job_record import JobRecord
from slurm_job_api.statuses import ACTIVE_STATUSES

OWNER_INDEX = "OwnerCreatedAtIndex"
ACTIVE_INDEX = "ActiveJobsIndex"  # hash key activeOnCluster, set only while a job is active: it holds no ended job
# A claim's key: never a job id (those are UUIDs), so no route can reach it.
IDEMPOTENCY_CLAIM_PREFIX = "idempotency-key#"


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

    def create(self, record: JobRecord) -> bool:
        """Stores a new record; False if a record with this jobId exists already."""
        try:
            self._table.put_item(Item=_storable(record.item()), ConditionExpression=Attr("jobId").not_exists())
        except ClientError as error:
            if _conditional_failure(error):
                return False
            raise
        return True

    def get(self, job_id: str) -> JobRecord | None:
        item = self._table.get_item(Key={"jobId": job_id}, ConsistentRead=True).get("Item")
        return JobRecord.model_validate(plain(item)) if item else None

    def get_owned(self, job_id: str, owner: str) -> JobRecord | None:
        """The record if it exists and belongs to `owner`; otherwise None (callers answer 404 either way)."""
        record = self.get(job_id)
        return record if record and record.owner == owner else None

    @staticmethod
    def claim_key(owner: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(f"{owner}\n{idempotency_key}".encode()).hexdigest()
        return IDEMPOTENCY_CLAIM_PREFIX + digest

    def claimed_job_id(self, owner: str, idempotency_key: str) -> str | None:
        """The job id an earlier request of `owner` claimed for this Idempotency-Key, if one did."""
        key = {"jobId": self.claim_key(owner, idempotency_key)}
        item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
        return str(item["claimedJobId"]) if item else None

    def claim_job_id(self, owner: str, idempotency_key: str, job_id: str, expires_at: int) -> str:
        """Claims `job_id` (a new random id) for this caller's Idempotency-Key with one conditional write; returns the
        id the key names: `job_id`, or the one a concurrent request with the same key claimed first. The claim expires
        with the job's record."""
        key = self.claim_key(owner, idempotency_key)
        item = {"jobId": key, "claimedJobId": job_id, "expiresAt": expires_at}
        try:
            self._table.put_item(Item=item, ConditionExpression=Attr("jobId").not_exists())
        except ClientError as error:
            if not _conditional_failure(error):
                raise
            claimed = self.claimed_job_id(owner, idempotency_key)
            if claimed is None:  # the claim expired in between: this request's id stands, claimed again
                return self.claim_job_id(owner, idempotency_key, job_id, expires_at)
            return claimed
        return job_id

    def update(self, job_id: str, fields: Mapping[str, Any], *, only_if_active: bool = False) -> JobRecord | None:
        """Sets fields (stored names; None removes one); returns the new record, or None if only_if_active and it
        had ended."""
        condition = Attr("jobId").exists()
        if only_if_active:
            condition = condition & Attr("status").is_in(sorted(ACTIVE_STATUSES))
        return self._update(job_id, fields, {}, condition)

    def request_cancel(self, job_id: str, owner: str, now: str) -> JobRecord | None:
        """Marks an active job of `owner` for cancellation; None if it is not active (or not theirs)."""
        always, if_absent = JobRecord.cancel_mark(now)
        condition = Attr("owner").eq(owner) & Attr("status").is_in(sorted(ACTIVE_STATUSES))
        return self._update(job_id, always, if_absent, condition)

    def _update(
        self, job_id: str, fields: Mapping[str, Any], if_absent: Mapping[str, Any], condition: Any
    ) -> JobRecord | None:
        """One conditional UpdateItem: SET `fields` (None: REMOVE), SET `if_absent` only where not present yet;
        None when the condition does not hold."""
        # Placeholders #f<i> and :f<i>: boto3's condition builder names its own #n<i> and :v<i>.
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        removes: list[str] = []
        for index, (name, value) in enumerate([*sorted(fields.items()), *sorted(if_absent.items())]):
            names[f"#f{index}"] = name
            if value is None:
                removes.append(f"#f{index}")
                continue
            values[f":f{index}"] = _storable(value)
            if name in if_absent:
                sets.append(f"#f{index} = if_not_exists(#f{index}, :f{index})")
            else:
                sets.append(f"#f{index} = :f{index}")
        clauses = []
        if sets:
            clauses.append("SET " + ", ".join(sets))
        if removes:
            clauses.append("REMOVE " + ", ".join(removes))
        try:
            response = self._table.update_item(
                Key={"jobId": job_id},
                UpdateExpression=" ".join(clauses),
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _conditional_failure(error):
                return None
            raise
        return JobRecord.model_validate(plain(response["Attributes"]))

    def list_for_owner(
        self,
        owner: str,
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        status: str | None = None,
        max_pages: int = 20,
    ) -> tuple[list[JobRecord], tuple[str, str] | None]:
        """The owner's jobs, newest first, resuming after (createdAt, jobId); also where the next page starts."""
        items: list[JobRecord] = []
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
                items.append(JobRecord.model_validate(plain(item)))
                if len(items) == limit:
                    last = items[-1]
                    return items, (last.created_at, last.job_id)
            start_key = page.get("LastEvaluatedKey")
            if not start_key:
                return items, None
        # Many pages filtered away: hand back a token so the client can continue where the scan stopped.
        return items, (start_key["createdAt"], start_key["jobId"]) if start_key else None

    def active_on_cluster(self, cluster_name: str) -> list[JobRecord]:
        """Every job the index holds as active on `cluster_name`, oldest first (all pages). The index is eventually
        consistent: a job just accepted may be missing, one just ended may still be there (its status says so)."""
        records: list[JobRecord] = []
        query: dict[str, Any] = {
            "IndexName": ACTIVE_INDEX,
            "KeyConditionExpression": Key("activeOnCluster").eq(cluster_name),
        }
        while True:
            page = self._table.query(**query)
            records.extend(JobRecord.model_validate(plain(item)) for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return records
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
