"""Security rules over template.yaml, loaded with local_stack.template_model.load_template_document (intrinsics in
long form: {"Ref": ...}, {"Fn::Sub": ...}). Each rule returns its findings, one line each, empty when the rule holds.

The rules read template.yaml itself, not the SAM output: the permissions we write are the ones we review.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

Template = dict[str, Any]

# Actions that support no resource-level permissions (the Service Authorization Reference lists no resource type for
# them), so IAM accepts only Resource "*". test_iam_least_privilege checks this list against that reference's data.
NO_RESOURCE_LEVEL_ACTIONS = frozenset(
    {
        "ssm:GetCommandInvocation",
        "ec2:DescribeInstances",
        # A task token names its execution (the sweep wakes waiting workflows).
        "states:SendTaskSuccess",
        "states:SendTaskHeartbeat",
        # Lambda's event source mapping lists the table's streams (PublishJobEventsRole).
        "dynamodb:ListStreams",
        # Step Functions execution logs (vended log delivery).
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
)

HEAD_NODE_TAG_CONDITIONS = {
    "ssm:resourceTag/parallelcluster:cluster-name": {"Ref": "ClusterName"},
    "ssm:resourceTag/parallelcluster:node-type": "HeadNode",
}
RUN_SHELL_SCRIPT_DOCUMENT = "arn:${AWS::Partition}:ssm:${AWS::Region}::document/AWS-RunShellScript"

_PUBLIC_ACCESS_BLOCK = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
_FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


@dataclass(frozen=True)
class Statement:
    """One IAM policy statement and where it comes from."""

    origin: str
    body: dict[str, Any]

    @property
    def allows(self) -> bool:
        return self.body.get("Effect") == "Allow"

    @property
    def actions(self) -> list[str]:
        return _as_list(self.body.get("Action", []))

    @property
    def resources(self) -> list[str]:
        return [render(resource) for resource in _as_list(self.body.get("Resource", []))]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render(value: Any) -> str:
    """A readable string for a resource value: `${X}` for !Ref X, `${X.Arn}` for !GetAtt X.Arn, !Sub text as is."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return f"${{{argument}}}"
        if function == "Fn::GetAtt":
            return "${" + ".".join(_as_list(argument)) + "}"
        if function == "Fn::Sub":
            return argument if isinstance(argument, str) else argument[0]
    return json.dumps(value, sort_keys=True)


def _resources(template: Template, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") in types:
            yield logical_id, resource


def _document_statements(origin: str, document: Any) -> Iterator[Statement]:
    for index, statement in enumerate(_as_list(document.get("Statement", []))):
        yield Statement(f"{origin} statement {statement.get('Sid', index)}", statement)


def role_statements(template: Template, logical_id: str) -> tuple[list[Statement], list[str]]:
    """The statements granted to a SAM function's or state machine's role, and what could not be inspected.

    Policies may be inline documents or !Ref to an AWS::IAM::ManagedPolicy of this template; anything else (AWS
    managed policies, SAM policy templates) hides its statements from review and is reported.
    """
    resources = template["Resources"]
    statements: list[Statement] = []
    opaque: list[str] = []
    role = resources[logical_id].get("Properties", {}).get("Role")
    if role is not None:
        return _own_role_statements(template, logical_id, role)
    for policy in _as_list(resources[logical_id].get("Properties", {}).get("Policies", [])):
        if isinstance(policy, dict) and "Statement" in policy:
            statements.extend(_document_statements(logical_id, policy))
        elif isinstance(policy, dict) and set(policy) == {"Ref"} and policy["Ref"] in resources:
            managed = resources[policy["Ref"]]
            if managed.get("Type") != "AWS::IAM::ManagedPolicy":
                opaque.append(f"{logical_id}: policy !Ref {policy['Ref']} is not an AWS::IAM::ManagedPolicy")
                continue
            origin = f"{logical_id} via {policy['Ref']}"
            statements.extend(_document_statements(origin, managed["Properties"]["PolicyDocument"]))
        else:
            opaque.append(f"{logical_id}: policy {render(policy)} cannot be inspected; write its statements out")
    return statements, opaque


# The AWS managed policies SAM attaches to every function role it generates (logs; X-Ray with Tracing: Active); a role
# the template writes out for a function may have them, and no other.
SAM_FUNCTION_MANAGED_POLICIES = frozenset(
    {
        "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess",
    }
)


def _own_role_statements(template: Template, logical_id: str, role: Any) -> tuple[list[Statement], list[str]]:
    """The statements of a role the template writes out for `logical_id` (Role: !GetAtt <role>.Arn)."""
    reference = role.get("Fn::GetAtt") if isinstance(role, dict) else None
    name = ".".join(_as_list(reference)).split(".", 1)[0] if reference else None
    resource = template["Resources"].get(name) if name else None
    if resource is None or resource.get("Type") != "AWS::IAM::Role":
        return [], [f"{logical_id}: Role {render(role)} is not an AWS::IAM::Role of this template"]
    opaque = [
        f"{logical_id}: its role {name} has the managed policy {render(arn)}"
        for arn in resource["Properties"].get("ManagedPolicyArns", [])
        if render(arn) not in SAM_FUNCTION_MANAGED_POLICIES
    ]
    statements: list[Statement] = []
    for policy in resource["Properties"].get("Policies", []):
        statements.extend(_document_statements(f"{logical_id} via {name}", policy["PolicyDocument"]))
    return statements, opaque


_ROLE_OWNER_TYPES = ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")


def _written_statements(template: Template) -> list[Statement]:
    """Every identity-policy statement written in the template, once each."""
    statements: list[Statement] = []
    for logical_id, resource in _resources(template, *_ROLE_OWNER_TYPES):
        for policy in _as_list(resource.get("Properties", {}).get("Policies", [])):
            if isinstance(policy, dict) and "Statement" in policy:
                statements.extend(_document_statements(logical_id, policy))
    for logical_id, resource in _resources(template, "AWS::IAM::Role"):
        for policy in resource.get("Properties", {}).get("Policies", []):
            origin = f"{logical_id} {policy.get('PolicyName')}"
            statements.extend(_document_statements(origin, policy["PolicyDocument"]))
    for logical_id, resource in _resources(template, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        statements.extend(_document_statements(logical_id, resource["Properties"]["PolicyDocument"]))
    return statements


def _all_allow_statements(template: Template) -> list[Statement]:
    return [statement for statement in _written_statements(template) if statement.allows]


# --------------------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------------------


def uninspectable_policies(template: Template) -> list[str]:
    """Policies whose statements are not written in the template (so no rule below could see them)."""
    return [
        finding
        for logical_id, _ in _resources(template, *_ROLE_OWNER_TYPES)
        for finding in role_statements(template, logical_id)[1]
    ]


def wildcard_actions(template: Template) -> list[str]:
    """Allowed actions with a wildcard: "*", "s3:*", "dynamodb:Get*"."""
    return [
        f"{statement.origin}: wildcard action {action!r}"
        for statement in _all_allow_statements(template)
        for action in statement.actions
        if "*" in action or "?" in action
    ]


def star_resources(template: Template) -> list[str]:
    """Resource "*" for an action that supports resource-level permissions (or NotResource at all)."""
    findings = []
    for statement in _all_allow_statements(template):
        if "NotResource" in statement.body or "NotAction" in statement.body:
            findings.append(f"{statement.origin}: NotAction/NotResource grants more than it names")
        if "*" in statement.resources:
            findings.extend(
                f"{statement.origin}: Resource '*' for {action}, which supports resource-level permissions"
                for action in statement.actions
                if action not in NO_RESOURCE_LEVEL_ACTIONS
            )
    return findings


def send_command_outside_head_node(template: Template) -> list[str]:
    """ssm:SendCommand on anything but AWS-RunShellScript and instances tagged as this cluster's head node."""
    findings = []
    for statement in _all_allow_statements(template):
        if "ssm:SendCommand" not in statement.actions:
            continue
        for resource in statement.resources:
            if resource.endswith(":document/AWS-RunShellScript"):
                if resource != RUN_SHELL_SCRIPT_DOCUMENT:
                    findings.append(f"{statement.origin}: SendCommand document ARN {resource!r} is not AWS's own")
                continue
            if ":instance/" not in resource and resource != "*":
                findings.append(f"{statement.origin}: SendCommand on {resource!r} (only the head node instance)")
                continue
            conditions = statement.body.get("Condition", {}).get("StringEquals", {})
            for key, expected in HEAD_NODE_TAG_CONDITIONS.items():
                if conditions.get(key) != expected:
                    findings.append(
                        f"{statement.origin}: SendCommand on {resource!r} without the condition "
                        f"StringEquals {key} = {render(expected)}"
                    )
    return findings


def events_put_without_a_source(template: Template) -> list[str]:
    """events:PutEvents on anything but the stack's bus, or without a StringEquals events:source condition: each
    publisher (the head node's push hook, the jobs' events) may publish under its own source only, so neither can
    pass for the other (the sweep's rule trusts the head node's source)."""
    findings = []
    for statement in _all_allow_statements(template):
        if "events:PutEvents" not in statement.actions:
            continue
        if statement.resources != ["${JobEventsBus.Arn}"]:
            findings.append(f"{statement.origin}: PutEvents on {statement.resources} (only the stack's JobEventsBus)")
        source = statement.body.get("Condition", {}).get("StringEquals", {}).get("events:source")
        if not isinstance(source, str):
            findings.append(f"{statement.origin}: PutEvents without the condition StringEquals events:source")
    return findings


# The callers' inputs (POST /inputs, slurm_job_api.inputs): only the API function may write there, and only to presign
# the uploads of each caller's own prefix; nothing else may create, replace or delete a caller's script.
INPUT_OBJECT = "${ResultsBucket.Arn}/inputs/<callerKey>/<uploadId>/run.sh"
INPUT_WRITER = ("ApiFunction", "PresignInputUploads")
_S3_WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:RestoreObject")


def input_writes_outside_the_api(template: Template) -> list[str]:
    """s3 writes whose resource covers a caller's input object, by any statement but the API's PresignInputUploads,
    and any write but s3:PutObject by that one."""
    findings = []
    for statement in _all_allow_statements(template):
        covering = [resource for resource in statement.resources if fnmatchcase(INPUT_OBJECT, resource)]
        writes = [action for action in statement.actions if action.startswith(_S3_WRITE_ACTIONS)]
        if not covering or not writes:
            continue
        if statement.origin != f"{INPUT_WRITER[0]} statement {INPUT_WRITER[1]}":
            findings.append(f"{statement.origin}: {writes} on {covering} (only the API presigns callers' inputs)")
        elif writes != ["s3:PutObject"]:
            findings.append(f"{statement.origin}: {writes} on {covering} (s3:PutObject only)")
    return findings


def api_routes_without_iam(template: Template) -> list[str]:
    """Ways into a function that do not require SigV4 (AWS_IAM)."""
    findings = []
    iam_apis = set()
    for logical_id, api in _resources(template, "AWS::Serverless::Api"):
        authorizer = api.get("Properties", {}).get("Auth", {}).get("DefaultAuthorizer")
        if authorizer == "AWS_IAM":
            iam_apis.add(logical_id)
        else:
            findings.append(f"{logical_id}: DefaultAuthorizer is {authorizer!r}, not AWS_IAM")
    for logical_id, _ in _resources(template, "AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"):
        findings.append(f"{logical_id}: an HTTP API is not part of the design (REST API with AWS_IAM only)")
    for logical_id, function in _resources(template, *_FUNCTION_TYPES):
        properties = function.get("Properties", {})
        url_config = properties.get("FunctionUrlConfig")
        if url_config is not None and url_config.get("AuthType") != "AWS_IAM":
            findings.append(f"{logical_id}: function URL with AuthType {url_config.get('AuthType')!r}")
        for event_id, event in properties.get("Events", {}).items():
            if event.get("Type") == "HttpApi":
                findings.append(f"{logical_id}.{event_id}: HttpApi event (REST API with AWS_IAM only)")
            if event.get("Type") != "Api":
                continue
            event_properties = event.get("Properties", {})
            route = f"{logical_id}.{event_id} {event_properties.get('Method')} {event_properties.get('Path')}"
            authorizer = event_properties.get("Auth", {}).get("Authorizer")
            if authorizer != "AWS_IAM":
                findings.append(f"{route}: Auth Authorizer is {authorizer!r}, not AWS_IAM")
            api_id = event_properties.get("RestApiId", {})
            if not (isinstance(api_id, dict) and api_id.get("Ref") in iam_apis):
                findings.append(f"{route}: RestApiId {render(api_id)} is not an AWS_IAM API of this template")
    return findings


def unprotected_buckets(template: Template) -> list[str]:
    """Buckets without a full public access block or without a policy that denies requests over plain HTTP."""
    findings = []
    policies = [resource["Properties"] for _, resource in _resources(template, "AWS::S3::BucketPolicy")]
    for logical_id, bucket in _resources(template, "AWS::S3::Bucket"):
        block = bucket.get("Properties", {}).get("PublicAccessBlockConfiguration", {})
        findings.extend(
            f"{logical_id}: PublicAccessBlockConfiguration {setting} is not true"
            for setting in _PUBLIC_ACCESS_BLOCK
            if block.get(setting) is not True
        )
        statements = [
            statement
            for policy in policies
            if policy.get("Bucket") == {"Ref": logical_id}
            for statement in _as_list(policy["PolicyDocument"].get("Statement", []))
        ]
        if not any(_denies_insecure_transport(statement, logical_id) for statement in statements):
            findings.append(f"{logical_id}: no bucket policy statement denies s3:* when aws:SecureTransport is false")
    return findings


def _denies_insecure_transport(statement: dict[str, Any], bucket_id: str) -> bool:
    condition = statement.get("Condition", {}).get("Bool", {})
    resources = {render(resource) for resource in _as_list(statement.get("Resource", []))}
    return (
        statement.get("Effect") == "Deny"
        and statement.get("Principal") in ("*", {"AWS": "*"})
        and set(_as_list(statement.get("Action"))) & {"s3:*", "*"} != set()
        and str(condition.get("aws:SecureTransport")).lower() == "false"
        and {f"${{{bucket_id}.Arn}}", f"${{{bucket_id}.Arn}}/*"} <= resources
    )


def tables_without_point_in_time_recovery(template: Template) -> list[str]:
    """DynamoDB tables that cannot be restored to an earlier point in time."""
    return [
        f"{logical_id}: PointInTimeRecoveryEnabled is not true"
        for logical_id, table in _resources(template, "AWS::DynamoDB::Table")
        if table.get("Properties", {}).get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
        is not True
    ]


ALL_RULES = (
    uninspectable_policies,
    wildcard_actions,
    star_resources,
    send_command_outside_head_node,
    events_put_without_a_source,
    api_routes_without_iam,
    input_writes_outside_the_api,
    unprotected_buckets,
    tables_without_point_in_time_recovery,
)
