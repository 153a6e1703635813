"""The Python client of the Slurm Job API; the ``sja`` command line is built on it.

from slurm_job_client import Client
job = Client().submit("run.sh", name="hello", time_limit_minutes=10)
view = job.wait()
"""

from slurm_job_client._version import __version__
from slurm_job_client.client import Client, Job
from slurm_job_client.errors import (
    ApiError,
    ConfigurationError,
    Conflict,
    InvalidRequest,
    NetworkError,
    NoSuchJob,
    NotAllowed,
    SjaError,
)

__all__ = [
    "ApiError",
    "Client",
    "ConfigurationError",
    "Conflict",
    "InvalidRequest",
    "Job",
    "NetworkError",
    "NoSuchJob",
    "NotAllowed",
    "SjaError",
    "__version__",
]
