"""The whole product on one machine: a real Slurm cluster, this machine as its head node behind SSM, and the local
cloud (moto running our state machine, our handlers in local Lambda execution environments, the local API Gateway)
built from template.yaml.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from local_stack.api_gateway import EVENTS_CALLER_ARN, LOCAL_DEVELOPER, LOCAL_OTHER
from local_stack.cloud import LocalCloud
from local_stack.instance_metadata import LocalInstanceMetadata
from local_stack.slurm_cluster import (
    DEFAULT_PORT_BASE,
    PUSH_HOOK_PYTHON,
    PUSH_HOOK_SOURCE,
    ClusterError,
    SlurmCluster,
    checkout_user_name,
    ensure_cluster_user,
    local_state_root,
    push_hook_program,
)
from local_stack.ssm_head_node import LocalHeadNode
from local_stack.template_model import REPOSITORY_TEMPLATE

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPOSITORY_TEMPLATE
CLUSTER_NAME = "local"
# The stack's ClusterUser (it runs the sweeps), and the cluster user LOCAL_DEVELOPER's jobs run as: an unprivileged
# user, as on a ParallelCluster head node. LOCAL_OTHER's jobs run as another one (README, "The local stack").
CLUSTER_USER = checkout_user_name("hpcuser")
OTHER_CLUSTER_USER = checkout_user_name("hpcother")


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
    same time. ``push_hook`` installs the product's push hook in the cluster (as `push_hook.py install` does on a
    head node, with this machine's instance metadata service and the local cloud's endpoint), so that slurmctld
    reports each job's start and end to the stack's event bus; give such a stack a cluster of its own.
    ``advertised_cpus`` is how many CPUs the cluster's node offers (SlurmCluster's default, 16, if None), e.g. enough
    for a benchmark's jobs to run all at once.
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
        other_cluster_user: str = OTHER_CLUSTER_USER,
        schedule_period_seconds: float | None = LOCAL_SCHEDULE_PERIOD_SECONDS,
        push_hook: bool = False,
        advertised_cpus: int | None = None,
    ) -> None:
        self.cluster = SlurmCluster(
            local_state_root() / name,
            accounting=accounting,
            min_job_age=min_job_age,
            port_base=port_base,
            push_hook=push_hook,
            advertised_cpus=advertised_cpus,
        )
        self.push_hook = push_hook
        self.instance_metadata: LocalInstanceMetadata | None = None
        self.push_hook_installation: dict[str, object] | None = None
        self.cluster_user = cluster_user
        self.other_cluster_user = other_cluster_user
        # Who each local principal's jobs run as (CallerMapping table); LOCAL_UNMAPPED has no mapping.
        self.caller_mappings = {
            LOCAL_DEVELOPER.arn: cluster_user,
            LOCAL_OTHER.arn: other_cluster_user,
            EVENTS_CALLER_ARN: cluster_user,
        }
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
            ensure_cluster_user(self.other_cluster_user)
        except ClusterError as error:
            raise LocalStackError(str(error)) from error
        # Tracing needs the X-Ray daemon of a real Lambda environment.
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        self.cloud = LocalCloud(
            TEMPLATE,
            parameter_overrides=self.parameters,
            head_node=LocalHeadNode(env=self.cluster.env()),
            schedule_period_seconds=self.schedule_period_seconds,
            caller_mappings=self.caller_mappings,
        )
        self.cloud.start()
        if self.push_hook:
            self._install_push_hook()

    def _install_push_hook(self) -> None:
        """Runs the product's installer, as an operator runs it on the head node (README, "Completion pushed")."""
        self.instance_metadata = LocalInstanceMetadata()
        self.instance_metadata.start()
        cloud = self.running_cloud
        (bus_name,) = cloud.model.event_buses.values()
        done = subprocess.run(
            [
                PUSH_HOOK_PYTHON,
                str(PUSH_HOOK_SOURCE),
                "install",
                "--event-bus-name",
                bus_name,
                "--region",
                cloud.region,
                "--cluster-name",
                self.parameters["ClusterName"],
                "--install-dir",
                str(self.cluster.push_hook_dir),
                "--slurm-user",
                "root",  # the local cluster's SlurmUser
                "--endpoint-url",
                cloud.endpoint_url,
                "--imds-url",
                self.instance_metadata.url,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise LocalStackError(f"push_hook.py install failed: {done.stderr.strip()}")
        self.push_hook_installation = json.loads(done.stdout)

    def stop(self) -> None:
        if self.push_hook:
            # Without its configuration the hook does nothing: no event for a cloud that is gone.
            (self.cluster.push_hook_dir / push_hook_program.CONFIG_NAME).unlink(missing_ok=True)
        if self.instance_metadata is not None:
            self.instance_metadata.stop()
            self.instance_metadata = None
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
