"""The head-node program run for real: the exact SSM command text through bash as root, the switch to the cluster
user with runuser, files in the per-job directory, and Slurm commands (recording stand-ins) called with argv lists.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from slurm_job_api.head_node_program import (
    DENIED_CLUSTER_USERS,
    JOB_DIRECTORIES,
    MAX_SWEEP_JOBS,
    MIN_CLUSTER_UID,
    POLICY_FILE_VARIABLE,
    READ_OUTPUT_MAX_BYTES,
    REPLY_FIELDS,
    STATE_DIRECTORY_VARIABLE,
    SUMMARY_FIELDS,
    USER_NAME_RE,
    HeadNodeSetupError,
    cluster_user_policy,
)
from slurm_job_api.head_node_protocol import StatusReply, SweepReply, SweepReport
from slurm_job_api.ssm_command import shell_commands
from tests.support.fake_slurm import FakeSlurm, fake_slurm
from tests.support.http_files import FileServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to the cluster user needs root, as on a head node")

TEST_USER = "sjapi-test"  # with $SLURM_JOB_API_PORT_OFFSET, suffixed (local_stack.slurm_cluster.checkout_user_name)
AGENT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def state_directory() -> Path:
    """The bookkeeping directory the program uses here: this checkout's, as the local head node gives it."""
    from local_stack.slurm_cluster import head_node_state_directory  # the local stack: not importable in every run

    return head_node_state_directory()


@pytest.fixture(scope="module")
def user():
    return local_cluster().ensure_cluster_user(cluster_user_name())


def local_cluster():
    # Imported here, not at the top: tests/unit collects with only the product's dependencies (the local stack is a
    # test tool), and these tests, which need root anyway, skip where it is not importable.
    return pytest.importorskip("local_stack.slurm_cluster", reason="creating the cluster user needs the local stack")


def cluster_user_name() -> str:
    return local_cluster().checkout_user_name(TEST_USER)


@pytest.fixture(scope="module")
def files():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def slurm(user):
    with fake_slurm(user, "sjapi-fake-slurm-") as fake:
        yield fake


SUBMISSION = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def job_id(user):
    job = str(uuid.uuid4())
    yield job
    shutil.rmtree(Path(user.pw_dir) / JOB_DIRECTORIES / job, ignore_errors=True)
    shutil.rmtree(state_directory() / "users" / user.pw_name / "jobs" / job, ignore_errors=True)


def run_program(
    request: dict, cluster_user: str | None = None, state: Path | None = None, env: dict | None = None
) -> tuple[dict, subprocess.CompletedProcess]:
    """Runs the program exactly as the SSM agent would run our command (as the test user unless ``cluster_user`` is
    given), with `state` (else this checkout's) as its state directory; returns (reply, process)."""
    full = {"protocol": 1, "clusterUser": cluster_user or cluster_user_name(), **request}
    done = subprocess.run(
        ["/bin/bash", "-c", "\n".join(shell_commands(full))],
        env={**AGENT_ENV, STATE_DIRECTORY_VARIABLE: str(state or state_directory()), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, (done.stdout, done.stderr)
    return json.loads(lines[0]), done


def submit_request(files: FileServer, slurm: FakeSlurm, job_id: str, **extra) -> dict:
    files.objects[f"/{job_id}/script"] = b"#!/bin/bash\necho '$(touch /tmp/canary-script)'\n"
    request = {
        "action": "submit",
        "slurmBinDir": str(slurm.bin_dir),
        "jobId": job_id,
        "submissionId": SUBMISSION,
        "scriptUrl": files.url(f"/{job_id}/script"),
        "sbatchOptions": ["--job-name=x", "--partition=debug;$(touch /tmp/canary-option)"],
        "workingDirectory": None,
    }
    request.update(extra)
    return request


def job_dir(user, job_id: str) -> Path:
    return Path(user.pw_dir) / JOB_DIRECTORIES / job_id / SUBMISSION


def test_submit_runs_sbatch_as_the_cluster_user_with_exact_argv(files, slurm, job_id, user):
    environment = {"GREETING": "hi there; $(touch /tmp/canary-env)\n`id`", "N": "1"}
    files.objects[f"/{job_id}/env"] = json.dumps(environment).encode()
    slurm.set({"squeue": [{"stdout": ""}], "sbatch": [{"stdout": "4242\n"}]})
    reply, _ = run_program(submit_request(files, slurm, job_id, environmentUrl=files.url(f"/{job_id}/env")))
    directory = job_dir(user, job_id)
    assert reply == {
        "ok": True,
        "protocol": 1,
        "action": "submit",
        "result": {"slurmJobId": "4242", "alreadySubmitted": False, "jobDirectory": str(directory)},
    }
    (call,) = slurm.calls("sbatch")
    assert call["uid"] == user.pw_uid
    export_file = next(arg for arg in call["argv"] if arg.startswith("--export-file="))
    assert export_file.split("=", 1)[1].isdigit()  # a descriptor sbatch reads the environment from
    assert call["argv"] == [
        "--parsable",
        f"--comment=slurm-job-api:{job_id}:{SUBMISSION}",
        f"--chdir={directory}",
        f"--output={directory}/slurm-stdout",
        f"--error={directory}/slurm-stderr",
        "--kill-on-invalid-dep=yes",
        export_file,
        "--job-name=x",
        "--partition=debug;$(touch /tmp/canary-option)",
    ]  # and no script path: sbatch reads the script from its stdin
    content = b"GREETING=" + environment["GREETING"].encode() + b"\0N=1\0"
    assert slurm.script(call) == files.objects[f"/{job_id}/script"]
    assert slurm.export_file(call) == content
    assert call["env"]["HOME"] == user.pw_dir and call["env"]["USER"] == user.pw_name
    assert "AWS_SSM_INSTANCE_ID" not in call["env"] and call["env"]["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    # The copies left for people, and every level of the directory: private to the cluster user.
    assert (directory / "job.sh").read_bytes() == files.objects[f"/{job_id}/script"]
    assert (directory / "environment").read_bytes() == content
    assert sorted(path.name for path in directory.iterdir()) == ["environment", "job.sh"]
    levels = (directory.parent.parent, directory.parent, directory)
    for path, mode in (
        *((level, 0o700) for level in levels),
        (directory / "job.sh", 0o700),
        (directory / "environment", 0o600),
    ):
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, mode), path
    assert not any(Path(f"/tmp/canary-{name}").exists() for name in ("script", "option", "env"))


def test_array_jobs_write_one_output_file_per_task(files, slurm, job_id, user):
    slurm.set({"sbatch": [{"stdout": "77;cluster\n"}]})
    reply, _ = run_program(submit_request(files, slurm, job_id, sbatchOptions=["--array=1-3%2"]))
    assert reply["result"]["slurmJobId"] == "77"
    argv = slurm.calls("sbatch")[0]["argv"]
    assert f"--output={job_dir(user, job_id)}/slurm-stdout.%a" in argv


def test_a_retried_submit_finds_the_first_one(files, slurm, job_id):
    slurm.set({"sbatch": [{"stdout": "100\n"}]})
    first, _ = run_program(submit_request(files, slurm, job_id))
    again, _ = run_program(submit_request(files, slurm, job_id))
    assert first["result"]["slurmJobId"] == again["result"]["slurmJobId"] == "100"
    assert again["result"]["alreadySubmitted"] is True
    assert len(slurm.calls("sbatch")) == 1


def test_the_same_job_id_in_another_submission_never_reuses_the_first(files, slurm, job_id):
    """An Idempotency-Key reused against a redeployed stack gives the same job id, but a new submission."""
    slurm.set({"sbatch": [{"stdout": "100\n"}, {"stdout": "200\n"}]})
    first, _ = run_program(submit_request(files, slurm, job_id))
    other, _ = run_program(submit_request(files, slurm, job_id, submissionId="f" * 32))
    assert (first["result"]["slurmJobId"], other["result"]["slurmJobId"]) == ("100", "200")
    assert first["result"]["jobDirectory"] != other["result"]["jobDirectory"]
    assert len(slurm.calls("sbatch")) == 2


def test_a_submit_retried_after_a_crash_finds_the_job_by_its_comment(files, slurm, job_id, user):
    """sbatch succeeded but the program died before writing its marker: squeue still knows the job."""
    comments = f"554|slurm-job-api:{job_id}:{'f' * 32}\n555|slurm-job-api:{job_id}:{SUBMISSION}\n556|(null)\n"
    slurm.set({"squeue": [{"stdout": comments}], "sbatch": [{"stdout": "999\n"}]})
    reply, _ = run_program(submit_request(files, slurm, job_id))
    assert reply["result"] == {
        "slurmJobId": "555",
        "alreadySubmitted": True,
        "jobDirectory": str(job_dir(user, job_id)),
    }
    assert slurm.calls("sbatch") == []
    assert slurm.calls("squeue")[0]["argv"] == [
        "--noheader",
        "--states=all",
        f"--user={user.pw_name}",
        "--format=%F|%k",
    ]


@pytest.mark.parametrize(
    ("stderr", "error_type", "retryable"),
    [
        ("sbatch: error: invalid partition specified: nope\n", "SbatchRejected", False),
        (
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n",
            "SlurmControllerUnavailable",
            True,
        ),
    ],
)
def test_sbatch_failures_are_classified(files, slurm, job_id, stderr, error_type, retryable):
    slurm.set({"sbatch": [{"rc": 1, "stderr": stderr}]})
    reply, done = run_program(submit_request(files, slurm, job_id))
    assert not reply["ok"] and done.returncode == 2
    assert reply["error"] == {"type": error_type, "message": stderr.strip(), "retryable": retryable}


@pytest.mark.parametrize(
    "options",
    [
        ["--output=/etc/passwd"],
        ["--uid=0"],
        ["--wrap=id"],
        ["--job-name"],
        ["-p", "debug"],
        ["--partition=a\nb"],
        "--partition=x",
        ["--exclusive=user"],  # a flag takes no value
        ["--no-requeue=1"],
        ["--requeue\n"],
        ["--exclusive\x00"],
        ["--nice"],  # an option with a value needs one
        ["--gres"],
        ["--exclusive", "--wrap=id"],
        ["--overcommit"],
    ],
)
def test_options_outside_the_allow_list_are_refused(files, slurm, job_id, options):
    reply, _ = run_program(submit_request(files, slurm, job_id, sbatchOptions=options))
    assert reply["error"]["type"] == "BadRequest"
    assert slurm.calls("sbatch") == []


def test_flags_and_the_new_options_reach_sbatch_as_given(files, slurm, job_id):
    options = ["--job-name=x", "--gres=gpu:a100:2,shard:1", "--constraint=[a*2&b]", "--exclusive", "--no-requeue"]
    options += ["--nice=-5", "--begin=now+1hour", "--mem-per-cpu=100M", "--licenses=matlab:2,ansys", "--requeue"]
    slurm.set({"sbatch": [{"stdout": "4243\n"}]})
    reply, _ = run_program(submit_request(files, slurm, job_id, sbatchOptions=options))
    assert reply["result"]["slurmJobId"] == "4243"
    assert slurm.calls("sbatch")[0]["argv"][-len(options) :] == options


def test_script_download_failure_is_retryable(files, slurm, job_id):
    reply, _ = run_program(submit_request(files, slurm, job_id, scriptUrl=files.url("/missing")))
    assert reply["error"]["type"] == "ScriptFetchFailed" and reply["error"]["retryable"] is True


def test_never_runs_jobs_as_root(files, slurm, job_id):
    reply, _ = run_program(submit_request(files, slurm, job_id), cluster_user="root")
    assert reply["error"]["type"] == "ClusterUserInvalid" and "root" in reply["error"]["message"]
    assert slurm.calls() == []


def test_unknown_cluster_user_is_a_clear_error(files, slurm, job_id):
    reply, _ = run_program(submit_request(files, slurm, job_id), cluster_user="no-such-user-here")
    assert reply["error"]["type"] == "ClusterUserInvalid" and "does not exist" in reply["error"]["message"]


def test_system_and_service_accounts_are_refused_whatever_the_lambda_sent(files, slurm, job_id):
    for name in ("daemon", "munge", "nobody"):
        reply, _ = run_program(submit_request(files, slurm, job_id), cluster_user=name)
        assert reply["error"]["type"] == "ClusterUserInvalid", (name, reply)
    assert slurm.calls() == []


def system_account_off_the_deny_list() -> str:
    """An account below the minimum uid that the deny-list does not name (Debian's _apt, uid 42, at least)."""
    names = [user.pw_name for user in pwd.getpwall() if 0 < user.pw_uid < MIN_CLUSTER_UID]
    names = [name for name in names if name not in DENIED_CLUSTER_USERS and USER_NAME_RE.match(name)]
    assert names, "this machine has no system account off the deny-list to try"
    return sorted(names)[0]


def test_a_uid_below_the_minimum_is_refused_even_off_the_deny_list(files, slurm, job_id):
    name = system_account_off_the_deny_list()
    reply, _ = run_program(submit_request(files, slurm, job_id), cluster_user=name)
    assert reply["error"]["type"] == "ClusterUserInvalid" and "below the minimum 1000" in reply["error"]["message"]
    assert slurm.calls() == []


def write_policy(path: Path, policy: object, mode: int = 0o644) -> Path:
    path.write_text(json.dumps(policy))
    path.chmod(mode)
    return path


def test_the_policy_file_tightens_the_minimum_and_the_deny_list(files, slurm, job_id, user, tmp_path):
    strict = write_policy(tmp_path / "strict.json", {"minUid": user.pw_uid + 1})
    reply, _ = run_program(submit_request(files, slurm, job_id), env={POLICY_FILE_VARIABLE: str(strict)})
    assert reply["error"]["type"] == "ClusterUserInvalid" and f"below the minimum {user.pw_uid + 1}" in str(reply)
    denied = write_policy(tmp_path / "denied.json", {"deniedUsers": [user.pw_name]})
    reply, _ = run_program(submit_request(files, slurm, job_id), env={POLICY_FILE_VARIABLE: str(denied)})
    assert reply["error"]["type"] == "ClusterUserInvalid" and "service account" in reply["error"]["message"]
    assert slurm.calls() == []


def test_the_policy_file_never_loosens_ours(tmp_path):
    loose = write_policy(tmp_path / "loose.json", {"minUid": 0, "deniedUsers": []})
    assert cluster_user_policy(str(loose)) == (MIN_CLUSTER_UID, DENIED_CLUSTER_USERS)
    assert cluster_user_policy(str(tmp_path / "absent.json")) == (MIN_CLUSTER_UID, DENIED_CLUSTER_USERS)


@pytest.mark.parametrize(
    ("policy", "mode", "owner"),
    [
        ({"minUid": 5000}, 0o666, 0),  # others may write it
        ({"minUid": 5000}, 0o664, 0),  # its group may write it
        ({"minUid": 5000}, 0o644, 1),  # not root's
        (["minUid"], 0o644, 0),
        ({"minUid": "5000"}, 0o644, 0),
        ({"deniedUsers": "alice"}, 0o644, 0),
    ],
)
def test_a_policy_file_that_cannot_be_trusted_is_a_setup_error(tmp_path, policy, mode, owner):
    path = write_policy(tmp_path / "policy.json", policy, mode)
    os.chown(path, owner, 0)
    with pytest.raises(HeadNodeSetupError):
        cluster_user_policy(str(path))


def test_a_policy_file_that_is_a_symlink_is_not_followed(tmp_path):
    target = write_policy(tmp_path / "target.json", {"minUid": 5000})
    (tmp_path / "link.json").symlink_to(target)
    with pytest.raises(HeadNodeSetupError):
        cluster_user_policy(str(tmp_path / "link.json"))


def test_missing_slurm_binaries_are_a_setup_error(files, job_id, tmp_path):
    reply, _ = run_program({"action": "status", "slurmBinDir": str(tmp_path / "opt/slurm/bin"), "slurmJobId": "5"})
    assert reply["error"]["type"] == "HeadNodeSetupError" and "opt/slurm/bin/scontrol" in reply["error"]["message"]


CONFIG = "MinJobAge               = 300 sec\nAccountingStorageType   = accounting_storage/{}\n"


def status_of(slurm, **answers) -> dict:
    slurm.set(answers)
    reply, _ = run_program({"action": "status", "slurmBinDir": str(slurm.bin_dir), "slurmJobId": "31"})
    assert reply["ok"], reply
    return reply["result"]


def test_status_of_a_running_job_comes_from_squeue(slurm):
    result = status_of(
        slurm,
        **{"scontrol-config": [{"stdout": CONFIG.format("none")}]},
        squeue=[{"stdout": "31|31|N/A|RUNNING|None|2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T11:00:01\n"}],
    )
    assert (result["status"], result["source"], result["found"], result["exitCode"]) == (
        "RUNNING",
        "squeue",
        True,
        None,
    )
    assert result["minJobAge"] == 300 and result["accountingAvailable"] is False
    assert slurm.calls("squeue")[0]["argv"] == [
        "--noheader",
        "--array",
        "--states=all",
        "--jobs=31",
        "--format=%i|%A|%K|%T|%r|%V|%S|%e",
    ]


def test_finished_job_takes_its_exit_code_from_sacct_when_accounting_works(slurm):
    result = status_of(
        slurm,
        **{"scontrol-config": [{"stdout": CONFIG.format("slurmdbd")}]},
        squeue=[{"rc": 1, "stderr": "slurm_load_jobs error: Invalid job id specified\n"}],
        sacct=[{"stdout": "31|31|FAILED|3:0|None|2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T10:00:09\n"}],
    )
    assert (result["status"], result["source"], result["exitCode"]) == ("FAILED", "sacct", 3)


def test_finished_job_without_accounting_comes_from_scontrol(slurm):
    line = "JobId=31 JobName=x JobState=CANCELLED Reason=None ExitCode=0:15 SubmitTime=2026-11-25T10:00:00 "
    result = status_of(
        slurm,
        **{"scontrol-config": [{"stdout": CONFIG.format("none")}]},
        scontrol=[{"stdout": line + "StartTime=2026-11-25T10:00:01\n"}],
        squeue=[{"stdout": "31|31|N/A|CANCELLED|None|2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T10:00:05\n"}],
    )
    assert (result["status"], result["source"], result["signal"]) == ("CANCELLED", "scontrol", 15)


def test_job_unknown_everywhere_is_reported_not_found(slurm):
    invalid = {"rc": 1, "stderr": "slurm_load_jobs error: Invalid job id specified\n"}
    result = status_of(
        slurm, scontrol=[invalid], squeue=[invalid], **{"scontrol-config": [{"stdout": CONFIG.format("none")}]}
    )
    assert result["found"] is False and result["source"] == "none" and "status" not in result


def test_status_replies_carry_exactly_the_declared_fields(slurm):
    """The program's real replies, found and not found, against its own declaration and the Lambda's reply type."""
    found = status_of(
        slurm,
        **{"scontrol-config": [{"stdout": CONFIG.format("none")}]},
        squeue=[{"stdout": "31|31|N/A|RUNNING|None|2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T11:00:01\n"}],
    )
    assert set(found) == set(REPLY_FIELDS["status"])
    invalid = {"rc": 1, "stderr": "slurm_load_jobs error: Invalid job id specified\n"}
    missing = status_of(
        slurm, scontrol=[invalid], squeue=[invalid], **{"scontrol-config": [{"stdout": CONFIG.format("none")}]}
    )
    assert set(missing) == set(REPLY_FIELDS["status"]) - set(SUMMARY_FIELDS)
    assert StatusReply.model_validate(found).found and not StatusReply.model_validate(missing).found


def test_controller_down_during_status_is_retryable(slurm):
    slurm.set(
        {"scontrol-config": [{"rc": 1, "stderr": "slurm_load_ctl_conf error: Unable to contact slurm controller"}]}
    )
    reply, _ = run_program({"action": "status", "slurmBinDir": str(slurm.bin_dir), "slurmJobId": "31"})
    assert reply["error"]["type"] == "SlurmControllerUnavailable" and reply["error"]["retryable"] is True


def test_cancel_runs_scancel_on_the_job(slurm):
    reply, _ = run_program({"action": "cancel", "slurmBinDir": str(slurm.bin_dir), "slurmJobId": "31"})
    assert reply["result"] == {"slurmJobId": "31", "requested": True}
    assert [call["argv"] for call in slurm.calls("scancel")] == [["31"]]


@pytest.mark.parametrize("slurm_job_id", ["31;id", "-1", "31 32", "abc"])
def test_malformed_slurm_job_ids_are_refused(slurm, slurm_job_id):
    reply, _ = run_program({"action": "cancel", "slurmBinDir": str(slurm.bin_dir), "slurmJobId": slurm_job_id})
    assert reply["error"]["type"] == "BadRequest"
    assert slurm.calls() == []


def test_collect_uploads_outputs_and_refuses_escapes(files, slurm, job_id, user):
    slurm.set({"sbatch": [{"stdout": "8\n"}]})
    run_program(submit_request(files, slurm, job_id))
    directory = job_dir(user, job_id)
    (directory / "slurm-stdout").write_text("hello\n")
    (directory / "results").mkdir()
    (directory / "results" / "a.txt").write_text("A" * 1000)
    (directory / "escape").symlink_to("/etc/shadow")
    for path in (directory / "slurm-stdout", directory / "results", directory / "results" / "a.txt"):
        os.chown(path, user.pw_uid, user.pw_gid)
    uploads = [
        {"name": "stdout", "source": "stdout", "taskId": None, "path": None, "url": files.url(f"/{job_id}/stdout")},
        {"name": "stderr", "source": "stderr", "taskId": None, "path": None, "url": files.url(f"/{job_id}/stderr")},
        {
            "name": "outputs/results/a.txt",
            "source": "output",
            "path": "results/a.txt",
            "url": files.url(f"/{job_id}/a"),
        },
        {"name": "outputs/escape", "source": "output", "path": "escape", "url": files.url(f"/{job_id}/escape")},
        {"name": "outputs/up", "source": "output", "path": "../../../../etc/passwd", "url": files.url(f"/{job_id}/up")},
        # Nothing can be found by these names: under a regular file, and longer than the system resolves (PATH_MAX).
        {"name": "outputs/under-a-file", "source": "output", "path": "results/a.txt/b", "url": files.url("/x")},
        {"name": "outputs/long", "source": "output", "path": "n/" * 2100 + "n", "url": files.url("/y")},
    ]
    reply, _ = run_program(
        {
            "action": "collect",
            "slurmBinDir": str(slurm.bin_dir),
            "jobId": job_id,
            "submissionId": SUBMISSION,
            "slurmJobId": "8",
            "uploads": uploads,
        }
    )
    by_name = {item["name"]: item for item in reply["result"]["files"]}
    assert by_name["stdout"]["status"] == "uploaded" and files.objects[f"/{job_id}/stdout"] == b"hello\n"
    assert by_name["stderr"]["status"] == "missing"
    assert by_name["outputs/under-a-file"]["status"] == by_name["outputs/long"]["status"] == "missing"
    assert by_name["outputs/results/a.txt"] == {
        "name": "outputs/results/a.txt",
        "status": "uploaded",
        "bytes": 1000,
        "message": None,
    }
    assert by_name["outputs/escape"]["status"] == "error" and by_name["outputs/up"]["status"] == "error"
    assert f"/{job_id}/escape" not in files.puts and f"/{job_id}/up" not in files.puts


def test_requests_that_are_not_base64_json_are_refused():
    shared = Path(__file__).resolve().parents[2] / "functions" / "shared"
    done = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            f"import io, sys; sys.path.insert(0, {str(shared)!r}); from slurm_job_api import head_node_program as p;"
            "sys.exit(p.main(stdin=io.StringIO('not base64!\\n')))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    reply = json.loads(done.stdout)
    assert done.returncode == 2 and reply["error"]["type"] == "BadRequest" and "base64" in reply["error"]["message"]


# -- sweep: the status of many jobs from a few queries ---------------------------------------------------------------

# Slurm stand-ins that answer from a table of jobs, for any --jobs list, the way Slurm 22.05 was seen to answer:
# squeue asked about one job it does not know fails (rc 1, "Invalid job id specified") and lists an array's tasks in
# another order than when asked about many, where it leaves out the ids it does not know; sacct leaves them out always.
_TABLE_SCRIPT = r"""#!/usr/bin/python3
import fcntl, json, os, re, sys
here = os.path.dirname(os.path.abspath(__file__))
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
if tool == "scontrol" and "config" in args:
    tool = "scontrol-config"
with open(os.path.join(here, "lock"), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(os.path.join(here, "calls.jsonl"), "a") as log:
        log.write(json.dumps({"tool": tool, "argv": args, "uid": os.getuid()}) + "\n")
with open(os.path.join(here, "table.json")) as handle:
    table = json.load(handle)
failure = table.get("fail", {}).get(tool)
if failure:
    sys.stderr.write(failure)
    sys.exit(1)
if tool == "scontrol-config":
    sys.stdout.write(table["config"])
    sys.exit(0)
if tool == "scontrol":
    text = table.get("scontrol", {}).get(args[-1])
    if text is None:
        sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
        sys.exit(1)
    sys.stdout.write(text)
    sys.exit(0)
asked = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--jobs=")][0]
def selected(line):  # by its job's id, or its own (an array task's)
    job, raw = line.split("|")[:2]
    return re.split(r"[_+]", job)[0] in asked or raw in asked
lines = [line for line in table.get(tool, []) if selected(line)]
if tool == "squeue" and len(asked) == 1:
    if not lines:
        sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
        sys.exit(1)
    lines.reverse()
sys.stdout.write("".join(line + "\n" for line in lines))
"""

T0, T1, T2 = "2026-11-25T10:00:00", "2026-11-25T10:00:01", "2026-11-25T10:00:09"


def squeue_record(job: str, raw: str, task: str, state: str, reason: str = "None", end: str = T2) -> str:
    return f"{job}|{raw}|{task}|{state}|{reason}|{T0}|{T1 if state != 'PENDING' else 'N/A'}|{end}"


def sacct_record(job: str, raw: str, state: str, exit_code: str) -> str:
    return f"{job}|{raw}|{state}|{exit_code}|None|{T0}|{T1}|{T2}"


def scontrol_record(raw: str, state: str, exit_code: str, array: tuple[str, str] | None = None) -> str:
    task = f"ArrayJobId={array[0]} ArrayTaskId={array[1]} " if array else ""
    return (
        f"JobId={raw} {task}JobName=x JobState={state} Reason=None ExitCode={exit_code} SubmitTime={T0} "
        f"StartTime={T1} EndTime={T2}\n"
    )


# The jobs of one cluster, each in another state. 40 pends, 41 runs, 42 completed and left the controller (sacct
# only), 43 failed (squeue and sacct), 44 was cancelled and is not in sacct yet (scontrol), 45 is an array of five
# tasks, two done, two running, one pending, 50 an ended array that sacct still shows as one plain job (scontrol
# has its tasks), 60 a job nothing knows (purged, or never there).
MIXED_JOBS = {
    "squeue": [
        squeue_record("40", "40", "N/A", "PENDING", "Priority", "N/A"),
        squeue_record("41", "41", "N/A", "RUNNING", end="NONE"),
        squeue_record("43", "43", "N/A", "FAILED", "NonZeroExitCode"),
        squeue_record("44", "44", "N/A", "CANCELLED"),
        squeue_record("45_1", "46", "1", "COMPLETED"),
        squeue_record("45_2", "47", "2", "COMPLETED"),
        squeue_record("45_3", "48", "3", "RUNNING", end="NONE"),
        squeue_record("45_5", "49", "5", "COMPLETING", end="NONE"),  # the order Slurm lists them in matters
        squeue_record("45_[4]", "45", "4", "PENDING", "JobArrayTaskLimit", "N/A"),
        squeue_record("50_2", "52", "2", "FAILED", "NonZeroExitCode"),
        squeue_record("50_1", "51", "1", "COMPLETED"),
        squeue_record("50_3", "50", "3", "COMPLETED"),
    ],
    "sacct": [
        sacct_record("40", "40", "PENDING", "0:0"),
        sacct_record("42", "42", "COMPLETED", "0:0"),
        sacct_record("43", "43", "FAILED", "3:0"),
        sacct_record("50", "50", "COMPLETED", "0:0"),
    ],
    "scontrol": {
        "44": scontrol_record("44", "CANCELLED", "0:15"),
        "50": "".join(
            scontrol_record(raw, state, code, ("50", task))
            for raw, task, state, code in (("51", "1", "COMPLETED", "0:0"), ("52", "2", "FAILED", "4:0"))
        )
        + scontrol_record("50", "COMPLETED", "0:0", ("50", "3")),
    },
}
MIXED_IDS = ["40", "41", "42", "43", "44", "45", "50", "60"]


class TableSlurm(FakeSlurm):
    """Slurm stand-ins answering from a table of jobs (_TABLE_SCRIPT), recording their calls like FakeSlurm's."""

    def __init__(self, directory: Path, user) -> None:
        super().__init__(directory, user)
        for tool in ("squeue", "sacct", "scontrol"):
            (directory / tool).write_text(_TABLE_SCRIPT)

    def show(self, jobs: dict, *, accounting: bool, fail: dict | None = None) -> None:
        storage = "slurmdbd" if accounting else "none"
        table = {**jobs, "config": CONFIG.format(storage), "fail": fail or {}}
        (self.bin_dir / "table.json").write_text(json.dumps(table))
        (self.bin_dir / "table.json").chmod(0o644)
        (self.bin_dir / "calls.jsonl").unlink(missing_ok=True)


@pytest.fixture
def table_slurm(user):
    with fake_slurm(user, "sjapi-table-slurm-") as fake:
        yield TableSlurm(fake.bin_dir, user)


def sweep_request(slurm: FakeSlurm, files: FileServer, ids: list[str], path: str = "/sweep/report.json") -> dict:
    return {
        "action": "sweep",
        "slurmBinDir": str(slurm.bin_dir),
        "jobs": [{"slurmJobId": slurm_job_id, "isArray": slurm_job_id in ("45", "50")} for slurm_job_id in ids],
        "reportUrl": files.url(path),
    }


def sweep(slurm: FakeSlurm, files: FileServer, ids: list[str]) -> tuple[dict, list[dict]]:
    """The sweep's reply and its report's entries."""
    files.objects.pop("/sweep/report.json", None)
    reply, _ = run_program(sweep_request(slurm, files, ids))
    assert reply["ok"], reply
    report = SweepReport.model_validate_json(files.objects["/sweep/report.json"])
    assert SweepReply.model_validate(reply["result"]).reported == len(report.jobs) == len(ids)
    assert reply["result"]["reportBytes"] == len(files.objects["/sweep/report.json"])
    return reply["result"], json.loads(files.objects["/sweep/report.json"])["jobs"]


def status_answers(slurm: FakeSlurm, ids: list[str]) -> list[dict]:
    """What the status action answers for each job, asked one by one of the same Slurm."""
    answers = []
    for slurm_job_id in ids:
        request = {
            "slurmBinDir": str(slurm.bin_dir),
            "slurmJobId": slurm_job_id,
            "isArray": slurm_job_id in ("45", "50"),
        }
        reply, _ = run_program({"action": "status", **request})
        assert reply["ok"], reply
        answers.append(reply["result"])
    return answers


def job_arguments(slurm: FakeSlurm, tool: str) -> list[str]:
    return [next(a for a in call["argv"] if a.startswith("--jobs=")).split("=", 1)[1] for call in slurm.calls(tool)]


def test_a_sweep_with_accounting_answers_each_job_as_status_does_from_one_squeue_and_one_sacct(table_slurm, files):
    table_slurm.show(MIXED_JOBS, accounting=True)
    result, entries = sweep(table_slurm, files, MIXED_IDS)
    assert job_arguments(table_slurm, "squeue") == [",".join(MIXED_IDS)]
    assert table_slurm.calls("squeue")[0]["argv"] == [
        "--noheader",
        "--array",
        "--states=all",
        "--jobs=" + ",".join(MIXED_IDS),
        "--format=%i|%A|%K|%T|%r|%V|%S|%e",
    ]
    # sacct only for those squeue no longer shows or shows ended; scontrol only where sacct lacks the ended job.
    assert job_arguments(table_slurm, "sacct") == ["42,43,44,50,60"]
    assert [call["argv"] for call in table_slurm.calls("scontrol")] == [
        ["--oneliner", "show", "job", slurm_job_id] for slurm_job_id in ("44", "50", "60")
    ]
    assert result["queries"] == {"squeue": 1, "sacct": 1, "scontrol": 3}
    assert {call["uid"] for call in table_slurm.calls()} == {pwd.getpwnam(cluster_user_name()).pw_uid}
    by_id = {entry["slurmJobId"]: entry for entry in entries}
    assert [entry["slurmJobId"] for entry in entries] == MIXED_IDS
    assert {i: (e["status"] if e["found"] else None, e["source"]) for i, e in by_id.items()} == {
        "40": ("PENDING", "squeue"),
        "41": ("RUNNING", "squeue"),
        "42": ("COMPLETED", "sacct"),
        "43": ("FAILED", "sacct"),
        "44": ("CANCELLED", "scontrol"),
        "45": ("RUNNING", "squeue"),
        "50": ("FAILED", "scontrol"),
        "60": (None, "none"),
    }
    assert by_id["45"]["arrayTaskCounts"] == {"COMPLETED": 2, "RUNNING": 2, "PENDING": 1}
    assert by_id["45"]["slurmState"] == "RUNNING"  # the first running task's (Slurm lists them in another order)
    assert (by_id["50"]["exitCode"], by_id["43"]["exitCode"], by_id["44"]["signal"]) == (4, 3, 15)
    assert entries == status_answers(table_slurm, MIXED_IDS)


def test_a_sweep_without_accounting_never_runs_sacct_and_asks_scontrol_about_the_ended_jobs(table_slurm, files):
    table_slurm.show(MIXED_JOBS, accounting=False)
    result, entries = sweep(table_slurm, files, MIXED_IDS)
    assert table_slurm.calls("sacct") == []
    assert [call["argv"][-1] for call in table_slurm.calls("scontrol")] == ["42", "43", "44", "50", "60"]
    assert result["queries"] == {"squeue": 1, "sacct": 0, "scontrol": 5}
    assert [(entry["found"], entry["source"]) for entry in entries][2:5] == [
        (False, "none"),  # 42 left the controller, and there is no accounting
        (True, "squeue"),  # 43: the controller's own terminal state, as status says (scontrol lacks it here)
        (True, "scontrol"),
    ]
    assert entries == status_answers(table_slurm, MIXED_IDS)


def test_a_sweep_of_active_jobs_runs_squeue_alone(table_slurm, files):
    table_slurm.show(MIXED_JOBS, accounting=True)
    result, entries = sweep(table_slurm, files, ["41", "45", "40", "41"])
    assert result["queries"] == {"squeue": 1, "sacct": 0, "scontrol": 0}
    assert job_arguments(table_slurm, "squeue") == ["41,45,40"]  # each job asked once, every entry reported
    assert [entry["slurmJobId"] for entry in entries] == ["41", "45", "40", "41"]
    assert entries == status_answers(table_slurm, ["41", "45", "40", "41"])


@pytest.mark.parametrize("ids", [["60"], ["45"], ["60", "61"]], ids=["one-unknown", "one-array", "all-unknown"])
def test_a_sweep_of_one_job_or_of_unknown_ones_answers_as_status_does(table_slurm, files, ids):
    """squeue fails for one job it does not know, and leaves out unknown ones among many."""
    table_slurm.show(MIXED_JOBS, accounting=True)
    _, entries = sweep(table_slurm, files, ids)
    assert entries == status_answers(table_slurm, ids)


SLURMDBD_DOWN = "sacct: error: Problem talking to the database: Connection refused\n"


def test_with_accounting_down_a_sweep_answers_from_the_controller_like_status(table_slurm, files):
    table_slurm.show(MIXED_JOBS, accounting=True, fail={"sacct": SLURMDBD_DOWN})
    ids = ["41", "43", "44", "45", "50"]  # all known to the controller
    result, entries = sweep(table_slurm, files, ids)
    assert result["queries"] == {"squeue": 1, "sacct": 1, "scontrol": 3}
    assert entries == status_answers(table_slurm, ids)


def test_with_accounting_down_a_job_nothing_else_knows_fails_the_sweep_retryably(table_slurm, files):
    table_slurm.show(MIXED_JOBS, accounting=True, fail={"sacct": SLURMDBD_DOWN})
    reply, done = run_program(sweep_request(table_slurm, files, ["41", "42", "44"], "/sweep/down.json"))
    assert done.returncode == 2 and reply["error"]["type"] == "SlurmAccountingUnavailable"
    assert reply["error"]["retryable"] is True and "job 42" in reply["error"]["message"]
    assert "/sweep/down.json" not in files.puts


def test_controller_down_during_a_sweep_is_retryable(table_slurm, files):
    down = "squeue: error: slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
    table_slurm.show(MIXED_JOBS, accounting=True, fail={"squeue": down})
    reply, _ = run_program(sweep_request(table_slurm, files, MIXED_IDS, "/sweep/ctld.json"))
    assert reply["error"]["type"] == "SlurmControllerUnavailable" and reply["error"]["retryable"] is True
    assert table_slurm.calls("sacct") == [] and "/sweep/ctld.json" not in files.puts


def test_a_report_that_cannot_be_uploaded_fails_the_sweep_retryably(table_slurm, files):
    table_slurm.show(MIXED_JOBS, accounting=True)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}/report.json"  # nothing listens there
        reply, _ = run_program({**sweep_request(table_slurm, files, ["41"]), "reportUrl": closed})
    assert reply["error"]["type"] == "ScriptFetchFailed" and reply["error"]["retryable"] is True
    assert reply["error"]["message"].startswith("uploading the sweep report failed")


@pytest.mark.parametrize(
    "change",
    [
        {"jobs": []},
        {"jobs": None},
        {"jobs": "41"},
        {"jobs": [{"slurmJobId": str(n)} for n in range(1, MAX_SWEEP_JOBS + 2)]},
        {"jobs": [{"slurmJobId": "41"}, {"slurmJobId": "41;id"}]},
        {"jobs": [{"slurmJobId": "41"}, {"slurmJobId": 42}]},
        {"jobs": [{"slurmJobId": "41"}, "42"]},
        {"jobs": [{"isArray": True}]},
        {"reportUrl": "file:///etc/passwd"},
        {"reportUrl": None},
    ],
    ids=["empty", "null", "string", "too-many", "bad-id", "number-id", "not-an-object", "no-id", "file-url", "no-url"],
)
def test_bad_sweep_requests_are_refused_before_anything_runs(table_slurm, files, change):
    table_slurm.show(MIXED_JOBS, accounting=True)
    reply, done = run_program({**sweep_request(table_slurm, files, ["41"], "/sweep/bad.json"), **change})
    assert done.returncode == 2 and reply["error"]["type"] == "BadRequest", reply
    assert table_slurm.calls() == [] and "/sweep/bad.json" not in files.puts


def test_the_largest_sweep_is_accepted(table_slurm, files):
    ids = [str(n) for n in range(1000, 1000 + MAX_SWEEP_JOBS)]
    table_slurm.show({"sacct": [sacct_record(n, n, "COMPLETED", "0:0") for n in ids]}, accounting=True)
    result, entries = sweep(table_slurm, files, ids)
    assert result["queries"] == {"squeue": 1, "sacct": 1, "scontrol": 0}
    assert all(entry["status"] == "COMPLETED" and entry["source"] == "sacct" for entry in entries)
    print(f"a sweep of {len(ids)} ended jobs: a report of {result['reportBytes']} bytes")


# -- read-output: a page of a job's stream while it runs --------------------------------------------------------------

STREAM = bytes(range(256)) * 40 + "é漢🙂\n".encode()  # 10,251 bytes, every byte value and multibyte UTF-8


def read_request(slurm: FakeSlurm, job_id: str, **fields) -> dict:
    return {
        "action": "read-output",
        "slurmBinDir": str(slurm.bin_dir),
        "jobId": job_id,
        "submissionId": SUBMISSION,
        "stream": "stdout",
        "offset": 0,
        "limit": READ_OUTPUT_MAX_BYTES,
        **fields,
    }


def read(slurm: FakeSlurm, job_id: str, **fields) -> tuple[dict, bytes]:
    """(result, the page's bytes) of a read-output request that succeeds."""
    reply, _ = run_program(read_request(slurm, job_id, **fields))
    assert reply["ok"], reply
    result = reply["result"]
    assert set(result) == set(REPLY_FIELDS["read-output"])
    return result, base64.b64decode(result["data"], validate=True)


def users_file(user, path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


@pytest.fixture
def job_with_streams(files, slurm, job_id, user) -> Path:
    """A submitted job's directory holding STREAM as its stdout (and as task 3's stdout)."""
    slurm.set({"sbatch": [{"stdout": "8\n"}]})
    assert run_program(submit_request(files, slurm, job_id))[0]["ok"]
    directory = job_dir(user, job_id)
    users_file(user, directory / "slurm-stdout", STREAM)
    users_file(user, directory / "slurm-stdout.3", b"task three\n")
    return directory


@pytest.mark.parametrize(
    ("offset", "limit"),
    [(0, 100), (0, READ_OUTPUT_MAX_BYTES), (5000, 1000), (len(STREAM) - 7, 100), (len(STREAM), 10), (10**12, 10)],
    ids=["start", "all", "middle", "end", "at-the-end", "past-the-end"],
)
def test_read_output_answers_the_bytes_from_offset_and_the_size(slurm, job_id, job_with_streams, offset, limit):
    result, data = read(slurm, job_id, offset=offset, limit=limit)
    assert result["found"] is True and result["size"] == len(STREAM) and result["offset"] == offset
    assert data == STREAM[offset : offset + limit]
    assert len(data) <= limit


def test_read_output_pages_reassemble_the_stream_and_reach_task_streams(slurm, job_id, job_with_streams):
    pages, offset = [], 0
    while offset < len(STREAM):
        data = read(slurm, job_id, offset=offset, limit=4096)[1]
        pages.append(data)
        offset += len(data)
    assert b"".join(pages) == STREAM and len(pages) == 3
    assert read(slurm, job_id, taskId=3)[1] == b"task three\n"


def test_read_output_of_a_missing_stream_or_job_directory_finds_nothing(slurm, job_id, job_with_streams):
    assert read(slurm, job_id, stream="stderr") == ({"found": False, "size": 0, "offset": 0, "data": ""}, b"")
    assert read(slurm, job_id, taskId=4)[0]["found"] is False
    assert read(slurm, job_id, submissionId="f" * 32)[0]["found"] is False
    assert read(slurm, str(uuid.uuid4()))[0]["found"] is False


def test_read_output_never_follows_a_symlinked_stream_or_job_directory(slurm, job_id, job_with_streams, user):
    secret = users_file(user, job_with_streams / "secret", b"not this job's output\n")
    (job_with_streams / "slurm-stderr").symlink_to(secret)
    os.mkfifo(job_with_streams / "slurm-stdout.5")  # a FIFO is no stream, and reading it must not wait for a writer
    os.chown(job_with_streams / "slurm-stdout.5", user.pw_uid, user.pw_gid)
    assert read(slurm, job_id, stream="stderr")[0] == {"found": False, "size": 0, "offset": 0, "data": ""}
    assert read(slurm, job_id, taskId=5)[0]["found"] is False
    # The submission's directory swapped for a symlink to another directory that holds a slurm-stdout.
    elsewhere = job_with_streams.parent / "elsewhere"
    job_with_streams.rename(elsewhere)
    job_with_streams.symlink_to(elsewhere)
    os.lchown(job_with_streams, user.pw_uid, user.pw_gid)
    assert read(slurm, job_id)[0] == {"found": False, "size": 0, "offset": 0, "data": ""}


@pytest.mark.parametrize(
    "change",
    [
        {"limit": 0},
        {"limit": READ_OUTPUT_MAX_BYTES + 1},
        {"limit": None},
        {"limit": True},
        {"offset": -1},
        {"offset": 2**63},
        {"offset": "0"},
        {"offset": 1.0},
        {"stream": "stdin"},
        {"stream": "../slurm-stdout"},
        {"stream": None},
        {"taskId": -1},
        {"taskId": "3"},
        {"taskId": False},
        {"submissionId": "../../x"},
        {"jobId": "../etc"},
    ],
    ids=lambda change: "-".join(f"{key}={value!r}" for key, value in change.items()),
)
def test_bad_read_output_requests_are_refused(slurm, job_id, job_with_streams, change):
    reply, done = run_program(read_request(slurm, job_id, **change))
    assert done.returncode == 2 and reply["error"]["type"] == "BadRequest", reply
    assert "result" not in reply
