"""SSM transport: finding the head node by tags, waiting for the command, mapping every outcome to a named error."""

import base64
import io
import json
import os

import pytest
from botocore.exceptions import ClientError

from slurm_job_api import errors
from slurm_job_api import head_node_program as program
from slurm_job_api.head_node import (
    SAFETY_MARGIN_SECONDS,
    SSM_STDOUT_CHARACTERS,
    SSM_WAIT_CAP_SECONDS,
    CommandOutcome,
    HeadNode,
    ssm_wait_seconds,
)
from slurm_job_api.head_node_protocol import CancelRequest, ReadOutputReply, StatusReply, StatusRequest

STATUS = StatusRequest(job_id="j", slurm_job_id="5")
FOUND = {"slurmJobId": "5", "found": True, "source": "squeue", "accountingAvailable": False, "minJobAge": 300}


def client_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code}}, "Op")


class ScriptedSsm:
    """An SSM client whose GetCommandInvocation answers come from a script (a list of dicts or errors)."""

    def __init__(self, invocations, send_error=None):
        self.invocations = list(invocations)
        self.send_error = send_error
        self.sent = []

    def send_command(self, **kwargs):
        if self.send_error:
            raise self.send_error
        self.sent.append(kwargs)
        return {"Command": {"CommandId": "cmd-1"}}

    def get_command_invocation(self, **kwargs):
        answer = self.invocations.pop(0) if len(self.invocations) > 1 else self.invocations[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def reply(result=None, error=None):
    body = {"ok": error is None, "protocol": 1, "action": "status"}
    body["result" if error is None else "error"] = result if error is None else error
    return {"Status": "Success", "StandardOutputContent": json.dumps(body) + "\n", "StandardErrorContent": ""}


class TaggedEc2:
    """An EC2 client holding tagged instances; DescribeInstances applies its tag and state filters as EC2 does (every
    filter must match, any of a filter's values), and refuses filters it does not know rather than ignore them."""

    def __init__(self):
        self.instances = []

    def run_instance(self, tags: dict[str, str]) -> str:
        instance_id = f"i-{len(self.instances) + 1:017x}"
        self.instances.append({"InstanceId": instance_id, "State": {"Name": "running"}, "Tags": tags})
        return instance_id

    def terminate_all(self) -> None:
        for instance in self.instances:
            instance["State"]["Name"] = "terminated"

    def get_paginator(self, operation: str):
        assert operation == "describe_instances", operation
        return self

    def paginate(self, Filters):
        matching = [instance for instance in self.instances if all(self._matches(instance, f) for f in Filters)]
        yield {"Reservations": [{"Instances": [{"InstanceId": i["InstanceId"]}]} for i in matching]}

    @staticmethod
    def _matches(instance: dict, wanted: dict) -> bool:
        name = wanted["Name"]
        if name == "instance-state-name":
            return instance["State"]["Name"] in wanted["Values"]
        if name.startswith("tag:"):
            return instance["Tags"].get(name.removeprefix("tag:")) in wanted["Values"]
        raise AssertionError(f"filter {name} is not simulated")


@pytest.fixture(scope="module")
def ec2_client():
    return TaggedEc2()


@pytest.fixture
def ec2(ec2_client):
    """The module's EC2, with every instance terminated after each test (later tests still see them, terminated)."""
    yield ec2_client
    ec2_client.terminate_all()


def launch(ec2, cluster, node_type="HeadNode"):
    return ec2.run_instance({"parallelcluster:cluster-name": cluster, "parallelcluster:node-type": node_type})


def head_node(ec2, ssm, cluster="prod", clock=None):
    HeadNode._instance_cache.clear()
    clock = clock or FakeClock()
    return HeadNode(
        cluster_name=cluster,
        cluster_user="ec2-user",
        slurm_bin_dir="/opt/slurm/bin",
        ssm=ssm,
        ec2=ec2,
        clock=clock,
        sleep=clock.sleep,
    )


def test_head_node_is_found_by_its_cluster_tags_only(ec2):
    launch(ec2, "other")
    launch(ec2, "prod", node_type="Compute")
    wanted = launch(ec2, "prod")
    assert head_node(ec2, ScriptedSsm([])).instance_id() == wanted


def test_no_head_node_is_a_transient_error(ec2):
    launch(ec2, "prod", node_type="Compute")
    with pytest.raises(errors.HeadNodeNotFound):
        head_node(ec2, ScriptedSsm([])).instance_id()


def test_two_head_nodes_are_a_setup_error(ec2):
    launch(ec2, "prod")
    launch(ec2, "prod")
    with pytest.raises(errors.HeadNodeSetupError):
        head_node(ec2, ScriptedSsm([])).instance_id()


def test_waits_through_not_yet_existing_pending_and_in_progress(ec2):
    instance = launch(ec2, "prod")
    ssm = ScriptedSsm(
        [
            client_error("InvocationDoesNotExist"),
            {"Status": "Pending"},
            client_error("ThrottlingException", "Rate exceeded"),
            {"Status": "InProgress"},
            {"Status": "Delayed"},
            reply(FOUND),
        ]
    )
    answer = head_node(ec2, ssm).run(StatusRequest(job_id="j", slurm_job_id="5"), wait_seconds=30)
    assert answer == StatusReply.model_validate(FOUND)
    sent = ssm.sent[0]
    assert sent["InstanceIds"] == [instance] and sent["DocumentName"] == "AWS-RunShellScript"
    assert sent["Parameters"]["executionTimeout"] == ["600"] and sent["Comment"] == "slurm-job-api status j"


def test_never_finishing_command_is_unreachable_head_node(ec2):
    launch(ec2, "prod")
    clock = FakeClock()
    with pytest.raises(errors.HeadNodeUnreachable, match="still Pending"):
        head_node(ec2, ScriptedSsm([{"Status": "Pending"}]), clock=clock).run(STATUS, wait_seconds=20)
    assert 18 <= clock.now <= 20


class RecordingClock(FakeClock):
    def __init__(self):
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 4))
        super().sleep(seconds)


@pytest.mark.parametrize(
    ("poll_every", "sleeps"),
    [
        ({}, [0.2, 0.3, 0.45, 0.675, 1.0125, 1.5188, 2.0, 2.0]),  # per-job commands: backing off to 2 s
        ({"poll_every_seconds": 0.25}, [0.2, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]),  # the sweep's
    ],
)
def test_a_command_is_polled_sooner_then_less_often_up_to_its_poll_interval(ec2, poll_every, sleeps):
    launch(ec2, "prod")
    clock = RecordingClock()
    ssm = ScriptedSsm([{"Status": "InProgress"}] * len(sleeps) + [reply(FOUND)])
    head_node(ec2, ssm, clock=clock).run(STATUS, wait_seconds=30, **poll_every)
    assert clock.sleeps == sleeps


@pytest.mark.parametrize("status", ["TimedOut", "Cancelled", "Undeliverable", "Terminated"])
def test_undelivered_commands_are_unreachable_head_node(ec2, status):
    launch(ec2, "prod")
    with pytest.raises(errors.HeadNodeUnreachable, match=status):
        head_node(ec2, ScriptedSsm([{"Status": status, "StatusDetails": "DeliveryTimedOut"}])).run(
            STATUS, wait_seconds=5
        )


def test_throttled_send_is_a_named_transient_error(ec2):
    launch(ec2, "prod")
    with pytest.raises(errors.AwsThrottled):
        head_node(ec2, ScriptedSsm([], send_error=client_error("ThrottlingException", "Rate exceeded"))).run(
            STATUS, wait_seconds=5
        )


def test_invalid_instance_forgets_the_cached_head_node(ec2):
    launch(ec2, "prod")
    node = head_node(ec2, ScriptedSsm([], send_error=client_error("InvalidInstanceId")))
    with pytest.raises(errors.HeadNodeUnreachable):
        node.run(STATUS, wait_seconds=5)
    assert "prod" not in HeadNode._instance_cache


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("SlurmControllerUnavailable", errors.SlurmControllerUnavailable),
        ("SlurmAccountingUnavailable", errors.SlurmAccountingUnavailable),
        ("SbatchRejected", errors.SbatchRejected),
        ("HeadNodeSetupError", errors.HeadNodeSetupError),
        ("ClusterUserInvalid", errors.ClusterUserInvalid),
        ("ScriptFetchFailed", errors.ScriptFetchFailed),
        ("SlurmCommandFailed", errors.SlurmCommandFailed),
        ("BadRequest", errors.HeadNodeProtocolError),
        ("InternalError", errors.HeadNodeProtocolError),
    ],
)
def test_program_errors_become_named_exceptions(ec2, error_type, expected):
    launch(ec2, "prod")
    answer = reply(error={"type": error_type, "message": "it broke", "retryable": False})
    with pytest.raises(expected, match="it broke"):
        head_node(ec2, ScriptedSsm([answer])).run(STATUS, wait_seconds=5)


def test_output_without_a_reply_is_a_protocol_error_with_stderr(ec2):
    launch(ec2, "prod")
    crashed = {"Status": "Failed", "ResponseCode": 1, "StandardOutputContent": "", "StandardErrorContent": "Traceback"}
    with pytest.raises(errors.HeadNodeProtocolError, match="Traceback"):
        head_node(ec2, ScriptedSsm([crashed])).run(STATUS, wait_seconds=5)


def test_request_names_the_configured_user_and_slurm_directory(ec2):
    request = head_node(ec2, ScriptedSsm([])).document(CancelRequest(slurm_job_id="9"))
    assert request == {
        "protocol": 1,
        "action": "cancel",
        "clusterUser": "ec2-user",
        "slurmBinDir": "/opt/slurm/bin",
        "slurmJobId": "9",
    }


@pytest.mark.parametrize(
    ("remaining", "expected"), [(900.0, SSM_WAIT_CAP_SECONDS), (60.0, 60.0 - SAFETY_MARGIN_SECONDS), (8.0, 5.0)]
)
def test_the_ssm_wait_ends_before_the_lambda_does(remaining, expected):
    assert ssm_wait_seconds(remaining) == expected


def test_the_ssm_wait_takes_the_callers_own_bounds():
    assert ssm_wait_seconds(30.0, cap=20, margin=5, minimum=1.0) == 20
    assert ssm_wait_seconds(15.0, cap=20, margin=5, minimum=1.0) == 10
    assert ssm_wait_seconds(3.0, cap=20, margin=5, minimum=1.0) == 1.0


# -- read-output: the largest page and its reply fit what SSM returns of stdout -------------------------------------

LONGEST_HOME = "/" + "h" * 254  # the cluster user's home, as long as we allow for


def largest_read_output_diagnostics(tmp_path) -> list[str]:
    """The diagnostics the user stage can add to a read-output reply at most: open_job_directory gives back the mode
    of each closed level of both layouts, up to twice per level (it retries once), each line naming the level's path
    under the longest home. Made by the program's own code, on directories closed for it."""
    job_id, submission_id = "0" * 8 + "-0000-4000-8000-" + "0" * 12, "0" * 32
    layouts = (
        (program.JOB_DIRECTORIES, job_id, submission_id),
        (program.LEGACY_DIRECTORY, "jobs", job_id, submission_id),
    )
    diagnostics: list[str] = []
    parent = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        device = os.fstat(parent).st_dev
        for levels in layouts:
            path = LONGEST_HOME
            for name in levels:
                for _ in range(2):
                    (tmp_path / name).mkdir(mode=0, exist_ok=True)
                    (tmp_path / name).chmod(0)
                    assert program._open_again(
                        parent, path, name, os.geteuid(), device, program.PRIVATE_MODE, diagnostics
                    )
                path = os.path.join(path, name)
    finally:
        os.close(parent)
    return diagnostics


def test_the_largest_read_output_reply_fits_what_ssm_returns_of_stdout(tmp_path):
    largest = {
        "found": True,
        "size": program.MAX_FILE_OFFSET,
        "offset": program.MAX_FILE_OFFSET,
        "data": base64.b64encode(b"\xff" * program.READ_OUTPUT_MAX_BYTES).decode("ascii"),
    }
    assert set(largest) == set(program.REPLY_FIELDS["read-output"])
    diagnostics = largest_read_output_diagnostics(tmp_path)
    assert len(diagnostics) == 14 and all(LONGEST_HOME in line for line in diagnostics)
    reply = program._with_diagnostics(program._reply("read-output", result=largest) + "\n", diagnostics, io.StringIO())
    assert len(reply) <= SSM_STDOUT_CHARACTERS, len(reply)
    # And the reply, cut where SSM would cut it, is still the whole document the Lambda parses.
    outcome = CommandOutcome("c", "Success", reply[:SSM_STDOUT_CHARACTERS], "", 0)
    parsed = ReadOutputReply.model_validate(HeadNode.parse_reply("read-output", outcome))
    assert base64.b64decode(parsed.data) == b"\xff" * program.READ_OUTPUT_MAX_BYTES
    print(f"the largest read-output reply: {len(reply)} of {SSM_STDOUT_CHARACTERS} characters")
