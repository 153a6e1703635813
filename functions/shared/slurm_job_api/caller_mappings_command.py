"""The operators' command for caller mappings: scripts/caller-mappings (README, "Mapping callers to cluster users").

    scripts/caller-mappings --stack-name STACK add PRINCIPAL USER     map a principal (or a role's sessions: .../*)
    scripts/caller-mappings --stack-name STACK remove PRINCIPAL
    scripts/caller-mappings --stack-name STACK list [--json]
    scripts/caller-mappings --stack-name STACK history [PRINCIPAL] [--json]
    scripts/caller-mappings --stack-name STACK resolve CALLER_ARN     which user a caller's jobs would run as
    scripts/caller-mappings --stack-name STACK apply FILE|-           a JSON object {principal: user}, written as add

Every change is one DynamoDB transaction with its record (who: the operator's STS identity; when; what). Before a
mapping is written its user is checked on the cluster's head node (the head-node program's own checks: the user
exists, is not root, has a uid at least the minimum, is on no deny-list) unless --no-verify; the head node checks it
again at every command whatever the table says.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from slurm_job_api.caller_mapping import SESSION_PLACEHOLDER, InvalidMapping, check_mapping, cluster_user_of
from slurm_job_api.caller_mapping_store import CallerMappingStore, MappingChange, MappingChanged

VERIFY_WAIT_SECONDS = 60


class CommandFailed(Exception):
    """A one-line reason the command changed nothing."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caller-mappings", description="Map IAM principals to the cluster users their Slurm jobs run as."
    )
    where = parser.add_argument_group("where the mappings are")
    where.add_argument("--stack-name", help="the deployed stack (its outputs and parameters give the rest)")
    where.add_argument("--table-name", help="CallerMappingsTableName, instead of --stack-name")
    where.add_argument("--cluster-name", help="ClusterName, for the head-node check (default: the stack's)")
    where.add_argument("--slurm-bin-dir", help="SlurmBinDir, for the head-node check (default: the stack's)")
    where.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")
    where.add_argument("--profile", help="AWS profile")
    where.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # the local stack's
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="map a principal (or every session of a role: .../assumed-role/ROLE/*)")
    add.add_argument("principal")
    add.add_argument("cluster_user", help="a POSIX user name; {session} (role patterns only): the session name")
    add.add_argument("--no-verify", action="store_true", help="do not check the user on the head node first")
    remove = commands.add_parser("remove", help="remove a principal's mapping")
    remove.add_argument("principal")
    listing = commands.add_parser("list", help="every mapping")
    listing.add_argument("--json", action="store_true")
    history = commands.add_parser("history", help="every recorded change (of one principal key)")
    history.add_argument("principal", nargs="?")
    history.add_argument("--json", action="store_true")
    resolve = commands.add_parser("resolve", help="the cluster user a caller's jobs would run as")
    resolve.add_argument("caller")
    apply = commands.add_parser("apply", help="write the mappings of a JSON object {principal: user} (file or -)")
    apply.add_argument("file")
    apply.add_argument("--no-verify", action="store_true", help="do not check the users on the head node first")
    return parser


class Operator:
    """The AWS side of one invocation: the table, the caller's identity, the head node."""

    def __init__(self, arguments: argparse.Namespace) -> None:
        self.arguments = arguments
        self.session = boto3.Session(profile_name=arguments.profile, region_name=arguments.region)
        self._stack: dict[str, Any] | None = None

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.arguments.endpoint_url)

    def stack(self) -> dict[str, str]:
        """The stack's outputs and parameters, by key (empty without --stack-name)."""
        if self._stack is None:
            self._stack = {}
            if self.arguments.stack_name:
                described = self.client("cloudformation").describe_stacks(StackName=self.arguments.stack_name)
                stack = described["Stacks"][0]
                self._stack.update({item["ParameterKey"]: item["ParameterValue"] for item in stack["Parameters"]})
                self._stack.update({item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])})
        return self._stack

    def setting(self, option: str | None, key: str, flag: str) -> str:
        value = option or self.stack().get(key)
        if not value:
            raise CommandFailed(f"give --stack-name or {flag}")
        return value

    def store(self) -> CallerMappingStore:
        name = self.setting(self.arguments.table_name, "CallerMappingsTableName", "--table-name")
        resource = self.session.resource("dynamodb", endpoint_url=self.arguments.endpoint_url)
        return CallerMappingStore(resource.Table(name))

    def identity(self) -> str:
        """Who is changing the mappings: the STS identity of these credentials (recorded with each change)."""
        return self.client("sts").get_caller_identity()["Arn"]

    def verify(self, cluster_user: str) -> int:
        """The uid the head node runs `cluster_user`'s commands with; CommandFailed if it refuses the user."""
        # Imported here: pydantic and the protocol cost half a second of CPU that list, history and apply never need.
        from slurm_job_api import errors
        from slurm_job_api.head_node import HeadNode
        from slurm_job_api.head_node_protocol import CheckUserRequest

        head_node = HeadNode(
            cluster_name=self.setting(self.arguments.cluster_name, "ClusterName", "--cluster-name"),
            cluster_user=cluster_user,
            slurm_bin_dir=self.setting(self.arguments.slurm_bin_dir, "SlurmBinDir", "--slurm-bin-dir"),
            ssm=self.client("ssm"),
            ec2=self.client("ec2"),
        )
        try:
            reply = head_node.run(CheckUserRequest(), wait_seconds=VERIFY_WAIT_SECONDS)
        except errors.ClusterUserInvalid as error:
            raise CommandFailed(f"the head node refuses {cluster_user!r}: {error}") from None
        except errors.SlurmJobApiError as error:
            raise CommandFailed(
                f"cannot check {cluster_user!r} on the head node ({error}); --no-verify writes the mapping unchecked "
                "(the head node still refuses a user it may not run jobs as, at every command)"
            ) from None
        return reply.uid


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _describe(change: MappingChange) -> str:
    if change.action == "remove":
        return f"removed {change.principal} (was {change.previous_cluster_user})"
    before = f" (was {change.previous_cluster_user})" if change.previous_cluster_user else ""
    return f"{change.action}: {change.principal} -> {change.cluster_user}{before}"


def _add(operator: Operator, principal: str, cluster_user: str, verify: bool) -> str:
    mapping = check_mapping(principal, cluster_user)  # before anything is asked of AWS
    store = operator.store()
    current = store.get(mapping.principal)
    if current is not None and current.cluster_user == mapping.cluster_user:
        return f"unchanged: {mapping.principal} -> {mapping.cluster_user}"
    note = ""
    if verify and mapping.cluster_user != SESSION_PLACEHOLDER:  # a session's user is checked when it is used
        note = f" (uid {operator.verify(mapping.cluster_user)} on the head node)"
    change = store.put(mapping.principal, mapping.cluster_user, changed_by=operator.identity(), changed_at=_now())
    return _describe(change) + note


def run(arguments: argparse.Namespace, out: Any) -> None:
    operator = Operator(arguments)
    command = arguments.command
    if command == "add":
        print(_add(operator, arguments.principal, arguments.cluster_user, not arguments.no_verify), file=out)
    elif command == "apply":
        text = sys.stdin.read() if arguments.file == "-" else Path(arguments.file).read_text(encoding="utf-8")
        wanted = json.loads(text)
        if not isinstance(wanted, dict) or not all(isinstance(v, str) for v in wanted.values()):
            raise CommandFailed("apply takes a JSON object {principal: cluster user}")
        for principal, cluster_user in wanted.items():
            check_mapping(principal, cluster_user)  # all checked before any is written
        for principal, cluster_user in wanted.items():
            print(_add(operator, principal, cluster_user, not arguments.no_verify), file=out)
    elif command == "remove":
        change = operator.store().remove(arguments.principal, changed_by=operator.identity(), changed_at=_now())
        print(_describe(change) if change else f"no mapping for {arguments.principal}: nothing changed", file=out)
    elif command == "list":
        mappings = operator.store().mappings()
        if arguments.json:
            json.dump([{"principal": m.principal, "clusterUser": m.cluster_user} for m in mappings], out, indent=2)
            print(file=out)
        for mapping in [] if arguments.json else mappings:
            print(f"{mapping.principal}\t{mapping.cluster_user}", file=out)
    elif command == "history":
        changes = operator.store().changes(arguments.principal)
        if arguments.json:
            json.dump([change.__dict__ for change in changes], out, indent=2)
            print(file=out)
        for change in [] if arguments.json else changes:
            print(f"{change.changed_at}\t{change.changed_by}\t{_describe(change)}", file=out)
    elif command == "resolve":
        mapping = operator.store().find(arguments.caller)
        if mapping is None:
            raise CommandFailed(f"{arguments.caller} is not mapped: the API refuses it (403 CallerNotMapped)")
        print(f"{cluster_user_of(arguments.caller, mapping)}\t(by {mapping.principal})", file=out)


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        run(arguments, sys.stdout)
    except (CommandFailed, InvalidMapping, MappingChanged) as error:
        print(f"caller-mappings: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, OSError, ValueError) as error:
        print(f"caller-mappings: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
