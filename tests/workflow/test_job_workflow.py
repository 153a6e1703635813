"""The real statemachine/job.asl.json, executed by moto's Step Functions interpreter, with the real handlers run
in-process and the real head-node program run through SSM on this machine — only Slurm is scripted (recording
stand-ins for sbatch/squeue/...), so every path the workflow can take is reached on demand. Each test asserts on the
path taken (the execution history) and on result.json.
"""

from __future__ import annotations

import time

from harness.scripted_slurm import CONFIG, INVALID_JOB, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import SCRIPT, failure, finish, path, submit, task_failures
from local_stack.lambda_runtime import RuntimeFailure

HAPPY_PATH = [
    "IsContinuation",
    "SubmitJob",
    "IsJobFinished",
    "WaitBeforePoll",
    "PollJob",
    "IsJobFinished",
    "FinishJob",
    "DidJobComplete",
]


def test_completed_job(cloud, api, slurm):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", "write": {"--output": "hello\n"}}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [
                NO_EARLIER_JOB,
                squeue_line("PENDING", "Priority"),
                squeue_line("RUNNING"),
                squeue_line("COMPLETED"),
            ],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )
    job_id = submit(api)
    execution, events, result, view = finish(cloud, api, job_id)
    assert execution["status"] == "SUCCEEDED"
    assert path(events) == [*HAPPY_PATH, "JobCompleted"]
    assert len(slurm.sbatch_calls_for(job_id)) == 1
    assert (result["status"], result["exitCode"], result["slurmJobId"]) == ("COMPLETED", 0, "101")
    assert [f["name"] for f in result["files"]] == ["stdout"] and result["collection"]["status"] == "complete"
    stdout = cloud.client("s3").get_object(Bucket=cloud.bucket_name, Key=result["files"][0]["key"])["Body"].read()
    assert stdout == b"hello\n"
    assert (view["status"], view["exitCode"], view["execution"]["status"]) == ("COMPLETED", 0, "SUCCEEDED")
    assert view["results"]["available"] is True and view["startedAt"] and view["endedAt"]


def test_non_zero_exit_fails_with_its_exit_code(cloud, api, slurm):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("FAILED", "NonZeroExitCode")],
            "scontrol": [scontrol_line("FAILED", "3:0")],
        }
    )
    job_id = submit(api)
    execution, events, result, view = finish(cloud, api, job_id)
    assert execution["status"] == "FAILED"
    assert path(events) == [*HAPPY_PATH, "JobDidNotComplete"]
    failed = failure(events)
    assert failed["error"] == "FAILED" and "exit code 3" in failed["cause"]
    assert (result["status"], result["exitCode"]) == ("FAILED", 3)
    assert (view["status"], view["exitCode"]) == ("FAILED", 3)


def test_timeout(cloud, api, slurm):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("TIMEOUT", "TimeLimit")],
            "scontrol": [scontrol_line("TIMEOUT", "0:15")],
        }
    )
    job_id = submit(api, {"script": SCRIPT, "timeLimitMinutes": 1})
    execution, events, result, _ = finish(cloud, api, job_id)
    failed = failure(events)
    assert failed["error"] == "TIMEOUT" and "time limit" in failed["cause"]
    assert path(events) == [*HAPPY_PATH, "JobDidNotComplete"]
    assert result["status"] == "TIMEOUT" and execution["status"] == "FAILED"
    assert "--time=1" in slurm.sbatch_calls_for(job_id)[0]["argv"]


def test_cancel_of_a_running_job(cloud, api, slurm):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            # RUNNING until scancel ran: the answers after that say CANCELLED.
            "squeue": [NO_EARLIER_JOB, *[squeue_line("RUNNING")] * 3, squeue_line("CANCELLED")],
            "scontrol": [scontrol_line("CANCELLED", "0:15")],
        }
    )
    job_id = submit(api)
    deadline = time.monotonic() + 30
    while api.get(f"/jobs/{job_id}").json()["status"] != "RUNNING":
        assert time.monotonic() < deadline, "job never ran"
        time.sleep(0.2)
    answer = api.delete(f"/jobs/{job_id}")
    assert answer.status_code == 202 and answer.json()["cancelRequested"] is True
    execution, events, result, view = finish(cloud, api, job_id)
    assert slurm.calls("scancel")[0]["argv"] == ["101"]
    failed = failure(events)
    assert failed["error"] == "CANCELLED" and execution["status"] == "FAILED"
    assert (result["status"], view["status"], view["cancelRequested"]) == ("CANCELLED", "CANCELLED", True)
    assert api.delete(f"/jobs/{job_id}").status_code == 409


def test_submit_retried_after_sbatch_succeeded_submits_once(cloud, api, slurm):
    """The submit function dies (Lambda timeout) after sbatch succeeded; Step Functions retries it."""
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )
    crashed = []

    def crash_after_sbatch(event, context, call_next):
        result = call_next(event, context)
        if not crashed:
            crashed.append(result)
            raise RuntimeFailure("Sandbox.Timedout", "Task timed out after 120.00 seconds")
        return result

    with cloud.runtime.intercepted("SubmitJobFunction", crash_after_sbatch):
        job_id = submit(api)
        execution, events, result, _ = finish(cloud, api, job_id)
    assert crashed and execution["status"] == "SUCCEEDED"
    assert task_failures(events)[0] == "Sandbox.Timedout"
    assert path(events) == [*HAPPY_PATH, "JobCompleted"]  # SubmitJob entered once, retried inside the state
    assert len(slurm.sbatch_calls_for(job_id)) == 1, "the retried submit must find the first submission"
    assert result["slurmJobId"] == "101"


def test_poll_retried_after_a_transient_error(cloud, api, slurm):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [
                {"rc": 1, "stderr": "slurm_load_ctl_conf error: Unable to contact slurm controller (connect failure)"},
                {"stdout": CONFIG},
            ],
            "squeue": [NO_EARLIER_JOB, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )
    job_id = submit(api)
    execution, events, result, _ = finish(cloud, api, job_id)
    assert execution["status"] == "SUCCEEDED" and result["status"] == "COMPLETED"
    assert task_failures(events) == ["SlurmControllerUnavailable"]
    failed_at = next(i for i, event in enumerate(events) if event["type"] == "LambdaFunctionFailed")
    entered_before = [
        e["stateEnteredEventDetails"]["name"] for e in events[:failed_at] if "stateEnteredEventDetails" in e
    ]
    assert entered_before[-1] == "PollJob"


def test_rejected_submission_still_writes_result_json(cloud, api, slurm):
    slurm.set(
        {
            "squeue": [NO_EARLIER_JOB],
            "sbatch": [{"rc": 1, "stderr": "sbatch: error: invalid partition specified: nope\n"}],
        }
    )
    job_id = submit(api, {"script": SCRIPT, "partition": "nope"})
    execution, events, result, view = finish(cloud, api, job_id)
    assert path(events) == [
        "IsContinuation",
        "SubmitJob",
        "FinishJob",
        "DidJobComplete",
        "JobDidNotComplete",
    ]
    assert task_failures(events) == ["SbatchRejected"]
    assert result["status"] == view["status"] == "SUBMIT_FAILED"
    assert "invalid partition" in result["cause"] and result["error"]["code"] == "SbatchRejected"
    assert result["collection"]["status"] == "skipped" and execution["status"] == "FAILED"


def test_job_slurm_forgot_is_unknown_not_lost(cloud, api, slurm):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, INVALID_JOB],
            "scontrol": [INVALID_JOB],
        }
    )
    job_id = submit(api)
    _, events, result, view = finish(cloud, api, job_id)
    assert result["status"] == view["status"] == "UNKNOWN" and "no longer knows job 101" in result["cause"]
    assert path(events)[-1] == "JobDidNotComplete"


def test_a_broken_finish_step_still_leaves_a_record_and_result_json(cloud, api, slurm):
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )

    def broken(event, context, call_next):
        raise ValueError("finish handler bug")

    with cloud.runtime.intercepted("FinishJobFunction", broken):
        job_id = submit(api)
        execution, events, result, view = finish(cloud, api, job_id)
    assert path(events)[-4:] == ["RecordFinishFailure", "BuildFallbackResult", "WriteFallbackResult", "JobErrored"]
    assert result["status"] == "ERROR" and "finish handler bug" in result["cause"]
    assert result["workflowState"]["job"]["status"] == "COMPLETED"
    assert view["status"] == "ERROR" and execution["status"] == "FAILED"
