"""CallerMapping=single-tenant, the deployer's explicit choice: every caller's jobs run as ClusterUser and no mapping
is read (a cloud of its own: one local cloud per process at a time)."""

from __future__ import annotations

from tests.handlers.test_caller_mappings import list_jobs_as, store_of


def test_every_caller_runs_as_the_cluster_user_and_nothing_is_mapped(make_cloud):
    with make_cloud(CallerMapping="single-tenant") as cloud:
        status, _ = list_jobs_as(cloud, "arn:aws:iam::123456789012:user/anyone-at-all")
        assert status == 200
        assert store_of(cloud).mappings() == []  # nothing mapped, nothing read
