"""Execution ARNs of the job workflow."""

from slurm_job_api.arns import execution_arn

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:slurm-job-api-jobs"


def test_execution_arn_of_a_state_machine_and_a_name():
    assert execution_arn(MACHINE, "j_1") == "arn:aws:states:us-east-1:123456789012:execution:slurm-job-api-jobs:j_1"


def test_the_empty_name_gives_the_prefix_of_every_execution():
    assert execution_arn(MACHINE, "x").startswith(execution_arn(MACHINE, ""))
