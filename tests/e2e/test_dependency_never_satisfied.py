"""Through the HTTP API, against real Slurm: a job whose dependency can never be satisfied ends, instead of waiting
forever. The head-node program submits with ``--kill-on-invalid-dep=yes``, so Slurm cancels such a job itself (reason
DependencyNeverSatisfied); the product reports it terminal, with a record and a result.json."""

from __future__ import annotations

import time

from harness.workflow import finish, submit

SLEEPER = "#!/bin/bash\nsleep 300\n"


def wait_for_view(api, job_id: str, wanted, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not wanted(view := api.get(f"/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, view
        time.sleep(0.5)
    return view


def test_afterok_on_a_cancelled_job_ends_with_the_reason(cloud, api, slurm):
    first = submit(api, {"name": "dep-first", "script": SLEEPER})
    wait_for_view(api, first, lambda view: view["status"] == "RUNNING")
    second = submit(
        api,
        {
            "name": "dep-second",
            "script": "#!/bin/bash\necho never\n",
            "dependency": [{"type": "afterok", "jobId": first}],
        },
    )
    # Slurm holds it for its dependency, and the API says why it waits.
    pending = wait_for_view(api, second, lambda view: view["status"] == "PENDING" and view.get("reason"))
    assert pending["reason"] == "Dependency", pending

    assert api.delete(f"/jobs/{first}").status_code == 202
    _, _, first_result, first_view = finish(cloud, api, first, timeout=120)
    assert first_view["status"] == first_result["status"] == "CANCELLED"

    execution, _, result, view = finish(cloud, api, second, timeout=120)
    assert execution["status"] == "FAILED" and execution["error"] == "CANCELLED"
    assert view["status"] == result["status"] == "CANCELLED"
    assert view["slurmJobId"] == result["slurmJobId"]
    # Slurm itself ended it, and its accounting record says CANCELLED.
    assert slurm.accounted_state(view["slurmJobId"]).startswith("CANCELLED")
    # sacct's Reason is the last one the job waited for (Dependency); squeue, while slurmctld remembers the job
    # (MinJobAge), says why Slurm ended it, and the status action reports that one.
    assert view["reason"] == result["reason"] == "DependencyNeverSatisfied"
    why = "a job it depends on ended in a way that can never satisfy its dependency (DependencyNeverSatisfied)"
    assert view["cause"] == result["cause"] == f"Slurm job {view['slurmJobId']} was cancelled by Slurm: {why}"
