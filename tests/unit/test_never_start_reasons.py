"""The table of Slurm pending reasons that mean a job can never start under the cluster's configuration."""

import pytest

from slurm_job_api.statuses import NEVER_START_REASONS, never_starts, reason_code

# Reasons of squeue(1) "JOB REASON CODES" after which a job still starts once other jobs end, nodes are launched or
# come back, a time arrives or a hold is released: "not yet".
NOT_YET = [
    "Resources",
    "Priority",
    "Dependency",
    "BeginTime",
    "ReqNodeNotAvail, UnavailableNodes:queue1-dy-c5-[1-10]",
    "NodeDown",
    "PartitionDown",
    "PartitionInactive",
    "JobHeldUser",
    "JobHeldAdmin",
    "Licenses",
    "Reservation",
    "QOSGrpCpuLimit",
    "AssocGrpNodeLimit",
    "QOSMaxJobsPerUserLimit",
    "JobArrayTaskLimit",
    "Prolog",
    "Cleaning",
    "WaitingForScheduling",
    "None",
]
NEVER = [
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
]


@pytest.mark.parametrize("reason", NOT_YET)
def test_not_yet(reason):
    assert not never_starts(reason)


@pytest.mark.parametrize("reason", NEVER)
def test_never(reason):
    assert never_starts(reason) and NEVER_START_REASONS[reason]


def test_reason_codes_drop_slurms_details():
    assert reason_code("ReqNodeNotAvail, UnavailableNodes:vm") == "ReqNodeNotAvail"
    assert reason_code("PartitionConfig") == "PartitionConfig" and reason_code(None) is None
    assert not never_starts(None) and not never_starts("")


def test_every_entry_is_a_slurm_reason_name_with_a_meaning():
    for reason, meaning in NEVER_START_REASONS.items():
        assert reason.isalnum() and reason[0].isupper() and meaning.startswith("the ")
