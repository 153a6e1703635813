"""Reading a job's logs through the API as a caller does (GET /jobs/{jobId}/logs), for the tests that drive it."""

from __future__ import annotations

import time


def wait_for_running(api, job_id: str, timeout: float = 120) -> dict:
    """The job's view once it is RUNNING."""
    deadline = time.monotonic() + timeout
    while (view := api.get(f"/jobs/{job_id}").json())["status"] != "RUNNING":
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    return view


def job_logs(api, job_id: str, **params) -> dict:
    """One page (200 expected)."""
    answer = api.get(f"/jobs/{job_id}/logs", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def read_stream(api, job_id: str, **params) -> tuple[bytes, list[dict]]:
    """The stream from offset 0, page after page from each nextOffset until the size, as bytes; and the pages."""
    pages: list[dict] = []
    offset = 0
    while not pages or pages[-1]["nextOffset"] < pages[-1]["size"]:
        page = job_logs(api, job_id, offset=offset, **params)
        assert page["offset"] == offset and page["nextOffset"] > offset, page
        pages.append(page)
        offset = page["nextOffset"]
    return b"".join(page["text"].encode() for page in pages), pages
