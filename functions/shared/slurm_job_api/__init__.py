"""Slurm Job API: the code shared by the API, submit, poll and finish functions (deployed as a Lambda layer)."""

__version__ = "0.1.0"
