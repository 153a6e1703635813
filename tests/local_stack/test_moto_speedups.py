"""The local stack's caches of moto's repeated work change nothing moto answers: each execution still gets its own
evaluation components, a definition with a syntax error still fails, hosts map to the same backends, JSONPath finds
the same values, and the Lambda tasks' client is made once per region and service."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException
from moto.stepfunctions.parser.asl.utils import json_path

from local_stack import moto_speedups

# The product's state machine, its DefinitionSubstitutions filled with function ARNs.
DEFINITION = re.sub(
    r"\$\{(\w+)\}",
    r"arn:aws:lambda:us-east-1:123456789012:function:\1",
    (Path(__file__).parents[2] / "statemachine" / "job.asl.json").read_text(),
)


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    moto_speedups.install()


def test_each_execution_gets_fresh_components_from_one_parse_tree() -> None:
    first_program, first_tree = AmazonStateLanguageParser.parse(DEFINITION)
    second_program, second_tree = AmazonStateLanguageParser.parse(DEFINITION)
    assert first_tree is second_tree
    assert first_program is not second_program
    assert type(first_program) is type(second_program)
    first_states = first_program.states.states
    assert first_states.keys() == second_program.states.states.keys() == json.loads(DEFINITION)["States"].keys()
    assert all(first_states[name] is not second_program.states.states[name] for name in first_states)


def test_a_definition_with_a_syntax_error_still_fails_every_time() -> None:
    broken = DEFINITION.replace('"StartAt"', '"StartAt" "StartAt"', 1)
    for _ in range(2):
        with pytest.raises(ASLParserException):
            AmazonStateLanguageParser.parse(broken)


def test_hosts_map_to_the_backends_moto_itself_picks() -> None:
    app = DomainDispatcherApplication(create_app=lambda backend: None)
    hosts = ["states.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com", "s3.amazonaws.com", "moto_api", None]
    expected = [moto_speedups._original_backend_for_host(app, host) for host in hosts]
    assert [app.get_backend_for_host(host) for host in hosts] == [app.get_backend_for_host(host) for host in hosts]
    assert [app.get_backend_for_host(host) for host in hosts] == expected
    assert expected[:3] == ["stepfunctions", "dynamodb", "s3"]


def test_a_cached_jsonpath_finds_what_a_fresh_one_finds() -> None:
    data = {"job": {"tasks": [{"id": 1}, {"id": 2}]}, "spec": {"name": "x"}}
    for _ in range(2):
        assert json_path.extract_json("$.job.tasks[*].id", data) == [1, 2]
        assert json_path.extract_json("$.spec.name", data) == "x"
    with pytest.raises(json_path.NoSuchJsonPathError):
        json_path.extract_json("$.spec.missing", data)


def test_the_lambda_task_client_is_made_once_per_region_and_service() -> None:
    first = lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=None)
    again = lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=object())
    elsewhere = lambda_eval_utils.boto_client_for(region="eu-west-1", service="lambda", state_credentials=None)
    assert first is again and first is not elsewhere
    assert (first.meta.region_name, elsewhere.meta.region_name) == ("us-east-1", "eu-west-1")
