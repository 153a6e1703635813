"""The checks of the fault harness can fail: a job lost, run twice or ended wrong is reported as such; and the
long-job benchmark's stand-ins speak the formats the head-node program parses."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import replace

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from harness import final_writes
from harness.long_jobs import VirtualClock
from harness.reliability import JobOutcome, JobPlan, record_written_after_finish
from harness.slurm_records import api_job_of
from harness.state_slurm import ENDED_ANSWERS, StateSlurm, slurm_config
from slurm_job_api.head_node_program import parse_sacct, parse_scontrol_jobs, parse_slurm_config, parse_squeue

JOB_ID = "0b6e4a52-58a8-4f36-9f2c-1d1c5e0e7a11"

RIGHT = JobOutcome(
    job_id=JOB_ID,
    plan=JobPlan(exit_code=3, expected_status="FAILED"),
    execution_status="FAILED",
    status="FAILED",
    exit_code=3,
    result_status="FAILED",
    cause="Slurm job 7 failed with exit code 3",
    error_code=None,
    slurm_job_ids=frozenset({"7"}),
    runs=1,
    task_failures=(),
)


def verdict(outcome: JobOutcome) -> tuple[bool, bool, bool]:
    return outcome.lost, outcome.duplicated, outcome.wrong_state


def test_a_job_that_ended_as_planned_is_right():
    assert verdict(RIGHT) == (False, False, False)


def test_a_job_without_an_end_a_result_or_a_run_is_lost():
    assert verdict(replace(RIGHT, execution_status="RUNNING", status="RUNNING")) == (True, False, False)
    assert verdict(replace(RIGHT, result_status=None)) == (True, False, False)
    assert verdict(replace(RIGHT, status=None)) == (True, False, False)
    assert verdict(replace(RIGHT, runs=0, slurm_job_ids=frozenset())) == (True, False, False)


def test_a_job_slurm_took_or_ran_twice_is_duplicated():
    assert verdict(replace(RIGHT, runs=2))[1]
    assert verdict(replace(RIGHT, slurm_job_ids=frozenset({"7", "8"})))[1]
    never_to_run = replace(RIGHT, plan=JobPlan(expected_status="SUBMIT_FAILED", reaches_slurm=False))
    assert verdict(replace(never_to_run, status="SUBMIT_FAILED", result_status="SUBMIT_FAILED"))[1]


def test_a_job_finished_twice_or_written_after_its_finish_is_duplicated():
    assert verdict(replace(RIGHT, finishes=2)) == (False, True, False)
    assert verdict(replace(RIGHT, written_after_finish=True)) == (False, True, False)
    assert verdict(replace(RIGHT, result_json_writes=2)) == (False, True, False)
    assert verdict(replace(RIGHT, final_record_writes=2)) == (False, True, False)


def test_a_record_is_written_after_its_finish_when_its_times_disagree():
    finished = {"finishedAt": "2026-12-04T18:00:05Z", "updatedAt": "2026-12-04T18:00:05Z"}
    assert not record_written_after_finish(finished, {"finishedAt": "2026-12-04T18:00:05Z"})
    assert not record_written_after_finish(finished, {"status": "ERROR"})  # the state machine's fallback result.json
    assert not record_written_after_finish({"updatedAt": "2026-12-04T18:00:01Z"}, None)  # not finished (yet)
    assert record_written_after_finish({**finished, "updatedAt": "2026-12-04T18:00:09Z"}, None)
    assert record_written_after_finish(finished, {"finishedAt": "2026-12-04T18:00:01Z"})


def test_a_job_with_another_status_exit_code_or_result_is_wrong():
    assert verdict(replace(RIGHT, status="COMPLETED", result_status="COMPLETED", exit_code=0)) == (False, False, True)
    assert verdict(replace(RIGHT, exit_code=1)) == (False, False, True)
    assert verdict(replace(RIGHT, result_status="ERROR")) == (False, False, True)


def test_slurm_jobs_are_tied_to_api_jobs_by_their_directory():
    directory = f"/home/hpcuser/.slurm-job-api-jobs/{JOB_ID}/{'a' * 32}"
    assert api_job_of(directory) == api_job_of(directory + "/") == JOB_ID
    assert api_job_of("/tmp") is None and api_job_of(f"/home/x/jobs/{JOB_ID}/y") is None


def test_the_virtual_clock_rings_once_when_it_passes_the_alarm():
    clock, rung = VirtualClock(), []
    clock.when(100, lambda: rung.append(clock.seconds))
    clock.advance(60)
    assert rung == []
    clock.advance(60)
    clock.advance(60)
    assert rung == [120] and clock.seconds == 180


def test_the_state_slurm_stand_ins_answer_in_the_programs_formats(tmp_path):
    slurm = StateSlurm(tmp_path / "slurm")
    slurm.configure(slurm_config(accounting=False, min_job_age=300))

    def run(tool: str, *args: str) -> str:
        return subprocess.run([str(slurm.bin_dir / tool), *args], capture_output=True, text=True, check=True).stdout

    assert run("sbatch", "--parsable", "job.sh") == "101\n"
    assert parse_slurm_config(run("scontrol", "show", "config")) == {"minJobAge": 300, "accountingAvailable": False}
    assert [record.slurm_state for record in parse_squeue(run("squeue"))] == ["RUNNING"]
    slurm.show(ENDED_ANSWERS)
    assert [record.slurm_state for record in parse_squeue(run("squeue"))] == ["COMPLETED"]
    assert [(r.slurm_state, r.exit_code) for r in parse_sacct(run("sacct"))] == [("COMPLETED", 0)]
    ended = parse_scontrol_jobs(run("scontrol", "--oneliner", "show", "job", "101"))
    assert [(r.slurm_state, r.exit_code) for r in ended] == [("COMPLETED", 0)]


def test_the_writes_that_finish_a_job_are_counted_where_they_land(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    job_id = str(uuid.uuid4())
    final_writes.install()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="results")
        s3.put_object(Bucket="results", Key=f"jobs/{job_id}/result.json", Body=b"{}")
        s3.put_object(Bucket="results", Key=f"jobs/{job_id}/slurm-stdout", Body=b"")  # not a finish
        table = boto3.resource("dynamodb", region_name="us-east-1").create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "jobId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "jobId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

        def update(name: str, **condition: str) -> None:
            table.update_item(
                Key={"jobId": job_id},
                UpdateExpression="SET #f0 = :f0",
                ExpressionAttributeNames={"#f0": name},
                ExpressionAttributeValues={":f0": "2026-12-04T18:00:05Z"},
                **condition,
            )

        update("finishedAt")
        update("updatedAt")  # a write, not a finish
        with pytest.raises(ClientError):  # refused: not a write at all
            update("finishedAt", ConditionExpression="attribute_not_exists(jobId)")
    assert (final_writes.result_json_writes(job_id), final_writes.final_record_writes(job_id)) == (1, 1)
