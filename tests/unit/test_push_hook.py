"""The head node's push hook (slurm_job_api/push_hook.py): its event, its configuration, its signature (checked
against botocore's SigV4), and its installer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from slurm_job_api import push_hook

NOW = datetime(2026, 12, 3, 12, 0, 0, 123000, tzinfo=UTC)
CONFIG = push_hook.HookConfig({"eventBusName": "stack-jobs", "region": "us-east-1", "clusterName": "demo"})


def test_the_epilog_publishes_the_jobs_end_with_its_slurm_variables() -> None:
    environment = {"SLURM_SCRIPT_CONTEXT": "epilog_slurmctld", "SLURM_JOB_ID": "17", "SLURM_JOB_EXIT_CODE2": "3:0"}
    entry = push_hook.hook_event(environment, "demo", NOW)
    assert entry["Source"] == "slurm-job-api.head-node" and entry["DetailType"] == "Slurm Job State Change"
    assert json.loads(entry["Detail"]) == {
        "clusterName": "demo",
        "state": "ENDED",
        "pushedAt": "2026-12-03T12:00:00.123Z",
        "slurmJobId": "17",
        "exitCode": "3:0",
    }


@pytest.mark.parametrize(
    "environment",
    [
        {"SLURM_JOB_ID": "17"},  # not run by slurmctld as one of its hooks
        {"SLURM_SCRIPT_CONTEXT": "epilog", "SLURM_JOB_ID": "17"},
        {"SLURM_SCRIPT_CONTEXT": "prolog_slurmctld", "SLURM_JOB_ID": "17; rm -rf /"},
    ],
)
def test_no_event_outside_slurmctlds_hooks_or_for_a_strange_job_id(environment: dict) -> None:
    assert push_hook.hook_event(environment, "demo", NOW) is None


def test_a_variable_that_is_not_a_number_is_left_out() -> None:
    environment = {"SLURM_SCRIPT_CONTEXT": "prolog_slurmctld", "SLURM_JOB_ID": "5", "SLURM_ARRAY_TASK_ID": "$(id)"}
    assert "arrayTaskId" not in json.loads(push_hook.hook_event(environment, "demo", NOW)["Detail"])


@pytest.mark.parametrize(
    "values",
    [
        {"eventBusName": "b", "region": "us-east-1"},  # no cluster
        {"eventBusName": "b c", "region": "us-east-1", "clusterName": "demo"},
        {"eventBusName": "b", "region": "mars", "clusterName": "demo"},
        {"eventBusName": "b", "region": "us-east-1", "clusterName": "demo", "endpointUrl": "http://10.0.0.1:80"},
        {"eventBusName": "b", "region": "us-east-1", "clusterName": "demo", "imdsUrl": "http://evil.example"},
        {"eventBusName": "b", "region": "us-east-1", "clusterName": "demo", "extra": 1},
    ],
)
def test_a_configuration_that_is_not_valid_is_refused(values: dict) -> None:
    with pytest.raises(ValueError):
        push_hook.HookConfig(values)


def test_the_put_events_signature_is_the_one_botocore_computes(monkeypatch) -> None:
    credentials = ("AKIDEXAMPLE", "secret", "session-token")
    entry = push_hook.hook_event({"SLURM_SCRIPT_CONTEXT": "epilog_slurmctld", "SLURM_JOB_ID": "9"}, "demo", NOW)
    request = push_hook.signed_put_events(CONFIG, [entry], credentials, NOW)
    assert request.full_url == "https://events.us-east-1.amazonaws.com/"
    headers = {name.lower(): value for name, value in request.header_items()}
    expected = AWSRequest(
        method="POST",
        url=request.full_url,
        data=request.data,
        headers={name: headers[name] for name in ("content-type", "x-amz-target")},
    )
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))  # botocore's clock
    SigV4Auth(Credentials(*credentials), "events", "us-east-1").add_auth(expected)
    assert headers["authorization"] == expected.headers["Authorization"]
    assert json.loads(request.data)["Entries"][0]["EventBusName"] == "stack-jobs"


def test_install_is_idempotent(tmp_path) -> None:
    source = "#!/usr/bin/env python3\nprint('hook')\n"
    first = push_hook.install(str(tmp_path), CONFIG, source, "/usr/bin/python3")
    hook = tmp_path / push_hook.HOOK_NAME
    assert sorted(first["changed"]) == sorted([str(hook), str(tmp_path / push_hook.CONFIG_NAME)])
    assert hook.read_text().startswith("#!/usr/bin/python3 -IS\n") and hook.stat().st_mode & 0o777 == 0o755
    assert first["slurmSettings"] == {"PrologSlurmctld": str(hook), "EpilogSlurmctld": str(hook)}
    assert push_hook.install(str(tmp_path), CONFIG, source, "/usr/bin/python3")["changed"] == []


def test_the_hook_does_nothing_without_its_configuration(tmp_path) -> None:
    environment = {"SLURM_SCRIPT_CONTEXT": "epilog_slurmctld", "SLURM_JOB_ID": "9"}
    assert push_hook.run_hook(str(tmp_path), environment) == 0
    assert list(tmp_path.iterdir()) == []
