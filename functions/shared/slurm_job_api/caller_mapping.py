"""Who a caller's jobs run as on the cluster: IAM principals mapped to POSIX user names (pure; no AWS).

An operator maps principals in the stack's CallerMappingsTable (scripts/caller-mappings; README, "Mapping callers to
cluster users"), one entry per principal key:
- an exact principal: an IAM user ARN (`arn:aws:iam::123456789012:user/alice`), an assumed-role ARN with its
  session name (`arn:aws:sts::123456789012:assumed-role/HpcUsers/alice`) or a federated user's ARN;
- a role pattern: every session of one role (`arn:aws:sts::123456789012:assumed-role/HpcUsers/*`), to one fixed user
  name or to `{session}`, the session name itself (IAM Identity Center names sessions after the user).
An exact entry wins over the role's pattern. A caller no entry maps is refused (default deny); in the single-tenant
mode the deployer chose (CallerMapping=single-tenant), every caller runs as ClusterUser.

Names are checked here when a mapping is written and when one is used: a POSIX user name, never root or a system or
service account the head-node program denies. The head node checks again at every command (uid at least its minimum,
the deny-list, its policy file), whatever a mapping says: a store someone wrote around these checks gains nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slurm_job_api.head_node_program import DENIED_CLUSTER_USERS

SESSION_PLACEHOLDER = "{session}"
# A portable POSIX user name (lower case, as useradd accepts by default): the head-node program's rule without the
# trailing "$" of Samba machine accounts, which no person's jobs run as.
CLUSTER_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\Z")
_PARTITION = r"aws(?:-cn|-us-gov|-iso|-iso-b)?"
_ACCOUNT = r"[0-9]{12}"
# IAM names: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html (role and user names
# [\w+=,.@-], session names [\w+=,.@-]{2,64}, paths /.../).
_NAME = r"[\w+=,.@-]{1,128}"
IAM_USER_ARN_RE = re.compile(rf"^arn:{_PARTITION}:iam::{_ACCOUNT}:user(?:/[\w+=,.@-]+)*/{_NAME}\Z", re.ASCII)
ASSUMED_ROLE_ARN_RE = re.compile(
    rf"^(?P<role>arn:{_PARTITION}:sts::{_ACCOUNT}:assumed-role/{_NAME})/(?P<session>[\w+=,.@-]{{2,64}})\Z", re.ASCII
)
ROLE_PATTERN_RE = re.compile(rf"^arn:{_PARTITION}:sts::{_ACCOUNT}:assumed-role/{_NAME}/\*\Z", re.ASCII)
FEDERATED_USER_ARN_RE = re.compile(rf"^arn:{_PARTITION}:sts::{_ACCOUNT}:federated-user/{_NAME}\Z", re.ASCII)
MAX_PRINCIPAL_CHARACTERS = 512


@dataclass(frozen=True)
class Caller:
    """The signed principal of a request and the cluster user its jobs run as."""

    owner: str
    cluster_user: str


class InvalidMapping(ValueError):
    """A mapping that may not be written (or used): the message says which part and why."""


@dataclass(frozen=True)
class Mapping:
    """One entry: the principal key it matches and the cluster user (or `{session}`) it maps to."""

    principal: str
    cluster_user: str

    @property
    def is_pattern(self) -> bool:
        return self.principal.endswith("/*")


def check_cluster_user_name(name: str) -> str:
    """`name` if jobs may run as it, as far as a name tells; InvalidMapping otherwise."""
    if not isinstance(name, str) or not CLUSTER_USER_RE.match(name):
        raise InvalidMapping(
            f"cluster user {name!r} is not a POSIX user name (lower-case letters, digits, '_', '.', '-'; at most 32; "
            "not starting with a digit, '.' or '-')"
        )
    if name in DENIED_CLUSTER_USERS:
        raise InvalidMapping(f"jobs never run as root or the system or service account {name!r}")
    return name


def check_mapping(principal: str, cluster_user: str) -> Mapping:
    """The mapping, if it may be written: a principal key this module understands, and a user jobs may run as."""
    if not isinstance(principal, str) or len(principal) > MAX_PRINCIPAL_CHARACTERS:
        raise InvalidMapping(f"principal must be an ARN of at most {MAX_PRINCIPAL_CHARACTERS} characters")
    pattern = bool(ROLE_PATTERN_RE.match(principal))
    if not pattern and not any(
        rule.match(principal) for rule in (IAM_USER_ARN_RE, ASSUMED_ROLE_ARN_RE, FEDERATED_USER_ARN_RE)
    ):
        raise InvalidMapping(
            f"principal {principal!r} is not an IAM user ARN (arn:aws:iam::<account>:user/<name>), an assumed-role "
            "ARN with its session (arn:aws:sts::<account>:assumed-role/<role>/<session>), every session of a role "
            "(.../assumed-role/<role>/*) or a federated user's ARN"
        )
    if cluster_user == SESSION_PLACEHOLDER:
        if not pattern:
            raise InvalidMapping(f"{SESSION_PLACEHOLDER} maps a role's sessions: use it with .../assumed-role/<role>/*")
    else:
        check_cluster_user_name(cluster_user)
    return Mapping(principal=principal, cluster_user=cluster_user)


def lookup_keys(caller: str) -> list[str]:
    """The principal keys that may map `caller`, the exact one first, then its role's pattern (assumed roles)."""
    keys = [caller]
    assumed = ASSUMED_ROLE_ARN_RE.match(caller)
    if assumed:
        keys.append(assumed.group("role") + "/*")
    return keys


def cluster_user_of(caller: str, mapping: Mapping) -> str:
    """The cluster user `mapping` (found under one of lookup_keys(caller)) gives `caller`; InvalidMapping if the
    result is no name jobs may run as (e.g. a session name that is not a POSIX user name)."""
    if mapping.cluster_user != SESSION_PLACEHOLDER:
        return check_cluster_user_name(mapping.cluster_user)
    assumed = ASSUMED_ROLE_ARN_RE.match(caller)
    if not assumed or mapping.principal != assumed.group("role") + "/*":
        raise InvalidMapping(f"{mapping.principal} maps sessions of a role; {caller} is not one")
    return check_cluster_user_name(assumed.group("session"))
