"""Who a caller's jobs run as (slurm_job_api.caller_mapping): which mappings may be written, which keys may map a
caller, and the user a mapping gives — pure, no AWS."""

from __future__ import annotations

import pytest

from slurm_job_api.caller_mapping import (
    SESSION_PLACEHOLDER,
    InvalidMapping,
    Mapping,
    check_cluster_user_name,
    check_mapping,
    cluster_user_of,
    lookup_keys,
)
from slurm_job_api.head_node_program import DENIED_CLUSTER_USERS

USER = "arn:aws:iam::123456789012:user/alice"
USER_WITH_PATH = "arn:aws:iam::123456789012:user/division/team/alice"
SESSION = "arn:aws:sts::123456789012:assumed-role/HpcUsers/bob"
ROLE = "arn:aws:sts::123456789012:assumed-role/HpcUsers/*"
FEDERATED = "arn:aws-us-gov:sts::123456789012:federated-user/carol"


@pytest.mark.parametrize(
    ("principal", "user"),
    [
        (USER, "alice"),
        (USER_WITH_PATH, "alice"),
        (SESSION, "bob"),
        (ROLE, "hpc"),
        (ROLE, SESSION_PLACEHOLDER),
        (FEDERATED, "carol"),
        ("arn:aws-cn:iam::123456789012:user/d", "d_1.x-y"),
    ],
)
def test_mappings_of_principals_and_role_sessions_may_be_written(principal, user):
    assert check_mapping(principal, user) == Mapping(principal=principal, cluster_user=user)


@pytest.mark.parametrize(
    "principal",
    [
        "alice",
        "arn:aws:iam::123456789012:root",  # the account itself
        "arn:aws:iam::123456789012:role/HpcUsers",  # a role is never the caller: its sessions are
        "arn:aws:sts::123456789012:assumed-role/HpcUsers",
        "arn:aws:sts::123456789012:assumed-role/HpcUsers/*x",
        "arn:aws:sts::123456789012:assumed-role/*/*",
        "arn:aws:sts::12345678901:assumed-role/HpcUsers/bob",
        "arn:aws:iam::123456789012:user/*",
        "arn:aws:iam::123456789012:user/alice\n",
        "arn:aws:iam::123456789012:user/" + "a" * 600,
        "arn:aws:iam::123456789012:user/al ice",
        "arn:aws:iam::123456789012:user/alicé",
    ],
)
def test_a_principal_key_that_is_not_a_caller_or_a_role_pattern_is_refused(principal):
    with pytest.raises(InvalidMapping, match="principal"):
        check_mapping(principal, "alice")


@pytest.mark.parametrize(
    "user",
    [
        *("root", "Root", "", "1alice", "-alice", ".alice", "a" * 33, "alice$", "al ice", "alice/../root", "al\nice"),
        *("nobody", "slurm", "munge", "daemon", "ssm-user", "alice;id", "{session}x", "é"),
    ],
)
def test_a_user_jobs_may_not_run_as_is_refused_when_written(user):
    with pytest.raises(InvalidMapping, match=r"cluster user|never run as"):
        check_mapping(USER, user)


def test_every_account_the_head_node_denies_is_refused_by_name_too():
    for name in sorted(DENIED_CLUSTER_USERS):
        with pytest.raises(InvalidMapping):
            check_cluster_user_name(name)


def test_the_session_placeholder_maps_only_role_patterns():
    with pytest.raises(InvalidMapping, match="assumed-role/<role>/\\*"):
        check_mapping(USER, SESSION_PLACEHOLDER)
    with pytest.raises(InvalidMapping):
        check_mapping(SESSION, SESSION_PLACEHOLDER)


def test_a_session_is_looked_up_exactly_first_then_by_its_role():
    assert lookup_keys(SESSION) == [SESSION, ROLE]
    assert lookup_keys(USER) == [USER]  # an IAM user has no role to fall back to
    assert lookup_keys(FEDERATED) == [FEDERATED]


def test_a_role_pattern_gives_a_fixed_user_or_the_session_name():
    assert cluster_user_of(SESSION, Mapping(principal=ROLE, cluster_user="hpc")) == "hpc"
    assert cluster_user_of(SESSION, Mapping(principal=ROLE, cluster_user=SESSION_PLACEHOLDER)) == "bob"
    assert cluster_user_of(USER, Mapping(principal=USER, cluster_user="alice")) == "alice"


@pytest.mark.parametrize(
    "session",
    ["root", "nobody", "Bob", "bob@example.com", "12", "slurm", "a" * 33],
)
def test_a_session_name_that_is_no_user_jobs_may_run_as_maps_nobody(session):
    caller = f"arn:aws:sts::123456789012:assumed-role/HpcUsers/{session}"
    with pytest.raises(InvalidMapping):
        cluster_user_of(caller, Mapping(principal=ROLE, cluster_user=SESSION_PLACEHOLDER))


def test_a_pattern_never_maps_a_session_of_another_role():
    other_role = "arn:aws:sts::123456789012:assumed-role/Admins/bob"
    with pytest.raises(InvalidMapping, match="not one"):
        cluster_user_of(other_role, Mapping(principal=ROLE, cluster_user=SESSION_PLACEHOLDER))
    with pytest.raises(InvalidMapping, match="not one"):
        cluster_user_of(USER, Mapping(principal=ROLE, cluster_user=SESSION_PLACEHOLDER))


def test_a_stored_mapping_to_a_denied_account_gives_no_user():
    """A store written around the command's checks: the API refuses to use it (and the head node would too)."""
    with pytest.raises(InvalidMapping, match="never run as"):
        cluster_user_of(USER, Mapping(principal=USER, cluster_user="root"))
