"""Job spec → sbatch options: one argv element per option, --name=value, nothing else."""

from slurm_job_api.head_node_program import ALLOWED_SBATCH_OPTIONS
from slurm_job_api.sbatch import DEFAULT_JOB_NAME, dependency_option, sbatch_options
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


def test_options_are_within_the_head_node_allow_list():
    spec = JobSpec.model_validate(
        {"script": "#!/bin/sh\n", "partition": "p", "nodes": 1, "ntasks": 1, "cpusPerTask": 1, "memoryMB": 1}
        | {"timeLimitMinutes": 1, "array": "1", "account": "a", "qos": "q"}
    )
    for option in sbatch_options(spec, {"afterok": ["1"]}):
        assert option.startswith("--") and option[2:].split("=", 1)[0] in ALLOWED_SBATCH_OPTIONS


def test_no_dependency_option_without_open_dependencies():
    assert dependency_option({}) is None
    assert dependency_option({"afterok": []}) is None
