#!/usr/bin/env python3
"""The head node's push hook: tells the stack at once when Slurm jobs start or end (python3 stdlib only, 3.7+).

slurmctld runs the hook as ``PrologSlurmctld`` (a job is about to start) and ``EpilogSlurmctld`` (a job has ended),
as its SlurmUser, on the head node. The hook publishes "Slurm Job State Change" events (source
``slurm-job-api.head-node``) to the stack's event bus; the stack's rule on that bus runs the cluster's status sweep at
once, so a job's end is seen seconds after it happens instead of at the next scheduled sweep. An event is only a
hint: the sweep asks Slurm itself, so a lost, late, repeated or forged event changes nothing but when the sweep runs.

Two parts, because jobs end in bursts (an array, a parameter sweep) and slurmctld starts the hook once per job:

- ``push-hook`` (HOOK_SCRIPT, POSIX sh, about 2 ms of CPU a run) is what slurmctld runs. It records the job's change
  as an empty file in ``var/events/`` (its name says it all: when, which state, which job), starts the sender unless
  one runs (``flock -n`` on ``var/sender.lock``, which the sender then holds) and exits 0 at once: slurmctld waits for
  PrologSlurmctld before it starts a job and requeues the job when it fails, so the hook never fails and never waits.
- ``push-sender`` (this program, ``send``; a Python start costs 70-90 ms of CPU on a small instance, more than the
  rest) sends every recorded change in one event per PutEvents entry (up to JOBS_PER_EVENT jobs each), deletes what
  it sent, and goes on while changes keep coming (until LINGER_SECONDS without one): a burst of 500 ends costs one
  sender and a few PutEvents calls, not 500 Python programs and 500 calls. Before it exits it lets the lock go and
  looks once more, so a change recorded while it was stopping is never left behind (the hook records before it tries
  the lock). A sender killed halfway leaves its changes recorded; the next hook's sender sends them.

Without its configuration file the hook does nothing. Failures go to ``var/push-hook.log`` (kept under 64 KiB); a
change that could not be sent after ATTEMPTS is dropped (the scheduled sweep and the safety polls find the job
anyway).

Credentials are the head node's instance role, read from the instance metadata service (IMDSv2) once per sender run;
the role needs only ``events:PutEvents`` on the stack's bus (the stack's ``HeadNodePushPolicyArn`` output). The
request is signed with Signature Version 4
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html).

Install (as root, idempotent; README "Completion pushed from the head node")::

    python3 push_hook.py install --event-bus-name BUS --region REGION --cluster-name NAME [--install-dir DIR]
        [--slurm-user USER]

writes ``DIR/push-hook``, ``DIR/push-sender`` and ``DIR/push-hook.json`` (default DIR /opt/slurm-job-api), creates
``DIR/var`` for slurmctld's SlurmUser (default ``slurm``; mode 0700) and prints the two slurm.conf settings to add
(``PrologSlurmctld`` and ``EpilogSlurmctld``, through ParallelCluster's ``CustomSlurmSettings``). ``--endpoint-url``
and ``--imds-url`` exist for the local stack (loopback addresses).
"""

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import hmac
import json
import os
import pwd
import re
import shutil
import sys
import time
import urllib.error
import urllib.request

HOOK_NAME = "push-hook"
SENDER_NAME = "push-sender"
CONFIG_NAME = "push-hook.json"
VAR_NAME = "var"  # SlurmUser's: the recorded changes, the sender's lock, the log
EVENTS_NAME = "events"
LOCK_NAME = "sender.lock"
LOG_NAME = "push-hook.log"
DEFAULT_INSTALL_DIR = "/opt/slurm-job-api"
DEFAULT_SLURM_USER = "slurm"
EVENT_SOURCE = "slurm-job-api.head-node"
DETAIL_TYPE = "Slurm Job State Change"
IMDS_URL = "http://169.254.169.254"
# The name of one recorded change: <pushedAt>_<state>_<slurmJobId>_<arrayJobId>_<arrayTaskId>_<exitCode>.
CHANGE_NAME = re.compile(
    r"^(?P<pushedAt>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z)_(?P<state>STARTING|ENDED)"
    r"_(?P<slurmJobId>[0-9]{1,32})_(?P<arrayJobId>[0-9]{0,32})_(?P<arrayTaskId>[0-9]{0,32})_(?P<exitCode>[0-9:]{0,32})$"
)
JOBS_PER_EVENT = 100  # about 12 KB of detail; PutEvents takes 256 KB a request
ENTRIES_PER_REQUEST = 10  # PutEvents' limit
LINGER_SECONDS = 1.0
LOOK_EVERY_SECONDS = 0.05
ATTEMPTS = 3
TIMEOUT_SECONDS = 3
LOG_LIMIT_BYTES = 64 * 1024
_BUS_NAME = re.compile(r"^[A-Za-z0-9._\-/]{1,256}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")
_LOOPBACK_URL = re.compile(r"^http://127\.0\.0\.1:[0-9]{1,5}$")
HOOK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # HOOK_SCRIPT's PATH
HOOK_TOOLS = ("date", "flock", "setsid")  # what HOOK_SCRIPT runs (coreutils, util-linux)
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")

# What slurmctld runs. Every value it takes from the environment is checked against a pattern (digits; digits and
# ":") before it becomes part of a file name; nothing is evaluated. PATH is set: slurmctld's scripts get a minimal
# environment. `${0%/*}` is the install directory (slurm.conf names the hook by its absolute path). The @NAMES@ are
# the constants above, filled in below: the hook and the sender name each file once.
_HOOK_SCRIPT_TEMPLATE = r"""#!/bin/sh
# slurm-job-api push hook (PrologSlurmctld / EpilogSlurmctld): records the job's change, starts the sender if none
# runs, exits 0 at once. Written by push_hook.py install; see that program for the whole story.
# All of it runs in a subshell: a failed redirection of a special builtin ends the subshell, never the hook with an
# error (a failed PrologSlurmctld would requeue the job).
(
    exec </dev/null >/dev/null 2>&1
    PATH=@PATH@
    export PATH
    dir=${0%/*}
    [ -r "$dir/@CONFIG@" ] || exit 0
    case ${SLURM_SCRIPT_CONTEXT:-} in
        prolog_slurmctld) state=STARTING ;;
        epilog_slurmctld) state=ENDED ;;
        *) exit 0 ;;
    esac
    digits() {
        case $1 in '' | *[!0-9]*) return 1 ;; esac
        [ ${#1} -le 32 ]
    }
    digits "${SLURM_JOB_ID:-}" || exit 0
    array_job=${SLURM_ARRAY_JOB_ID:-}
    digits "$array_job" || array_job=
    array_task=${SLURM_ARRAY_TASK_ID:-}
    digits "$array_task" || array_task=
    exit_code=${SLURM_JOB_EXIT_CODE2:-}
    case $exit_code in *[!0-9:]*) exit_code= ;; esac
    [ ${#exit_code} -le 32 ] || exit_code=
    now=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) || exit 0
    : >"$dir/@EVENTS@/${now}_${state}_${SLURM_JOB_ID}_${array_job}_${array_task}_${exit_code}" || exit 0
    exec 9>>"$dir/@LOCK@" || exit 0
    flock -n 9 || exit 0
    # setsid -f: the sender is forked straight into a session of its own, out of the hook's process group, which
    # slurmctld's script runner may kill once the hook has exited.
    setsid -f "$dir/@SENDER@" send
)
exit 0
"""
HOOK_SCRIPT = (
    _HOOK_SCRIPT_TEMPLATE.replace("@PATH@", HOOK_PATH)
    .replace("@CONFIG@", CONFIG_NAME)
    .replace("@EVENTS@", VAR_NAME + "/" + EVENTS_NAME)
    .replace("@LOCK@", VAR_NAME + "/" + LOCK_NAME)
    .replace("@SENDER@", SENDER_NAME)
)


class HookConfig:
    """What the installer wrote: where to publish, for which cluster."""

    FIELDS = ("eventBusName", "region", "clusterName", "endpointUrl", "imdsUrl")

    def __init__(self, values):
        unknown = sorted(set(values) - set(self.FIELDS))
        if unknown:
            raise ValueError("unknown configuration fields: %s" % ", ".join(unknown))
        self.event_bus_name = _checked(values.get("eventBusName"), _BUS_NAME, "eventBusName")
        self.region = _checked(values.get("region"), _REGION, "region")
        self.cluster_name = _checked(values.get("clusterName"), _CLUSTER_NAME, "clusterName")
        self.endpoint_url = values.get("endpointUrl") or "https://events.%s.amazonaws.com" % self.region
        self.imds_url = values.get("imdsUrl") or IMDS_URL
        for name, url in (("endpointUrl", values.get("endpointUrl")), ("imdsUrl", values.get("imdsUrl"))):
            if url is not None and not _LOOPBACK_URL.match(url):
                raise ValueError("%s is only for the local stack: http://127.0.0.1:<port>, not %r" % (name, url))

    def to_dict(self):
        values = {"eventBusName": self.event_bus_name, "region": self.region, "clusterName": self.cluster_name}
        if self.endpoint_url != "https://events.%s.amazonaws.com" % self.region:
            values["endpointUrl"] = self.endpoint_url
        if self.imds_url != IMDS_URL:
            values["imdsUrl"] = self.imds_url
        return values


def _checked(value, pattern, name):
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError("%s is missing or not valid: %r" % (name, value))
    return value


# ----- the changes and their events ---------------------------------------------------------------------------------


def recorded_change(name):
    """The job change a file name of ``var/events`` records (the fields the hook had), or None for any other name."""
    match = CHANGE_NAME.match(name)
    if match is None:
        return None
    return {field: value for field, value in match.groupdict().items() if value}


def change_events(cluster_name, changes):
    """The PutEvents entries for these changes: one event per JOBS_PER_EVENT jobs, each saying the most urgent state
    among its jobs (ENDED before STARTING) and the latest ``pushedAt`` (a sweep begun after it has seen them all)."""
    entries = []
    for first in range(0, len(changes), JOBS_PER_EVENT):
        jobs = changes[first : first + JOBS_PER_EVENT]
        detail = {
            "clusterName": cluster_name,
            "state": "ENDED" if any(job["state"] == "ENDED" for job in jobs) else "STARTING",
            "pushedAt": max(job["pushedAt"] for job in jobs),
            "jobs": jobs,
        }
        entries.append(
            {"Source": EVENT_SOURCE, "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail, sort_keys=True)}
        )
    return entries


# ----- credentials and signing ----------------------------------------------------------------------------------


def _request(url, headers, method="GET", data=None):
    return urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - URLs checked by HookConfig


def _read(request, timeout):
    """The body of the answer to ``request``; the URLs are IMDS's, EventBridge's (https) or, locally, loopback."""
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URLs checked by HookConfig
        return response.read().decode()


def instance_credentials(imds_url, timeout=TIMEOUT_SECONDS, read=None):
    """The instance role's credentials from IMDSv2: (access key id, secret access key, session token)."""
    read = read or _read
    token_headers = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    token = read(_request(imds_url + "/latest/api/token", token_headers, "PUT"), timeout)
    headers = {"X-aws-ec2-metadata-token": token}
    base = imds_url + "/latest/meta-data/iam/security-credentials/"
    role = read(_request(base, headers), timeout).split("\n")[0].strip()
    if not re.match(r"^[\w+=,.@-]{1,128}$", role):
        raise ValueError("the instance has no role, or an unexpected name: %r" % role)
    values = json.loads(read(_request(base + role, headers), timeout))
    return values["AccessKeyId"], values["SecretAccessKey"], values.get("Token")


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signed_put_events(config, entries, credentials, now):
    """A urllib request for EventBridge PutEvents, signed with Signature Version 4."""
    access_key, secret_key, session_token = credentials
    body = json.dumps({"Entries": [dict(entry, EventBusName=config.event_bus_name) for entry in entries]}).encode()
    host = config.endpoint_url.split("://", 1)[1].rstrip("/")
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-target": "AWSEvents.PutEvents",
    }
    if session_token:
        headers["x-amz-security-token"] = session_token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join("%s:%s\n" % (name, headers[name]) for name in sorted(headers)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = "%s/%s/events/aws4_request" % (day, config.region)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), day), config.region), "events"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access_key,
        scope,
        signed,
        signature,
    )
    return _request(config.endpoint_url.rstrip("/") + "/", headers, "POST", body)


class Publisher:
    """Sends PutEvents requests; the instance role's credentials are read once and again after a failed attempt."""

    def __init__(self, config, *, sleep=time.sleep, read=None):
        self.config = config
        self._sleep = sleep
        self._read = read or _read
        self._credentials = None

    def publish(self, entries, attempts=ATTEMPTS):
        """Sends the entries (at most ENTRIES_PER_REQUEST); retries a failed attempt. Raises the last error."""
        last = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(0.2 * 2**attempt)
                self._credentials = None
            try:
                if self._credentials is None:
                    self._credentials = instance_credentials(self.config.imds_url, read=self._read)
                now = datetime.datetime.now(datetime.timezone.utc)
                request = signed_put_events(self.config, entries, self._credentials, now)
                answer = json.loads(self._read(request, TIMEOUT_SECONDS) or "{}")
                if answer.get("FailedEntryCount"):
                    raise RuntimeError("PutEvents refused events: %s" % json.dumps(answer.get("Entries")))
                return
            except (urllib.error.URLError, OSError, ValueError, KeyError, RuntimeError) as error:
                last = error
        raise last


# ----- the sender -----------------------------------------------------------------------------------------------


def _log(var_dir, message):
    path = os.path.join(var_dir, LOG_NAME)
    try:
        if os.path.exists(path) and os.path.getsize(path) > LOG_LIMIT_BYTES:
            os.replace(path, path + ".1")
        with open(path, "a") as log:
            log.write("%s %s\n" % (_iso(datetime.datetime.now(datetime.timezone.utc)), message))
    except OSError:
        pass


def _iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def recorded_names(events_dir):
    """The names in ``var/events``, oldest first (a name not starting with a digit is none of the hook's: left
    alone)."""
    try:
        return sorted(name for name in os.listdir(events_dir) if name[:1].isdigit())
    except FileNotFoundError:
        return []


def send_recorded(config, var_dir, lock_fd, publisher, *, clock=time.monotonic, sleep=time.sleep):
    """Sends what the hook records until LINGER_SECONDS pass without a new change, then lets the lock (held on
    ``lock_fd``) go and looks once more: a change recorded meanwhile is sent by this sender if it gets the lock again,
    else by the one that has it. Returns how many changes were sent."""
    events_dir = os.path.join(var_dir, EVENTS_NAME)
    sent = 0
    while True:
        quiet_since = clock()
        while True:
            names = recorded_names(events_dir)
            if names:
                sent += _send_names(config, events_dir, var_dir, names, publisher)
                quiet_since = clock()
            elif clock() - quiet_since >= LINGER_SECONDS:
                break
            else:
                sleep(LOOK_EVERY_SECONDS)
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        if not recorded_names(events_dir):
            return sent
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return sent  # another sender has them


def _send_names(config, events_dir, var_dir, names, publisher):
    """Publishes the changes these names record, then deletes the names (sent, or not sendable: logged)."""
    changes, strays = [], []
    for name in names:
        change = recorded_change(name)
        (strays if change is None else changes).append((name, change))
    entries = change_events(config.cluster_name, [change for _, change in changes])
    try:
        for first in range(0, len(entries), ENTRIES_PER_REQUEST):
            publisher.publish(entries[first : first + ENTRIES_PER_REQUEST])
    except Exception as error:  # noqa: BLE001 - logged; the sweep finds the jobs anyway
        _log(var_dir, "%d job changes were not sent: %s" % (len(changes), error))
    if strays:
        _log(var_dir, "not a job change, removed: %s" % ", ".join(name for name, _ in strays)[:2000])
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(events_dir, name))
    return len(changes)


def run_sender(directory, lock_fd=9):
    """``push-sender send``, as the hook starts it: fd ``lock_fd`` holds the lock on ``var/sender.lock`` (run by
    hand, the sender takes the lock itself, or leaves if a sender runs)."""
    var_dir = os.path.join(directory, VAR_NAME)
    try:
        with open(os.path.join(directory, CONFIG_NAME)) as file:
            config = HookConfig(json.load(file))
    except FileNotFoundError:
        return 0  # not configured: nothing to tell
    except (OSError, ValueError) as error:
        _log(var_dir, "configuration unreadable: %s" % error)
        return 0
    lock_path = os.path.join(var_dir, LOCK_NAME)
    try:
        if not os.path.samestat(os.fstat(lock_fd), os.stat(lock_path)):
            raise OSError("not the lock")
    except OSError:
        lock_fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # a sender runs: it sends what is recorded
    try:
        send_recorded(config, var_dir, lock_fd, Publisher(config))
    except BaseException as error:  # noqa: BLE001 - logged; what is still recorded goes with the next sender
        _log(var_dir, "the sender stopped: %s" % error)
    return 0


# ----- installing -----------------------------------------------------------------------------------------------


def _write_if_changed(path, text, mode):
    """Writes atomically when the content or mode differs; True if it wrote."""
    try:
        with open(path) as file:
            if file.read() == text and (os.stat(path).st_mode & 0o7777) == mode:
                return False
    except FileNotFoundError:
        pass
    temporary = path + ".tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as file:
        file.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    return True


def installed_files(program_text, python):
    """The programs as installed, by name: (text, mode). The sender is this program, started by ``python`` in
    isolated mode without site packages."""
    sender = "#!%s -IS\n" % python + program_text.split("\n", 1)[1]
    return {HOOK_NAME: (HOOK_SCRIPT, 0o755), SENDER_NAME: (sender, 0o755)}


def _owned_directory(path, user):
    """Creates ``path`` (mode 0700) for ``user`` if it is not so already; True if it changed anything."""
    changed = False
    try:
        os.mkdir(path, 0o700)
        changed = True
    except FileExistsError:
        pass
    status = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        raise ValueError("%s exists and is not a directory" % path)
    if (status.st_uid, status.st_gid) != (user.pw_uid, user.pw_gid):
        os.chown(path, user.pw_uid, user.pw_gid)
        changed = True
    if status.st_mode & 0o7777 != 0o700:
        os.chmod(path, 0o700)
        changed = True
    return changed


def install(install_dir, config, program_text, python, slurm_user=DEFAULT_SLURM_USER):
    """Installs the hook, its sender, its configuration and SlurmUser's directory; idempotent. Returns what changed
    and the slurm.conf settings."""
    if not _USER_NAME.match(slurm_user):
        raise ValueError("not a user name: %r" % slurm_user)
    try:
        user = pwd.getpwnam(slurm_user)
    except KeyError:
        raise ValueError("no such user: %s (slurmctld's SlurmUser)" % slurm_user) from None
    missing = [tool for tool in HOOK_TOOLS if shutil.which(tool, path=HOOK_PATH) is None]
    if missing:
        raise ValueError("the hook needs %s (util-linux, coreutils)" % ", ".join(missing))
    os.makedirs(install_dir, mode=0o755, exist_ok=True)
    changed = []
    for name, (text, mode) in installed_files(program_text, python).items():
        if _write_if_changed(os.path.join(install_dir, name), text, mode):
            changed.append(os.path.join(install_dir, name))
    config_text = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    if _write_if_changed(os.path.join(install_dir, CONFIG_NAME), config_text, 0o644):
        changed.append(os.path.join(install_dir, CONFIG_NAME))
    var_dir = os.path.join(install_dir, VAR_NAME)
    for directory in (var_dir, os.path.join(var_dir, EVENTS_NAME)):
        if _owned_directory(directory, user):
            changed.append(directory)
    hook_path = os.path.join(install_dir, HOOK_NAME)
    return {"changed": changed, "slurmSettings": {"PrologSlurmctld": hook_path, "EpilogSlurmctld": hook_path}}


def _install_command(argv):
    parser = argparse.ArgumentParser(prog="push_hook.py install", description="Install the head node's push hook.")
    parser.add_argument("--event-bus-name", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--cluster-name", required=True)
    parser.add_argument("--install-dir", default=DEFAULT_INSTALL_DIR)
    parser.add_argument("--slurm-user", default=DEFAULT_SLURM_USER, help="slurmctld's SlurmUser (default slurm)")
    parser.add_argument("--endpoint-url", help="local stack only: http://127.0.0.1:<port>")
    parser.add_argument("--imds-url", help="local stack only: http://127.0.0.1:<port>")
    arguments = parser.parse_args(argv)
    try:
        config = HookConfig(
            {
                "eventBusName": arguments.event_bus_name,
                "region": arguments.region,
                "clusterName": arguments.cluster_name,
                "endpointUrl": arguments.endpoint_url,
                "imdsUrl": arguments.imds_url,
            }
        )
        with open(os.path.abspath(__file__)) as file:
            program_text = file.read()
        result = install(arguments.install_dir, config, program_text, sys.executable, arguments.slurm_user)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "install":
        return _install_command(argv[1:])
    if argv == ["send"]:
        return run_sender(os.path.dirname(os.path.abspath(__file__)))
    print("usage: push_hook.py install ... | send (as the installed push-sender)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
