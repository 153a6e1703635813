"""Through the HTTP API, against real Slurm configured as ParallelCluster configures it (EnforcePartLimits=ALL): a
request no partition can hold is refused at submission, with Slurm's message; a job that becomes unable to start
after it was accepted (the operator shrank its partition) is ended with Slurm's reason once UnsatisfiableGraceMinutes
(0 on this stack) has passed; jobs that wait for Resources or Priority are left to wait and run."""

from __future__ import annotations

import time

from harness.workflow import finish, submit
from slurm_job_api.statuses import never_starts
from tests.e2e.test_dependency_never_satisfied import wait_for_view

TRUE = "#!/bin/bash\ntrue\n"


def test_requests_no_partition_can_hold_are_refused_at_submission(cloud, api):
    jobs = {
        field: submit(api, {"name": "too-big", "script": TRUE, field: value})
        for field, value in (("nodes", 100000), ("cpusPerTask", 4096), ("ntasks", 10**7))
    }
    for field, job_id in jobs.items():
        execution, _, result, view = finish(cloud, api, job_id, timeout=60)
        assert execution["status"] == "FAILED" and view["status"] == result["status"] == "SUBMIT_FAILED", field
        assert view["cause"] == result["cause"]
        assert "Batch job submission failed: More processors requested than permitted" in view["cause"], view


def test_a_job_its_partition_can_no_longer_run_ends_and_waiting_jobs_do_not(cloud, api, slurm, stack):
    cluster = stack.cluster
    # The node is full: the next jobs wait for Resources, Priority or (the other partition's job) "Nodes required for
    # job are DOWN, DRAINED or reserved for jobs in higher priority partitions": each means "not yet".
    sleeper = submit(
        api, {"name": "fill", "script": "#!/bin/bash\nsleep 300\n", "cpusPerTask": cluster.advertised_cpus}
    )
    wait_for_view(api, sleeper, lambda view: view["status"] == "RUNNING")
    # The short partition's MaxTime is 1 minute: raised to 5 for this job of 3 minutes, lowered again below.
    raised = cluster.run("scontrol", "update", f"PartitionName={cluster.short_partition}", "MaxTime=5")
    assert raised.returncode == 0, raised.stderr
    short = submit(api, {"name": "short", "script": TRUE, "partition": cluster.short_partition, "timeLimitMinutes": 3})
    waiting = submit(api, {"name": "waiting", "script": TRUE})
    for job_id in (short, waiting):
        view = wait_for_view(api, job_id, lambda view: view["status"] == "PENDING" and view.get("reason"))
        assert not never_starts(view["reason"]), view
    time.sleep(5)  # several polls (PollMinSeconds 1, grace 0): a "not yet" reason ends nothing
    listed = {job["jobId"]: job for job in api.get("/jobs", params={"status": "PENDING"}).json()["jobs"]}
    for job_id in (short, waiting):
        assert listed[job_id]["status"] == "PENDING" and listed[job_id]["reason"], listed[job_id]

    # The operator lowers the partition's MaxTime under the job's time limit: it can never start there now. Slurm
    # shows that reason once it considers the job again, which it does when the node frees up (while the node is
    # full it keeps the first blocker, e.g. Resources): the node is freed, the waiting job runs, the short one cannot.
    changed = cluster.run("scontrol", "update", f"PartitionName={cluster.short_partition}", "MaxTime=1")
    assert changed.returncode == 0, changed.stderr
    assert api.delete(f"/jobs/{sleeper}").status_code == 202
    try:
        execution, _, result, view = finish(cloud, api, short, timeout=120)
    finally:
        cluster.run("scontrol", "update", f"PartitionName={cluster.short_partition}", "MaxTime=1")
    assert execution["status"] == "FAILED" and execution["error"] == "CANCELLED"
    assert view["status"] == result["status"] == "CANCELLED" and view["cancelRequested"] is False
    assert view["reason"] == result["reason"] == "PartitionTimeLimit"
    assert view["cause"] == result["cause"] and "reason PartitionTimeLimit" in view["cause"], view
    assert slurm.accounted_state(view["slurmJobId"]).startswith("CANCELLED")

    _, _, result, view = finish(cloud, api, waiting, timeout=120)
    assert view["status"] == result["status"] == "COMPLETED"
