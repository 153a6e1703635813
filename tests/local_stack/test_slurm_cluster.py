"""The local Slurm cluster: real daemons in a temporary state directory.

These tests use their own ports (PORT_BASE) so that they can run while the local stack's cluster runs.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack import slurm_cluster
from local_stack.slurm_cluster import ClusterError, NodeTopology, SlurmCluster, checkout_user_name, ensure_cluster_user

PORT_BASE = 16817
TEST_USER = checkout_user_name("slurmtest")
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "DEADLINE"}

slurm = pytest.mark.slurm


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state directory that cluster users can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="slurm-cluster-test-"))
    path.chmod(0o755)
    yield path
    SlurmCluster(path, port_base=PORT_BASE).stop()
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    return ensure_cluster_user(TEST_USER)


@pytest.fixture
def job_dir(user: pwd.struct_passwd) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="job-", dir=user.pw_dir))
    os.chown(path, user.pw_uid, user.pw_gid)
    yield path
    shutil.rmtree(path)


def run_as(user: pwd.struct_passwd, cluster: SlurmCluster, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **cluster.env()}
    return subprocess.run(
        ["/usr/sbin/runuser", "-u", user.pw_name, "--", *argv], env=env, capture_output=True, text=True, check=False
    )


def submit(user: pwd.struct_passwd, cluster: SlurmCluster, job_dir: Path, body: str) -> int:
    script = job_dir / "job.sh"
    script.write_text(f"#!/bin/bash\n{body}\n")
    os.chown(script, user.pw_uid, user.pw_gid)
    sbatch = [
        str(cluster.bin_dir / "sbatch"),
        "--parsable",
        f"--chdir={job_dir}",
        f"--output={job_dir}/stdout",
        str(script),
    ]
    submitted = run_as(user, cluster, sbatch)
    assert submitted.returncode == 0, submitted.stderr
    return int(submitted.stdout.strip().split(";")[0])


def wait_for_state(
    user: pwd.struct_passwd, cluster: SlurmCluster, job_id: int, states: set[str], timeout: float = 20
) -> str:
    squeue = [str(cluster.bin_dir / "squeue"), "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = run_as(user, cluster, squeue).stdout.strip()
        if state in states:
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {states} within {timeout} s")


def wait_for_end(user: pwd.struct_passwd, cluster: SlurmCluster, job_id: int) -> str:
    return wait_for_state(user, cluster, job_id, TERMINAL_STATES)


def processes_of(user: pwd.struct_passwd) -> list[int]:
    """Live (not zombie) processes owned by ``user``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == user.pw_uid and alive(int(entry.name)):
                pids.append(int(entry.name))
        except FileNotFoundError:
            continue  # ended meanwhile
    return pids


def wait_for_processes_of(user: pwd.struct_passwd, timeout: float = 20) -> list[int]:
    """The live processes of ``user`` once there is at least one (a job Slurm reports RUNNING may not have one yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pids := processes_of(user):
            return pids
        time.sleep(0.05)
    raise AssertionError(f"no process of {user.pw_name} within {timeout} s")


def scontrol(cluster: SlurmCluster, *args: str) -> str:
    shown = subprocess.run(
        [str(cluster.bin_dir / "scontrol"), *args],
        env={**os.environ, **cluster.env()},
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout


def config_value(cluster: SlurmCluster, name: str) -> str:
    match = re.search(rf"^{name}\s*=\s*(.*)$", scontrol(cluster, "show", "config"), re.MULTILINE)
    assert match, f"{name} missing from scontrol show config"
    return match.group(1).strip()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@slurm
def test_second_start_is_a_noop_and_a_users_job_runs_as_that_user(
    state_dir: Path, user: pwd.struct_passwd, job_dir: Path
) -> None:
    cluster = SlurmCluster(state_dir, port_base=PORT_BASE)
    cluster.start()
    first = cluster.pids()
    cluster.start()

    assert cluster.pids() == first
    assert set(first) == {"munged", "slurmctld", "slurmd"}
    job_id = submit(user, cluster, job_dir, 'echo "$(id -u) $(id -un)"')
    assert wait_for_end(user, cluster, job_id) == "COMPLETED"
    assert (job_dir / "stdout").read_text() == f"{user.pw_uid} {user.pw_name}\n"
    assert (job_dir / "stdout").stat().st_uid == user.pw_uid
    job = scontrol(cluster, "--oneliner", "show", "job", str(job_id))
    assert f"UserId={user.pw_name}({user.pw_uid})" in job
    assert "ExitCode=0:0" in job
    node = scontrol(cluster, "--oneliner", "show", "node", cluster.node_name)
    detected = slurm_cluster.detect_node()
    assert "CPUTot=16 " in node
    assert 0 < int(re.search(r"RealMemory=(\d+)", node).group(1)) < detected.real_memory_mb


@slurm
def test_changing_min_job_age_restarts_the_slurm_daemons_with_the_new_value(state_dir: Path) -> None:
    SlurmCluster(state_dir, port_base=PORT_BASE).start()
    cluster = SlurmCluster(state_dir, min_job_age=7, port_base=PORT_BASE)
    before = cluster.pids()
    assert config_value(cluster, "MinJobAge") == "300 sec"

    cluster.start()

    after = cluster.pids()
    assert config_value(cluster, "MinJobAge") == "7 sec"
    assert after["slurmctld"] != before["slurmctld"]
    assert after["slurmd"] != before["slurmd"]
    assert after["munged"] == before["munged"]  # its configuration did not change
    assert not alive(before["slurmctld"])


@slurm
def test_stop_ends_exactly_the_daemons_it_started_and_the_jobs(
    state_dir: Path, user: pwd.struct_passwd, job_dir: Path
) -> None:
    cluster = SlurmCluster(state_dir, port_base=PORT_BASE)
    cluster.start()
    ours = cluster.pids()
    job_id = submit(user, cluster, job_dir, "sleep 300")
    wait_for_state(user, cluster, job_id, {"RUNNING"})
    job_processes = wait_for_processes_of(user)  # slurmd starts the job's process a moment after RUNNING
    # A foreign "slurmctld": same process name, another SLURM_CONF. It must survive every stop.
    rename_and_wait = "open('/proc/self/comm', 'w').write('slurmctld'); import time; time.sleep(300)"
    decoy = subprocess.Popen([sys.executable, "-c", rename_and_wait], env={"SLURM_CONF": "/elsewhere/slurm.conf"})
    try:
        while Path(f"/proc/{decoy.pid}/comm").read_text().strip() != "slurmctld":
            time.sleep(0.01)
        cluster.stop()

        assert not any(alive(pid) for pid in ours.values())
        assert cluster.pids() == {}
        assert not cluster.is_running()
        assert processes_of(user) == []  # slurmd alone would have left the job running
        assert not any(alive(pid) for pid in job_processes)
        # A stale pid file now names the decoy (pid reuse): stop must leave it alone.
        (state_dir / "run" / "slurmctld.pid").write_text(f"{decoy.pid}\n")
        cluster.stop()
        assert decoy.poll() is None
    finally:
        decoy.send_signal(signal.SIGKILL)
        decoy.wait()


@slurm
def test_with_accounting_sacct_reports_a_finished_job(state_dir: Path, user: pwd.struct_passwd, job_dir: Path) -> None:
    cluster = SlurmCluster(state_dir, accounting=True, port_base=PORT_BASE)
    cluster.start()
    assert set(cluster.pids()) == {"munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"}
    assert config_value(cluster, "AccountingStorageType") == "accounting_storage/slurmdbd"
    assert (state_dir / "etc" / "slurmdbd.conf").stat().st_mode & 0o777 == 0o600

    job_id = submit(user, cluster, job_dir, "exit 3")
    assert wait_for_end(user, cluster, job_id) == "FAILED"
    sacct = [
        str(cluster.bin_dir / "sacct"),
        "--noheader",
        "--parsable2",
        "--allocations",
        f"--jobs={job_id}",
        "--format=JobIDRaw,State,ExitCode,User",
    ]
    deadline = time.monotonic() + 20  # slurmctld sends job records to slurmdbd asynchronously
    while (reported := run_as(user, cluster, sacct).stdout.strip()) != f"{job_id}|FAILED|3:0|{user.pw_name}":
        assert time.monotonic() < deadline, f"sacct still reports {reported!r}"
        time.sleep(0.2)


@slurm
def test_concurrent_starts_share_one_cluster(state_dir: Path) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            SlurmCluster(state_dir, port_base=PORT_BASE).start()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    cluster = SlurmCluster(state_dir, port_base=PORT_BASE)
    assert cluster.is_running()
    assert len(cluster.pids()) == 3


@slurm
def test_a_port_held_by_another_process_is_a_clear_error(state_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port may have TIME_WAIT connections
        port = SlurmCluster(state_dir, port_base=PORT_BASE).port_base  # shifted by $SLURM_JOB_API_PORT_OFFSET
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(ClusterError, match=rf"port {port} \(slurmctld\) is in use"):
            SlurmCluster(state_dir, port_base=PORT_BASE).start()
    assert SlurmCluster(state_dir, port_base=PORT_BASE).pids() == {}  # nothing left half-started


def test_a_state_directory_that_cluster_users_cannot_reach_is_refused(state_dir: Path) -> None:
    closed = state_dir / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(ClusterError, match="closed to other users"):
        SlurmCluster(closed / "slurm", port_base=PORT_BASE).start()


def test_start_refuses_to_run_without_root(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ClusterError, match="must be started as root"):
        SlurmCluster(state_dir, port_base=PORT_BASE).start()


def test_start_refuses_a_system_without_apt(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ClusterError, match="Debian-like"):
        SlurmCluster(state_dir, port_base=PORT_BASE).start()


def test_ensure_cluster_user_never_returns_root() -> None:
    with pytest.raises(ClusterError, match="uid 0"):
        ensure_cluster_user("root")


@pytest.mark.parametrize("name", ["-o", "Bad", "a b", "x" * 33, ""])
def test_ensure_cluster_user_rejects_invalid_names(name: str) -> None:
    with pytest.raises(ClusterError, match="invalid user name"):
        ensure_cluster_user(name)


@slurm
def test_ensure_cluster_user_creates_a_login_user_with_a_home(user: pwd.struct_passwd) -> None:
    assert user.pw_uid != 0
    assert Path(user.pw_dir).is_dir()
    assert Path(user.pw_dir).stat().st_uid == user.pw_uid
    assert ensure_cluster_user(TEST_USER) == user


def test_node_topology_is_parsed_from_slurmd_c() -> None:
    output = (
        "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105\n"
        "UpTime=0-00:12:27\n"
    )
    assert NodeTopology.parse(output) == NodeTopology(
        name="vm",
        cpus=2,
        boards=1,
        sockets_per_board=1,
        cores_per_socket=2,
        threads_per_core=1,
        real_memory_mb=24105,
    )
    with pytest.raises(ClusterError, match="cannot parse"):
        NodeTopology.parse("slurmd: error: something\n")
