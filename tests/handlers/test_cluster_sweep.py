"""The cluster's status sweep (ClusterSweep.run) over in-memory fakes of the store, the bucket, the head node and
Step Functions: how it asks the head node, reads the report, wakes or keeps waiting workflows and writes records.
No local cloud, no Slurm: the fakes only record what they are asked and answer as the real services would."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from slurm_job_api import errors
from slurm_job_api.clock import iso
from slurm_job_api.cluster_sweep import MAX_OBSERVATIONS, SWEEP_POLL_EVERY_SECONDS, ClusterSweep, SweepSummary
from slurm_job_api.head_node import ssm_wait_seconds
from slurm_job_api.head_node_protocol import StatusReply, SweepJob, SweepReply, SweepRequest
from slurm_job_api.job_record import JobRecord
from slurm_job_api.observability import metrics
from slurm_job_api.poll_schedule import PollSchedule
from slurm_job_api.progress import JobProgress
from slurm_job_api.settings import Settings
from slurm_job_api.statuses import COMPLETED, PENDING, RUNNING, SUBMITTING
from tests.support.job_records import accepted_record, changed_record

CLUSTER = "test-cluster"
NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=UTC)
REMAINING = 100.0
SETTINGS = Settings(
    jobs_table_name="jobs",
    results_bucket_name="results",
    cluster_name=CLUSTER,
    cluster_user="slurmapi",
    slurm_bin_dir="/opt/slurm/bin",
    poll_schedule=PollSchedule(),
    max_polls_per_execution=2000,
    never_start_grace_seconds=3600,
    result_retention_days=30,
    state_machine_arn=None,
)


@pytest.fixture(autouse=True)
def _no_metrics_left_behind():
    """The sweep adds metrics to the process's one Metrics object; no handler flushes them here."""
    yield
    metrics.clear_metrics()


# -- the fakes ------------------------------------------------------------------------------------------------------


class FakeStore:
    def __init__(self, records: list[JobRecord]) -> None:
        self.records = records
        self.clusters_asked: list[str] = []
        self.updates: list[tuple[str, dict[str, Any], bool]] = []

    def active_on_cluster(self, cluster_name: str) -> list[JobRecord]:
        self.clusters_asked.append(cluster_name)
        return [record for record in self.records if record.active_on_cluster == cluster_name]

    def update(self, job_id: str, fields: dict[str, Any], *, only_if_active: bool = False) -> JobRecord | None:
        self.updates.append((job_id, dict(fields), only_if_active))
        return None


class FakeBucket:
    URL = "https://results.s3.amazonaws.com/"

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}
        self.presigned: list[str] = []
        self.read: list[str] = []

    def presigned_put(self, key: str) -> str:
        self.presigned.append(key)
        return f"{self.URL}{key}?X-Amz-Signature=abc"

    def put_at(self, url: str, body: Any) -> None:
        """What the head-node program's PUT to a presigned URL does."""
        assert url.startswith(self.URL), url
        self.objects[urlsplit(url).path.lstrip("/")] = json.loads(json.dumps(body))

    def read_json(self, key: str) -> dict | None:
        self.read.append(key)
        return self.objects.get(key)


class FakeHeadNode:
    """Splits the jobs into batches of `batch_size` and answers each sweep command as `answer` says, uploading the
    report to the command's presigned URL (unless `upload` is False)."""

    def __init__(self, bucket: FakeBucket, answers: dict[str, StatusReply], *, batch_size: int = 100) -> None:
        self.bucket = bucket
        self.answers = answers
        self.batch_size = batch_size
        self.batches: list[SweepRequest] = []
        self.runs: list[tuple[SweepRequest, float]] = []
        self.upload = True
        self.report_for = lambda jobs: [self.answers[job.slurm_job_id] for job in jobs]

    def sweep_batches(self, jobs: list[SweepJob]) -> list[SweepRequest]:
        self.batches = [
            SweepRequest(jobs=jobs[start : start + self.batch_size], report_url="")
            for start in range(0, len(jobs), self.batch_size)
        ]
        return self.batches

    def run(self, request: SweepRequest, *, wait_seconds: float, poll_every_seconds: float) -> SweepReply:
        assert poll_every_seconds == SWEEP_POLL_EVERY_SECONDS
        self.runs.append((request, wait_seconds))
        report = {"jobs": [reply.model_dump(mode="json", by_alias=True) for reply in self.report_for(request.jobs)]}
        if self.upload:
            self.bucket.put_at(request.report_url, report)
        return SweepReply(reported=len(report["jobs"]), report_bytes=len(json.dumps(report)), queries={"squeue": 1})


class FakeStates:
    """Step Functions' SendTaskSuccess and SendTaskHeartbeat; a token in `errors` fails with that error code."""

    def __init__(self, errors_by_token: dict[str, str] | None = None) -> None:
        self.errors = errors_by_token or {}
        self.successes: list[tuple[str, str]] = []
        self.heartbeats: list[str] = []

    def _fail_for(self, token: str, operation: str) -> None:
        if token in self.errors:
            raise ClientError({"Error": {"Code": self.errors[token], "Message": "no"}}, operation)

    def send_task_success(self, *, taskToken: str, output: str) -> dict:
        self._fail_for(taskToken, "SendTaskSuccess")
        self.successes.append((taskToken, output))
        return {}

    def send_task_heartbeat(self, *, taskToken: str) -> dict:
        self._fail_for(taskToken, "SendTaskHeartbeat")
        self.heartbeats.append(taskToken)
        return {}


# -- building the jobs ----------------------------------------------------------------------------------------------


def record(job_id: str, slurm_job_id: str | None, *, waits: bool = True, **fields: Any) -> JobRecord:
    """An active job of the cluster; `waits`: its workflow waits for news (token "token-<job_id>")."""
    new = accepted_record(job_id, cluster_name=CLUSTER)
    state = {"status": PENDING, "slurm_state": "PENDING", "reason": "Priority"} if slurm_job_id else {}
    if waits and slurm_job_id:
        progress = JobProgress(job_id=job_id, slurm_job_id=slurm_job_id, status=PENDING, wait_for_news=True)
        state |= {"wait_token": f"token-{job_id}", "waiting_progress": progress.to_state()}
    return changed_record(new, slurm_job_id=slurm_job_id, **(state | fields))


def status(slurm_job_id: str, **fields: Any) -> StatusReply:
    """A status result as the sweep's report holds it: the job pending as its record says unless told otherwise."""
    base = {"slurm_job_id": slurm_job_id, "found": True, "source": "squeue", "accounting_available": True}
    return StatusReply(**(base | {"status": PENDING, "slurm_state": "PENDING", "reason": "Priority"} | fields))


def unchanged(*slurm_job_ids: str) -> dict[str, StatusReply]:
    return {slurm_job_id: status(slurm_job_id) for slurm_job_id in slurm_job_ids}


def sweep_of(
    records: list[JobRecord],
    answers: dict[str, StatusReply],
    *,
    batch_size: int = 100,
    states=None,
    now: Callable[[], datetime] = lambda: NOW,
    heartbeats_sent: dict[str, datetime] | None = None,
):
    store, bucket = FakeStore(records), FakeBucket()
    head_node = FakeHeadNode(bucket, answers, batch_size=batch_size)
    sweep = ClusterSweep(
        settings=SETTINGS,
        store=store,
        bucket=bucket,
        head_node=head_node,
        states=states or FakeStates(),
        remaining_seconds=lambda: REMAINING,
        now=now,
        heartbeats_sent=heartbeats_sent if heartbeats_sent is not None else {},
    )
    return sweep, store, bucket, head_node


# -- the tests ------------------------------------------------------------------------------------------------------


def test_one_command_per_batch_each_report_read_back_from_the_key_it_presigned():
    ids = ["41", "42", "43", "44", "45"]
    records = [record(f"job-{slurm_job_id}", slurm_job_id) for slurm_job_id in ids]
    sweep, store, bucket, head_node = sweep_of(records, unchanged(*ids), batch_size=2)
    summary = sweep.run()

    assert store.clusters_asked == [CLUSTER]
    assert [[job.slurm_job_id for job in batch.jobs] for batch in head_node.batches] == [
        ["41", "42"],
        ["43", "44"],
        ["45"],
    ]
    # One command per batch, each for exactly that batch's jobs, its report URL the one presigned for it.
    assert len(head_node.runs) == 3
    assert [request.jobs for request, _ in head_node.runs] == [batch.jobs for batch in head_node.batches]
    assert [request.report_url for request, _ in head_node.runs] == [
        f"{FakeBucket.URL}{key}?X-Amz-Signature=abc" for key in bucket.presigned
    ]
    assert all(wait == ssm_wait_seconds(REMAINING) for _, wait in head_node.runs)
    assert bucket.read == bucket.presigned and len(set(bucket.presigned)) == 3
    assert all(key.startswith("sweeps/20261125T130000Z-") and key.endswith(".json") for key in bucket.presigned)
    assert summary.to_dict() == SweepSummary(active=5, asked=5, commands=3, heartbeats=5).to_dict()
    assert store.updates == []  # every record already says what the sweep saw


def test_no_active_job_with_a_slurm_job_id_sends_no_command():
    records = [
        record("job-1", None, status=SUBMITTING),  # not in Slurm yet
        record("job-2", "42", waits=False, status=COMPLETED),  # ended: the index lags
    ]
    sweep, store, bucket, head_node = sweep_of(records, {})
    summary = sweep.run()
    assert (head_node.batches, head_node.runs, bucket.presigned, store.updates) == ([], [], [], [])
    assert summary.to_dict() == SweepSummary(active=1, asked=0).to_dict()


def test_an_empty_cluster_sends_no_command():
    sweep, _, bucket, head_node = sweep_of([], {})
    assert sweep.run().to_dict() == SweepSummary().to_dict()
    assert (head_node.runs, bucket.presigned) == ([], [])


def test_ended_records_the_index_still_holds_are_neither_asked_about_nor_decided():
    # job-2's PollJob saw the end (it dropped the wait): its finish step has not removed it from the index yet
    records = [record("job-1", "41"), record("job-2", "42", status=COMPLETED, waits=False)]
    states = FakeStates()
    answers = {**unchanged("41"), "42": status("42", found=False)}
    sweep, _, _, head_node = sweep_of(records, answers, states=states)
    summary = sweep.run()
    assert [job.slurm_job_id for job in head_node.runs[0][0].jobs] == ["41"]
    assert (summary.active, summary.asked, states.heartbeats, states.successes) == (1, 1, ["token-job-1"], [])


@pytest.mark.parametrize(
    "report_for",
    [
        lambda jobs: [status("99") for _ in jobs],  # other jobs
        lambda jobs: [status(job.slurm_job_id) for job in jobs[:-1]],  # one left out
        lambda jobs: [status(job.slurm_job_id) for job in reversed(jobs)],  # not in the order asked
        lambda jobs: [status(job.slurm_job_id) for job in [*jobs, jobs[0]]],  # one twice
    ],
    ids=["other-jobs", "one-missing", "other-order", "one-twice"],
)
def test_a_report_that_does_not_answer_for_the_jobs_asked_is_a_protocol_error(report_for):
    states = FakeStates()
    sweep, store, _, head_node = sweep_of([record("job-1", "41"), record("job-2", "42")], {}, states=states)
    head_node.report_for = report_for
    with pytest.raises(errors.HeadNodeProtocolError, match="does not answer for the jobs it was asked"):
        sweep.run()
    assert (store.updates, states.successes, states.heartbeats) == ([], [], [])


def test_a_report_that_was_not_uploaded_is_a_protocol_error():
    states = FakeStates()
    sweep, store, bucket, head_node = sweep_of([record("job-1", "41")], unchanged("41"), states=states)
    head_node.upload = False
    with pytest.raises(errors.HeadNodeProtocolError, match="uploaded no sweeps/"):
        sweep.run()
    assert bucket.read == bucket.presigned != []
    assert (store.updates, states.successes, states.heartbeats) == ([], [], [])


def test_news_wakes_the_waiting_workflow_with_the_json_of_the_wake():
    ended = status("41", status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0)
    states = FakeStates()
    sweep, _, _, _ = sweep_of([record("job-1", "41")], {"41": ended}, states=states)
    summary = sweep.run()
    assert len(states.successes) == 1
    token, output = states.successes[0]
    assert token == "token-job-1"
    assert json.loads(output) == {"reason": "ended", "observation": ended.model_dump(mode="json", by_alias=True)}
    assert states.heartbeats == []
    assert (summary.woken, summary.heartbeats, summary.reasons) == (1, 0, {"ended": 1})


def test_an_end_is_written_into_the_record_before_the_wake_and_only_while_it_is_active():
    ended = status(
        "41", status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0, end_time="2026-11-25T12:59:00"
    )
    calls: list[str] = []
    states = FakeStates()
    sweep, store, _, _ = sweep_of([record("job-1", "41")], {"41": ended}, states=states)
    store_update, send_success = store.update, states.send_task_success
    store.update = lambda *args, **kwargs: calls.append("record") or store_update(*args, **kwargs)
    states.send_task_success = lambda **kwargs: calls.append("wake") or send_success(**kwargs)
    sweep.run()
    assert calls == ["record", "wake"]
    [(job_id, fields, only_if_active)] = store.updates
    assert (job_id, only_if_active) == ("job-1", True)
    assert (fields["status"], fields["exitCode"], fields["endedAt"]) == (COMPLETED, 0, "2026-11-25T12:59:00")
    assert "finishedAt" not in fields and "results" not in fields  # the finish step's, with result.json


@pytest.mark.parametrize("error", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken", "ThrottlingException"])
def test_an_end_is_written_whether_or_not_the_wake_goes_through(error):
    ended = status("41", status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0)
    sweep, store, _, _ = sweep_of([record("job-1", "41")], {"41": ended}, states=FakeStates({"token-job-1": error}))
    if error == "ThrottlingException":  # not a task gone: the sweep fails (the next one wakes again, below)
        with pytest.raises(ClientError):
            sweep.run()
    else:
        assert sweep.run().gone == 1
    [(job_id, fields, only_if_active)] = store.updates
    assert (job_id, fields["status"], only_if_active) == ("job-1", COMPLETED, True)


def test_a_record_ended_by_a_sweep_whose_workflow_still_waits_is_swept_and_woken_again():
    ended = status("41", status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0)
    ended_but_waiting = record("job-1", "41", status=COMPLETED, slurm_state="COMPLETED")
    finished = record("job-2", "42", status=COMPLETED, finished_at="2026-11-25T12:59:30.000Z")
    states = FakeStates()
    sweep, store, _, head_node = sweep_of([ended_but_waiting, finished], {"41": ended}, states=states)
    summary = sweep.run()
    assert [job.slurm_job_id for job in head_node.runs[0][0].jobs] == ["41"]
    assert [token for token, _ in states.successes] == ["token-job-1"]
    assert (summary.woken, store.updates) == (1, [])  # the record already says it ended


def test_ended_jobs_are_woken_before_the_records_of_jobs_that_go_on_are_written(monkeypatch):
    started = status("40", status=RUNNING, slurm_state="RUNNING", reason="None", start_time="2026-11-25T12:10:00")
    ended = status("41", status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0)
    going_on = [record(f"job-{n}", "40") for n in range(40)]
    sweep, store, _, _ = sweep_of([*going_on, record("job-end", "41")], {"40": started, "41": ended})
    monkeypatch.setattr("slurm_job_api.cluster_sweep.PARALLEL_CALLS", 1)  # one call at a time: in the sweep's order
    sweep.run()
    assert store.updates[0][0] == "job-end"
    assert len(store.updates) == 41


def test_a_job_that_goes_on_gets_its_record_updated_and_its_wait_kept_alive():
    started = status("41", status=RUNNING, slurm_state="RUNNING", reason="None", start_time="2026-11-25T12:10:00")
    states = FakeStates()
    sweep, store, _, _ = sweep_of([record("job-1", "41")], {"41": started}, states=states)
    summary = sweep.run()
    assert states.heartbeats == ["token-job-1"]
    assert states.successes == []
    changes = JobRecord.stored(
        status=RUNNING,
        slurm_state="RUNNING",
        reason="None",
        started_at="2026-11-25T12:10:00",
        array_task_counts=None,
        updated_at=iso(NOW),
    )
    assert store.updates == [("job-1", changes, True)]  # only while the job is still active
    assert (summary.woken, summary.heartbeats, summary.records_updated, summary.reasons) == (0, 1, 1, {})


def test_a_record_nobody_waits_on_is_only_brought_up_to_date():
    records = [record("job-1", "41", waits=False)]
    states = FakeStates()
    sweep, store, _, _ = sweep_of(records, {"41": status("41", reason="Resources")}, states=states)
    summary = sweep.run()
    assert [(job_id, fields["reason"], only_if_active) for job_id, fields, only_if_active in store.updates] == [
        ("job-1", "Resources", True)
    ]
    assert (states.successes, states.heartbeats) == ([], [])
    assert (summary.records_updated, summary.woken, summary.heartbeats, summary.gone) == (1, 0, 0, 0)


def test_every_record_of_a_slurm_job_asked_about_once_is_decided():
    records = [record("job-1", "41"), record("job-2", "41")]
    states = FakeStates()
    sweep, _, _, head_node = sweep_of(records, unchanged("41"), states=states)
    summary = sweep.run()
    assert [job.slurm_job_id for job in head_node.runs[0][0].jobs] == ["41"]
    assert sorted(states.heartbeats) == ["token-job-1", "token-job-2"]
    assert (summary.asked, summary.heartbeats) == (1, 2)


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_a_task_that_moved_on_is_gone_not_an_error(code):
    records = [record("job-1", "41"), record("job-2", "42")]
    answers = {"41": status("41", status=COMPLETED, slurm_state="COMPLETED"), "42": status("42")}
    states = FakeStates({"token-job-1": code, "token-job-2": code})
    sweep, _, _, _ = sweep_of(records, answers, states=states)
    summary = sweep.run()
    assert (states.successes, states.heartbeats) == ([], [])
    assert (summary.gone, summary.woken, summary.heartbeats) == (2, 0, 0)


@pytest.mark.parametrize("wakes", [True, False], ids=["wake", "heartbeat"])
def test_any_other_step_functions_error_is_raised(wakes):
    answer = status("41", status=COMPLETED, slurm_state="COMPLETED") if wakes else status("41")
    states = FakeStates({"token-job-1": "ThrottlingException"})
    sweep, _, _, _ = sweep_of([record("job-1", "41")], {"41": answer}, states=states)
    with pytest.raises(ClientError) as raised:
        sweep.run()
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert raised.value.operation_name == ("SendTaskSuccess" if wakes else "SendTaskHeartbeat")


def test_sweeps_keep_a_wait_alive_only_once_a_quarter_of_its_safety_poll_went_by():
    def waiting_job(job_id: str, slurm_job_id: str) -> JobRecord:
        progress = JobProgress(
            job_id=job_id, slurm_job_id=slurm_job_id, status=PENDING, wait_for_news=True, safety_poll_seconds=200
        )
        return record(job_id, slurm_job_id, waiting_progress=progress.to_state())

    clock = [NOW]
    sent: dict[str, datetime] = {}  # the handler's, kept between sweeps
    states = FakeStates()

    def sweep_at(seconds: float, records: list[JobRecord], answers: dict[str, StatusReply]) -> None:
        clock[0] = NOW + timedelta(seconds=seconds)
        sweep_of(records, answers, states=states, now=lambda: clock[0], heartbeats_sent=sent)[0].run()

    both = [waiting_job("job-1", "41"), waiting_job("job-2", "42")]
    sweep_at(0, both, unchanged("41", "42"))
    assert states.heartbeats == ["token-job-1", "token-job-2"]  # none known yet: both kept alive
    assert sent == {"token-job-1": NOW, "token-job-2": NOW}
    sweep_at(49, both, unchanged("41", "42"))
    assert len(states.heartbeats) == 2  # 49 s < 200 s / 4: not due
    sweep_at(50, both, {"41": status("41"), "42": status("42", status=COMPLETED, slurm_state="COMPLETED")})
    assert states.heartbeats[2:] == ["token-job-1"]
    assert [token for token, _ in states.successes] == ["token-job-2"]
    assert sent == {"token-job-1": NOW + timedelta(seconds=50)}  # the woken one is forgotten


def test_a_sweep_that_saw_ends_asks_again_about_the_jobs_that_went_on_before_it_wakes_anyone():
    rounds = MAX_OBSERVATIONS
    running = status("40", status=RUNNING, slurm_state="RUNNING", reason="None")
    # Slurm as observations in a row see it: job 41 ends first, then 42, ... (one more than a sweep observes), and 40
    # goes on.
    ending = [str(41 + n) for n in range(rounds + 1)]
    records = [record("job-40", "40"), *(record(f"job-{n}", n) for n in ending)]
    calls: list[str] = []
    states = FakeStates()
    sweep, store, _, head_node = sweep_of(records, {}, states=states)
    observation = iter(range(rounds))

    def report_for(jobs):
        ended_by = ending[: next(observation) + 1]
        return [
            status(job.slurm_job_id, status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0)
            if job.slurm_job_id in ended_by
            else running.model_copy(update={"slurm_job_id": job.slurm_job_id})
            for job in jobs
        ]

    head_node.report_for = report_for
    store_update, send_success = store.update, states.send_task_success
    store.update = lambda job_id, *args, **kwargs: (
        calls.append(f"end {job_id}") or store_update(job_id, *args, **kwargs)
    )
    states.send_task_success = lambda **kwargs: calls.append("wake") or send_success(**kwargs)
    summary = sweep.run()
    asked = [[job.slurm_job_id for job in request.jobs] for request, _ in head_node.runs]
    assert asked == [["40", *ending[n:]] for n in range(rounds)]  # each time the jobs that went on; no more rounds
    ends_seen = ending[:rounds]
    assert calls[:rounds] == [f"end job-{n}" for n in ends_seen]
    assert calls[rounds : 2 * rounds] == ["wake"] * rounds  # then the records of the jobs that go on
    assert (summary.commands, summary.woken) == (rounds, rounds)


def test_the_ends_that_come_while_the_wakes_are_sent_are_written_and_woken_in_the_same_sweep():
    running = status("40", status=RUNNING, slurm_state="RUNNING", reason="None")
    ended = status("41", status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0)
    # Job 41 ended at the first observation, and the second saw no other end: 41's wake goes out, and takes long
    # (its workflow's steps start); job 42 ends meanwhile, at the third observation; job 40 goes on.
    records = [record("job-40", "40"), record("job-41", "41"), record("job-42", "42")]
    calls: list[str] = []
    end_of_42_written = threading.Event()
    states = FakeStates()
    sweep, store, _, head_node = sweep_of(records, {}, states=states)

    def report_for(jobs):
        observation = len(head_node.runs)
        return [
            ended.model_copy(update={"slurm_job_id": job.slurm_job_id})
            if job.slurm_job_id == "41" or (job.slurm_job_id == "42" and observation >= 3)
            else running.model_copy(update={"slurm_job_id": job.slurm_job_id})
            for job in jobs
        ]

    def send_task_success(*, taskToken: str, output: str) -> dict:
        if taskToken == "token-job-41":
            assert end_of_42_written.wait(10), "the sweep did not watch the jobs that went on during the wake"
        calls.append(f"woke {taskToken.removeprefix('token-')}")
        return FakeStates.send_task_success(states, taskToken=taskToken, output=output)

    head_node.report_for = report_for
    states.send_task_success = send_task_success
    store_update = store.update

    def update(job_id: str, fields: dict[str, Any], **kwargs: Any) -> None:
        calls.append(f"{fields.get('status')} {job_id}")
        store_update(job_id, fields, **kwargs)
        if (job_id, fields.get("status")) == ("job-42", COMPLETED):
            end_of_42_written.set()

    store.update = update
    summary = sweep.run()
    asked = [[job.slurm_job_id for job in request.jobs] for request, _ in head_node.runs]
    assert asked[:3] == [["40", "41", "42"], ["40", "42"], ["40", "42"]]
    assert 3 <= len(asked) <= MAX_OBSERVATIONS
    assert calls.index("COMPLETED job-42") < calls.index("woke job-41")  # written while 41's wake was under way
    assert {"woke job-41", "woke job-42"} <= set(calls)
    assert calls[-1] == "RUNNING job-40"  # the job that goes on last
    assert (summary.woken, summary.commands) == (2, len(asked))


def test_a_sweep_that_saw_no_end_asks_once():
    started = status("41", status=RUNNING, slurm_state="RUNNING", reason="None")
    sweep, _, _, head_node = sweep_of([record("job-1", "41")], {"41": started})
    assert sweep.run().commands == 1 and len(head_node.runs) == 1


def test_a_sweep_that_saw_every_job_end_asks_once():
    ended = status("41", status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0)
    sweep, _, _, head_node = sweep_of([record("job-1", "41")], {"41": ended})
    assert sweep.run().commands == 1 and len(head_node.runs) == 1


def test_a_wake_delivered_is_not_sent_again_while_the_record_waits_for_its_poll():
    ended = status("41", status=COMPLETED, slurm_state="COMPLETED", reason=None, exit_code=0)
    states, tokens_woken = FakeStates(), set()
    first, _, _, _ = sweep_of([record("job-1", "41")], {"41": ended}, states=states)
    first.tokens_woken = tokens_woken
    first.run()
    assert tokens_woken == {"token-job-1"}
    # The next sweep lists the record as the first one left it: ended, its woken workflow's PollJob not run yet.
    ended_and_woken = record("job-1", "41", status=COMPLETED, slurm_state="COMPLETED")
    second, _, _, head_node = sweep_of([ended_and_woken], {"41": ended}, states=states)
    second.tokens_woken = tokens_woken
    assert second.run().asked == 0 and head_node.runs == []
    assert [token for token, _ in states.successes] == ["token-job-1"]  # one wake
    # Once the record is no longer listed (finished), its token is forgotten.
    third, _, _, _ = sweep_of([], {}, states=states)
    third.tokens_woken = tokens_woken
    third.run()
    assert tokens_woken == set()
