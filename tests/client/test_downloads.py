"""``download`` saves every listed file (all pages) byte for byte under its own name, and no name — "..", an
absolute path, control characters, a symlink planted in the directory — can make it write outside the directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_job_client import cli
from slurm_job_client.downloads import safe_relative_path, target_path
from tests.client.fake_api import Reply
from tests.security.download_names import DOWNLOAD_NAMES
from tests.support.http_files import FileServer

JOB = "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("stdout", "stdout"),
        ("tasks/3/stderr", "tasks/3/stderr"),
        ("outputs/results/summary.csv", "outputs/results/summary.csv"),
        ("../../etc/passwd", "__/__/etc/passwd"),
        ("/etc/passwd", "_/etc/passwd"),
        ("outputs/./x", "outputs/_/x"),
        ("outputs//x", "outputs/_/x"),
        ("outputs/..", "outputs/__"),
        ("a\x00b\nc\x1b[2J", "a_b_c_[2J"),
        ("back\\slash.txt", "back\\slash.txt"),  # a plain character of a POSIX file name
    ],
)
def test_names_become_paths_inside_the_directory(name, path):
    assert safe_relative_path(name) == Path(path)


@pytest.mark.parametrize("name", DOWNLOAD_NAMES)
def test_names_a_job_may_give_are_kept(name):
    assert safe_relative_path(f"outputs/{name}") == Path("outputs", name)


def test_a_part_too_long_for_a_file_system_is_shortened():
    part = safe_relative_path("é" * 200).name
    assert len(part.encode()) <= 255 and part == "é" * 127


def test_a_planted_symlink_cannot_lead_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    directory = tmp_path / "download"
    (directory / "outputs").mkdir(parents=True)
    os.symlink(outside, directory / "outputs" / "results")
    with pytest.raises(ValueError, match="would be saved outside"):
        target_path(directory, "outputs/results/summary.csv")
    os.symlink(outside / "file", directory / "stdout")
    with pytest.raises(ValueError, match="is a symlink"):
        target_path(directory, "stdout")


def test_download_every_page_byte_for_byte(fake_api, tmp_path, capsys):
    files = FileServer()
    contents = {
        "stdout": b"hello\n",
        "tasks/1/stderr": b"\xff\x00binary",
        "outputs/../../escape": b"kept inside",
        "outputs/\u6587\u4ef6.txt": "文件".encode(),
        "result.json": b"{}",
    }
    listed = [{"name": name, "bytes": len(data), "url": files.url(f"/f{index}")} for index, (name, data) in
              enumerate(contents.items())]  # fmt: skip
    for index, data in enumerate(contents.values()):
        files.objects[f"/f{index}"] = data
    fake_api.plan(
        "GET",
        f"/v1/jobs/{JOB}/output",
        Reply(200, {"jobId": JOB, "expiresInSeconds": 900, "files": listed[:2], "nextToken": "p2"}),
        Reply(200, {"jobId": JOB, "expiresInSeconds": 900, "files": listed[2:], "nextToken": None}),
    )
    target = tmp_path / "out"
    assert cli.main(["--api-url", fake_api.url, "download", JOB, str(target)]) == 0
    saved = {str(path.relative_to(target)): path.read_bytes() for path in target.rglob("*") if path.is_file()}
    assert saved == {
        "stdout": b"hello\n",
        "tasks/1/stderr": b"\xff\x00binary",
        "outputs/__/__/escape": b"kept inside",
        "outputs/文件.txt": "文件".encode(),
        "result.json": b"{}",
    }
    assert not (tmp_path / "escape").exists()
    assert [request.query for request in fake_api.to("GET", f"/v1/jobs/{JOB}/output")] == [
        {"limit": "1000"},
        {"limit": "1000", "nextToken": "p2"},
    ]
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(str(target.resolve() / name) for name in saved)


def test_download_before_the_output_is_collected(fake_api, capsys):
    message = "the job's output is not collected yet"
    fake_api.route("GET", f"/v1/jobs/{JOB}/output", Reply(409, {"code": "OutputNotReady", "message": message}))
    assert cli.main(["--api-url", fake_api.url, "download", JOB]) == 1
    assert capsys.readouterr().err == f"sja: error: job {JOB}: {message} (409)\n"


def test_a_link_that_fails_is_a_network_error_without_its_signature(fake_api, tmp_path, capsys):
    files = FileServer()
    link = files.url("/missing?X-Amz-Signature=secret")
    fake_api.route(
        "GET",
        f"/v1/jobs/{JOB}/output",
        Reply(200, {"jobId": JOB, "expiresInSeconds": 900, "files": [{"name": "stdout", "bytes": 1, "url": link}]}),
    )
    assert cli.main(["--api-url", fake_api.url, "download", JOB, str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"sja: error: cannot reach {files.url('/missing')} (GET): HTTP Error 404: Not Found\n"
    assert list(tmp_path.iterdir()) == []  # nothing half-written
