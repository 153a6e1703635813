"""``sja submit``'s options become the job spec as the README's table says (the body the API receives), sbatch's
notations are read as sbatch reads them, and a bad value exits 2 with one line naming the option."""

from __future__ import annotations

import pytest

from slurm_job_client import cli
from slurm_job_client.job_options import (
    SUBMIT_OPTIONS,
    OptionError,
    dependencies,
    environment_variable,
    memory_mb,
    time_limit_minutes,
)

JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"
OTHER = "1c7a2d0f-4a8b-4d2f-8b64-3b907a3c0e21"
SCRIPT = "#!/bin/bash\n#SBATCH --comment=kept\necho hi\n"

# argv after `submit SCRIPT` → the fields it adds to the spec; every option of SUBMIT_OPTIONS appears here.
FLAGS = [
    (["-J", "hello"], {"name": "hello"}),
    (["--job-name=hello"], {"name": "hello"}),
    (["-p", "debug"], {"partition": "debug"}),
    (["--partition", "debug"], {"partition": "debug"}),
    (["-A", "proj1"], {"account": "proj1"}),
    (["--account=proj1"], {"account": "proj1"}),
    (["-q", "high"], {"qos": "high"}),
    (["--qos", "high"], {"qos": "high"}),
    (["-N", "2"], {"nodes": 2}),
    (["--nodes=2"], {"nodes": 2}),
    (["-n", "8"], {"ntasks": 8}),
    (["--ntasks", "8"], {"ntasks": 8}),
    (["-c", "4"], {"cpusPerTask": 4}),
    (["--cpus-per-task=4"], {"cpusPerTask": 4}),
    (["--ntasks-per-node", "2"], {"ntasksPerNode": 2}),
    (["--mem", "4G"], {"memoryMB": 4096}),
    (["--mem=500M"], {"memoryMB": 500}),
    (["--mem-per-cpu", "2G"], {"memoryPerCpuMB": 2048}),
    (["-G", "a100:2"], {"gpus": "a100:2"}),
    (["--gpus", "2"], {"gpus": "2"}),
    (["--gpus-per-node", "v100:1"], {"gpusPerNode": "v100:1"}),
    (["--gpus-per-task", "1"], {"gpusPerTask": "1"}),
    (["--gres", "gpu:a100:2,shard:1"], {"gres": "gpu:a100:2,shard:1"}),
    (["-C", "intel&ib"], {"constraint": "intel&ib"}),
    (["--constraint", "[rack1*2&rack2*4]"], {"constraint": "[rack1*2&rack2*4]"}),
    (["--exclusive"], {"exclusive": True}),
    (["-t", "90"], {"timeLimitMinutes": 90}),
    (["--time=1-12:30"], {"timeLimitMinutes": 2190}),
    (["-b", "now+1hour"], {"begin": "now+1hour"}),
    (["--begin", "2026-12-24T18:00"], {"begin": "2026-12-24T18:00"}),
    (["--reservation", "maint"], {"reservation": "maint"}),
    (["--requeue"], {"requeue": True}),
    (["--no-requeue"], {"requeue": False}),
    (["--nice", "7"], {"nice": 7}),
    (["--nice=-5"], {"nice": -5}),
    (["--nice"], {"nice": 100}),  # sbatch's default adjustment
    (["-L", "matlab:2,ansys"], {"licenses": "matlab:2,ansys"}),
    (["--licenses", "ansys"], {"licenses": "ansys"}),
    (["-a", "1-10%2"], {"array": "1-10%2"}),
    (["--array=1,3,5-9:2"], {"array": "1,3,5-9:2"}),
    (["-d", f"afterok:{JOB}"], {"dependency": [{"type": "afterok", "jobId": JOB}]}),
    (
        [f"--dependency=afterany:{JOB}:{OTHER}", "-d", f"afternotok:{OTHER}"],
        {
            "dependency": [
                {"type": "afterany", "jobId": JOB},
                {"type": "afterany", "jobId": OTHER},
                {"type": "afternotok", "jobId": OTHER},
            ]
        },
    ),
    (["--export", "A=1", "--export=B=x,y=z"], {"environment": {"A": "1", "B": "x,y=z"}}),
    (["-D", "/scratch/run1"], {"workingDirectory": "/scratch/run1"}),
    (["--chdir=/scratch/run1"], {"workingDirectory": "/scratch/run1"}),
    (["--output-file", "results/a.csv", "--output-file=b.txt"], {"outputs": ["results/a.csv", "b.txt"]}),
]


@pytest.fixture
def script_file(tmp_path):
    path = tmp_path / "job.sh"
    path.write_text(SCRIPT)
    return path


def submitted_spec(fake_api, argv: list[str]) -> dict:
    assert cli.main(["--api-url", fake_api.url, *argv]) == 0
    (post,) = fake_api.to("POST", "/v1/jobs")
    return post.json()


@pytest.mark.parametrize(("flags", "fields"), FLAGS, ids=[" ".join(flags) for flags, _ in FLAGS])
def test_each_option_sets_its_field(fake_api, script_file, flags, fields, capsys):
    spec = submitted_spec(fake_api, ["submit", str(script_file), *flags])
    assert spec == {"script": SCRIPT, **fields}
    assert capsys.readouterr().out == f"Submitted job {next(iter(fake_api.jobs_by_key.values()))}\n"


def test_every_option_is_covered_by_the_table():
    given = {flag for flags, _ in FLAGS for argument in flags if argument.startswith("-") for flag in [argument]}
    given = {flag.split("=", 1)[0] for flag in given}
    declared = {flag for option in SUBMIT_OPTIONS for flag in option.flags} - {"--script-s3-key"}
    assert declared - given == set()


def test_options_combine_into_one_spec(fake_api, script_file):
    argv = ["submit", "-J", "big", "-N", "2", "--mem", "1T", "-t", "2:00:00", "--exclusive", str(script_file)]
    assert submitted_spec(fake_api, argv) == {
        "script": SCRIPT,
        "name": "big",
        "nodes": 2,
        "memoryMB": 1024 * 1024,
        "timeLimitMinutes": 120,
        "exclusive": True,
    }


def test_a_script_s3_key_instead_of_a_script(fake_api):
    assert submitted_spec(fake_api, ["submit", "--script-s3-key", "inputs/abc/1/run.sh"]) == {
        "scriptS3Key": "inputs/abc/1/run.sh"
    }


def test_the_script_from_stdin(fake_api, monkeypatch):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(SCRIPT))
    assert submitted_spec(fake_api, ["submit", "-"]) == {"script": SCRIPT}


def test_a_script_argument_is_always_a_path(fake_api, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "#!odd").write_text(SCRIPT)
    assert submitted_spec(fake_api, ["submit", "#!odd"]) == {"script": SCRIPT}


def test_idempotency_key_and_parsable(fake_api, script_file, capsys):
    assert (
        cli.main(
            ["--api-url", fake_api.url, "submit", "--idempotency-key", "nightly-1", "--parsable", str(script_file)]
        )
        == 0
    )
    (post,) = fake_api.to("POST", "/v1/jobs")
    assert post.headers["idempotency-key"] == "nightly-1"
    assert capsys.readouterr().out == fake_api.jobs_by_key["nightly-1"] + "\n"


BAD = [
    (["--mem", "4X"], "argument --mem: not a memory size: '4X' (e.g. 500M, 4G; units K, M, G, T)"),
    (["--mem", "0"], "argument --mem: memory must be more than 0: '0'"),
    (["--mem-per-cpu", "1.5G"], "argument --mem-per-cpu: not a memory size: '1.5G' (e.g. 500M, 4G; units K, M, G, T)"),
    (["-t", "1:2:3:4"], "argument -t/--time: not an sbatch time: '1:2:3:4' (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S)"),
    (["-t", "UNLIMITED"], "argument -t/--time: not an sbatch time: 'UNLIMITED' (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S)"),
    (["-t", "0"], "argument -t/--time: a time limit must be at least one second: '0'"),
    (["-N", "two"], "argument -N/--nodes: not a whole number: 'two'"),
    (["--nice", "x"], "argument --nice: not a whole number: 'x'"),
    (
        ["-d", "afterwards:1"],
        "argument -d/--dependency: not a dependency: 'afterwards:1' (type:jobId with type one "
        "of after, afterany, afterok, afternotok)",
    ),
    (
        ["-d", "afterok:"],
        "argument -d/--dependency: not a dependency: 'afterok:' (type:jobId with type one of "
        "after, afterany, afterok, afternotok)",
    ),
    (["--export", "NOVALUE"], "argument --export: not NAME=VALUE: 'NOVALUE' (one variable per --export)"),
    (["--export", "1A=x"], "argument --export: not NAME=VALUE: '1A=x' (one variable per --export)"),
    (["--requeue=yes"], "argument --requeue/--no-requeue: ignored explicit argument 'yes'"),
]


@pytest.mark.parametrize(("flags", "message"), BAD, ids=[" ".join(flags) for flags, _ in BAD])
def test_a_bad_value_exits_2_with_one_line(fake_api, script_file, capsys, flags, message):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--api-url", fake_api.url, "submit", str(script_file), *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == f"sja submit: error: {message} (see sja submit --help)\n"
    assert fake_api.requests == []  # nothing was sent


def test_an_unknown_option_exits_2_with_one_line(fake_api, script_file, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--api-url", fake_api.url, "submit", str(script_file), "--no-such-option"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "sja: error: unrecognized arguments: --no-such-option (see sja --help)\n"


@pytest.mark.parametrize("argv", [["submit"], ["submit", "x.sh", "--script-s3-key", "inputs/k"]])
def test_a_script_or_a_key_exactly(fake_api, capsys, argv):
    assert cli.main(["--api-url", fake_api.url, *argv]) == 2
    assert capsys.readouterr().err == (
        "sja submit: error: give a SCRIPT or --script-s3-key (one of the two) (see sja submit --help)\n"
    )
    assert fake_api.requests == []


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("30", 30),  # M
        ("30:00", 30),  # M:S
        ("0:30", 1),  # 30 s → rounded up
        ("1:01", 2),
        ("1:30:00", 90),  # H:M:S
        ("0:00:01", 1),
        ("2-0", 2880),  # D-H
        ("1-2", 1560),
        ("1-2:30", 1590),  # D-H:M
        ("1-0:0:1", 1441),  # D-H:M:S
        ("0-0:0:59", 1),
        ("527040", 527040),
    ],
)
def test_time_limits_in_minutes_rounded_up(text, minutes):
    assert time_limit_minutes(text) == minutes


@pytest.mark.parametrize("text", ["", ":", "1:", "-1", "1-", "1-2-3", "1:2:3:4", "1h", "٣", "1.5", "0", "0:0"])
def test_times_sbatch_would_not_take(text):
    with pytest.raises(OptionError):
        time_limit_minutes(text)


@pytest.mark.parametrize(
    ("text", "megabytes"),
    [("500", 500), ("500M", 500), ("500m", 500), ("4G", 4096), ("1T", 1048576), ("2048K", 2), ("1K", 1), ("1025K", 2)],
)
def test_memory_in_megabytes_rounded_up(text, megabytes):
    assert memory_mb(text) == megabytes


@pytest.mark.parametrize("text", ["", "G", "4 G", "4GB", "-1", "1.5G", "0", "0G", "4P", "٤G"])
def test_memory_sbatch_would_not_take(text):
    with pytest.raises(OptionError):
        memory_mb(text)


def test_dependency_lists():
    assert dependencies(f"after:{JOB},afterok:{OTHER}") == [
        {"type": "after", "jobId": JOB},
        {"type": "afterok", "jobId": OTHER},
    ]
    with pytest.raises(OptionError):
        dependencies(f"afterok:{JOB}::{OTHER}")


def test_environment_values_are_kept_whole():
    assert environment_variable("PATHS=/a:/b,/c=d") == ("PATHS", "/a:/b,/c=d")
    assert environment_variable("EMPTY=") == ("EMPTY", "")
