"""What the command line shows: ``watch`` redraws its block in place on a terminal and prints a line per change
elsewhere; ``list`` is a table; ``submit --wait`` and ``watch`` exit as the job did."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from slurm_job_client import cli
from slurm_job_client.display import DownloadProgress, StatusBoard, duration, status_lines, table
from tests.client.fake_api import Reply

JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"
NOW = datetime(2026, 11, 25, 12, 1, 30, tzinfo=UTC)


def view(status: str, execution: str = "RUNNING", **fields) -> dict:
    return {"jobId": JOB, "status": status, "execution": {"status": execution}, **fields}


def test_the_status_block():
    running = view(
        "RUNNING",
        name="hello",
        slurmJobId="42",
        slurmState="RUNNING",
        startedAt="2026-11-25T12:00:00Z",
        arrayTaskCounts={"RUNNING": 2, "COMPLETED": 3, "PENDING": 0},
    )
    assert status_lines(running, NOW) == [
        f"job      {JOB} (hello)",
        "status   RUNNING, Slurm job 42",
        "reason   -",
        "elapsed  00:01:30",
        "tasks    COMPLETED 3, RUNNING 2",
    ]
    ended = view("FAILED", "FAILED", startedAt="2026-11-25T12:00:00.250Z", endedAt="2026-11-25T12:00:09Z",
                  exitCode=3, cause="Slurm job 42 failed\nwith exit code 3")  # fmt: skip
    assert status_lines(ended, NOW)[3:] == [
        "elapsed  00:00:08",
        "exit     3",
        "cause    Slurm job 42 failed with exit code 3",
    ]


def test_on_a_terminal_the_block_is_redrawn_in_place():
    out = io.StringIO()
    board = StatusBoard(out, terminal=True)
    board.show(view("PENDING", reason="Resources"), NOW)
    first = out.getvalue()
    board.show(view("RUNNING", startedAt="2026-11-25T12:01:00Z"), NOW)
    second = out.getvalue()[len(first) :]
    assert "\x1b[" not in first.split("\x1b[2K", 1)[0]  # the first block is drawn where the cursor is
    assert second.startswith("\x1b[4F")  # back up over the 4 lines drawn, then each line erased and drawn again
    assert second.count("\x1b[2K") == 4 and second.endswith("\x1b[J") and "elapsed  00:00:30" in second


def test_elsewhere_a_line_per_change():
    out = io.StringIO()
    board = StatusBoard(out, terminal=False)
    for item in [view("PENDING", reason="Priority"), view("PENDING", reason="Priority"), view("RUNNING"),
                 view("RUNNING"), view("COMPLETED", "SUCCEEDED", exitCode=0)]:  # fmt: skip
        board.show(item, NOW)
    assert out.getvalue().splitlines() == [
        f"{JOB} PENDING reason Priority elapsed -",
        f"{JOB} RUNNING elapsed -",
        f"{JOB} COMPLETED elapsed - exit 0",
    ]
    assert "\x1b" not in out.getvalue()


def test_durations():
    assert duration(0) == "00:00:00" and duration(3661) == "01:01:01" and duration(90061) == "1-01:01:01"


def test_table():
    rows = [{"jobId": "a", "status": "RUNNING"}, {"jobId": "bbbb", "status": None}]
    assert table(rows, [("jobId", "JOB ID"), ("status", "STATUS")]) == "JOB ID  STATUS\na       RUNNING\nbbbb    -"


def test_download_progress_only_for_large_files_on_a_terminal():
    out = io.StringIO()
    progress = DownloadProgress(out, terminal=True, threshold=1000)
    progress("small", 10, 10)
    progress("big", 512, 2048)
    progress("big", 2048, 2048)
    assert out.getvalue() == "\r\x1b[2Kbig  512 B of 2.0 KiB  25%\r\x1b[2Kbig  2.0 KiB of 2.0 KiB 100%\n"
    quiet = io.StringIO()
    DownloadProgress(quiet, terminal=False, threshold=0)("big", 5, 5)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize(
    ("final", "code"),
    [
        (view("COMPLETED", "SUCCEEDED", exitCode=0), 0),
        (view("FAILED", "FAILED", exitCode=3), 3),
        (view("FAILED", "FAILED", exitCode=None), 1),
        (view("CANCELLED", "ABORTED", exitCode=0, signal=15), 143),
        (view("TIMEOUT", "FAILED", exitCode=0), 1),
        (view("SUBMIT_FAILED", "FAILED"), 1),
        (view("OUT_OF_MEMORY", "FAILED", exitCode=0, signal=9), 137),
    ],
)
def test_watch_exits_as_the_job_did(fake_api, capsys, final, code):
    fake_api.plan("GET", f"/v1/jobs/{JOB}", Reply(200, view("RUNNING")), Reply(200, final))
    assert cli.main(["--api-url", fake_api.url, "watch", JOB, "--poll", "0"]) == code
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{JOB} RUNNING") and lines[-1].startswith(f"{JOB} {final['status']}")


def test_submit_wait_exits_with_the_jobs_exit_code(fake_api, tmp_path, capsys):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/bash\nexit 3\n")
    fake_api.route("GET", f"/v1/jobs/{JOB}", Reply(200, view("FAILED", "FAILED", exitCode=3)))
    fake_api.jobs_by_key["k"] = JOB
    assert cli.main(["--api-url", fake_api.url, "submit", "--wait", "--idempotency-key", "k", str(script)]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [
        f"Submitted job {JOB}",
        f"{JOB} FAILED elapsed - exit 3",
    ]


def test_list_prints_a_table(fake_api, capsys):
    jobs = [{"jobId": JOB, "name": "hello", "status": "RUNNING", "slurmJobId": "42", "createdAt": "2026-11-25T12:00Z"}]
    fake_api.route("GET", "/v1/jobs", Reply(200, {"jobs": jobs, "nextToken": None}))
    assert cli.main(["--api-url", fake_api.url, "list", "--status", "RUNNING", "--limit", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "JOB ID                                NAME   STATUS   SLURM  EXIT  CREATED            REASON",
        f"{JOB}  hello  RUNNING  42     -     2026-11-25T12:00Z  -",
    ]
    assert fake_api.to("GET", "/v1/jobs")[0].query == {"status": "RUNNING", "limit": "5"}


def test_cancel_several_reports_each(fake_api, capsys):
    other = "1c7a2d0f-4a8b-4d2f-8b64-3b907a3c0e21"
    fake_api.route("DELETE", f"/v1/jobs/{JOB}", Reply(202, {"jobId": JOB, "slurmCancelSent": True}))
    fake_api.route("DELETE", f"/v1/jobs/{other}", Reply(404, {"code": "JobNotFound", "message": "no such job"}))
    assert cli.main(["--api-url", fake_api.url, "cancel", JOB, other]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"cancel requested: {JOB} (scancel sent)\n"
    assert captured.err == f"sja: error: no such job {other} (404)\n"


def test_connection_options_go_after_the_command_too(fake_api, capsys):
    fake_api.route("GET", f"/v1/jobs/{JOB}", Reply(200, view("PENDING", reason="Priority")))
    assert cli.main(["status", JOB, "--api-url", fake_api.url, "--region", "us-west-2"]) == 0
    assert capsys.readouterr().out.splitlines()[1:3] == ["status   PENDING", "reason   Priority"]
    assert "/us-west-2/execute-api/" in fake_api.to("GET", f"/v1/jobs/{JOB}")[0].headers["authorization"]
