"""The program that runs on the Slurm head node, shipped inside each SSM command.

It is one file, uses only the standard library and runs on Python 3.7+ (the oldest python3 a ParallelCluster head
node has), because it is sent as text inside AWS-RunShellScript and executed by the head node's own python3.

Protocol (see docs/architecture.md): the SSM command feeds two base64 lines on stdin to a fixed loader: the
zlib-compressed source of this file and the zlib-compressed JSON request. Nothing from the request is ever
part of shell text.
Started as root by the SSM agent, the program keeps the product's bookkeeping in a state directory of root's, outside
every home (the root stage: directory descriptors only, see "The product's files on the head node" below), and re-runs
itself as the configured cluster user through `runuser` for all the work (the user stage), which makes the job's
directory in that user's home; it never runs Slurm commands, fetches URLs or writes in a home as root. It prints
exactly one JSON document on stdout:

    {"ok": true,  "protocol": 1, "action": "...", "result": {...}}
    {"ok": false, "protocol": 1, "action": "...", "error": {"type": "...", "message": "...", "retryable": false}}

This module also holds the Slurm knowledge shared with the Lambdas: the table from Slurm job states to our
statuses, the parsers of squeue/scontrol/sacct output and the job-array expression parser. Those parts are pure.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import errno
import fcntl
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import zlib

PROTOCOL = 1
MIN_PYTHON = (3, 7)

# --------------------------------------------------------------------------------------------------------------------
# Statuses and the one table from Slurm job states to them (cf. PSI/J's Slurm executor).
# --------------------------------------------------------------------------------------------------------------------

SUBMITTING = "SUBMITTING"
PENDING = "PENDING"
RUNNING = "RUNNING"
SUSPENDED = "SUSPENDED"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMEOUT = "TIMEOUT"
OUT_OF_MEMORY = "OUT_OF_MEMORY"
NODE_FAIL = "NODE_FAIL"
PREEMPTED = "PREEMPTED"
BOOT_FAIL = "BOOT_FAIL"
DEADLINE = "DEADLINE"
SUBMIT_FAILED = "SUBMIT_FAILED"
ERROR = "ERROR"
UNKNOWN = "UNKNOWN"

SLURM_STATE_TO_STATUS = {
    # waiting to run
    "PENDING": PENDING,
    "CONFIGURING": PENDING,  # nodes are being started (ParallelCluster dynamic nodes) before the job runs
    "REQUEUED": PENDING,
    "REQUEUE_HOLD": PENDING,
    "REQUEUE_FED": PENDING,
    "RESV_DEL_HOLD": PENDING,
    # running
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,  # the job's processes are ending; the final state follows
    "RESIZING": RUNNING,
    "SIGNALING": RUNNING,
    "STAGE_OUT": RUNNING,
    "SUSPENDED": SUSPENDED,
    "STOPPED": SUSPENDED,
    # terminal
    "COMPLETED": COMPLETED,
    "FAILED": FAILED,
    "SPECIAL_EXIT": FAILED,
    "CANCELLED": CANCELLED,
    "REVOKED": CANCELLED,  # federation: another cluster runs the job
    "TIMEOUT": TIMEOUT,
    "OUT_OF_MEMORY": OUT_OF_MEMORY,
    "NODE_FAIL": NODE_FAIL,
    "PREEMPTED": PREEMPTED,
    "BOOT_FAIL": BOOT_FAIL,
    "DEADLINE": DEADLINE,
}

ACTIVE_STATUSES = frozenset([SUBMITTING, PENDING, RUNNING, SUSPENDED])
TERMINAL_STATUSES = frozenset(
    [
        COMPLETED,
        FAILED,
        CANCELLED,
        TIMEOUT,
        OUT_OF_MEMORY,
        NODE_FAIL,
        PREEMPTED,
        BOOT_FAIL,
        DEADLINE,
        SUBMIT_FAILED,
        ERROR,
        UNKNOWN,
    ]
)
ALL_STATUSES = ACTIVE_STATUSES | TERMINAL_STATUSES

# When the tasks of an array end differently, the job's status is the first of these that any task has.
ARRAY_TERMINAL_PRECEDENCE = (
    NODE_FAIL,
    BOOT_FAIL,
    OUT_OF_MEMORY,
    FAILED,
    TIMEOUT,
    DEADLINE,
    PREEMPTED,
    CANCELLED,
    COMPLETED,
)
# While an array runs, the job is RUNNING if any task runs, else SUSPENDED if any is suspended, else PENDING.
ARRAY_ACTIVE_PRECEDENCE = (RUNNING, SUSPENDED, PENDING)


def normalize_slurm_state(raw):
    """Returns the Slurm base state of a raw state field: "CANCELLED by 1001" → "CANCELLED", "RUNNING+" → ...

    sacct writes "CANCELLED by <uid>"; some versions append flags such as "+" or "*".
    """
    if raw is None:
        return ""
    word = raw.strip().split(" ", 1)[0]
    return word.rstrip("+*").upper()


def status_of_slurm_state(raw):
    """Our status for a raw Slurm state; an unknown state is reported as UNKNOWN, never guessed."""
    return SLURM_STATE_TO_STATUS.get(normalize_slurm_state(raw), UNKNOWN)


# --------------------------------------------------------------------------------------------------------------------
# Job array expressions: "1-10%2", "1,3,5-11:2"
# --------------------------------------------------------------------------------------------------------------------

ARRAY_EXPRESSION_RE = re.compile(r"^([0-9]+(-[0-9]+(:[0-9]+)?)?)(,[0-9]+(-[0-9]+(:[0-9]+)?)?)*(%[0-9]+)?\Z")


def expand_array_indices(expression, limit=100000):
    """The sorted task ids of a Slurm --array expression, without its "%N" throttle.

    Raises ValueError for a malformed expression, an empty or reversed range, a zero step, or more than `limit`
    tasks.
    """
    text = expression.strip()
    if not ARRAY_EXPRESSION_RE.match(text):
        raise ValueError("not a Slurm array expression: %r" % expression)
    text = text.split("%", 1)[0]
    indices = set()
    for part in text.split(","):
        if "-" in part:
            bounds, _, step_text = part.partition(":")
            start_text, _, end_text = bounds.partition("-")
            start, end = int(start_text), int(end_text)
            step = int(step_text) if step_text else 1
            if step <= 0:
                raise ValueError("array step must be positive in %r" % part)
            if end < start:
                raise ValueError("array range %r ends before it starts" % part)
            count = (end - start) // step + 1
            if len(indices) + count > limit:
                raise ValueError("array has more than %d tasks" % limit)
            indices.update(range(start, end + 1, step))
        else:
            indices.add(int(part))
        if len(indices) > limit:
            raise ValueError("array has more than %d tasks" % limit)
    return sorted(indices)


# --------------------------------------------------------------------------------------------------------------------
# Parsing Slurm output (pure)
# --------------------------------------------------------------------------------------------------------------------

SQUEUE_FORMAT = "%i|%A|%K|%T|%r|%V|%S|%e"
SACCT_FIELDS = "JobID,JobIDRaw,State,ExitCode,Reason,Submit,Start,End"

_NOT_A_TIME = frozenset(["", "N/A", "NONE", "UNKNOWN", "(NULL)"])


class TaskRecord(object):
    """One job, or one task of a job array, as Slurm reported it."""

    __slots__ = (
        "end_time",
        "exit_code",
        "job_ids",
        "reason",
        "signal",
        "slurm_state",
        "start_time",
        "submit_time",
        "task_ids",
    )

    def __init__(
        self,
        task_ids,
        slurm_state,
        reason=None,
        exit_code=None,
        signal=None,
        submit_time=None,
        start_time=None,
        end_time=None,
        job_ids=(),
    ):
        self.task_ids = task_ids  # None for a job that is not an array; else the task ids this record stands for
        self.slurm_state = slurm_state
        self.reason = reason
        self.exit_code = exit_code
        self.signal = signal
        self.submit_time = submit_time
        self.start_time = start_time
        self.end_time = end_time
        # The Slurm job ids that select this record (--jobs=ID): the job's; for an array task, its array's and its own.
        self.job_ids = job_ids

    @property
    def status(self):
        return status_of_slurm_state(self.slurm_state)

    @property
    def task_count(self):
        return 1 if self.task_ids is None else len(self.task_ids)

    def __repr__(self):
        return "TaskRecord(%r, %r, exit=%r)" % (self.task_ids, self.slurm_state, self.exit_code)


def parse_slurm_time(text, tz=None):
    """A Slurm timestamp ("2026-11-25T02:01:15", the head node's local time) as UTC ISO 8601, or None."""
    if text is None or text.strip().upper() in _NOT_A_TIME:
        return None
    try:
        moment = datetime.datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_exit_code(text):
    """Slurm's "exit:signal" ExitCode ("3:0", "0:15") as (exit_code, signal); (None, None) when absent."""
    if not text or ":" not in text:
        return None, None
    code, _, sig = text.strip().partition(":")
    try:
        return int(code), int(sig)
    except ValueError:
        return None, None


def _task_ids_of(job_field, task_field):
    """Task ids from "5_3" / "5_[2-4%2]" style ids or an ArrayTaskId field; None for a plain job."""
    text = task_field if task_field not in (None, "", "N/A", "(null)") else None
    if text is None and job_field and "_" in job_field:
        text = job_field.split("_", 1)[1]
    if text is None:
        return None
    text = text.strip("[]")
    return expand_array_indices(text)


def _reason(text):
    if text is None:
        return None
    text = text.strip()
    return None if text in ("", "None", "(null)", "N/A") else text


def _job_ids_of(job_field, raw_id):
    """The ids that select a record of squeue/sacct: the job's own (%A, JobIDRaw) and, for an array task ("5_3",
    "5_[2-4]") or a heterogeneous job's component ("5+1"), the id of the job it belongs to."""
    return tuple(sorted({re.split(r"[_+]", job_field.strip(), maxsplit=1)[0], raw_id.strip()}))


def _pipe_separated_rows(stdout, count, tool):
    """The non-blank lines of a Slurm client's `|`-separated output, each split into exactly `count` fields."""
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != count:
            raise ValueError("unexpected %s line: %r" % (tool, line))
        yield fields


def parse_squeue(stdout, tz=None):
    """Records from `squeue --noheader --array --states=all --format=SQUEUE_FORMAT`."""
    records = []
    for fields in _pipe_separated_rows(stdout, 8, "squeue"):
        job_id, unique_id, task_id, state, reason, submit, start, end = fields
        records.append(
            TaskRecord(
                job_ids=_job_ids_of(job_id, unique_id),
                task_ids=_task_ids_of(job_id, task_id),
                slurm_state=state.strip(),
                reason=_reason(reason),
                submit_time=parse_slurm_time(submit, tz),
                start_time=parse_slurm_time(start, tz),
                end_time=parse_slurm_time(end, tz),
            )
        )
    return records


_SCONTROL_KEY_RE = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")


def parse_scontrol_fields(line):
    """The key=value fields of one `scontrol --oneliner show job` line (values may contain spaces)."""
    matches = list(_SCONTROL_KEY_RE.finditer(line))
    fields = {}
    for index, match in enumerate(matches):
        value_end = matches[index + 1].start() if index + 1 < len(matches) else len(line)
        fields[match.group(1)] = line[match.end() : value_end].strip()
    return fields


def parse_scontrol_jobs(stdout, tz=None):
    """Records from `scontrol --oneliner show job ID` (one line per job or array task)."""
    records = []
    for line in stdout.splitlines():
        if not line.strip().startswith("JobId="):
            continue
        fields = parse_scontrol_fields(line)
        exit_code, signal = parse_exit_code(fields.get("ExitCode"))
        records.append(
            TaskRecord(
                task_ids=_task_ids_of(None, fields.get("ArrayTaskId")),
                slurm_state=fields.get("JobState", ""),
                reason=_reason(fields.get("Reason")),
                exit_code=exit_code,
                signal=signal,
                submit_time=parse_slurm_time(fields.get("SubmitTime"), tz),
                start_time=parse_slurm_time(fields.get("StartTime"), tz),
                end_time=parse_slurm_time(fields.get("EndTime"), tz),
            )
        )
    return records


def parse_sacct(stdout, tz=None):
    """Records from `sacct --noheader --parsable2 --allocations --format=SACCT_FIELDS` (job allocations only)."""
    records = []
    for fields in _pipe_separated_rows(stdout, 8, "sacct"):
        job_id, raw_id, state, exit_text, reason, submit, start, end = fields
        if "." in job_id:  # a job step, should --allocations ever let one through
            continue
        exit_code, signal = parse_exit_code(exit_text)
        records.append(
            TaskRecord(
                job_ids=_job_ids_of(job_id, raw_id),
                task_ids=_task_ids_of(job_id, None),
                slurm_state=state,
                reason=_reason(reason),
                exit_code=exit_code,
                signal=signal,
                submit_time=parse_slurm_time(submit, tz),
                start_time=parse_slurm_time(start, tz),
                end_time=parse_slurm_time(end, tz),
            )
        )
    return records


def parse_slurm_config(stdout):
    """MinJobAge (seconds) and whether accounting is on, from `scontrol show config`."""
    min_job_age = None
    accounting = False
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "MinJobAge":
            match = re.match(r"(\d+)", value)
            min_job_age = int(match.group(1)) if match else None
        elif key == "AccountingStorageType":
            accounting = value not in ("", "(null)", "accounting_storage/none")
    return {"minJobAge": min_job_age, "accountingAvailable": accounting}


def _first(values):
    for value in values:
        if value is not None:
            return value
    return None


# Slurm's reason for a job it ended itself (submitted with --kill-on-invalid-dep=yes): kept with the terminal status,
# so that the cause can say why. Other reasons an ended job still carries are stale.
DEPENDENCY_NEVER_SATISFIED = "DependencyNeverSatisfied"
ENDING_REASONS = frozenset([DEPENDENCY_NEVER_SATISFIED])


def summarize(records, is_array):
    """The job's state from its records (one for a plain job, one per task or task range for an array)."""
    if not records:
        raise ValueError("no records to summarize")
    counts = _status_counts(records)
    statuses = set(counts)
    active = [status for status in ARRAY_ACTIVE_PRECEDENCE if status in statuses]
    if active:
        status = active[0]
    else:
        status = _first(status for status in ARRAY_TERMINAL_PRECEDENCE if status in statuses) or UNKNOWN
    representative = _first(r for r in records if r.status == status) or records[0]
    exit_codes = [r.exit_code for r in records if r.exit_code is not None]
    signals = [r.signal for r in records if r.signal]
    starts = sorted(r.start_time for r in records if r.start_time)
    ends = sorted(r.end_time for r in records if r.end_time)
    submits = sorted(r.submit_time for r in records if r.submit_time)
    terminal = status in TERMINAL_STATUSES
    return {
        "status": status,
        "slurmState": normalize_slurm_state(representative.slurm_state),
        "reason": (
            representative.reason
            if status in (PENDING, SUSPENDED) or not terminal or representative.reason in ENDING_REASONS
            else None
        ),
        "exitCode": (max(exit_codes) if exit_codes else None) if terminal else None,
        "signal": (signals[0] if signals else None) if terminal else None,
        "submitTime": submits[0] if submits else None,
        "startTime": starts[0] if starts else None,
        "endTime": (ends[-1] if ends else None) if terminal else None,
        "arrayTaskCounts": counts if is_array else None,
    }


# --------------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------------


class ProgramError(Exception):
    """An error reported to the Lambda as {"type": <class name>, "message": ..., "retryable": ...}.

    Each subclass has a Lambda-side class of the same name in slurm_job_api/errors.py, transient exactly when
    `retryable` is true here (errors.py derives its mapping from these classes and refuses a mismatch).
    """

    retryable = False


# The type reported for an exception that is not a ProgramError: the program itself failed.
INTERNAL_ERROR = "InternalError"


class BadRequest(ProgramError):
    pass


class ClusterUserInvalid(ProgramError):
    pass


class HeadNodeSetupError(ProgramError):
    pass


class SlurmControllerUnavailable(ProgramError):
    retryable = True


class SlurmAccountingUnavailable(ProgramError):
    retryable = True


class SlurmCommandFailed(ProgramError):
    pass


class SbatchRejected(ProgramError):
    pass


class ScriptFetchFailed(ProgramError):
    retryable = True


_CONTROLLER_DOWN_PATTERNS = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "connection timed out",
    "slurm temporarily unable",
    "zero bytes were transmitted or received",
    "communication connection failure",
    "unable to establish a connection",
    "slurmctld not responding",
)


def controller_unreachable(stderr):
    """True when a Slurm client's error output says that slurmctld could not be reached (worth retrying).

    A client that failed without a word counts too: scontrol was seen to exit 1 with empty stderr while slurmctld
    shut down, and a silent failure gives no reason to think the request itself is wrong (retries are bounded).
    """
    text = (stderr or "").strip().lower()
    return not text or any(pattern in text for pattern in _CONTROLLER_DOWN_PATTERNS)


def job_unknown_to_controller(stderr):
    return "invalid job id specified" in (stderr or "").lower()


# --------------------------------------------------------------------------------------------------------------------
# Running Slurm commands (as the cluster user)
# --------------------------------------------------------------------------------------------------------------------

SLURM_COMMAND_TIMEOUT_SECONDS = 120
JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SUBMISSION_ID_RE = re.compile(r"^[0-9a-f]{32}$")
SLURM_JOB_ID_RE = re.compile(r"^[0-9]{1,10}$")
USER_NAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
COMMENT_PREFIX = "slurm-job-api:"
MAX_SCRIPT_BYTES = 4 * 1024 * 1024
MAX_ENVIRONMENT_BYTES = 1024 * 1024
MAX_UPLOAD_BYTES = 5 * 1024**3  # a single S3 PUT
# sbatch options the Lambda may send: "--name=value" with one of these names, or "--flag" alone with one of the flags.
# Everything else is refused.
ALLOWED_SBATCH_OPTIONS = frozenset(
    [
        "job-name",
        "partition",
        "nodes",
        "ntasks",
        "cpus-per-task",
        "mem",
        "time",
        "array",
        "dependency",
        "account",
        "qos",
        "ntasks-per-node",
        "mem-per-cpu",
        "gpus",
        "gpus-per-node",
        "gpus-per-task",
        "gres",
        "constraint",
        "reservation",
        "licenses",
        "begin",
        "nice",
    ]
)
ALLOWED_SBATCH_FLAGS = frozenset(["exclusive", "requeue", "no-requeue"])
_OPTION_RE = re.compile(r"^--([a-z-]+)=(.+)$", re.DOTALL)
_FLAG_RE = re.compile(r"^--([a-z-]+)\Z")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _text(data):
    """A command's output as text: UTF-8, with universal newlines."""
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


class Slurm(object):
    """Runs Slurm client commands from one bin directory, with argv lists only."""

    def __init__(self, bin_dir):
        self.bin_dir = bin_dir

    def run(self, tool, args, timeout=SLURM_COMMAND_TIMEOUT_SECONDS, stdin=None, pass_fds=()):
        """The command's CompletedProcess, its output as text; `stdin`: bytes it reads (else nothing), `pass_fds`:
        descriptors it inherits."""
        path = os.path.join(self.bin_dir, tool)
        if not os.access(path, os.X_OK):
            raise HeadNodeSetupError(
                "Slurm command %s was not found or is not executable on the head node "
                "(check the SlurmBinDir parameter)" % path
            )
        try:
            done = subprocess.run(
                [path, *args],
                input=stdin,
                stdin=subprocess.DEVNULL if stdin is None else None,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=pass_fds,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise SlurmControllerUnavailable("%s did not answer within %d s" % (tool, timeout)) from None
        return subprocess.CompletedProcess(done.args, done.returncode, _text(done.stdout), _text(done.stderr))

    def check(self, tool, args):
        """Runs a command that must succeed; classifies its failure."""
        done = self.run(tool, args)
        if done.returncode != 0:
            message = "%s failed (exit %d): %s" % (tool, done.returncode, done.stderr.strip()[:2000])
            if controller_unreachable(done.stderr):
                raise SlurmControllerUnavailable(message)
            raise SlurmCommandFailed(message)
        return done.stdout

    def config(self):
        return parse_slurm_config(self.check("scontrol", ["show", "config"]))


# --------------------------------------------------------------------------------------------------------------------
# The product's files on the head node (docs/architecture.md, "Files on the head node")
#
# The bookkeeping is root's, outside every home, on a path that only root can change:
#
#   /var/lib/slurm-job-api/                               root, 0711 (STATE_DIRECTORY)
#       users/<user>/jobs/<jobId>/                        root, 0700 each level
#           <submissionId>.lock                           root, 0600: one submit of a submission at a time
#           <submissionId>.submitted                      root, 0600: the Slurm job id, once sbatch took the job
#
# The job directories are the user's, in the user's home (which ParallelCluster shares with the compute nodes, where
# Slurm writes the jobs' output), made by the user stage as that user: root never writes in a home.
#
#   ~user/.slurm-job-api-jobs/<jobId>/<submissionId>/     the user's, 0700 each level: job.sh, environment, output
#
# Both stages open every directory relative to its parent's descriptor with O_NOFOLLOW|O_DIRECTORY|O_NONBLOCK and
# judge what they opened by fstat, so no symlink, FIFO or directory swapped in between a check and a use is ever
# followed; an entry that is not what it must be is renamed aside within its parent (".<name>.tampered-<utc>-<random>")
# and made again, and a directory of the user's that a chmod closed is opened again.
#
# Versions before this one kept the bookkeeping in root-owned directories of the home, beside each job's directory:
# ~user/.slurm-job-api/jobs/<jobId>/<submissionId>{/,.lock,.submitted} (LEGACY_DIRECTORY). Root still reads those
# markers (it never writes there) and collect falls back to those job directories, so that jobs submitted before an
# upgrade are recognised when their submit is retried, and collected.
# --------------------------------------------------------------------------------------------------------------------

STATE_DIRECTORY = "/var/lib/slurm-job-api"
# Where the state directory is instead, if the SSM agent's environment says so (the local stack gives each checkout
# its own); on a head node the default is right.
STATE_DIRECTORY_VARIABLE = "SLURM_JOB_API_HEAD_NODE_STATE_DIRECTORY"
STATE_MODE = 0o711
INDEX_MODE = 0o700
JOB_DIRECTORIES = ".slurm-job-api-jobs"
LEGACY_DIRECTORY = ".slurm-job-api"
PRIVATE_MODE = 0o700
ROOT_FILE_MODE = 0o600
LOCK_SUFFIX = ".lock"
SUBMITTED_SUFFIX = ".submitted"
_REPAIR_ATTEMPTS = 10
_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A level to pass through without reading it (another user's directory of mode 0711); Linux, like the head node.
_OPEN_PASSAGE = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def job_directory_path(home, job_id, submission_id):
    """~/.slurm-job-api-jobs/<jobId>/<submissionId>: one submission's directory. The submission id keeps a job id that
    comes back (an Idempotency-Key reused against a redeployed stack) from meeting earlier files."""
    path = os.path.join(home, JOB_DIRECTORIES, job_id, submission_id)
    if "%" in path or "\n" in path:
        raise HeadNodeSetupError("the cluster user's home directory %r cannot hold Slurm output paths" % home)
    return path


def legacy_job_directory_path(home, job_id, submission_id):
    """Where versions before the state directory put a submission's directory (root's levels above it)."""
    return os.path.join(home, LEGACY_DIRECTORY, "jobs", job_id, submission_id)


def _describe(info):
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    )
    for test, kind in kinds:
        if test(info.st_mode):
            return kind
    if stat.S_ISDIR(info.st_mode):
        return "a directory of uid %d, mode %04o" % (info.st_uid, stat.S_IMODE(info.st_mode))
    return "a special file"


def _move_aside(parent_fd, parent_path, name, diagnostics):
    """Renames parent/name (whatever it is by now; rename never follows it) to a fresh name in the same parent."""
    try:
        found = _describe(os.stat(name, dir_fd=parent_fd, follow_symlinks=False))  # for the message only
    except FileNotFoundError:
        return
    moment = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = "%s.tampered-%s-%s" % (name if name.startswith(".") else "." + name, moment, os.urandom(6).hex())
    try:
        os.rename(name, aside, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except FileNotFoundError:
        return
    except OSError as error:
        raise HeadNodeSetupError(
            "%s is %s and cannot be moved aside: %s" % (os.path.join(parent_path, name), found, error)
        ) from None
    diagnostics.append(
        "%s was %s, not the product's: moved aside to %s and made again"
        % (os.path.join(parent_path, name), found, aside)
    )


def _open_again(parent_fd, parent_path, name, owner, device, mode, diagnostics):
    """True if parent/name is a directory of `owner`, the user running this, that a chmod closed to its owner: its mode
    is set back to `mode` through a descriptor of it (O_PATH, which needs no permission on it and follows nothing)."""
    if owner != os.geteuid() or not hasattr(os, "O_PATH"):
        return False
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_dev != device:
            return False
        os.chmod("/proc/self/fd/%d" % fd, mode)  # fchmod refuses O_PATH descriptors; this names the same inode
    except OSError:
        return False
    finally:
        os.close(fd)
    diagnostics.append(
        "%s was closed (mode %04o): its mode is %04o again"
        % (os.path.join(parent_path, name), stat.S_IMODE(info.st_mode), mode)
    )
    return True


def _directory(parent_fd, parent_path, name, mode, diagnostics, owner=0):
    """A descriptor of parent/name, made if missing, with `mode`: a real directory on the parent's file system owned
    by `owner` (root's must not be writable by others). One of the owner's that a chmod closed is opened again;
    anything else there is moved aside and made again."""
    device = os.fstat(parent_fd).st_dev
    for _ in range(_REPAIR_ATTEMPTS):
        try:
            os.mkdir(name, mode, dir_fd=parent_fd)
        except FileExistsError:
            pass
        except OSError as error:
            raise HeadNodeSetupError(
                "uid %d cannot create %s: %s" % (os.geteuid(), os.path.join(parent_path, name), error)
            ) from None
        try:
            fd = os.open(name, _OPEN_DIRECTORY, dir_fd=parent_fd)
        except FileNotFoundError:
            continue  # moved away meanwhile: make it again
        except PermissionError:
            if _open_again(parent_fd, parent_path, name, owner, device, mode, diagnostics):
                continue
            fd = None
        except OSError:
            fd = None  # a symlink, file, FIFO or socket (O_DIRECTORY refuses each without opening or following it)
        if fd is not None:
            info = os.fstat(fd)
            if info.st_uid == owner and info.st_dev == device and (owner != 0 or not info.st_mode & 0o022):
                if stat.S_IMODE(info.st_mode) != mode:
                    os.fchmod(fd, mode)
                return fd
            os.close(fd)
        _move_aside(parent_fd, parent_path, name, diagnostics)
    raise HeadNodeSetupError("%s keeps being replaced while it is prepared" % os.path.join(parent_path, name))


def _existing_directory(parent_fd, parent_path, name, owner, device, diagnostics):
    """A descriptor of parent/name if it is a real directory of `owner` on `device` (None otherwise): readable if it
    is the running user's (one a chmod closed is opened again), else only passed through. Nothing is made or moved."""
    flags = _OPEN_DIRECTORY if owner == os.geteuid() else _OPEN_PASSAGE
    for _ in range(2):
        try:
            fd = os.open(name, flags, dir_fd=parent_fd)
        except PermissionError:
            if _open_again(parent_fd, parent_path, name, owner, device, PRIVATE_MODE, diagnostics):
                continue
            return None
        except OSError:
            return None
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == owner and info.st_dev == device:
            return fd
        os.close(fd)
        return None
    return None


def _root_file(parent_fd, parent_path, name, flags, diagnostics):
    """A descriptor of parent/name, a regular file of root's with one link (O_CREAT in `flags` makes it, mode 0600);
    None if it is absent and not to be made. Anything else there is moved aside."""
    for _ in range(_REPAIR_ATTEMPTS):
        try:
            fd = os.open(name, flags | _OPEN_FILE, ROOT_FILE_MODE, dir_fd=parent_fd)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                return None
            continue
        except OSError:
            fd = None  # a symlink (O_NOFOLLOW), a socket, ...
        if fd is not None:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid == 0 and info.st_nlink == 1:
                if stat.S_IMODE(info.st_mode) != ROOT_FILE_MODE:
                    os.fchmod(fd, ROOT_FILE_MODE)
                return fd
            os.close(fd)
        _move_aside(parent_fd, parent_path, name, diagnostics)
    raise HeadNodeSetupError("%s keeps being replaced while root prepares it" % os.path.join(parent_path, name))


def _write_file(parent_fd, name, data, mode):
    """Replaces parent/name atomically by a new file of the running user's, with `mode`, holding `data`; returns a
    descriptor of the new file, read from its start (never a path: the directory may be renamed meanwhile)."""
    temporary = ".%s.tmp-%s" % (name, os.urandom(8).hex())
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FILE, mode, dir_fd=parent_fd)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        os.rename(temporary, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=parent_fd)
        raise
    return fd


def _write_root_file(parent_fd, name, data):
    """Replaces parent/name atomically by a new 0600 file of root's holding `data`."""
    os.close(_write_file(parent_fd, name, data, ROOT_FILE_MODE))


def _state_directory():
    """(descriptor, path) of the state directory, made if missing. Every directory on its path must be root's and
    closed to writes by others (or sticky, as /tmp is, where only an entry's owner may rename it), so that no other
    user can rename, replace or change anything below it."""
    configured = os.environ.get(STATE_DIRECTORY_VARIABLE) or STATE_DIRECTORY
    if not configured.startswith("/") or "\x00" in configured:
        raise HeadNodeSetupError("the state directory must be an absolute path, not %r" % configured)
    path = os.path.realpath(configured)
    names = [name for name in path.split("/") if name]
    if not names:
        raise HeadNodeSetupError("the state directory cannot be /")
    fd, current = os.open("/", _OPEN_DIRECTORY), "/"
    try:
        for index, name in enumerate(names):
            info = os.fstat(fd)
            if info.st_uid != 0 or (info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX):
                raise HeadNodeSetupError(
                    "the state directory %s is below %s, which is %s: users other than root could rename what is in "
                    "it" % (path, current, _describe(info))
                )
            try:  # an existing entry answers EEXIST first, even on a read-only file system
                os.mkdir(name, STATE_MODE if index == len(names) - 1 else 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as error:
                message = "root cannot create %s: %s" % (os.path.join(current, name), error)
                raise HeadNodeSetupError(message) from None
            try:
                child = os.open(name, _OPEN_DIRECTORY, dir_fd=fd)
            except OSError as error:
                message = "%s is not a directory root can open: %s" % (os.path.join(current, name), error)
                raise HeadNodeSetupError(message) from None
            os.close(fd)
            fd, current = child, os.path.join(current, name)
        info = os.fstat(fd)
        if info.st_uid != 0 or info.st_mode & 0o022:
            raise HeadNodeSetupError(
                "the state directory %s is %s: it must be root's and writable by root alone" % (path, _describe(info))
            )
        return fd, path
    except BaseException:
        os.close(fd)
        raise


class JobIndex(object):
    """The root stage's hold on its index of one user's jobs, in the state directory: directory descriptors, closed on
    leaving the `with`."""

    def __init__(self, user, diagnostics):
        self.user = user
        self.diagnostics = diagnostics
        self._descriptors = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        while self._descriptors:
            os.close(self._descriptors.pop())

    def _keep(self, fd):
        self._descriptors.append(fd)
        return fd

    def job(self, job_id):
        """(descriptor, path) of users/<user>/jobs/<jobId>/, each level made or repaired first."""
        state, path = _state_directory()
        fd = self._keep(state)
        for name in ("users", self.user.pw_name, "jobs", job_id):
            fd = self._keep(_directory(fd, path, name, INDEX_MODE, self.diagnostics))
            path = os.path.join(path, name)
        return fd, path


def _legacy_marker(user, job_id, submission_id):
    """The Slurm job id an earlier version recorded for this submission in its tree in the home, or None. The tree
    counts only where every level is root's, as those versions made it (a job can rename the tree, never write in it);
    root only reads it."""
    descriptors = []
    try:
        fd = os.open(user.pw_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        descriptors.append(fd)
        device = os.fstat(fd).st_dev
        for name in (LEGACY_DIRECTORY, "jobs", job_id):
            fd = os.open(name, _OPEN_DIRECTORY, dir_fd=fd)
            descriptors.append(fd)
            info = os.fstat(fd)
            if info.st_uid != 0 or info.st_mode & 0o022 or info.st_dev != device:
                return None
        marker = os.open(submission_id + SUBMITTED_SUFFIX, os.O_RDONLY | _OPEN_FILE, dir_fd=fd)
        with os.fdopen(marker, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_nlink != 1:
                return None
            text = handle.read(64).decode("ascii", "replace").strip()
        return text if SLURM_JOB_ID_RE.match(text) else None
    except OSError:
        return None
    finally:
        for fd in descriptors:
            os.close(fd)


def _home():
    """(descriptor, path) of the running user's home (user stage)."""
    home = pwd.getpwuid(os.getuid()).pw_dir
    try:
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise HeadNodeSetupError("the home directory %s cannot be opened: %s" % (home, error)) from None
    if os.fstat(fd).st_uid not in (0, os.getuid()):
        os.close(fd)
        raise HeadNodeSetupError("the home directory %s is not owned by uid %d" % (home, os.getuid()))
    return fd, home


def make_job_directory(job_id, submission_id, diagnostics):
    """(descriptor, path) of the submission's directory in the user's home, each level made or repaired (user stage)."""
    fd, home = _home()
    path = job_directory_path(home, job_id, submission_id)
    parent_path = home
    try:
        for name in (JOB_DIRECTORIES, job_id, submission_id):
            child = _directory(fd, parent_path, name, PRIVATE_MODE, diagnostics, owner=os.getuid())
            os.close(fd)
            fd, parent_path = child, os.path.join(parent_path, name)
    except BaseException:
        os.close(fd)
        raise
    return fd, path


def open_job_directory(job_id, submission_id, diagnostics):
    """(descriptor, path) of the submission's directory as submit made it, else as an earlier version made it (levels
    above it root's); (None, path) if neither is there. Nothing is followed, made or moved (user stage)."""
    home_fd, home = _home()
    uid = os.getuid()
    layouts = (  # each level's name and owner
        ((JOB_DIRECTORIES, uid), (job_id, uid), (submission_id, uid)),
        ((LEGACY_DIRECTORY, 0), ("jobs", 0), (job_id, 0), (submission_id, uid)),
    )
    try:
        device = os.fstat(home_fd).st_dev
        for levels in layouts:
            fd, path = os.dup(home_fd), home
            try:
                for name, owner in levels:
                    child = _existing_directory(fd, path, name, owner, device, diagnostics)
                    if child is None:
                        break
                    os.close(fd)
                    fd, path = child, os.path.join(path, name)
                else:
                    found, fd = fd, None
                    return found, path
            finally:
                if fd is not None:
                    os.close(fd)
        return None, job_directory_path(home, job_id, submission_id)
    finally:
        os.close(home_fd)


def output_name(stream, task_id=None):
    """The name of a job's stdout/stderr in its directory: slurm-stdout, or slurm-stdout.<task> for arrays."""
    name = "slurm-%s" % stream
    return name if task_id is None else "%s.%d" % (name, task_id)


def output_path(directory, stream, task_id=None):
    """Where Slurm writes a job's stdout/stderr: <jobdir>/slurm-stdout, or slurm-stdout.<task> for arrays."""
    return os.path.join(directory, output_name(stream, task_id))


# --------------------------------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------------------------------


def _require(request, key, pattern=None):
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest("request field %r is missing" % key)
    if pattern is not None and not pattern.match(value):
        raise BadRequest("request field %r is malformed" % key)
    return value


def _checked_sbatch_options(options):
    if not isinstance(options, list):
        raise BadRequest("sbatchOptions must be a list")
    for option in options:
        match = _OPTION_RE.match(option) if isinstance(option, str) else None
        flag = _FLAG_RE.match(option) if isinstance(option, str) else None
        if (match is None or match.group(1) not in ALLOWED_SBATCH_OPTIONS) and (
            flag is None or flag.group(1) not in ALLOWED_SBATCH_FLAGS
        ):
            raise BadRequest("sbatch option not allowed: %r" % (option,))
        if "\x00" in option or "\n" in option:
            raise BadRequest("sbatch option contains a control character: %r" % (option,))
    return options


def _environment_file_content(environment):
    if not isinstance(environment, dict):
        raise BadRequest("environment must be an object")
    parts = []
    for name in sorted(environment):
        value = environment[name]
        if not ENV_NAME_RE.match(name) or not isinstance(value, str) or "\x00" in value:
            raise BadRequest("invalid environment variable %r" % (name,))
        parts.append(("%s=%s\x00" % (name, value)).encode("utf-8"))
    return b"".join(parts)


def _check_url(url, what):
    """Refuses anything but an http(s) URL (a presigned S3 URL) with BadRequest."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise BadRequest("%s must be http(s) URLs" % what)


def _fetch(url, limit):
    """GETs a presigned S3 URL (the job script or environment), at most `limit` bytes."""
    import urllib.error  # here, not at the top: see collect
    import urllib.request

    _check_url(url, "download URLs")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a presigned S3 URL
            data = response.read(limit + 1)
    except urllib.error.HTTPError as error:
        raise ScriptFetchFailed("downloading the job input failed: HTTP %d" % error.code) from None
    except (urllib.error.URLError, OSError) as error:
        raise ScriptFetchFailed("downloading the job input failed: %s" % error) from None
    if len(data) > limit:
        raise BadRequest("the job input is larger than %d bytes" % limit)
    return data


def job_comment(job_id, submission_id):
    """The Slurm job comment that ties a Slurm job to one submission of one of our jobs."""
    return "%s%s:%s" % (COMMENT_PREFIX, job_id, submission_id)


def _find_submitted_job(slurm, job_id, submission_id):
    """The Slurm id of the job that carries this submission's comment (a submit retried after sbatch succeeded, before
    root wrote the marker). The earliest such job: a job can copy a comment only once it has seen it in squeue."""
    user = pwd.getpwuid(os.getuid()).pw_name
    done = slurm.run("squeue", ["--noheader", "--states=all", "--user=" + user, "--format=%F|%k"])
    if done.returncode != 0:
        if controller_unreachable(done.stderr):
            raise SlurmControllerUnavailable("squeue failed: %s" % done.stderr.strip()[:2000])
        raise SlurmCommandFailed("squeue failed: %s" % done.stderr.strip()[:2000])
    wanted = job_comment(job_id, submission_id)
    found = []
    for line in done.stdout.splitlines():
        base_id, _, comment = line.partition("|")
        if comment.strip() == wanted and SLURM_JOB_ID_RE.match(base_id.strip()):
            found.append(int(base_id))
    return str(min(found)) if found else None


def _submission(request):
    """A submit request's checked fields: (jobId, submissionId, sbatch options, environmentUrl, workingDirectory)."""
    job_id = _require(request, "jobId", JOB_ID_RE)
    submission_id = _require(request, "submissionId", SUBMISSION_ID_RE)
    options = _checked_sbatch_options(request.get("sbatchOptions", []))
    working_directory = request.get("workingDirectory")
    if working_directory is not None and (
        not isinstance(working_directory, str) or not working_directory.startswith("/") or "\x00" in working_directory
    ):
        raise BadRequest("workingDirectory must be an absolute path")
    return job_id, submission_id, options, request.get("environmentUrl"), working_directory


def submit(request, slurm, diagnostics=None):
    """sbatch, as the cluster user, in the job's directory; root holds the lock and keeps the marker (see
    _submit_as_root), so this runs once per submission unless a crash came between sbatch and marker.

    sbatch reads the script from its stdin and the environment from a descriptor, so what the job runs is what was
    downloaded, whatever happens to the paths in the home meanwhile; job.sh and environment stay in the directory for
    people to read."""
    job_id, submission_id, options, environment_url, working_directory = _submission(request)
    is_array = any(option.startswith("--array=") for option in options)
    directory_fd, directory = make_job_directory(job_id, submission_id, [] if diagnostics is None else diagnostics)
    descriptors = [directory_fd]
    try:
        found = _find_submitted_job(slurm, job_id, submission_id)
        if found:
            return {"slurmJobId": found, "alreadySubmitted": True, "jobDirectory": directory}
        script = _fetch(_require(request, "scriptUrl"), MAX_SCRIPT_BYTES)
        os.close(_write_file(directory_fd, "job.sh", script, 0o700))
        argv = [
            "--parsable",
            "--comment=" + job_comment(job_id, submission_id),
            "--chdir=" + (working_directory or directory),
            "--output=" + (output_path(directory, "stdout") + (".%a" if is_array else "")),
            "--error=" + (output_path(directory, "stderr") + (".%a" if is_array else "")),
            # A dependency that can never be satisfied (afterok on a job that failed or was cancelled) ends the job
            # (CANCELLED, reason DependencyNeverSatisfied) instead of leaving it pending forever (sbatch(1)).
            "--kill-on-invalid-dep=yes",
        ]
        if environment_url:
            try:
                environment = json.loads(_fetch(environment_url, MAX_ENVIRONMENT_BYTES).decode("utf-8"))
            except ValueError:
                raise BadRequest("the job environment is not a JSON object") from None
            content = _environment_file_content(environment)
            descriptors.append(_write_file(directory_fd, "environment", content, 0o600))
            argv.append("--export-file=%d" % descriptors[-1])  # sbatch(1): a number names a readable descriptor
        argv.extend(options)
        done = slurm.run("sbatch", argv, stdin=script, pass_fds=tuple(descriptors[1:]))
    finally:
        for fd in descriptors:
            os.close(fd)
    if done.returncode != 0:
        message = done.stderr.strip()[:4000] or "sbatch exited with %d" % done.returncode
        if controller_unreachable(done.stderr):
            raise SlurmControllerUnavailable(message)
        raise SbatchRejected(message)
    slurm_job_id = done.stdout.strip().split(";", 1)[0]
    if not SLURM_JOB_ID_RE.match(slurm_job_id):
        raise SlurmCommandFailed("sbatch printed no job id: %r" % done.stdout[:200])
    return {"slurmJobId": slurm_job_id, "alreadySubmitted": False, "jobDirectory": directory}


def _query(slurm, tool, args, parse):
    """Records from one Slurm query; [] when the controller does not know the job."""
    done = slurm.run(tool, args)
    if done.returncode == 0:
        return parse(done.stdout)
    if job_unknown_to_controller(done.stderr):
        return []
    if controller_unreachable(done.stderr):
        raise SlurmControllerUnavailable("%s failed: %s" % (tool, done.stderr.strip()[:2000]))
    raise SlurmCommandFailed("%s failed (exit %d): %s" % (tool, done.returncode, done.stderr.strip()[:2000]))


def _task_total(records):
    return sum(record.task_count for record in records)


def _status_counts(records):
    counts = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + record.task_count
    return counts


def _complete(candidate, live):
    """True if `candidate` can stand for the ended job: every task terminal and, when squeue still shows the job,
    the same tasks in the same states (sacct lags: it may miss tasks or still hold a requeued job's first end)."""
    if not _all_terminal(candidate):
        return False
    if not live:
        return True
    return _task_total(candidate) >= _task_total(live) and _status_counts(candidate) == _status_counts(live)


def _squeue_args(slurm_job_ids):
    return ["--noheader", "--array", "--states=all", "--jobs=" + ",".join(slurm_job_ids), "--format=" + SQUEUE_FORMAT]


def _sacct_args(slurm_job_ids):
    return [
        "--noheader",
        "--parsable2",
        "--allocations",
        "--jobs=" + ",".join(slurm_job_ids),
        "--format=" + SACCT_FIELDS,
    ]


def _scontrol_args(slurm_job_id):
    return ["--oneliner", "show", "job", slurm_job_id]


def _ended_or_gone(live):
    """True when squeue no longer shows the job, or shows it ended: its exit codes are then looked for elsewhere."""
    return not live or _all_terminal(live)


def _accounted(slurm, config, slurm_job_ids):
    """(sacct's records of these jobs, the error that kept them unread); ([], None) without accounting. slurmdbd being
    down is no failure here: slurmctld may still remember the jobs."""
    if not config["accountingAvailable"]:
        return [], None
    try:
        return _query(slurm, "sacct", _sacct_args(slurm_job_ids), parse_sacct), None
    except (SlurmCommandFailed, SlurmControllerUnavailable) as error:
        return [], error


def _in_task_order(records):
    """The records by their first task id: Slurm lists an array's tasks in another order when asked about one job than
    when asked about many, and the summary takes the first record of a status."""
    return sorted(records, key=lambda record: record.task_ids[0] if record.task_ids else -1)


def job_status(slurm_job_id, is_array, config, live, accounted, accounting_error, remember):
    """The status action's answer for one job, from what squeue shows of it (`live`) and, for a job squeue no longer
    shows or shows ended, what sacct holds (`accounted`, or the `accounting_error` that kept it unread); `remember()`
    gives scontrol's records, asked only when neither source has the job complete.

    Once the job has ended, the exit codes come from sacct when accounting works, else from slurmctld's memory
    (scontrol, for MinJobAge seconds); gone from both: not found. Accounting lags behind the controller (a just-finished
    array may show up in sacct as one plain job), so a source is used only if it has every task squeue has, each in a
    terminal state.
    """
    live, accounted = _in_task_order(live), _in_task_order(accounted)
    records, source = live, "squeue"
    if _ended_or_gone(live):
        remembered = [] if _complete(accounted, live) else _in_task_order(remember())
        for candidate, name in ((accounted, "sacct"), (remembered, "scontrol")):
            if _complete(candidate, live):
                records, source = candidate, name
                break
        else:
            if not live and not remembered and accounting_error is not None:
                raise SlurmAccountingUnavailable(
                    "Slurm no longer holds job %s and accounting cannot be read: %s" % (slurm_job_id, accounting_error)
                )
            # No complete terminal record with exit codes: squeue's own terminal states, else what is known.
            records, source = next(
                (
                    (candidate, name)
                    for candidate, name in ((live, "squeue"), (accounted, "sacct"), (remembered, "scontrol"))
                    if candidate
                ),
                ([], "none"),
            )
    result = {
        "slurmJobId": slurm_job_id,
        "found": bool(records),
        "source": source if records else "none",
        "accountingAvailable": config["accountingAvailable"],
        "minJobAge": config["minJobAge"],
    }
    if records:
        result.update(summarize(records, is_array or any(r.task_ids is not None for r in records)))
        if result["reason"] is None and result["status"] in TERMINAL_STATUSES:
            # sacct keeps the last reason the job waited for (e.g. Dependency); the controller, while it remembers the
            # job (MinJobAge), the reason Slurm ended it for (DependencyNeverSatisfied).
            result["reason"] = _first(r.reason for r in live if r.reason in ENDING_REASONS)
    return result


def _remembered(slurm, slurm_job_id):
    return _query(slurm, "scontrol", _scontrol_args(slurm_job_id), parse_scontrol_jobs)


def status(request, slurm, diagnostics=None):
    """The job's state: squeue while the job is active, then sacct or scontrol (job_status)."""
    slurm_job_id = _require(request, "slurmJobId", SLURM_JOB_ID_RE)
    is_array = bool(request.get("isArray"))
    config = slurm.config()
    live = _query(slurm, "squeue", _squeue_args([slurm_job_id]), parse_squeue)
    accounted, accounting_error = _accounted(slurm, config, [slurm_job_id]) if _ended_or_gone(live) else ([], None)
    return job_status(
        slurm_job_id, is_array, config, live, accounted, accounting_error, lambda: _remembered(slurm, slurm_job_id)
    )


def _all_terminal(records):
    return bool(records) and all(record.status in TERMINAL_STATUSES for record in records)


def cancel(request, slurm, diagnostics=None):
    slurm_job_id = _require(request, "slurmJobId", SLURM_JOB_ID_RE)
    slurm.check("scancel", [slurm_job_id])
    return {"slurmJobId": slurm_job_id, "requested": True}


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _put(url, body, size, content_type):
    """PUTs `size` bytes (`body`: bytes or a file) to a presigned URL."""
    import urllib.request  # here, not at the top: see collect

    put = urllib.request.Request(url, data=body, method="PUT")  # noqa: S310 - a presigned S3 URL
    put.add_header("Content-Length", str(size))
    # urllib would label the body as a form (application/x-www-form-urlencoded) otherwise.
    put.add_header("Content-Type", content_type)
    with urllib.request.urlopen(put, timeout=600) as response:  # noqa: S310 - a presigned S3 URL
        response.read()


def _upload(fd, url):
    """PUTs a regular file, opened as `fd` (closed here), to a presigned URL; returns its size."""
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > MAX_UPLOAD_BYTES:
            raise ValueError("larger than %d bytes" % MAX_UPLOAD_BYTES)
        _put(url, handle, info.st_size, "application/octet-stream")
        return info.st_size


def collect(request, slurm, diagnostics=None):
    """Uploads stdout/stderr (per task for arrays) and declared outputs through presigned PUT URLs. The job's streams
    are opened relative to its directory's descriptor, found without following anything (open_job_directory)."""
    # urllib is imported by the actions that move files, not at the top: importing it (http.client, email, ssl) was
    # a third of the CPU of every status and cancel command, which never use it.
    import urllib.error

    job_id = _require(request, "jobId", JOB_ID_RE)
    submission_id = _require(request, "submissionId", SUBMISSION_ID_RE)
    uploads = request.get("uploads")
    if not isinstance(uploads, list):
        raise BadRequest("uploads must be a list")
    directory_fd, directory = open_job_directory(job_id, submission_id, [] if diagnostics is None else diagnostics)
    working_directory = os.path.realpath(request.get("workingDirectory") or directory)
    files = []
    try:
        for upload in uploads:
            name = upload.get("name")
            source = upload.get("source")
            task_id = upload.get("taskId")
            try:
                if source in ("stdout", "stderr"):
                    stream = output_name(source, task_id if isinstance(task_id, int) else None)
                    fd = None if directory_fd is None else _open_if_present(stream, directory_fd)
                elif source == "output":
                    relative = upload.get("path") or ""
                    path = os.path.realpath(os.path.join(working_directory, relative))
                    if relative.startswith("/") or not _inside(path, working_directory):
                        raise ValueError("outside the working directory")
                    fd = _open_if_present(path)
                else:
                    raise ValueError("unknown source %r" % (source,))
                if fd is None:
                    files.append({"name": name, "status": "missing", "bytes": None, "message": None})
                    continue
                size = _upload(fd, upload["url"])
                files.append({"name": name, "status": "uploaded", "bytes": size, "message": None})
            except urllib.error.HTTPError as error:
                message = "upload HTTP %d" % error.code
                files.append({"name": name, "status": "error", "bytes": None, "message": message})
            except (OSError, ValueError, urllib.error.URLError) as error:
                files.append({"name": name, "status": "error", "bytes": None, "message": collect_message(error)})
    finally:
        if directory_fd is not None:
            os.close(directory_fd)
    return {"files": files}


# open(2) errors that mean nothing can be found by that name: no such entry, a component on the way that is not a
# directory, or a name longer than the system resolves (PATH_MAX: a declared output under the longest working
# directory the spec allows); the file is then missing, as lstat(2) would say, not an error.
_NOTHING_BY_THAT_NAME = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG)


def _open_if_present(path, directory_fd=None):
    """A descriptor of the file for reading, never through a symlink in its last component and never blocking on a
    FIFO; None if there is nothing there."""
    try:
        return os.open(path, os.O_RDONLY | _OPEN_FILE, dir_fd=directory_fd)
    except OSError as error:
        if error.errno in _NOTHING_BY_THAT_NAME:
            return None
        raise


# A file's error message in the collect reply, at most this many characters once JSON-encoded: the whole reply must fit
# the 24,000 characters of stdout SSM returns, and the Lambda sizes its collect batches by it (head_node.py).
COLLECT_MESSAGE_CHARACTERS = 200


def collect_message(error):
    """An upload error, as ASCII (JSON escapes nothing in it) and at most COLLECT_MESSAGE_CHARACTERS long."""
    text = str(error).encode("ascii", "backslashreplace").decode("ascii")
    return text.replace("\\", "/").replace('"', "'")[:COLLECT_MESSAGE_CHARACTERS]


# read-output's largest page: its reply fits what SSM returns of stdout (SSM_STDOUT_CHARACTERS in head_node.py).
READ_OUTPUT_MAX_BYTES = 12 * 1024
MAX_FILE_OFFSET = 2**63 - 1
MAX_TASK_ID = 4000000


def _number(request, key, high, low=0):
    value = request.get(key)
    if type(value) is not int or not low <= value <= high:
        raise BadRequest("request field %r must be an integer from %d to %d" % (key, low, high))
    return value


def read_output(request, slurm, diagnostics=None):
    """At most `limit` bytes of a job's stdout/stderr from `offset` (base64) and its size. The stream is opened
    relative to the job's directory (open_job_directory), never through a symlink; not a regular file: not found."""
    job_id = _require(request, "jobId", JOB_ID_RE)
    submission_id = _require(request, "submissionId", SUBMISSION_ID_RE)
    stream = request.get("stream")
    if stream not in ("stdout", "stderr"):
        raise BadRequest("request field 'stream' is malformed")
    task_id = None if request.get("taskId") is None else _number(request, "taskId", MAX_TASK_ID)
    offset = _number(request, "offset", MAX_FILE_OFFSET)
    limit = _number(request, "limit", READ_OUTPUT_MAX_BYTES, low=1)
    directory_fd = open_job_directory(job_id, submission_id, [] if diagnostics is None else diagnostics)[0]
    size, data, fd = 0, None, None
    if directory_fd is not None:
        with contextlib.suppress(OSError):  # a symlink (O_NOFOLLOW) is no stream
            fd = _open_if_present(output_name(stream, task_id), directory_fd)
        os.close(directory_fd)
    if fd is not None:
        with os.fdopen(fd, "rb"):
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode):  # never beyond the size it says: the file may grow meanwhile
                size = info.st_size
                data = os.pread(fd, min(limit, size - offset), offset) if offset < size else b""
    return {"found": data is not None, "size": size, "offset": offset, "data": base64.b64encode(data or b"").decode()}


# Jobs one sweep may ask about. The command must also fit SSM's limit (head_node.COMMAND_BUDGET_BYTES): 4500 ids
# close together do, about 2,000 random 10-digit ones; the Lambda sizes its sweeps by the command.
MAX_SWEEP_JOBS = 4500
SWEEP_QUERY_TOOLS = ("squeue", "sacct", "scontrol")


class _CountedSlurm(object):
    """Slurm, counting the job queries made through it by tool (a sweep's "queries")."""

    def __init__(self, slurm):
        self.slurm = slurm
        self.queries = dict.fromkeys(SWEEP_QUERY_TOOLS, 0)

    def run(self, tool, args, **options):
        self.queries[tool] += 1
        return self.slurm.run(tool, args, **options)


def _sweep_jobs(jobs):
    """The jobs a sweep asks about, checked: [(slurmJobId, isArray)], in the order asked."""
    if not isinstance(jobs, list) or not jobs:
        raise BadRequest("jobs must be a non-empty list")
    if len(jobs) > MAX_SWEEP_JOBS:
        raise BadRequest("a sweep asks about %d jobs at the most, not %d" % (MAX_SWEEP_JOBS, len(jobs)))
    if not all(isinstance(job, dict) for job in jobs):
        raise BadRequest("each of jobs must be an object")
    return [(_require(job, "slurmJobId", SLURM_JOB_ID_RE), bool(job.get("isArray"))) for job in jobs]


def _by_job(records, slurm_job_ids):
    """Each job's records, as Slurm gives them when asked about that job alone (records it selects, in order)."""
    found = {slurm_job_id: [] for slurm_job_id in slurm_job_ids}
    for record in records:
        for slurm_job_id in record.job_ids:
            if slurm_job_id in found:
                found[slurm_job_id].append(record)
    return found


def sweep(request, slurm, diagnostics=None):
    """The status of many jobs for the price of a few Slurm queries: one squeue for all of them, one sacct for those
    squeue no longer shows or shows ended, and scontrol (one call each) only for those neither knows completely.
    Each job's entry is what the status action would answer (job_status). The report, {"jobs": [...]}, is PUT to
    reportUrl: it can be larger than what SSM returns of stdout."""
    import urllib.error  # here, not at the top: see collect

    jobs = _sweep_jobs(request.get("jobs"))
    report_url = request.get("reportUrl")
    _check_url(report_url, "report URLs")
    config = slurm.config()
    counted = _CountedSlurm(slurm)
    slurm_job_ids = list(dict.fromkeys(slurm_job_id for slurm_job_id, _ in jobs))
    live = _by_job(_query(counted, "squeue", _squeue_args(slurm_job_ids), parse_squeue), slurm_job_ids)
    ended = [slurm_job_id for slurm_job_id in slurm_job_ids if _ended_or_gone(live[slurm_job_id])]
    accounted, accounting_error = _accounted(counted, config, ended) if ended else ([], None)
    accounted = _by_job(accounted, ended)
    remembered = {}

    def remember(slurm_job_id):
        if slurm_job_id not in remembered:
            remembered[slurm_job_id] = _remembered(counted, slurm_job_id)
        return remembered[slurm_job_id]

    entries = [
        job_status(
            slurm_job_id,
            is_array,
            config,
            live[slurm_job_id],
            accounted.get(slurm_job_id, []),
            accounting_error,
            lambda slurm_job_id=slurm_job_id: remember(slurm_job_id),
        )
        for slurm_job_id, is_array in jobs
    ]
    report = json.dumps({"jobs": entries}, sort_keys=True, separators=(",", ":")).encode("utf-8")
    # A failed PUT is reported as ScriptFetchFailed, the one error of a transfer to or from S3 (retryable: a new sweep,
    # with a new presigned URL, may well succeed).
    try:
        _put(report_url, report, len(report), "application/json")
    except urllib.error.HTTPError as error:
        raise ScriptFetchFailed("uploading the sweep report failed: HTTP %d" % error.code) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ScriptFetchFailed("uploading the sweep report failed: %s" % collect_message(error)) from None
    return {"reported": len(entries), "reportBytes": len(report), "queries": counted.queries}


def check_user(request, slurm, diagnostics=None):
    """Who this command runs as, once the root stage let it run as the requested cluster user (every check of
    _cluster_user passed): an operator's check of a caller mapping before it is written (scripts/caller-mappings)."""
    entry = pwd.getpwuid(os.getuid())
    return {"clusterUser": entry.pw_name, "uid": entry.pw_uid}


ACTIONS = {
    "submit": submit,
    "status": status,
    "cancel": cancel,
    "collect": collect,
    "sweep": sweep,
    "check-user": check_user,
    "read-output": read_output,
}

# The protocol's fields, declared once. The Lambda side types them in slurm_job_api/head_node_protocol.py, and
# tests/unit/test_head_node_protocol.py keeps both equal to these (and the program's reads and replies within them).
REQUEST_FIELDS = ("protocol", "action", "clusterUser", "slurmBinDir")  # in every request
ACTION_REQUEST_FIELDS = {  # each action's own; optional ones may be absent or null
    "submit": ("jobId", "submissionId", "scriptUrl", "sbatchOptions", "workingDirectory", "environmentUrl"),
    "status": ("jobId", "slurmJobId", "isArray"),  # jobId only names the job in the command's comment
    "cancel": ("jobId", "slurmJobId"),
    "collect": ("jobId", "submissionId", "slurmJobId", "workingDirectory", "uploads"),
    "sweep": ("jobId", "jobs", "reportUrl"),  # jobId, if given, only names the sweep in the command's comment
    "check-user": ("jobId",),  # nothing of its own: the user checked is the request's clusterUser
    "read-output": ("jobId", "submissionId", "stream", "taskId", "offset", "limit"),
}
UPLOAD_FIELDS = ("name", "source", "taskId", "path", "url")  # one entry of collect's uploads
SWEEP_JOB_FIELDS = ("slurmJobId", "isArray")  # one entry of sweep's jobs
SUMMARY_FIELDS = (  # what summarize() reports of a job Slurm knows
    "status",
    "slurmState",
    "reason",
    "exitCode",
    "signal",
    "submitTime",
    "startTime",
    "endTime",
    "arrayTaskCounts",
)
REPLY_FIELDS = {  # the "result" of each action
    "submit": ("slurmJobId", "alreadySubmitted", "jobDirectory"),
    "status": ("slurmJobId", "found", "source", "accountingAvailable", "minJobAge", *SUMMARY_FIELDS),
    "cancel": ("slurmJobId", "requested"),
    "collect": ("files",),
    "sweep": ("reported", "reportBytes", "queries"),  # the report itself: {"jobs": [<a status result>, ...]}
    "check-user": ("clusterUser", "uid"),
    "read-output": ("found", "size", "offset", "data"),  # data: base64 of at most limit bytes from offset
}
FILE_REPORT_FIELDS = ("name", "status", "bytes", "message")  # one entry of collect's files
ERROR_FIELDS = ("type", "message", "retryable")
# Reply fields for people: the Lambdas log them and never act on them.
DIAGNOSTIC_REPLY_FIELDS = {"submit": ("jobDirectory",), "status": ("source", "submitTime"), "sweep": ("queries",)}


# --------------------------------------------------------------------------------------------------------------------
# Entry point: root stage (drop to the cluster user) and user stage (do the work)
# --------------------------------------------------------------------------------------------------------------------

# Both stages run isolated (-I: no environment variable, no user site, not the working directory on sys.path) and
# without site (-S: the program uses only the standard library; on Debian's python3.11 site costs 7 of an empty
# interpreter's 20 ms of CPU, and each command starts two interpreters).
PYTHON_OPTIONS = ("-I", "-S")
LOADER = (
    "import base64,sys,zlib;p=sys.stdin.readline();"
    'exec(compile(zlib.decompress(base64.b64decode(p)),"slurm-job-api-head-node","exec"),'
    '{"__name__":"__main__","PROGRAM_LINE":p})'
)


def _reply(action, result=None, error=None):
    document = {"ok": error is None, "protocol": PROTOCOL, "action": action}
    if error is None:
        document["result"] = result
    else:
        document["error"] = {
            "type": type(error).__name__ if isinstance(error, ProgramError) else INTERNAL_ERROR,
            "message": str(error)[:4000],
            "retryable": bool(getattr(error, "retryable", False)),
        }
    return json.dumps(document, sort_keys=True)


# Who jobs may run as, checked here at run time whatever the Lambda sent: never root, never an account below
# MIN_CLUSTER_UID (system accounts), never one of DENIED_CLUSTER_USERS (system and service accounts that a head node
# may give a uid in the users' range). An operator tightens both in a policy file on the head node (README, "What
# the head node needs"): {"minUid": 2000, "deniedUsers": ["admin"]}. It is read only if root owns it and only root
# may write it; it can raise the minimum and add names, never lower or remove ours.
MIN_CLUSTER_UID = 1000
DENIED_CLUSTER_USERS = frozenset(
    [
        *("root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data"),
        *("backup", "list", "irc", "gnats", "nobody", "nfsnobody", "adm", "operator", "halt", "shutdown", "ftp"),
        *("slurm", "munge", "slurmrestd", "pcluster-admin", "dcv", "dcvsmagent", "ssm-user", "sshd"),
    ]
)
POLICY_FILE_VARIABLE = "SLURM_JOB_API_HEAD_NODE_POLICY_FILE"
DEFAULT_POLICY_FILE = "/etc/slurm-job-api/policy.json"
MAX_POLICY_BYTES = 64 * 1024


def cluster_user_policy(path=None):
    """(minimum uid, denied names) in force: ours, tightened by the policy file if root owns it and nobody else may
    write it. A policy file that exists but cannot be trusted or read is a setup error, not silently ignored."""
    path = path or os.environ.get(POLICY_FILE_VARIABLE) or DEFAULT_POLICY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return MIN_CLUSTER_UID, DENIED_CLUSTER_USERS
    except OSError as error:
        raise HeadNodeSetupError("cannot read the policy file %s: %s" % (path, error.strerror)) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            raise HeadNodeSetupError(
                "the policy file %s must be a regular file of root's that only root may write" % path
            )
        text = handle.read(MAX_POLICY_BYTES + 1)
    try:
        policy = json.loads(text.decode("utf-8")) if len(text) <= MAX_POLICY_BYTES else None
    except ValueError:
        policy = None
    if not isinstance(policy, dict):
        raise HeadNodeSetupError(
            "the policy file %s is not a JSON object of at most %d bytes" % (path, MAX_POLICY_BYTES)
        )
    min_uid = policy.get("minUid", MIN_CLUSTER_UID)
    denied = policy.get("deniedUsers", [])
    if type(min_uid) is not int or not isinstance(denied, list) or not all(isinstance(name, str) for name in denied):
        raise HeadNodeSetupError(
            'the policy file %s: "minUid" must be an integer, "deniedUsers" a list of names' % path
        )
    return max(MIN_CLUSTER_UID, min_uid), DENIED_CLUSTER_USERS | frozenset(denied)


def _cluster_user(request):
    name = _require(request, "clusterUser", USER_NAME_RE)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ClusterUserInvalid("the cluster user %r does not exist on the head node" % name) from None
    if entry.pw_uid == 0:
        raise ClusterUserInvalid("jobs never run as root: the cluster user %r has uid 0" % name)
    min_uid, denied = cluster_user_policy()
    if entry.pw_name in denied or name in denied:
        raise ClusterUserInvalid("jobs never run as the system or service account %r" % name)
    if entry.pw_uid < min_uid:
        raise ClusterUserInvalid(
            "jobs never run as a system account: the cluster user %r has uid %d, below the minimum %d"
            % (name, entry.pw_uid, min_uid)
        )
    return entry


def _child_environment(user):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "LANG": "C.UTF-8",
    }
    for name in ("SLURM_CONF", "TZ"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


MAX_REQUEST_BYTES = 16 * 1024 * 1024  # a decompressed request; real ones are a few hundred KiB at most


def decode_request_line(request_line):
    """The request from its line: base64 of the zlib-compressed JSON document (compressed because a collect request
    carries many presigned URLs that share most of their text, and SSM limits a command's size)."""
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(base64.b64decode(request_line.strip(), validate=True), MAX_REQUEST_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise BadRequest("the request is larger than %d bytes or cut short" % MAX_REQUEST_BYTES)
        return json.loads(data.decode("utf-8"))
    except (ValueError, zlib.error):
        raise BadRequest("the request is not base64-encoded, zlib-compressed JSON") from None


def _run_as(user, program_line, request_line):
    """Runs this program again as `user` (root stage only); returns (stdout, exit code) of that run."""
    runuser = shutil.which("runuser", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if runuser is None:
        raise HeadNodeSetupError("runuser (util-linux) is needed on the head node to run jobs as the cluster user")
    argv = [runuser, "-u", user.pw_name, "--", sys.executable or "python3", *PYTHON_OPTIONS, "-c", LOADER]
    try:
        done = subprocess.run(
            argv,
            input=program_line + request_line,
            stdout=subprocess.PIPE,
            universal_newlines=True,
            env=_child_environment(user),
            cwd="/",
            timeout=3000,
        )
    except OSError as error:
        raise HeadNodeSetupError("cannot switch to the cluster user with runuser: %s" % error) from None
    return done.stdout, done.returncode


def _last_document(output):
    """The JSON object on the last line of a stage's output, or None."""
    lines = output.strip().splitlines()
    try:
        document = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _with_diagnostics(output, diagnostics, stderr):
    """The reply with what this stage repaired added to its `"diagnostics": [...]` (also on stderr, which SSM keeps);
    the user stage's own come first."""
    if not diagnostics:
        return output
    for line in diagnostics:
        stderr.write("slurm-job-api: %s\n" % line)
    document = _last_document(output)
    if document is None:
        return output
    earlier = document.get("diagnostics")
    document["diagnostics"] = [*(earlier if isinstance(earlier, list) else []), *diagnostics]
    return "\n".join([*output.strip().splitlines()[:-1], json.dumps(document, sort_keys=True)]) + "\n"


def _read_marker(parent_fd, parent_path, name, diagnostics):
    """The Slurm job id in root's marker file, or None if there is none (or it holds no job id)."""
    fd = _root_file(parent_fd, parent_path, name, os.O_RDONLY, diagnostics)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(64).decode("ascii", "replace").strip()
    return text if SLURM_JOB_ID_RE.match(text) else None


def _submit_as_root(request, user, program_line, request_line, diagnostics):
    """Holds the submission's lock while the user stage runs sbatch, and keeps its marker, in the state directory."""
    job_id, submission_id = _submission(request)[:2]
    with JobIndex(user, diagnostics) as index:
        job_fd, job_path = index.job(job_id)
        lock = _root_file(job_fd, job_path, submission_id + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, diagnostics)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a retried command waits for the first one, then finds its marker
            marker = submission_id + SUBMITTED_SUFFIX
            slurm_job_id = _read_marker(job_fd, job_path, marker, diagnostics)
            directory = job_directory_path(user.pw_dir, job_id, submission_id)
            if slurm_job_id is None:
                slurm_job_id = _legacy_marker(user, job_id, submission_id)  # submitted before an upgrade
                if slurm_job_id is not None:
                    _write_root_file(job_fd, marker, slurm_job_id.encode("ascii"))
                    directory = legacy_job_directory_path(user.pw_dir, job_id, submission_id)
            if slurm_job_id is not None:
                result = {"slurmJobId": slurm_job_id, "alreadySubmitted": True, "jobDirectory": directory}
                return _reply("submit", result=result) + "\n", 0
            output, code = _run_as(user, program_line, request_line)
            reply = _last_document(output)
            slurm_job_id = (reply.get("result") or {}).get("slurmJobId") if reply and reply.get("ok") else None
            if isinstance(slurm_job_id, str) and SLURM_JOB_ID_RE.match(slurm_job_id):
                _write_root_file(job_fd, marker, slurm_job_id.encode("ascii"))
            return output, code
        finally:
            os.close(lock)


def _root_stage(action, request, user, program_line, request_line, diagnostics):
    """What root does around the user stage: the bookkeeping of submit, nothing more (Slurm, S3 and the files in the
    home are only ever used by the user stage)."""
    if action == "submit":
        return _submit_as_root(request, user, program_line, request_line, diagnostics)
    return _run_as(user, program_line, request_line)


def main(program_line=None, stdin=None, stdout=None):
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    action = None
    diagnostics = []
    try:
        if sys.version_info < MIN_PYTHON:
            raise HeadNodeSetupError("python3 on the head node is %d.%d; 3.7 or newer is needed" % sys.version_info[:2])
        request_line = stdin.readline()
        request = decode_request_line(request_line)
        if not isinstance(request, dict):
            raise BadRequest("the request is not a JSON object")
        action = request.get("action")
        if request.get("protocol") != PROTOCOL:
            raise BadRequest("unsupported protocol %r (this program speaks %d)" % (request.get("protocol"), PROTOCOL))
        if action not in ACTIONS:
            raise BadRequest("unknown action %r" % (action,))
        user = _cluster_user(request)
        if os.geteuid() == 0:
            if program_line is None:
                raise HeadNodeSetupError("the root stage needs its own program text to re-run as the cluster user")
            output, code = _root_stage(action, request, user, program_line, request_line, diagnostics)
            stdout.write(_with_diagnostics(output, diagnostics, sys.stderr))
            return code
        if os.getuid() != user.pw_uid:
            raise ClusterUserInvalid("running as uid %d, not as the cluster user %r" % (os.getuid(), user.pw_name))
        result = ACTIONS[action](request, Slurm(_require(request, "slurmBinDir")), diagnostics)
        stdout.write(_with_diagnostics(_reply(action, result=result) + "\n", diagnostics, sys.stderr))
        return 0
    except ProgramError as error:
        stdout.write(_with_diagnostics(_reply(action, error=error) + "\n", diagnostics, sys.stderr))
        return 2
    except Exception as error:  # noqa: BLE001 - the Lambda must always get one JSON document
        stdout.write(_with_diagnostics(_reply(action, error=error) + "\n", diagnostics, sys.stderr))
        return 1


if __name__ == "__main__":
    sys.exit(main(globals().get("PROGRAM_LINE")))
