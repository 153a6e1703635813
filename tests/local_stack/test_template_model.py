"""The template model: YAML short tags, SAM Globals, parameters, conditions, intrinsics and the typed views."""

from pathlib import Path

import pytest

from local_stack.template_model import (
    IntrinsicEvaluator,
    PhysicalResource,
    TemplateError,
    TemplateModel,
    generated_name,
    merge_globals,
)
from tests.support.template_files import write_template

FIXTURES = Path(__file__).parent / "fixtures"
MODEL_TEMPLATE = FIXTURES / "model" / "template.yaml"
STACK = "fixture-stack"


@pytest.fixture(scope="module")
def model() -> TemplateModel:
    return TemplateModel(MODEL_TEMPLATE, stack_name=STACK, parameter_overrides={"ClusterName": "local"})


def evaluator(resources: dict[str, PhysicalResource] | None = None, **parameters: str) -> IntrinsicEvaluator:
    return IntrinsicEvaluator(
        parameters=parameters,
        pseudo_parameters={"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"},
        resources=resources or {},
        conditions={},
        mappings={},
    )


# ----- physical names -----------------------------------------------------------------------------------------------


def test_explicit_names_are_evaluated_and_the_others_generated(model: TemplateModel) -> None:
    assert model.state_machine.name == f"{STACK}-jobs"
    assert model.state_machine.arn == f"arn:aws:states:us-east-1:123456789012:stateMachine:{STACK}-jobs"
    assert model.functions["TwoFunction"].name == f"{STACK}-two"
    one = model.functions["OneFunction"]
    assert one.name == generated_name(STACK, "OneFunction", 64)
    assert one.name.startswith(f"{STACK}-OneFunction-")
    assert one.arn == f"arn:aws:lambda:us-east-1:123456789012:function:{one.name}"
    # Bucket names must be lower case; CloudFormation lower-cases generated ones.
    assert model.bucket.name == model.bucket.name.lower()
    assert model.bucket.name.startswith(f"{STACK}-resultsbucket-")
    assert model.bucket.arn == f"arn:aws:s3:::{model.bucket.name}"


def test_generated_names_are_stable_and_fit_the_limit() -> None:
    long_stack = "a-very-long-stack-name-that-goes-on-and-on-and-on"
    name = generated_name(long_stack, "SomeExtremelyLongLogicalIdForAFunction", 64)
    assert len(name) <= 64
    assert name == generated_name(long_stack, "SomeExtremelyLongLogicalIdForAFunction", 64)
    assert name != generated_name(long_stack, "SomeExtremelyLongLogicalIdForAFunctionToo", 64)


def test_sam_implicit_roles_exist_for_functions_and_state_machines(model: TemplateModel) -> None:
    assert model.physical["OneFunctionRole"].type == "AWS::IAM::Role"
    assert model.functions["OneFunction"].role_arn == model.physical["OneFunctionRole"].attributes["Arn"]
    assert model.state_machine.role_arn == model.physical["JobMachineRole"].attributes["Arn"]


# ----- Globals, parameters, conditions ------------------------------------------------------------------------------


def test_globals_apply_and_resource_properties_win(model: TemplateModel) -> None:
    one, two = model.functions["OneFunction"], model.functions["TwoFunction"]
    assert (one.timeout, two.timeout) == (7, 20)  # local Timeout wins over Globals
    assert one.memory_size == two.memory_size == 256  # from Globals, through Fn::FindInMap
    assert one.runtime == "python3.12"
    # Environment maps merge: the global variables plus the function's own.
    assert one.environment["CLUSTER_USER"] == "ec2-user"
    assert one.environment["MACHINE_ARN"] == model.state_machine.arn
    assert "MACHINE_ARN" not in two.environment
    # Lists concatenate, Globals first: the template's layer, then the function's external one.
    assert [layer.logical_id for layer in one.layers] == ["ModelLayer"]
    assert one.layers[0].content_uri == (FIXTURES / "model" / "layer").resolve()
    assert one.external_layer_arns == (
        "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:7",
    )
    assert [layer.logical_id for layer in two.layers] == ["ModelLayer"]


def test_merge_globals_rules() -> None:
    merged = merge_globals(
        {"Timeout": 3, "Environment": {"Variables": {"A": "1", "B": "1"}}, "Layers": ["g"]},
        {"Timeout": 9, "Environment": {"Variables": {"B": "2"}}, "Layers": ["l"]},
    )
    assert merged == {"Timeout": 9, "Environment": {"Variables": {"A": "1", "B": "2"}}, "Layers": ["g", "l"]}
    # An intrinsic is a value, not a mapping to merge into.
    assert merge_globals({"A": "x"}, {"Ref": "P"}) == {"Ref": "P"}


def test_parameters_take_overrides_then_defaults_as_strings(model: TemplateModel) -> None:
    assert model.parameters["ClusterName"] == "local"
    assert model.parameters["PollMinSeconds"] == "10"
    assert model.functions["OneFunction"].environment["POLL_MIN_SECONDS"] == "10"
    assert model.parameters["Subnets"] == ["subnet-a", "subnet-b"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "Parameters.ClusterName: no value given and no Default"),
        ({"ClusterName": "Bad_Name"}, "does not match AllowedPattern"),
        ({"ClusterName": "ok", "Stage": "v3"}, "'v3' is not one of ['v1', 'v2']"),
        ({"ClusterName": "ok", "PollMinSeconds": "0"}, "below MinValue"),
        ({"ClusterName": "ok", "PollMinSeconds": "soon"}, "is not a Number"),
        ({"ClusterName": "ok", "Nope": "x"}, "undeclared parameters: Nope"),
    ],
)
def test_parameter_values_are_checked(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TemplateModel(MODEL_TEMPLATE, stack_name=STACK, parameter_overrides=overrides)


def test_conditions_select_values_and_resources(model: TemplateModel) -> None:
    environment = model.functions["OneFunction"].environment
    assert environment["STAGE_CHOICE"] == "stage-one"
    assert "OPTIONAL" not in environment  # Fn::If to AWS::NoValue removes the variable
    assert "ExtraFunction" not in model.functions  # its Condition is false
    extra = TemplateModel(
        MODEL_TEMPLATE, stack_name=STACK, parameter_overrides={"ClusterName": "local", "EnableExtra": "true"}
    )
    assert extra.functions["OneFunction"].environment["STAGE_CHOICE"] == "other"
    assert extra.functions["OneFunction"].environment["OPTIONAL"] == "present"
    assert "ExtraFunction" in extra.functions


# ----- intrinsics ---------------------------------------------------------------------------------------------------


def test_intrinsics_in_the_fixture(model: TemplateModel) -> None:
    environment = model.functions["OneFunction"].environment
    bucket, table = model.bucket, model.table
    assert environment["BUCKET_ARN"] == bucket.arn
    assert environment["TABLE_NAME"] == table.name
    assert environment["SUB_VALUE"] == f"{STACK}-us-east-1-{bucket.name}-${{Literal}}"
    assert environment["SUB_LIST"] == "subnet-b/123456789012/aws/amazonaws.com"
    assert environment["JOINED"] == f"local,{table.arn}"
    assert environment["SPLIT_SECOND"] == "b"
    assert environment["ENCODED"] == "aGVsbG8="


def test_sub_resolves_attributes_parameters_and_escapes() -> None:
    resources = {"Bucket": PhysicalResource("AWS::S3::Bucket", "b1", {"Arn": "arn:aws:s3:::b1"})}
    value = evaluator(resources, Name="n").evaluate(
        {"Fn::Sub": "${Bucket.Arn}/${Name}/${AWS::Region}/${!Bucket}"}, "test"
    )
    assert value == "arn:aws:s3:::b1/n/us-east-1/${Bucket}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Fn::ImportValue": "shared-vpc"}, "intrinsic function Fn::ImportValue is not supported"),
        ({"Fn::GetAZs": ""}, "intrinsic function Fn::GetAZs is not supported"),
        ({"Ref": "Missing"}, "'Missing' is not a parameter or a resource the local cloud creates"),
        ({"Ref": "AWS::NotAPseudoParameter"}, "pseudo parameter AWS::NotAPseudoParameter is not supported"),
        ({"Fn::GetAtt": ["Bucket", "WebsiteURL"]}, "attribute 'WebsiteURL' of Bucket"),
        ({"Fn::Select": [5, ["a"]]}, "Fn::Select index 5 is outside"),
        ({"Fn::If": ["Undefined", "a", "b"]}, "condition 'Undefined' is not defined"),
    ],
)
def test_unsupported_or_broken_intrinsics_fail_clearly(value: object, message: str) -> None:
    resources = {"Bucket": PhysicalResource("AWS::S3::Bucket", "b1", {"Arn": "arn:aws:s3:::b1"})}
    with pytest.raises(TemplateError, match=message) as raised:
        evaluator(resources).evaluate({"Key": value}, "Resources.X.Properties")
    assert "Resources.X.Properties.Key" in str(raised.value)  # the error says where


def test_short_tags_become_intrinsics(tmp_path: Path) -> None:
    template = """
        Parameters:
          P: {Type: String, Default: "a,b"}
        Resources:
          F:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
              Environment:
                Variables:
                  FIRST: !Select [0, !Split [",", !Ref P]]
                  NAME: !GetAtt F.Arn
        """
    function = TemplateModel(write_template(tmp_path, template), stack_name="s").functions["F"]
    assert function.environment == {"FIRST": "a", "NAME": function.arn}
    unknown_tag = template.replace("!GetAtt F.Arn", '!Cidr ["10.0.0.0/16", 2, 8]')
    with pytest.raises(TemplateError, match=r"Variables\.NAME: intrinsic function Fn::Cidr is not supported"):
        TemplateModel(write_template(tmp_path, unknown_tag), stack_name="s").functions  # noqa: B018 - evaluation


# ----- views --------------------------------------------------------------------------------------------------------


def test_state_machine_definition_gets_its_substitutions(model: TemplateModel) -> None:
    machine = model.state_machine
    assert machine.definition_path == (FIXTURES / "model" / "machine.asl.json").resolve()
    call = machine.definition["States"]["Call"]["Parameters"]
    assert call["FunctionName"] == model.functions["OneFunction"].arn
    assert machine.definition["States"]["Write"]["Parameters"]["Bucket"] == model.bucket.name
    assert machine.type == "STANDARD"


def test_a_placeholder_without_substitution_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "machine.json").write_text('{"StartAt": "A", "States": {"A": {"Type": "Pass", "Comment": "${Nope}"}}}')
    path = write_template(
        tmp_path,
        """
        Resources:
          M:
            Type: AWS::Serverless::StateMachine
            Properties:
              DefinitionUri: machine.json
        """,
    )
    with pytest.raises(TemplateError, match=r"\$\{Nope\} has no entry in DefinitionSubstitutions"):
        TemplateModel(path, stack_name="s").state_machine  # noqa: B018


def test_bucket_table_and_api_views(model: TemplateModel) -> None:
    assert model.bucket.encryption_rules == ({"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}},)
    assert model.bucket.public_access_block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    table = model.table
    assert table.key_schema == ({"AttributeName": "jobId", "KeyType": "HASH"},)
    assert [index["IndexName"] for index in table.global_secondary_indexes] == ["OwnerCreatedAtIndex"]
    assert (table.billing_mode, table.ttl_attribute, table.point_in_time_recovery) == (
        "PAY_PER_REQUEST",
        "expiresAt",
        True,
    )
    api = model.api
    assert (api.stage_name, api.default_authorizer) == ("v1", "AWS_IAM")
    assert api.api_id == model.physical["JobsApi"].ref and len(api.api_id) == 10
    assert api.binary_media_types == ("application~1octet-stream",)


def test_api_events_become_routes(model: TemplateModel) -> None:
    routes = {(route.path, route.method, route.authorizer) for route in model.functions["OneFunction"].api_routes}
    assert routes == {("/jobs/{jobId}", "GET", None), ("/{proxy+}", "ANY", "NONE")}
    assert all(route.api_logical_id == "JobsApi" for route in model.functions["OneFunction"].api_routes)
    assert model.functions["TwoFunction"].api_routes == ()


def test_resources_the_local_cloud_does_not_create_have_no_physical_name(model: TemplateModel) -> None:
    assert model.resource_types()["ResultsBucketPolicy"] == "AWS::S3::BucketPolicy"
    assert "ResultsBucketPolicy" not in model.physical
    with pytest.raises(TemplateError, match="'ResultsBucketPolicy' is not a parameter or a resource"):
        model.evaluate({"Ref": "ResultsBucketPolicy"})


def test_missing_code_directory_is_reported(tmp_path: Path) -> None:
    path = write_template(
        tmp_path,
        """
        Resources:
          F:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: missing/, Handler: app.handler, Runtime: python3.12}
        """,
    )
    with pytest.raises(TemplateError, match=r"Resources\.F\.Properties\.CodeUri: .*missing does not exist"):
        TemplateModel(path, stack_name="s").functions  # noqa: B018


def test_reserved_concurrency_is_read_from_the_function(tmp_path: Path) -> None:
    path = write_template(
        tmp_path,
        """
        Resources:
          Reserved:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12, ReservedConcurrentExecutions: 1}
          Free:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12}
        """,
    )
    functions = TemplateModel(path, stack_name=STACK).functions
    assert functions["Reserved"].reserved_concurrent_executions == 1
    assert functions["Free"].reserved_concurrent_executions is None


def test_the_maximum_event_age_is_read_from_the_functions_event_invoke_config(tmp_path: Path) -> None:
    path = write_template(
        tmp_path,
        """
        Resources:
          Short:
            Type: AWS::Serverless::Function
            Properties:
              {CodeUri: src/, Handler: app.handler, Runtime: python3.12,
               EventInvokeConfig: {MaximumEventAgeInSeconds: 60}}
          Default:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12}
          Wrong:
            Type: AWS::Serverless::Function
            Properties:
              {CodeUri: src/, Handler: app.handler, Runtime: python3.12,
               EventInvokeConfig: {MaximumEventAgeInSeconds: 5}}
        """,
    )
    model = TemplateModel(path, stack_name=STACK)
    with pytest.raises(TemplateError, match=r"Wrong\.Properties\.EventInvokeConfig\.MaximumEventAgeInSeconds: 60 to"):
        model.functions  # noqa: B018
    (tmp_path / "template.yaml").write_text((tmp_path / "template.yaml").read_text().split("  Wrong:")[0])
    functions = TemplateModel(path, stack_name=STACK).functions
    assert (functions["Short"].maximum_event_age_seconds, functions["Default"].maximum_event_age_seconds) == (60, 21600)
