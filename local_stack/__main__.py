"""The local stack's command line.

    python -m local_stack demo     run the example job (events/api-submit-job.json) through the whole product on a
                                   real local Slurm cluster, following it to the end; exit 0 only if it COMPLETED
    python -m local_stack serve    keep the local API up for curl, with ready-to-paste examples

Both need root (they start Slurm daemons and switch to the cluster user as a head node does).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import requests

from local_stack.api_gateway import DEFAULT_PRINCIPALS, LOCAL_DEVELOPER, ApiClient
from local_stack.cloud import LocalCloud
from local_stack.sam_env_vars import export_line, invoke_command_lines, sam_environment, write_env_vars_file
from local_stack.stack import REPO_ROOT, LocalStack, LocalStackError

EVENTS_DIR = REPO_ROOT / "events"
EXAMPLE_EVENT = EVENTS_DIR / "api-submit-job.json"
# Where `serve` writes the --env-vars file of `sam local invoke` (gitignored; removed when serve stops).
SAM_ENV_VARS_FILE = REPO_ROOT / ".sam-local" / "env-vars.json"
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "SUBMIT_FAILED",
    "ERROR",
    "UNKNOWN",
}


def example_job() -> tuple[dict, str | None]:
    """The job spec and Idempotency-Key of the example POST /jobs event."""
    event = json.loads(EXAMPLE_EVENT.read_text())
    headers = {key.lower(): value for key, value in event["headers"].items()}
    return json.loads(event["body"]), headers.get("idempotency-key")


def say(text: str) -> None:
    print(text, flush=True)


def follow(api: ApiClient, job_id: str, timeout: float) -> dict:
    """Polls GET /jobs/{jobId}, printing each change, until the job has ended and its results are written."""
    start = time.monotonic()
    shown = None
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        view = (job["status"], job.get("slurmState"), job.get("reason"), job["execution"]["status"])
        if view != shown:
            shown = view
            status, slurm_state, reason, execution = view
            details = ", ".join(
                part
                for part in (
                    f"Slurm job {job['slurmJobId']}" if job.get("slurmJobId") else "",
                    f"Slurm state {slurm_state}" if slurm_state else "",
                    f"reason {reason}" if reason else "",
                    f"execution {execution}",
                )
                if part
            )
            say(f"  [{time.monotonic() - start:6.1f}s] {status:<13} {details}")
        if job["status"] in TERMINAL and job["execution"]["status"] != "RUNNING":
            return job
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s")
        time.sleep(0.5)


def quiet_handlers() -> None:
    """Keeps the handlers' JSON logs and metrics (what CloudWatch would get) off the terminal."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def demo(args: argparse.Namespace) -> int:
    quiet_handlers()
    spec, idempotency_key = example_job()
    say("Starting the local stack: Slurm, moto (Step Functions, Lambda, S3, DynamoDB, SSM, EC2), the local API...")
    with LocalStack(parameters={"PollMinSeconds": str(args.poll_seconds)}) as stack:
        cloud = stack.running_cloud
        api = cloud.api_client(LOCAL_DEVELOPER)
        say(f"API: {cloud.api_url}")
        say(f"Caller: {LOCAL_DEVELOPER.arn}, mapped to the cluster user {stack.caller_mappings[LOCAL_DEVELOPER.arn]}")
        say(f"Submitting the example job from {EXAMPLE_EVENT.relative_to(REPO_ROOT)}:")
        say("  " + json.dumps(spec)[:300])
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = api.post("/jobs", json=spec, headers=headers)
        if answer.status_code != 202:
            say(f"POST /jobs answered {answer.status_code}: {answer.text}")
            return 1
        accepted = answer.json()
        say(f"Accepted: job {accepted['jobId']} (HTTP 202, Location {answer.headers['Location']})")
        say(f"  execution {accepted['executionArn']}")
        job = follow(api, accepted["jobId"], timeout=args.timeout)
        say(f"Finished: {job['status']} — {job.get('cause')} (ran as the cluster user {job.get('clusterUser')})")
        output = api.get(f"/jobs/{accepted['jobId']}/output").json()
        links = {item["name"]: item["url"] for item in output.get("files", [])}
        if "result.json" in links:
            result = requests.get(links["result.json"], timeout=30).json()
            say("result.json (read back from S3):")
            say(json.dumps(result, indent=2))
        for name in ("stdout", "stderr", *(n for n in links if n.startswith("outputs/"))):
            if name in links:
                say(f"--- {name} (read back from S3) ---")
                say(requests.get(links[name], timeout=30).text.rstrip("\n"))
        return 0 if job["status"] == "COMPLETED" else 1


CURL_EXAMPLES = """\
The local API is up: {url}
Caller: {arn} (its jobs run as the cluster user {user})
Callers and who their jobs run as (scripts/caller-mappings list):
{mappings}
Every request must be signed (AWS_IAM), as on AWS. With curl 7.75 or newer:

  export API={url}
  SIGV4=(--aws-sigv4 "aws:amz:us-east-1:execute-api" --user "{key}:{secret}")

  # submit the example job
  curl -s "${{SIGV4[@]}}" -H 'Content-Type: application/json' -H 'Idempotency-Key: try-1' \\
       --data '{spec}' "$API/jobs"

  # follow it (use the jobId from the answer), list your jobs, get its output links, cancel it
  curl -s "${{SIGV4[@]}}" "$API/jobs/<jobId>"
  curl -s "${{SIGV4[@]}}" "$API/jobs?limit=10"
  curl -s "${{SIGV4[@]}}" "$API/jobs/<jobId>/output"
  curl -s "${{SIGV4[@]}}" -X DELETE "$API/jobs/<jobId>"
  curl -s "${{SIGV4[@]}}" "$API/openapi.json"

Or with the command line client (pip install ./client; make test's .venv has it):

  export SJA_API_URL={url} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret}
  printf '#!/bin/bash\\necho hello from $(hostname)\\n' | sja submit --wait -J hello -t 5 -
  sja list
  sja watch <jobId>
  sja download <jobId>

"""

SAM_LOCAL_INVOKE = """\
Each function in Docker against this stack, with sam local invoke after sam build; {env_vars} points every
function at this stack, and the exports keep SAM itself on it too (its STS call, region, placeholder keys). SAM CLI
1.170 leaves the container off the host's network despite --docker-network host: run
`.venv-sam/bin/python scripts/sam_local/sam_host_network.py` as `sam` (make sam-local-invoke does, offline):

  {exports}
{invocations}
"""


def print_sam_local_invoke(cloud: LocalCloud, env_vars_file: Path) -> None:
    """Writes the --env-vars file for this stack and prints the sam local invoke lines of the events/ files."""
    write_env_vars_file(env_vars_file, cloud.model, cloud.endpoint_url)
    lines = invoke_command_lines(cloud.model, env_vars_file, EVENTS_DIR, REPO_ROOT)
    say(
        SAM_LOCAL_INVOKE.format(
            env_vars=env_vars_file,
            exports=export_line(sam_environment(cloud.region, cloud.endpoint_url)),
            invocations="\n".join(f"  {line}" for line in lines),
        )
    )


def serve(args: argparse.Namespace) -> int:
    quiet_handlers()
    spec, _ = example_job()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with LocalStack(parameters={"PollMinSeconds": str(args.poll_seconds)}) as stack:
        cloud = stack.running_cloud
        say(
            CURL_EXAMPLES.format(
                url=cloud.api_url,
                arn=LOCAL_DEVELOPER.arn,
                user=stack.caller_mappings[LOCAL_DEVELOPER.arn],
                mappings="\n".join(
                    f"  {principal.arn} (key {principal.access_key_id}, secret {principal.secret_access_key}): "
                    + stack.caller_mappings.get(principal.arn, "not mapped, refused with 403")
                    for principal in DEFAULT_PRINCIPALS.values()
                ),
                key=LOCAL_DEVELOPER.access_key_id,
                secret=LOCAL_DEVELOPER.secret_access_key,
                spec=json.dumps(spec).replace("'", "'\\''"),
            )
        )
        print_sam_local_invoke(cloud, args.sam_env_vars)
        say("Press Ctrl-C to stop.")
        try:
            while not stopping.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            args.sam_env_vars.unlink(missing_ok=True)  # it names this stack's endpoint, which is going away
        say("Stopping the local stack.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the example job end to end and print its results")
    demo_parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the job (default 300)")
    serve_parser = commands.add_parser("serve", help="keep the local API up and print curl examples")
    serve_parser.add_argument(
        "--sam-env-vars",
        type=Path,
        default=SAM_ENV_VARS_FILE,
        help="where to write the --env-vars file of sam local invoke (default .sam-local/env-vars.json)",
    )
    for sub in (demo_parser, serve_parser):
        sub.add_argument("--poll-seconds", type=int, default=2, help="PollMinSeconds of the local stack (default 2)")
    args = parser.parse_args(argv)
    try:
        return demo(args) if args.command == "demo" else serve(args)
    except LocalStackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
