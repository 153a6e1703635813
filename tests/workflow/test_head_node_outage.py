"""The head node unreachable for longer than PollJob's retries last (about 90 minutes without jitter): the job may
still run, so tracking goes on, with the outage in the record, up to HeadNodeOutageLimitHours; then ERROR, saying
the job may still run. Time is compressed: moto's Retry intervals and Wait states advance a virtual clock, and the
poll function sees the job's times in virtual time (harness/long_jobs.py). The outage is the poll function failing
with HeadNodeUnreachable, as it does when SSM cannot deliver its command; Slurm is scripted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.long_jobs import VirtualClock, in_virtual_time, retries_on, waits_on
from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import finish, path, result_json, submit
from slurm_job_api.errors import HeadNodeUnreachable

LIMIT_HOURS = 6
POLL = "PollJobFunction"


@pytest.fixture(scope="module")
def cloud(make_cloud):
    with make_cloud(HeadNodeOutageLimitHours=str(LIMIT_HOURS)) as running:
        yield running


def unreachable_until(clock: VirtualClock, hours: float | None) -> Callable[[Any, Any, Any], Any]:
    """PollJob fails as an unreachable head node does until the virtual clock reaches `hours` (None: for ever);
    NoteHeadNodeOutage (the same function, told of the outage) runs."""

    def interceptor(event, context, call_next):
        if "outage" not in event and (hours is None or clock.seconds < hours * 3600):
            raise HeadNodeUnreachable("the SSM command was not delivered: the instance is not connected")
        return call_next(event, context)

    return interceptor


@pytest.fixture
def virtual_clock(cloud) -> Iterator[VirtualClock]:
    clock = VirtualClock()
    with cloud.runtime.intercepted(POLL, in_virtual_time(clock)), waits_on(clock), retries_on(clock):
        yield clock


def completing(slurm) -> None:
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )


def record(cloud, job_id: str) -> dict:
    item = cloud.client("dynamodb").get_item(TableName=cloud.table_name, Key={"jobId": {"S": job_id}})["Item"]
    return {name: value.get("S", value.get("N")) for name, value in item.items()}


def test_tracking_outlasts_an_outage_of_three_hours_and_the_record_shows_it(cloud, api, slurm, virtual_clock):
    completing(slurm)
    with cloud.runtime.intercepted(POLL, unreachable_until(virtual_clock, hours=3)):
        job_id = submit(api)
        execution, events, result, view = finish(cloud, api, job_id, timeout=240)
    states = path(events)
    assert execution["status"] == "SUCCEEDED" and result["status"] == view["status"] == "COMPLETED"
    assert states.count("NoteHeadNodeOutage") >= 2, states  # more than one round of PollJob's retries
    noted = int(record(cloud, job_id)["longestOutageSeconds"])
    assert 1.5 * 3600 <= noted <= 3 * 3600, noted  # the last noted outage: after the last round that ran out
    assert view["longestOutageSeconds"] == noted and view.get("unreachableSince") is None
    assert virtual_clock.seconds >= 3 * 3600


def test_contact_lost_for_the_limit_ends_the_job_as_error_saying_it_may_still_run(cloud, api, slurm, virtual_clock):
    completing(slurm)
    with cloud.runtime.intercepted(POLL, unreachable_until(virtual_clock, hours=None)):
        job_id = submit(api)
        execution, events, result, view = finish(cloud, api, job_id, timeout=240)
    assert execution["status"] == "FAILED" and result["status"] == view["status"] == "ERROR"
    # Each round of PollJob's retries lasts well under the limit: several were noted before tracking stopped.
    assert path(events).count("NoteHeadNodeOutage") >= 4, path(events)
    assert "HeadNodeOutageLimitReached" in result["cause"] and "may still be running" in result["cause"]
    assert f"HeadNodeOutageLimitHours is {LIMIT_HOURS}" in result["cause"]
    assert LIMIT_HOURS * 3600 <= virtual_clock.seconds <= (LIMIT_HOURS + 2) * 3600
    outage = int(record(cloud, job_id)["longestOutageSeconds"])
    assert (LIMIT_HOURS - 2) * 3600 <= outage < LIMIT_HOURS * 3600, outage
    assert result_json(cloud, job_id)["status"] == "ERROR"
