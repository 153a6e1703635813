"""A real single-node Slurm cluster on this machine, for the local stack and the tests.

Everything the cluster writes (configuration, state, spool, logs, pid files, the MariaDB data directory when
accounting is on) lives under one state directory. Daemons are identified by their pid files there, and a pid only
counts as ours when the process has the expected name and was started with ``SLURM_CONF`` pointing at our
slurm.conf, so ``stop`` never ends anything this module did not start.

munged runs privately as well (its own key, socket, pid and log under the state directory, named in slurm.conf by
``AuthInfo=socket=...``), so a system munged that happens to run is neither used nor disturbed.

Client commands need the cluster's environment (``cluster.run("squeue", ...)`` gives it, or
``subprocess.run([...], env={**os.environ, **cluster.env()})``). Without ``SLURM_CONF`` they fail with a DNS SRV lookup
error.

CLI::

    python -m local_stack.slurm_cluster {start,stop,status} [--state-dir DIR] [--accounting] [--min-job-age SECONDS]
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The product's push hook, a stdlib program (the local stack does not import the product's package).
PUSH_HOOK_SOURCE = REPO_ROOT / "functions" / "shared" / "slurm_job_api" / "push_hook.py"
_PUSH_HOOK_SPEC = importlib.util.spec_from_file_location("push_hook", PUSH_HOOK_SOURCE)
push_hook_program = importlib.util.module_from_spec(_PUSH_HOOK_SPEC)
_PUSH_HOOK_SPEC.loader.exec_module(push_hook_program)
# The hook runs with the head node's python3 (the system's), as `push_hook.py install` run by it installs it.
PUSH_HOOK_PYTHON = "/usr/bin/python3"


def local_state_root() -> Path:
    """Where the local stack keeps its state: $SLURM_JOB_API_STATE_DIR, else <repo>/.local-stack — unless the
    repository sits where other users cannot reach (e.g. under /root), since cluster users must read slurm.conf:
    then /var/lib/slurm-job-api-local/<hash of the repository path> (root-owned, unlike /tmp)."""
    if os.environ.get("SLURM_JOB_API_STATE_DIR"):
        return Path(os.environ["SLURM_JOB_API_STATE_DIR"])
    local = REPO_ROOT / ".local-stack"
    if all(directory.stat().st_mode & stat.S_IXOTH for directory in local.parents):
        return local
    return Path("/var/lib/slurm-job-api-local") / hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:12]


def head_node_state_directory() -> Path:
    """Where the head-node programs this machine runs keep the product's bookkeeping (/var/lib/slurm-job-api on a
    head node): one directory per local state root, so that two checkouts' tests never share one; root's, as the
    program requires of every directory on its path."""
    digest = hashlib.sha256(str(local_state_root()).encode()).hexdigest()[:12]
    return Path("/var/lib/slurm-job-api-local") / digest / "head-node"


def remove_job_files(user: pwd.struct_passwd) -> None:
    """Removes what the head-node program keeps for ``user`` on this machine: the job directories in the home (also
    an earlier version's tree, and what was moved aside) and the bookkeeping in this checkout's state directory."""
    for path in Path(user.pw_dir).glob(".slurm-job-api*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(head_node_state_directory() / "users" / user.pw_name, ignore_errors=True)


DEFAULT_STATE_DIR = local_state_root() / "slurm"

CLUSTER_NAME = "local"
PARTITION = "debug"
SHORT_PARTITION = "short"  # MaxTime=1 minute: for PartitionTimeLimit
DEFAULT_ADVERTISED_CPUS = 16
DEFAULT_PORT_BASE = 6817  # slurmctld; slurmd listens on +1, slurmdbd on +2 (Slurm's usual 6817/6818/6819)


def port_offset() -> int:
    """$SLURM_JOB_API_PORT_OFFSET, added to every cluster's ports: two checkouts (each with its own state directory)
    can then run the same tests at once without taking each other's ports."""
    return int(os.environ.get("SLURM_JOB_API_PORT_OFFSET", "0"))


def checkout_user_name(name: str) -> str:
    """The cluster user ``name`` of this checkout and test worker: with a port offset, the name takes it as a suffix
    (hpcuser-o100), and in a pytest-xdist worker the worker's name too (hpcuser-gw2), so that tests, which move,
    chmod and remove files in their users' homes, never meet another checkout's or another worker's files."""
    offset = port_offset()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return name + (f"-o{offset}" if offset else "") + (f"-{worker}" if re.fullmatch(r"gw[0-9]+", worker) else "")


LOOPBACK = "127.0.0.1"

SLURM_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server")
SBIN = Path("/usr/sbin")
BIN = Path("/usr/bin")

# Memory kept back from what slurmd detects: a node configured with more RealMemory than it has drains.
MEMORY_HEADROOM = 0.05
START_TIMEOUT = 30.0
SLURMDBD_STARTS = 3
STOP_TIMEOUT = 15.0
PORT_RELEASE_GRACE = 3.0
USABLE_NODE_STATES = frozenset({"idle", "mixed", "allocated", "completing"})
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class ClusterError(RuntimeError):
    """The cluster cannot be set up or started; the message says why in one line."""


@dataclass(frozen=True)
class NodeTopology:
    """What ``slurmd -C`` reports for this machine."""

    name: str
    cpus: int
    boards: int
    sockets_per_board: int
    cores_per_socket: int
    threads_per_core: int
    real_memory_mb: int

    @classmethod
    def parse(cls, slurmd_c_output: str) -> NodeTopology:
        """Parses the first line of ``slurmd -C``: ``NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105``."""
        fields = dict(item.split("=", 1) for item in slurmd_c_output.splitlines()[0].split() if "=" in item)
        try:
            return cls(
                name=fields["NodeName"],
                cpus=int(fields["CPUs"]),
                boards=int(fields["Boards"]),
                sockets_per_board=int(fields["SocketsPerBoard"]),
                cores_per_socket=int(fields["CoresPerSocket"]),
                threads_per_core=int(fields["ThreadsPerCore"]),
                real_memory_mb=int(fields["RealMemory"]),
            )
        except (KeyError, ValueError) as exc:
            raise ClusterError(f"cannot parse `slurmd -C` output: {slurmd_c_output.strip()!r}") from exc


def detect_node() -> NodeTopology:
    return NodeTopology.parse(_run([str(SBIN / "slurmd"), "-C"]).stdout)


@dataclass(frozen=True)
class _Daemon:
    """A daemon of ours: found through its pid file, recognised by process name and SLURM_CONF."""

    name: str  # /proc/<pid>/comm
    pid_file: Path
    log_file: Path
    conf_path: Path  # our slurm.conf: every daemon is started with SLURM_CONF set to it
    reads: tuple[Path, ...] = ()  # configuration files: a change restarts the daemon
    port: int | None = None

    def pid(self) -> int | None:
        """The daemon's pid if it runs and is ours, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_our_process(pid, self.name, self.conf_path) else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended after STOP_TIMEOUT."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if not _wait_for_exit(pid, STOP_TIMEOUT):
            os.kill(pid, signal.SIGKILL)
            _wait_for_exit(pid, STOP_TIMEOUT)
        self.pid_file.unlink(missing_ok=True)
        if self.port is not None:
            # A helper the daemon forked (slurmctld's slurmscriptd) can hold its socket for a moment after it ended.
            _wait_for_free_port(self.port, STOP_TIMEOUT)


class SlurmCluster:
    """One Slurm node (partitions ``debug`` and ``short``) run by slurmctld + slurmd, optionally with slurmdbd."""

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        *,
        accounting: bool = False,
        min_job_age: int = 300,
        advertised_cpus: int | None = None,
        constrain_memory: bool = False,
        port_base: int = DEFAULT_PORT_BASE,
        enforce_part_limits: str = "ALL",
        push_hook: bool = False,
    ) -> None:
        """``constrain_memory`` enforces ``--mem`` with task/cgroup (cgroup v1 memory controller), the only way
        Slurm reports OUT_OF_MEMORY; off by default because it needs cgroups. ``port_base`` lets a second cluster
        (another state directory) run beside the default one (shifted by ``port_offset()``). ``enforce_part_limits``
        is slurm.conf's EnforcePartLimits: ALL, as ParallelCluster writes it, refuses at sbatch a job no partition can
        hold; NO accepts it and leaves it pending (PartitionConfig, PartitionTimeLimit, ...). ``push_hook`` runs the
        product's push hook (functions/shared/slurm_job_api/push_hook.py) as PrologSlurmctld and EpilogSlurmctld, from
        ``push_hook_dir``; it does nothing until its configuration is installed there (LocalStack(push_hook=True))."""
        self.state_dir = Path(state_dir).absolute()
        self.accounting = accounting
        self.min_job_age = min_job_age
        self.advertised_cpus = advertised_cpus or DEFAULT_ADVERTISED_CPUS
        self.constrain_memory = constrain_memory
        self.port_base = port_base = port_base + port_offset()
        self.enforce_part_limits = enforce_part_limits
        self.push_hook = push_hook
        self.push_hook_dir = self.state_dir / "push-hook"
        self.partition = PARTITION
        self.short_partition = SHORT_PARTITION
        self.bin_dir = BIN
        self.node_name = socket.gethostname().split(".")[0]
        etc = self.state_dir / "etc"
        self.conf_path = etc / "slurm.conf"
        self.dbd_conf_path = etc / "slurmdbd.conf"  # slurmdbd reads it from SLURM_CONF's directory
        self.cgroup_conf_path = etc / "cgroup.conf"
        self.munge_dir = self.state_dir / "munge"
        self.munge_socket = self.munge_dir / "munge.socket.2"
        self.log_dir = self.state_dir / "log"
        self.run_dir = self.state_dir / "run"
        self.mariadb_dir = self.state_dir / "mariadb"
        self.mariadb_socket = self.run_dir / "mariadb.sock"
        self._munged = self._daemon("munged", directory=self.munge_dir)  # munged writes its files as user munge
        self._mariadbd = self._daemon("mariadbd")
        self._slurmdbd = self._daemon("slurmdbd", reads=(self.dbd_conf_path,), port=port_base + 2)
        self._slurmctld = self._daemon("slurmctld", reads=(self.conf_path,), port=port_base)
        self._slurmd = self._daemon("slurmd", reads=(self.conf_path, self.cgroup_conf_path), port=port_base + 1)

    def _daemon(
        self, name: str, *, reads: tuple[Path, ...] = (), port: int | None = None, directory: Path | None = None
    ) -> _Daemon:
        pid_file = (directory or self.run_dir) / f"{name}.pid"
        log_file = (directory or self.log_dir) / f"{name}.log"
        return _Daemon(name, pid_file, log_file, self.conf_path, reads, port)

    @property
    def push_hook_path(self) -> Path:
        return self.push_hook_dir / push_hook_program.HOOK_NAME

    # ----------------------------------------------------------------------------------------------- public API

    def env(self) -> dict[str, str]:
        """What every Slurm client command needs in its environment."""
        return {"SLURM_CONF": str(self.conf_path)}

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Runs a Slurm client command (``squeue``, ``sacct``, ...) of this cluster as the calling user; never raises
        for its exit status."""
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            env={"PATH": "/usr/bin:/bin", **self.env()},
            capture_output=True,
            text=True,
            check=False,
        )

    def is_running(self) -> bool:
        """True when every daemon this configuration needs runs."""
        return all(daemon.pid() is not None for daemon in self._wanted_daemons())

    def pids(self) -> dict[str, int]:
        """Pids of our daemons that run now (any configuration), by daemon name."""
        return {daemon.name: pid for daemon in self._all_daemons() if (pid := daemon.pid()) is not None}

    def start(self) -> None:
        """Starts the cluster, or does nothing if it already runs with this configuration.

        A daemon whose configuration changed is restarted, one that is not needed any more is stopped, and one that
        is missing is started. Returns once the node can run jobs.
        """
        _require_root_on_debian()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _require_searchable_by_others(self.state_dir)
        _ensure_packages(SLURM_PACKAGES + (ACCOUNTING_PACKAGES if self.accounting else ()))
        with self._lock():
            configs = self._render_configs()
            changed = {path for path, (text, _mode) in configs.items() if _read_text(path) != text}
            wanted = self._wanted_daemons()
            stale = [
                daemon
                for daemon in self._all_daemons()
                if daemon.pid() is not None and (daemon not in wanted or changed.intersection(daemon.reads))
            ]
            if not changed and not stale and self.is_running():
                return
            for daemon in reversed(stale):
                daemon.stop()
            self._prepare_directories()
            for path in changed:
                text, mode = configs[path]
                _write_file(path, text, mode)
            try:
                self._start_missing_daemons()
            except ClusterError:
                self._stop_daemons()  # leave nothing half-started behind
                raise

    def stop(self) -> None:
        """Cancels every job, then ends the daemons started from this state directory (found by their pid files).

        Nothing else is ended. Jobs are cancelled first because slurmd leaves running jobs alone when it ends.
        """
        if not self.state_dir.is_dir():
            return
        with self._lock():
            self.cancel_jobs()
            self._stop_daemons()

    # --------------------------------------------------------------------------------------------- configuration

    def _wanted_daemons(self) -> list[_Daemon]:
        """The daemons of this configuration, in start order."""
        database = [self._mariadbd, self._slurmdbd] if self.accounting else []
        return [self._munged, *database, self._slurmctld, self._slurmd]

    def _all_daemons(self) -> list[_Daemon]:
        return [self._munged, self._mariadbd, self._slurmdbd, self._slurmctld, self._slurmd]

    def _render_configs(self) -> dict[Path, tuple[str | None, int]]:
        """The wanted text and mode of each configuration file; None: the file must not exist."""
        cgroup_conf = "CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nConstrainRAMSpace=yes\n"
        return {
            self.conf_path: (self._slurm_conf(detect_node()), 0o644),
            self.dbd_conf_path: (self._slurmdbd_conf() if self.accounting else None, 0o600),
            self.cgroup_conf_path: (cgroup_conf if self.constrain_memory else None, 0o644),
            **{
                self.push_hook_dir / name: (text if self.push_hook else None, mode)
                for name, (text, mode) in push_hook_program.installed_files(
                    PUSH_HOOK_SOURCE.read_text(), PUSH_HOOK_PYTHON
                ).items()
            },
        }

    def _slurm_conf(self, node: NodeTopology) -> str:
        cpus = self.advertised_cpus
        memory = int(node.real_memory_mb * (1 - MEMORY_HEADROOM))
        if cpus == node.cpus:
            topology = (
                f"Boards={node.boards} SocketsPerBoard={node.sockets_per_board} "
                f"CoresPerSocket={node.cores_per_socket} ThreadsPerCore={node.threads_per_core}"
            )
        else:  # config_overrides: advertise more (or fewer) CPUs than the machine has, as one socket of cores
            topology = f"Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus} ThreadsPerCore=1"
        accounting = (
            [
                "AccountingStorageType=accounting_storage/slurmdbd",
                f"AccountingStorageHost={LOOPBACK}",
                f"AccountingStoragePort={self._slurmdbd.port}",
                # For slurmdbd connections this names the munge socket (AuthInfo is not used for them).
                f"AccountingStoragePass={self.munge_socket}",
            ]
            if self.accounting
            else ["AccountingStorageType=accounting_storage/none"]
        )
        lines = [
            "# Written by local_stack/slurm_cluster.py at every start: edits are lost.",
            f"ClusterName={CLUSTER_NAME}",
            f"SlurmctldHost={self.node_name}({LOOPBACK})",
            f"SlurmctldPort={self._slurmctld.port}",
            f"SlurmdPort={self._slurmd.port}",
            # Bind to the loopback address only, not to every interface.
            "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.state_dir / 'slurmctld'}",
            f"SlurmdSpoolDir={self.state_dir / 'slurmd'}",
            f"SlurmctldPidFile={self._slurmctld.pid_file}",
            f"SlurmdPidFile={self._slurmd.pid_file}",
            f"SlurmctldLogFile={self._slurmctld.log_file}",
            f"SlurmdLogFile={self._slurmd.log_file}",
            f"PlugStackConfig={self.conf_path.parent / 'plugstack.conf'}",
            "MailProg=/bin/true",  # no mail here; Slurm complains when its default /usr/bin/mail is missing
            # No cgroups by default: track processes through /proc and bind nothing.
            "ProctrackType=proctrack/linuxproc",
            f"TaskPlugin={'task/cgroup' if self.constrain_memory else 'task/none'}",
            "MpiDefault=none",
            # Memory is a consumable resource, and a job without --mem gets its share per CPU (not the whole node).
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            f"DefMemPerCPU={max(1, memory // cpus)}",
            "JobAcctGatherType=jobacct_gather/linux",
            "SchedulerType=sched/backfill",
            # Start jobs as soon as they are submitted rather than batching them for up to 3 s.
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            "SlurmdParameters=config_overrides",
            f"MinJobAge={self.min_job_age}",
            # ParallelCluster's slurm.conf sets EnforcePartLimits=ALL: a job over a partition's size or time limits
            # is refused at submission instead of pending forever.
            f"EnforcePartLimits={self.enforce_part_limits}",
            "ReturnToService=2",
            *accounting,
            "JobCompType=jobcomp/none",
            *(
                [f"PrologSlurmctld={self.push_hook_path}", f"EpilogSlurmctld={self.push_hook_path}"]
                if self.push_hook
                else []
            ),
            f"NodeName={self.node_name} NodeAddr={LOOPBACK} NodeHostname={self.node_name} CPUs={cpus} {topology} "
            f"RealMemory={memory} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName={SHORT_PARTITION} Nodes={self.node_name} MaxTime=1 State=UP",
        ]
        return "\n".join(lines) + "\n"

    def _slurmdbd_conf(self) -> str:
        lines = [
            "# Written by local_stack/slurm_cluster.py at every start: edits are lost.",
            "AuthType=auth/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"DbdHost={self.node_name}",
            f"DbdAddr={LOOPBACK}",
            f"DbdPort={self._slurmdbd.port}",
            "SlurmUser=root",
            f"PidFile={self._slurmdbd.pid_file}",
            f"LogFile={self._slurmdbd.log_file}",
            "StorageType=accounting_storage/mysql",
            # localhost = the Unix socket, given to slurmdbd as MYSQL_UNIX_PORT; root logs in by unix_socket auth.
            "StorageHost=localhost",
            "StorageUser=root",
            "StorageLoc=slurm_acct_db",
        ]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------------------------------------- daemons

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialises start/stop between processes (pytest workers) that share this state directory."""
        with (self.state_dir / "cluster.lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _prepare_directories(self) -> None:
        munge = pwd.getpwnam("munge")
        # Cluster users read slurm.conf and reach the munge socket: the path down to them must be searchable.
        self.state_dir.chmod(0o755)
        for directory in (self.conf_path.parent, self.log_dir, self.run_dir, self.push_hook_dir):
            directory.mkdir(mode=0o755, exist_ok=True)
        for directory in (self.state_dir / "slurmctld", self.state_dir / "slurmd"):
            directory.mkdir(mode=0o700, exist_ok=True)
        _write_file(self.conf_path.parent / "plugstack.conf", "", 0o644)
        self.munge_dir.mkdir(mode=0o755, exist_ok=True)
        os.chown(self.munge_dir, munge.pw_uid, munge.pw_gid)
        if self.accounting:
            self.mariadb_dir.mkdir(mode=0o700, exist_ok=True)

    def _daemon_env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8", **self.env()}

    def _start_missing_daemons(self) -> None:
        missing = [daemon for daemon in self._wanted_daemons() if daemon.pid() is None]
        for daemon in missing:
            if daemon.port is not None:
                _require_free_port(daemon.port, daemon.name)
        launchers: dict[str, Callable[[], None]] = {
            "munged": self._start_munged,
            "mariadbd": self._start_mariadb,
            "slurmdbd": self._start_slurmdbd,
            "slurmctld": self._start_slurmctld,
            "slurmd": self._start_slurmd,
        }
        for daemon in missing:
            launchers[daemon.name]()
        for daemon in missing:
            self._wait_for_pid(daemon)
        self._wait_for_usable_node()

    def _start_slurmctld(self) -> None:
        _run([str(SBIN / "slurmctld"), "-f", str(self.conf_path)], env=self._daemon_env())

    def _start_slurmd(self) -> None:
        _run([str(SBIN / "slurmd"), "-f", str(self.conf_path), "-N", self.node_name], env=self._daemon_env())

    def _start_munged(self) -> None:
        key = self.munge_dir / "munge.key"
        as_munge = [str(SBIN / "runuser"), "-u", "munge", "--"]
        if not key.exists():
            _run([*as_munge, str(SBIN / "mungekey"), "--create", f"--keyfile={key}"])
        _run(
            [
                *as_munge,
                str(SBIN / "munged"),
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self._munged.pid_file}",
                f"--log-file={self._munged.log_file}",
                f"--seed-file={self.munge_dir / 'munged.seed'}",
            ],
            env=self._daemon_env(),
        )
        self._wait_for_pid(self._munged)

    def _start_mariadb(self) -> None:
        data_dir = self.mariadb_dir / "data"
        # Its own temporary directory: in /tmp, mariadb-install-db once failed ("Could not remove temporary table
        # '/tmp/#sql-temptable-…', error: 2") while the tests ran.
        tmp_dir = self.mariadb_dir / "tmp"
        tmp_dir.mkdir(mode=0o700, exist_ok=True)
        if not data_dir.is_dir():
            # Installed beside and renamed when complete: a failed install leaves no half-made data directory that
            # a later start would take for a database.
            installing = self.mariadb_dir / "data.installing"
            shutil.rmtree(installing, ignore_errors=True)
            _run(
                [
                    str(BIN / "mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={installing}",
                    f"--tmpdir={tmp_dir}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ]
            )
            installing.rename(data_dir)
        # mariadbd does not detach itself: setsid --fork does, so it outlives the process that started it.
        _run(
            [
                str(BIN / "setsid"),
                "--fork",
                str(SBIN / "mariadbd"),
                "--no-defaults",
                f"--datadir={data_dir}",
                f"--tmpdir={tmp_dir}",
                f"--socket={self.mariadb_socket}",
                f"--pid-file={self._mariadbd.pid_file}",
                f"--log-error={self._mariadbd.log_file}",
                "--skip-networking",
                "--user=root",
                "--innodb-buffer-pool-size=128M",
                "--innodb-lock-wait-timeout=900",  # slurmdbd warns below this
            ],
            env=self._daemon_env(),
        )
        self._wait_for_pid(self._mariadbd)
        _wait_until(self.mariadb_socket.is_socket, "MariaDB to open its socket", self._mariadbd.log_file)
        # The socket opens before the server answers queries; slurmdbd's first queries must not come earlier.
        ping = [str(BIN / "mariadb-admin"), f"--socket={self.mariadb_socket}", "--user=root", "ping"]
        _wait_until(lambda: _succeeds(ping, self._daemon_env()), "MariaDB to answer", self._mariadbd.log_file)

    def _start_slurmdbd(self) -> None:
        """Starts slurmdbd and waits until it answers. On a loaded machine its first start can fail while it creates
        its tables ("We should have gotten a result", then fatal: the accounting plugin did not initialise); it is
        started again, up to SLURMDBD_STARTS times."""
        sacctmgr = [str(BIN / "sacctmgr"), "--immediate", "--noheader", "--parsable2"]
        env = self._daemon_env()

        def cluster_listed() -> bool:
            listed = _run([*sacctmgr, "list", "cluster", "format=Cluster"], env=env, check=False)
            return listed.returncode == 0 and CLUSTER_NAME in listed.stdout.split()

        for attempt in range(1, SLURMDBD_STARTS + 1):
            _run([str(SBIN / "slurmdbd")], env={**env, "MYSQL_UNIX_PORT": str(self.mariadb_socket)})
            self._wait_for_pid(self._slurmdbd)
            answering = False

            def answering_or_gone() -> bool:
                nonlocal answering
                answering = _succeeds([*sacctmgr, "list", "cluster"], env)
                return answering or self._slurmdbd.pid() is None

            _wait_until(answering_or_gone, "slurmdbd", self._slurmdbd.log_file)
            if answering:
                break
            if attempt == SLURMDBD_STARTS:
                raise ClusterError(f"slurmdbd ended during its start {attempt} times (see {self._slurmdbd.log_file})")
        if not cluster_listed():
            _run([*sacctmgr, "add", "cluster", CLUSTER_NAME], env=env)

    def _wait_for_pid(self, daemon: _Daemon) -> None:
        _wait_until(lambda: daemon.pid() is not None, f"{daemon.name} to start", daemon.log_file)

    def _wait_for_usable_node(self) -> None:
        """Waits until the node can run jobs; resumes it once if an earlier run left it down or drained."""
        sinfo = [
            str(BIN / "sinfo"),
            "--noheader",
            f"--partition={PARTITION}",
            f"--nodes={self.node_name}",
            "--format=%T",
        ]
        env = self._daemon_env()
        resumed = False

        def usable() -> bool:
            nonlocal resumed
            shown = _run(sinfo, env=env, check=False)
            state = shown.stdout.strip()
            if shown.returncode != 0 or state.endswith("*"):
                return False  # slurmctld is not answering yet, or slurmd has not registered yet
            if state in USABLE_NODE_STATES:
                return True
            if state.startswith(("down", "drain")) and not resumed:
                _run([str(BIN / "scontrol"), "update", f"nodename={self.node_name}", "state=resume"], env=env)
                resumed = True
            return False

        _wait_until(usable, f"node {self.node_name} to become idle", self._slurmctld.log_file)

    def cancel_jobs(self) -> None:
        """Cancels all jobs and waits (at most STOP_TIMEOUT) until their slurmstepd processes have ended."""
        if self._slurmctld.pid() is None or self._slurmd.pid() is None:
            return
        for partition in (PARTITION, SHORT_PARTITION):
            _run([str(BIN / "scancel"), f"--partition={partition}"], env=self._daemon_env(), check=False)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._job_step_pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _job_step_pids(self) -> list[int]:
        """The slurmstepd processes of our slurmd: each runs a job step."""
        return [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _is_our_process(int(entry.name), "slurmstepd", self.conf_path)
        ]

    def _stop_daemons(self) -> None:
        """Stops our running daemons in reverse start order."""
        for daemon in reversed(self._all_daemons()):
            daemon.stop()


# ----------------------------------------------------------------------------------------------------- users


def ensure_cluster_user(name: str) -> pwd.struct_passwd:
    """Returns the login user ``name``, creating it with a home directory if missing; never root."""
    if not _USER_NAME.fullmatch(name):
        raise ClusterError(f"invalid user name {name!r}: expected [a-z_][a-z0-9_-]{{0,31}}")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _require_root_on_debian()
        # One useradd at a time on this machine: two at once (two xdist workers) were seen to give the user one uid
        # and its home another.
        with open("/run/lock/slurm-job-api-useradd.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                created = subprocess.run(
                    [str(SBIN / "useradd"), "--create-home", "--shell", "/bin/bash", "--", name],
                    capture_output=True,
                    text=True,
                )
                if created.returncode not in (0, 9):  # 9: created meanwhile by another machine-wide caller
                    raise ClusterError(f"useradd {name} failed: {_first_line(created.stderr)}") from None
                entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise ClusterError(f"user {name!r} has uid 0: jobs must not run as root")
    return entry


# ------------------------------------------------------------------------------------------------- helpers


def _require_root_on_debian() -> None:
    if os.geteuid() != 0:
        raise ClusterError("the local Slurm cluster must be started as root (it runs slurmd and creates users)")
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
        raise ClusterError("the local Slurm cluster needs a Debian-like system (apt-get and dpkg-query not found)")


def _require_searchable_by_others(state_dir: Path) -> None:
    """Cluster users must reach slurm.conf and the munge socket: no directory above the state may be closed."""
    for directory in state_dir.parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise ClusterError(
                f"{directory} is closed to other users, so cluster users could not reach {state_dir}: "
                "use a state directory outside it"
            )


def _ensure_packages(packages: tuple[str, ...]) -> None:
    """Installs with apt-get the packages that dpkg does not report as installed."""
    missing = [package for package in packages if not _package_installed(package)]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)


def _package_installed(package: str) -> bool:
    shown = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${db:Status-Status}", package], capture_output=True, text=True
    )
    return shown.returncode == 0 and shown.stdout.strip() == "installed"


def _port_is_free(port: int) -> bool:
    """Whether our daemon could listen on the loopback port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the Slurm daemons do
        try:
            probe.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
    return True


def _wait_for_free_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _port_is_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _require_free_port(port: int, user: str) -> None:
    """Fails if something else listens on the loopback port that our daemon ``user`` needs (after a short grace, in
    case a daemon that just ended still releases it)."""
    if not _wait_for_free_port(port, PORT_RELEASE_GRACE):
        raise ClusterError(
            f"port {port} ({user}) is in use by a process this cluster did not start "
            f"(see `ss -ltnp 'sport = :{port}'`); stop it first"
        )


def _run(argv: list[str], *, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        detail = _first_line(result.stderr) or _first_line(result.stdout) or f"exit status {result.returncode}"
        raise ClusterError(f"{Path(argv[0]).name} failed: {detail}")
    return result


def _succeeds(argv: list[str], env: dict[str, str]) -> bool:
    return _run(argv, env=env, check=False).returncode == 0


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_file(path: Path, text: str | None, mode: int) -> None:
    """Writes atomically with ``mode`` from the start (slurmdbd.conf holds database settings: 0600); None deletes."""
    if text is None:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    temporary.chmod(mode)  # the umask may have narrowed it
    temporary.replace(path)


def _wait_until(condition: Callable[[], bool], what: str, log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what} (see {log})")
        time.sleep(0.05)


def _is_our_process(pid: int, name: str, conf_path: Path) -> bool:
    """True if process ``pid`` is named ``name`` and was started with SLURM_CONF=``conf_path`` (not a zombie)."""
    proc = Path("/proc", str(pid))
    try:
        comm = (proc / "comm").read_text().strip()
        environ = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return comm == name and f"SLURM_CONF={conf_path}".encode() in environ


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    """False once the process is gone, or is a zombie waiting for init to reap it."""
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ------------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.slurm_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("install", "start", "stop", "status"))
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--accounting", action="store_true", help="also run slurmdbd with a private MariaDB")
    parser.add_argument("--min-job-age", type=int, default=300, metavar="SECONDS")
    parser.add_argument("--advertised-cpus", type=int, default=None, metavar="N")
    args = parser.parse_args(argv)
    cluster = SlurmCluster(
        args.state_dir, accounting=args.accounting, min_job_age=args.min_job_age, advertised_cpus=args.advertised_cpus
    )
    try:
        if args.command == "install":  # the packages of both configurations, e.g. while bootstrapping
            _require_root_on_debian()
            _ensure_packages(SLURM_PACKAGES + ACCOUNTING_PACKAGES)
            print("Slurm, munge, slurmdbd and MariaDB packages are installed")
        elif args.command == "start":
            began = time.monotonic()
            cluster.start()
            print(f"running ({time.monotonic() - began:.2f} s); export SLURM_CONF={cluster.conf_path}")
        elif args.command == "stop":
            cluster.stop()
            print("stopped")
        else:
            pids = cluster.pids()
            print(" ".join(f"{name}={pid}" for name, pid in pids.items()) or "not running")
            return 0 if cluster.is_running() else 3
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
