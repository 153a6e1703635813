"""Captures real Slurm output for the parser tests into tests/fixtures/slurm/<scenario>.json.

Starts two private clusters (local_stack.slurm_cluster), one without and one with accounting, runs each scenario as
a non-root user and records the exact output of the commands the head-node program runs, at the moments that
matter (pending, running, just ended, purged from slurmctld's memory). Independent scenarios run in parallel; the
ones that disturb the whole cluster (a drained or failed node, a stopped controller) run one after another at the
end. Takes about three minutes.

Run as root from the repository root:

    .venv/bin/python -m scripts.capture_slurm_fixtures [--only SCENARIO ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from local_stack.slurm_cluster import REPO_ROOT, SlurmCluster, ensure_cluster_user, port_offset

OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "slurm"
STATE_ROOT = REPO_ROOT / ".local-stack" / "capture"
CAPTURE_USER = "slurmcapture"
MIN_JOB_AGE = 5  # seconds: finished jobs leave squeue/scontrol soon, so the purged moment can be captured
NO_ACCOUNTING_PORT_BASE = 16917  # both clusters beside the local stack's (6817)
ACCOUNTING_PORT_BASE = 17017
NEVER_EXISTED = "999999"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "DEADLINE"}

# The status commands of the head-node program: the contract with its parsers. "{id}" is the Slurm job id.
SQUEUE = ["squeue", "--noheader", "--array", "--states=all", "--jobs={id}", "--format=%i|%A|%K|%T|%r|%V|%S|%e"]
SCONTROL = ["scontrol", "--oneliner", "show", "job", "{id}"]
SACCT = [
    "sacct",
    "--noheader",
    "--parsable2",
    "--allocations",
    "--jobs={id}",
    "--format=JobID,JobIDRaw,State,ExitCode,Reason,Submit,Start,End",
]
SHOW_CONFIG = ["scontrol", "show", "config"]
USER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC"}


class CaptureError(RuntimeError):
    """A scenario did not reach the state it waits for."""


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise CaptureError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


class Session:
    """One running cluster and the user whose jobs and commands are captured."""

    def __init__(self, cluster: SlurmCluster, user: pwd.struct_passwd) -> None:
        self.cluster = cluster
        self.user = user
        self.env = {**USER_ENV, **cluster.env()}
        self.job_root = Path(user.pw_dir) / "capture" / ("accounting" if cluster.accounting else "no-accounting")
        self.version = self.as_root(["scontrol", "--version"]).stdout.split()[-1]
        self.conditions = (
            f"Captured on one node advertising {cluster.advertised_cpus} CPUs, MinJobAge={cluster.min_job_age} s, "
            f"TZ=UTC, commands run as user {user.pw_name} (runuser) with SLURM_CONF."
        )
        if cluster.accounting:
            self.conditions += (
                " slurmctld sends job records to slurmdbd asynchronously: sacct can lag behind squeue and scontrol "
                "(an older state, End=Unknown, ExitCode 0:0) until a moment after the end."
            )
        self._scenario_jobs = threading.local()  # each scenario runs in its own thread

    @contextmanager
    def cleanup(self) -> Iterator[None]:
        """Cancels, when the scenario running in this thread ends (even by failure), every job it submitted."""
        self._scenario_jobs.ids = []
        try:
            yield
        finally:
            if self._scenario_jobs.ids:
                self.as_root(["scancel", *self._scenario_jobs.ids], check=False)

    def track(self, job_id: str) -> None:
        if job_id:
            self._scenario_jobs.ids.append(job_id)

    def _argv(self, argv: list[str]) -> list[str]:
        return [str(self.cluster.bin_dir / argv[0]), *argv[1:]]

    def as_user(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Runs a Slurm client command (bare name) as the capture user, the way the head-node program does."""
        return subprocess.run(
            ["/usr/sbin/runuser", "-u", self.user.pw_name, "--", *self._argv(argv)],
            env=self.env,
            cwd=self.user.pw_dir,
            capture_output=True,
            text=True,
            check=False,
        )

    def as_root(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Administration (drain, shutdown): not part of what is recorded."""
        return subprocess.run(self._argv(argv), env=self.env, capture_output=True, text=True, check=check)

    def wait_for_empty_queue(self, timeout: float = 60) -> None:
        """Waits until none of the user's jobs is pending, running or completing."""
        squeue = ["squeue", "--noheader", f"--user={self.user.pw_name}", "--states=PD,R,CG", "--format=%i"]
        wait_for(lambda: not self.as_user(squeue).stdout.strip(), "an empty queue", timeout)

    def show_job(self, job_id: str) -> str:
        return self.as_user(["scontrol", "--oneliner", "show", "job", job_id]).stdout

    def wait_for_reason(self, job_id: str, reason: str, timeout: float = 15) -> None:
        wait_for(lambda: f"Reason={reason}" in self.show_job(job_id), f"job {job_id} to wait for {reason}", timeout)

    def states(self, job_id: str) -> list[str]:
        """Job states as squeue shows them (one per array task); [] once the job has left slurmctld's memory."""
        shown = self.as_user(["squeue", "--noheader", "--array", "--states=all", f"--jobs={job_id}", "--format=%T"])
        return shown.stdout.split() if shown.returncode == 0 else []

    def wait_for_states(self, job_id: str, accept: Callable[[list[str]], bool], what: str, timeout: float) -> None:
        wait_for(lambda: accept(self.states(job_id)), f"job {job_id} {what}", timeout)

    def wait_until_running(self, job_id: str, timeout: float = 30) -> None:
        self.wait_for_states(job_id, lambda states: "RUNNING" in states, "to run", timeout)

    def wait_until_ended(self, job_id: str, timeout: float = 30) -> None:
        self.wait_for_states(job_id, lambda states: bool(states) and set(states) <= TERMINAL, "to end", timeout)

    def wait_until_purged(self, job_id: str, timeout: float = 120) -> None:
        """Slurm forgets a finished job MinJobAge seconds after its end, at its next periodic purge."""

        def purged() -> bool:
            shown = self.as_user(["squeue", "--noheader", f"--jobs={job_id}"])
            return shown.returncode != 0 and "Invalid job id" in shown.stderr

        wait_for(purged, f"job {job_id} to be purged", timeout)

    def wait_for_accounting(self, job_id: str, timeout: float = 30) -> None:
        """slurmctld sends job records to slurmdbd asynchronously: sacct can lag behind squeue."""

        def recorded() -> bool:
            shown = self.as_user(
                ["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}", "--format=State"]
            )
            states = [line.split()[0] for line in shown.stdout.splitlines() if line]  # "CANCELLED by 1005"
            return bool(states) and all(state in TERMINAL for state in states)

        if self.cluster.accounting:
            wait_for(recorded, f"accounting to record the end of job {job_id}", timeout)


@dataclass
class Recorder:
    """The fixture of one scenario, filled as the scenario runs."""

    session: Session
    scenario: str
    description: str
    notes: list[str] = field(default_factory=list)
    submit_argv: list[str] | None = None
    commands: list[dict[str, object]] = field(default_factory=list)

    def record(self, moment: str, argv: list[str], job_id: str = "") -> subprocess.CompletedProcess[str]:
        """Runs a command as the user and records it; "{id}" in ``argv`` stands for ``job_id``."""
        argv = [arg.replace("{id}", job_id) for arg in argv]
        result = self.session.as_user(argv)
        self._append(moment, argv, result)
        return result

    def _append(self, moment: str, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.commands.append(
            {"moment": moment, "argv": argv, "rc": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
        )

    def snapshot(self, job_id: str, moment: str) -> None:
        """Records the three status commands of the head-node program for ``job_id``."""
        for argv in (SQUEUE, SCONTROL, SACCT):
            self.record(moment, argv, job_id)

    def snapshot_in_parallel(self, job_id: str, moment: str) -> None:
        """As snapshot, for when each command takes many seconds to fail (the controller is down)."""
        commands = [[arg.replace("{id}", job_id) for arg in argv] for argv in (SQUEUE, SCONTROL, SACCT)]
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            results = list(pool.map(self.session.as_user, commands))
        for argv, result in zip(commands, results, strict=True):
            self._append(moment, argv, result)

    def sbatch(self, options: list[str], body: str, moment: str = "submit") -> str:
        """Submits a job script as the user, records sbatch's output and returns the job id ('' if refused)."""
        job_dir = self.session.job_root / self.scenario
        script = job_dir / "job.sh"
        _write_user_file(script, f"#!/bin/bash\n{body}\n", self.session.user)
        output = "stdout-%a.txt" if any(option.startswith("--array") for option in options) else "stdout.txt"
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={self.scenario}",
            f"--comment=slurm-job-api:capture-{self.scenario}",
            f"--chdir={job_dir}",
            f"--output={job_dir / output}",
            *options,
            str(script),
        ]
        if self.submit_argv is None:
            self.submit_argv = argv
        result = self.record(moment, argv)
        job_id = result.stdout.strip().split(";")[0] if result.returncode == 0 else ""
        self.session.track(job_id)
        return job_id

    def helper_job(self, options: list[str], body: str) -> str:
        """Submits a job that the scenario needs but whose output is not part of the fixture."""
        job_dir = self.session.job_root / self.scenario
        script = job_dir / "helper.sh"
        _write_user_file(script, f"#!/bin/bash\n{body}\n", self.session.user)
        argv = [
            "sbatch",
            "--parsable",
            f"--chdir={job_dir}",
            f"--output={job_dir / 'helper.txt'}",
            *options,
            str(script),
        ]
        result = self.session.as_user(argv)
        if result.returncode != 0:
            raise CaptureError(f"helper job refused: {result.stderr.strip()}")
        job_id = result.stdout.strip().split(";")[0]
        self.session.track(job_id)
        return job_id

    def cancel(self, job_id: str, moment: str = "cancel") -> None:
        self.record(moment, ["scancel", job_id])

    def fixture(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "slurm_version": self.session.version,
            "accounting": self.session.cluster.accounting,
            "submit_argv": self.submit_argv,
            "notes": " ".join([*self.notes, self.session.conditions]),
            "commands": self.commands,
        }


def _write_user_file(path: Path, text: str, user: pwd.struct_passwd) -> None:
    for directory in reversed([path.parent, *path.parent.parents]):
        if directory.is_relative_to(user.pw_dir) and not directory.exists():
            directory.mkdir(exist_ok=True)  # scenarios run in parallel
            os.chown(directory, user.pw_uid, user.pw_gid)
    path.write_text(text)
    os.chown(path, user.pw_uid, user.pw_gid)


# --------------------------------------------------------------------------------------------------- scenarios

Scenario = Callable[[Session], list[Recorder]]  # a scenario may produce more than one fixture
SCENARIOS: dict[str, tuple[str, Scenario]] = {}  # name -> (phase, function)


def scenario(phase: str) -> Callable[[Scenario], Scenario]:
    """Registers a scenario. Phases: "no-accounting", "parallel" and "serial" (the last two with accounting)."""

    def register(function: Scenario) -> Scenario:
        SCENARIOS[function.__name__] = (phase, function)
        return function

    return register


def ended_then_purged(recorder: Recorder, job_id: str) -> None:
    """The two moments every finished job goes through: just ended, then forgotten by slurmctld."""
    recorder.session.wait_until_ended(job_id)
    recorder.snapshot(job_id, "ended")
    recorder.session.wait_for_accounting(job_id)
    recorder.session.wait_until_purged(job_id)
    recorder.snapshot(job_id, "purged")


def lifecycle(recorder: Recorder, options: list[str], body: str) -> Recorder:
    job_id = recorder.sbatch(options, body)
    recorder.session.wait_until_running(job_id)
    recorder.snapshot(job_id, "running")
    ended_then_purged(recorder, job_id)
    return recorder


@scenario("no-accounting")
def show_config_no_accounting(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "show_config_no_accounting", "scontrol show config without accounting (MinJobAge 5).")
    recorder.record("config", SHOW_CONFIG)
    return [recorder]


@scenario("no-accounting")
def no_accounting_completed(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "no_accounting_completed", "A job that exits 0 on a cluster without accounting.")
    recorder.notes.append("Without slurmdbd every sacct call fails; once purged, no command knows the job.")
    return [lifecycle(recorder, [], "sleep 2; echo done")]


@scenario("no-accounting")
def no_accounting_failed(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "no_accounting_failed", "A job that exits 3 on a cluster without accounting.")
    job_id = recorder.sbatch([], "sleep 1; exit 3")
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("no-accounting")
def no_accounting_unknown_job(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "no_accounting_unknown_job", f"Job id {NEVER_EXISTED} never existed; no accounting.")
    recorder.snapshot(NEVER_EXISTED, "never existed")
    return [recorder]


@scenario("parallel")
def show_config_accounting(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "show_config_accounting", "scontrol show config with slurmdbd accounting.")
    recorder.record("config", SHOW_CONFIG)
    return [recorder]


@scenario("parallel")
def completed(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "completed", "A job that exits 0.")
    recorder.notes.append("sacct can lag behind squeue by a moment at the end: compare the 'ended' moment.")
    return [lifecycle(recorder, [], "sleep 2; echo done")]


@scenario("parallel")
def failed(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "failed", "A job whose script exits 3.")
    return [lifecycle(recorder, [], "sleep 2; exit 3")]


@scenario("parallel")
def killed_by_signal(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "killed_by_signal", "A job whose script kills itself with SIGKILL (kill -9 $$).")
    recorder.notes.append("Slurm reports FAILED with ExitCode 0:9 (signal 9); squeue's reason is JobLaunchFailure.")
    return [lifecycle(recorder, [], "sleep 2; kill -9 $$")]


@scenario("parallel")
def cancelled_running(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "cancelled_running", "A running job cancelled by its owner with scancel.")
    recorder.notes.append("sacct shows 'CANCELLED by <uid>' (the uid of the user who cancelled).")
    job_id = recorder.sbatch([], "sleep 300")
    session.wait_until_running(job_id)
    recorder.snapshot(job_id, "running")
    recorder.cancel(job_id)
    ended_then_purged(recorder, job_id)
    recorder.cancel(job_id, "cancel after the end")
    return [recorder]


@scenario("parallel")
def cancelled_pending(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "cancelled_pending", "A job held by --begin=now+3600 (BeginTime), then cancelled.")
    job_id = recorder.sbatch(["--begin=now+3600"], "echo never")
    session.wait_for_states(job_id, lambda states: states == ["PENDING"], "to be pending", 10)
    recorder.snapshot(job_id, "pending")
    recorder.cancel(job_id)
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def timeout(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "timeout", "A job with --time=1 that sleeps 300 s: killed at its time limit.")
    recorder.notes.append(
        "Slurm enforces time limits periodically: the end comes 60-90 s after the start. scontrol shows the "
        "SIGTERM that ended the script (ExitCode 0:15), sacct shows ExitCode 0:0."
    )
    job_id = recorder.sbatch(["--time=1"], "sleep 300")
    session.wait_until_running(job_id)
    recorder.snapshot(job_id, "running")
    session.wait_until_ended(job_id, timeout=150)
    recorder.snapshot(job_id, "ended")
    session.wait_for_accounting(job_id)
    session.wait_until_purged(job_id)
    recorder.snapshot(job_id, "purged")
    return [recorder]


@scenario("parallel")
def pending_dependency(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "pending_dependency", "A job with --dependency=afterok on a job that still runs.")
    recorder.notes.append("Cancelling the job it depends on turns the reason into DependencyNeverSatisfied.")
    blocker = recorder.helper_job([], "sleep 300")
    job_id = recorder.sbatch([f"--dependency=afterok:{blocker}"], "echo after")
    session.wait_for_states(job_id, lambda states: states == ["PENDING"], "to be pending", 10)
    recorder.snapshot(job_id, "pending")
    session.as_user(["scancel", blocker])
    session.wait_until_ended(blocker)
    session.wait_for_reason(job_id, "DependencyNeverSatisfied")
    recorder.snapshot(job_id, "dependency can never be satisfied")
    recorder.cancel(job_id)
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def pending_dependency_never_satisfied(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session,
        "pending_dependency_never_satisfied",
        "A job with --dependency=afterok on a job that already failed: it stays pending until cancelled.",
    )
    failed_job = recorder.helper_job([], "exit 1")
    session.wait_until_ended(failed_job)
    job_id = recorder.sbatch([f"--dependency=afterok:{failed_job}"], "echo never")
    session.wait_for_reason(job_id, "DependencyNeverSatisfied")
    recorder.snapshot(job_id, "pending")
    recorder.cancel(job_id)
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def pending_partition_time_limit(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session,
        "pending_partition_time_limit",
        "--time=5 in partition 'short' (MaxTime=1): accepted, pending forever with PartitionTimeLimit.",
    )
    job_id = recorder.sbatch(["--partition=short", "--time=5"], "echo never")
    session.wait_for_states(job_id, lambda states: states == ["PENDING"], "to be pending", 10)
    session.wait_for_reason(job_id, "PartitionTimeLimit")
    recorder.snapshot(job_id, "pending")
    recorder.cancel(job_id)
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def deadline(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session,
        "deadline",
        "--begin=now+5 --deadline=now+15 --time=1: once eligible it cannot end before its deadline, so Slurm ends it "
        "as DEADLINE.",
    )
    recorder.notes.append(
        "Slurm checks deadlines only for jobs that could start: a job held by a dependency, by --hold or by "
        "PartitionTimeLimit stays pending past its deadline. The job never started: sacct shows Start=None."
    )
    job_id = recorder.sbatch(["--begin=now+5", "--deadline=now+15", "--time=1"], "echo late")
    session.wait_for_states(job_id, lambda states: states == ["PENDING"], "to be pending", 10)
    recorder.snapshot(job_id, "pending")
    session.wait_until_ended(job_id, timeout=90)
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def array_completed(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "array_completed", "--array=1-3; every task exits 0.")
    recorder.notes.append("sbatch --parsable prints the array's master job id.")
    job_id = recorder.sbatch(["--array=1-3"], 'sleep 1; echo "task $SLURM_ARRAY_TASK_ID"')
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def array_throttled_mid_run(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session, "array_throttled_mid_run", "--array=1-6%2 (two tasks at a time), captured with tasks in every state."
    )
    recorder.notes.append(
        "squeue --array lists every pending task (%A is then the master id); scontrol shows them as one record "
        "(ArrayTaskId=3-6%2) and sacct as one line (<id>_[3-6%2])."
    )
    job_id = recorder.sbatch(["--array=1-6%2"], "sleep 3")

    def mixed(states: list[str]) -> bool:
        return {"PENDING", "RUNNING", "COMPLETED"} <= set(states)

    session.wait_for_states(job_id, mixed, "to have pending, running and completed tasks", 30)
    recorder.snapshot(job_id, "mid-run")
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def array_task_fails(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "array_task_fails", "--array=1-3 where task 2 exits 4 and the others exit 0.")
    job_id = recorder.sbatch(["--array=1-3"], 'sleep 1; if [ "$SLURM_ARRAY_TASK_ID" = 2 ]; then exit 4; fi')
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def array_cancelled_mid_run(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session, "array_cancelled_mid_run", "--array=1-4%2 of sleep 300: cancelled (master id) with two tasks running."
    )
    job_id = recorder.sbatch(["--array=1-4%2"], "sleep 300")
    session.wait_for_states(job_id, lambda states: states.count("RUNNING") == 2, "to run two tasks", 30)
    recorder.snapshot(job_id, "running")
    recorder.cancel(job_id)
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def sbatch_invalid_partition(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "sbatch_invalid_partition", "sbatch refuses a partition that does not exist.")
    recorder.sbatch(["--partition=nosuchpartition"], "echo never")
    return [recorder]


@scenario("parallel")
def sbatch_invalid_dependency(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "sbatch_invalid_dependency", "sbatch refuses a malformed --dependency.")
    recorder.sbatch(["--dependency=afterok:notajob"], "echo never")
    return [recorder]


@scenario("parallel")
def sbatch_memory_unsatisfiable(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session, "sbatch_memory_unsatisfiable", "sbatch refuses --mem larger than any node (here 1 TiB)."
    )
    recorder.sbatch(["--mem=1048576"], "echo never")
    return [recorder]


@scenario("parallel")
def sbatch_dependency_on_unknown_job(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session,
        "sbatch_dependency_on_unknown_job",
        f"--dependency=afterok:{NEVER_EXISTED} (a job id Slurm does not know) is accepted and the job runs.",
    )
    recorder.notes.append("Slurm cannot tell a purged job from one that never existed, so it treats it as done.")
    job_id = recorder.sbatch([f"--dependency=afterok:{NEVER_EXISTED}"], "echo ran")
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("parallel")
def unknown_job(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "unknown_job", f"Job id {NEVER_EXISTED} never existed; accounting on.")
    recorder.snapshot(NEVER_EXISTED, "never existed")
    recorder.cancel(NEVER_EXISTED)
    return [recorder]


@scenario("serial")
def pending_resources(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session,
        "pending_resources",
        "A 1-CPU job while a 16-CPU job fills the node: pending with reason Resources.",
    )
    blocker = recorder.helper_job(["--cpus-per-task=16"], "sleep 300")
    session.wait_until_running(blocker)
    job_id = recorder.sbatch([], "echo later")
    session.wait_for_reason(job_id, "Resources")
    recorder.snapshot(job_id, "pending")
    # The next job waits behind this one: reason Priority.
    priority = Recorder(
        session,
        "pending_priority",
        "A second 1-CPU job behind one that waits for Resources: pending with reason Priority.",
    )
    second = priority.sbatch([], "echo later")
    session.wait_for_reason(second, "Priority")
    priority.snapshot(second, "pending")
    session.as_user(["scancel", blocker])
    recorder.cancel(job_id)
    priority.cancel(second)
    for job, job_recorder in ((job_id, recorder), (second, priority)):
        session.wait_until_ended(job)
        job_recorder.snapshot(job, "ended")
    return [recorder, priority]


@scenario("serial")
def pending_node_drained(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session, "pending_node_drained", "A job submitted while the only node is drained, then resumed and run."
    )
    recorder.notes.append("The node was drained with `scontrol update nodename=<node> state=drain reason=maintenance`.")
    node = session.cluster.node_name
    session.as_root(["scontrol", "update", f"nodename={node}", "state=drain", "reason=maintenance"])
    try:
        job_id = recorder.sbatch([], "echo ran")
        session.wait_for_reason(job_id, "ReqNodeNotAvail")
        recorder.snapshot(job_id, "pending")
    finally:
        session.as_root(["scontrol", "update", f"nodename={node}", "state=resume"])
    ended_then_purged(recorder, job_id)
    return [recorder]


@scenario("serial")
def node_fail(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session, "node_fail", "A running --no-requeue job whose node fails (slurmd killed, node set DOWN)."
    )
    recorder.notes.append(
        "slurmd was killed with SIGKILL and the node set down with `scontrol update nodename=<node> state=down "
        "reason=simulated-node-failure`; then slurmd was started again (ReturnToService=2 brings the node back)."
    )
    requeued = Recorder(
        session,
        "node_fail_requeued",
        "The same node failure for a job that may be requeued (Slurm's default): it goes back to PENDING.",
    )
    requeued.notes.append("Requeued batch jobs wait BeginTime (about 2 minutes) and count Restarts=1.")
    job_id = recorder.sbatch(["--no-requeue"], "sleep 300")
    second = requeued.sbatch([], "sleep 300")
    session.wait_until_running(job_id)
    session.wait_until_running(second)
    recorder.snapshot(job_id, "running")
    os.kill(session.cluster.pids()["slurmd"], signal.SIGKILL)
    node = session.cluster.node_name
    session.as_root(["scontrol", "update", f"nodename={node}", "state=down", "reason=simulated-node-failure"])
    session.wait_until_ended(job_id)
    recorder.snapshot(job_id, "node failed")
    session.wait_for_states(second, lambda states: states == ["PENDING"], "to be requeued", 15)
    requeued.snapshot(second, "requeued")
    session.cluster.start()  # slurmd again
    requeued.cancel(second)
    session.wait_until_ended(second)
    requeued.snapshot(second, "ended")
    session.wait_for_accounting(job_id)
    session.wait_until_purged(job_id)
    recorder.snapshot(job_id, "purged")
    return [recorder, requeued]


@scenario("serial")
def controller_down(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session, "controller_down", "slurmctld stopped: sbatch, squeue and scontrol fail; sacct still answers."
    )
    recorder.notes.append(
        "Stopped with `scontrol shutdown slurmctld`. The clients retry before failing: sbatch for about 9 s, "
        "squeue and scontrol for about 18 s."
    )
    job_id = recorder.helper_job([], "echo done")
    session.wait_until_ended(job_id)
    session.wait_for_accounting(job_id)
    session.as_root(["scontrol", "shutdown", "slurmctld"])
    try:
        wait_for(lambda: "slurmctld" not in session.cluster.pids(), "slurmctld to stop", 30)
        recorder.sbatch([], "echo never", moment="submit while the controller is down")
        recorder.snapshot_in_parallel(job_id, "controller down (job ended earlier)")
    finally:
        session.cluster.start()
    return [recorder]


@scenario("serial")
def accounting_down(session: Session) -> list[Recorder]:
    recorder = Recorder(session, "accounting_down", "slurmdbd stopped: sacct fails; squeue and scontrol answer.")
    recorder.notes.append("Stopped with `sacctmgr --immediate shutdown`.")
    job_id = recorder.sbatch([], "echo done")
    session.wait_until_ended(job_id)
    session.wait_for_accounting(job_id)
    session.as_root(["sacctmgr", "--immediate", "shutdown"], check=False)  # fails as the connection closes
    try:
        wait_for(lambda: "slurmdbd" not in session.cluster.pids(), "slurmdbd to stop", 30)
        recorder.snapshot(job_id, "accounting down (job ended)")
    finally:
        session.cluster.start()
    return [recorder]


@scenario("serial")
def out_of_memory(session: Session) -> list[Recorder]:
    recorder = Recorder(
        session, "out_of_memory", "--mem=50M and a script that touches 400 MB: killed by the cgroup OOM handler."
    )
    recorder.notes.append(
        "Captured with task/cgroup and ConstrainRAMSpace=yes (SlurmCluster(constrain_memory=True)); the local "
        "stack's default cluster has no cgroups and does not enforce --mem. Without cgroups, jobacct_gather's "
        "OverMemoryKill ends such a job as FAILED 0:9 (JobLaunchFailure), not OUT_OF_MEMORY."
    )
    cluster = session.cluster
    constrained = SlurmCluster(
        cluster.state_dir,
        accounting=cluster.accounting,
        min_job_age=cluster.min_job_age,
        constrain_memory=True,
        port_base=cluster.port_base - port_offset(),  # the same ports: SlurmCluster adds the offset again
        enforce_part_limits=cluster.enforce_part_limits,
    )
    constrained.start()
    try:
        hog = 'python3 -c "a = bytearray(400 * 2**20); a[::4096] = b\\"x\\" * len(a[::4096])"'
        job_id = recorder.sbatch(["--mem=50M"], hog)
        ended_then_purged(recorder, job_id)
    finally:
        cluster.start()  # back to the configuration without cgroups
    return [recorder]


# ------------------------------------------------------------------------------------------------------ driver


def run_phase(session: Session, names: Iterable[str], parallel: bool) -> tuple[list[Recorder], list[str]]:
    recorders: list[Recorder] = []
    failures: list[str] = []
    lock = threading.Lock()

    def run(name: str) -> None:
        began = time.monotonic()
        try:
            with session.cleanup():
                produced = SCENARIOS[name][1](session)
        except Exception:  # noqa: BLE001 - one failed scenario must not lose the others
            with lock:
                failures.append(f"{name}: {traceback.format_exc(limit=3)}")
            print(f"FAILED {name}", file=sys.stderr)
            return
        with lock:
            recorders.extend(produced)
        print(f"captured {name} ({time.monotonic() - began:.0f} s)", file=sys.stderr)

    names = list(names)
    if parallel:
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            list(pool.map(run, names))
    else:
        for name in names:
            run(name)
    return recorders, failures


def capture(selected: list[str], out_dir: Path) -> int:
    user = ensure_cluster_user(CAPTURE_USER)
    for path in (STATE_ROOT, Path(user.pw_dir) / "capture"):
        shutil.rmtree(path, ignore_errors=True)  # fresh clusters: job ids start at 1 on every run
    STATE_ROOT.mkdir(parents=True)
    STATE_ROOT.chmod(0o755)
    # EnforcePartLimits=NO, as when these were captured: scenarios such as pending_partition_time_limit need Slurm
    # to accept a job over its partition's limits (the local stack's clusters refuse it, as ParallelCluster's do).
    clusters = {
        "no-accounting": SlurmCluster(
            STATE_ROOT / "no-accounting",
            min_job_age=MIN_JOB_AGE,
            port_base=NO_ACCOUNTING_PORT_BASE,
            enforce_part_limits="NO",
        ),
        "accounting": SlurmCluster(
            STATE_ROOT / "accounting",
            accounting=True,
            min_job_age=MIN_JOB_AGE,
            port_base=ACCOUNTING_PORT_BASE,
            enforce_part_limits="NO",
        ),
    }
    by_phase: dict[str, list[str]] = {}
    for name in selected:
        by_phase.setdefault(SCENARIOS[name][0], []).append(name)
    began = time.monotonic()
    try:
        for cluster in clusters.values():
            cluster.start()
        plain = Session(clusters["no-accounting"], user)
        accounted = Session(clusters["accounting"], user)
        with ThreadPoolExecutor(max_workers=2) as pool:
            without = pool.submit(run_phase, plain, by_phase.get("no-accounting", []), True)
            with_accounting = pool.submit(run_phase, accounted, by_phase.get("parallel", []), True)
            recorders, failures = without.result()
            more, more_failures = with_accounting.result()
        accounted.wait_for_empty_queue()  # the serial scenarios need the whole node
        serial, serial_failures = run_phase(accounted, by_phase.get("serial", []), False)
        recorders += more + serial
        failures += more_failures + serial_failures
    finally:
        for cluster in clusters.values():
            cluster.stop()
    out_dir.mkdir(parents=True, exist_ok=True)
    for recorder in sorted(recorders, key=lambda r: r.scenario):
        path = out_dir / f"{recorder.scenario}.json"
        path.write_text(json.dumps(recorder.fixture(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(recorders)} fixtures to {out_dir} in {time.monotonic() - began:.0f} s", file=sys.stderr)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.capture_slurm_fixtures", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), metavar="SCENARIO", help="default: all")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("error: run as root (the Slurm daemons and the capture user need it)", file=sys.stderr)
        return 2
    return capture(args.only or list(SCENARIOS), args.out)


if __name__ == "__main__":
    sys.exit(main())
