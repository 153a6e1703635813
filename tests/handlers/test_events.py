"""Every events/*.json, loaded through its function's event model and invoked on that function (moto's Lambda Invoke,
served by the local stack's runtime from template.yaml) against moto resources built from template.yaml; Slurm is
scripted (tests/support/fake_slurm.py). A stale event fails here: a key its model does not declare, or an answer
that is not the one its route or step gives for a job that exists.

The API events are invoked for jobs that the API event for POST /jobs created, their example job id and execution
ARN replaced by those jobs' own. The workflow events keep their example job: its spec (the POST /jobs event's body)
and script are put where the API would have stored them, and the submit event (the first step) makes its record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel, DynamoDBStreamModel
from botocore.config import Config
from pydantic import BaseModel, ConfigDict

from harness.scripted_slurm import CONFIG, NO_EARLIER_JOB, scontrol_line, squeue_line
from harness.workflow import execution_arn, wait_for_execution
from slurm_job_api.api_models import InputUploadRequest
from slurm_job_api.jobs_api import request_hash
from slurm_job_api.results import script_key, spec_key
from slurm_job_api.spec import JobSpec
from slurm_job_api.workflow_events import AwaitNewsEvent, FinishJobEvent, News, PollJobEvent, SubmitJobEvent

EVENTS = Path(__file__).resolve().parents[2] / "events"
API_FUNCTION = "ApiFunction"


def event_text(name: str) -> str:
    return (EVENTS / name).read_text()


# The example job of the events: every event names this job and its execution, and its spec is the POST /jobs body.
EXAMPLE = json.loads(event_text("submit-job.json"))
EXAMPLE_JOB_ID, EXAMPLE_EXECUTION_ARN = EXAMPLE["jobId"], EXAMPLE["executionArn"]
EXAMPLE_SPEC = json.loads(json.loads(event_text("api-submit-job.json"))["body"])


class ScheduledEvent(BaseModel):
    """The sweep's schedule invokes it with an empty event (the schedule declares no Input): nothing to declare."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class EventCase:
    """How one event file is checked: the function it is for, the model its handler parses it with, and the models of
    the parts the handler parses itself from untyped fields (dotted key paths; None: a part with no model)."""

    function: str
    model: type[BaseModel]
    parts: Mapping[str, type[BaseModel] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiCase(EventCase):
    """An API event: the status its route answers, and which job it names ("finished", "running" or none)."""

    function: str = API_FUNCTION
    model: type[BaseModel] = APIGatewayProxyEventModel
    status: int = 200
    job: str | None = None


# The finish step gets the whole workflow state (typed: WorkflowState); the error is a Catch result with no model.
FINISH_STATE = {"state.error": None}

API_EVENTS = {
    "api-submit-job.json": ApiCase(status=202, parts={"body": JobSpec}),
    "api-create-input-upload.json": ApiCase(parts={"body": InputUploadRequest}),
    "api-list-jobs.json": ApiCase(),
    "api-get-job.json": ApiCase(job="finished"),
    "api-get-job-by-execution-arn.json": ApiCase(job="finished"),
    "api-get-job-output.json": ApiCase(job="finished"),
    "api-cancel-job.json": ApiCase(status=202, job="running"),
    "api-openapi.json": ApiCase(),
}
# In the order the workflow runs them: submitting makes the record the others update.
WORKFLOW_EVENTS = {
    "submit-job.json": EventCase("SubmitJobFunction", SubmitJobEvent),
    "poll-job.json": EventCase("PollJobFunction", PollJobEvent),
    # JobTracking sweep: the wait for news, a sweep of the cluster, and the poll a sweep's news woke.
    "await-news.json": EventCase("AwaitNewsFunction", AwaitNewsEvent),
    "sweep-jobs.json": EventCase("SweepJobsFunction", ScheduledEvent),
    "poll-job-woken.json": EventCase("PollJobFunction", PollJobEvent, {"job.news": News}),
    "finish-job-after-error.json": EventCase("FinishJobFunction", FinishJobEvent, FINISH_STATE),
    "finish-job.json": EventCase("FinishJobFunction", FinishJobEvent, FINISH_STATE),
    # The jobs table's stream: the example job's record going from SUBMITTING to PENDING. The images are the record
    # in DynamoDB's typed attributes, which the handler reads as a JobRecord (invoking it checks them).
    "publish-job-events.json": EventCase(
        "PublishJobEventsFunction",
        DynamoDBStreamModel,
        {"Records.dynamodb.NewImage": None, "Records.dynamodb.OldImage": None},
    ),
}
CASES: dict[str, EventCase] = {**API_EVENTS, **WORKFLOW_EVENTS}


# -- the event models -------------------------------------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The Pydantic models an annotation holds: Model, Model | None, list[Model], ..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for argument in get_args(annotation) for model in _models_in(argument)]


def undeclared_keys(data: Any, model: type[BaseModel], parts: Mapping[str, Any], where: str = "") -> list[str]:
    """Dotted paths of the keys in `data` that `model` (or the part's own model) does not declare, at any depth.

    The models ignore unknown keys, so parsing alone would not notice an event left behind by a renamed field."""
    if isinstance(data, list):
        return [key for item in data for key in undeclared_keys(item, model, parts, where)]
    if not isinstance(data, dict):
        return []
    declared = dict(model.model_fields)
    declared |= {info.alias: info for info in model.model_fields.values() if info.alias}
    found: list[str] = []
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if path in parts:
            part = parts[path]
            if part is not None:
                found += undeclared_keys(json.loads(value) if isinstance(value, str) else value, part, parts, path)
            continue
        if key not in declared:
            found.append(path)
            continue
        for nested in _models_in(declared[key].annotation):
            found += undeclared_keys(value, nested, parts, path)
    return found


def loaded(name: str, text: str | None = None) -> dict:
    """The event, parsed by its function's model; fails on a key that neither it nor its parts' models declare (the
    handler parses the parts itself when it is invoked)."""
    case = CASES[name]
    event = json.loads(text if text is not None else event_text(name))
    case.model.model_validate(event)
    assert undeclared_keys(event, case.model, case.parts) == [], f"{name} has keys its models do not declare"
    return event


def test_every_event_file_has_a_case():
    assert sorted(path.name for path in EVENTS.glob("*.json")) == sorted(CASES)


def test_workflow_events_reference_the_example_spec():
    """The workflow events carry the spec's key and hash, never the spec: both are those of the POST /jobs body."""
    digest = request_hash(JobSpec.model_validate(EXAMPLE_SPEC))
    for name in ("submit-job.json", "finish-job.json", "finish-job-after-error.json"):
        event = json.loads(event_text(name))
        state = event.get("state", event)
        assert (state["requestHash"], state["specKey"]) == (digest, spec_key(EXAMPLE_JOB_ID)), name
        assert "spec" not in state, name


def test_an_undeclared_key_is_found_at_any_depth():
    event = json.loads(event_text("finish-job.json"))
    event["state"]["job"]["exitStatus"] = event["state"]["job"].pop("exitCode")
    event["state"]["spec"] = {"cpus": 1}
    event["retries"] = 0
    found = undeclared_keys(event, FinishJobEvent, FINISH_STATE)
    assert sorted(found) == ["retries", "state.job.exitStatus", "state.spec"]
    poll = json.loads(event_text("poll-job.json"))
    poll["job"]["slurmId"] = poll["job"].pop("slurmJobId")
    assert undeclared_keys(poll, PollJobEvent, {}) == ["job.slurmId"]


# -- invoking the functions -------------------------------------------------------------------------------------------


def invoke(cloud, function: str, event: dict) -> dict:
    """Invoke the function through moto's Lambda API; a function error fails the test with Lambda's error payload."""
    client = cloud.client("lambda", config=Config(read_timeout=900, retries={"max_attempts": 1}))
    response = client.invoke(FunctionName=cloud.function_names[function], Payload=json.dumps(event))
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, payload
    return payload


def with_idempotency_key(event: dict, key: str) -> dict:
    return {
        **event,
        "headers": {**event["headers"], "Idempotency-Key": key},
        "multiValueHeaders": {**event["multiValueHeaders"], "Idempotency-Key": [key]},
    }


def naming(text: str, cloud, job_id: str) -> str:
    """The event's text naming `job_id` and its execution in this cloud instead of the example job."""
    actual_arn = execution_arn(cloud, job_id)
    for example, actual in ((EXAMPLE_EXECUTION_ARN, actual_arn), (EXAMPLE_JOB_ID, job_id)):
        text = text.replace(quote(example, safe=""), quote(actual, safe="")).replace(example, actual)
    return text


def stop_running_executions(cloud) -> None:
    sfn = cloud.client("stepfunctions")
    for execution in sfn.list_executions(stateMachineArn=cloud.state_machine_arn, statusFilter="RUNNING")["executions"]:
        sfn.stop_execution(executionArn=execution["executionArn"], cause="test over")


def wait_for_record_status(cloud, job_id: str, status: str, timeout: float = 60) -> None:
    dynamodb = cloud.client("dynamodb")
    deadline = time.monotonic() + timeout
    while True:
        item = dynamodb.get_item(TableName=cloud.table_name, Key={"jobId": {"S": job_id}})["Item"]
        if item["status"]["S"] == status:
            return
        assert time.monotonic() < deadline, f"job {job_id} is {item['status']['S']}, not {status}, after {timeout} s"
        time.sleep(0.2)


@pytest.fixture(scope="class")
def jobs(cloud, slurm) -> Iterator[dict[str, str]]:
    """A finished and a running job of the events' caller, made by the API event for POST /jobs."""
    submit = loaded("api-submit-job.json")
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", "write": {"--output": "hello\n"}}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("COMPLETED")],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )
    finished = json.loads(invoke(cloud, API_FUNCTION, with_idempotency_key(submit, "events-finished"))["body"])
    assert wait_for_execution(cloud, finished["jobId"])["status"] == "SUCCEEDED"
    slurm.set(
        {
            "sbatch": [{"stdout": "102\n"}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("RUNNING", job="102")],
        }
    )
    running = json.loads(invoke(cloud, API_FUNCTION, with_idempotency_key(submit, "events-running"))["body"])
    wait_for_record_status(cloud, running["jobId"], "RUNNING")
    yield {"finished": finished["jobId"], "running": running["jobId"]}
    stop_running_executions(cloud)


class TestApiEvents:
    @pytest.mark.parametrize("name", list(API_EVENTS))
    def test_api_event_gets_its_routes_answer(self, cloud, jobs, name):
        case = API_EVENTS[name]
        text = event_text(name) if case.job is None else naming(event_text(name), cloud, jobs[case.job])
        answer = invoke(cloud, API_FUNCTION, loaded(name, text))
        assert answer["statusCode"] == case.status, answer["body"]
        if case.job is not None:
            assert jobs[case.job] in answer["body"], answer["body"]


@pytest.fixture(scope="class")
def example_job(cloud, slurm) -> str:
    """The events' example job, its spec and script where the API stores them and its record made by the submit
    event."""
    stop_running_executions(cloud)  # nothing else asks the scripted Slurm while these run
    slurm.set(
        {
            "sbatch": [{"stdout": "101\n", "write": {"--output": "hello\n"}}],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [NO_EARLIER_JOB, squeue_line("RUNNING")],
            "scontrol": [scontrol_line("RUNNING", "0:0")],
        }
    )
    s3 = cloud.client("s3")
    s3.put_object(Bucket=cloud.bucket_name, Key=script_key(EXAMPLE_JOB_ID), Body=EXAMPLE_SPEC["script"].encode())
    s3.put_object(Bucket=cloud.bucket_name, Key=spec_key(EXAMPLE_JOB_ID), Body=json.dumps(EXAMPLE_SPEC).encode())
    invoke(cloud, "SubmitJobFunction", loaded("submit-job.json"))
    return EXAMPLE_JOB_ID


class TestWorkflowEvents:
    @pytest.mark.parametrize("name", list(WORKFLOW_EVENTS))
    def test_workflow_event_runs_its_step(self, cloud, example_job, name):
        event = loaded(name)
        dynamodb, record_key = cloud.client("dynamodb"), {"jobId": {"S": example_job}}
        if name.startswith("poll-job"):  # PollJob runs once a wait for news is over: the record still keeps it
            dynamodb.update_item(
                TableName=cloud.table_name,
                Key=record_key,
                UpdateExpression="SET waitToken = :token, waitingProgress = :progress",
                ExpressionAttributeValues={":token": {"S": "token-of-the-wait"}, ":progress": {"M": {}}},
            )
        answer = invoke(cloud, WORKFLOW_EVENTS[name].function, event) or {}  # AwaitNews answers nothing
        expected = STEP_ANSWERS[name]
        assert {key: answer.get(key) for key in expected} == expected
        item = dynamodb.get_item(TableName=cloud.table_name, Key=record_key)["Item"]
        if name == "await-news.json":  # what it did instead: the token and the waiting progress are in the record
            assert item["waitToken"]["S"] == event["taskToken"]
        if name.startswith("poll-job"):  # and it dropped the wait: a sweep has nobody to wake until the next one
            assert "waitToken" not in item and "waitingProgress" not in item


# What each step answers for the example job with the Slurm answers above.
STEP_ANSWERS: dict[str, dict[str, Any]] = {
    "submit-job.json": {"jobId": EXAMPLE_JOB_ID, "slurmJobId": "101", "status": "PENDING", "done": False},
    "poll-job.json": {"jobId": EXAMPLE_JOB_ID, "slurmJobId": "101", "status": "RUNNING", "done": False},
    "await-news.json": {},
    # One command for every active job of the cluster; Slurm (scripted) says the example job runs: its wait (a token
    # no execution holds) gets a heartbeat, which Step Functions answers as a task that has moved on.
    "sweep-jobs.json": {"commands": 1, "woken": 0, "gone": 1},
    # Scripted Slurm still says RUNNING: the answer is the sweep's news, and no status command was sent.
    "poll-job-woken.json": {"jobId": EXAMPLE_JOB_ID, "slurmJobId": "101", "status": "COMPLETED", "done": True},
    "finish-job-after-error.json": {"status": "SUBMIT_FAILED", "resultKey": f"jobs/{EXAMPLE_JOB_ID}/result.json"},
    "finish-job.json": {"status": "COMPLETED", "resultKey": f"jobs/{EXAMPLE_JOB_ID}/result.json"},
    # Published on the bus: no record of the batch failed.
    "publish-job-events.json": {"batchItemFailures": []},
}
