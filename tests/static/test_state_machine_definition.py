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


def task_resources(states: dict[str, Any]) -> Iterator[str]:
    """The Resource of every Task state, including those inside Map and Parallel states."""
    for state in states.values():
        if state.get("Type") == "Task":
            yield state["Resource"]
        for branch in state.get("Branches", []):
            yield from task_resources(branch["States"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from task_resources(processor["States"])


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


def test_mismatched_placeholders_are_reported_both_ways() -> None:
    text = MINIMAL_DEFINITION.replace("${ResultsBucketName}", "${ResultBucketName}")
    assert placeholder_mismatches(text, ["SubmitJobFunctionArn", "ResultsBucketName"]) == [
        "${ResultBucketName} is used but not in DefinitionSubstitutions",
        "ResultsBucketName is in DefinitionSubstitutions but not used",
    ]
