"""Caller mappings in DynamoDB (CallerMappingsTable): the entries the API resolves callers with, and the record of
every change operators made to them.

Keys: `principal` (the principal key, caller_mapping) and `entry`. The mapping itself is entry "mapping"; each change
is entry "change#<ISO time>#<random>" beside it: who changed it (the operator's STS identity), when, what (add,
replace, remove) and the user before and after. A change and its record are one DynamoDB transaction, conditional on
the mapping being what the operator's command read: no change goes unrecorded, none is recorded twice.

The API function may only GetItem (template.yaml); writes are the operators' (scripts/caller-mappings).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from slurm_job_api.caller_mapping import Mapping, check_mapping, lookup_keys

MAPPING_ENTRY = "mapping"
CHANGE_ENTRY_PREFIX = "change#"


class MappingChanged(Exception):
    """The mapping changed between reading and writing it (another operator): nothing was written; read again."""


@dataclass(frozen=True)
class MappingChange:
    principal: str
    action: str  # add, replace or remove
    cluster_user: str | None
    previous_cluster_user: str | None
    changed_by: str
    changed_at: str


class CallerMappingStore:
    def __init__(self, table: Any) -> None:
        self._table = table

    # -- the API's side: read only ---------------------------------------------------------------------------------

    def get(self, principal: str) -> Mapping | None:
        item = self._table.get_item(Key={"principal": principal, "entry": MAPPING_ENTRY}, ConsistentRead=True).get(
            "Item"
        )
        return Mapping(principal=item["principal"], cluster_user=item["clusterUser"]) if item else None

    def find(self, caller: str) -> Mapping | None:
        """The entry that maps `caller`: its exact principal, else its role's pattern; None if none does."""
        for key in lookup_keys(caller):
            mapping = self.get(key)
            if mapping is not None:
                return mapping
        return None

    # -- the operators' side ---------------------------------------------------------------------------------------

    def mappings(self) -> list[Mapping]:
        items = self._scan(Attr("entry").eq(MAPPING_ENTRY))
        return sorted(
            (Mapping(principal=item["principal"], cluster_user=item["clusterUser"]) for item in items),
            key=lambda mapping: mapping.principal,
        )

    def changes(self, principal: str | None = None) -> list[MappingChange]:
        """Every recorded change (of one principal key, if given), oldest first."""
        if principal is None:
            items = self._scan(Attr("entry").begins_with(CHANGE_ENTRY_PREFIX))
        else:
            items = self._query(Key("principal").eq(principal) & Key("entry").begins_with(CHANGE_ENTRY_PREFIX))
        changes = [
            MappingChange(
                principal=item["principal"],
                action=item["action"],
                cluster_user=item.get("clusterUser"),
                previous_cluster_user=item.get("previousClusterUser"),
                changed_by=item["changedBy"],
                changed_at=item["changedAt"],
            )
            for item in items
        ]
        return sorted(changes, key=lambda change: (change.changed_at, change.principal))

    def put(self, principal: str, cluster_user: str, *, changed_by: str, changed_at: str) -> MappingChange:
        """Maps `principal` to `cluster_user` (checked first), recording the change."""
        mapping = check_mapping(principal, cluster_user)
        previous = self.get(mapping.principal)
        change = MappingChange(
            principal=mapping.principal,
            action="add" if previous is None else "replace",
            cluster_user=mapping.cluster_user,
            previous_cluster_user=None if previous is None else previous.cluster_user,
            changed_by=changed_by,
            changed_at=changed_at,
        )
        put = {
            "Put": {
                "TableName": self._table.name,
                "Item": {
                    "principal": mapping.principal,
                    "entry": MAPPING_ENTRY,
                    "clusterUser": mapping.cluster_user,
                    "updatedBy": changed_by,
                    "updatedAt": changed_at,
                },
                **self._unchanged_since_read(previous),
            }
        }
        self._transact(put, change)
        return change

    def remove(self, principal: str, *, changed_by: str, changed_at: str) -> MappingChange | None:
        """Removes the mapping of `principal`, recording the change; None (nothing recorded) if there is none."""
        previous = self.get(principal)
        if previous is None:
            return None
        change = MappingChange(
            principal=principal,
            action="remove",
            cluster_user=None,
            previous_cluster_user=previous.cluster_user,
            changed_by=changed_by,
            changed_at=changed_at,
        )
        delete = {
            "Delete": {
                "TableName": self._table.name,
                "Key": {"principal": principal, "entry": MAPPING_ENTRY},
                **self._unchanged_since_read(previous),
            }
        }
        self._transact(delete, change)
        return change

    # -- helpers ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _unchanged_since_read(previous: Mapping | None) -> dict[str, Any]:
        if previous is None:
            return {"ConditionExpression": "attribute_not_exists(principal)"}
        return {
            "ConditionExpression": "clusterUser = :previous",
            "ExpressionAttributeValues": {":previous": previous.cluster_user},
        }

    def _transact(self, write: dict[str, Any], change: MappingChange) -> None:
        record = {
            "principal": change.principal,
            "entry": f"{CHANGE_ENTRY_PREFIX}{change.changed_at}#{uuid.uuid4().hex[:12]}",
            "action": change.action,
            "changedBy": change.changed_by,
            "changedAt": change.changed_at,
        }
        if change.cluster_user is not None:
            record["clusterUser"] = change.cluster_user
        if change.previous_cluster_user is not None:
            record["previousClusterUser"] = change.previous_cluster_user
        recorded = {
            "Put": {
                "TableName": self._table.name,
                "Item": record,
                "ConditionExpression": "attribute_not_exists(principal)",
            }
        }
        try:
            self._table.meta.client.transact_write_items(TransactItems=[write, recorded])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                raise MappingChanged(
                    f"the mapping of {change.principal} changed while this command ran: nothing was written"
                ) from None
            raise

    def _scan(self, condition: Any) -> list[dict[str, Any]]:
        return self._all_pages(self._table.scan, FilterExpression=condition)

    def _query(self, condition: Any) -> list[dict[str, Any]]:
        return self._all_pages(self._table.query, KeyConditionExpression=condition)

    @staticmethod
    def _all_pages(read: Any, **arguments: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        arguments["ConsistentRead"] = True
        while True:
            page = read(**arguments)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
