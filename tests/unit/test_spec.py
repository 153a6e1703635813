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
    ("field", "value"),
    [
        ("gpus", "1"),
        ("gpus", "a100:2,v100:1"),
        ("gpusPerNode", "nvidia_a100-80gb:8"),
        ("gpusPerTask", "1"),
        ("gres", "gpu:a100:2,shard:1"),
        ("gres", "gpu"),
        ("gres", "nvme:100G,gpu:2"),
        ("constraint", "intel"),
        ("constraint", "c5.xlarge&efa|gpu"),
        ("constraint", "[rack1*2&rack2*4]"),
        ("constraint", "(knl&snc4&flat)*4&haswell"),
        ("constraint", "[(a&b)|c]"),
        ("begin", "now"),
        ("begin", "now+1hour"),
        ("begin", "now+90"),
        ("begin", "now+2weeks"),
        ("begin", "2026-12-24"),
        ("begin", "2026-12-24T18:00"),
        ("begin", "2028-02-29T23:59:59"),
        ("begin", "18:00"),
        ("begin", "00:00:59"),
        ("reservation", "maintenance-1"),
        ("licenses", "matlab:2,ansys"),
        ("licenses", "fluent@flexlm1:10"),
        ("nice", 0),
        ("nice", 2147483645),
        ("nice", -2147483645),
        ("ntasksPerNode", 4096),
        ("memoryPerCpuMB", 1024**3),
        ("exclusive", True),
        ("exclusive", False),
        ("requeue", True),
        ("requeue", False),
    ],
)
def test_each_sbatch_option_field_takes_what_slurm_accepts(field, value):
    spec = JobSpec.model_validate({"script": SCRIPT, field: value})
    assert spec.to_json_dict()[field] == value


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
        *(
            ({"script": SCRIPT, field: value}, field)
            for field in ("gpus", "gpusPerNode", "gpusPerTask")
            for value in ("0", "-1", "a100:", ":2", "a100:2,", "a100 2", "2;id", "--wrap=x", "2\n", "\uff12", "1" * 65)
        ),
        *(
            ({"script": SCRIPT, "gres": value}, "gres")
            for value in ("", "gpu:", "gpu::2", "gpu:a100:0", "--wrap=x", "gpu:1;id", "gpu:1\n", "gpu:1\x00", "g" * 129)
        ),
        *(
            ({"script": SCRIPT, "constraint": value}, "constraint")
            for value in ("", "a&", "&a", "a||b", "a&&b", "(a", "a)", "[a&[b]]", "[a)", "a b", "a;id", "$(id)", "!a")
        ),
        ({"script": SCRIPT, "constraint": "--wrap=x"}, "constraint"),
        ({"script": SCRIPT, "constraint": "a\n"}, "constraint"),
        ({"script": SCRIPT, "constraint": "a&" * 64 + "a"}, "constraint"),
        *(
            ({"script": SCRIPT, "begin": value}, "begin")
            for value in (
                "",
                "later",
                "now-1hour",
                "now+1year",
                "now+1 hour",
                "now+12345678",
                "2026-13-01",
                "2026-02-30",
            )
        ),
        *(
            ({"script": SCRIPT, "begin": value}, "begin")
            for value in ("2026-12-24 18:00", "24:00", "18:60", "2026-12-24T18", "18:00\n", "--begin=now", "\uff11:00")
        ),
        ({"script": SCRIPT, "reservation": "a,b"}, "reservation"),
        ({"script": SCRIPT, "reservation": "--wrap=x"}, "reservation"),
        *(
            ({"script": SCRIPT, "licenses": value}, "licenses")
            for value in ("", "matlab:0", "matlab:", "matlab:2,", "@db", "a|b", "matlab:2;id", "--wrap=x", "l" * 129)
        ),
        ({"script": SCRIPT, "nice": 2147483646}, "nice"),
        ({"script": SCRIPT, "nice": -2147483646}, "nice"),
        ({"script": SCRIPT, "ntasksPerNode": 0}, "ntasksPerNode"),
        ({"script": SCRIPT, "ntasksPerNode": 4097}, "ntasksPerNode"),
        ({"script": SCRIPT, "memoryPerCpuMB": 0}, "memoryPerCpuMB"),
        ({"script": SCRIPT, "exclusive": "true"}, "exclusive"),
        ({"script": SCRIPT, "exclusive": 1}, "exclusive"),
        ({"script": SCRIPT, "requeue": "no"}, "requeue"),
        ({"script": SCRIPT, "requeue": 0}, "requeue"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(body)
    if field:
        assert field in fields_in_error(caught.value), caught.value


INTEGER_FIELDS = (
    "nodes",
    "ntasks",
    "cpusPerTask",
    "memoryMB",
    "timeLimitMinutes",
    "ntasksPerNode",
    "memoryPerCpuMB",
    "nice",
)


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
    ("body", "names"),
    [
        ({"script": SCRIPT, "memoryMB": 1024, "memoryPerCpuMB": 256}, ["memoryMB", "memoryPerCpuMB"]),
        ({"memoryMB": 1, "memoryPerCpuMB": 1}, ["script", "scriptS3Key", "memoryMB", "memoryPerCpuMB"]),
    ],
)
def test_conflicting_fields_are_refused_naming_every_one(body, names):
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(body)
    message = str(caught.value)
    assert all(name in message for name in names), message


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
