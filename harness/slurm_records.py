"""What Slurm itself says about the jobs of a fault scenario, asked directly (as root), never through the product.

Two independent sources tell how many times Slurm took and ran each job of the API:

- Slurm's records of the jobs with the scenario's unique job name: ``sacct`` when the cluster keeps accounting, else
  ``squeue --states=all`` (slurmctld's memory, MinJobAge seconds after a job ended);
- the run ledger: every job of a scenario appends ``<Slurm job id> <working directory>`` to
  ``~/.fault-ledger/<job name>`` of the cluster user when it starts, so a job that ran twice shows twice even on a
  cluster without accounting whose controller has already forgotten it.

Both map a Slurm job to the API job through its working directory, the per-job directory
``~/.slurm-job-api-jobs/<jobId>/<submissionId>`` the head-node program gives every job (``~/.slurm-job-api/jobs/...``
in versions before the state directory).
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import time
from collections import defaultdict
from pathlib import Path

from local_stack.slurm_cluster import SlurmCluster

LEDGER_DIRECTORY = ".fault-ledger"
_API_JOB_IN_PATH = re.compile(
    r"/\.slurm-job-api(?:-jobs|/jobs)/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/"
)


def job_script(*, seconds: float = 0, exit_code: int = 0, after: str | None = None) -> str:
    """A batch script that records its run in the ledger, waits for the file ``after`` to exist if given (or for its
    directory to be gone: a scenario that ended early removes it), sleeps, then exits with ``exit_code``."""
    waits = f'until [ -e "{after}" ] || [ ! -d "{Path(after).parent}" ]; do sleep 0.1; done\n' if after else ""
    return (
        "#!/bin/bash\n"
        'mkdir -p "$HOME/' + LEDGER_DIRECTORY + '"\n'
        'echo "$SLURM_JOB_ID $PWD" >> "$HOME/' + LEDGER_DIRECTORY + '/$SLURM_JOB_NAME"\n'
        f"{waits}"
        f"sleep {seconds:g}\n"
        f"exit {exit_code}\n"
    )


def api_job_of(path: str) -> str | None:
    """The API job id in a job's working directory, or None for a directory that is not a per-job directory."""
    match = _API_JOB_IN_PATH.search(path.rstrip("/") + "/")
    return match.group(1) if match else None


class SlurmRecords:
    """Slurm's own answers about one cluster's jobs, and its controller, for the jobs of ``cluster_user``."""

    def __init__(self, cluster: SlurmCluster, cluster_user: str) -> None:
        self.cluster = cluster
        self.cluster_user = cluster_user

    # -- jobs by name ---------------------------------------------------------------------------------------------

    def slurm_jobs_named(self, name: str) -> dict[str, set[str]]:
        """Slurm job ids by API job id, of every job Slurm knows by this name (accounting, else the controller)."""
        if self.cluster.accounting:
            done = self.cluster.run(
                "sacct",
                "--noheader",
                "--parsable2",
                "--allocations",
                "--allusers",
                f"--name={name}",
                "--starttime=now-1days",
                "--format=JobIDRaw,WorkDir",
            )
        else:
            done = self.cluster.run("squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i|%Z")
        found: dict[str, set[str]] = defaultdict(set)
        for line in done.stdout.splitlines():
            slurm_job_id, _, directory = line.partition("|")
            api_job = api_job_of(directory)
            if api_job:
                found[api_job].add(slurm_job_id.strip())
        return dict(found)

    def runs_named(self, name: str) -> dict[str, list[str]]:
        """The ledger: Slurm job ids of every run, by API job id, of the jobs with this name."""
        ledger = Path(pwd.getpwnam(self.cluster_user).pw_dir) / LEDGER_DIRECTORY / name
        runs: dict[str, list[str]] = defaultdict(list)
        if ledger.exists():
            for line in ledger.read_text().splitlines():
                slurm_job_id, _, directory = line.partition(" ")
                api_job = api_job_of(directory)
                if api_job:
                    runs[api_job].append(slurm_job_id)
        return dict(runs)

    def forget_ledger(self, name: str) -> None:
        (Path(pwd.getpwnam(self.cluster_user).pw_dir) / LEDGER_DIRECTORY / name).unlink(missing_ok=True)

    # -- the controller -------------------------------------------------------------------------------------------

    def known_to_controller(self, slurm_job_id: str) -> bool:
        return self.cluster.run("squeue", "--noheader", "--states=all", f"--jobs={slurm_job_id}").returncode == 0

    def wait_until_forgotten(self, slurm_job_id: str, timeout: float = 100) -> float:
        """Waits until slurmctld no longer knows the job (MinJobAge passed and it purged it); returns the seconds."""
        started = time.monotonic()
        while self.known_to_controller(slurm_job_id):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"slurmctld still remembers job {slurm_job_id} after {timeout:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - started

    def controller_pid(self) -> int | None:
        return self.cluster.pids().get("slurmctld")

    def stop_controller(self, timeout: float = 30) -> int:
        """Stops slurmctld (SIGTERM to the pid in its pid file, as an operator's stop does); returns the old pid."""
        pid = self.controller_pid()
        if pid is None:
            raise RuntimeError("slurmctld is not running")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.controller_pid() == pid:
            if time.monotonic() > deadline:
                raise TimeoutError(f"slurmctld {pid} did not stop within {timeout:.0f} s")
            time.sleep(0.1)
        return pid

    def start_controller(self) -> int:
        """Starts what is missing of the cluster again (here: slurmctld), waits until the node runs jobs."""
        self.cluster.start()
        pid = self.controller_pid()
        if pid is None:
            raise RuntimeError("slurmctld did not start")
        return pid
