"""The state machine and the code agree: transient errors are the ones retried, and every way out of the
workflow after a job was accepted goes through writing result.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurm_job_api.errors import LAMBDA_PLATFORM_ERROR_NAMES, OUTAGE_ERROR_NAMES, TRANSIENT_ERROR_NAMES

ASL = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "job.asl.json").read_text())
STATES = ASL["States"]
LAMBDA_TASKS = [name for name, state in STATES.items() if state.get("Resource", "").endswith("FunctionArn}")]


def successors(name: str) -> set[str]:
    state = STATES[name]
    following = {state["Next"]} if "Next" in state else set()
    following |= {choice["Next"] for choice in state.get("Choices", [])}
    following |= {state["Default"]} if "Default" in state else set()
    following |= {catch["Next"] for catch in state.get("Catch", [])}
    return following


def test_every_lambda_task_retries_exactly_the_transient_errors_and_catches_the_rest():
    assert sorted(LAMBDA_TASKS) == ["FinishJob", "NoteHeadNodeOutage", "PollJob", "SubmitJob"]
    for name in LAMBDA_TASKS:
        retried = [retry["ErrorEquals"] for retry in STATES[name]["Retry"]]
        # Two entries of their own: Lambda's platform failures first, then the product's transient errors.
        assert retried == [list(LAMBDA_PLATFORM_ERROR_NAMES), list(TRANSIENT_ERROR_NAMES)], name
        assert any(catch["ErrorEquals"] == ["States.ALL"] for catch in STATES[name]["Catch"]), name


def test_a_poll_whose_retries_ran_out_on_an_outage_notes_it_and_goes_on():
    """The outage errors go to NoteHeadNodeOutage (the poll function, told of the outage), which goes back to the
    wait; every other error still ends the job through FinishJob."""
    first, *rest = STATES["PollJob"]["Catch"]
    assert first == {"ErrorEquals": list(OUTAGE_ERROR_NAMES), "ResultPath": "$.outage", "Next": "NoteHeadNodeOutage"}
    assert rest == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "FinishJob"}]
    assert set(OUTAGE_ERROR_NAMES) <= set(TRANSIENT_ERROR_NAMES)  # retried for about 90 minutes first
    note = STATES["NoteHeadNodeOutage"]
    assert note["Resource"] == STATES["PollJob"]["Resource"]
    assert note["Parameters"] == {**STATES["PollJob"]["Parameters"], "outage.$": "$.outage"}
    assert (note["ResultPath"], note["Next"]) == ("$.job", "IsJobFinished")


def test_platform_errors_are_not_the_products_own():
    assert set(LAMBDA_PLATFORM_ERROR_NAMES).isdisjoint(TRANSIENT_ERROR_NAMES)
    # A handler that cannot be imported is a broken deploy, not a hiccup: caught at once, not retried.
    assert "Runtime.ImportModuleError" not in LAMBDA_PLATFORM_ERROR_NAMES
    assert {"Runtime.InitError", "Sandbox.Timedout", "Lambda.ServiceException"} <= set(LAMBDA_PLATFORM_ERROR_NAMES)


@pytest.mark.parametrize("start", ["SubmitJob", "PollJob", "WaitBeforePoll", "NoteHeadNodeOutage"])
def test_every_end_after_acceptance_writes_result_json(start):
    """Walk every path: each one ends in a state reached only through a result.json write, or hands the job over to
    a continuation execution. A writer has written only when it succeeded: its Catch branches have not."""
    writers = {"FinishJob", "WriteFallbackResult"}  # FinishJob's Lambda writes result.json (workflow.finish)
    last_resort = "WriteFallbackResult"  # retried; if even it fails, nothing is left to write with
    seen: set[tuple[str, bool]] = set()
    stack = [(start, False)]
    while stack:
        name, written = stack.pop()
        if (name, written) in seen:
            continue
        seen.add((name, written))
        state = STATES[name]
        if state["Type"] in ("Succeed", "Fail"):
            assert written or name == "ContinuedAsNewExecution", f"{start} → … → {name} ends without result.json"
        after = written or name in writers
        caught = [catch["Next"] for catch in state.get("Catch", [])]
        for following in successors(name) - set(caught) | ({state["Next"]} if "Next" in state else set()):
            stack.append((following, after))
        for following in caught:  # a writer that failed has not written
            stack.append((following, after if name == last_resort else written))
