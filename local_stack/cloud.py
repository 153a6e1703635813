"""The local cloud: moto's server in this process, with the template's resources, our handlers and the local API.

``LocalCloud`` reads template.yaml (:mod:`local_stack.template_model`), starts moto's ``ThreadedMotoServer`` on
127.0.0.1 (a free port), turns on moto's Step Functions interpreter and its Docker-free Lambda, and creates what the
template declares: the S3 bucket (with its encryption and public access block), the DynamoDB table (indexes, TTL,
point-in-time recovery), IAM roles, the Lambda functions (a placeholder zip: the code runs from CodeUri in local
execution environments, see :mod:`local_stack.lambda_runtime`) and the state machine from its DefinitionUri with the
substitutions applied.
Given a :class:`~local_stack.ssm_head_node.LocalHeadNode`, it also registers this machine as the cluster's head node:
an EC2 instance tagged like a ParallelCluster head node of the ``ClusterName`` parameter, whose SSM commands the head
node runs here. It creates the template's event buses and the rules of the functions' EventBridgeRule events, and
delivers their events to the functions (:mod:`local_stack.event_delivery`). Finally it serves the template's REST API
(:mod:`local_stack.api_gateway`).

moto keeps its state in process-wide globals, so only one LocalCloud can run in a process at a time; stopping it
resets moto and restores the process environment.
"""

import copy
import io
import json
import logging
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import requests
from botocore.client import BaseClient
from botocore.config import Config
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from local_stack import moto_fixes, moto_speedups
from local_stack.api_gateway import (
    DEFAULT_PRINCIPALS,
    EVENTS_CALLER_ARN,
    LOCAL_DEVELOPER,
    LOCAL_OTHER,
    ApiClient,
    LocalApiGateway,
)
from local_stack.event_delivery import LocalEventDelivery
from local_stack.lambda_runtime import (
    DEFAULT_ENVIRONMENTS_PER_FUNCTION,
    LOCAL_ACCESS_KEY_ID,
    LOCAL_SECRET_ACCESS_KEY,
    InvocationResult,
    LambdaRuntime,
)
from local_stack.scheduler import LocalScheduler
from local_stack.sigv4 import Principal
from local_stack.ssm_head_node import LocalHeadNode
from local_stack.stream_delivery import LocalStreamDelivery
from local_stack.template_model import DEFAULT_REGION, REPO_ROOT, TableSpec, TemplateError, TemplateModel

logger = logging.getLogger(__name__)
_WERKZEUG_LOGGER = logging.getLogger("werkzeug")
# moto's ASL interpreter logs an ERROR for every JSONPath that matches nothing, even where that is the expected answer
# (a Choice rule with IsPresent: false). A path that really fails the state shows in the execution history instead.
_ASL_EVAL_LOGGER = logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component")


def _not_a_missing_json_path(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Exception=NoSuchJsonPathError")


MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
HEAD_NODE_INSTANCE_TYPE = "c5.xlarge"
CLUSTER_NAME_PARAMETER = "ClusterName"
# Who may assume the roles the local cloud creates (moto checks that a function's role exists, not its policies).
_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _placeholder_zip(code_uri: Path) -> bytes:
    """The deployment package moto stores; the handler really runs from ``code_uri``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("LOCAL_STACK.txt", f"This function runs from {code_uri} (local_stack.lambda_runtime)\n")
    return buffer.getvalue()


def _encryption_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation ServerSideEncryptionRule in the shape of the S3 API (PutBucketEncryption)."""
    converted: dict[str, Any] = {}
    if "ServerSideEncryptionByDefault" in rule:
        converted["ApplyServerSideEncryptionByDefault"] = dict(rule["ServerSideEncryptionByDefault"])
    if "BucketKeyEnabled" in rule:
        converted["BucketKeyEnabled"] = _as_bool(rule["BucketKeyEnabled"])
    return converted


def _as_bool(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class ScheduledInvocationFailed(Exception):
    """A function a schedule invoked ended with an error (Lambda's FunctionError)."""


# The operators' command for caller mappings (README, "Mapping callers to cluster users").
CALLER_MAPPINGS_COMMAND = REPO_ROOT / "scripts" / "caller-mappings"


class LocalCloud:
    """moto + the template's resources + our handlers + the local API, as a context manager.

    ``parameter_overrides`` set template parameters (e.g. ``ClusterName``, ``ClusterUser``, ``SlurmBinDir``,
    ``PollMinSeconds``). ``head_node``, if given, is installed, serves the head-node instance and is shut down with
    the cloud; construct it with the Slurm environment (``LocalHeadNode(env=cluster.env())``).
    ``environments_per_function`` bounds the execution environments of each function without
    ReservedConcurrentExecutions (None: no bound; see :class:`~local_stack.lambda_runtime.LambdaRuntime`).
    """

    def __init__(
        self,
        template_path: Path | str,
        *,
        stack_name: str = "slurm-job-api-local",
        parameter_overrides: Mapping[str, str] | None = None,
        head_node: LocalHeadNode | None = None,
        principals: Mapping[str, Principal] = DEFAULT_PRINCIPALS,
        region: str = DEFAULT_REGION,
        schedule_period_seconds: float | None = None,
        environments_per_function: int | None = DEFAULT_ENVIRONMENTS_PER_FUNCTION,
        caller_mappings: Mapping[str, str] | None = None,
    ) -> None:
        self._environments_per_function = environments_per_function
        self.model = TemplateModel(
            template_path, stack_name=stack_name, parameter_overrides=parameter_overrides, region=region
        )
        self.region = region
        self.head_node = head_node
        self._principals = principals
        # principal → cluster user, written at start as an operator writes them (CallerMapping table); by default
        # LOCAL_DEVELOPER, LOCAL_OTHER and the caller of the events/ run as ClusterUser, and LOCAL_UNMAPPED is
        # refused.
        cluster_user = self.model.parameters.get("ClusterUser")
        if caller_mappings is None and cluster_user:
            callers = (LOCAL_DEVELOPER.arn, LOCAL_OTHER.arn, EVENTS_CALLER_ARN)
            caller_mappings = dict.fromkeys(callers, str(cluster_user))
        self.caller_mappings = dict(caller_mappings or {})
        self._server: ThreadedMotoServer | None = None
        self._endpoint_url: str | None = None
        self._saved_moto_port: str | None = None
        self._saved_moto_config: dict[str, Any] | None = None
        self._saved_werkzeug_level: int | None = None
        self._runtime: LambdaRuntime | None = None
        self.event_delivery: LocalEventDelivery | None = None
        self.stream_delivery: LocalStreamDelivery | None = None
        self._api: LocalApiGateway | None = None
        self._schedule_period_seconds = schedule_period_seconds
        self.scheduler: LocalScheduler | None = None
        self._head_node_installed = False
        self._clients: dict[str, BaseClient] = {}  # each service's default client, made once (thread-safe)
        self._clients_lock = threading.Lock()
        self.head_node_instance_id: str | None = None
        self._created_state_machines: list[str] = []

    # ----- lifecycle --------------------------------------------------------------------------------------------

    def __enter__(self) -> "LocalCloud":
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start moto, create the resources, install the runtime and the head node, serve the API."""
        if self._server is not None:
            raise RuntimeError("this LocalCloud is already started")
        try:
            moto_fixes.install()
            moto_speedups.install()
            self._start_moto()
            self._runtime = LambdaRuntime(
                self.model, endpoint_url=self.endpoint_url, environments_per_function=self._environments_per_function
            )
            self._runtime.install()
            self.event_delivery = LocalEventDelivery(self._invoke_event_target)
            self.event_delivery.install()
            self._create_resources()
            self._write_caller_mappings()
            self.stream_delivery = self._stream_delivery()
            self.stream_delivery.start()
            if self.head_node is not None:
                self.head_node_instance_id = self._create_head_node_instance()
                self.head_node.install()
                self._head_node_installed = True
                self.head_node.register_instance(self.head_node_instance_id)
            if self.model.apis:
                self._api = LocalApiGateway(self.model, self._runtime, principals=self._principals)
                self._api.start()
            self.scheduler = LocalScheduler(
                [schedule for function in self.model.functions.values() for schedule in function.schedules],
                self._invoke_scheduled,
                period_seconds=self._schedule_period_seconds,
            )
            self.scheduler.start()
        except BaseException:
            self.stop()
            raise

    def _invoke_scheduled(self, function_logical_id: str, event: Any) -> None:
        """A schedule's invocation (asynchronous, as EventBridge Scheduler's: retried while throttled); a function
        error or a drop raises (the scheduler counts it as failed)."""
        result = self._runtime.invoke_async(function_logical_id, event)
        if result is None:
            raise ScheduledInvocationFailed(f"{function_logical_id}: throttled until dropped")
        if result.function_error is not None:
            raise ScheduledInvocationFailed(f"{function_logical_id}: {result.payload[:2000].decode(errors='replace')}")

    def _invoke_event_target(self, function_arn: str, event: Any) -> str | None:
        """A rule's Lambda target: the function's error type, or None."""
        function = next((f for f in self.model.functions.values() if f.arn == function_arn), None)
        if function is None:
            return "ResourceNotFoundException"
        result = self._runtime.invoke_async(function.logical_id, event)  # EventBridge invokes Lambda asynchronously
        if result is None:
            return "TooManyRequestsException"
        return _function_error(result)

    def _stream_delivery(self) -> LocalStreamDelivery:
        """The template's DynamoDB stream event sources, each with its table's stream."""
        dynamodb = self.client("dynamodb")
        sources = [
            (source, dynamodb.describe_table(TableName=self.model.tables[source.table_logical_id].name)["Table"])
            for function in self.model.functions.values()
            for source in function.stream_sources
        ]
        for source, table in sources:
            if "LatestStreamArn" not in table:
                raise TemplateError(
                    f"Resources.{source.function_logical_id}.Properties.Events.{source.event_name}: table "
                    f"{source.table_logical_id} has no StreamSpecification"
                )
        return LocalStreamDelivery(
            [(source, table["LatestStreamArn"]) for source, table in sources],
            lambda: self._new_client("dynamodbstreams"),
            self._invoke_function,
            region=self.region,
        )

    def _invoke_function(self, function_logical_id: str, event: Any) -> tuple[str | None, Any]:
        """A function invoked synchronously (a rule's target, a stream's function): (its error type or None, its
        answer)."""
        result = self._runtime.invoke(function_logical_id, event)
        return _function_error(result), json.loads(result.payload) if result.payload else None

    def stop(self) -> None:
        """Stop everything started, reset moto and restore the environment; safe to call more than once."""
        if self._runtime is not None:
            self._runtime.stop_retrying()  # the deliveries that wait to be tried again end now
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self.stream_delivery is not None:
            self.stream_delivery.stop()
            self.stream_delivery = None
        if self.event_delivery is not None:
            self.event_delivery.uninstall()
            self.event_delivery = None
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._server is not None and self._created_state_machines:
            self._stop_executions()
        if self.head_node is not None and self._head_node_installed:
            self.head_node.shutdown()
            self._head_node_installed = False
        if self._runtime is not None:
            self._runtime.uninstall()
        if self._server is not None:
            requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30)
            self._server.stop()
            self._server = None
        with self._clients_lock:
            self._clients.clear()
        if self._saved_werkzeug_level is not None:
            _WERKZEUG_LOGGER.setLevel(self._saved_werkzeug_level)
            self._saved_werkzeug_level = None
        _ASL_EVAL_LOGGER.removeFilter(_not_a_missing_json_path)
        if self._saved_moto_config is not None:
            default_user_config.clear()
            default_user_config.update(self._saved_moto_config)
            self._saved_moto_config = None
        if self._endpoint_url is not None:
            if self._saved_moto_port is None:
                os.environ.pop("MOTO_PORT", None)
            else:
                os.environ["MOTO_PORT"] = self._saved_moto_port
            self._endpoint_url = None

    def _start_moto(self) -> None:
        self._saved_moto_config = copy.deepcopy(default_user_config)
        # moto's server logs every request through werkzeug at INFO; keep the cloud's own log readable.
        self._saved_werkzeug_level = _WERKZEUG_LOGGER.level
        _WERKZEUG_LOGGER.setLevel(logging.WARNING)
        _ASL_EVAL_LOGGER.addFilter(_not_a_missing_json_path)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self._endpoint_url = f"http://{host}:{port}"
        # moto's Step Functions interpreter calls Lambda and the SDK integrations at localhost:$MOTO_PORT.
        self._saved_moto_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(port)
        response = requests.post(f"{self._endpoint_url}/moto-api/config", json=MOTO_CONFIG, timeout=30)
        response.raise_for_status()

    def _stop_executions(self) -> None:
        """Stop running executions, so that no interpreter thread calls the handlers after the cloud is gone."""
        stepfunctions = self.client("stepfunctions")
        for arn in self._created_state_machines:
            running = stepfunctions.list_executions(stateMachineArn=arn, statusFilter="RUNNING")
            for execution in running["executions"]:
                stepfunctions.stop_execution(executionArn=execution["executionArn"], cause="local cloud stopped")

    # ----- clients and names ------------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """moto's URL, e.g. ``http://127.0.0.1:40123``."""
        if self._endpoint_url is None:
            raise RuntimeError("the local cloud is not started")
        return self._endpoint_url

    def session(self) -> boto3.Session:
        """A boto3 session with the local placeholder credentials and region."""
        return boto3.Session(
            aws_access_key_id=LOCAL_ACCESS_KEY_ID,
            aws_secret_access_key=LOCAL_SECRET_ACCESS_KEY,
            region_name=self.region,
        )

    def client(self, service: str, **kwargs: Any) -> BaseClient:
        """A boto3 client for ``service`` pointing at the local cloud. Without ``kwargs`` it is the service's one
        shared client: making a client loads its service model from disk (~20 ms of CPU), and tests ask for one at
        every step."""
        if kwargs:
            return self._new_client(service, **kwargs)
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = self._new_client(service)
            return self._clients[service]

    def _new_client(self, service: str, **kwargs: Any) -> BaseClient:
        kwargs.setdefault("config", Config(retries={"max_attempts": 2, "mode": "standard"}))
        return self.session().client(service, endpoint_url=self.endpoint_url, **kwargs)  # type: ignore[call-overload]

    @property
    def runtime(self) -> LambdaRuntime:
        if self._runtime is None:
            raise RuntimeError("the local cloud is not started")
        return self._runtime

    @property
    def api_url(self) -> str:
        """The local API's stage URL, e.g. ``http://127.0.0.1:41234/v1``."""
        if self._api is None:
            raise RuntimeError("the local API is not running (cloud not started, or the template has no Api)")
        return self._api.url

    def api_client(self, principal: Principal = LOCAL_DEVELOPER) -> ApiClient:
        """A SigV4-signing client of the local API for ``principal``."""
        return ApiClient(self.api_url, principal, self.region)

    @property
    def bucket_name(self) -> str:
        return self.model.bucket.name

    @property
    def table_name(self) -> str:
        return self.model.table.name

    @property
    def state_machine_arn(self) -> str:
        return self.model.state_machine.arn

    @property
    def function_names(self) -> dict[str, str]:
        """Function logical id -> function name."""
        return {logical_id: function.name for logical_id, function in self.model.functions.items()}

    # ----- resources --------------------------------------------------------------------------------------------

    def _create_resources(self) -> None:
        self._create_roles()
        for bucket in self.model.buckets.values():
            self._create_bucket(bucket.name, bucket.encryption_rules, bucket.public_access_block)
        for table in self.model.tables.values():
            self._create_table(table)
        lambda_client = self.client("lambda")
        for function in self.model.functions.values():
            lambda_client.create_function(
                FunctionName=function.name,
                Runtime=function.runtime,
                Role=function.role_arn,
                Handler=function.handler,
                Code={"ZipFile": _placeholder_zip(function.code_uri)},
                Timeout=function.timeout,
                MemorySize=function.memory_size,
                Environment={"Variables": dict(function.environment)},
            )
        self._create_event_rules()
        stepfunctions = self.client("stepfunctions")
        for machine in self.model.state_machines.values():
            stepfunctions.create_state_machine(
                name=machine.name,
                definition=json.dumps(machine.definition),
                roleArn=machine.role_arn,
                type=machine.type,
            )
            self._created_state_machines.append(machine.arn)
        ignored = sorted(
            f"{logical_id} ({kind})"
            for logical_id, kind in self.model.resource_types().items()
            if logical_id not in self.model.physical
        )
        if ignored:
            logger.info("resources the local cloud does not create: %s", ", ".join(ignored))

    def _create_event_rules(self) -> None:
        events = self.client("events")
        for bus_name in self.model.event_buses.values():
            events.create_event_bus(Name=bus_name)
        for function in self.model.functions.values():
            for rule in function.event_rules:
                events.put_rule(
                    Name=rule.rule_name,
                    EventBusName=rule.event_bus_name,
                    EventPattern=json.dumps(rule.pattern),
                    State="ENABLED" if rule.enabled else "DISABLED",
                )
                events.put_targets(
                    Rule=rule.rule_name,
                    EventBusName=rule.event_bus_name,
                    Targets=[{"Id": function.logical_id, "Arn": function.arn}],
                )

    def _create_roles(self) -> None:
        arns = {
            resource.attributes["Arn"] for resource in self.model.physical.values() if resource.type == "AWS::IAM::Role"
        }
        arns |= {function.role_arn for function in self.model.functions.values()}
        arns |= {machine.role_arn for machine in self.model.state_machines.values()}
        iam = self.client("iam")
        for arn in sorted(arns):
            path_and_name = arn.split(":role", 1)[1]
            path, _, name = path_and_name.rpartition("/")
            iam.create_role(RoleName=name, Path=f"{path}/", AssumeRolePolicyDocument=json.dumps(_TRUST_POLICY))

    def _create_bucket(
        self, name: str, encryption_rules: tuple[Mapping[str, Any], ...], public_access_block: Mapping[str, Any] | None
    ) -> None:
        s3 = self.client("s3")
        if self.region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})
        if encryption_rules:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={"Rules": [_encryption_rule(rule) for rule in encryption_rules]},
            )
        if public_access_block:
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={key: _as_bool(value) for key, value in public_access_block.items()},
            )

    def _write_caller_mappings(self) -> None:
        """The local stack's caller mappings, written by the operators' own command (scripts/caller-mappings apply),
        which records each change."""
        if self.model.parameters.get("CallerMapping") != "table" or not self.caller_mappings:
            return
        done = subprocess.run(
            [str(CALLER_MAPPINGS_COMMAND), *self.caller_mappings_arguments(), "apply", "--no-verify", "-"],
            input=json.dumps(self.caller_mappings),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={**os.environ, **self.operator_environment()},
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/caller-mappings apply failed: {done.stderr.strip()}")

    def caller_mappings_arguments(self) -> list[str]:
        """The options of scripts/caller-mappings that reach this cloud's CallerMappingsTable."""
        return [
            "--table-name",
            self.model.caller_mappings_table.name,
            "--region",
            self.region,
            "--endpoint-url",
            self.endpoint_url,
        ]

    def operator_environment(self) -> dict[str, str]:
        """Credentials for the local cloud (placeholders moto accepts), as an operator's shell would have them."""
        return {
            "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "PYTHON": sys.executable,
        }

    def _create_table(self, table: TableSpec) -> None:
        dynamodb = self.client("dynamodb")
        arguments: dict[str, Any] = {
            "TableName": table.name,
            "KeySchema": list(table.key_schema),
            "AttributeDefinitions": list(table.attribute_definitions),
            "BillingMode": table.billing_mode,
        }
        if table.sse_enabled:
            arguments["SSESpecification"] = {"Enabled": True}  # the AWS managed key, as SSEEnabled without a key
        if table.stream_view_type:
            arguments["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": table.stream_view_type}
        if table.global_secondary_indexes:
            arguments["GlobalSecondaryIndexes"] = [dict(index) for index in table.global_secondary_indexes]
        if table.billing_mode == "PROVISIONED":
            if table.provisioned_throughput is None:
                raise TemplateError(f"Resources.{table.logical_id}: PROVISIONED billing needs ProvisionedThroughput")
            arguments["ProvisionedThroughput"] = {
                key: int(value) for key, value in table.provisioned_throughput.items()
            }
        dynamodb.create_table(**arguments)
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=table.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
        if table.point_in_time_recovery:
            dynamodb.update_continuous_backups(
                TableName=table.name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )

    def _create_head_node_instance(self) -> str:
        """An EC2 instance tagged as the head node of the template's ClusterName; returns its id."""
        cluster_name = self.model.parameters.get(CLUSTER_NAME_PARAMETER)
        if not isinstance(cluster_name, str) or not cluster_name:
            raise TemplateError(f"the template needs a {CLUSTER_NAME_PARAMETER} parameter to register a head node")
        ec2 = self.client("ec2")
        image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        reservation = ec2.run_instances(
            ImageId=image_id,
            InstanceType=HEAD_NODE_INSTANCE_TYPE,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "Name", "Value": "HeadNode"},
                        {"Key": "parallelcluster:cluster-name", "Value": cluster_name},
                        {"Key": "parallelcluster:node-type", "Value": "HeadNode"},
                    ],
                }
            ],
        )
        return reservation["Instances"][0]["InstanceId"]


def _function_error(result: InvocationResult) -> str | None:
    """The invocation's error type (the handler's errorType, else Lambda's FunctionError), or None."""
    if result.function_error is None:
        return None
    answer = json.loads(result.payload) if result.payload else None
    error = answer.get("errorType") if isinstance(answer, dict) else None
    return str(error or result.function_error)
