"""A fixed corpus of hostile job specs (tests/support/hostile.py, seeded) through the HTTP API of a real-Slurm local
stack, sent concurrently. After every job has ended:

- no answer was a 5xx, and each answer is the one the documented rules give (tests/security/spec_oracle.py);
- the refused requests started nothing: the executions, job records and S3 job prefixes are exactly the accepted
  jobs';
- every accepted job reached a terminal state and has its result.json;
- the jobs Slurm knows (asked with sacct) are exactly the accepted jobs that sbatch took, one each, with the name and
  working directory their spec gave;
- no canary file exists: nothing, anywhere, evaluated a payload.
"""

from __future__ import annotations

import json
import os
import pwd
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import pytest

from harness.workflow import execution_statuses, submit, upload_script
from local_stack.api_gateway import LOCAL_DEVELOPER, LOCAL_OTHER
from local_stack.stack import LocalStack
from slurm_job_api.head_node_program import JOB_DIRECTORIES
from slurm_job_api.statuses import TERMINAL_STATUSES
from tests.security.harness import Tally
from tests.security.spec_oracle import DEFAULT_JOB_NAME, Verdict, caller_inputs_prefix, judge
from tests.support.hostile import BENIGN_SCRIPT, Canaries, Case, HostileSpecs, Targets, corpus

SEED = 20261125
CASES = 520
ALL_JOBS_END_WITHIN_SECONDS = 240
SENDERS = 4  # concurrent POSTs; each gets an API execution environment of its own (local_stack.lambda_runtime)


@dataclass
class Sent:
    case: Case
    verdict: Verdict
    status: int
    answer: dict

    @property
    def job_id(self) -> str | None:
        return self.answer.get("jobId") if self.status == 202 else None


@dataclass
class Outcome:
    sent: list[Sent]
    foreign_job: str  # another caller's job, named by some dependencies of the corpus
    views: dict[str, dict]  # job id → GET /jobs/{id} once every job ended
    started_at: datetime
    seconds_to_send: float
    seconds_to_end: float

    @property
    def accepted(self) -> list[Sent]:
        return [item for item in self.sent if item.job_id]


@pytest.fixture(scope="module")
def stack():
    if os.geteuid() != 0:
        pytest.skip("the local stack runs Slurm daemons and switches users: needs root")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    with LocalStack(
        name="security-slurm",
        port_base=10817,
        accounting=True,
        min_job_age=3600,  # slurmctld remembers every job of the module, however long a loaded machine takes
        parameters={"PollMinSeconds": "1"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def cloud(stack):
    return stack.running_cloud


@pytest.fixture(scope="module")
def canaries():
    return Canaries()


def send_all(cloud, cases: list[Case], my_jobs: set[str], my_inputs: str) -> list[Sent]:
    """POSTs every case, SENDERS at a time, as programs calling the API do (the jobs they start run at the same
    time); the inputs/ objects are created first. Each answer is judged on its own case alone: no case of the corpus
    depends on another's answer (no idempotency key, no dependency on a job of this caller)."""
    s3 = cloud.client("s3")
    existing = set()
    for case in cases:
        for key, content in case.uploads.items():
            s3.put_object(Bucket=cloud.bucket_name, Key=key, Body=content)
            existing.add(key)
    senders = threading.local()

    def send(case: Case) -> Sent:
        if not hasattr(senders, "api"):
            senders.api = cloud.api_client()  # a client (and its connection pool) per sending thread
        text = case.json_text()
        verdict = judge(
            case.body, body_bytes=len(text.encode()), existing_keys=existing, my_jobs=my_jobs, my_inputs=my_inputs
        )
        answer = senders.api.post("/jobs", data=text.encode(), headers={"Content-Type": "application/json"})
        try:
            body = answer.json()
        except ValueError:
            body = {"unparsed": answer.text[:500]}
        return Sent(case, verdict, answer.status_code, body)

    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        return list(pool.map(send, cases))


def wait_until_ended(cloud, job_ids: list[str], timeout: float) -> None:
    statuses = execution_statuses(cloud, job_ids, timeout, interval=1)
    remaining = [job for job, status in statuses.items() if status == "RUNNING"]
    if remaining:
        views = [cloud.api_client().get(f"/jobs/{job}").json() for job in remaining[:5]]
        raise AssertionError(f"{len(remaining)} jobs still running after {timeout} s, e.g. {views}")


@pytest.fixture(scope="module")
def outcome(stack, cloud, canaries) -> Outcome:
    started_at = datetime.now().replace(microsecond=0)
    other = cloud.api_client(LOCAL_OTHER)
    foreign = submit(other, {"script": BENIGN_SCRIPT, "name": "not-yours"})
    targets = Targets(
        foreign=(foreign,),
        my_inputs=caller_inputs_prefix(LOCAL_DEVELOPER.arn),
        foreign_input=upload_script(other, BENIGN_SCRIPT.encode()),
    )
    generator = HostileSpecs(canaries, targets, runnable=True)
    cases = corpus(SEED, CASES, generator)
    began = time.monotonic()
    sent = send_all(cloud, cases, my_jobs=set(), my_inputs=targets.my_inputs)
    sending = time.monotonic() - began
    accepted = [item.job_id for item in sent if item.job_id]
    wait_until_ended(cloud, [*accepted, foreign], ALL_JOBS_END_WITHIN_SECONDS)
    api = cloud.api_client()
    views = {job_id: api.get(f"/jobs/{job_id}").json() for job_id in accepted}
    result = Outcome(sent, foreign, views, started_at, sending, time.monotonic() - began)
    return result


def tally_of(sent: list[Sent]) -> Tally:
    tally = Tally()
    for item in sent:
        if item.job_id:
            tally.accepted.append(item.job_id)
            tally.fields_accepted.update(item.verdict.spec.keys())
        else:
            tally.rejected += 1
            tally.fields_refused.update(name.split("[")[0] for name in item.verdict.must_name)
    return tally


def test_report(outcome, canaries, record_property):
    """The numbers of this run, for people (pytest -s or -rP shows them; --junitxml keeps them)."""
    statuses = Counter(view["status"] for view in outcome.views.values())
    refusals = Counter(view.get("cause", "")[:70] for view in outcome.views.values() if not view.get("slurmJobId"))
    summary = (
        f"hostile corpus on real Slurm: {len(outcome.sent)} cases (seed {SEED}): {tally_of(outcome.sent).summary()}; "
        f"sent in {outcome.seconds_to_send:.0f} s, all jobs ended after {outcome.seconds_to_end:.0f} s; "
        f"accepted jobs ended {dict(statuses)}; sbatch refused {dict(refusals)}; {len(canaries.paths)} canary payloads"
    )
    print("\n" + summary)
    record_property("hostile_corpus", summary)
    assert sum(statuses.values()) == len(outcome.accepted)


def test_no_server_errors_and_every_answer_is_the_documented_one(outcome):
    problems = [
        f"{problem} for {item.case.json_text()[:300]}"
        for item in outcome.sent
        if (problem := item.verdict.problem(item.status, item.answer))
    ]
    assert problems == []
    tally = tally_of(outcome.sent)
    assert len(tally.accepted) > 150 and tally.rejected > 150  # the corpus exercises both halves
    assert tally.missing_fields() == ["dependency"]  # this caller has no job to depend on: dependencies are refused


def test_refused_requests_started_nothing(cloud, outcome):
    wanted = {item.job_id for item in outcome.accepted} | {outcome.foreign_job}
    pages = cloud.client("stepfunctions").get_paginator("list_executions")
    executions = [
        execution["name"]
        for page in pages.paginate(stateMachineArn=cloud.state_machine_arn)
        for execution in page["executions"]
    ]
    assert sorted(executions) == sorted(wanted)  # one execution each: no long job continued in a second one
    table = cloud.client("dynamodb")
    records = [
        item["jobId"]["S"]
        for page in table.get_paginator("scan").paginate(TableName=cloud.table_name, ProjectionExpression="jobId")
        for item in page["Items"]
    ]
    assert sorted(records) == sorted(wanted)
    objects = cloud.client("s3").get_paginator("list_objects_v2").paginate(Bucket=cloud.bucket_name, Prefix="jobs/")
    prefixes = {item["Key"].split("/")[1] for page in objects for item in page.get("Contents", [])}
    assert prefixes == wanted


def test_every_accepted_job_ended_with_a_result(cloud, outcome):
    s3 = cloud.client("s3")
    for job_id, view in outcome.views.items():
        assert view["status"] in TERMINAL_STATUSES, view
        result = json.loads(s3.get_object(Bucket=cloud.bucket_name, Key=f"jobs/{job_id}/result.json")["Body"].read())
        assert result["status"] == view["status"] and result["jobId"] == job_id
        if not view.get("slurmJobId"):  # sbatch refused it (e.g. a partition this cluster does not have)
            assert view["status"] == "SUBMIT_FAILED" and "sbatch" in (view.get("cause") or "").lower() + str(
                view.get("error")
            ), view


def accounted_jobs(stack, since: datetime, expected: int, timeout: float = 60) -> dict[str, str]:
    """Slurm job id → job name of every job submitted since `since`, from accounting (which receives records
    asynchronously: wait for the expected number)."""
    deadline = time.monotonic() + timeout
    while True:
        done = stack.cluster.run(
            "sacct",
            "--noheader",
            "--parsable2",
            "--allocations",
            "--allusers",
            f"--starttime={since:%Y-%m-%dT%H:%M:%S}",
            "--format=JobID,JobName",
        )
        jobs = dict(line.split("|", 1) for line in done.stdout.split("\n") if line)
        jobs = {job.split("_")[0]: name for job, name in jobs.items()}  # array tasks: one job
        if len(jobs) >= expected or time.monotonic() > deadline:
            return jobs


def remembered_jobs(stack, slurm_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Slurm job id → (comment, working directory) from the controller, byte for byte (accounting stores neither
    the comment nor non-ASCII text faithfully). MinJobAge keeps every job of this module in its memory."""
    done = stack.cluster.run(
        "squeue", "--noheader", "--states=all", f"--jobs={','.join(slurm_ids)}", "--format=%F|%k|%Z"
    )
    jobs = {}
    for line in done.stdout.split("\n"):
        if line:
            job, comment, work_dir = line.split("|", 2)  # the working directory may itself hold a "|"
            jobs[job] = (comment, work_dir)
    return jobs


def test_slurm_ran_exactly_the_accepted_jobs_once_each(stack, cloud, outcome):
    sfn = cloud.client("stepfunctions")
    home = pwd.getpwnam(stack.cluster_user).pw_dir
    names: dict[str, str] = {}
    details: dict[str, tuple[str, str]] = {}
    for item in outcome.accepted:
        view = outcome.views[item.job_id]
        if not view.get("slurmJobId"):
            continue
        slurm_id = view["slurmJobId"]
        assert slurm_id not in names, "two jobs of the API share one Slurm job"
        submission = json.loads(sfn.describe_execution(executionArn=view["execution"]["arn"])["input"])["submissionId"]
        spec = item.verdict.spec
        names[slurm_id] = spec.get("name") or DEFAULT_JOB_NAME
        directory = f"{home}/{JOB_DIRECTORIES}/{item.job_id}/{submission}"
        details[slurm_id] = (f"slurm-job-api:{item.job_id}:{submission}", spec.get("workingDirectory") or directory)
    foreign = cloud.api_client(LOCAL_OTHER).get(f"/jobs/{outcome.foreign_job}").json()
    accounted = accounted_jobs(stack, outcome.started_at, len(names) + 1)
    assert accounted.pop(foreign["slurmJobId"]) == "not-yours"
    assert sorted(accounted) == sorted(names)
    assert accounted == names
    assert remembered_jobs(stack, sorted(details)) == details


def test_no_canary_fired(outcome, canaries):
    assert len(canaries.paths) > 200
    assert canaries.fired() == []
