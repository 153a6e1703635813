"""`sam local invoke` of the API and the sweep functions against a running local stack, with their answers checked.

Run by scripts/sam-local-invoke-offline.sh (which builds the image, runs `sam build` and starts the stack):

    .venv/bin/python -m scripts.sam_local.invoke_and_check --env-vars .sam-local/env-vars.json \
        --template .sam-local/build/template.yaml --sam .venv-sam/bin/python scripts/sam_local/sam_host_network.py

Each function runs in Docker on the host's network, pointed at the stack by the --env-vars file that `make serve`
wrote. In turn: ApiFunction answers POST /jobs (events/api-submit-job.json, with a job that runs 30 s and a key of
its own) with 202, and the job record it wrote is in the stack's table; SweepJobsFunction (events/sweep-jobs.json)
sweeps the cluster while that job is active, which is an SSM command that the local head node runs against Slurm; the
stack's own workflow runs the job to COMPLETED; ApiFunction answers GET /jobs/{jobId} (events/api-get-job.json for
that job) with 200 and COMPLETED. `sam local invoke` exits 0 even when the handler fails, so every answer is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local_stack.sam_env_vars import ENDPOINT_VARIABLE, sam_environment
from local_stack.template_model import DEFAULT_REGION

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENTS = REPO_ROOT / "events"
JOB_SECONDS = 30
INVOKE_TIMEOUT_SECONDS = 300
JOB_TIMEOUT_SECONDS = 240


class CheckFailed(Exception):
    pass


@dataclass(frozen=True)
class Sam:
    argv: list[str]
    template: Path
    env_vars: Path
    environment: dict[str, str]

    def invoke(self, function: str, event: Path) -> Any:
        """The function's answer (SAM's stdout); its REPORT line is printed."""
        argv = [
            *self.argv,
            "local",
            "invoke",
            function,
            "--event",
            str(event),
            "--env-vars",
            str(self.env_vars),
            "--template",
            str(self.template),
            "--docker-network",
            "host",
            "--skip-pull-image",
        ]
        say(f"$ sam local invoke {function} -e {shown(event)} --env-vars {shown(self.env_vars)} --docker-network host")
        started = time.monotonic()
        done = subprocess.run(
            argv, env=self.environment, capture_output=True, text=True, timeout=INVOKE_TIMEOUT_SECONDS, check=False
        )
        for line in done.stderr.splitlines():
            if line.startswith("REPORT"):
                say(f"  {line.strip()}")
        answer_lines = [line for line in done.stdout.splitlines() if line.strip()]
        if done.returncode != 0 or not answer_lines:
            raise CheckFailed(f"sam local invoke {function} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        answer = json.loads(answer_lines[-1])
        if isinstance(answer, dict) and "errorType" in answer:
            raise CheckFailed(f"{function} failed in its container: {answer}\n{done.stderr}")
        say(f"  answer in {time.monotonic() - started:.1f} s: {json.dumps(answer)[:400]}")
        return answer


def say(text: str) -> None:
    print(text, flush=True)


def shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)
    say(f"  ok: {what}")


def derived_event(source: Path, work_dir: Path, name: str, change: dict[str, Any]) -> Path:
    """A copy of an events/ file with some top-level fields changed, written into ``work_dir``."""
    event = {**json.loads(source.read_text()), **change}
    path = work_dir / name
    path.write_text(json.dumps(event, indent=2) + "\n")
    return path


def submit_event(work_dir: Path) -> Path:
    """events/api-submit-job.json with a job that runs JOB_SECONDS (so a sweep finds it active) and a fresh key."""
    source = EVENTS / "api-submit-job.json"
    event = json.loads(source.read_text())
    spec = json.loads(event["body"])
    shebang, rest = spec["script"].split("\n", 1)
    spec["script"] = f"{shebang}\nsleep {JOB_SECONDS}\n{rest}"
    headers = {**event["headers"], "Idempotency-Key": f"sam-local-invoke-{uuid.uuid4()}"}
    multi = {**event.get("multiValueHeaders", {}), "Idempotency-Key": [headers["Idempotency-Key"]]}
    change = {"body": json.dumps(spec), "headers": headers, "multiValueHeaders": multi}
    return derived_event(source, work_dir, "api-submit-job.json", change)


def get_job_event(work_dir: Path, job_id: str) -> Path:
    source = EVENTS / "api-get-job.json"
    event = json.loads(source.read_text())
    context = {**event["requestContext"], "path": f"/v1/jobs/{job_id}"}
    change = {"path": f"/jobs/{job_id}", "pathParameters": {"jobId": job_id}, "requestContext": context}
    return derived_event(source, work_dir, "api-get-job.json", change)


def wait_for_end(table: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        item = table.get_item(Key={"jobId": job_id}, ConsistentRead=True).get("Item") or {}
        if item.get("status") in ("COMPLETED", "FAILED", "ERROR", "SUBMIT_FAILED", "CANCELLED", "TIMEOUT"):
            return item
        time.sleep(1)
    raise CheckFailed(f"job {job_id} did not end within {JOB_TIMEOUT_SECONDS} s")


def run(sam: Sam, variables: dict[str, dict[str, str]], work_dir: Path) -> None:
    api = variables["ApiFunction"]
    endpoint = api[ENDPOINT_VARIABLE]
    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=sam.environment["AWS_REGION"],
        aws_access_key_id=sam.environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=sam.environment["AWS_SECRET_ACCESS_KEY"],
    )
    table = dynamodb.Table(api["JOBS_TABLE_NAME"])
    owner = json.loads((EVENTS / "api-submit-job.json").read_text())["requestContext"]["identity"]["userArn"]

    submitted = sam.invoke("ApiFunction", submit_event(work_dir))
    check(submitted.get("statusCode") == 202, f"POST /jobs answered 202 (got {submitted.get('statusCode')})")
    job_id = json.loads(submitted["body"])["jobId"]
    record = table.get_item(Key={"jobId": job_id}, ConsistentRead=True).get("Item")
    check(record is not None and record["owner"] == owner, f"the local stack's table has job {job_id} of {owner}")

    swept = sam.invoke("SweepJobsFunction", EVENTS / "sweep-jobs.json")
    check(
        swept.get("commands") == 1 and swept.get("asked", 0) >= 1,
        f"the sweep asked the local head node about {swept.get('asked')} active job(s) in one SSM command",
    )

    ended = wait_for_end(table, job_id)
    check(ended["status"] == "COMPLETED", f"the local stack ran job {job_id} to {ended['status']} on Slurm")

    described = sam.invoke("ApiFunction", get_job_event(work_dir, job_id))
    job = json.loads(described.get("body") or "{}")
    status = (described.get("statusCode"), job.get("status"))
    check(status == (200, "COMPLETED"), f"GET /jobs/{job_id} answered {status} (Slurm job {job.get('slurmJobId')})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-vars", type=Path, required=True, help="the file `make serve` wrote")
    parser.add_argument("--template", type=Path, required=True, help="the template `sam build` wrote")
    parser.add_argument("--work-dir", type=Path, required=True, help="where to write the derived events")
    parser.add_argument("--sam", nargs="+", required=True, help="the SAM CLI command (argv)")
    args = parser.parse_args(argv)
    variables = json.loads(args.env_vars.read_text())
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("AWS_")},
        **sam_environment(DEFAULT_REGION, variables["ApiFunction"][ENDPOINT_VARIABLE]),
    }
    args.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        run(Sam(args.sam, args.template, args.env_vars, environment), variables, args.work_dir)
    except CheckFailed as failure:
        say(f"FAILED: {failure}")
        return 1
    say("sam local invoke: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
