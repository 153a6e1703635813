"""A job polled more often than one execution may hold goes on in a new execution (continue-as-new)."""

import json

from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import history, path, result_json, submit, wait_for_execution


def test_long_polling_continues_in_a_new_execution(slurm, make_cloud):
    """MaxPollsPerExecution reached: the job goes on in execution <jobId>_1, which finishes it."""
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, *[squeue_line("RUNNING")] * 10, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )
    with make_cloud(MaxPollsPerExecution="10") as cloud:
        api = cloud.api_client()
        job_id = submit(api)
        first = wait_for_execution(cloud, job_id, timeout=60)
        assert first["status"] == "SUCCEEDED"
        assert path(history(cloud, first["executionArn"]))[-2:] == ["ContinueAsNewExecution", "ContinuedAsNewExecution"]
        second = wait_for_execution(cloud, f"{job_id}_1", timeout=60)
        events = history(cloud, second["executionArn"])
        started = next(event for event in events if event["type"] == "ExecutionStarted")
        carried = json.loads(started["executionStartedEventDetails"]["input"])
        assert set(carried) - {"AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"} == {
            "jobId",
            "submissionId",
            "owner",
            "createdAt",
            "requestHash",
            "specKey",
            "job",
        }  # references and the job's progress, never the spec
        assert path(events)[:2] == ["IsContinuation", "WaitBeforePoll"] and path(events)[-1] == "JobCompleted"
        view = api.get(f"/jobs/{job_id}").json()
        assert view["status"] == "COMPLETED" and view["execution"]["arn"] == second["executionArn"]
        assert api.get("/jobs/" + second["executionArn"].replace(":", "%3A")).json()["jobId"] == job_id
        assert result_json(cloud, job_id)["status"] == "COMPLETED"
        assert len(slurm.sbatch_calls_for(job_id)) == 1
