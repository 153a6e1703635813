"""The job spec: every field accepted when well-formed and refused, naming the field, when not."""

import pytest
from pydantic import ValidationError

from slurm_job_api.spec import MAX_ARRAY_TASKS, MAX_SCRIPT_BYTES, JobSpec

SCRIPT = "#!/bin/bash\necho hello\n"
JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"


def fields_in_error(error: ValidationError) -> set[str]:
    return {".".join(str(part) for part in problem["loc"]) for problem in error.errors()}


def test_every_field_is_accepted_when_well_formed():
    spec = JobSpec.model_validate(
        {
            "name": "sim-1.run_2",
            "script": SCRIPT,
            "partition": "compute",
            "nodes": 2,
            "ntasks": 8,
            "cpusPerTask": 4,
            "memoryMB": 2048,
            "timeLimitMinutes": 90,
            "array": "1-10%2",
            "dependency": [{"type": "afterany", "jobId": JOB}, {"jobId": JOB}],
            "environment": {"OMP_NUM_THREADS": "4", "_X": "a b;$(rm -rf /)"},
            "workingDirectory": "/shared/projects/sim",
            "account": "physics",
            "qos": "normal",
            "outputs": ["results/summary.csv", "log.txt"],
        }
    )
    assert spec.cpus_per_task == 4 and spec.memory_mb == 2048 and spec.dependency[1].type == "afterok"
    assert spec.array_task_ids == list(range(1, 11))
    assert spec.to_json_dict()["memoryMB"] == 2048


def test_script_from_s3_inputs():
    spec = JobSpec.model_validate({"scriptS3Key": "inputs/team/run.sh"})
    assert spec.script_s3_key == "inputs/team/run.sh" and spec.script is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"script": SCRIPT, "nodez": 1}, "nodez"),
        ({"script": SCRIPT, "scriptS3Key": "inputs/a.sh"}, ""),
        ({}, ""),
        ({"script": "echo no shebang"}, "script"),
        ({"script": "#!/bin/sh\n" + "x" * MAX_SCRIPT_BYTES}, "script"),
        ({"script": "#!/bin/sh\n\x00"}, "script"),
        # Whose prefix a key is under is the API's check (slurm_job_api.inputs): the spec refuses malformed keys.
        ({"scriptS3Key": "inputs/a b.sh"}, "scriptS3Key"),
        ({"scriptS3Key": "inputs/%2e%2e/x"}, "scriptS3Key"),
        ({"scriptS3Key": "inputs/../jobs/x"}, "scriptS3Key"),
        ({"scriptS3Key": "inputs/dir/"}, "scriptS3Key"),
        ({"script": SCRIPT, "name": "bad name"}, "name"),
        ({"script": SCRIPT, "name": "--partition=x"}, "name"),
        ({"script": SCRIPT, "partition": "a;b"}, "partition"),
        ({"script": SCRIPT, "nodes": 0}, "nodes"),
        ({"script": SCRIPT, "nodes": "2"}, "nodes"),
        ({"script": SCRIPT, "ntasks": -1}, "ntasks"),
        ({"script": SCRIPT, "cpusPerTask": 100000}, "cpusPerTask"),
        ({"script": SCRIPT, "memoryMB": 0}, "memoryMB"),
        ({"script": SCRIPT, "timeLimitMinutes": 0}, "timeLimitMinutes"),
        ({"script": SCRIPT, "array": "1-"}, "array"),
        ({"script": SCRIPT, "array": "5-1"}, "array"),
        ({"script": SCRIPT, "array": "1-10:0"}, "array"),
        ({"script": SCRIPT, "array": f"1-{MAX_ARRAY_TASKS + 1}"}, "array"),
        ({"script": SCRIPT, "array": "1-3;id"}, "array"),
        ({"script": SCRIPT, "dependency": [{"jobId": "123"}]}, "dependency.0.jobId"),
        ({"script": SCRIPT, "dependency": [{"jobId": JOB, "type": "singleton"}]}, "dependency.0.type"),
        ({"script": SCRIPT, "dependency": []}, "dependency"),
        ({"script": SCRIPT, "environment": {"1BAD": "x"}}, "environment"),
        ({"script": SCRIPT, "environment": {"A-B": "x"}}, "environment"),
        ({"script": SCRIPT, "environment": {"SLURM_JOB_ID": "1"}}, "environment"),
        ({"script": SCRIPT, "environment": {"A": "x\x00y"}}, "environment"),
        ({"script": SCRIPT, "environment": {"A": "x" * 70000}}, "environment"),
        ({"script": SCRIPT, "workingDirectory": "relative/dir"}, "workingDirectory"),
        ({"script": SCRIPT, "workingDirectory": "/a/../etc"}, "workingDirectory"),
        ({"script": SCRIPT, "workingDirectory": "/a\nb"}, "workingDirectory"),
        ({"script": SCRIPT, "account": "$(id)"}, "account"),
        ({"script": SCRIPT, "qos": "x y"}, "qos"),
        ({"script": SCRIPT, "outputs": ["/etc/passwd"]}, "outputs"),
        ({"script": SCRIPT, "outputs": ["../secret"]}, "outputs"),
        ({"script": SCRIPT, "outputs": ["a/./b"]}, "outputs"),
        ({"script": SCRIPT, "outputs": ["dir/"]}, "outputs"),
        ({"script": SCRIPT, "outputs": ["a", "a"]}, "outputs"),
        ({"script": SCRIPT, "outputs": [""]}, "outputs"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(body)
    if field:
        assert field in fields_in_error(caught.value), caught.value


INTEGER_FIELDS = ("nodes", "ntasks", "cpusPerTask", "memoryMB", "timeLimitMinutes")


@pytest.mark.parametrize("field", INTEGER_FIELDS)
@pytest.mark.parametrize("value", [True, False, "1", "2", " 2", 1.0, 2.0, 2.5, [2], {"value": 2}])
def test_integer_fields_take_json_integers_only(field, value):
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"script": SCRIPT, field: value})
    assert fields_in_error(caught.value) == {field}, caught.value


@pytest.mark.parametrize("field", INTEGER_FIELDS)
def test_integer_fields_take_a_json_integer_as_it_is(field):
    spec = JobSpec.model_validate_json(f'{{"script": "#!/bin/sh\\n", "{field}": 2}}')
    assert spec.to_json_dict()[field] == 2 and type(spec.to_json_dict()[field]) is int


@pytest.mark.parametrize(
    "dependency",
    [[{"jobId": JOB, "type": True}], [{"jobId": 1}], [{"jobId": JOB, "type": ["afterok"]}], [JOB]],
)
def test_dependency_items_are_objects_of_strings(dependency):
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"script": SCRIPT, "dependency": dependency})
    assert all(name.startswith("dependency.0") for name in fields_in_error(caught.value)), caught.value


def test_spec_is_immutable():
    spec = JobSpec.model_validate({"script": SCRIPT})
    with pytest.raises(ValidationError):
        spec.nodes = 3
