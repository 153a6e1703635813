"""Through the HTTP API, against real Slurm: the sbatch options of the job spec reach Slurm as given. A job that runs
with several of them reads its own record from slurmctld (scontrol show job) while it runs; a job held back by
`begin` waits with Slurm's reason BeginTime until it is cancelled; requests this cluster cannot hold (it has no GPU,
node feature, reservation or license) end SUBMIT_FAILED at once with sbatch's own message, never left waiting.
Every job of the module is submitted first (`jobs`), so that they run side by side."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from harness.workflow import finish, submit
from tests.e2e.test_dependency_never_satisfied import wait_for_view

TRUE = "#!/bin/bash\ntrue\n"
# The job prints what slurmctld holds for it: one "Name=value" per line.
SHOW_ITSELF = '#!/bin/bash\nscontrol show job "$SLURM_JOB_ID" | tr " " "\\n" | grep =\n'


def scontrol_fields(text: str) -> dict[str, str]:
    """`scontrol show job` output → {field: value}; its fields are space-separated Name=value pairs."""
    return dict(pair.split("=", 1) for pair in text.split() if "=" in pair)


WITH_OPTIONS = {
    "name": "with-options",
    "script": SHOW_ITSELF,
    "ntasks": 2,
    "ntasksPerNode": 2,
    "memoryPerCpuMB": 32,
    "nice": 7,
    "requeue": False,
    "exclusive": True,
    "begin": "2020-02-29T12:00:00",  # in the past: eligible at once
}
LATER = {"name": "later", "script": TRUE, "begin": "now+1hour", "requeue": True, "nice": 100}
GRES_REFUSED = "Invalid generic resource (gres) specification"  # sbatch's own check, before slurmctld's
# field: (a value this cluster cannot hold, sbatch's message)
REFUSED = {
    "gpus": ("1", GRES_REFUSED),
    "gpusPerNode": ("a100:1", GRES_REFUSED),
    "gpusPerTask": ("1", GRES_REFUSED),
    "gres": ("gpu:1", GRES_REFUSED),
    "constraint": ("[rack1*1&rack2*1]", "Batch job submission failed: Invalid feature specification"),
    "reservation": ("no-such-reservation", "Batch job submission failed: Requested reservation is invalid"),
    "licenses": ("matlab:2", "Batch job submission failed: Invalid license specification"),
}


@pytest.fixture(scope="module")
def jobs(cloud) -> dict[str, str]:
    """Every job of the module, submitted at once: its name (or refused field) → job id."""
    api = cloud.api_client()
    refused = {field: {"name": "refused", "script": TRUE, field: value} for field, (value, _) in REFUSED.items()}
    return {name: submit(api, spec) for name, spec in {"with-options": WITH_OPTIONS, "later": LATER, **refused}.items()}


def test_a_job_runs_with_its_options_as_slurm_records_them(cloud, api, jobs):
    job_id = jobs["with-options"]
    execution, _, result, view = finish(cloud, api, job_id, timeout=120)
    assert execution["status"] == "SUCCEEDED" and view["status"] == result["status"] == "COMPLETED", view
    links = {item["name"]: item["url"] for item in api.get(f"/jobs/{job_id}/output").json()["files"]}
    fields = scontrol_fields(requests.get(links["stdout"], timeout=10).text)
    assert fields["JobId"] == view["slurmJobId"]
    assert (fields["Nice"], fields["Requeue"], fields["OverSubscribe"]) == ("7", "0", "NO")
    assert fields["NumTasks"] == "2" and fields["NtasksPerN:B:S:C"].startswith("2:")
    assert fields["MinMemoryCPU"] == "32M"
    # The spec the record keeps shows the options as given.
    assert {name: view["spec"][name] for name in ("nice", "requeue", "exclusive", "ntasksPerNode")} == {
        "nice": 7,
        "requeue": False,
        "exclusive": True,
        "ntasksPerNode": 2,
    }


def test_a_job_held_back_by_begin_waits_for_its_time(cloud, api, stack, jobs):
    job_id = jobs["later"]
    view = wait_for_view(api, job_id, lambda view: view["status"] == "PENDING" and view.get("reason"))
    assert view["reason"] == "BeginTime", view
    shown = stack.cluster.run("scontrol", "show", "job", view["slurmJobId"])
    fields = scontrol_fields(shown.stdout)
    assert (fields["Requeue"], fields["Nice"], fields["Reason"]) == ("1", "100", "BeginTime"), shown.stdout
    eligible, submitted = (datetime.fromisoformat(fields[name]) for name in ("EligibleTime", "SubmitTime"))
    assert abs((eligible - submitted).total_seconds() - 3600) <= 5, (eligible, submitted)  # an hour after submission
    assert api.delete(f"/jobs/{job_id}").status_code == 202
    _, _, result, view = finish(cloud, api, job_id, timeout=60)
    assert view["status"] == result["status"] == "CANCELLED", view


def test_requests_this_cluster_cannot_hold_end_submit_failed_with_sbatchs_message(cloud, api, jobs):
    causes = {}
    for field in REFUSED:
        execution, _, result, view = finish(cloud, api, jobs[field], timeout=60)
        assert execution["status"] == "FAILED" and view["status"] == result["status"] == "SUBMIT_FAILED", field
        assert view["cause"] == result["cause"] and not view.get("slurmJobId"), field
        causes[field] = view["cause"]
    assert causes == {
        field: f"The job could not be submitted: SbatchRejected: sbatch: error: {message}"
        for field, (_, message) in REFUSED.items()
    }
