"""The whole product on one machine: a real Slurm cluster, this machine as its head node behind SSM, and the local
cloud (moto running our state machine, our handlers in local Lambda execution environments, the local API Gateway)
built from template.yaml.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from local_stack.cloud import LocalCloud
from local_stack.slurm_cluster import (
    DEFAULT_PORT_BASE,
    ClusterError,
    SlurmCluster,
    checkout_user_name,
    ensure_cluster_user,
    local_state_root,
)
from local_stack.ssm_head_node import LocalHeadNode
from local_stack.template_model import REPOSITORY_TEMPLATE

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPOSITORY_TEMPLATE
CLUSTER_NAME = "local"
# Jobs run as this unprivileged user, as they run as ClusterUser (ec2-user by default) on a ParallelCluster head node.
CLUSTER_USER = checkout_user_name("hpcuser")


# The local stack compresses schedule time: every schedule of the template (the cluster's status sweep) fires this
# often instead of at its rate (EventBridge's shortest is a minute). None: the template's rates.
LOCAL_SCHEDULE_PERIOD_SECONDS = 2.0


class LocalStackError(Exception):
    """The local stack cannot run here; the message says why and what to do."""


class LocalStack:
    """Context manager: starts Slurm (unless it already runs), the local cloud and the local API; stops what it started.

    ``parameters`` override template parameters (e.g. PollMinSeconds); ``min_job_age`` and ``accounting`` configure
    the Slurm cluster; ``schedule_period_seconds`` how often the template's schedules fire
    (LOCAL_SCHEDULE_PERIOD_SECONDS; None: at their rates). ``name`` and ``port_base`` give a stack its own Slurm
    cluster (state directory and ports), so that test modules with differently configured clusters can run at the
    same time.
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, str] | None = None,
        min_job_age: int = 300,
        accounting: bool = False,
        name: str = "slurm",
        port_base: int = DEFAULT_PORT_BASE,
        cluster_user: str = CLUSTER_USER,
        schedule_period_seconds: float | None = LOCAL_SCHEDULE_PERIOD_SECONDS,
    ) -> None:
        self.cluster = SlurmCluster(
            local_state_root() / name, accounting=accounting, min_job_age=min_job_age, port_base=port_base
        )
        self.cluster_user = cluster_user
        self.parameters = {
            "ClusterName": CLUSTER_NAME,
            "ClusterUser": cluster_user,
            "SlurmBinDir": str(self.cluster.bin_dir),
            **(parameters or {}),
        }
        self.schedule_period_seconds = schedule_period_seconds
        self.cloud: LocalCloud | None = None
        self._started_cluster = False

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise LocalStackError(
                "the local stack runs Slurm daemons and switches to the cluster user like a head node does: "
                "run it as root (e.g. with sudo)"
            )
        try:
            self._started_cluster = not self.cluster.is_running()
            self.cluster.start()
            ensure_cluster_user(self.cluster_user)
        except ClusterError as error:
            raise LocalStackError(str(error)) from error
        # Tracing needs the X-Ray daemon of a real Lambda environment.
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        self.cloud = LocalCloud(
            TEMPLATE,
            parameter_overrides=self.parameters,
            head_node=LocalHeadNode(env=self.cluster.env()),
            schedule_period_seconds=self.schedule_period_seconds,
        )
        self.cloud.start()

    def stop(self) -> None:
        if self.cloud is not None:
            self.cloud.stop()
            self.cloud = None
        if self._started_cluster:
            self.cluster.stop()
            self._started_cluster = False

    @property
    def running_cloud(self) -> LocalCloud:
        if self.cloud is None:
            raise RuntimeError("the local stack is not started")
        return self.cloud
