"""The local cloud over scripted Slurm (tests/cloud_fixtures.py) for this directory's tests."""

from tests.cloud_fixtures import api, cloud, make_cloud, slurm

__all__ = ["api", "cloud", "make_cloud", "slurm"]
