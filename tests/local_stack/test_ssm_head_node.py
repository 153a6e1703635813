"""The local head node: SSM commands sent through a real moto server over HTTP run on this machine."""

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from local_stack.ssm_head_node import (
    AGENT_PATH,
    STDERR_CONTENT_LIMIT,
    STDOUT_CONTENT_LIMIT,
    UNSUPPORTED_DOCUMENT_DETAILS,
    LocalHeadNode,
)

REGION = "us-east-1"
CLUSTER_NAME = "test-cluster"
TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}
ISO8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SLURM_CONF = "/etc/slurm-test/slurm.conf"


@dataclass(frozen=True)
class Instances:
    head_node: str
    other: str


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_client(endpoint: str, service: str, **config: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # No retries: the tests must see every ThrottlingException the head node injects.
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


@pytest.fixture(scope="module")
def ssm(endpoint: str) -> Any:
    return make_client(endpoint, "ssm", max_pool_connections=32)


@pytest.fixture(scope="module")
def instances(endpoint: str) -> Instances:
    ec2 = make_client(endpoint, "ec2")

    def run_instance(node_type: str) -> str:
        tags = [
            {"Key": "parallelcluster:cluster-name", "Value": CLUSTER_NAME},
            {"Key": "parallelcluster:node-type", "Value": node_type},
        ]
        response = ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
        return response["Instances"][0]["InstanceId"]

    return Instances(head_node=run_instance("HeadNode"), other=run_instance("Compute"))


@pytest.fixture
def make_head_node(instances: Instances) -> Iterator[Callable[..., LocalHeadNode]]:
    nodes: list[LocalHeadNode] = []

    def make(**options: Any) -> LocalHeadNode:
        node = LocalHeadNode(env={"SLURM_CONF": SLURM_CONF}, **options)
        node.register_instance(instances.head_node)
        node.install()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.shutdown()


@pytest.fixture
def head_node(make_head_node: Callable[..., LocalHeadNode]) -> LocalHeadNode:
    return make_head_node()


def send(ssm: Any, instance_id: str, commands: list[str], **parameters: list[str]) -> str:
    response = ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": commands, **parameters},
    )
    return response["Command"]["CommandId"]


def get_invocation(ssm: Any, command_id: str, instance_id: str) -> dict[str, Any] | None:
    """The invocation, or None while SSM still answers InvocationDoesNotExist."""
    try:
        return ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ClientError as error:
        if error.response["Error"]["Code"] == "InvocationDoesNotExist":
            return None
        raise


def wait_for(ssm: Any, command_id: str, instance_id: str, statuses: set[str], timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        invocation = get_invocation(ssm, command_id, instance_id)
        if invocation is not None and invocation["Status"] in statuses:
            return invocation
        time.sleep(0.02)
    pytest.fail(f"command {command_id} did not reach {statuses} within {timeout} s")


def wait_until_ended(ssm: Any, command_id: str, instance_id: str, timeout: float = 10) -> dict[str, Any]:
    return wait_for(ssm, command_id, instance_id, TERMINAL, timeout)


def process_running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pid: int, timeout: float = 3) -> bool:
    deadline = time.monotonic() + timeout
    while process_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for_file(path: Path, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            pytest.fail(f"{path} was not written")
        time.sleep(0.02)
    return path.read_text().strip()


def test_runs_a_real_command_and_returns_its_output(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    command_id = send(ssm, instances.head_node, ["echo hello from $AWS_SSM_INSTANCE_ID", "echo oops >&2"])

    invocation = wait_until_ended(ssm, command_id, instances.head_node)

    assert invocation["Status"] == "Success"
    assert invocation["StatusDetails"] == "Success"
    assert invocation["ResponseCode"] == 0
    assert invocation["StandardOutputContent"] == f"hello from {instances.head_node}\n"
    assert invocation["StandardErrorContent"] == "oops\n"
    assert invocation["PluginName"] == "aws:runShellScript"
    assert ISO8601.match(invocation["ExecutionStartDateTime"])
    assert ISO8601.match(invocation["ExecutionEndDateTime"])
    assert re.match(r"^PT\d+\.\d{3}S$", invocation["ExecutionElapsedTime"])
    [run] = head_node.commands_run
    assert (run.command_id, run.document_name, run.status, run.response_code) == (
        command_id,
        "AWS-RunShellScript",
        "Success",
        0,
    )
    assert run.started_at is not None and run.started_at <= run.ended_at
    assert run.elapsed_seconds is not None and run.elapsed_seconds >= 0


def test_commands_run_the_way_the_agent_runs_them(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    command_id = send(
        ssm,
        instances.head_node,
        [
            'echo "path=$PATH"',
            'echo "home=$HOME lang=$LANG slurm_conf=$SLURM_CONF region=$AWS_SSM_REGION_NAME"',
            'echo "leak=${PYTEST_CURRENT_TEST:-none}"',
            'echo "uid=$(id -u)"',
            'echo "cwd=$(pwd) mode=$(stat -c %a .) script_mode=$(stat -c %a "$0")"',
            'echo "stdin=$(readlink /proc/self/fd/0)"',
            "echo \"session=$(awk '{print $6}' /proc/$$/stat) pid=$$\"",
        ],
    )

    output = wait_until_ended(ssm, command_id, instances.head_node)["StandardOutputContent"]

    lines = dict(
        line.split("=", 1) for line in output.splitlines() if not line.startswith(("home=", "cwd=", "session="))
    )
    assert lines["path"] == AGENT_PATH
    assert lines["leak"] == "none", "nothing leaks from this process's environment"
    assert lines["uid"] == str(os.getuid())
    assert lines["stdin"] == "/dev/null"
    session, pid = re.search(r"^session=(\d+) pid=(\d+)$", output, re.M).groups()
    assert session == pid, "the script leads its own session and process group"
    assert f"home=/root lang=C.UTF-8 slurm_conf={SLURM_CONF} region={REGION}\n" in output
    cwd, mode, script_mode = re.search(r"^cwd=(\S+) mode=(\d+) script_mode=(\d+)$", output, re.M).groups()
    assert (mode, script_mode) == ("700", "700")
    assert not Path(cwd).exists(), "the private temporary directory is removed after the command"


def test_working_directory_parameter(ssm: Any, instances: Instances, head_node: LocalHeadNode, tmp_path: Path) -> None:
    command_id = send(ssm, instances.head_node, ["pwd"], workingDirectory=[str(tmp_path)])

    assert wait_until_ended(ssm, command_id, instances.head_node)["StandardOutputContent"] == f"{tmp_path}\n"


def test_non_zero_exit_is_failed(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    command_id = send(ssm, instances.head_node, ["echo partial", "exit 3"])

    invocation = wait_until_ended(ssm, command_id, instances.head_node)

    assert (invocation["Status"], invocation["StatusDetails"], invocation["ResponseCode"]) == ("Failed", "Failed", 3)
    assert invocation["StandardOutputContent"] == "partial\n"
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Failed"


def test_status_goes_pending_then_in_progress_then_success(
    ssm: Any, instances: Instances, make_head_node: Callable[..., LocalHeadNode]
) -> None:
    make_head_node(max_workers=1)
    blocker = send(ssm, instances.head_node, ["sleep 0.6"])
    response = ssm.send_command(
        InstanceIds=[instances.head_node],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["sleep 0.4", "echo done"]},
    )
    command_id = response["Command"]["CommandId"]
    assert response["Command"]["Status"] == "Pending"

    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not seen or seen[-1]["Status"] not in TERMINAL):
        invocation = get_invocation(ssm, command_id, instances.head_node)
        if invocation is not None and (not seen or invocation["Status"] != seen[-1]["Status"]):
            seen.append(invocation)
        time.sleep(0.02)

    assert [invocation["Status"] for invocation in seen] == ["Pending", "InProgress", "Success"]
    pending, in_progress, success = seen
    assert (pending["ResponseCode"], pending["ExecutionStartDateTime"], pending["StandardOutputContent"]) == (
        -1,
        "",
        "",
    )
    assert in_progress["ResponseCode"] == -1
    assert ISO8601.match(in_progress["ExecutionStartDateTime"])
    assert in_progress["ExecutionEndDateTime"] == ""
    assert in_progress["StandardOutputContent"] == "", "output is empty until the command ends"
    assert (success["ResponseCode"], success["StandardOutputContent"]) == (0, "done\n")
    assert wait_until_ended(ssm, blocker, instances.head_node)["Status"] == "Success"


def test_invocation_does_not_exist_right_after_send(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    command_id = send(ssm, instances.head_node, ["true"])

    with pytest.raises(ClientError) as raised:
        ssm.get_command_invocation(CommandId=command_id, InstanceId=instances.head_node)

    assert raised.value.response["Error"]["Code"] == "InvocationDoesNotExist"
    assert wait_until_ended(ssm, command_id, instances.head_node)["Status"] == "Success"


def test_output_is_truncated_like_aws(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    command_id = send(
        ssm,
        instances.head_node,
        ["python3 -c \"print('é' * 30000, end='')\"", "head -c 10000 /dev/zero | tr '\\0' e >&2"],
    )

    invocation = wait_until_ended(ssm, command_id, instances.head_node)

    assert invocation["StandardOutputContent"] == "é" * STDOUT_CONTENT_LIMIT
    assert invocation["StandardErrorContent"] == "e" * STDERR_CONTENT_LIMIT


def test_execution_timeout_kills_the_process_group(
    ssm: Any, instances: Instances, head_node: LocalHeadNode, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    command_id = send(
        ssm,
        instances.head_node,
        [f"sleep 60 & echo $! > {pid_file}", "echo started", "wait"],
        executionTimeout=["1"],
    )

    invocation = wait_until_ended(ssm, command_id, instances.head_node)

    assert (invocation["Status"], invocation["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
    assert invocation["ResponseCode"] == 137
    assert invocation["StandardOutputContent"] == "started\n"
    assert wait_until_gone(int(pid_file.read_text()))
    [run] = head_node.commands_run
    assert run.elapsed_seconds is not None and 1 <= run.elapsed_seconds < 30  # killed at 1 s, long before 60 s
    assert run.pid is not None and not process_running(run.pid)


def test_cancel_command_kills_a_running_command(
    ssm: Any, instances: Instances, head_node: LocalHeadNode, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    command_id = send(ssm, instances.head_node, [f"sleep 60 & echo $! > {pid_file}", "wait"])
    child = int(wait_for_file(pid_file))
    assert wait_for(ssm, command_id, instances.head_node, {"InProgress"})["ResponseCode"] == -1

    ssm.cancel_command(CommandId=command_id)

    invocation = wait_until_ended(ssm, command_id, instances.head_node)
    assert (invocation["Status"], invocation["ResponseCode"]) == ("Cancelled", 137)
    assert wait_until_gone(child)
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Cancelled"


def test_cancel_command_before_delivery(
    ssm: Any, instances: Instances, head_node: LocalHeadNode, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    head_node.faults.unreachable = True
    command_id = send(ssm, instances.head_node, [f"touch {marker}"])

    ssm.cancel_command(CommandId=command_id, InstanceIds=[instances.head_node])
    head_node.faults.unreachable = False

    assert wait_until_ended(ssm, command_id, instances.head_node)["Status"] == "Cancelled"
    time.sleep(0.2)
    assert not marker.exists()
    [run] = head_node.commands_run
    assert (run.status, run.pid, run.started_at) == ("Cancelled", None, None)


def test_throttling_fault_raises_throttling_exception_at_the_configured_rate(
    ssm: Any, instances: Instances, head_node: LocalHeadNode
) -> None:
    done = send(ssm, instances.head_node, ["true"])
    wait_until_ended(ssm, done, instances.head_node)
    commands_before = len(ssm.list_commands()["Commands"])
    head_node.faults.throttle_rate = 0.25

    errors: list[ClientError] = []
    sent = 0
    for _ in range(40):
        try:
            send(ssm, instances.head_node, ["true"])
            sent += 1
        except ClientError as error:
            errors.append(error)
    throttled_sends = len(errors)
    for _ in range(160):
        try:
            ssm.get_command_invocation(CommandId=done, InstanceId=instances.head_node)
        except ClientError as error:
            errors.append(error)

    assert {(e.response["Error"]["Code"], e.response["Error"]["Message"]) for e in errors} == {
        ("ThrottlingException", "Rate exceeded")
    }
    assert {e.response["ResponseMetadata"]["HTTPStatusCode"] for e in errors} == {400}
    assert 0.15 <= len(errors) / 200 <= 0.35
    counters = head_node.faults.counters()
    assert counters.throttled_send_command == throttled_sends
    assert counters.throttled_get_command_invocation == len(errors) - throttled_sends
    assert len(ssm.list_commands()["Commands"]) == commands_before + sent, "a throttled send creates no command"

    head_node.faults.throttle_rate = 0.0
    for _ in range(20):
        ssm.get_command_invocation(CommandId=done, InstanceId=instances.head_node)


def test_unreachable_instance_delays_delivery_then_times_out(
    endpoint: str, instances: Instances, head_node: LocalHeadNode, tmp_path: Path
) -> None:
    # AWS's minimum TimeoutSeconds is 30; skip botocore's check to keep the test short.
    ssm = make_client(endpoint, "ssm", parameter_validation=False)
    marker = tmp_path / "ran"
    head_node.faults.unreachable = True

    short = ssm.send_command(
        InstanceIds=[instances.head_node],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"]},
        TimeoutSeconds=1,
    )["Command"]["CommandId"]
    patient = send(ssm, instances.head_node, [f"touch {marker}", "echo delivered"])

    assert wait_for(ssm, short, instances.head_node, {"Pending"})["StatusDetails"] == "Pending"
    timed_out = wait_until_ended(ssm, short, instances.head_node, timeout=5)
    assert (timed_out["Status"], timed_out["StatusDetails"], timed_out["ResponseCode"]) == (
        "TimedOut",
        "DeliveryTimedOut",
        -1,
    )
    assert ssm.list_commands(CommandId=short)["Commands"][0]["DeliveryTimedOutCount"] == 1
    assert get_invocation(ssm, patient, instances.head_node)["Status"] == "Pending"
    assert not marker.exists()

    head_node.faults.unreachable = False

    delivered = wait_until_ended(ssm, patient, instances.head_node)
    assert (delivered["Status"], delivered["StandardOutputContent"]) == ("Success", "delivered\n")
    assert marker.exists()
    counters = head_node.faults.counters()
    assert (counters.held_while_unreachable, counters.delivery_timeouts) == (2, 1)


def test_twenty_concurrent_commands_all_complete(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    def run(index: int) -> tuple[int, dict[str, Any]]:
        command_id = send(ssm, instances.head_node, [f"sleep 0.3; echo task-{index}; echo err-{index} >&2"])
        return index, wait_until_ended(ssm, command_id, instances.head_node)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(run, range(20)))

    for index, invocation in results:
        assert invocation["Status"] == "Success"
        assert invocation["StandardOutputContent"] == f"task-{index}\n"
        assert invocation["StandardErrorContent"] == f"err-{index}\n"
    runs = head_node.commands_run
    assert len(runs) == 20
    latest_start = max(run.started_at for run in runs if run.started_at)
    assert sum(run.ended_at > latest_start for run in runs) > 1, "commands ran at the same time"


def test_unregistered_instance_keeps_moto_behaviour(
    ssm: Any, instances: Instances, head_node: LocalHeadNode, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    response = ssm.send_command(
        InstanceIds=[instances.other], DocumentName="AWS-RunShellScript", Parameters={"commands": [f"touch {marker}"]}
    )
    command_id = response["Command"]["CommandId"]

    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instances.other)

    assert response["Command"]["Status"] == "Success"
    assert (invocation["Status"], invocation["ResponseCode"], invocation["StandardOutputContent"]) == ("Success", 0, "")
    time.sleep(0.2)
    assert not marker.exists()
    assert head_node.commands_run == ()


def test_unknown_document_fails_with_a_clear_status(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    command_id = ssm.send_command(
        InstanceIds=[instances.head_node],
        DocumentName="AWS-RunPowerShellScript",
        Parameters={"commands": ["Get-Date"]},
    )["Command"]["CommandId"]

    invocation = wait_until_ended(ssm, command_id, instances.head_node)

    assert (invocation["Status"], invocation["StatusDetails"]) == ("Failed", UNSUPPORTED_DOCUMENT_DETAILS)
    assert "AWS-RunPowerShellScript" in invocation["StandardErrorContent"]


def test_invalid_parameters_are_refused(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    commands_before = len(ssm.list_commands()["Commands"])

    with pytest.raises(ClientError) as raised:
        send(ssm, instances.head_node, ["true"], executionTimeout=["0"])

    assert raised.value.response["Error"]["Code"] == "InvalidParameters"
    assert len(ssm.list_commands()["Commands"]) == commands_before


def test_targets_by_tag_and_list_command_invocations(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    command_id = ssm.send_command(
        Targets=[
            {"Key": "tag:parallelcluster:cluster-name", "Values": [CLUSTER_NAME]},
            {"Key": "tag:parallelcluster:node-type", "Values": ["HeadNode"]},
        ],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["echo hi", "echo bad >&2"]},
    )["Command"]["CommandId"]
    wait_until_ended(ssm, command_id, instances.head_node)

    [entry] = ssm.list_command_invocations(CommandId=command_id, Details=True)["CommandInvocations"]
    [command] = ssm.list_commands(CommandId=command_id)["Commands"]

    assert (entry["InstanceId"], entry["Status"]) == (instances.head_node, "Success")
    [plugin] = entry["CommandPlugins"]
    assert (plugin["Name"], plugin["ResponseCode"]) == ("aws:runShellScript", 0)
    assert plugin["Output"] == "hi\n\n----------ERROR-------\nbad\n"
    assert plugin["ResponseStartDateTime"] <= plugin["ResponseFinishDateTime"]
    assert (command["Status"], command["CompletedCount"], command["ErrorCount"]) == ("Success", 1, 0)


def test_install_is_idempotent_exclusive_and_undone_by_shutdown(ssm: Any, instances: Instances, tmp_path: Path) -> None:
    first = LocalHeadNode()
    first.register_instance(instances.head_node)
    first.install()
    first.install()
    second = LocalHeadNode()
    try:
        with pytest.raises(RuntimeError, match="another LocalHeadNode"):
            second.install()
    finally:
        first.shutdown()

    marker = tmp_path / "ran"
    command_id = send(ssm, instances.head_node, [f"touch {marker}"])
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=instances.head_node)["Status"] == "Success"
    time.sleep(0.2)
    assert not marker.exists(), "after shutdown moto's behaviour is back"
    with pytest.raises(RuntimeError, match="shut down"):
        first.install()
    second.install()
    second.shutdown()


def test_shutdown_kills_running_commands(
    ssm: Any, instances: Instances, make_head_node: Callable[..., LocalHeadNode], tmp_path: Path
) -> None:
    node = make_head_node()
    pid_file = tmp_path / "child.pid"
    send(ssm, instances.head_node, [f"sleep 60 & echo $! > {pid_file}", "wait"])
    child = int(wait_for_file(pid_file))

    node.shutdown()

    assert wait_until_gone(child)
    [run] = node.commands_run
    assert run.status == "Cancelled"


def test_faults_are_thread_safe_to_set_while_commands_run(
    ssm: Any, instances: Instances, head_node: LocalHeadNode
) -> None:
    stop = threading.Event()

    def flap() -> None:
        while not stop.is_set():
            head_node.faults.unreachable = not head_node.faults.unreachable
            time.sleep(0.01)
        head_node.faults.unreachable = False

    flapper = threading.Thread(target=flap)
    flapper.start()
    try:
        command_ids = [send(ssm, instances.head_node, [f"echo {index}"]) for index in range(10)]
    finally:
        stop.set()
        flapper.join()

    outputs = [wait_until_ended(ssm, command_id, instances.head_node) for command_id in command_ids]
    assert [invocation["StandardOutputContent"] for invocation in outputs] == [f"{index}\n" for index in range(10)]
