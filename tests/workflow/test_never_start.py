"""A job Slurm keeps pending for a reason that means it cannot start under the cluster's configuration is ended by
the product after UnsatisfiableGraceMinutes (0 here: at the first poll that sees the reason); a job that waits for
a reason that means "not yet" is not. The real state machine and handlers, scripted Slurm."""

from __future__ import annotations

from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import failure, finish, submit


def test_a_job_pending_for_partition_config_past_the_grace_period_is_cancelled_once(slurm, make_cloud):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [
                NO_EARLIER_JOB,
                squeue_line("PENDING", "Resources"),  # "not yet": waits, whatever the grace
                squeue_line("PENDING", "Resources"),
                squeue_line("PENDING", "PartitionConfig"),  # "never": cancelled at once (grace 0)
                squeue_line("PENDING", "PartitionConfig"),  # scancel takes a moment
                squeue_line("CANCELLED", "PartitionConfig"),
            ],
            "scontrol": [scontrol_line("CANCELLED", "0:0")],
        }
    )
    with make_cloud(UnsatisfiableGraceMinutes="0") as cloud:
        api = cloud.api_client()
        job_id = submit(api, {"name": "huge", "script": "#!/bin/bash\ntrue\n", "nodes": 100000})
        execution, events, result, view = finish(cloud, api, job_id)
        listed = {job["jobId"]: job for job in api.get("/jobs").json()["jobs"]}[job_id]
    assert [call["argv"] for call in slurm.calls("scancel")] == [["101"]]
    assert "--nodes=100000" in slurm.sbatch_calls_for(job_id)[0]["argv"]
    polls = [call for call in slurm.calls("squeue") if "--states=all" in call["argv"]]
    assert len(polls) >= 5  # two Resources polls did not end it
    failed = failure(events)
    assert execution["status"] == "FAILED" and failed["error"] == "CANCELLED"
    assert result["status"] == view["status"] == listed["status"] == "CANCELLED"
    assert result["reason"] == view["reason"] == listed["reason"] == "PartitionConfig"
    assert view["cancelRequested"] is False
    assert result["cause"] == view["cause"] == failed["cause"]
    assert view["cause"].startswith(
        "Slurm job 101 was cancelled by the product: the cluster cannot ever run this request as it is configured. "
        "Slurm kept it pending for 0 minutes with reason PartitionConfig: "
    )
