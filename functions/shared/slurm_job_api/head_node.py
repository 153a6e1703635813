"""Runs head-node program actions on the cluster's head node through SSM Run Command.

The head node is found by its ParallelCluster tags for the configured cluster — never from anything a caller sent.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from slurm_job_api import errors
from slurm_job_api.head_node_program import COLLECT_MESSAGE_CHARACTERS, MAX_SWEEP_JOBS, MAX_UPLOAD_BYTES, PROTOCOL
from slurm_job_api.head_node_protocol import CollectRequest, Reply, Request, SweepJob, SweepRequest, Upload
from slurm_job_api.observability import logger
from slurm_job_api.ssm_command import command_size, shell_commands

DOCUMENT_NAME = "AWS-RunShellScript"
CLUSTER_NAME_TAG = "parallelcluster:cluster-name"
NODE_TYPE_TAG = "parallelcluster:node-type"
HEAD_NODE_TAG_VALUE = "HeadNode"
INSTANCE_CACHE_SECONDS = 300
DELIVERY_TIMEOUT_SECONDS = 60  # SendCommand TimeoutSeconds: how long SSM tries to deliver (minimum 30)
WAITING_STATUSES = frozenset(["Pending", "InProgress", "Delayed"])
UNREACHABLE_STATUSES = frozenset(["TimedOut", "Cancelled", "Cancelling", "Undeliverable", "Terminated"])
_THROTTLING_CODES = frozenset(["ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"])
# Bytes of one SSM command we aim to stay under (SendCommand requests are limited; see docs/facts.md).
COMMAND_BUDGET_BYTES = 48 * 1024
# Characters of stdout GetCommandInvocation returns (the rest is cut off; docs/facts.md): every reply must fit.
SSM_STDOUT_CHARACTERS = 24_000
# Characters of a collect reply's file reports we allow: SSM returns the first 24,000 characters of stdout (see
# docs/facts.md); the rest is the reply's envelope and the program's diagnostics.
COLLECT_REPLY_BUDGET_CHARACTERS = 20_000
# Bytes left in a sweep command for the presigned PUT URL of its report (about 1,500 characters with a session token).
SWEEP_URL_ALLOWANCE_BYTES = 4 * 1024
# How long a Lambda waits for one command: at most the cap, and ending the margin before the Lambda itself times out.
SSM_WAIT_CAP_SECONDS = 90
SAFETY_MARGIN_SECONDS = 10
SSM_WAIT_MIN_SECONDS = 5.0
# GetCommandInvocation after SendCommand: first after FIRST_POLL_SECONDS, then 1.5 times as long each time, at most
# POLL_EVERY_SECONDS apart (the per-job commands of many jobs at once); the cluster's one sweep polls more often.
FIRST_POLL_SECONDS = 0.2
POLL_EVERY_SECONDS = 2.0


def ssm_wait_seconds(
    remaining_seconds: float,
    *,
    cap: float = SSM_WAIT_CAP_SECONDS,
    margin: float = SAFETY_MARGIN_SECONDS,
    minimum: float = SSM_WAIT_MIN_SECONDS,
) -> float:
    """How long to wait for an SSM command when the Lambda has `remaining_seconds` left: at most `cap`, ending
    `margin` seconds before the Lambda's own timeout, and never less than `minimum`."""
    return max(minimum, min(cap, remaining_seconds - margin))


@dataclass(frozen=True)
class CommandOutcome:
    command_id: str
    status: str
    stdout: str
    stderr: str
    response_code: int


def _is_throttling(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in _THROTTLING_CODES or "rate exceeded" in str(error).lower()


def _largest_file_report(name: str) -> int:
    """Characters of the largest report the program can give for one file of a collect (as its reply encodes it)."""
    report = {
        "bytes": MAX_UPLOAD_BYTES,
        "message": "m" * COLLECT_MESSAGE_CHARACTERS,
        "name": name,
        "status": "uploaded",
    }
    return len(json.dumps(report, sort_keys=True)) + 2  # ", " between reports


class HeadNode:
    """The head node of one cluster, driven through SSM."""

    _instance_cache: dict[str, tuple[str, float]] = {}  # noqa: RUF012 - per Lambda container, on purpose

    def __init__(
        self,
        *,
        cluster_name: str,
        cluster_user: str,
        slurm_bin_dir: str,
        ssm: Any,
        ec2: Any,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cluster_name = cluster_name
        self.cluster_user = cluster_user
        self.slurm_bin_dir = slurm_bin_dir
        self._ssm = ssm
        self._ec2 = ec2
        self._clock = clock
        self._sleep = sleep

    # -- finding the instance -------------------------------------------------------------------------------------

    def instance_id(self) -> str:
        cached = self._instance_cache.get(self.cluster_name)
        if cached and self._clock() - cached[1] < INSTANCE_CACHE_SECONDS:
            return cached[0]
        try:
            pages = self._ec2.get_paginator("describe_instances").paginate(
                Filters=[
                    {"Name": f"tag:{CLUSTER_NAME_TAG}", "Values": [self.cluster_name]},
                    {"Name": f"tag:{NODE_TYPE_TAG}", "Values": [HEAD_NODE_TAG_VALUE]},
                    {"Name": "instance-state-name", "Values": ["running"]},
                ]
            )
            ids = [
                instance["InstanceId"]
                for page in pages
                for reservation in page["Reservations"]
                for instance in reservation["Instances"]
            ]
        except ClientError as error:
            if _is_throttling(error):
                raise errors.AwsThrottled(f"EC2 DescribeInstances throttled: {error}") from error
            raise
        if not ids:
            raise errors.HeadNodeNotFound(f"no running head node is tagged {CLUSTER_NAME_TAG}={self.cluster_name}")
        if len(ids) > 1:
            raise errors.HeadNodeSetupError(
                f"{len(ids)} running instances are tagged as the head node of {self.cluster_name}: {sorted(ids)}"
            )
        self._instance_cache[self.cluster_name] = (ids[0], self._clock())
        return ids[0]

    def forget_instance(self) -> None:
        self._instance_cache.pop(self.cluster_name, None)

    def as_user(self, cluster_user: str | None) -> HeadNode:
        """This head node, with its commands run as `cluster_user` (a job's own; None: the configured ClusterUser).
        The head-node program checks the user again at every command."""
        if not cluster_user or cluster_user == self.cluster_user:
            return self
        other = copy.copy(self)
        other.cluster_user = cluster_user
        return other

    # -- running actions ------------------------------------------------------------------------------------------

    def document(self, request: Request) -> dict[str, Any]:
        """The full request document for the head-node program."""
        return {
            "protocol": PROTOCOL,
            "action": request.ACTION,
            "clusterUser": self.cluster_user,
            "slurmBinDir": self.slurm_bin_dir,
            **request.fields(),
        }

    def collect_batches(self, request: CollectRequest) -> list[CollectRequest]:
        """The collect request split into requests whose commands each stay within the command budget and whose
        replies, at their largest (every file an error with the longest message), fit what SSM returns of stdout."""
        batches: list[CollectRequest] = []
        current: list[Upload] = []
        reply_characters = 0
        for upload in request.uploads:
            report = _largest_file_report(upload.name)
            candidate = request.model_copy(update={"uploads": [*current, upload]})
            if current and (
                reply_characters + report > COLLECT_REPLY_BUDGET_CHARACTERS
                or command_size(shell_commands(self.document(candidate))) > COMMAND_BUDGET_BYTES
            ):
                batches.append(request.model_copy(update={"uploads": current}))
                current, reply_characters = [], 0
            current.append(upload)
            reply_characters += report
        if current:
            batches.append(request.model_copy(update={"uploads": current}))
        return batches

    def sweep_batches(self, jobs: list[SweepJob]) -> list[SweepRequest]:
        """Sweep requests for `jobs`, each command within the command budget with room for the presigned report URL
        added later (the report itself goes to S3, so the reply's size does not depend on the number of jobs)."""
        budget = COMMAND_BUDGET_BYTES - SWEEP_URL_ALLOWANCE_BYTES
        batches: list[SweepRequest] = []
        start = 0
        while start < len(jobs):
            end = min(len(jobs), start + MAX_SWEEP_JOBS)
            while end - start > 1 and self._sweep_command_size(jobs[start:end]) > budget:
                end = start + (end - start) // 2
            batches.append(SweepRequest(jobs=jobs[start:end], report_url=""))
            start = end
        return batches

    def _sweep_command_size(self, jobs: list[SweepJob]) -> int:
        return command_size(shell_commands(self.document(SweepRequest(jobs=jobs, report_url=""))))

    def run[ReplyT: Reply](
        self,
        request: Request[ReplyT],
        *,
        wait_seconds: float,
        execution_timeout: int = 600,
        poll_every_seconds: float = POLL_EVERY_SECONDS,
    ) -> ReplyT:
        """Runs one action and returns its reply; raises a named error for every kind of failure. The command is
        polled after FIRST_POLL_SECONDS, then 1.5 times as long each time, up to `poll_every_seconds` apart."""
        action = request.ACTION
        outcome = self.run_command(
            shell_commands(self.document(request)),
            wait_seconds=wait_seconds,
            execution_timeout=execution_timeout,
            comment=f"slurm-job-api {action} {request.job_id or ''}".strip(),
            poll_every_seconds=poll_every_seconds,
        )
        result = self.parse_reply(action, outcome)
        try:
            return request.reply_type().model_validate(result)  # type: ignore[return-value]
        except ValidationError as error:
            raise errors.HeadNodeProtocolError(
                f"the head-node program's {action} reply does not fit the protocol: {error}"
            ) from None

    def run_command(
        self,
        commands: list[str],
        *,
        wait_seconds: float,
        execution_timeout: int,
        comment: str,
        poll_every_seconds: float = POLL_EVERY_SECONDS,
    ) -> CommandOutcome:
        instance_id = self.instance_id()
        try:
            sent = self._ssm.send_command(
                InstanceIds=[instance_id],
                DocumentName=DOCUMENT_NAME,
                Parameters={"commands": commands, "executionTimeout": [str(execution_timeout)]},
                TimeoutSeconds=DELIVERY_TIMEOUT_SECONDS,
                Comment=comment[:100],
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if _is_throttling(error):
                raise errors.AwsThrottled(f"SSM SendCommand throttled: {error}") from error
            if code in ("InvalidInstanceId", "InvalidInstanceInformationFilterValue"):
                self.forget_instance()
                raise errors.HeadNodeUnreachable(f"SSM cannot reach head node {instance_id}: {error}") from error
            raise
        command_id = sent["Command"]["CommandId"]
        return self._wait(command_id, instance_id, wait_seconds, poll_every_seconds)

    def _wait(
        self, command_id: str, instance_id: str, wait_seconds: float, poll_every_seconds: float
    ) -> CommandOutcome:
        deadline = self._clock() + wait_seconds
        delay = min(FIRST_POLL_SECONDS, poll_every_seconds)
        status = "Pending"
        while True:
            try:
                invocation = self._ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
                status = invocation["Status"]
                if status not in WAITING_STATUSES:
                    break
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                # Right after SendCommand the invocation may not exist yet; throttling is retried here too.
                if code != "InvocationDoesNotExist" and not _is_throttling(error):
                    raise
            if self._clock() + delay > deadline:
                raise errors.HeadNodeUnreachable(
                    f"SSM command {command_id} on {instance_id} was still {status} after {wait_seconds:.0f} s"
                )
            self._sleep(delay)
            delay = min(delay * 1.5, poll_every_seconds)
        if status in UNREACHABLE_STATUSES:
            raise errors.HeadNodeUnreachable(
                f"SSM command {command_id} on {instance_id} ended {status} "
                f"({invocation.get('StatusDetails', '')}): {invocation.get('StandardErrorContent', '')[:500]}"
            )
        return CommandOutcome(
            command_id=command_id,
            status=status,
            stdout=invocation.get("StandardOutputContent", ""),
            stderr=invocation.get("StandardErrorContent", ""),
            response_code=int(invocation.get("ResponseCode", -1)),
        )

    @staticmethod
    def parse_reply(action: str, outcome: CommandOutcome) -> dict:
        """The program's JSON reply (its last JSON line); its error mapped to our named exceptions."""
        reply = None
        for line in reversed(outcome.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    reply = json.loads(line)
                except ValueError:
                    reply = None
                break
        if not isinstance(reply, dict) or reply.get("protocol") != PROTOCOL:
            raise errors.HeadNodeProtocolError(
                f"the head-node program gave no reply to {action} (command {outcome.command_id} {outcome.status}, "
                f"exit {outcome.response_code}): {outcome.stderr.strip()[-1000:] or outcome.stdout.strip()[-1000:]}"
            )
        if reply.get("diagnostics"):
            # The program found the product's files on the head node tampered with and repaired them.
            logger.warning(
                "the head node repaired its files", extra={"action": action, "diagnostics": reply["diagnostics"]}
            )
        if reply.get("ok"):
            return reply["result"]
        error = reply.get("error") or {}
        # `retryable` is a diagnostic: the error's class decides (errors.py checks it against the program's).
        logger.warning(
            "the head-node program reported an error",
            extra={"action": action, "error_type": error.get("type"), "retryable": error.get("retryable")},
        )
        error_class = errors.HEAD_NODE_ERRORS.get(error.get("type"), errors.HeadNodeProtocolError)
        raise error_class(error.get("message") or f"{action} failed on the head node")
