"""Job spec → sbatch options: one argv element per option, --name=value (or --flag for a boolean), nothing else."""

import pytest

from slurm_job_api.head_node_program import ALLOWED_SBATCH_FLAGS, ALLOWED_SBATCH_OPTIONS
from slurm_job_api.sbatch import DEFAULT_JOB_NAME, dependency_option, option_names, sbatch_options
from slurm_job_api.spec import JobSpec


def test_minimal_spec_only_names_the_job():
    assert sbatch_options(JobSpec.model_validate({"script": "#!/bin/sh\n"})) == [f"--job-name={DEFAULT_JOB_NAME}"]


def test_every_resource_field_becomes_one_option():
    spec = JobSpec.model_validate(
        {
            "script": "#!/bin/sh\n",
            "name": "n",
            "partition": "p",
            "nodes": 2,
            "ntasks": 3,
            "cpusPerTask": 4,
            "memoryMB": 512,
            "timeLimitMinutes": 7,
            "array": "1-3%1",
            "account": "acct",
            "qos": "q",
        }
    )
    assert sbatch_options(spec, {"afterok": ["11", "12"], "afterany": ["13"]}) == [
        "--job-name=n",
        "--partition=p",
        "--nodes=2",
        "--ntasks=3",
        "--cpus-per-task=4",
        "--mem=512M",
        "--time=7",
        "--array=1-3%1",
        "--account=acct",
        "--qos=q",
        "--dependency=afterany:13,afterok:11:12",
    ]


EVERY_NEW_OPTION = {
    "ntasksPerNode": 2,
    "memoryPerCpuMB": 256,
    "gpus": "a100:2,v100:1",
    "gpusPerNode": "2",
    "gpusPerTask": "a100:1",
    "gres": "gpu:a100:2,shard:1",
    "constraint": "[rack1*2&rack2*4]|(intel&ib)",
    "reservation": "maintenance-1",
    "licenses": "matlab@db1:2,ansys",
    "begin": "2026-12-24T18:00",
    "nice": -20,
    "exclusive": True,
    "requeue": False,
}


def test_every_new_field_becomes_one_argv_element():
    spec = JobSpec.model_validate({"script": "#!/bin/sh\n", **EVERY_NEW_OPTION})
    assert sbatch_options(spec) == [
        f"--job-name={DEFAULT_JOB_NAME}",
        "--ntasks-per-node=2",
        "--mem-per-cpu=256M",
        "--gpus=a100:2,v100:1",
        "--gpus-per-node=2",
        "--gpus-per-task=a100:1",
        "--gres=gpu:a100:2,shard:1",
        "--constraint=[rack1*2&rack2*4]|(intel&ib)",
        "--reservation=maintenance-1",
        "--licenses=matlab@db1:2,ansys",
        "--begin=2026-12-24T18:00",
        "--nice=-20",
        "--exclusive",
        "--no-requeue",
    ]


@pytest.mark.parametrize(
    ("fields", "flags"),
    [
        ({"exclusive": True, "requeue": True}, ["--exclusive", "--requeue"]),
        ({"exclusive": False, "requeue": False}, ["--no-requeue"]),  # not exclusive: the partition's default
        ({"exclusive": False}, []),
        ({}, []),
    ],
)
def test_boolean_fields_give_a_bare_flag_or_none(fields, flags):
    spec = JobSpec.model_validate({"script": "#!/bin/sh\n", **fields})
    assert sbatch_options(spec) == [f"--job-name={DEFAULT_JOB_NAME}", *flags]


def test_options_are_within_the_head_node_allow_list():
    spec = JobSpec.model_validate(
        {"script": "#!/bin/sh\n", "partition": "p", "nodes": 1, "ntasks": 1, "cpusPerTask": 1, "memoryMB": 1}
        | {"timeLimitMinutes": 1, "array": "1", "account": "a", "qos": "q"}
        | {name: value for name, value in EVERY_NEW_OPTION.items() if name != "memoryPerCpuMB"}
    )
    for option in sbatch_options(spec, {"afterok": ["1"]}):
        name, has_value, _ = option.removeprefix("--").partition("=")
        assert name in (ALLOWED_SBATCH_OPTIONS if has_value else ALLOWED_SBATCH_FLAGS), option


def test_the_head_node_allows_exactly_the_options_the_spec_can_give():
    assert option_names() == ALLOWED_SBATCH_OPTIONS | ALLOWED_SBATCH_FLAGS
    assert not ALLOWED_SBATCH_OPTIONS & ALLOWED_SBATCH_FLAGS


def test_no_dependency_option_without_open_dependencies():
    assert dependency_option({}) is None
    assert dependency_option({"afterok": []}) is None
