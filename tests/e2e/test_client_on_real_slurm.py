"""The command-line client ``sja`` (the installed console script, run as a subprocess) and its Python API against
the local stack, with real Slurm behind it, signed with the local developer's credentials as a user's would be.

``submit --wait`` exits as the job did (0 and 3), ``download`` saves every collected file byte for byte, ``cancel``
ends a running job, ``list`` shows the jobs, an unknown job and a bad option are one-line errors, a script over the
inline limit travels through POST /inputs, ``watch`` under a pseudo-terminal redraws its block in place, and
``logs --follow`` prints a running job's lines before it ends.
"""

from __future__ import annotations

import base64
import collections
import errno
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from local_stack.__main__ import CURL_EXAMPLES
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_UNMAPPED
from slurm_job_client import Client
from slurm_job_client.client import INLINE_SCRIPT_BYTES

SJA = shutil.which("sja", path=str(Path(sys.executable).parent)) or "sja"
# The job writes outputs of awkward names and bytes (not UTF-8), and a line on each stream.
OUTPUTS = {"results/summary.csv": b"a,b\n1,2\n", "bin.dat": bytes(range(256)) * 4, "文件 1.txt": "内容\n".encode()}
WRITE_OUTPUTS = "#!/bin/bash\necho hello from sja\necho to-stderr >&2\nmkdir -p results\n" + "".join(
    f"echo {base64.b64encode(data).decode()} | base64 -d > '{name}'\n" for name, data in OUTPUTS.items()
)


@pytest.fixture(scope="module")
def environment(cloud) -> dict[str, str]:
    """The environment of a user of the local API: its URL, the local developer's keys and region, nothing else."""
    keep = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "TERM")}
    return {
        **keep,
        "SJA_API_URL": cloud.api_url,
        "AWS_ACCESS_KEY_ID": LOCAL_DEVELOPER.access_key_id,
        "AWS_SECRET_ACCESS_KEY": LOCAL_DEVELOPER.secret_access_key,
        "AWS_REGION": cloud.region,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def sja(environment, *argv: str, timeout: float = 180, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SJA, *argv], env=environment, capture_output=True, text=True, timeout=timeout, check=False, **options
    )


def start(environment, *argv: str, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [SJA, *argv], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options
    )


def status(environment, job_id: str) -> dict:
    done = sja(environment, "status", job_id, "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for_status(environment, job_id: str, wanted: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while (view := status(environment, job_id))["status"] != wanted:
        assert time.monotonic() < deadline, view
        time.sleep(0.5)
    return view


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("scripts")
    for name, text in {
        "outputs.sh": WRITE_OUTPUTS,
        "exit3.sh": "#!/bin/bash\necho about to fail\nexit 3\n",
        "long.sh": "#!/bin/bash\necho started\nsleep 300\n",
        "lines.sh": "#!/bin/bash\necho line-1\nsleep 25\necho line-2\n",
    }.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture(scope="module")
def waited(environment, scripts) -> dict[str, subprocess.CompletedProcess]:
    """`sja submit --wait --json` of a job that exits 0 (writing outputs) and of one that exits 3, side by side."""
    outputs = [argument for name in OUTPUTS for argument in ("--output-file", name)]
    running = {
        "completes": start(environment, "submit", "--wait", "--json", "-J", "sja-ok", *outputs, scripts / "outputs.sh"),
        "exits 3": start(environment, "submit", "--wait", "--json", "-t", "0:30", scripts / "exit3.sh"),
    }
    return {name: subprocess.CompletedProcess(p.args, p.wait(180), *p.communicate()) for name, p in running.items()}


def test_submit_wait_exits_0_for_a_job_that_completes(waited):
    done = waited["completes"]
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert (view["status"], view["exitCode"], view["name"]) == ("COMPLETED", 0, "sja-ok")
    assert done.stderr.splitlines()[0] == f"Submitted job {view['jobId']}"
    assert done.stderr.splitlines()[-1].startswith(f"{view['jobId']} COMPLETED elapsed ")


def test_submit_wait_exits_3_for_a_job_that_exits_3(waited):
    done = waited["exits 3"]
    assert done.returncode == 3, done.stderr
    view = json.loads(done.stdout)
    assert (view["status"], view["exitCode"], view["spec"]["timeLimitMinutes"]) == ("FAILED", 3, 1)


def test_download_gets_every_file_byte_for_byte(environment, waited, api, tmp_path):
    job_id = json.loads(waited["completes"].stdout)["jobId"]
    done = sja(environment, "download", job_id, str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = {item["name"]: item["url"] for item in api.get(f"/jobs/{job_id}/output").json()["files"]}
    saved = {str(path.relative_to(tmp_path / "out")): path for path in (tmp_path / "out").rglob("*") if path.is_file()}
    assert sorted(saved) == sorted(listed) and {"stdout", "stderr", "result.json"} <= set(saved)
    for name, url in listed.items():
        assert saved[name].read_bytes() == requests.get(url, timeout=30).content, name
    assert saved["stdout"].read_text() == "hello from sja\n" and saved["stderr"].read_text() == "to-stderr\n"
    for name, data in OUTPUTS.items():
        assert saved[f"outputs/{name}"].read_bytes() == data, name
    assert sorted(done.stdout.splitlines()) == sorted(str(path.resolve()) for path in saved.values())


def test_list_shows_the_jobs(environment, waited):
    ids = {json.loads(done.stdout)["jobId"] for done in waited.values()}
    listed = sja(environment, "list", "--json", "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    assert ids <= {job["jobId"] for job in json.loads(listed.stdout)}
    table = sja(environment, "list", "--status", "FAILED")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["JOB", "ID", "NAME", "STATUS", "SLURM", "EXIT", "CREATED", "REASON"]
    assert rows and all(" FAILED " in row for row in rows)
    assert any(row.startswith(json.loads(waited["exits 3"].stdout)["jobId"]) for row in rows)


def screen_of(output: str) -> list[str]:
    """What a terminal shows after ``output``: the text, with CR, LF and the cursor movements sja uses
    (ESC [ n F up n lines, ESC [ 2 K erase the line, ESC [ J erase below) applied. Any other sequence fails."""
    lines, row, column = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9]*[A-Za-z]|[\r\n]|[^\x1b\r\n]+", output):
        if token == "\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        elif token == "\r":
            column = 0
        elif token == "\x1b[2K":
            lines[row] = ""
        elif token == "\x1b[J":
            del lines[row + 1 :]
            lines[row] = lines[row][:column]
        elif (up := re.fullmatch(r"\x1b\[([0-9]+)F", token)) is not None:
            row, column = max(0, row - int(up.group(1))), 0
        else:
            assert not token.startswith("\x1b"), f"a sequence sja does not use: {token!r}"
            lines[row] = lines[row][:column] + token + lines[row][column + len(token) :]
            column += len(token)
    return lines


def run_on_a_terminal(environment, argv: list[str], until: float) -> tuple[int, str]:
    """Runs sja with a pseudo-terminal as its stdout (and stdin, stderr): (exit code, everything it wrote)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([SJA, *argv], env=environment, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    try:
        while time.monotonic() < until:
            ready, _, _ = select.select([controller], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError as error:  # EIO: the terminal's other side was closed (the process ended)
                if error.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            output += chunk
        return process.wait(30), output.decode()
    finally:
        process.kill()
        os.close(controller)


def test_watch_redraws_in_place_and_cancel_ends_the_job(environment, scripts):
    submitted = sja(environment, "submit", "--parsable", "-J", "to-cancel", scripts / "long.sh")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    wait_for_status(environment, job_id, "RUNNING")
    controller_output = {}

    def cancel_later() -> None:
        time.sleep(5)  # watch draws the running job a few times first
        controller_output["cancel"] = sja(environment, "cancel", job_id)

    canceller = threading.Thread(target=cancel_later)
    canceller.start()
    code, output = run_on_a_terminal(environment, ["watch", job_id, "--poll", "1"], until=time.monotonic() + 120)
    canceller.join()
    cancel = controller_output["cancel"]
    assert cancel.returncode == 0 and cancel.stdout == f"cancel requested: {job_id} (scancel sent)\n", cancel.stderr
    assert code != 0  # a job that did not complete
    redraws = re.findall(r"\x1b\[([0-9]+)F", output)
    assert len(redraws) >= 3, output  # drawn, then redrawn at each read
    screen = [line for line in screen_of(output) if line]
    # One block on the screen at the end — the last one — however many times it was drawn.
    assert screen[0] == f"job      {job_id} (to-cancel)", screen
    assert screen[1].startswith("status   CANCELLED") and len(screen) <= 7, screen
    assert sum(line.startswith("job      ") for line in screen) == 1
    assert output.count("status   RUNNING") >= 2  # the running job was redrawn, not scrolled


def test_an_unknown_job_and_a_bad_option_are_one_line_errors(environment, scripts):
    unknown = str(uuid.uuid4())
    done = sja(environment, "status", unknown)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"sja: error: no such job {unknown} (404)\n")
    done = sja(environment, "submit", "--mem", "4X", scripts / "exit3.sh")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "argument --mem: not a memory size" in done.stderr
    # Refused by the API: the field is named.
    done = sja(environment, "submit", "-N", "0", scripts / "exit3.sh")
    assert done.returncode == 1 and done.stderr.startswith("sja: error: invalid request (422): nodes")
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_caller_the_api_does_not_know_is_told_so(environment):
    stranger = {**environment, "AWS_ACCESS_KEY_ID": "AKIANOBODYKNOWSTHIS1"}
    done = sja(stranger, "list")
    assert done.returncode == 1 and done.stderr.startswith("sja: error: not allowed (403): your AWS identity"), done
    assert "The security token included in the request is invalid." in done.stderr and done.stderr.count("\n") == 1


def test_a_caller_nobody_mapped_is_told_so(environment, scripts):
    unmapped = {
        **environment,
        "AWS_ACCESS_KEY_ID": LOCAL_UNMAPPED.access_key_id,
        "AWS_SECRET_ACCESS_KEY": LOCAL_UNMAPPED.secret_access_key,
    }
    done = sja(unmapped, "submit", scripts / "exit3.sh")
    assert done.returncode == 1 and done.stdout == "", done
    assert done.stderr.startswith(
        f"sja: error: not allowed (403): you are not mapped to a cluster user — {LOCAL_UNMAPPED.arn} is not mapped"
    ), done.stderr
    assert "scripts/caller-mappings add" in done.stderr and done.stderr.count("\n") == 1


def test_the_python_api_with_a_script_over_the_inline_limit(cloud, monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", LOCAL_DEVELOPER.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", LOCAL_DEVELOPER.secret_access_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    client = Client(api_url=cloud.api_url, region=cloud.region)
    script = '#!/bin/bash\necho "from python on $(hostname -s)"\n' + "# padding\n" * (INLINE_SCRIPT_BYTES // 10)
    job = client.submit(script, name="python-api", time_limit_minutes=5, environment={"GREETING": "hi"})
    final = job.wait(poll=1, timeout=120)
    assert (final["status"], final["exitCode"]) == ("COMPLETED", 0), final
    assert final["spec"]["scriptS3Key"].startswith("inputs/") and "script" not in final["spec"]
    assert final["spec"]["environmentVariables"] == 1
    saved = {path.name: path for path in job.download(tmp_path)}
    assert saved["stdout"].read_text().startswith("from python on ")
    assert job.job_id in {item["jobId"] for item in client.jobs(status="COMPLETED")}
    assert client.job(job.job_id).status()["status"] == "COMPLETED"


def test_logs_follow_shows_a_running_jobs_lines_before_it_ends(environment, scripts):
    submitted = sja(environment, "submit", "--parsable", scripts / "lines.sh")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    wait_for_status(environment, job_id, "RUNNING")
    follower = start(environment, "logs", job_id, "--follow")
    first = follower.stdout.readline()
    assert first == "line-1\n"
    assert status(environment, job_id)["status"] == "RUNNING"  # seen while the job still runs
    rest, errors = follower.communicate(timeout=120)
    assert follower.returncode == 0, errors
    assert rest == "line-2\n"
    assert status(environment, job_id)["status"] == "COMPLETED"
    done = sja(environment, "logs", job_id)
    assert (done.returncode, done.stdout) == (0, "line-1\nline-2\n")


def test_the_sja_lines_make_serve_prints_work(cloud, environment):
    values = {"url": cloud.api_url, "key": LOCAL_DEVELOPER.access_key_id, "secret": LOCAL_DEVELOPER.secret_access_key}
    printed = CURL_EXAMPLES.format_map(collections.defaultdict(str, values))  # the other fields are for people
    lines = [line.strip() for line in printed.splitlines()]
    export = next(line for line in lines if line.startswith("export SJA_API_URL="))
    submit = next(line for line in lines if "| sja submit" in line)
    shell = {name: value for name, value in environment.items() if not name.startswith(("SJA_", "AWS_"))}
    shell["PATH"] = f"{Path(SJA).parent}{os.pathsep}{shell.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", f"{export}\n{submit}"], env=shell, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("Submitted job ") and " COMPLETED " in done.stderr.splitlines()[-1]
