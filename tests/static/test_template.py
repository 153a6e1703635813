"""template.yaml: SAM's own validation and lint, a real `sam build`, and the API that SAM generates from it."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from local_stack.sam_env_vars import LOCAL_OVERRIDE_VARIABLES
from local_stack.template_model import load_template_document
from tests.support.api_routes import ANY_METHOD, api_events

from . import template_rules
from .tools import (
    LAYER_WHEELHOUSE,
    REPO_ROOT,
    SAM,
    TEMPLATE,
    describe,
    find_python,
    require_tool,
    run_offline,
)

pytestmark = pytest.mark.static

SHARED_PACKAGE = REPO_ROOT / "functions" / "shared" / "slurm_job_api"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "x-amazon-apigateway-any-method")


def test_sam_validate_lint_has_no_findings() -> None:
    sam = require_tool(SAM)
    result = run_offline([sam, "validate", "--lint", "--template-file", TEMPLATE, "--region", "us-east-1"])
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() == f"{TEMPLATE} is a valid SAM Template", describe(result)


def test_sam_build_produces_the_layer(tmp_path: Path) -> None:
    sam = require_tool(SAM)
    require_tool(LAYER_WHEELHOUSE)
    python312 = find_python("3.12")
    build_dir = tmp_path / "build"
    env = {
        # The Lambda runtime's Python must come first: sam build checks it against Runtime python3.12.
        "PATH": f"{python312.parent}{os.pathsep}{os.environ['PATH']}",
        # The layer's dependencies come from the wheelhouse that scripts/bootstrap-tools.sh filled.
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(LAYER_WHEELHOUSE),
    }
    result = run_offline(
        [sam, "build", "--template-file", TEMPLATE, "--build-dir", build_dir, "--no-cached", "--region", "us-east-1"],
        env=env,
    )
    assert result.returncode == 0, describe(result)
    assert "Build Succeeded" in result.stdout, describe(result)

    layer = build_dir / "SlurmJobApiLayer" / "python"
    assert (layer / "pydantic" / "__init__.py").is_file(), describe(result)
    assert (layer / "aws_lambda_powertools").is_dir(), describe(result)
    built_modules = {path.name for path in (layer / "slurm_job_api").glob("*.py")}
    source_modules = {path.name for path in SHARED_PACKAGE.glob("*.py")}
    assert source_modules, "functions/shared/slurm_job_api has no modules"
    assert built_modules == source_modules


def _api_operations(generated: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    body = generated["Resources"]["JobsApi"]["Properties"]["Body"]
    return [
        (path, method, operation)
        for path, item in body["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def test_generated_api_requires_sigv4_on_every_operation(generated_template: dict[str, Any]) -> None:
    operations = _api_operations(generated_template)
    assert len(operations) >= 12, operations
    body = generated_template["Resources"]["JobsApi"]["Properties"]["Body"]
    assert body["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    unsigned = [
        f"{method} {path}" for path, method, operation in operations if operation.get("security") != [{"AWS_IAM": []}]
    ]
    assert unsigned == []


def test_generated_integrations_do_not_use_caller_credentials(generated_template: dict[str, Any]) -> None:
    """With caller credentials (SAM's default for AWS_IAM) every caller would need lambda:InvokeFunction."""
    integrations = {
        f"{method} {path}": operation["x-amazon-apigateway-integration"]
        for path, method, operation in _api_operations(generated_template)
    }
    with_credentials = {route: spec["credentials"] for route, spec in integrations.items() if "credentials" in spec}
    assert with_credentials == {}
    assert {spec["type"] for spec in integrations.values()} == {"aws_proxy"}


def test_generated_routes_cover_the_api_and_its_fallbacks(generated_template: dict[str, Any]) -> None:
    """One operation per Api event of ApiFunction (test_api_routes.py: the app's routes and their fallbacks)."""
    routes = {(path, method) for path, method, _ in _api_operations(generated_template)}
    any_method = "x-amazon-apigateway-any-method"
    assert routes == {
        (event.path, any_method if event.method == ANY_METHOD else event.method.lower()) for event in api_events()
    }


def test_generated_functions_share_one_environment(generated_template: dict[str, Any]) -> None:
    """Every function gets the same variables with the same values; only ApiFunction adds STATE_MACHINE_ARN."""
    environments = {
        logical_id: resource["Properties"]["Environment"]["Variables"]
        for logical_id, resource in generated_template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    assert set(environments) == {
        "ApiFunction",
        "SubmitJobFunction",
        "PollJobFunction",
        "AwaitNewsFunction",
        "FinishJobFunction",
        "SweepJobsFunction",
        "PublishJobEventsFunction",
    }
    api_only = environments["ApiFunction"].pop("STATE_MACHINE_ARN")
    assert api_only == {"Ref": "JobStateMachine"}
    assert len({json.dumps(variables, sort_keys=True) for variables in environments.values()}) == 1
    assert set(environments["PollJobFunction"]) == {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "JOBS_TABLE_NAME",
        "RESULTS_BUCKET_NAME",
        "CLUSTER_NAME",
        "CLUSTER_USER",
        "SLURM_BIN_DIR",
        "POLL_MIN_SECONDS",
        "POLL_MAX_SECONDS",
        "POLL_FRACTION",
        "MAX_POLLS_PER_EXECUTION",
        "UNSATISFIABLE_GRACE_MINUTES",
        "RESULT_RETENTION_DAYS",
        "JOB_TRACKING",
        "SAFETY_POLL_MIN_SECONDS",
        "JOB_EVENTS_BUS_NAME",
        "HEAD_NODE_OUTAGE_LIMIT_HOURS",
        "CALLER_MAPPING",
        "CALLER_MAPPINGS_TABLE_NAME",
        "AWS_ENDPOINT_URL",
    }


def test_every_function_declares_the_local_overrides_empty(generated_template: dict[str, Any]) -> None:
    """`sam local invoke --env-vars` sets only declared variables: each function declares what a local run sets
    (local_stack.sam_env_vars), empty, which the SDK takes as unset on AWS."""
    environments = {
        logical_id: resource["Properties"]["Environment"]["Variables"]
        for logical_id, resource in generated_template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    assert environments
    declared = {
        logical_id: {name: variables.get(name) for name in LOCAL_OVERRIDE_VARIABLES}
        for logical_id, variables in environments.items()
    }
    assert declared == {logical_id: dict.fromkeys(LOCAL_OVERRIDE_VARIABLES, "") for logical_id in environments}


# What SAM attaches to every function role it generates (CloudWatch Logs; X-Ray, with Tracing: Active), as SAM
# writes them in the aws partition.
SAM_FUNCTION_POLICIES = {
    arn.replace("${AWS::Partition}", "aws") for arn in template_rules.SAM_FUNCTION_MANAGED_POLICIES
}


def test_generated_roles_carry_no_other_aws_managed_policy(generated_template: dict[str, Any]) -> None:
    """Every role's AWS managed policies are the two SAM gives every function (the state machine: X-Ray only). An
    event that makes SAM add another — AWSLambdaDynamoDBExecutionRole for a DynamoDB stream, which reads every stream
    of the account — must come with a role written out in the template (PublishJobEventsRole)."""
    extra = {}
    for logical_id, resource in generated_template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        arns = resource["Properties"].get("ManagedPolicyArns", [])
        named = {
            arn if isinstance(arn, str) else arn.get("Fn::Sub", "").replace("${AWS::Partition}", "aws") for arn in arns
        }
        aws_managed = {arn for arn in named if arn.startswith("arn:aws:iam::aws:policy/")}
        if aws_managed - SAM_FUNCTION_POLICIES:
            extra[logical_id] = sorted(aws_managed - SAM_FUNCTION_POLICIES)
    assert extra == {}
    assert "PublishJobEventsRole" in generated_template["Resources"]


# Parameters of docs/architecture.md and their defaults (None: required, no default).
CONTRACT_PARAMETERS = {
    "ClusterName": None,
    "ClusterUser": "ec2-user",
    "SlurmBinDir": "/opt/slurm/bin",
    "PollMinSeconds": "10",
    "PollMaxSeconds": "21600",
    "PollFraction": "0.1",
    "MaxPollsPerExecution": "2000",
    "UnsatisfiableGraceMinutes": "60",
    "JobTracking": "sweep",
    "SweepIntervalMinutes": "1",
    "SafetyPollMinSeconds": "150",
    "HeadNodeOutageLimitHours": "24",
    "CallerMapping": "table",
    "ResultRetentionDays": "30",
}
CONSTRAINTS = {"AllowedPattern", "AllowedValues", "MinValue", "MaxValue", "MinLength", "MaxLength"}


def test_parameters_follow_the_contract() -> None:
    parameters = load_template_document(TEMPLATE)["Parameters"]
    defaults = {name: None if "Default" not in spec else str(spec["Default"]) for name, spec in parameters.items()}
    assert defaults == CONTRACT_PARAMETERS
    undocumented = [name for name, spec in parameters.items() if not spec.get("Description")]
    unconstrained = [name for name, spec in parameters.items() if not CONSTRAINTS & set(spec)]
    assert undocumented == [] and unconstrained == []


def test_functions_have_the_contract_timeouts() -> None:
    resources = load_template_document(TEMPLATE)["Resources"]
    timeouts = {
        logical_id: resource["Properties"].get("Timeout")
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert timeouts == {
        "ApiFunction": 30,
        "SubmitJobFunction": 120,
        "PollJobFunction": 120,
        "AwaitNewsFunction": 30,
        "SweepJobsFunction": 120,
        "PublishJobEventsFunction": 60,
        "FinishJobFunction": 900,
    }
