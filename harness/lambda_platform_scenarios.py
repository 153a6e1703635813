"""Fault scenarios about Lambda itself on the real local stack: inits that fail (``Runtime.InitError``) and a
cold-start storm whose inits all outlast the init limit. Jobs go through the HTTP API to real Slurm; every job is
checked as in benchmarks/reliability.py (record, result.json, status, exactly one run).

These scenarios run on a cluster of their own (:data:`LAMBDA_FAULTS_CLUSTER`), without accounting and with Slurm's
default MinJobAge, so that slurmctld still knows every job when the outcomes are read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack

from harness.fault_stacks import DEFAULT_MIN_JOB_AGE, ClusterPlace, local_stack
from harness.reliability import JobPlan, JobRun, ScenarioResult
from local_stack.lambda_runtime import INIT_ERROR
from local_stack.stack import LocalStack

LAMBDA_FAULTS_CLUSTER = ClusterPlace(name="faults-lambda", port_base=13817, accounting=False)
WORKFLOW_FUNCTIONS = ("SubmitJobFunction", "PollJobFunction", "FinishJobFunction")
# So low that every cold start outlasts it: each init is retried within the function's Timeout. (Since the forkserver
# preloads the layer, an init can take less than 10 ms: 0.01 s let one in eight through.)
STORM_INIT_LIMIT_SECONDS = 0.001


def _jobs_run_to_their_end(stack: LocalStack, name_prefix: str, jobs: int) -> JobRun:
    run = JobRun(stack, name_prefix)
    run.submit(JobPlan(seconds=1), count=jobs)
    run.wait_for_executions(timeout=300)
    return run


def _per_function(counter: Callable[[str], int]) -> dict[str, int]:
    return {function: counter(function) for function in WORKFLOW_FUNCTIONS}


def failing_inits(place: ClusterPlace = LAMBDA_FAULTS_CLUSTER, *, jobs: int = 3) -> ScenarioResult:
    """The first ``jobs`` cold starts of each workflow function fail with Runtime.InitError while ``jobs`` jobs run."""
    started = time.monotonic()
    with local_stack(place, min_job_age=DEFAULT_MIN_JOB_AGE) as stack:
        runtime = stack.running_cloud.runtime
        with ExitStack() as faults:
            for function in WORKFLOW_FUNCTIONS:
                faults.enter_context(runtime.failing_inits(function, jobs))
            run = _jobs_run_to_their_end(stack, "init-error", jobs)
        injected = _per_function(runtime.init_faults_injected)
        result = ScenarioResult(
            key="lambda-init-errors",
            title="Lambda inits fail",
            fault=f"the first {jobs} cold starts of each of {', '.join(WORKFLOW_FUNCTIONS)} fail with {INIT_ERROR}",
            jobs=run.outcomes(),
            faults_injected={f"{function} inits failed": count for function, count in injected.items()},
        )
    result.findings.append(
        f"Step Functions retried {result.retried_errors().get(INIT_ERROR, 0)} task attempts that failed with "
        f"{INIT_ERROR}; every job then ended as it would have without the fault."
    )
    return result.timed_from(started)


def cold_start_storm(place: ClusterPlace = LAMBDA_FAULTS_CLUSTER, *, jobs: int = 8) -> ScenarioResult:
    """``jobs`` jobs at once on cold functions whose every init outlasts the (lowered) init limit."""
    started = time.monotonic()
    with local_stack(place, min_job_age=DEFAULT_MIN_JOB_AGE) as stack:
        runtime = stack.running_cloud.runtime
        runtime.init_timeout_seconds = STORM_INIT_LIMIT_SECONDS
        run = _jobs_run_to_their_end(stack, "cold-storm", jobs)
        retried = _per_function(runtime.inits_retried)
        result = ScenarioResult(
            key="cold-start-storm",
            title="Cold-start storm over the init limit",
            fault=(
                f"{jobs} jobs at once on cold functions, with the init limit lowered to {STORM_INIT_LIMIT_SECONDS} s "
                "so that every init outlasts it"
            ),
            jobs=run.outcomes(),
            faults_injected={f"{function} inits retried": count for function, count in retried.items()},
            evidence={"cold_starts": _per_function(runtime.environments_created)},
        )
    result.findings.append(
        f"{sum(retried.values())} inits outlasted the init limit and were retried within the function's Timeout, "
        "as Lambda does; no task attempt failed."
    )
    return result.timed_from(started)
