"""No request can run anything but the job it describes (issue 4 §1): hostile values in every job-spec field,
through the real API, state machine, handlers and head-node program (root → runuser → cluster user) — only Slurm is a
recording stand-in, so the exact sbatch argv and the files handed to it can be compared with what the spec says.

Hypothesis explores the generator of tests/support/hostile.py deterministically (derandomized, no database); a few
fixed cases pin down the findings that made the product change. Every check is in tests/security/harness.py.
"""

from __future__ import annotations

import pwd
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB
from harness.workflow import execution_arn, submit, upload_script, wait_for_execution
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_OTHER
from tests.cloud_fixtures import USER
from tests.security.harness import Harness, every_job_completes, wait_for_all_executions
from tests.security.spec_oracle import SBATCH_OPTION_FIELDS, caller_inputs_prefix
from tests.support.hostile import BENIGN_SCRIPT, SPEC_FIELDS, Canaries, Case, HypothesisSource, Targets

EXAMPLES_PER_FIELD = 14  # about 0.2 s each: the whole module stays near 60 s
# The sbatch-option fields are each one value checked by one pattern or range, attacked by the fixed cases too (and
# by the real-Slurm corpus): fewer examples each keep the module's time.
EXAMPLES_PER_SBATCH_OPTION = 4
STRUCTURED_FIELDS = [name for name in SPEC_FIELDS if name not in SBATCH_OPTION_FIELDS]
PREREQUISITE_SLURM_ID = "4242"
# A job Slurm keeps PENDING, never started (no start time): every dependency type on it is sent to Slurm.
PENDING = {
    "stdout": f"{PREREQUISITE_SLURM_ID}|{PREREQUISITE_SLURM_ID}|N/A|PENDING|Priority|2026-11-25T10:00:00|N/A|N/A\n"
}


def wait_for_status(api, job_id: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (view := api.get(f"/jobs/{job_id}").json())["status"] != status:
        assert time.monotonic() < deadline, view
        time.sleep(0.1)
    return view


def park(cloud, jobs: list[tuple[object, str]]) -> None:
    """Stops the workflows of jobs that Slurm holds PENDING: their records stay PENDING, with their Slurm id."""
    for api, job_id in jobs:
        assert wait_for_status(api, job_id, "PENDING")["slurmJobId"] == PREREQUISITE_SLURM_ID
    sfn = cloud.client("stepfunctions")
    for _, job_id in jobs:
        sfn.stop_execution(executionArn=execution_arn(cloud, job_id), cause="kept as a dependency target")
        wait_for_execution(cloud, job_id)
    time.sleep(1.5)  # a poll in flight when an execution stopped would show here
    for api, job_id in jobs:
        assert api.get(f"/jobs/{job_id}").json()["status"] == "PENDING"


@pytest.fixture(scope="module")
def harness(cloud, slurm):
    api, other = cloud.api_client(), cloud.api_client(LOCAL_OTHER)
    slurm.set(
        {
            "sbatch": [{"stdout": f"{PREREQUISITE_SLURM_ID}\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, PENDING],
        }
    )
    mine = submit(api, {"script": BENIGN_SCRIPT, "name": "prerequisite"})
    theirs = submit(other, {"script": BENIGN_SCRIPT, "name": "not-yours"})
    their_script = upload_script(other, BENIGN_SCRIPT.encode())  # exists, and is no script of this caller's
    park(cloud, [(api, mine), (other, theirs)])
    sbatch_environment = slurm.sbatch_calls_for(mine)[0]["env"]
    every_job_completes(slurm)
    checked = Harness(
        cloud=cloud,
        api=api,
        slurm=slurm,
        cluster_user=pwd.getpwnam(USER),
        canaries=Canaries(),
        targets=Targets(
            mine=(mine,),
            foreign=(theirs,),
            my_inputs=caller_inputs_prefix(LOCAL_DEVELOPER.arn),
            foreign_input=their_script,
        ),
        slurm_ids={mine: PREREQUISITE_SLURM_ID},
        sbatch_environment=sbatch_environment,
    )
    yield checked
    wait_for_all_executions(checked.sfn, cloud.state_machine_arn)  # none may outlive the local cloud


def fixed_cases(harness: Harness) -> list[Case]:
    """Cases worth keeping whatever the generator draws: the findings of this suite, the sharpest payloads, and every
    field both accepted and refused at least once."""
    c = harness.canaries.path
    mine, theirs = harness.targets.mine[0], harness.targets.foreign[0]
    my_inputs, their_script = harness.targets.my_inputs, harness.targets.foreign_input
    script = BENIGN_SCRIPT
    bodies = [
        {"script": script, "outputs": ["a\ud800"]},  # was a 502 after the execution had started
        {"script": script, "array": "1-3\n"},  # was accepted, then refused by the head node: never reached sbatch
        {"script": script, "array": "\u0661-\u0663"},  # was accepted: Arabic-Indic digits are digits to Python's \d
        {"script": script, "environment": {"BASH_ENV": f"$(touch {c()})", "LD_PRELOAD": f"`touch {c()}`"}},
        {"script": script, "environment": {"PATH": f"; touch {c()}", "IFS": f"\ntouch {c()}\n", "A": "é\u202e🚀"}},
        {"script": script, "workingDirectory": f"/tmp/$(touch {c()})", "outputs": [f"$(touch {c()})", "--uid=0"]},
        {"script": f"#!/bin/sh\n# $(touch {c()})\ntrue\n", "name": "_--", "partition": "debug", "qos": "uid.0"},
        {"script": script, "dependency": [{"jobId": mine, "type": "afternotok"}, {"jobId": mine}]},
        {"script": script, "dependency": [{"jobId": theirs}]},
        {"script": script, "name": "--uid=0"},
        {"script": script, "partition": "debug\n--uid=0"},
        {"script": script, "account": f"a;touch {c()}"},
        {"script": script, "nodes": f"1; touch {c()}"},
        {"script": script, "nodes": "1\n", "ntasks": True},
        {"script": script, "nodes": float("nan")},
        {"script": script, "nodes": True},  # was taken as 1: JSON integers only since issue 8
        {"script": script, "ntasks": False, "name": "ok"},
        {"script": script, "cpusPerTask": "1"},  # was taken as 1
        {"script": script, "memoryMB": 1.0},  # was taken as 1
        {"script": script, "nodes": 1, "timeLimitMinutes": " 1"},
        {"script": script, "dependency": [{"jobId": mine, "type": True}]},
        {"script": script, "environment": {"SLURM_CONF": "/tmp/evil.conf"}},
        {"script": script, "scriptS3Key": f"{my_inputs}x.sh"},
        {"scriptS3Key": "inputs/../jobs/x/input/script.sh"},
        {"script": script, "workingDirectory": "/tmp/../root"},
        {"script": script, "uid": 0},
        {"script": script, "ntasks": 0, "cpusPerTask": -1, "memoryMB": 2**64, "timeLimitMinutes": 527_041},
        {"script": script, "qos": "normal;id", "array": "1-1001", "outputs": ["../x"]},
        {"script": 42, "name": "ok"},
        {"script": script, "account": "uid.0", "ntasks": 2, "cpusPerTask": 2, "memoryMB": 100, "array": "0-2%1"},
        # The sbatch options of issue 11: look-alikes of other options, shell text, controls, huge values.
        {"script": script, "gres": "--wrap=x", "constraint": f"a&$(touch {c()})", "licenses": "a\x00b"},
        {"script": script, "gres": f"gpu:1;touch {c()}", "gpus": "1\n--uid=0", "gpusPerNode": "--gpus=1"},
        {"script": script, "gpusPerTask": "1" * 100_000, "constraint": "[a&b]" * 10_000},
        {"script": script, "begin": f"now\ntouch {c()}", "reservation": "--uid=0", "nice": 2**31},
        {"script": script, "begin": "now+1hour;id", "exclusive": "true", "requeue": 1, "ntasksPerNode": "2"},
        {"script": script, "memoryMB": 100, "memoryPerCpuMB": 100},
        {"script": script, "exclusive": "--exclusive", "requeue": None, "licenses": f"`touch {c()}`"},
        {
            "script": script,
            "gpus": "a100:2,v100:1",
            "gpusPerNode": "2",
            "gpusPerTask": "a100:1",
            "gres": "gpu:a100:2,shard:1",
            "constraint": "[rack1*2&rack2*4]|(intel&ib)",
            "reservation": "wrap",
            "licenses": "matlab@db:2,ansys",
            "begin": "now+1hour",
            "nice": -2_147_483_645,
            "exclusive": True,
            "requeue": False,
            "ntasksPerNode": 2,
            "memoryPerCpuMB": 64,
        },
        {"script": script, "exclusive": False, "requeue": True, "begin": "2026-12-24T18:00:00", "nice": 0},
        # Another caller's script (it exists) and every way around the caller's own prefix: refused, naming it.
        *({"scriptS3Key": key} for key in harness.generator.foreign_script_keys()),
        {"scriptS3Key": their_script.replace(their_script.rsplit("/", 2)[0] + "/", my_inputs)},  # not mine: missing
        {"scriptS3Key": f"{my_inputs}sjapi-fixed/run'()!*.sh", "timeLimitMinutes": 527_040, "nodes": 1},
    ]
    cases = [Case(number, body) for number, body in enumerate(bodies, start=1)]
    cases[-1].uploads[f"{my_inputs}sjapi-fixed/run'()!*.sh"] = f"#!/bin/sh\n# $(touch {c()})\ntrue\n".encode()
    return cases


def test_fixed_hostile_specs(harness):
    for case in fixed_cases(harness):
        harness.check(case)


def test_a_script_uploaded_through_post_inputs_is_refused_to_the_other_caller(harness):
    """Across callers, both ways: the object each caller uploaded runs for that caller only (the first way by
    fixed_cases, which send the other caller's object as this one)."""
    other = harness.cloud.api_client(LOCAL_OTHER)
    key = upload_script(harness.api, BENIGN_SCRIPT.encode(), "mine.sh")
    newest_before, sbatch_before = harness.newest_execution(), len(harness.slurm.calls("sbatch"))
    for attempt in ({"scriptS3Key": key}, {"scriptS3Key": key, "name": "borrowed", "nodes": 1}):
        answer = other.post("/jobs", json=attempt, headers={"Idempotency-Key": f"borrow-{len(attempt)}"})
        assert answer.status_code == 422 and answer.json()["code"] == "InvalidJobSpec", answer.text
        assert caller_inputs_prefix(LOCAL_OTHER.arn) in answer.json()["message"] and key not in answer.json()["message"]
    assert harness.newest_execution() == newest_before and len(harness.slurm.calls("sbatch")) == sbatch_before
    harness.existing_keys.add(key)
    harness.check(Case(0, {"scriptS3Key": key, "name": "own-upload"}, {key: BENIGN_SCRIPT.encode()}))
    assert harness.tally.accepted[-1] == harness.newest_execution().rsplit(":", 1)[1]


def explored(max_examples: int) -> settings:
    """Deterministic exploration (derandomized, no database) of `max_examples` cases."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


@pytest.mark.parametrize("focus", STRUCTURED_FIELDS)
@explored(EXAMPLES_PER_FIELD)
@given(data=st.data())
def test_hostile_specs_run_nothing_but_the_job_they_describe(harness, focus, data):
    harness.check(harness.generator.case(HypothesisSource(data), focus))


@pytest.mark.parametrize("focus", SBATCH_OPTION_FIELDS)
@explored(EXAMPLES_PER_SBATCH_OPTION)
@given(data=st.data())
def test_hostile_sbatch_options_run_nothing_but_the_job_they_describe(harness, focus, data):
    harness.check(harness.generator.case(HypothesisSource(data), focus))


@settings(max_examples=12, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_unknown_fields_are_refused_by_name(harness, data):
    harness.check(harness.generator.unknown_field_case(HypothesisSource(data)))


def test_every_accepted_job_ended_once_with_a_result_and_no_canary_fired(harness, record_property):
    tally = harness.tally
    print(f"\nhostile specs: {tally.summary()}")  # pytest -s or -rP shows it; --junitxml keeps it
    record_property("hostile_specs", tally.summary())
    assert tally.missing_fields() == []  # every field was both accepted and refused at least once
    assert tally.rejected > len(tally.accepted) / 2
    for job_id in tally.accepted:
        execution = harness.wait_for_execution(job_id)
        assert execution["status"] == "SUCCEEDED", execution
        assert harness.result_json(job_id)["status"] == "COMPLETED"
        assert len(harness.slurm.sbatch_calls_for(job_id)) == 1
    assert not harness.canaries.fired()
    assert len(harness.canaries.paths) > 100
