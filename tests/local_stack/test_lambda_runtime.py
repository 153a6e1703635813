"""The local cloud and its Lambda runtime: resources from the template, our handlers run in-process when moto's Lambda
is invoked (directly, and by the Step Functions interpreter), errors as Lambda reports them, interceptors.

One LocalCloud for the module, from tests/local_stack/fixtures/cloud/template.yaml.
"""

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack import lambda_runtime
from local_stack.cloud import LocalCloud
from local_stack.lambda_runtime import LambdaContext, LambdaRuntime, TooManyRequests
from local_stack.ssm_head_node import LocalHeadNode
from local_stack.template_model import TemplateModel

FIXTURES = Path(__file__).parent / "fixtures"
CLOUD_TEMPLATE = FIXTURES / "cloud" / "template.yaml"
FAKE_SLURM_CONF = "/nonexistent/slurm.conf"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    head_node = LocalHeadNode(env={"SLURM_CONF": FAKE_SLURM_CONF}, invocation_visibility_delay=0.0)
    with LocalCloud(
        CLOUD_TEMPLATE,
        stack_name="runtime-test",
        parameter_overrides={"Greeting": "bonjour", "ClusterName": "unit-cluster"},
        head_node=head_node,
    ) as running:
        yield running


def invoke(cloud: LocalCloud, payload: dict[str, Any], client: Any = None, **kwargs: Any) -> tuple[str | None, Any]:
    """Invoke WorkerFunction through moto (by ``client``, else a new one); returns (FunctionError, decoded payload)."""
    response = (client or cloud.client("lambda")).invoke(
        FunctionName=cloud.function_names["WorkerFunction"], Payload=json.dumps(payload), **kwargs
    )
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def run_execution(cloud: LocalCloud, payload: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the fixture state machine to its end; returns (describe_execution, history events)."""
    stepfunctions = cloud.client("stepfunctions")
    arn = stepfunctions.start_execution(
        stateMachineArn=cloud.state_machine_arn, name=f"test-{uuid.uuid4()}", input=json.dumps(payload)
    )["executionArn"]
    deadline = time.monotonic() + 20
    while (description := stepfunctions.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end within 20 s"
        time.sleep(0.1)
    return description, stepfunctions.get_execution_history(executionArn=arn)["events"]


# ----- resources ----------------------------------------------------------------------------------------------------


def test_bucket_and_table_are_created_as_the_template_says(cloud: LocalCloud) -> None:
    s3 = cloud.client("s3")
    rules = s3.get_bucket_encryption(Bucket=cloud.bucket_name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=cloud.bucket_name)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4

    dynamodb = cloud.client("dynamodb")
    table = dynamodb.describe_table(TableName=cloud.table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "jobId", "KeyType": "HASH"}]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["OwnerCreatedAtIndex"]
    assert table["SSEDescription"]["Status"] == "ENABLED"
    ttl = dynamodb.describe_time_to_live(TableName=cloud.table_name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expiresAt")
    backups = dynamodb.describe_continuous_backups(TableName=cloud.table_name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_functions_and_state_machine_are_created_from_the_template(cloud: LocalCloud) -> None:
    configuration = cloud.client("lambda").get_function_configuration(
        FunctionName=cloud.function_names["WorkerFunction"]
    )
    assert (configuration["Handler"], configuration["Timeout"], configuration["MemorySize"]) == (
        "app.lambda_handler",
        3,
        512,
    )
    assert configuration["Environment"]["Variables"]["GREETING"] == "bonjour"
    definition = json.loads(
        cloud.client("stepfunctions").describe_state_machine(stateMachineArn=cloud.state_machine_arn)["definition"]
    )
    worker_arn = cloud.model.functions["WorkerFunction"].arn
    assert definition["States"]["Work"]["Parameters"]["FunctionName"] == worker_arn
    assert definition["States"]["Describe"]["Resource"] == worker_arn


def test_this_machine_is_the_tagged_head_node_and_runs_its_ssm_commands(cloud: LocalCloud) -> None:
    reservations = cloud.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:parallelcluster:cluster-name", "Values": ["unit-cluster"]},
            {"Name": "tag:parallelcluster:node-type", "Values": ["HeadNode"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    instance_ids = [instance["InstanceId"] for reservation in reservations for instance in reservation["Instances"]]
    assert instance_ids == [cloud.head_node_instance_id]

    ssm = cloud.client("ssm")
    command_id = ssm.send_command(
        InstanceIds=instance_ids,
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ['echo "conf=$SLURM_CONF"']},
    )["Command"]["CommandId"]
    deadline = time.monotonic() + 10
    while True:
        invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_ids[0])
        if invocation["Status"] not in ("Pending", "InProgress"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (invocation["Status"], invocation["StandardOutputContent"]) == ("Success", f"conf={FAKE_SLURM_CONF}\n")


# ----- direct invocation --------------------------------------------------------------------------------------------


def test_invoke_runs_our_handler_with_environment_context_and_layer(cloud: LocalCloud) -> None:
    variables = ["GREETING", "WORKER_ONLY", "RESULTS_BUCKET", "AWS_ENDPOINT_URL", "AWS_REGION"]
    error, result = invoke(cloud, {"action": "describe", "variables": variables})
    assert error is None
    assert result["layer"] == "fixture-layer"
    assert result["environment"] == {
        "GREETING": "bonjour",  # Globals, from the parameter override
        "WORKER_ONLY": "yes",  # the function's own
        "RESULTS_BUCKET": cloud.bucket_name,
        "AWS_ENDPOINT_URL": cloud.endpoint_url,
        "AWS_REGION": "us-east-1",
    }
    function = cloud.model.functions["WorkerFunction"]
    context = result["context"]
    assert context["function_name"] == function.name
    assert context["invoked_function_arn"] == function.arn
    assert (context["function_version"], context["memory_limit_in_mb"]) == ("$LATEST", "512")
    assert context["log_group_name"] == f"/aws/lambda/{function.name}"
    assert 0 < context["remaining_time_in_millis"] <= 3000  # Timeout: 3
    uuid.UUID(context["aws_request_id"])
    assert "AWS_LAMBDA_FUNCTION_NAME" not in os.environ  # per-invocation facts live in the context


def test_invoke_by_qualified_arn(cloud: LocalCloud) -> None:
    # moto 5.2.5 drops the Qualifier query parameter, so the qualifier goes in the FunctionName here.
    function = cloud.model.functions["WorkerFunction"]
    response = cloud.client("lambda").invoke(
        FunctionName=f"{function.arn}:$LATEST", Payload=json.dumps({"action": "describe"})
    )
    assert json.loads(response["Payload"].read())["context"]["invoked_function_arn"] == f"{function.arn}:$LATEST"
    with pytest.raises(ClientError) as raised:
        cloud.client("lambda").invoke(FunctionName=f"{function.name}:7", Payload=b"{}")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_an_exception_is_an_unhandled_function_error(cloud: LocalCloud) -> None:
    error, payload = invoke(cloud, {"action": "fail", "errorClass": "PermanentError", "message": "no way"})
    assert error == "Unhandled"
    assert (payload["errorType"], payload["errorMessage"]) == ("PermanentError", "no way")
    assert "worker/app.py" in payload["stackTrace"][-1]
    assert not any("lambda_runtime.py" in frame for frame in payload["stackTrace"])
    record = cloud.runtime.invocations_of("WorkerFunction")[-1]
    assert record.request_id == payload["requestId"]
    assert record.error is not None and record.error["errorType"] == "PermanentError"


def test_a_result_that_is_not_json_is_a_marshal_error(cloud: LocalCloud) -> None:
    error, payload = invoke(cloud, {"action": "unserializable"})
    assert (error, payload["errorType"]) == ("Unhandled", "Runtime.MarshalError")
    assert "not JSON serializable" in payload["errorMessage"]


def test_a_handler_past_its_timeout_is_reported_as_timed_out_and_its_environment_ended(cloud: LocalCloud) -> None:
    invoke(cloud, {"action": "describe"})  # a warm environment: the 3 s Timeout does not count the init phase
    environments = cloud.runtime.live_environments("WorkerFunction")
    started = time.monotonic()
    error, payload = invoke(cloud, {"action": "sleep", "seconds": 120})
    # Answered at the 3 s Timeout, not when the handler would have ended (the margin is for a loaded machine).
    assert time.monotonic() - started < 60
    assert error == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in payload["errorMessage"]
    # Lambda ends a timed-out environment; the function goes on working.
    assert cloud.runtime.live_environments("WorkerFunction") == environments - 1
    assert invoke(cloud, {"action": "sleep", "seconds": 0}) == (None, {"slept": 0})


def meet(cloud: LocalCloud, directory: Path, count: int) -> dict[str, Any]:
    """``count`` concurrent invocations of the rendezvous action; their answers by the value each one held.

    They are sent together, each by a client made beforehand: made in each thread on a loaded machine, the clients
    spread the invocations over more than the function's 3 s Timeout.
    """
    values = [f"global-{uuid.uuid4()}" for _ in range(count)]
    clients = [cloud.client("lambda") for _ in values]
    together = threading.Barrier(count)
    answers: dict[str, Any] = {}

    def one(value: str, client: Any) -> None:
        together.wait()
        answers[value] = invoke(
            cloud, {"action": "rendezvous", "directory": str(directory), "count": count, "value": value}, client
        )

    threads = [
        threading.Thread(target=one, args=(value, client)) for value, client in zip(values, clients, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def warm_up(cloud: LocalCloud, directory: Path, count: int) -> None:
    """Meetings until the function has ``count`` warm environments, so that the next meeting waits for no cold start.

    In a meeting of warm and cold environments the warm ones wait for the cold starts, up to their Timeout; on a loaded
    machine one may pass it, and its environment is ended.
    """
    for attempt in range(5):
        if cloud.runtime.live_environments("WorkerFunction") >= count:
            return
        meet(cloud, directory / str(attempt), count)
    raise AssertionError(f"WorkerFunction has {cloud.runtime.live_environments('WorkerFunction')} environments")


def test_invocations_run_concurrently_each_in_its_own_environment(cloud: LocalCloud, tmp_path: Path) -> None:
    """Four invocations that each wait for all four to be in flight: one after the other, none would see the others."""
    warm_up(cloud, tmp_path / "warm-up", 4)
    answers = meet(cloud, tmp_path / "meeting", 4)
    assert [error for error, _ in answers.values()] == [None] * 4
    assert all(answer["met"] for _, answer in answers.values())
    assert len({answer["pid"] for _, answer in answers.values()}) == 4


def test_concurrent_invocations_never_share_module_state(cloud: LocalCloud, tmp_path: Path) -> None:
    """Each environment is a process: a global set by one request in flight is never seen by another."""
    warm_up(cloud, tmp_path / "warm-up", 4)
    answers = meet(cloud, tmp_path / "meeting", 4)
    held = {value: answer.get("held") for value, (_, answer) in answers.items()}
    assert held == {value: value for value in answers}, answers


def test_event_invocations_run_in_the_background(cloud: LocalCloud) -> None:
    key = f"event/{uuid.uuid4()}"
    response = cloud.client("lambda").invoke(
        FunctionName=cloud.function_names["WorkerFunction"],
        InvocationType="Event",
        Payload=json.dumps({"action": "put", "key": key}),
    )
    assert response["StatusCode"] == 202
    deadline = time.monotonic() + 5
    while not any(entry.event.get("key") == key for entry in cloud.runtime.invocations_of("WorkerFunction")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert cloud.client("s3").get_object(Bucket=cloud.bucket_name, Key=key)["Body"].read() == b"written"


# ----- interceptors -------------------------------------------------------------------------------------------------


class CrashAfterHandler(Exception):
    pass


def test_an_interceptor_can_crash_the_function_after_the_handler_did_its_work(cloud: LocalCloud) -> None:
    key = f"crash/{uuid.uuid4()}"
    seen: list[Any] = []

    def crash_after(event: Any, context: LambdaContext, call_next: Any) -> Any:
        seen.append(call_next(event, context))
        raise CrashAfterHandler("the sandbox died after the handler returned")

    with cloud.runtime.intercepted("WorkerFunction", crash_after):
        error, payload = invoke(cloud, {"action": "put", "key": key})
    assert seen == [{"written": key}]
    assert (error, payload["errorType"]) == ("Unhandled", "CrashAfterHandler")
    # The handler's side effect happened although the caller saw a failure.
    assert cloud.client("s3").get_object(Bucket=cloud.bucket_name, Key=key)["Body"].read() == b"written"
    assert invoke(cloud, {"action": "put", "key": key}) == (None, {"written": key})  # removed


def test_an_interceptor_can_fail_the_function_before_the_handler_runs(cloud: LocalCloud) -> None:
    key = f"never/{uuid.uuid4()}"

    def fail_first(event: Any, context: LambdaContext, call_next: Any) -> Any:
        raise TimeoutError("injected before the handler")

    with cloud.runtime.intercepted("WorkerFunction", fail_first):
        error, payload = invoke(cloud, {"action": "put", "key": key})
    assert (error, payload["errorType"]) == ("Unhandled", "TimeoutError")
    assert cloud.client("s3").list_objects_v2(Bucket=cloud.bucket_name, Prefix=key)["KeyCount"] == 0


def test_only_expected_json_path_misses_are_kept_out_of_the_log(
    cloud: LocalCloud, caplog: pytest.LogCaptureFixture
) -> None:
    interpreter = logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component")
    with caplog.at_level(logging.ERROR, logger=interpreter.name):
        interpreter.error("Exception=NoSuchJsonPathError, Details=None-Available at '$.job'")
        interpreter.error("Exception=FailureEventException, Details=States.Runtime")
    assert [record.getMessage() for record in caplog.records] == [
        "Exception=FailureEventException, Details=States.Runtime"
    ]


# ----- from the state machine ---------------------------------------------------------------------------------------


def test_the_state_machine_retries_on_the_error_type_and_reaches_the_handler(cloud: LocalCloud) -> None:
    description, events = run_execution(cloud, {"action": "fail_times", "key": str(uuid.uuid4()), "failures": 2})
    assert description["status"] == "SUCCEEDED"
    output = json.loads(description["output"])
    assert output["result"] == {"attempts": 3}
    failures = [event["taskFailedEventDetails"] for event in events if event["type"] == "TaskFailed"]
    assert [failure["error"] for failure in failures] == ["TransientError", "TransientError"]
    assert json.loads(failures[0]["cause"])["errorMessage"] == "attempt 1 failed"
    # The function-ARN task: environment and context reach the handler when Step Functions invokes it.
    described = output["described"]
    assert described["environment"] == {"GREETING": "bonjour", "WORKER_ONLY": "yes"}
    assert described["context"]["function_name"] == cloud.function_names["WorkerFunction"]


def test_the_state_machine_catches_on_the_error_type(cloud: LocalCloud) -> None:
    description, events = run_execution(cloud, {"action": "fail", "errorClass": "PermanentError", "message": "stop"})
    assert description["status"] == "SUCCEEDED"
    caught = json.loads(description["output"])["caught"]
    assert caught["Error"] == "PermanentError"
    assert json.loads(caught["Cause"])["errorMessage"] == "stop"
    assert sum(event["type"] == "TaskScheduled" for event in events) == 1  # no Retry for this error
    entered = [event["stateEnteredEventDetails"]["name"] for event in events if event["type"] == "PassStateEntered"]
    assert entered == ["Caught"]


# ----- import isolation ---------------------------------------------------------------------------------------------


def test_each_function_imports_its_own_modules_and_sees_its_own_environment(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(
            "import os\nimport helpers\n\n"
            "def handler(event, context):\n"
            "    return {'helper': helpers.NAME, 'only': os.environ.get('ONLY_ONE')}\n"
        )
        (tmp_path / name / "helpers.py").write_text(f"NAME = {name!r}\n")
    (tmp_path / "template.yaml").write_text(
        "Globals:\n  Function: {Runtime: python3.12, Handler: app.handler, Timeout: 10}\n"
        "Resources:\n"
        "  One:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: one/, Environment: {Variables: {ONLY_ONE: x}}}\n"
        "  Two: {Type: AWS::Serverless::Function, Properties: {CodeUri: two/}}\n"
    )
    model = TemplateModel(tmp_path / "template.yaml", stack_name="s")
    runtime = LambdaRuntime(model, endpoint_url="http://127.0.0.1:9")
    try:
        assert runtime.invoke("One", {}).json() == {"helper": "one", "only": "x"}
        assert runtime.invoke("Two", {}).json() == {"helper": "two", "only": None}
    finally:
        runtime.uninstall()
    failed = runtime.invoke("One", {})
    assert (failed.function_error, failed.json()["errorType"]) == ("Unhandled", "Runtime.Unavailable")


def test_a_handler_that_cannot_be_imported_is_an_import_module_error(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "app.py").write_text("import no_such_module_anywhere\n")
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  Broken: {Type: AWS::Serverless::Function, Properties: {CodeUri: broken/, Runtime: python3.12,"
        " Handler: app.handler}}\n"
    )
    runtime = LambdaRuntime(
        TemplateModel(tmp_path / "template.yaml", stack_name="s"), endpoint_url="http://127.0.0.1:9"
    )
    try:
        failed = runtime.invoke("Broken", {})
    finally:
        runtime.uninstall()
    assert failed.function_error == "Unhandled"
    payload = failed.json()
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'app'" in payload["errorMessage"]
    assert "no_such_module_anywhere" in payload["errorMessage"]


# ----- the init phase -------------------------------------------------------------------------------------------------


def slow_init_runtime(tmp_path: Path, *, import_seconds: float, timeout: int, init_limit: float) -> LambdaRuntime:
    """A runtime with one function, Slow, whose import takes ``import_seconds``."""
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "app.py").write_text(
        f"import os, time\ntime.sleep({import_seconds})\nPID = os.getpid()\n\n"
        "def handler(event, context):\n    return {'pid': PID, 'remaining': context.get_remaining_time_in_millis()}\n"
    )
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  Slow: {Type: AWS::Serverless::Function, Properties: {CodeUri: slow/, Runtime: python3.12,"
        f" Handler: app.handler, Timeout: {timeout}}}}}\n"
    )
    model = TemplateModel(tmp_path / "template.yaml", stack_name="s")
    return LambdaRuntime(model, endpoint_url="http://127.0.0.1:9", init_timeout_seconds=init_limit)


def test_an_init_over_the_init_limit_is_retried_within_the_timeout_as_lambda_does(tmp_path: Path) -> None:
    runtime = slow_init_runtime(tmp_path, import_seconds=0.5, timeout=5, init_limit=0.1)
    try:
        first = runtime.invoke("Slow", {})
        second = runtime.invoke("Slow", {})
    finally:
        runtime.uninstall()
    assert (first.function_error, second.function_error) == (None, None), (first.json(), second.json())
    # One environment, reused; its first invocation had the retried init counted against its Timeout.
    assert first.json()["pid"] == second.json()["pid"] and runtime.environments_created("Slow") == 1
    assert runtime.inits_retried("Slow") == 1
    assert first.json()["remaining"] <= 4600 < second.json()["remaining"]


def test_an_init_that_outlasts_the_timeout_too_is_a_timed_out_invocation(tmp_path: Path) -> None:
    runtime = slow_init_runtime(tmp_path, import_seconds=30, timeout=1, init_limit=0.1)
    try:
        failed = runtime.invoke("Slow", {})
        assert runtime.live_environments("Slow") == 0  # the environment was ended
    finally:
        runtime.uninstall()
    assert (failed.function_error, failed.json()["errorType"]) == ("Unhandled", "Sandbox.Timedout")
    assert "Task timed out after 1.00 seconds" in failed.json()["errorMessage"]
    assert runtime.invocations_of("Slow")[0].duration_seconds < 20  # ended at its Timeout, not after the 30 s import


def test_failing_inits_fail_the_next_cold_starts_with_runtime_init_error(tmp_path: Path) -> None:
    runtime = slow_init_runtime(tmp_path, import_seconds=0, timeout=5, init_limit=10)
    try:
        with runtime.failing_inits("Slow", 2):
            answers = [runtime.invoke("Slow", {}) for _ in range(3)]
        assert runtime.init_faults_injected("Slow") == 2
        assert runtime.environments_created("Slow") == 3
    finally:
        runtime.uninstall()
    assert [answer.function_error for answer in answers] == ["Unhandled", "Unhandled", None]
    for failed in answers[:2]:
        payload = failed.json()
        assert payload["errorType"] == "Runtime.InitError" and payload["requestId"], payload


# ----- bounded execution environments ---------------------------------------------------------------------------------

HELD_HANDLER = """import os, time
from pathlib import Path


def handler(event, context):
    directory = Path(event["directory"])
    (directory / f"started-{event['name']}").touch()
    while not (directory / "release").exists() and context.get_remaining_time_in_millis() > 500:
        time.sleep(0.02)
    return {"name": event["name"], "pid": os.getpid()}
"""


def held_runtime(
    tmp_path: Path,
    *,
    reserved: int | None = None,
    bound: int | None = 2,
    throttle_after: float = 600,
    event_age: int | None = None,
) -> LambdaRuntime:
    """A runtime with one function, Held, whose invocations each wait for the file ``release`` in their directory."""
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "app.py").write_text(HELD_HANDLER)
    reservation = "" if reserved is None else f", ReservedConcurrentExecutions: {reserved}"
    if event_age is not None:
        reservation += f", EventInvokeConfig: {{MaximumEventAgeInSeconds: {event_age}}}"
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  Held: {Type: AWS::Serverless::Function, Properties: {CodeUri: held/, Runtime: python3.12,"
        f" Handler: app.handler, Timeout: 300{reservation}}}}}\n"
    )
    model = TemplateModel(tmp_path / "template.yaml", stack_name="s")
    return LambdaRuntime(
        model, endpoint_url="http://127.0.0.1:9", environments_per_function=bound, throttle_after_seconds=throttle_after
    )


class Caller(threading.Thread):
    """One invocation of Held in a thread of its own; ``answer`` or ``raised`` once it has ended."""

    def __init__(self, runtime: LambdaRuntime, directory: Path, name: str) -> None:
        super().__init__(name=f"caller-{name}", daemon=True)
        self.event = {"directory": str(directory), "name": name}
        self.runtime = runtime
        self.answer: Any = None
        self.raised: BaseException | None = None

    def run(self) -> None:
        try:
            self.answer = self.runtime.invoke("Held", self.event)
        except BaseException as error:  # noqa: BLE001 - the test looks at it
            self.raised = error


def wait_until(condition: Any, what: str, seconds: float = 120) -> None:
    """Polls ``condition`` (generously: only a broken runtime takes this long, a loaded machine does not)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.02)


def test_the_bound_holds_the_others_wait_and_the_environments_are_reused(tmp_path: Path) -> None:
    runtime = held_runtime(tmp_path, bound=2)
    callers = [Caller(runtime, tmp_path, str(number)) for number in range(6)]
    try:
        for caller in callers:
            caller.start()
        wait_until(lambda: runtime.waiting("Held") == 4, "four invocations waiting")
        wait_until(lambda: len(list(tmp_path.glob("started-*"))) == 2, "two invocations running")
        assert runtime.live_environments("Held") == 2 and len(runtime.environment_pids()) == 2
        (tmp_path / "release").touch()
        for caller in callers:
            caller.join(120)
        assert runtime.environments_created("Held") == 2 and runtime.peak_environments("Held") == 2
    finally:
        runtime.uninstall()
    assert [caller.raised for caller in callers] == [None] * 6
    assert [caller.answer.function_error for caller in callers] == [None] * 6
    assert len({caller.answer.json()["pid"] for caller in callers}) == 2  # warm environments served the waiters


def test_the_bound_is_the_reserved_concurrency_when_the_function_has_one(tmp_path: Path) -> None:
    runtime = held_runtime(tmp_path, reserved=1, bound=4)
    try:
        assert runtime.environment_bound("Held") == 1
    finally:
        runtime.uninstall()
    (tmp_path / "unbounded").mkdir()
    unbounded = held_runtime(tmp_path / "unbounded", bound=None)
    try:
        assert unbounded.environment_bound("Held") is None
    finally:
        unbounded.uninstall()


def test_waiting_invocations_run_in_the_order_they_arrived(tmp_path: Path) -> None:
    """Each waiter is started only once the one before it is counted as waiting: the arrival order is the test's."""
    runtime = held_runtime(tmp_path, bound=1)
    first = Caller(runtime, tmp_path, "first")
    waiters = [Caller(runtime, tmp_path, name) for name in ("b", "c", "d", "e")]
    try:
        first.start()
        wait_until(lambda: (tmp_path / "started-first").exists(), "the first invocation running")
        for position, waiter in enumerate(waiters, start=1):
            waiter.start()
            wait_until(lambda position=position: runtime.waiting("Held") == position, f"{position} waiting")
        (tmp_path / "release").touch()
        for caller in (first, *waiters):
            caller.join(120)
    finally:
        runtime.uninstall()
    # One environment: each invocation finished before the next one started, so the finishing order is the running one.
    assert [entry.event["name"] for entry in runtime.invocations_of("Held")] == ["first", "b", "c", "d", "e"]


def test_an_invocation_that_waits_too_long_with_no_environment_freed_is_throttled(tmp_path: Path) -> None:
    runtime = held_runtime(tmp_path, bound=1, throttle_after=0.2)
    holder = Caller(runtime, tmp_path, "holder")
    try:
        holder.start()
        wait_until(lambda: (tmp_path / "started-holder").exists(), "the holder running")
        with pytest.raises(TooManyRequests) as throttled:
            runtime.invoke("Held", {"directory": str(tmp_path), "name": "late"})
        assert throttled.value.reason == "ConcurrentInvocationLimitExceeded"
        assert (runtime.throttles("Held"), runtime.waiting("Held")) == (1, 0)
        (tmp_path / "release").touch()
        holder.join(120)
        assert runtime.invoke("Held", {"directory": str(tmp_path), "name": "after"}).function_error is None
    finally:
        runtime.uninstall()
    assert not (tmp_path / "started-late").exists()  # a throttled invocation never ran
    assert runtime.environments_created("Held") == 1


def test_a_throttled_asynchronous_event_is_tried_again_until_it_runs(tmp_path: Path) -> None:
    runtime = held_runtime(tmp_path, bound=1, throttle_after=0.1)
    holder = Caller(runtime, tmp_path, "holder")
    answers: list[Any] = []
    try:
        holder.start()
        wait_until(lambda: (tmp_path / "started-holder").exists(), "the holder running")
        late = threading.Thread(
            target=lambda: answers.append(runtime.invoke_async("Held", {"directory": str(tmp_path), "name": "late"}))
        )
        late.start()
        wait_until(lambda: runtime.throttles("Held") >= 2, "the event throttled, and throttled again a second later")
        assert not (tmp_path / "started-late").exists() and answers == []
        (tmp_path / "release").touch()
        holder.join(120)
        late.join(120)
    finally:
        runtime.uninstall()
    assert (tmp_path / "started-late").exists() and answers[0].function_error is None
    assert runtime.async_dropped("Held") == 0


def test_a_throttled_asynchronous_event_is_dropped_once_too_old_or_when_the_runtime_stops(
    tmp_path: Path, monkeypatch
) -> None:
    runtime = held_runtime(tmp_path, bound=1, throttle_after=0.1, event_age=60)
    holder = Caller(runtime, tmp_path, "holder")
    try:
        holder.start()
        wait_until(lambda: (tmp_path / "started-holder").exists(), "the holder running")
        with monkeypatch.context() as patched:
            patched.setattr(lambda_runtime, "ASYNC_RETRY_FIRST_SECONDS", 61.0)  # the next try would be too late
            started = time.monotonic()
            assert runtime.invoke_async("Held", {"directory": str(tmp_path), "name": "old"}) is None
            assert time.monotonic() - started < 30 and runtime.async_dropped("Held") == 1
        answers: list[Any] = []
        waiting = threading.Thread(
            target=lambda: answers.append(runtime.invoke_async("Held", {"directory": str(tmp_path), "name": "stop"}))
        )
        waiting.start()
        wait_until(lambda: runtime.throttles("Held") >= 2, "the second event throttled")
        runtime.stop_retrying()
        waiting.join(30)
        assert answers == [None] and runtime.async_dropped("Held") == 2
    finally:
        (tmp_path / "release").touch()
        holder.join(120)
        runtime.uninstall()
    assert not (tmp_path / "started-old").exists() and not (tmp_path / "started-stop").exists()


def test_a_throttled_invoke_is_lambdas_429_too_many_requests(cloud: LocalCloud) -> None:
    """ThrottledFunction reserves no concurrency at all (ReservedConcurrentExecutions: 0)."""
    with pytest.raises(ClientError) as raised:
        cloud.client("lambda").invoke(FunctionName=cloud.function_names["ThrottledFunction"], Payload=b"{}")
    response = raised.value.response
    assert response["Error"]["Code"] == "TooManyRequestsException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"


def test_the_state_machine_retries_a_throttled_lambda_task_as_lambda_too_many_requests(cloud: LocalCloud) -> None:
    """A task on the function's ARN (as the product's tasks are): Step Functions names the throttle
    Lambda.TooManyRequestsException, which its Retry matches."""
    definition = {
        "StartAt": "Throttled",
        "States": {
            "Throttled": {
                "Type": "Task",
                "Resource": cloud.model.functions["ThrottledFunction"].arn,
                "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    stepfunctions = cloud.client("stepfunctions")
    machine_arn = stepfunctions.create_state_machine(
        name=f"throttled-{uuid.uuid4().hex[:8]}",
        definition=json.dumps(definition),
        roleArn=cloud.model.state_machine.role_arn,
    )["stateMachineArn"]
    arn = stepfunctions.start_execution(stateMachineArn=machine_arn, input="{}")["executionArn"]
    deadline = time.monotonic() + 60
    while stepfunctions.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end within 60 s"
        time.sleep(0.1)
    events = stepfunctions.get_execution_history(executionArn=arn)["events"]
    failures = [
        event["lambdaFunctionFailedEventDetails"] for event in events if event["type"] == "LambdaFunctionFailed"
    ]
    assert [failure["error"] for failure in failures] == ["Lambda.TooManyRequestsException"] * 2  # tried, retried
    assert "Status Code: 429" in failures[0]["cause"]
    entered = [event["stateEnteredEventDetails"]["name"] for event in events if event["type"] == "PassStateEntered"]
    assert entered == ["Caught"]
