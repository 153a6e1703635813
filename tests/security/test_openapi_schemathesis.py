"""Schemathesis against the API's own OpenAPI document (GET /openapi.json from the running local API), every request
SigV4-signed as the local developer: no answer is a 5xx, every status code is one the document declares for the
operation, and every body matches the schema declared for it. Scripted Slurm completes the few jobs it accepts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from local_stack.api_gateway import LOCAL_DEVELOPER
from local_stack.sigv4 import signed_session
from tests.security.harness import every_job_completes, wait_for_all_executions
from tests.support.api_routes import documented_operations

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
EXAMPLES = 80  # per operation and mode


@pytest.fixture(scope="module")
def signed(cloud) -> Iterator[object]:
    session = signed_session(LOCAL_DEVELOPER, cloud.region)
    yield session
    session.close()


@pytest.fixture(scope="module")
def api_schema(cloud, slurm, signed):
    every_job_completes(slurm)
    answer = signed.get(cloud.api_url + "/openapi.json", timeout=30)
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert {path for _, path in OPERATIONS} <= set(document["paths"])
    yield schemathesis.openapi.from_dict(document)
    wait_for_all_executions(cloud.client("stepfunctions"), cloud.state_machine_arn)


# Every operation of the document, from template.yaml (checked below, so that a new route is not silently left out).
OPERATIONS = sorted(documented_operations())


def test_the_document_has_every_route(api_schema):
    operations = {(result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()}
    assert operations == set(OPERATIONS)


# schemathesis.pytest.from_fixture cannot run under pytest 9 (it sets Function._nodeid), so each operation's cases
# come from its hypothesis strategy directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_answer_is_declared_and_conforms(api_schema, cloud, signed, method, path, mode):
    operation = api_schema[path][method]

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def conforms(case):
        response = case.call(base_url=cloud.api_url, session=signed, timeout=40)
        case.validate_response(response, checks=CHECKS)

    conforms()
