"""The SAM CLI, with ``--docker-network host`` giving the function's container the host's network.

SAM CLI 1.170 (the version scripts/bootstrap-tools.sh pins) takes ``--docker-network host`` but creates the container
on Docker's default network all the same and publishes the Runtime Interface Emulator's port (aws/aws-sam-cli issues
3609 and 4236). On a Docker daemon without a bridge network SAM then cannot reach the container, and a function on any
bridge cannot reach the local stack, which listens on this machine's loopback only. Here, for a container whose
network is ``host``: Docker's host network mode, and the emulator listening on the loopback port SAM connects to,
with its Runtime API on a free loopback port (two containers never share one). Everything else is SAM's own.

Run with the SAM CLI's Python: ``.venv-sam/bin/python scripts/sam_local/sam_host_network.py local invoke ...``.
"""

import contextvars
import socket
import sys

from docker.models.containers import ContainerCollection
from samcli.cli.main import cli
from samcli.local.docker.container import Container

HOST_NETWORK = "host"
_stock_create = Container.create
_stock_docker_create = ContainerCollection.create
# Set while SAM creates a container on the host network: Docker's client refuses published ports in host mode.
_on_host_network = contextvars.ContextVar("on_host_network", default=False)


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _create_on_host_network(container: Container, context: object) -> str:
    if container.network_id != HOST_NETWORK:
        return _stock_create(container, context)
    entrypoint = list(container._entrypoint or [])
    if entrypoint and entrypoint[0].endswith("aws-lambda-rie"):
        container._entrypoint = [
            entrypoint[0],
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{container.rapid_port_host}",
            "--runtime-api-address",
            f"127.0.0.1:{_free_loopback_port()}",
            *entrypoint[1:],
        ]
    container._container_opts = {**(container._container_opts or {}), "network_mode": HOST_NETWORK}
    token = _on_host_network.set(True)
    try:
        return _stock_create(container, context)
    finally:
        _on_host_network.reset(token)


def _docker_create(collection: ContainerCollection, image: str, command: object = None, **kwargs: object) -> object:
    if _on_host_network.get():
        kwargs.pop("ports", None)  # no publishing in host mode: SAM reaches the emulator at its own address above
    return _stock_docker_create(collection, image, command, **kwargs)


Container.create = _create_on_host_network
ContainerCollection.create = _docker_create

if __name__ == "__main__":
    sys.exit(cli())
