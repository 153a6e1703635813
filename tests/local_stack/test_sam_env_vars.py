"""The --env-vars file of `sam local invoke`, built from template.yaml for a local stack (no stack started here)."""

import json
from pathlib import Path

import pytest

from local_stack.sam_env_vars import (
    ENDPOINT_VARIABLE,
    UndeclaredOverride,
    env_vars_document,
    events_by_function,
    invoke_command_lines,
    write_env_vars_file,
)
from local_stack.template_model import REPOSITORY_TEMPLATE, TemplateModel, load_template_document
from tests.support.template_files import write_template

REPO_ROOT = REPOSITORY_TEMPLATE.parent
EVENTS_DIR = REPO_ROOT / "events"
ENDPOINT = "http://127.0.0.1:45123"


@pytest.fixture(scope="module")
def model() -> TemplateModel:
    return TemplateModel(
        REPOSITORY_TEMPLATE, stack_name="slurm-job-api-local", parameter_overrides={"ClusterName": "c"}
    )


def declared_variables() -> dict[str, set[str]]:
    """Each function's variable names as template.yaml itself writes them (Globals' and its own)."""
    document = load_template_document(REPOSITORY_TEMPLATE)
    globals_names = set(document["Globals"]["Function"]["Environment"]["Variables"])
    return {
        logical_id: globals_names | set((resource["Properties"].get("Environment") or {}).get("Variables") or {})
        for logical_id, resource in document["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_function_gets_exactly_its_template_variables(model: TemplateModel) -> None:
    document = env_vars_document(model, ENDPOINT)
    assert {logical_id: set(variables) for logical_id, variables in document.items()} == declared_variables()


def test_the_endpoint_is_the_local_stack_and_the_rest_is_resolved_for_it(model: TemplateModel) -> None:
    document = env_vars_document(model, ENDPOINT)
    for logical_id, variables in document.items():
        assert variables[ENDPOINT_VARIABLE] == ENDPOINT
        others = {name: value for name, value in variables.items() if name != ENDPOINT_VARIABLE}
        template_values = dict(model.functions[logical_id].environment)
        assert template_values.pop(ENDPOINT_VARIABLE) == ""  # empty in the template: unset on AWS
        assert others == template_values
    api = document["ApiFunction"]
    assert api["STATE_MACHINE_ARN"] == model.state_machine.arn
    assert (api["JOBS_TABLE_NAME"], api["RESULTS_BUCKET_NAME"]) == (model.table.name, model.bucket.name)
    assert api["JOB_EVENTS_BUS_NAME"] == next(iter(model.event_buses.values()))
    assert api["CLUSTER_NAME"] == "c"


def test_the_file_is_sams_per_function_format(model: TemplateModel, tmp_path: Path) -> None:
    path = write_env_vars_file(tmp_path / "sam" / "env-vars.json", model, ENDPOINT)
    assert json.loads(path.read_text()) == env_vars_document(model, ENDPOINT)


def test_a_function_without_the_override_is_refused(tmp_path: Path) -> None:
    template = """
        Resources:
          LonelyFunction:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
        """
    with pytest.raises(UndeclaredOverride, match="LonelyFunction does not declare AWS_ENDPOINT_URL"):
        env_vars_document(TemplateModel(write_template(tmp_path, template), stack_name="s"), ENDPOINT)


def test_every_event_file_belongs_to_a_template_function(model: TemplateModel) -> None:
    grouped = events_by_function(sorted(model.functions), EVENTS_DIR)
    assert sorted(event for events in grouped.values() for event in events) == sorted(EVENTS_DIR.glob("*.json"))
    assert set(grouped) == set(model.functions)
    assert EVENTS_DIR / "poll-job-woken.json" in grouped["PollJobFunction"]
    assert EVENTS_DIR / "publish-job-events.json" in grouped["PublishJobEventsFunction"]


def test_one_invoke_line_per_event_file(model: TemplateModel) -> None:
    lines = invoke_command_lines(model, REPO_ROOT / ".sam-local" / "env-vars.json", EVENTS_DIR, REPO_ROOT)
    assert len(lines) == len(list(EVENTS_DIR.glob("*.json")))
    assert (
        "sam local invoke ApiFunction -e events/api-list-jobs.json --env-vars .sam-local/env-vars.json "
        "--docker-network host"
    ) in lines
