"""The head node's push hook (slurm_job_api/push_hook.py): the shell hook slurmctld runs (run here with /bin/sh and
the environment slurmctld gives it), the changes it records and the events they become, the sender's loop (a real
directory and a real flock; only PutEvents is replaced), the signature (checked against botocore's SigV4), and the
installer."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from slurm_job_api import push_hook

NOW = datetime(2026, 12, 3, 12, 0, 0, 123000, tzinfo=UTC)
CONFIG = push_hook.HookConfig({"eventBusName": "stack-jobs", "region": "us-east-1", "clusterName": "demo"})
ME = pwd.getpwuid(os.getuid()).pw_name
# Stands in for the sender in the hook's tests: says that it was started, and with the lock held on fd 9.
SENDER_PROBE = """#!/bin/sh
if flock -n 8 8>>"${0%/*}/var/sender.lock"; then held=no; else held=yes; fi
echo "$held" >>"${0%/*}/sender-started"
"""


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """The hook as the installer lays it out, with SENDER_PROBE as its sender."""
    push_hook.install(str(tmp_path), CONFIG, "#!/usr/bin/env python3\n", "/usr/bin/python3", ME)
    (tmp_path / push_hook.SENDER_NAME).write_text(SENDER_PROBE)
    return tmp_path


def run_hook(directory: Path, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(directory / push_hook.HOOK_NAME)], env=environment, capture_output=True, text=True, timeout=10
    )


def recorded(directory: Path) -> list[dict]:
    events = directory / push_hook.VAR_NAME / push_hook.EVENTS_NAME
    return [push_hook.recorded_change(name) for name in push_hook.recorded_names(str(events))]


def senders_started(directory: Path, timeout: float = 5.0) -> list[str]:
    path = directory / "sender-started"
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # a second sender, if one was started, has written by now
    return path.read_text().split() if path.exists() else []


# ----- the hook slurmctld runs --------------------------------------------------------------------------------------


def test_the_epilog_records_the_jobs_end_and_starts_the_sender_holding_the_lock(installed: Path) -> None:
    done = run_hook(installed, SLURM_SCRIPT_CONTEXT="epilog_slurmctld", SLURM_JOB_ID="17", SLURM_JOB_EXIT_CODE2="3:0")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    (change,) = recorded(installed)
    pushed_at = change.pop("pushedAt")
    assert change == {"state": "ENDED", "slurmJobId": "17", "exitCode": "3:0"}
    assert abs((datetime.fromisoformat(pushed_at.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()) < 5
    assert senders_started(installed) == ["yes"]


def test_the_prolog_records_an_array_tasks_start(installed: Path) -> None:
    environment = {"SLURM_JOB_ID": "21", "SLURM_ARRAY_JOB_ID": "20", "SLURM_ARRAY_TASK_ID": "1"}
    assert run_hook(installed, SLURM_SCRIPT_CONTEXT="prolog_slurmctld", **environment).returncode == 0
    ((change),) = recorded(installed)
    assert {k: v for k, v in change.items() if k != "pushedAt"} == {
        "state": "STARTING",
        "slurmJobId": "21",
        "arrayJobId": "20",
        "arrayTaskId": "1",
    }


def test_no_second_sender_while_one_holds_the_lock(installed: Path) -> None:
    with open(installed / push_hook.VAR_NAME / push_hook.LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for job in ("1", "2", "3"):
            assert run_hook(installed, SLURM_SCRIPT_CONTEXT="epilog_slurmctld", SLURM_JOB_ID=job).returncode == 0
        assert senders_started(installed, timeout=0.5) == []
    assert sorted(change["slurmJobId"] for change in recorded(installed)) == ["1", "2", "3"]  # the running sender's


@pytest.mark.parametrize(
    "environment",
    [
        {"SLURM_JOB_ID": "17"},  # not run by slurmctld as one of its hooks
        {"SLURM_SCRIPT_CONTEXT": "epilog", "SLURM_JOB_ID": "17"},
        {"SLURM_SCRIPT_CONTEXT": "prolog_slurmctld", "SLURM_JOB_ID": "17; touch /tmp/pwned"},
        {"SLURM_SCRIPT_CONTEXT": "prolog_slurmctld", "SLURM_JOB_ID": "$(touch /tmp/pwned)"},
        {"SLURM_SCRIPT_CONTEXT": "epilog_slurmctld", "SLURM_JOB_ID": "../../17"},
        {"SLURM_SCRIPT_CONTEXT": "epilog_slurmctld", "SLURM_JOB_ID": "1" * 33},
        {"SLURM_SCRIPT_CONTEXT": "epilog_slurmctld"},
    ],
)
def test_nothing_is_recorded_outside_slurmctlds_hooks_or_for_a_strange_job_id(installed: Path, environment) -> None:
    assert run_hook(installed, **environment).returncode == 0
    assert recorded(installed) == [] and senders_started(installed, timeout=0.3) == []
    assert not Path("/tmp/pwned").exists()
    assert sorted(p.name for p in (installed / push_hook.VAR_NAME / push_hook.EVENTS_NAME).iterdir()) == []


def test_a_variable_that_is_not_a_number_is_left_out(installed: Path) -> None:
    environment = {"SLURM_ARRAY_TASK_ID": "$(id)", "SLURM_ARRAY_JOB_ID": "4 5", "SLURM_JOB_EXIT_CODE2": "0:0;id"}
    assert run_hook(installed, SLURM_SCRIPT_CONTEXT="epilog_slurmctld", SLURM_JOB_ID="5", **environment).returncode == 0
    ((change),) = recorded(installed)
    assert set(change) == {"pushedAt", "state", "slurmJobId"}


def test_the_hook_does_nothing_without_its_configuration(installed: Path) -> None:
    (installed / push_hook.CONFIG_NAME).unlink()
    assert run_hook(installed, SLURM_SCRIPT_CONTEXT="epilog_slurmctld", SLURM_JOB_ID="9").returncode == 0
    assert recorded(installed) == [] and senders_started(installed, timeout=0.3) == []


def test_the_hook_exits_0_when_it_cannot_record(installed: Path) -> None:
    (installed / push_hook.VAR_NAME / push_hook.EVENTS_NAME).rmdir()
    assert run_hook(installed, SLURM_SCRIPT_CONTEXT="prolog_slurmctld", SLURM_JOB_ID="9").returncode == 0
    assert senders_started(installed, timeout=0.3) == []


def test_the_hook_exits_0_when_it_cannot_take_the_lock(installed: Path) -> None:
    (installed / push_hook.VAR_NAME / push_hook.LOCK_NAME).mkdir()  # not a file: the hook's redirection fails
    done = run_hook(installed, SLURM_SCRIPT_CONTEXT="prolog_slurmctld", SLURM_JOB_ID="9")
    assert (done.returncode, done.stderr) == (0, "")
    assert len(recorded(installed)) == 1 and senders_started(installed, timeout=0.3) == []


def test_the_hook_sets_the_path_of_the_tools_it_runs() -> None:
    lines = [line.strip() for line in push_hook.HOOK_SCRIPT.splitlines()]
    assert f"PATH={push_hook.HOOK_PATH}" in lines
    for tool in push_hook.HOOK_TOOLS:
        assert any(line.startswith(tool + " ") or f"$({tool} " in line for line in lines), tool


# ----- the changes and their events ---------------------------------------------------------------------------------


def change(job: int, state: str = "ENDED", second: int = 0) -> dict:
    return {"pushedAt": f"2026-12-03T12:00:{second:02d}.000Z", "state": state, "slurmJobId": str(job)}


def test_a_recorded_name_is_read_back_and_anything_else_is_not_a_change() -> None:
    assert push_hook.recorded_change("2026-12-03T12:00:00.123Z_ENDED_17___3:0") == {
        "pushedAt": "2026-12-03T12:00:00.123Z",
        "state": "ENDED",
        "slurmJobId": "17",
        "exitCode": "3:0",
    }
    for name in (
        "2026-12-03T12:00:00.123Z_DONE_17___",
        "2026-12-03_ENDED_17___",
        "x",
        "2026-12-03T12:00:00.123Z_ENDED_1/2___",
    ):
        assert push_hook.recorded_change(name) is None


def test_changes_go_in_events_of_at_most_jobs_per_event_saying_the_most_urgent_state_and_the_latest_time() -> None:
    changes = [change(n, "STARTING", second=n % 60) for n in range(push_hook.JOBS_PER_EVENT)] + [change(999, second=1)]
    first, second = push_hook.change_events("demo", changes)
    assert first["Source"] == "slurm-job-api.head-node" and first["DetailType"] == "Slurm Job State Change"
    first, second = json.loads(first["Detail"]), json.loads(second["Detail"])
    assert (first["state"], first["pushedAt"], len(first["jobs"])) == ("STARTING", "2026-12-03T12:00:59.000Z", 100)
    assert second == {
        "clusterName": "demo",
        "state": "ENDED",
        "pushedAt": change(999, second=1)["pushedAt"],
        "jobs": [change(999, second=1)],
    }


def test_the_put_events_signature_is_the_one_botocore_computes(monkeypatch) -> None:
    credentials = ("AKIDEXAMPLE", "secret", "session-token")
    request = push_hook.signed_put_events(CONFIG, push_hook.change_events("demo", [change(9)]), credentials, NOW)
    assert request.full_url == "https://events.us-east-1.amazonaws.com/"
    headers = {name.lower(): value for name, value in request.header_items()}
    expected = AWSRequest(
        method="POST",
        url=request.full_url,
        data=request.data,
        headers={name: headers[name] for name in ("content-type", "x-amz-target")},
    )
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))  # botocore's clock
    SigV4Auth(Credentials(*credentials), "events", "us-east-1").add_auth(expected)
    assert headers["authorization"] == expected.headers["Authorization"]
    assert json.loads(request.data)["Entries"][0]["EventBusName"] == "stack-jobs"


# ----- the sender ---------------------------------------------------------------------------------------------------


class Publisher:
    """Records what would be sent; fails while ``failures`` lasts."""

    def __init__(self, failures: int = 0) -> None:
        self.requests: list[list[dict]] = []
        self.failures = failures

    def publish(self, entries: list[dict]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("connection refused")
        assert len(entries) <= push_hook.ENTRIES_PER_REQUEST
        self.requests.append(entries)

    def jobs(self) -> list[str]:
        return [
            job["slurmJobId"] for entries in self.requests for e in entries for job in json.loads(e["Detail"])["jobs"]
        ]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: list = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.on_sleep:
            self.on_sleep.pop(0)()


def record(directory: Path, job: int, state: str = "ENDED") -> None:
    name = f"2026-12-03T12:00:00.{job % 1000:03d}Z_{state}_{job}___"
    (directory / push_hook.VAR_NAME / push_hook.EVENTS_NAME / name).touch()


def locked(directory: Path) -> int:
    fd = os.open(directory / push_hook.VAR_NAME / push_hook.LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def lock_is_free(directory: Path) -> bool:
    with open(directory / push_hook.VAR_NAME / push_hook.LOCK_NAME, "a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def send(directory: Path, publisher: Publisher, clock: Clock, fd: int) -> int:
    var = str(directory / push_hook.VAR_NAME)
    return push_hook.send_recorded(CONFIG, var, fd, publisher, clock=clock, sleep=clock.sleep)


def test_a_burst_goes_in_a_few_requests_and_the_sender_stays_until_no_change_came_for_a_while(installed: Path) -> None:
    for job in range(250):
        record(installed, job)
    publisher, clock, fd = Publisher(), Clock(), locked(installed)
    clock.on_sleep = [lambda: None, lambda: record(installed, 1000)]  # one more change comes while it lingers
    assert send(installed, publisher, clock, fd) == 251
    assert len(publisher.requests) == 2 and [len(entries) for entries in publisher.requests] == [3, 1]
    assert sorted(publisher.jobs(), key=int) == [str(n) for n in [*range(250), 1000]]
    assert recorded(installed) == [] and clock.now >= push_hook.LINGER_SECONDS and lock_is_free(installed)


def test_a_change_recorded_while_the_sender_lets_the_lock_go_is_sent(installed: Path, monkeypatch) -> None:
    record(installed, 1)
    real_flock, unlocked = fcntl.flock, []

    def flock(fd: int, operation: int) -> None:
        real_flock(fd, operation)
        if operation == fcntl.LOCK_UN and not unlocked:
            unlocked.append(True)
            record(installed, 2)  # the hook records after the sender's last look and finds the lock taken

    monkeypatch.setattr(push_hook.fcntl, "flock", flock)
    publisher = Publisher()
    assert send(installed, publisher, Clock(), locked(installed)) == 2
    assert publisher.jobs() == ["1", "2"] and recorded(installed) == []


def test_changes_left_by_a_sender_that_died_go_with_the_next(installed: Path) -> None:
    for job in (1, 2):
        record(installed, job)  # recorded, never sent: the sender before was killed
    publisher = Publisher()
    send(installed, publisher, Clock(), locked(installed))
    assert publisher.jobs() == ["1", "2"]


def test_changes_that_cannot_be_sent_are_logged_and_dropped(installed: Path) -> None:
    record(installed, 1)
    (installed / push_hook.VAR_NAME / push_hook.EVENTS_NAME / "2026-12-03T12:00:00.000Z_ENDED_x___").touch()
    publisher = Publisher(failures=1)
    assert send(installed, publisher, Clock(), locked(installed)) == 1
    log = (installed / push_hook.VAR_NAME / push_hook.LOG_NAME).read_text()
    assert "1 job changes were not sent: connection refused" in log and "not a job change, removed" in log
    assert recorded(installed) == [] and list((installed / push_hook.VAR_NAME / push_hook.EVENTS_NAME).iterdir()) == []


def test_the_publisher_retries_with_fresh_credentials_and_raises_the_last_error() -> None:
    calls: list[str] = []

    def read(request, timeout):
        calls.append(request.full_url)
        if request.full_url.endswith("/latest/api/token"):
            return "token"
        if request.full_url.endswith("/security-credentials/"):
            return "head-node-role"
        if "security-credentials/head-node-role" in request.full_url:
            return json.dumps({"AccessKeyId": "AK", "SecretAccessKey": "s", "Token": "t"})
        return json.dumps({"FailedEntryCount": 1, "Entries": [{"ErrorCode": "AccessDenied"}]})

    publisher = push_hook.Publisher(CONFIG, sleep=lambda seconds: None, read=read)
    with pytest.raises(RuntimeError, match="AccessDenied"):
        publisher.publish(push_hook.change_events("demo", [change(1)]))
    puts = [url for url in calls if url.startswith("https://events.")]
    assert (
        len(puts) == push_hook.ATTEMPTS and calls.count("http://169.254.169.254/latest/api/token") == push_hook.ATTEMPTS
    )


def test_the_sender_does_nothing_without_its_configuration_or_while_another_sender_runs(installed: Path) -> None:
    record(installed, 1)
    fd = locked(installed)
    assert push_hook.run_sender(str(installed), lock_fd=-1) == 0  # another sender holds the lock: it leaves
    os.close(fd)
    (installed / push_hook.CONFIG_NAME).unlink()
    assert push_hook.run_sender(str(installed), lock_fd=-1) == 0
    assert len(recorded(installed)) == 1


# ----- the installer ------------------------------------------------------------------------------------------------


def test_install_is_idempotent_and_gives_slurms_user_its_directory(tmp_path: Path) -> None:
    source = "#!/usr/bin/env python3\nprint('sender')\n"
    first = push_hook.install(str(tmp_path), CONFIG, source, "/usr/bin/python3", ME)
    hook, sender = tmp_path / push_hook.HOOK_NAME, tmp_path / push_hook.SENDER_NAME
    var = tmp_path / push_hook.VAR_NAME
    assert sorted(first["changed"]) == sorted(
        str(path) for path in (hook, sender, tmp_path / push_hook.CONFIG_NAME, var, var / push_hook.EVENTS_NAME)
    )
    assert hook.read_text() == push_hook.HOOK_SCRIPT and hook.stat().st_mode & 0o777 == 0o755
    assert sender.read_text() == "#!/usr/bin/python3 -IS\nprint('sender')\n" and sender.stat().st_mode & 0o777 == 0o755
    for directory in (var, var / push_hook.EVENTS_NAME):
        assert (directory.stat().st_uid, directory.stat().st_mode & 0o7777) == (os.getuid(), 0o700)
    assert first["slurmSettings"] == {"PrologSlurmctld": str(hook), "EpilogSlurmctld": str(hook)}
    assert push_hook.install(str(tmp_path), CONFIG, source, "/usr/bin/python3", ME)["changed"] == []
    (var / push_hook.EVENTS_NAME).chmod(0o777)
    assert push_hook.install(str(tmp_path), CONFIG, source, "/usr/bin/python3", ME)["changed"] == [
        str(var / push_hook.EVENTS_NAME)
    ]


@pytest.mark.parametrize("user", ["no-such-user-here", "root; id", ""])
def test_install_refuses_a_slurm_user_that_does_not_exist(tmp_path: Path, user: str) -> None:
    with pytest.raises(ValueError):
        push_hook.install(str(tmp_path), CONFIG, "#!/usr/bin/env python3\n", "/usr/bin/python3", user)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "values",
    [
        {"eventBusName": "b", "region": "us-east-1"},  # no cluster
        {"eventBusName": "b c", "region": "us-east-1", "clusterName": "demo"},
        {"eventBusName": "b", "region": "mars", "clusterName": "demo"},
        {"eventBusName": "b", "region": "us-east-1", "clusterName": "demo", "endpointUrl": "http://10.0.0.1:80"},
        {"eventBusName": "b", "region": "us-east-1", "clusterName": "demo", "imdsUrl": "http://evil.example"},
        {"eventBusName": "b", "region": "us-east-1", "clusterName": "demo", "extra": 1},
    ],
)
def test_a_configuration_that_is_not_valid_is_refused(values: dict) -> None:
    with pytest.raises(ValueError):
        push_hook.HookConfig(values)


# ----- the oldest python3 of a ParallelCluster head node ------------------------------------------------------------

PYTHON37 = sorted(Path.home().glob(".pyenv/versions/3.7*/bin/python3.7"))
# Sends two recorded changes through the sender's loop with a publisher that prints what it was given, and signs it.
SENDER_DRIVER = r"""
import fcntl, json, os, sys
namespace = {"__name__": "push_hook"}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), namespace)
var = sys.argv[2]
os.makedirs(os.path.join(var, "events"))
for name in ("2026-12-03T12:00:00.123Z_STARTING_5___", "2026-12-03T12:00:01.000Z_ENDED_6_6_0_3:0"):
    open(os.path.join(var, "events", name), "w").close()
config = namespace["HookConfig"]({"eventBusName": "b", "region": "us-east-1", "clusterName": "demo"})
sent = []
class Publisher:
    def publish(self, entries):
        sent.extend(entries)
lock = os.open(os.path.join(var, "sender.lock"), os.O_WRONLY | os.O_CREAT)
fcntl.flock(lock, fcntl.LOCK_EX)
clock = iter(range(0, 100))
namespace["send_recorded"](config, var, lock, Publisher(), clock=lambda: next(clock), sleep=lambda s: None)
now = namespace["datetime"].datetime(2026, 12, 3, 12, 0, 2, tzinfo=namespace["datetime"].timezone.utc)
request = namespace["signed_put_events"](config, sent, ("AK", "secret", "token"), now)
left = os.listdir(os.path.join(var, "events"))
print(json.dumps({"sent": sent, "authorization": request.get_header("Authorization"), "left": left}))
"""


@pytest.mark.skipif(not PYTHON37, reason="no Python 3.7 under pyenv")
def test_the_sender_runs_on_python_3_7_as_it_does_here(tmp_path: Path) -> None:
    program = push_hook.__file__
    answers = [
        json.loads(
            subprocess.run(
                [python, "-IS", "-c", SENDER_DRIVER, program, str(tmp_path / name)],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout
        )
        for python, name in ((str(PYTHON37[-1]), "py37"), ("/usr/bin/python3", "here"))
    ]  # fmt: skip
    assert answers[0] == answers[1]
    (entry,) = answers[0]["sent"]
    assert json.loads(entry["Detail"])["state"] == "ENDED" and answers[0]["left"] == []
