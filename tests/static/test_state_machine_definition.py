"""statemachine/job.asl.json: its ${Name} placeholders match DefinitionSubstitutions, and asl-validator accepts it.

The substitution names are read from template.yaml, so the two files cannot drift apart unnoticed.
"""

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_stack.template_model import load_template_document
from slurm_job_api.errors import LAMBDA_PLATFORM_ERROR_NAMES

from .template_rules import role_statements
from .tools import ASL_VALIDATOR, REPO_ROOT, TEMPLATE, describe, require_tool, run_offline

pytestmark = pytest.mark.static

STATE_MACHINE = "JobStateMachine"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")
REGION_ACCOUNT = "us-east-1:123456789012"

# A plausible deployed value for a substitution, by the end of its name.
PLAUSIBLE_VALUES = {
    "FunctionArn": lambda stem: f"arn:aws:lambda:{REGION_ACCOUNT}:function:slurm-job-api-{stem}-EXAMPLE0001",
    "BucketName": lambda stem: f"slurm-job-api-{stem.lower()}bucket-example0001",
    "TableName": lambda stem: f"slurm-job-api-{stem}Table-EXAMPLE0001",
}


def substitution_names() -> list[str]:
    properties = load_template_document(TEMPLATE)["Resources"][STATE_MACHINE]["Properties"]
    return sorted(properties["DefinitionSubstitutions"])


def definition_path() -> Path:
    properties = load_template_document(TEMPLATE)["Resources"][STATE_MACHINE]["Properties"]
    return REPO_ROOT / properties["DefinitionUri"]


def plausible_value(name: str) -> str:
    for suffix, make in PLAUSIBLE_VALUES.items():
        if name.endswith(suffix):
            return make(name.removesuffix(suffix))
    pytest.fail(f"no plausible value for the substitution {name}: add its kind to PLAUSIBLE_VALUES")


def placeholder_mismatches(definition_text: str, names: list[str]) -> list[str]:
    """Placeholders the template does not define, and substitutions the definition does not use."""
    used = set(PLACEHOLDER.findall(definition_text))
    return [f"${{{name}}} is used but not in DefinitionSubstitutions" for name in sorted(used - set(names))] + [
        f"{name} is in DefinitionSubstitutions but not used" for name in sorted(set(names) - used)
    ]


def substituted(definition_text: str, names: list[str]) -> str:
    """The definition with each known placeholder replaced by a plausible value (unknown ones stay as they are)."""
    return PLACEHOLDER.sub(
        lambda match: plausible_value(match.group(1)) if match.group(1) in names else match.group(0), definition_text
    )


def validate(definition_text: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """asl-validator's verdict on a definition after substitution."""
    validator = require_tool(ASL_VALIDATOR)
    path = workdir / "definition.asl.json"
    path.write_text(substituted(definition_text, substitution_names()), encoding="utf-8")
    return run_offline([validator, "--json-path", path])


# --------------------------------------------------------------------------------------------------------------------
# The real definition
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def definition_text() -> str:
    path = definition_path()
    assert path.is_file(), f"template.yaml's {STATE_MACHINE} DefinitionUri names {path}, which does not exist"
    return path.read_text(encoding="utf-8")


def test_placeholders_match_definition_substitutions(definition_text: str) -> None:
    mismatches = placeholder_mismatches(definition_text, substitution_names())
    assert mismatches == [], "\n".join(mismatches)


def test_definition_is_valid_asl(definition_text: str, tmp_path: Path) -> None:
    result = validate(definition_text, tmp_path)
    assert result.returncode == 0, describe(result)


def task_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, state) of every Task state, including those inside Map and Parallel states."""
    for name, state in states.items():
        if state.get("Type") == "Task":
            yield name, state
        for branch in state.get("Branches", []):
            yield from task_states(branch["States"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from task_states(processor["States"])


def task_resources(states: dict[str, Any]) -> Iterator[str]:
    """The Resource of every Task state, including those inside Map and Parallel states."""
    for _, state in task_states(states):
        yield state["Resource"]


# A Lambda hiccup is retried with backoff, a bounded number of times, and within this long in all.
MAX_PLATFORM_RETRY_SECONDS = 15 * 60


def worst_case_retry_seconds(retrier: dict[str, Any]) -> float:
    """The longest a retrier waits over all its attempts (before jitter, which only shortens the waits)."""
    interval, rate = retrier.get("IntervalSeconds", 1), retrier.get("BackoffRate", 2.0)
    cap = retrier.get("MaxDelaySeconds", float("inf"))
    return sum(min(interval * rate**attempt, cap) for attempt in range(retrier.get("MaxAttempts", 3)))


def platform_retry_problems(states: dict[str, Any]) -> list[str]:
    """Lambda tasks (anywhere in the definition) without one Retry entry for exactly LAMBDA_PLATFORM_ERROR_NAMES,
    with backoff, bounded, and followed by a Catch of everything."""
    problems = []
    for name, state in task_states(states):
        if iam_action_for(state["Resource"]) != "lambda:InvokeFunction":
            continue
        entries = [
            retrier
            for retrier in state.get("Retry", [])
            if sorted(retrier["ErrorEquals"]) == sorted(LAMBDA_PLATFORM_ERROR_NAMES)
        ]
        if len(entries) != 1:
            problems.append(f"{name}: {len(entries)} Retry entries for the Lambda platform errors, not 1")
            continue
        (retrier,) = entries
        if retrier.get("BackoffRate", 2.0) <= 1 or retrier.get("IntervalSeconds", 1) < 1:
            problems.append(f"{name}: the platform retrier has no backoff")
        if worst_case_retry_seconds(retrier) > MAX_PLATFORM_RETRY_SECONDS:
            problems.append(f"{name}: the platform retrier may wait over {MAX_PLATFORM_RETRY_SECONDS} s")
        if not any(catch["ErrorEquals"] == ["States.ALL"] for catch in state.get("Catch", [])):
            problems.append(f"{name}: no Catch of States.ALL after the retries")
    return problems


def test_every_lambda_task_retries_the_platform_errors_with_backoff(definition_text: str) -> None:
    states = json.loads(definition_text)["States"]
    assert any(iam_action_for(state["Resource"]) == "lambda:InvokeFunction" for _, state in task_states(states))
    problems = platform_retry_problems(states)
    assert problems == [], "\n".join(problems)


# A standard execution's longest life (Step Functions quotas): no wait for a task token needs to be longer.
EXECUTION_LIFETIME_SECONDS = 365 * 24 * 3600


def heartbeat_timeout_problems(states: dict[str, Any]) -> list[str]:
    """Tasks with a heartbeat but no TimeoutSeconds of their own. The States Language specification's default
    TimeoutSeconds is 60 for any task, and moto applies it to a task with a heartbeat, while Step Functions' own
    default is 99999999: such a wait would end after a minute locally, whatever the heartbeats."""
    problems = []
    for name, state in task_states(states):
        if not {"HeartbeatSeconds", "HeartbeatSecondsPath"} & state.keys():
            continue
        timeout = state.get("TimeoutSeconds")
        if timeout is None and "TimeoutSecondsPath" not in state:
            problems.append(f"{name}: a heartbeat without TimeoutSeconds")
        elif timeout is not None and timeout < EXECUTION_LIFETIME_SECONDS:
            problems.append(f"{name}: TimeoutSeconds {timeout} ends a wait before its execution could")
    return problems


def test_every_wait_with_a_heartbeat_declares_its_timeout(definition_text: str) -> None:
    states = json.loads(definition_text)["States"]
    assert any("HeartbeatSecondsPath" in state for _, state in task_states(states))
    assert heartbeat_timeout_problems(states) == []
    # The rule itself: a heartbeat alone is reported.
    bare = {
        "Wait": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "HeartbeatSecondsPath": "$.s",
            "End": True,
        }
    }
    assert heartbeat_timeout_problems(bare) == ["Wait: a heartbeat without TimeoutSeconds"]


def iam_action_for(resource: str) -> str:
    """The IAM action a Task's Resource needs: a function ARN or lambda:invoke, or service:action of an integration."""
    if ":::" not in resource:  # a function ARN, or the ${...FunctionArn} placeholder for one
        return "lambda:InvokeFunction"
    integration = resource.split(":::", 1)[1].split(".", 1)[0]  # "aws-sdk:s3:putObject", "dynamodb:updateItem"
    service, action = integration.removeprefix("aws-sdk:").split(":", 1)
    return (
        "lambda:InvokeFunction"
        if (service, action) == ("lambda", "invoke")
        else f"{service}:{action[0].upper()}{action[1:]}"
    )


def test_state_machine_role_allows_every_task(definition_text: str) -> None:
    needed = {iam_action_for(resource) for resource in task_resources(json.loads(definition_text)["States"])}
    statements, _ = role_statements(load_template_document(TEMPLATE), STATE_MACHINE)
    granted = {action for statement in statements if statement.allows for action in statement.actions}
    assert needed, "the definition has no Task states"
    assert needed - granted == set(), f"{STATE_MACHINE}'s role lacks {sorted(needed - granted)}"


def test_task_resources_map_to_iam_actions() -> None:
    assert iam_action_for("${PollJobFunctionArn}") == "lambda:InvokeFunction"
    assert iam_action_for("arn:aws:states:::lambda:invoke") == "lambda:InvokeFunction"
    assert iam_action_for("arn:aws:states:::aws-sdk:s3:putObject") == "s3:PutObject"
    assert iam_action_for("arn:aws:states:::dynamodb:updateItem") == "dynamodb:UpdateItem"
    assert iam_action_for("arn:aws:states:::states:startExecution.sync:2") == "states:StartExecution"


# --------------------------------------------------------------------------------------------------------------------
# The checks themselves, on small definitions made here
# --------------------------------------------------------------------------------------------------------------------

MINIMAL_DEFINITION = """{
  "StartAt": "Submit",
  "States": {
    "Submit": {"Type": "Task", "Resource": "${SubmitJobFunctionArn}", "Next": "Write"},
    "Write": {
      "Type": "Task",
      "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
      "Parameters": {"Bucket": "${ResultsBucketName}", "Key": "jobs/x/result.json", "Body.$": "$"},
      "End": true
    }
  }
}"""


def test_validator_accepts_a_minimal_definition(tmp_path: Path) -> None:
    result = validate(MINIMAL_DEFINITION, tmp_path)
    assert result.returncode == 0, describe(result)


def test_validator_rejects_a_dangling_transition(tmp_path: Path) -> None:
    broken = MINIMAL_DEFINITION.replace('"Next": "Write"', '"Next": "Nowhere"')
    result = validate(broken, tmp_path)
    assert result.returncode != 0, describe(result)
    assert "MISSING_TRANSITION_TARGET" in result.stdout + result.stderr, describe(result)


def test_a_lambda_task_without_the_platform_retrier_is_reported() -> None:
    states = json.loads(MINIMAL_DEFINITION)["States"]
    assert platform_retry_problems(states) == ["Submit: 0 Retry entries for the Lambda platform errors, not 1"]
    retrier = {"ErrorEquals": list(LAMBDA_PLATFORM_ERROR_NAMES), "IntervalSeconds": 2, "MaxAttempts": 40}
    states["Submit"]["Retry"] = [{**retrier, "BackoffRate": 1}]
    assert platform_retry_problems(states) == [
        "Submit: the platform retrier has no backoff",
        "Submit: no Catch of States.ALL after the retries",
    ]
    states["Submit"]["Retry"] = [{**retrier, "BackoffRate": 2}]
    states["Submit"]["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "Write"}]
    assert platform_retry_problems(states) == [
        f"Submit: the platform retrier may wait over {MAX_PLATFORM_RETRY_SECONDS} s"
    ]


def test_mismatched_placeholders_are_reported_both_ways() -> None:
    text = MINIMAL_DEFINITION.replace("${ResultsBucketName}", "${ResultBucketName}")
    assert placeholder_mismatches(text, ["SubmitJobFunctionArn", "ResultsBucketName"]) == [
        "${ResultBucketName} is used but not in DefinitionSubstitutions",
        "ResultsBucketName is in DefinitionSubstitutions but not used",
    ]
