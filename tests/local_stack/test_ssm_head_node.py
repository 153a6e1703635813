"""The local head node: SSM commands sent through a real moto server over HTTP run on this machine."""

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.slurm_cluster import SlurmCluster, checkout_user_name, ensure_cluster_user
from local_stack.ssm_head_node import (
    AGENT_PATH,
    STDERR_CONTENT_LIMIT,
    STDOUT_CONTENT_LIMIT,
    UNSUPPORTED_DOCUMENT_DETAILS,
    LocalHeadNode,
)
from slurm_job_api.head_node import HeadNode
from slurm_job_api.head_node_program import TERMINAL_STATUSES
from slurm_job_api.head_node_protocol import StatusRequest, SweepJob, SweepReport, SweepRequest
from tests.support.http_files import FileServer
from tests.support.moto_server import moto_client, moto_server

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
    with moto_server() as url:
        yield url


def make_client(endpoint: str, service: str, **config: Any) -> Any:
    # No retries: the tests must see every ThrottlingException the head node injects.
    return moto_client(endpoint, service, retries={"total_max_attempts": 1}, **config)


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

    def make(slurm_conf: str = SLURM_CONF, **options: Any) -> LocalHeadNode:
        node = LocalHeadNode(env={"SLURM_CONF": slurm_conf}, **options)
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


def test_a_held_action_holds_only_its_own_commands(ssm: Any, instances: Instances, head_node: LocalHeadNode) -> None:
    def send_commented(comment: str, echo: str) -> str:
        parameters = {"commands": [f"echo {echo}"]}
        return ssm.send_command(
            InstanceIds=[instances.head_node], DocumentName="AWS-RunShellScript", Parameters=parameters, Comment=comment
        )["Command"]["CommandId"]

    head_node.faults.held_action = "sweep"
    try:
        held = send_commented("slurm-job-api sweep", "swept")
        other = send_commented("slurm-job-api status 0b6e4a52-58a8-4f36-9f2c-1d1c5e0e7a11", "polled")
        assert wait_until_ended(ssm, other, instances.head_node)["StandardOutputContent"] == "polled\n"
        assert wait_for(ssm, held, instances.head_node, {"Pending"})["Status"] == "Pending"
        time.sleep(0.5)
        assert get_invocation(ssm, held, instances.head_node)["Status"] == "Pending"
    finally:
        head_node.faults.held_action = None
    assert wait_until_ended(ssm, held, instances.head_node)["StandardOutputContent"] == "swept\n"
    assert head_node.faults.counters().held_by_action == 1


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


# -- the sweep action on a real Slurm cluster, through this head node -------------------------------------------------

SWEEP_PORT_BASE = 14817  # this module's own cluster (+0, +1, +2), shifted by $SLURM_JOB_API_PORT_OFFSET
SWEEP_USER = "sjapi-sweep"
SHORT_JOBS = 192


@pytest.fixture(scope="module")
def sweep_cluster() -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        pytest.skip("a real Slurm cluster needs root")
    state = Path(tempfile.mkdtemp(prefix="ssm-sweep-slurm-"))
    state.chmod(0o755)  # the cluster user reads slurm.conf
    cluster = SlurmCluster(state, accounting=True, port_base=SWEEP_PORT_BASE)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


def sbatch(cluster: SlurmCluster, user: pwd.struct_passwd, *options: str) -> str:
    done = subprocess.run(
        ["/usr/sbin/runuser", "-u", user.pw_name, "--", str(cluster.bin_dir / "sbatch"), "--parsable",
         "--chdir=/tmp", "--output=/dev/null", *options],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **cluster.env()},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip().split(";")[0]


def rpcs_of(cluster: SlurmCluster, user: str) -> int:
    """slurmctld's count of the RPCs `user` made since the last `sdiag --reset`."""
    shown = cluster.run("sdiag").stdout
    match = re.search(rf"^\s*{re.escape(user)}\s*\(\s*\d+\)\s+count:(\d+)", shown, re.MULTILINE)
    return int(match.group(1)) if match else 0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.5)


def test_a_sweep_of_200_real_jobs_answers_each_as_status_does_for_a_handful_of_rpcs(
    endpoint: str, ssm: Any, make_head_node: Callable[..., LocalHeadNode], sweep_cluster: SlurmCluster
) -> None:
    user = ensure_cluster_user(checkout_user_name(SWEEP_USER))
    make_head_node(slurm_conf=str(sweep_cluster.conf_path))
    node = HeadNode(
        cluster_name=CLUSTER_NAME, cluster_user=user.pw_name, slurm_bin_dir=str(sweep_cluster.bin_dir), ssm=ssm,
        ec2=make_client(endpoint, "ec2"),
    )  # fmt: skip
    node.forget_instance()  # another module's moto may have had another head node of this name
    # Jobs in every state: done, failed, running, held (pending), cancelled while pending, an array partly done.
    short = [sbatch(sweep_cluster, user, "--wrap=true") for _ in range(SHORT_JOBS)]
    failing = sbatch(sweep_cluster, user, "--wrap=exit 3")
    running = sbatch(sweep_cluster, user, "--wrap=sleep 600")
    held = sbatch(sweep_cluster, user, "--hold", "--wrap=true")
    cancelled = sbatch(sweep_cluster, user, "--hold", "--wrap=true")
    sweep_cluster.run("scancel", cancelled)
    array = sbatch(sweep_cluster, user, "--array=1-4", "--wrap=[ $SLURM_ARRAY_TASK_ID -le 2 ] || sleep 600")
    unknown = str(int(array) + 1000)
    asked = [*short, failing, running, held, cancelled, array, unknown]
    ended = [*short, failing, cancelled]

    def settled() -> bool:  # every job that ends has ended, in accounting too
        done = sweep_cluster.run(
            "sacct", "--noheader", "--parsable2", "--allocations", "--jobs=" + ",".join([*ended, array]),
            "--format=JobID,State",
        )  # fmt: skip
        states = dict(line.split("|") for line in done.stdout.splitlines())
        tasks_done = [states.get(f"{array}_{task}") for task in (1, 2)] == ["COMPLETED", "COMPLETED"]
        return tasks_done and all(states.get(job, "PENDING") not in ("PENDING", "RUNNING") for job in ended)

    wait_until(settled, "the short jobs did not end")
    files = FileServer()
    try:
        jobs = [SweepJob(slurm_job_id=job, is_array=job == array) for job in asked]
        sweep_cluster.run("sdiag", "--reset")
        started = time.monotonic()
        reply = node.run(SweepRequest(jobs=jobs, report_url=files.url("/sweep.json")), wait_seconds=120)
        sweep_seconds = time.monotonic() - started
        sweep_rpcs = rpcs_of(sweep_cluster, user.pw_name)
        report = SweepReport.model_validate_json(files.objects["/sweep.json"])
    finally:
        files.close()
    assert reply.reported == len(report.jobs) == len(asked) and reply.report_bytes == len(files.objects["/sweep.json"])
    assert reply.queries == {"squeue": 1, "sacct": 1, "scontrol": 1}  # scontrol: the unknown job only

    sweep_cluster.run("sdiag", "--reset")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(
                lambda job: node.run(
                    StatusRequest(slurm_job_id=job.slurm_job_id, is_array=job.is_array), wait_seconds=120
                ),
                jobs,
            )
        )
    status_seconds = time.monotonic() - started
    status_rpcs = rpcs_of(sweep_cluster, user.pw_name)
    print(
        f"sweep of {len(asked)} jobs: {sweep_rpcs} slurmctld RPCs, {sweep_seconds:.1f} s, report {reply.report_bytes} "
        f"bytes; {len(asked)} status actions (8 at a time): {status_rpcs} RPCs, {status_seconds:.1f} s"
    )
    assert [entry.model_dump() for entry in report.jobs] == [answer.model_dump() for answer in answers]
    by_id = {entry.slurm_job_id: entry for entry in report.jobs}
    assert {job: (by_id[job].status, by_id[job].exit_code) for job in (failing, running, held, cancelled)} == {
        failing: ("FAILED", 3),
        running: ("RUNNING", None),
        held: ("PENDING", None),
        cancelled: ("CANCELLED", 0),
    }
    assert by_id[array].array_task_counts == {"COMPLETED": 2, "RUNNING": 2}
    assert not by_id[unknown].found
    assert all(by_id[job].status == "COMPLETED" and by_id[job].source == "sacct" for job in short)
    assert all(entry.status in TERMINAL_STATUSES for entry in report.jobs if entry.slurm_job_id in ended)
    # One sweep: scontrol show config, squeue and one scontrol show job, a couple of RPCs each; status asks about each
    # job with the first two at least.
    assert sweep_rpcs <= 10 < 3 * len(asked) <= status_rpcs
