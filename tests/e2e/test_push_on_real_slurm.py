"""Completion pushed from the head node, on real Slurm: slurmctld runs the product's push hook (PrologSlurmctld and
EpilogSlurmctld, installed by `push_hook.py install` with this machine's IMDS), the hook publishes "Slurm Job State
Change" to the stack's bus, the bus's rule runs the sweep at once, and the sweep wakes the job's workflow. The same
bus carries the product's own events of each job's statuses, which an integration's rule receives.

The sweep's schedule is kept from firing here (an hour's period) and the safety poll is the template's (150 s), so
a job whose workflow is woken with the news of its end was found through the push alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harness.job_events import JobEventSubscriber, statuses
from harness.workflow import entered, finish, poll_news, submit
from tests.e2e.test_sweep_on_real_slurm import status_commands_for

STACK_OPTIONS = {"push_hook": True, "schedule_period_seconds": 3600}
SHORT = "#!/bin/bash\nsleep 2\necho done\n"
SWEEP = "SweepJobsFunction"


def slurm_end(slurm, slurm_job_id: str) -> datetime:
    done = slurm.cluster.run("sacct", "-X", "-n", "-P", "-o", "End", "-j", slurm_job_id)
    return datetime.fromisoformat(done.stdout.split()[0]).astimezone(UTC)


@pytest.fixture(scope="module")
def subscriber(cloud):
    return JobEventSubscriber(cloud)


def test_a_jobs_end_is_pushed_and_its_workflow_woken_before_any_scheduled_sweep(cloud, api, slurm, stack, subscriber):
    job_ids = [submit(api, {"name": f"pushed-{n}", "script": SHORT}) for n in range(3)]
    finished = {job_id: finish(cloud, api, job_id, timeout=140) for job_id in job_ids}
    for execution, events, result, view in finished.values():
        assert execution["status"] == "SUCCEEDED" and result["status"] == view["status"] == "COMPLETED"
        assert [news["reason"] for news in poll_news(events)] == ["ended"], poll_news(events)
        assert len(entered(events)) <= 12
        # Finished before the safety poll's 150 s after Slurm's EndTime (sacct's, to the second).
        lag = datetime.fromisoformat(view["updatedAt"].replace("Z", "+00:00")) - slurm_end(slurm, view["slurmJobId"])
        assert lag.total_seconds() < 150, lag
    assert status_commands_for(cloud, set(job_ids)) == 0
    assert [run.fired + run.failed for run in cloud.scheduler.runs] == [0]  # the sweep's schedule: not yet
    deliveries = [d for d in cloud.event_delivery.deliveries if d.rule_name.startswith(SWEEP)]
    assert deliveries and all(d.error is None for d in deliveries), deliveries
    # Every job's start and end was pushed (an event carries the changes at hand: a 2-s job's start and end may share
    # one, whose state is then ENDED).
    assert {job["state"] for d in deliveries for job in d.event["detail"]["jobs"]} == {"STARTING", "ENDED"}
    sweeps = [i.result for i in cloud.runtime.invocations_of(SWEEP)]
    assert sweeps and all(s.get("trigger") == "push" or s.get("coalesced") for s in sweeps), sweeps
    # The hook records each change and its sender sends what it has at hand in one event: every job's end is in
    # one, and the instance's credentials are read once per sender run, not once per change.
    ended = {job["slurmJobId"] for d in deliveries for job in d.event["detail"]["jobs"] if job["state"] == "ENDED"}
    assert {view["slurmJobId"] for _, _, _, view in finished.values()} <= ended
    changes = sum(len(d.event["detail"]["jobs"]) for d in deliveries)
    assert 1 <= stack.instance_metadata.credential_reads <= len(deliveries) <= changes, (deliveries, changes)
    # The product's events, as an integration's rule on the bus receives them: each change once (delivery is at least
    # once: a stream batch retried under load delivers its changes again, with the same changeId), each status in one
    # change only, the end last with what Slurm and result.json say.
    received = subscriber.until_ended(job_ids)
    for job_id, (_, _, result, view) in finished.items():
        changes = {event["detail"]["changeId"]: event for event in received[job_id]}
        published = statuses(list(changes.values()))
        assert published[0] == "SUBMITTING" and published[-1] == "COMPLETED", published
        assert len(published) == len(set(published)) and set(published) <= {
            "SUBMITTING",
            "PENDING",
            "RUNNING",
            "COMPLETED",
        }
        (end,) = [event["detail"] for event in changes.values() if event["detail"]["status"] == "COMPLETED"]
        assert (
            (end["slurmJobId"], end["exitCode"]) == (view["slurmJobId"], result["exitCode"]) == (view["slurmJobId"], 0)
        )
        assert end["resultKey"] == f"jobs/{job_id}/result.json" and end["endedAt"] == view["endedAt"]
