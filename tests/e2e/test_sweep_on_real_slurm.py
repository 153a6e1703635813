"""JobTracking sweep on real Slurm: the cluster's status sweep (fired by the local scheduler, as EventBridge Scheduler
would) reports every active job with one head-node command; each job's workflow waits for news (AwaitNews) and polls
its job on its own only when no sweep kept the wait alive (the safety poll)."""

from __future__ import annotations

import time

from harness.workflow import (
    SAFETY_POLL_ERRORS,
    commands_by_action,
    entered,
    execution_statuses,
    finish,
    poll_news,
    submit,
)


def commands_for(cloud, action: str, job_ids: set[str]) -> int:
    """SSM commands of this head-node action sent for these jobs."""
    total = 0
    for page in cloud.client("ssm").get_paginator("list_commands").paginate():
        for command in page["Commands"]:
            words = command.get("Comment", "").split()
            total += words[:2] == ["slurm-job-api", action] and len(words) > 2 and words[2] in job_ids
    return total


def status_commands_for(cloud, job_ids: set[str]) -> int:
    return commands_for(cloud, "status", job_ids)


SAFETY_POLL_SECONDS = 15
# This module's stack (tests/e2e/conftest.py): a short safety poll, so that the sweep-down test takes seconds.
STACK_PARAMETERS = {"SafetyPollMinSeconds": str(SAFETY_POLL_SECONDS)}
SHORT = "#!/bin/bash\nsleep 2\necho done\n"
FAILING = "#!/bin/bash\nexit 3\n"


def test_jobs_end_on_the_sweeps_news_without_a_status_command_of_their_own(cloud, api):
    job_ids = [submit(api, {"name": f"swept-{n}", "script": SHORT}) for n in range(8)]
    failing = submit(api, {"name": "swept-failing", "script": FAILING})
    statuses = execution_statuses(cloud, [*job_ids, failing], timeout=120)
    assert statuses == {**dict.fromkeys(job_ids, "SUCCEEDED"), failing: "FAILED"}
    for job_id in [*job_ids, failing]:
        _execution, events, result, view = finish(cloud, api, job_id)
        path = entered(events)
        # Submitted, waited for news once, woken by the sweep when the job ended, finished: no poll loop.
        assert path[:5] == ["IsContinuation", "SubmitJob", "IsJobFinished", "AwaitNews", "PollJob"], path
        assert path[-3:-1] == ["FinishJob", "DidJobComplete"], path
        assert len(path) <= 12, path  # the budget of state transitions per job
        assert [news["reason"] for news in poll_news(events)][-1] == "ended"
        assert not any(news.get("Error") in SAFETY_POLL_ERRORS for news in poll_news(events))
    assert result["status"] == view["status"] == "FAILED" and view["exitCode"] == 3
    # Slurm was asked about these jobs by sweeps only, never by a command of their own.
    assert status_commands_for(cloud, {*job_ids, failing}) == 0
    assert commands_by_action(cloud).get("sweep", 0) >= 1


def test_a_job_nobody_reports_on_is_polled_on_its_own_after_the_safety_poll_time(cloud, api, stack):
    """The sweep is down (its schedule stopped): the workflow's wait times out (no heartbeat for
    SafetyPollMinSeconds) and PollJob asks Slurm about the job itself; the job still ends right."""
    scheduler = cloud.scheduler
    scheduler.stop()
    try:
        started = time.monotonic()
        job_id = submit(api, {"name": "unswept", "script": SHORT})
        execution, events, result, view = finish(cloud, api, job_id, timeout=120)
        waited = time.monotonic() - started
    finally:
        scheduler.start()
    assert execution["status"] == "SUCCEEDED" and result["status"] == view["status"] == "COMPLETED"
    news = poll_news(events)
    # AWS names a missed heartbeat States.HeartbeatTimeout; moto's interpreter reports it as States.Timeout.
    assert news and all(item["Error"] in SAFETY_POLL_ERRORS for item in news), news
    assert status_commands_for(cloud, {job_id}) == len(news)
    assert waited >= SAFETY_POLL_SECONDS, waited


def test_a_cancelled_waiting_job_ends_on_the_sweeps_news(cloud, api, slurm):
    """DELETE runs scancel at once (the API's own command); the workflow, waiting for news, learns of the end from
    the next sweep, not from a status command of its own."""
    job_id = submit(api, {"name": "swept-cancel", "script": "#!/bin/bash\nsleep 300\n"})
    deadline = time.monotonic() + 60
    while api.get(f"/jobs/{job_id}").json()["status"] != "RUNNING":  # the record is updated by the sweep
        assert time.monotonic() < deadline, "the sweep never reported the job running"
        time.sleep(0.5)
    answer = api.delete(f"/jobs/{job_id}")
    assert answer.status_code == 202 and answer.json()["slurmCancelSent"] is True, answer.text
    _execution, events, result, view = finish(cloud, api, job_id, timeout=90)
    assert (view["status"], result["status"]) == ("CANCELLED", "CANCELLED")
    news = poll_news(events)
    reasons = [item["reason"] for item in news]
    if reasons == ["cancel requested"]:
        # A sweep came between the API's cancel mark and its scancel taking effect (the DELETE writes the mark
        # first, so that a cancel is never lost): the woken poll cancels again, which Slurm ignores, and asks once.
        assert news[0]["observation"]["status"] == "RUNNING", news
        assert (status_commands_for(cloud, {job_id}), commands_for(cloud, "cancel", {job_id})) == (1, 2)
    else:
        assert reasons == ["ended"], news
        assert news[0]["observation"]["status"] == "CANCELLED"
        assert status_commands_for(cloud, {job_id}) == 0
        assert commands_for(cloud, "cancel", {job_id}) == 1  # the API's: the woken poll saw the end and sent none
    assert slurm.accounted_state(view["slurmJobId"]).startswith("CANCELLED")
