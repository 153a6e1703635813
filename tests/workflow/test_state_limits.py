"""The workflow's state stays small whatever the spec (issue 8, items 1 and 2): the largest spec the README allows
(every field at its maximum, with a UTF-8 and an ASCII script and environment) and the largest array with the most
outputs (1000 tasks, 100 outputs: 2100 files) run through the real state machine under moto with the real handlers
and head-node program over scripted Slurm. The execution input and every state's input and output in the history stay
under STATE_BUDGET_BYTES (Step Functions fails an execution at 256 KiB); result.json is whole, and the job record
(a summary of the spec) stays under RECORD_BUDGET_BYTES. Run with -s to see the measured sizes (docs/reliability.md
quotes them)."""

from __future__ import annotations

import json

import pytest

from harness.limits import (
    RECORD_BUDGET_BYTES,
    STATE_BUDGET_BYTES,
    largest_array_file_names,
    largest_array_spec,
    largest_spec,
    write_units,
)
from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import (
    SCRIPT,
    finish,
    history,
    record_bytes,
    result_json,
    state_sizes,
    submit,
    wait_for_execution,
)


def completes(slurm, **sbatch) -> None:
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", **sbatch}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )


def report(title: str, sizes: dict[str, int]) -> None:
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:4]
    print(f"\n{title}: largest state {largest[0][1]} bytes ({largest[0][0]}); next: {largest[1:]}")


def assert_within_budget(sizes: dict[str, int]) -> None:
    over = {where: size for where, size in sizes.items() if size > STATE_BUDGET_BYTES}
    assert not over, f"states over the {STATE_BUDGET_BYTES}-byte budget: {over}"
    assert any(where.startswith("FinishJob") for where in sizes), "the history shows no FinishJob state"


@pytest.fixture(scope="module")
def earlier_job(cloud, slurm) -> str:
    """A completed job of the caller, for the largest spec's 32 dependencies."""
    completes(slurm)
    job_id = submit(cloud.api_client(), {"script": SCRIPT})
    assert wait_for_execution(cloud, job_id)["status"] == "SUCCEEDED"
    return job_id


@pytest.mark.parametrize("wide", [True, False], ids=["utf8", "ascii"])
def test_largest_spec_keeps_the_state_small(cloud, api, slurm, earlier_job, wide):
    spec = largest_spec(wide=wide, dependency_job_id=earlier_job)
    body = json.dumps(spec, ensure_ascii=False).encode("utf-8")
    completes(slurm)
    answer = api.post("/jobs", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["jobId"]
    execution, events, result, view = finish(cloud, api, job_id, timeout=180)
    sizes = state_sizes(cloud, execution, events)
    report(f"largest spec ({'UTF-8' if wide else 'ASCII'}, body {len(body)} bytes)", sizes)
    assert_within_budget(sizes)
    assert execution["status"] == "SUCCEEDED", execution
    assert (view["status"], result["status"]) == ("COMPLETED", "COMPLETED")
    assert result["spec"] == spec  # the whole spec, script and environment included
    small = {name: value for name, value in spec.items() if name not in ("script", "environment", "outputs")}
    assert view["spec"] == {
        **small,
        "scriptBytes": 64 * 1024,
        "environmentVariables": 256,
        "environmentBytes": 64 * 1024,
        "outputCount": 100,
    }
    assert result["collection"]["status"] == "complete", result["collection"]
    assert result["files"] == []  # the scripted job wrote nothing
    call = slurm.sbatch_calls_for(job_id)[0]
    assert f"--partition={spec['partition']}" in call["argv"] and f"--array={spec['array']}" in call["argv"]
    exported = slurm.export_file(call).split(b"\0")
    assert all(f"{name}={value}".encode() in exported for name, value in spec["environment"].items())
    item_bytes = record_bytes(cloud, job_id)
    print(f"record of the largest spec: {item_bytes} bytes, {write_units(item_bytes)} write units per update")
    assert item_bytes <= RECORD_BUDGET_BYTES, f"the record of the largest spec is {item_bytes} bytes"


def test_largest_array_lists_every_file_and_keeps_the_state_small(cloud, api, slurm):
    spec = largest_array_spec()
    completes(
        slurm,
        arrayTasks=list(range(1, 1001)),
        write={"--output": "out\n", "--error": "err\n"},
        writeOutputs=dict.fromkeys(spec["outputs"], "a,b\n"),
    )
    job_id = submit(api, spec)
    execution, events, result, view = finish(cloud, api, job_id, timeout=600)
    sizes = state_sizes(cloud, execution, events)
    report("largest array (1000 tasks, 100 outputs)", sizes)
    assert_within_budget(sizes)
    assert execution["status"] == "SUCCEEDED" and view["status"] == result["status"] == "COMPLETED"
    expected = largest_array_file_names()
    assert [item["name"] for item in result["files"]] == expected, result["collection"]  # all 2100, in order
    assert result["collection"] == {"status": "complete", "message": None}
    assert view["results"]["fileCount"] == len(expected) == 2100
    size = len(json.dumps(result_json(cloud, job_id)).encode())
    print(f"result.json of the largest array: {size} bytes, {len(result['files'])} files")
    item_bytes = record_bytes(cloud, job_id)
    print(f"record of the largest array: {item_bytes} bytes, {write_units(item_bytes)} write units per update")
    assert item_bytes <= RECORD_BUDGET_BYTES  # the record lists no file: result.json does

    # GET /output pages the list: the pages together hold every file once, then result.json.
    names, token, pages = [], None, 0
    while True:
        answer = api.get(f"/jobs/{job_id}/output", params={"limit": 1000, **({"nextToken": token} if token else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        names += [item["name"] for item in page["files"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3 and names == [*expected, "result.json"]
    first = api.get(f"/jobs/{job_id}/output").json()
    assert len(first["files"]) == 100 and "result.json" not in [item["name"] for item in first["files"]]
    assert api.get(f"/jobs/{job_id}/output", params={"limit": 1001}).status_code == 422
    bad = api.get(f"/jobs/{job_id}/output", params={"nextToken": "bm90LWEtdG9rZW4"})
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidNextToken"


def test_execution_input_holds_references_only(cloud, earlier_job):
    events = history(cloud, wait_for_execution(cloud, earlier_job)["executionArn"])
    started = next(event for event in events if event["type"] == "ExecutionStarted")
    execution_input = json.loads(started["executionStartedEventDetails"]["input"])
    assert set(execution_input) == {
        "jobId",
        "submissionId",
        "owner",
        "clusterUser",
        "createdAt",
        "requestHash",
        "specKey",
    }
    assert execution_input["specKey"] == f"jobs/{earlier_job}/input/spec.json"
