"""The product's bookkeeping on the head node against the jobs it runs (issue 8, item 4), run for real: the SSM command
through bash as root, the root stage's directories, lock and marker, the user stage as the cluster user, recording
Slurm stand-ins.

Every job runs as the one cluster user, who owns the home directory: a job can rename or replace what lies in the
home, but nothing inside root's directories. Each attack below is made as that user (with runuser); leftovers only
root or an earlier version of the program could have made are planted as root. After each, another job's submit
works, and nothing the attack pointed at is changed. A root-owned directory under /tmp stands for /etc, so that a
regression could never touch the machine's own files.

Its own cluster user (sjapi-tamper): the attacks move its bookkeeping aside, which must not meet other tests' jobs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support.fake_slurm import fake_slurm
from tests.support.http_files import FileServer
from tests.unit.test_head_node_program_actions import SUBMISSION, run_program, submit_request

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the root stage and the switch to the user need root")

TAMPER_USER = "sjapi-tamper"
OTHER_SUBMISSION = "f" * 32


@pytest.fixture(scope="module")
def user():
    cluster = pytest.importorskip("local_stack.slurm_cluster", reason="creating the cluster user needs the local stack")
    entry = cluster.ensure_cluster_user(cluster.checkout_user_name(TAMPER_USER))
    yield entry
    clean_home(entry)


def clean_home(user) -> None:
    for path in Path(user.pw_dir).iterdir():
        if path.name.startswith((".slurm-job-api", "moved", "elsewhere")):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


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
    clean_home(user)
    yield
    clean_home(user)


def as_user(user, script: str) -> subprocess.CompletedProcess:
    """Runs a shell script as the cluster user in its home, as a job would."""
    return subprocess.run(
        [
            shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin"),
            "-u",
            user.pw_name,
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
        cwd=user.pw_dir,
        env={"PATH": "/usr/bin:/bin", "HOME": user.pw_dir},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


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
    return Path(user.pw_dir) / ".slurm-job-api" / "jobs"


def assert_bookkeeping(user, job_id: str, submission: str, slurm_job_id: str) -> None:
    """Root's directories and files, closed to the user; only the submission's own directory is the user's."""
    jobs = index(user)
    assert entry(jobs.parent) == ("dir", 0, 0o755)
    assert entry(jobs) == ("dir", 0, 0o711)
    assert entry(jobs / job_id) == ("dir", 0, 0o711)
    assert entry(jobs / job_id / submission) == ("dir", user.pw_uid, 0o700)
    assert entry(jobs / job_id / f"{submission}.lock") == ("file", 0, 0o600)
    assert entry(jobs / job_id / f"{submission}.submitted") == ("file", 0, 0o600)
    assert (jobs / job_id / f"{submission}.submitted").read_text() == slurm_job_id


def assert_untouched(sensitive: Path) -> None:
    assert sorted(path.name for path in sensitive.iterdir()) == ["passwd"]
    assert entry(sensitive) == ("dir", 0, 0o755) and entry(sensitive / "passwd") == ("file", 0, 0o644)


def test_the_bookkeeping_is_roots_and_the_user_cannot_change_it(files, slurm, user):
    job_id = str(uuid.uuid4())
    reply = submit(files, slurm, job_id, user)
    assert "diagnostics" not in reply
    assert_bookkeeping(user, job_id, SUBMISSION, "4242")
    (call,) = slurm.calls("sbatch")
    assert call["uid"] == user.pw_uid
    job = index(user) / job_id
    future = str(uuid.uuid4())
    attempts = {
        "write the marker": f"echo 1 > {job}/{SUBMISSION}.submitted",
        "replace the marker": f"mv {job}/{SUBMISSION}.submitted {job}/{SUBMISSION}.old",
        "take the lock": f"cat {job}/{SUBMISSION}.lock",
        "rename the submission": f"mv {job}/{SUBMISSION} {job}/mine",
        "close the index": f"chmod 000 {index(user)}",
        "close the top": f"chmod 000 {index(user).parent}",
        "remove the index": f"rm -rf {index(user)}",
        "list the index": f"ls {index(user)}",
        "list a job's submissions": f"ls {job}",
        "plant a symlink at a future job": f"ln -s /tmp {index(user)}/{future}",
        "plant a directory at a future job": f"mkdir {index(user)}/{future}",
    }
    for name, script in attempts.items():
        done = as_user(user, script)
        assert done.returncode != 0, f"the cluster user could {name}"
    assert_bookkeeping(user, job_id, SUBMISSION, "4242")
    assert not os.path.lexists(index(user) / future)
    # The job's own directory stays reachable by path, as Slurm and collect use it.
    done = as_user(user, f"touch {job}/{SUBMISSION}/mine && ls {job}/{SUBMISSION}")
    assert done.returncode == 0 and "job.sh" in done.stdout


def test_a_retried_submit_is_answered_by_roots_marker_without_the_user_stage(files, slurm, user):
    job_id = str(uuid.uuid4())
    submit(files, slurm, job_id, user, slurm_job_id="100")
    slurm.set({"sbatch": [{"stdout": "999\n"}]})
    again, _ = run_program(submit_request(files, slurm, job_id), cluster_user=user.pw_name)
    assert again["result"]["slurmJobId"] == "100" and again["result"]["alreadySubmitted"] is True
    assert slurm.calls() == []  # neither squeue nor sbatch: root answered from its marker


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


# Attacks a job can make (as the cluster user) on the tree root made, and what comes of each: refused (the attack
# fails), renamed (the tree is gone: the next submit makes a new one) or moved aside (replaced by something else).
REFUSED, RENAMED, MOVED_ASIDE = "refused", "renamed", "moved aside"
USER_ATTACKS = {
    "chmod 000 jobs": ("chmod 000 .slurm-job-api/jobs", REFUSED),
    "chmod 000 the top": ("chmod 000 .slurm-job-api", REFUSED),
    "remove the tree": ("rm -rf .slurm-job-api", REFUSED),
    "rename the tree away": ("mv .slurm-job-api moved", RENAMED),
    "the top replaced by a file": ("mv .slurm-job-api moved && echo x > .slurm-job-api", MOVED_ASIDE),
    "the top a symlink to /etc": ("mv .slurm-job-api moved && ln -s {sensitive} .slurm-job-api", MOVED_ASIDE),
    "the top a symlink to the user's dir": (
        "mv .slurm-job-api moved && mkdir elsewhere && ln -s elsewhere .slurm-job-api",
        MOVED_ASIDE,
    ),
    "the top a FIFO": ("mv .slurm-job-api moved && mkfifo .slurm-job-api", MOVED_ASIDE),
    "a tree of the user's with jobs closed": (
        "mv .slurm-job-api moved && mkdir -p .slurm-job-api/jobs && chmod 000 .slurm-job-api/jobs",
        MOVED_ASIDE,
    ),
    "a tree of the user's with jobs a symlink to /etc": (
        "mv .slurm-job-api moved && mkdir .slurm-job-api && ln -s {sensitive} .slurm-job-api/jobs",
        MOVED_ASIDE,
    ),
    "a tree of the user's with the victim's job planted": (
        "mv .slurm-job-api moved && mkdir -p .slurm-job-api/jobs && ln -s {sensitive} .slurm-job-api/jobs/{victim}",
        MOVED_ASIDE,
    ),
}


@pytest.mark.parametrize("attack", sorted(USER_ATTACKS))
def test_after_any_attack_by_a_job_the_next_submit_works(files, slurm, user, sensitive, attack):
    script, outcome = USER_ATTACKS[attack]
    first, victim = str(uuid.uuid4()), str(uuid.uuid4())
    submit(files, slurm, first, user, slurm_job_id="1")
    done = as_user(user, script.format(sensitive=sensitive, victim=victim))
    assert (done.returncode == 0) == (outcome != REFUSED), (done.stdout, done.stderr)

    reply = submit(files, slurm, victim, user, slurm_job_id="2")
    assert_bookkeeping(user, victim, SUBMISSION, "2")
    directory = index(user) / victim / SUBMISSION
    assert reply["result"]["jobDirectory"] == str(directory)
    assert slurm.calls("sbatch")[0]["argv"][-1] == f"{directory}/job.sh"
    assert (directory / "job.sh").read_bytes() == files.objects[f"/{victim}/script"]
    assert_untouched(sensitive)
    home = Path(user.pw_dir)
    aside = [path.name for path in home.iterdir() if path.name.startswith(".slurm-job-api.tampered-")]
    if outcome == MOVED_ASIDE:
        (diagnostic,) = reply["diagnostics"]
        assert diagnostic.startswith(f"{home}/.slurm-job-api was ") and diagnostic.endswith(" and made again")
        assert diagnostic.split(" moved aside to ")[1].split(" ")[0] == aside[0] and len(aside) == 1
    else:
        assert "diagnostics" not in reply and aside == []
    if outcome == REFUSED:
        assert_bookkeeping(user, first, SUBMISSION, "1")  # the first job's bookkeeping is intact too


def prepared_job(files, slurm, user) -> tuple[str, Path]:
    """A job whose jobs/<jobId>/ exists (one submission made), for planting beside a second submission."""
    job_id = str(uuid.uuid4())
    submit(files, slurm, job_id, user, slurm_job_id="1")
    return job_id, index(user) / job_id


# Leftovers only root or an earlier version of the program could have made (the user cannot write in root's
# directories): each is not followed, moved aside, and the second submission works.
def plant_jobs_symlink(job: Path, sensitive: Path, user) -> Path:
    jobs = job.parent
    shutil.rmtree(jobs)
    jobs.symlink_to(sensitive)
    return jobs


def plant_users_jobs_directory(job: Path, sensitive: Path, user) -> Path:
    jobs = job.parent
    shutil.rmtree(jobs)
    jobs.mkdir()
    os.chown(jobs, user.pw_uid, user.pw_gid)
    return jobs


def plant_job_symlink(job: Path, sensitive: Path, user) -> Path:
    shutil.rmtree(job)
    job.symlink_to(sensitive)
    return job


def plant_submission_symlink(job: Path, sensitive: Path, user) -> Path:
    (job / OTHER_SUBMISSION).symlink_to(sensitive)
    return job / OTHER_SUBMISSION


def plant_submission_file(job: Path, sensitive: Path, user) -> Path:
    (job / OTHER_SUBMISSION).write_text("x")
    return job / OTHER_SUBMISSION


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


LEFTOVERS = [
    plant_jobs_symlink,
    plant_users_jobs_directory,
    plant_job_symlink,
    plant_submission_symlink,
    plant_submission_file,
    plant_lock_fifo,
    plant_marker_symlink,
    plant_marker_hard_link,
    plant_marker_fifo,
]


@pytest.mark.parametrize("plant", LEFTOVERS, ids=[plant.__name__ for plant in LEFTOVERS])
def test_a_planted_entry_is_never_followed_and_is_moved_aside(files, slurm, user, sensitive, plant):
    job_id, job = prepared_job(files, slurm, user)
    planted = plant(job, sensitive, user)
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


def test_collect_never_reads_a_tree_the_user_swapped_in(files, slurm, user):
    """A job renames the tree away and puts its own in its place, with a forged stdout at another job's path: the
    root stage moves the swapped-in tree aside before the user stage reads files by path, so nothing forged is sent."""
    job_id = str(uuid.uuid4())
    submit(files, slurm, job_id, user)
    forged = f".slurm-job-api/jobs/{job_id}/{SUBMISSION}"
    done = as_user(user, f"mv .slurm-job-api moved && mkdir -p {forged} && echo forged > {forged}/slurm-stdout")
    assert done.returncode == 0, done.stderr
    upload = {"name": "stdout", "source": "stdout", "taskId": None, "path": None, "url": files.url(f"/{job_id}/out")}
    request = {
        "action": "collect",
        "slurmBinDir": str(slurm.bin_dir),
        "jobId": job_id,
        "submissionId": SUBMISSION,
        "slurmJobId": "4242",
        "uploads": [upload],
    }
    reply, _ = run_program(request, cluster_user=user.pw_name)
    assert reply["result"]["files"] == [{"name": "stdout", "status": "missing", "bytes": None, "message": None}]
    assert f"/{job_id}/out" not in files.puts
    (diagnostic,) = reply["diagnostics"]
    assert "moved aside" in diagnostic
