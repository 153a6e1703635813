"""The product's "Slurm Job State Change" events, through the real path: the jobs table's stream (moto), the local
stream event source mapping, PublishJobEventsFunction, the stack's bus, and a rule with an SQS queue as an
integration would subscribe. Slurm is scripted, so each job goes through the statuses the test chooses."""

from __future__ import annotations

import json

import pytest
from moto.events.models import EventPattern

from harness.job_events import JobEventSubscriber, statuses
from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import SCRIPT, execution_arn, finish, submit
from local_stack.lambda_runtime import RuntimeFailure
from slurm_job_api.job_events import SOURCE
from slurm_job_api.push_hook import DETAIL_TYPE

PUBLISHER = "PublishJobEventsFunction"


@pytest.fixture(scope="module")
def subscriber(cloud):
    return JobEventSubscriber(cloud)


def completing(slurm, *squeue: str) -> None:
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", "write": {"--output": "hello\n"}}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, *squeue],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )


def test_every_status_of_a_job_is_published_once_and_the_end_when_its_results_are_there(cloud, api, slurm, subscriber):
    completing(slurm, squeue_line("PENDING", "Priority"), squeue_line("RUNNING"), squeue_line("COMPLETED"))
    job_id = submit(api, {"script": SCRIPT, "name": "events"})
    execution, _, result, _ = finish(cloud, api, job_id)
    subscriber.until_ended([job_id])
    subscriber.settle()
    events = subscriber.events_for(job_id)
    record = cloud.client("dynamodb").get_item(TableName=cloud.table_name, Key={"jobId": {"S": job_id}})["Item"]
    assert statuses(events) == ["SUBMITTING", "PENDING", "RUNNING", "COMPLETED"]
    assert len({event["detail"]["changeId"] for event in events}) == 4
    for event in events:
        assert (event["source"], event["detail-type"]) == (SOURCE, DETAIL_TYPE)
        assert event["resources"] == [execution_arn(cloud, job_id)] == [execution["executionArn"]]
        assert event["detail"]["owner"] == record["owner"]["S"] and event["detail"]["jobName"] == "events"
        assert event["detail"]["clusterName"] == "workflow-test"
    by_status = {event["detail"]["status"]: event["detail"] for event in events}
    # The submit step's PENDING (sbatch answered) is the change; Slurm's reason, seen by a later poll, is not one.
    assert (by_status["PENDING"]["slurmJobId"], by_status["PENDING"]["statusReason"]) == ("101", None)
    assert by_status["SUBMITTING"]["slurmJobId"] is None
    end = by_status["COMPLETED"]
    assert (end["exitCode"], end["slurmJobId"], end["resultKey"]) == (0, "101", f"jobs/{job_id}/result.json")
    # The end is published with the write that recorded the results: result.json is there for whoever reacts.
    stored = cloud.client("s3").get_object(Bucket=cloud.bucket_name, Key=end["resultKey"])["Body"].read()
    assert json.loads(stored)["status"] == result["status"] == "COMPLETED"


def test_a_failed_job_ends_with_its_exit_code_and_cause(cloud, api, slurm, subscriber):
    slurm.set(
        {
            "sbatch": [{"stdout": "102\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("FAILED", "NonZeroExitCode", job="102")],
            "scontrol": [scontrol_line("FAILED", "3:0", job="102")],
        }
    )
    job_id = submit(api)
    finish(cloud, api, job_id)
    events = subscriber.until_ended([job_id])[job_id]
    assert statuses(events) == ["SUBMITTING", "PENDING", "FAILED"]
    end = events[-1]["detail"]
    assert (end["status"], end["exitCode"]) == ("FAILED", 3) and "exit code 3" in end["statusReason"]


def test_a_publisher_that_fails_loses_no_event(cloud, api, slurm, subscriber):
    """Its first invocations fail: the stream's mapping retries the batch, and every change still reaches the bus."""
    failures = {"left": 2}

    def fail_twice(event, context, call_next):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeFailure("Runtime.ExitError", "the publisher's environment died")
        return call_next(event, context)

    completing(slurm, squeue_line("RUNNING"), squeue_line("COMPLETED"))
    batches_before = len(cloud.stream_delivery.batches)
    with cloud.runtime.intercepted(PUBLISHER, fail_twice):
        job_id = submit(api)
        finish(cloud, api, job_id)
        events = subscriber.until_ended([job_id])[job_id]
    assert failures["left"] == 0
    failed = [batch for batch in cloud.stream_delivery.batches[batches_before:] if batch.error is not None]
    assert len(failed) == 2 and not any(batch.discarded for batch in failed)
    assert statuses(events)[0] == "SUBMITTING" and statuses(events)[-1] == "COMPLETED"
    assert "RUNNING" in statuses(events)


def test_a_finish_that_fails_is_published_as_the_error_the_state_machine_records(cloud, api, slurm, subscriber):
    """RecordFinishFailure writes the record from the state machine itself: its write is published too."""
    completing(slurm, squeue_line("COMPLETED"))

    def broken(event, context, call_next):
        raise ValueError("finish handler bug")

    with cloud.runtime.intercepted("FinishJobFunction", broken):
        job_id = submit(api)
        finish(cloud, api, job_id)
    events = subscriber.until_ended([job_id])[job_id]
    assert statuses(events) == ["SUBMITTING", "PENDING", "ERROR"]
    assert "finish handler bug" in events[-1]["detail"]["statusReason"]


def test_the_events_never_start_a_sweep(cloud):
    """The sweep's rule matches the head node's hints only (source slurm-job-api.head-node)."""
    (rule,) = cloud.model.functions["SweepJobsFunction"].event_rules
    product_event = {
        "id": "1",
        "account": "123456789012",
        "region": cloud.region,
        "time": "2026-12-01T00:00:00Z",
        "source": SOURCE,
        "detail-type": DETAIL_TYPE,
        "resources": [],
        "detail": {"clusterName": cloud.model.parameters["ClusterName"], "status": "RUNNING", "jobId": "x"},
    }
    hint = {**product_event, "source": "slurm-job-api.head-node"}
    pattern = EventPattern.load(json.dumps(rule.pattern))  # as the local bus matches its rules
    assert pattern.matches_event(hint) and not pattern.matches_event(product_event)
