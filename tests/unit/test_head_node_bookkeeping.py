"""The product's files on the head node against the jobs it runs (issue 8, item 4), run for real: the SSM command
through bash as root, the root stage's state directory, lock and marker, the user stage as the cluster user making the
job's directory in the home, recording Slurm stand-ins.

Every job runs as the one cluster user, who owns the home directory and everything the product makes there, so a job
can do anything there the user can: rename, replace, close or remove it. The product's own bookkeeping lies outside
every home, where only root can change anything. Each attack below is made as that user (with runuser); leftovers only
root or an earlier version of the program could have made are planted as root. After each, another job's submit
works, the bookkeeping is root's and intact, and nothing the attack pointed at is changed. A root-owned directory
under /tmp stands for /etc, so that a regression could never touch the machine's own files.

Its own cluster user (sjapi-tamper): the attacks move its files aside, which must not meet other tests' jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_job_api.head_node_program import JOB_DIRECTORIES, LEGACY_DIRECTORY
from tests.support.fake_slurm import fake_slurm
from tests.support.http_files import FileServer
from tests.support.tree_attacks import RENAMING_LOOP, remove
from tests.unit.test_head_node_program_actions import SUBMISSION, run_program, state_directory, submit_request

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the root stage and the switch to the user need root")

TAMPER_USER = "sjapi-tamper"
OTHER_SUBMISSION = "f" * 32
# What the tests leave in the user's home: the product's trees, what the attacks made, and what they moved aside.
HOME_LEFTOVERS = (".slurm-job-api", ".moved", "moved", "elsewhere", "own-tree")


@pytest.fixture(scope="module")
def user():
    cluster = pytest.importorskip("local_stack.slurm_cluster", reason="creating the cluster user needs the local stack")
    entry = cluster.ensure_cluster_user(cluster.checkout_user_name(TAMPER_USER))
    clean(entry)
    yield entry
    clean(entry)


def clean(user) -> None:
    """The user's home without the product's trees or the attacks' leftovers, and no bookkeeping of the user's."""
    for path in Path(user.pw_dir).iterdir():
        if path.name.startswith(HOME_LEFTOVERS):
            remove(path)
    for path in (state_directory() / "users").glob(f"*{user.pw_name}*"):  # also what was moved aside
        remove(path)


@pytest.fixture(scope="module")
def files():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def slurm(user):
    with fake_slurm(user, "sjapi-tamper-slurm-") as fake:
        yield fake


@pytest.fixture
def sensitive():
    """A directory of root's that stands for /etc: nothing may be made or changed in it."""
    directory = Path(tempfile.mkdtemp(prefix="sjapi-sensitive-"))
    directory.chmod(0o755)
    (directory / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    yield directory
    shutil.rmtree(directory)


@pytest.fixture(autouse=True)
def fresh_home(user):
    clean(user)
    yield
    clean(user)


def as_user(user, script: str) -> subprocess.CompletedProcess:
    """Runs a shell script as the cluster user in its home, as a job would."""
    return subprocess.run(
        [runuser(), "-u", user.pw_name, "--", "/bin/sh", "-c", script],
        cwd=user.pw_dir,
        env={"PATH": "/usr/bin:/bin", "HOME": user.pw_dir},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def runuser() -> str:
    return shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")


def submit(files, slurm, job_id: str, user, submission: str = SUBMISSION, slurm_job_id: str = "4242") -> dict:
    slurm.set({"sbatch": [{"stdout": slurm_job_id + "\n"}]})
    reply, done = run_program(submit_request(files, slurm, job_id, submissionId=submission), cluster_user=user.pw_name)
    assert reply["ok"], (reply, done.stderr)
    return reply


def entry(path: Path) -> tuple[str, int, int]:
    info = os.lstat(path)
    kind = "dir" if stat.S_ISDIR(info.st_mode) else "file" if stat.S_ISREG(info.st_mode) else "other"
    return kind, info.st_uid, stat.S_IMODE(info.st_mode)


def index(user) -> Path:
    """The user's jobs in the state directory."""
    return state_directory() / "users" / user.pw_name / "jobs"


def tree(user) -> Path:
    """The user's job directories in the home."""
    return Path(user.pw_dir) / JOB_DIRECTORIES


def assert_bookkeeping(user, job_id: str, submission: str, slurm_job_id: str) -> None:
    """Root's state directory, closed to the user, holds the lock and marker; the job's directory, every level of it
    the user's and private, is in the home."""
    jobs = index(user)
    assert entry(state_directory()) == ("dir", 0, 0o711)
    for level in (jobs.parent.parent, jobs.parent, jobs, jobs / job_id):
        assert entry(level) == ("dir", 0, 0o700), level
    assert entry(jobs / job_id / f"{submission}.lock") == ("file", 0, 0o600)
    assert entry(jobs / job_id / f"{submission}.submitted") == ("file", 0, 0o600)
    assert (jobs / job_id / f"{submission}.submitted").read_text() == slurm_job_id
    for level in (tree(user), tree(user) / job_id, tree(user) / job_id / submission):
        assert entry(level) == ("dir", user.pw_uid, 0o700), level


def assert_untouched(sensitive: Path) -> None:
    assert sorted(path.name for path in sensitive.iterdir()) == ["passwd"]
    assert entry(sensitive) == ("dir", 0, 0o755) and entry(sensitive / "passwd") == ("file", 0, 0o644)


def test_the_bookkeeping_is_roots_outside_the_home_and_the_user_cannot_change_it(files, slurm, user):
    job_id = str(uuid.uuid4())
    reply = submit(files, slurm, job_id, user)
    assert "diagnostics" not in reply
    assert_bookkeeping(user, job_id, SUBMISSION, "4242")
    (call,) = slurm.calls("sbatch")
    assert call["uid"] == user.pw_uid
    assert reply["result"]["jobDirectory"] == str(tree(user) / job_id / SUBMISSION)
    # Nothing of root's in the home: the user can clean up after its jobs.
    assert {os.lstat(path).st_uid for path in [tree(user), *tree(user).rglob("*")]} == {user.pw_uid}
    job, state = index(user) / job_id, state_directory()
    attempts = {
        "write the marker": f"echo 1 > {job}/{SUBMISSION}.submitted",
        "take the lock": f"cat {job}/{SUBMISSION}.lock",
        "list the state directory": f"ls {state}",
        "list the users": f"ls {state}/users",
        "enter the index": f"ls {index(user)}",
        "rename the state directory": f"mv {state} {state}.moved",
        "rename its parent": f"mv {state.parent} {state.parent}.moved",
        "rename the users": f"mv {state}/users {state}/moved",
        "close the state directory": f"chmod 000 {state}",
        "remove the state directory": f"rm -rf {state}",
        "plant a symlink in the state directory": f"ln -s /tmp {state}/users/{user.pw_name}",
        "plant a symlink beside it": f"ln -s /tmp {state.parent}/elsewhere",
    }
    for name, script in attempts.items():
        done = as_user(user, script)
        assert done.returncode != 0, f"the cluster user could {name}"
    assert_bookkeeping(user, job_id, SUBMISSION, "4242")
    assert sorted(path.name for path in state.parent.iterdir()) == [state.name]


def test_a_retried_submit_is_answered_by_roots_marker_without_the_user_stage(files, slurm, user):
    job_id = str(uuid.uuid4())
    submit(files, slurm, job_id, user, slurm_job_id="100")
    slurm.set({"sbatch": [{"stdout": "999\n"}]})
    again, _ = run_program(submit_request(files, slurm, job_id), cluster_user=user.pw_name)
    assert again["result"]["slurmJobId"] == "100" and again["result"]["alreadySubmitted"] is True
    assert slurm.calls() == []  # neither squeue nor sbatch: root answered from its marker


def test_a_retried_submit_is_answered_by_roots_marker_even_once_the_home_tree_is_gone(files, slurm, user):
    job_id = str(uuid.uuid4())
    submit(files, slurm, job_id, user, slurm_job_id="100")
    assert as_user(user, f"rm -rf {JOB_DIRECTORIES}").returncode == 0
    slurm.set({"sbatch": [{"stdout": "999\n"}]})
    again, _ = run_program(submit_request(files, slurm, job_id), cluster_user=user.pw_name)
    assert again["result"]["slurmJobId"] == "100" and again["result"]["alreadySubmitted"] is True
    assert slurm.calls() == []


def test_a_copied_comment_never_wins_over_the_first_job(files, slurm, user):
    """Without a marker (a crash between sbatch and root's write), squeue's comment finds the job; a job that copied
    the comment after seeing it in squeue has a later Slurm id."""
    job_id = str(uuid.uuid4())
    comment = f"slurm-job-api:{job_id}:{SUBMISSION}"
    slurm.set({"squeue": [{"stdout": f"900|{comment}\n555|{comment}\n556|(null)\n"}]})
    reply, _ = run_program(submit_request(files, slurm, job_id), cluster_user=user.pw_name)
    assert reply["result"]["slurmJobId"] == "555" and reply["result"]["alreadySubmitted"] is True
    assert slurm.calls("sbatch") == []
    assert_bookkeeping(user, job_id, SUBMISSION, "555")


# Attacks a job can make (as the cluster user) on the home tree, which is the user's own, and what the next submit
# does about each: nothing to repair (the tree is gone or renamed: it makes a new one), reopened (a directory of the
# user's that a chmod closed gets its mode back, in place) or moved aside (something else stands where a directory of
# the user's must be). {victim} is the next job's id, {first} the first job's, {sensitive} stands for /etc.
NOTHING, REOPENED, MOVED_ASIDE = "nothing", "reopened", "moved aside"
T = JOB_DIRECTORIES
USER_ATTACKS = {
    "chmod 000 the tree": (f"chmod 000 {T}", REOPENED, T),
    "chmod 000 the first job": (f"chmod 000 {T}/{{first}}", NOTHING, None),
    "remove the tree": (f"rm -rf {T}", NOTHING, None),
    "rename the tree away": (f"mv {T} moved", NOTHING, None),
    "the tree replaced by a file": (f"mv {T} moved && echo x > {T}", MOVED_ASIDE, T),
    "the tree a symlink to /etc": (f"mv {T} moved && ln -s {{sensitive}} {T}", MOVED_ASIDE, T),
    "the tree a symlink to the user's dir": (f"mv {T} moved && mkdir elsewhere && ln -s elsewhere {T}", MOVED_ASIDE, T),
    "the tree a FIFO": (f"mv {T} moved && mkfifo {T}", MOVED_ASIDE, T),
    "the victim's job a symlink to /etc": (f"ln -s {{sensitive}} {T}/{{victim}}", MOVED_ASIDE, f"{T}/{{victim}}"),
    "the victim's job a FIFO": (f"mkfifo {T}/{{victim}}", MOVED_ASIDE, f"{T}/{{victim}}"),
    "the victim's job closed": (f"mkdir -m 000 {T}/{{victim}}", REOPENED, f"{T}/{{victim}}"),
    "the victim's submission a symlink to /etc": (
        f"mkdir {T}/{{victim}} && ln -s {{sensitive}} {T}/{{victim}}/{SUBMISSION}",
        MOVED_ASIDE,
        f"{T}/{{victim}}/{SUBMISSION}",
    ),
    "the victim's submission a file": (
        f"mkdir {T}/{{victim}} && echo x > {T}/{{victim}}/{SUBMISSION}",
        MOVED_ASIDE,
        f"{T}/{{victim}}/{SUBMISSION}",
    ),
}


@pytest.mark.parametrize("attack", sorted(USER_ATTACKS))
def test_after_any_attack_on_the_home_tree_the_next_submit_works(files, slurm, user, sensitive, attack):
    script, outcome, where = USER_ATTACKS[attack]
    first, victim = str(uuid.uuid4()), str(uuid.uuid4())
    submit(files, slurm, first, user, slurm_job_id="1")
    names = {"sensitive": sensitive, "victim": victim, "first": first}
    done = as_user(user, script.format(**names))
    assert done.returncode == 0, (done.stdout, done.stderr)

    reply = submit(files, slurm, victim, user, slurm_job_id="2")
    assert_bookkeeping(user, victim, SUBMISSION, "2")
    assert (index(user) / first / f"{SUBMISSION}.submitted").read_text() == "1"  # root's: no attack reaches it
    if attack == "chmod 000 the tree":
        assert_bookkeeping(user, first, SUBMISSION, "1")  # opened again in place: the first job keeps its directory
    directory = tree(user) / victim / SUBMISSION
    assert reply["result"]["jobDirectory"] == str(directory)
    (call,) = slurm.calls("sbatch")
    assert slurm.script(call) == files.objects[f"/{victim}/script"] == (directory / "job.sh").read_bytes()
    assert_untouched(sensitive)
    if outcome == NOTHING:
        assert "diagnostics" not in reply
        return
    path = Path(user.pw_dir) / where.format(**names)
    (diagnostic,) = reply["diagnostics"]
    assert diagnostic.startswith(f"{path} was ")
    aside = [item for item in path.parent.iterdir() if item.name.startswith(f".{path.name.lstrip('.')}.tampered-")]
    if outcome == REOPENED:
        assert diagnostic.endswith("its mode is 0700 again") and aside == []
    else:
        assert diagnostic.endswith(" and made again") and len(aside) == 1
        assert diagnostic.split(" moved aside to ")[1].split(" ")[0] == aside[0].name


def test_the_first_jobs_files_survive_a_closed_tree(files, slurm, user):
    """A tree closed by chmod is opened again in place: jobs in flight keep their directories, and collect finds
    their files even before another submit came."""
    job_id = str(uuid.uuid4())
    submit(files, slurm, job_id, user)
    directory = tree(user) / job_id / SUBMISSION
    assert as_user(user, f"echo out > {directory}/slurm-stdout && chmod 000 {JOB_DIRECTORIES}").returncode == 0
    reply = collect(files, slurm, user, job_id)
    assert reply["result"]["files"] == [{"name": "stdout", "status": "uploaded", "bytes": 4, "message": None}]
    assert files.objects[f"/{job_id}/out"] == b"out\n"
    (diagnostic,) = reply["diagnostics"]
    assert diagnostic == f"{tree(user)} was closed (mode 0000): its mode is 0700 again"


def collect(files, slurm, user, job_id: str, submission: str = SUBMISSION) -> dict:
    upload = {"name": "stdout", "source": "stdout", "taskId": None, "path": None, "url": files.url(f"/{job_id}/out")}
    request = {
        "action": "collect",
        "slurmBinDir": str(slurm.bin_dir),
        "jobId": job_id,
        "submissionId": submission,
        "slurmJobId": "4242",
        "uploads": [upload],
    }
    reply, done = run_program(request, cluster_user=user.pw_name)
    assert reply["ok"], (reply, done.stderr)
    return reply


@pytest.mark.parametrize(
    "swap",
    [
        f"mv {T} moved && mkdir -p own-tree/{{job}}/{SUBMISSION} && echo forged > own-tree/{{job}}/{SUBMISSION}/"
        f"slurm-stdout && ln -s own-tree {T}",
        f"mv {T}/{{job}} moved && mkdir -p own-tree/{SUBMISSION} && echo forged > own-tree/{SUBMISSION}/slurm-stdout"
        f" && ln -s $HOME/own-tree {T}/{{job}}",
        f"mkdir own-tree && echo forged > own-tree/slurm-stdout && rm -rf {T}/{{job}}/{SUBMISSION} && "
        f"ln -s $HOME/own-tree {T}/{{job}}/{SUBMISSION}",
        f"rm {T}/{{job}}/{SUBMISSION}/slurm-stdout && ln -s {{sensitive}}/passwd {T}/{{job}}/{SUBMISSION}/slurm-stdout",
    ],
    ids=["the tree", "the job", "the submission", "the stream"],
)
def test_collect_never_follows_a_symlink_a_job_put_in_the_path(files, slurm, user, sensitive, swap):
    job_id = str(uuid.uuid4())
    submit(files, slurm, job_id, user)
    assert as_user(user, f"echo real > {T}/{job_id}/{SUBMISSION}/slurm-stdout").returncode == 0
    done = as_user(user, swap.format(job=job_id, sensitive=sensitive))
    assert done.returncode == 0, done.stderr
    (report,) = collect(files, slurm, user, job_id)["result"]["files"]
    assert report["status"] in ("missing", "error") and f"/{job_id}/out" not in files.puts


def test_a_job_renaming_the_tree_in_a_loop_never_stops_a_submission(files, slurm, user, sensitive):
    """A job of the user's renames the home tree away as fast as it can, puts its own directory or a symlink in its
    place, and tries the state directory and its parents too: every submission made meanwhile is taken, with the
    script and environment it was given, and root's bookkeeping of each is intact."""
    state = state_directory()
    with renaming_loop(user, sensitive, state) as report:
        jobs = [str(uuid.uuid4()) for _ in range(8)]
        for number, job_id in enumerate(jobs, start=1):
            files.objects[f"/{job_id}/env"] = b'{"SECRET": "mine"}'
            slurm.set({"sbatch": [{"stdout": f"{number}\n"}]})
            request = submit_request(files, slurm, job_id, environmentUrl=files.url(f"/{job_id}/env"))
            reply, done = run_program(request, cluster_user=user.pw_name)
            assert reply["ok"] and reply["result"]["slurmJobId"] == str(number), (reply, done.stderr)
            (call,) = slurm.sbatch_calls_for(job_id)
            assert slurm.script(call) == files.objects[f"/{job_id}/script"]
            assert slurm.export_file(call) == b"SECRET=mine\0"
            marker = index(user) / job_id / f"{SUBMISSION}.submitted"
            assert entry(marker) == ("file", 0, 0o600) and marker.read_text() == str(number)
    counts = report()
    print("renaming loop:", counts)
    assert counts["moved jobs"] > 0, counts  # the loop did move the submissions' directories away meanwhile
    assert counts["state renamed"] == 0 and counts["state refused"] > 0, counts
    assert_untouched(sensitive)
    assert entry(state) == ("dir", 0, 0o711)


@contextlib.contextmanager
def renaming_loop(user, sensitive: Path, state: Path) -> Iterator:
    """A process of the user's running RENAMING_LOOP in its home until the block ends; yields a function that returns
    its counts once it has stopped."""
    stop = Path(user.pw_dir) / ".moved-stop"
    loop = [T, str(sensitive), str(state), str(stop), "-"]
    process = subprocess.Popen(
        [runuser(), "-u", user.pw_name, "--", "/usr/bin/python3", "-c", RENAMING_LOOP, *loop],
        cwd=user.pw_dir,
        env={"PATH": "/usr/bin:/bin", "HOME": user.pw_dir},
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict = {}
    try:
        deadline = time.monotonic() + 30
        while not any(path.name.startswith(".moved-") for path in Path(user.pw_dir).iterdir()):
            assert time.monotonic() < deadline and process.poll() is None, "the loop did not start"
            time.sleep(0.01)
        yield lambda: result
    finally:
        stop.touch()
        output, _ = process.communicate(timeout=60)
        result.update(json.loads(output))


# Leftovers only root or an earlier version of the program could have made in the state directory: each is not
# followed, moved aside, and the second submission works.
def plant_jobs_symlink(job: Path, sensitive: Path, user) -> Path:
    jobs = job.parent
    remove(jobs)
    jobs.symlink_to(sensitive)
    return jobs


def plant_users_jobs_directory(job: Path, sensitive: Path, user) -> Path:
    jobs = job.parent
    remove(jobs)
    jobs.mkdir()
    os.chown(jobs, user.pw_uid, user.pw_gid)
    return jobs


def plant_writable_user_directory(job: Path, sensitive: Path, user) -> Path:
    mine = job.parent.parent
    mine.chmod(0o777)
    return mine


def plant_job_symlink(job: Path, sensitive: Path, user) -> Path:
    remove(job)
    job.symlink_to(sensitive)
    return job


def plant_lock_fifo(job: Path, sensitive: Path, user) -> Path:
    os.mkfifo(job / f"{OTHER_SUBMISSION}.lock")
    return job / f"{OTHER_SUBMISSION}.lock"


def plant_marker_symlink(job: Path, sensitive: Path, user) -> Path:
    (sensitive / "passwd").write_text("666")
    (job / f"{OTHER_SUBMISSION}.submitted").symlink_to(sensitive / "passwd")
    return job / f"{OTHER_SUBMISSION}.submitted"


def plant_marker_hard_link(job: Path, sensitive: Path, user) -> Path:
    (sensitive / "passwd").write_text("777")
    os.link(sensitive / "passwd", job / f"{OTHER_SUBMISSION}.submitted")
    return job / f"{OTHER_SUBMISSION}.submitted"


def plant_marker_fifo(job: Path, sensitive: Path, user) -> Path:
    os.mkfifo(job / f"{OTHER_SUBMISSION}.submitted")
    return job / f"{OTHER_SUBMISSION}.submitted"


def plant_users_marker(job: Path, sensitive: Path, user) -> Path:
    marker = job / f"{OTHER_SUBMISSION}.submitted"
    marker.write_text("666")
    os.chown(marker, user.pw_uid, user.pw_gid)
    return marker


LEFTOVERS = [
    plant_jobs_symlink,
    plant_users_jobs_directory,
    plant_writable_user_directory,
    plant_job_symlink,
    plant_lock_fifo,
    plant_marker_symlink,
    plant_marker_hard_link,
    plant_marker_fifo,
    plant_users_marker,
]


@pytest.mark.parametrize("plant", LEFTOVERS, ids=[plant.__name__ for plant in LEFTOVERS])
def test_a_planted_entry_in_the_state_directory_is_never_followed_and_is_moved_aside(
    files, slurm, user, sensitive, plant
):
    job_id = str(uuid.uuid4())
    submit(files, slurm, job_id, user, slurm_job_id="1")
    planted = plant(index(user) / job_id, sensitive, user)
    passwd_before = (sensitive / "passwd").read_text()

    reply = submit(files, slurm, job_id, user, submission=OTHER_SUBMISSION, slurm_job_id="2")
    assert reply["result"]["alreadySubmitted"] is False and reply["result"]["slurmJobId"] == "2"
    assert_bookkeeping(user, job_id, OTHER_SUBMISSION, "2")
    (diagnostic,) = reply["diagnostics"]
    assert diagnostic.startswith(f"{planted} was ")
    aside = [path for path in planted.parent.iterdir() if path.name.startswith(f".{planted.name}.tampered-")]
    assert len(aside) == 1
    # What the planted entry pointed at is as it was: nothing made in it, no owner or content changed.
    assert sorted(path.name for path in sensitive.iterdir()) == ["passwd"]
    assert entry(sensitive) == ("dir", 0, 0o755) and (sensitive / "passwd").read_text() == passwd_before
    assert os.lstat(sensitive / "passwd").st_uid == 0


# -- the state directory's own path --------------------------------------------------------------------------------


@pytest.fixture
def elsewhere():
    """A directory of root's for state directories of a test's own."""
    directory = Path(tempfile.mkdtemp(prefix="sjapi-state-"))
    yield directory
    remove(directory)


def test_a_state_directory_is_made_with_its_parents_and_may_be_named_through_a_symlink(files, slurm, user, elsewhere):
    (elsewhere / "link").symlink_to(elsewhere / "real")
    job_id = str(uuid.uuid4())
    slurm.set({"sbatch": [{"stdout": "5\n"}]})
    reply, _ = run_program(submit_request(files, slurm, job_id), cluster_user=user.pw_name, state=elsewhere / "link/s")
    assert reply["ok"] and "diagnostics" not in reply, reply
    assert entry(elsewhere / "real") == ("dir", 0, 0o755) and entry(elsewhere / "real/s") == ("dir", 0, 0o711)
    marker = elsewhere / "real/s/users" / user.pw_name / "jobs" / job_id / f"{SUBMISSION}.submitted"
    assert marker.read_text() == "5"


@pytest.mark.parametrize(
    "place",
    ["in the user's home", "below a directory the user owns", "writable by all", "below a directory all can write"],
)
def test_a_state_directory_others_could_change_is_refused_and_nothing_is_submitted(
    files, slurm, user, elsewhere, place
):
    home = Path(user.pw_dir)
    if place == "in the user's home":
        state = home / ".moved-state"
    elif place == "below a directory the user owns":
        (elsewhere / "theirs").mkdir()
        os.chown(elsewhere / "theirs", user.pw_uid, user.pw_gid)
        state = elsewhere / "theirs/state"
    elif place == "writable by all":
        state = elsewhere / "state"
        state.mkdir(mode=0o777)
        state.chmod(0o777)
    else:
        (elsewhere / "open").mkdir()
        (elsewhere / "open").chmod(0o777)
        state = elsewhere / "open/state"
    reply, _ = run_program(submit_request(files, slurm, str(uuid.uuid4())), cluster_user=user.pw_name, state=state)
    assert reply["error"]["type"] == "HeadNodeSetupError", reply
    assert "state directory" in reply["error"]["message"]
    assert slurm.calls() == []
    assert not (state / "users").exists()


# -- a head node upgraded from a version that kept its bookkeeping in the home ------------------------------------


def legacy_submission(user, job_id: str, slurm_job_id: str | None = "77", owner: int = 0) -> Path:
    """What versions before the state directory left for a submission: root's tree in the home with the lock and
    marker beside the user's directory, which holds the job's output (`owner` 0: as they made it; else forged)."""
    top = Path(user.pw_dir) / LEGACY_DIRECTORY
    job = top / "jobs" / job_id
    job.mkdir(parents=True, exist_ok=True)
    for level, mode in ((top, 0o755), (top / "jobs", 0o711), (job, 0o711)):
        level.chmod(mode)
        os.chown(level, owner, owner and user.pw_gid)
    directory = job / SUBMISSION
    directory.mkdir(mode=0o700)
    (directory / "slurm-stdout").write_text("from before the upgrade\n")
    for path in (directory, directory / "slurm-stdout"):
        os.chown(path, user.pw_uid, user.pw_gid)
    (job / f"{SUBMISSION}.lock").touch(mode=0o600)
    if slurm_job_id is not None:
        (job / f"{SUBMISSION}.submitted").write_text(slurm_job_id)
        (job / f"{SUBMISSION}.submitted").chmod(0o600)
        os.chown(job / f"{SUBMISSION}.submitted", owner, owner and user.pw_gid)
    return directory


def snapshot(path: Path) -> dict:
    return {str(item): (entry(item), item.read_bytes() if item.is_file() else None) for item in path.rglob("*")}


def test_a_submit_retried_after_the_upgrade_is_answered_by_the_earlier_versions_marker(files, slurm, user):
    job_id = str(uuid.uuid4())
    legacy = legacy_submission(user, job_id)
    before = snapshot(Path(user.pw_dir) / LEGACY_DIRECTORY)
    slurm.set({"sbatch": [{"stdout": "999\n"}]})
    reply, _ = run_program(submit_request(files, slurm, job_id), cluster_user=user.pw_name)
    assert reply["result"] == {"slurmJobId": "77", "alreadySubmitted": True, "jobDirectory": str(legacy)}
    assert slurm.calls() == []
    # The marker is root's own now, in the state directory; the earlier tree is as it was, and nothing new is made.
    assert (index(user) / job_id / f"{SUBMISSION}.submitted").read_text() == "77"
    assert snapshot(Path(user.pw_dir) / LEGACY_DIRECTORY) == before
    assert not tree(user).exists()


def test_a_job_submitted_before_the_upgrade_is_collected_from_its_directory(files, slurm, user):
    job_id = str(uuid.uuid4())
    legacy_submission(user, job_id)
    reply = collect(files, slurm, user, job_id)
    assert reply["result"]["files"][0]["status"] == "uploaded"
    assert files.objects[f"/{job_id}/out"] == b"from before the upgrade\n"


def test_new_jobs_beside_an_earlier_versions_tree_go_to_the_new_one(files, slurm, user):
    first, later = str(uuid.uuid4()), str(uuid.uuid4())
    legacy_submission(user, first)
    before = snapshot(Path(user.pw_dir) / LEGACY_DIRECTORY)
    reply = submit(files, slurm, later, user, slurm_job_id="78")
    assert reply["result"]["jobDirectory"] == str(tree(user) / later / SUBMISSION) and "diagnostics" not in reply
    assert_bookkeeping(user, later, SUBMISSION, "78")
    assert snapshot(Path(user.pw_dir) / LEGACY_DIRECTORY) == before


def test_an_earlier_versions_tree_forged_by_a_job_is_not_believed(files, slurm, user):
    """A tree of the user's where the earlier version's was: its marker is not root's, so the submission is made; its
    forged output is not collected for a job of the new layout that has none."""
    job_id = str(uuid.uuid4())
    legacy_submission(user, job_id, owner=user.pw_uid)
    reply = submit(files, slurm, job_id, user, slurm_job_id="79")
    assert reply["result"]["alreadySubmitted"] is False and len(slurm.calls("sbatch")) == 1
    assert_bookkeeping(user, job_id, SUBMISSION, "79")
    remove(tree(user))
    assert collect(files, slurm, user, job_id)["result"]["files"][0]["status"] == "missing"


def test_an_earlier_versions_tree_renamed_into_the_new_ones_place_is_moved_aside(files, slurm, user):
    legacy_submission(user, str(uuid.uuid4()))
    assert as_user(user, f"mv {LEGACY_DIRECTORY} {JOB_DIRECTORIES}").returncode == 0
    job_id = str(uuid.uuid4())
    reply = submit(files, slurm, job_id, user)
    assert_bookkeeping(user, job_id, SUBMISSION, "4242")
    (diagnostic,) = reply["diagnostics"]
    assert diagnostic.startswith(f"{tree(user)} was a directory of uid 0, mode 0755")
