"""Caller mappings through the real API function and CallerMappingsTable in moto (built from template.yaml): role
patterns and `{session}`, exact mappings winning over patterns, the 403 of every unmapped caller, the store's
transactions with their change records (the single-tenant mode: test_single_tenant.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from botocore.config import Config

from slurm_job_api.caller_mapping_store import CallerMappingStore, MappingChanged

EVENTS = Path(__file__).resolve().parents[2] / "events"
ROLE = "arn:aws:sts::123456789012:assumed-role/HpcUsers"
OTHER_ROLE = "arn:aws:sts::123456789012:assumed-role/Admins"


def store_of(cloud) -> CallerMappingStore:
    table = cloud.session().resource("dynamodb", endpoint_url=cloud.endpoint_url)
    return CallerMappingStore(table.Table(cloud.model.caller_mappings_table.name))


def list_jobs_as(cloud, principal: str) -> tuple[int, dict]:
    """GET /jobs as `principal` (the API event of events/, signed by whoever API Gateway says)."""
    event = json.loads((EVENTS / "api-list-jobs.json").read_text())
    event["requestContext"]["identity"]["userArn"] = principal
    client = cloud.client("lambda", config=Config(read_timeout=120, retries={"max_attempts": 1}))
    response = client.invoke(FunctionName=cloud.function_names["ApiFunction"], Payload=json.dumps(event))
    answer = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, answer
    return answer["statusCode"], json.loads(answer["body"])


def put(store: CallerMappingStore, principal: str, user: str) -> None:
    store.put(principal, user, changed_by="arn:aws:iam::123456789012:user/operator", changed_at="2026-12-07T00:00:00Z")


def test_every_session_of_a_role_maps_to_its_session_name_and_an_exact_mapping_wins(cloud):
    store = store_of(cloud)
    put(store, f"{ROLE}/*", "{session}")
    put(store, f"{ROLE}/carol", "shared")
    try:
        assert list_jobs_as(cloud, f"{ROLE}/alice")[0] == 200
        assert store.find(f"{ROLE}/alice").principal == f"{ROLE}/*"
        assert store.find(f"{ROLE}/carol").cluster_user == "shared"  # exact first
        status, body = list_jobs_as(cloud, f"{ROLE}/Alice@example.com")  # not a POSIX name: nobody
        assert status == 403 and body["code"] == "CallerNotMapped" and "POSIX user name" in body["message"], body
        status, body = list_jobs_as(cloud, f"{ROLE}/root")
        assert status == 403 and "never run as root" in body["message"], body
        status, body = list_jobs_as(cloud, f"{OTHER_ROLE}/alice")  # another role's session: unmapped
        assert status == 403 and f"{OTHER_ROLE}/alice is not mapped" in body["message"], body
    finally:
        for principal in (f"{ROLE}/*", f"{ROLE}/carol"):
            store.remove(principal, changed_by="test", changed_at="2026-12-07T00:00:01Z")
    assert list_jobs_as(cloud, f"{ROLE}/alice")[0] == 403  # removed: refused at the next request


def test_each_change_is_recorded_with_who_when_and_what(cloud):
    store = store_of(cloud)
    principal = "arn:aws:iam::123456789012:user/recorded"
    first = store.put(principal, "u1", changed_by="arn:aws:iam::123456789012:user/op1", changed_at="2026-12-07T01:00Z")
    second = store.put(principal, "u2", changed_by="arn:aws:iam::123456789012:user/op2", changed_at="2026-12-07T02:00Z")
    gone = store.remove(principal, changed_by="arn:aws:iam::123456789012:user/op3", changed_at="2026-12-07T03:00Z")
    assert store.remove(principal, changed_by="x", changed_at="2026-12-07T04:00Z") is None  # nothing to remove
    assert [(c.action, c.previous_cluster_user, c.cluster_user) for c in (first, second, gone)] == [
        ("add", None, "u1"),
        ("replace", "u1", "u2"),
        ("remove", "u2", None),
    ]
    assert store.changes(principal) == [first, second, gone]
    assert principal not in {mapping.principal for mapping in store.mappings()}
    assert all(change in store.changes() for change in (first, second, gone))


def test_a_change_racing_another_is_refused_and_writes_nothing(cloud, monkeypatch):
    store = store_of(cloud)
    principal = "arn:aws:iam::123456789012:user/raced"
    put(store, principal, "before")
    read = store.get
    raced = threading.Event()

    def read_then_someone_else_writes(key):
        found = read(key)
        if not raced.is_set():
            raced.set()
            # Another operator, between our read and our write.
            store_of(cloud).put(principal, "theirs", changed_by="them", changed_at="2026-12-07T04:30Z")
        return found

    monkeypatch.setattr(store, "get", read_then_someone_else_writes)
    with pytest.raises(MappingChanged):
        store.put(principal, "ours", changed_by="me", changed_at="2026-12-07T05:00Z")
    monkeypatch.undo()
    assert store.get(principal).cluster_user == "theirs"
    assert [change.cluster_user for change in store.changes(principal)] == ["before", "theirs"]  # ours: no record
    store.remove(principal, changed_by="test", changed_at="2026-12-07T06:00Z")
