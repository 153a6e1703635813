"""docs/reliability.md from the measurements (pure: text in, text out)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from harness.long_jobs import (
    CASES,
    EXECUTION_EVENT_LIMIT,
    JOB_LENGTHS,
    LongJobCase,
    LongJobCost,
    predicted_polls,
)
from harness.reliability import JobOutcome, ScenarioResult

DEFAULT_MAX_POLLS_PER_EXECUTION = 2000

INTRODUCTION = """\
How the product holds up when things go wrong, measured on the local stack (README, "The local stack"): a real
Slurm cluster, the real state machine executed by moto, the real Lambda handlers, this machine as the head node
behind SSM, requests signed and sent through the local API Gateway. Nothing here is estimated unless it says so.

Each fault scenario (`harness/fault_scenarios.py`, `harness/purge_scenarios.py`, `harness/sweep_scenarios.py`)
submits jobs through the HTTP API, injects its fault while they run, and then checks every accepted job against
independent sources (`harness/reliability.py`):

- **lost**: the workflow did not end with a terminal job record (GET /jobs/{id}) *and* a
  `jobs/<jobId>/result.json`, or a job that should have run never ran;
- **duplicated**: Slurm took or ran the job more than once — by Slurm's own records of the scenario's unique job
  name (`sacct` with accounting, `squeue --states=all` without) and by a ledger each job appends to when it starts;
  or the job was finished more than once — more than one successful FinishJob invocation, more than one write of
  its result.json or of its record's final fields (counted where they land, in the local cloud's S3 and DynamoDB:
  `harness/final_writes.py`), or its record written after its finish (its `updatedAt` is not its `finishedAt`, which
  result.json repeats);
- **wrong final state**: the record or result.json says another status (or exit code) than the job's plan.

The same code runs in the tests (`tests/faults`), which fail on any lost, duplicated or wrong job."""


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name}: {value}" for name, value in counts.items()) or "—"


def _seconds(value: float) -> str:
    return f"{value:.0f} s"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _job_row(number: int, job: JobOutcome) -> list[object]:
    expected = job.plan.expected_status
    if job.plan.expected_exit_code is not None:
        expected += f" (exit {job.plan.expected_exit_code})"
    record = f"{job.status}" + (f" (exit {job.exit_code})" if job.exit_code is not None else "")
    verdict = "lost" if job.lost else "duplicated" if job.duplicated else "wrong" if job.wrong_state else "right"
    return [
        number,
        expected,
        record,
        job.result_status or "missing",
        ", ".join(sorted(job.slurm_job_ids, key=int)) or "none",
        job.runs,
        job.finishes,
        _counts({name: job.task_failures.count(name) for name in dict.fromkeys(job.task_failures)}),
        verdict,
    ]


def fault_section(results: Sequence[ScenarioResult]) -> list[str]:
    lines = ["## Fault scenarios", ""]
    lines += _table(
        ["scenario", "faults injected", "jobs", "lost", "duplicated", "wrong final state", "took"],
        [
            [
                result.title,
                _counts(result.faults_injected),
                len(result.jobs),
                result.lost,
                result.duplicated,
                result.wrong_state,
                _seconds(result.seconds),
            ]
            for result in results
        ],
    )
    for result in results:
        lines += ["", f"### {result.title}", "", f"Fault: {result.fault}.", ""]
        lines.append(f"Faults injected: {_counts(result.faults_injected)}.")
        lines.append(
            f"Task attempts that failed and were retried or caught, by error: {_counts(result.retried_errors())}."
        )
        lines += ["", *result.findings, ""]
        lines += _table(
            [
                "job",
                "expected",
                "record",
                "result.json",
                "Slurm job ids",
                "runs",
                "finishes",
                "failed attempts",
                "verdict",
            ],
            [_job_row(number, job) for number, job in enumerate(result.jobs, 1)],
        )
    return lines


def _cost_row(cost: LongJobCost) -> list[object]:
    return [
        cost.label,
        cost.polls,
        predicted_polls(CASES[cost.label]),
        cost.transitions,
        cost.events,
        cost.executions,
        cost.max_events_per_execution,
        _duration(cost.noticed_after_seconds),
        cost.status,
        _seconds(cost.wall_seconds),
    ]


def long_job_section(costs: Sequence[LongJobCost]) -> list[str]:
    header = [
        "job",
        "polls",
        "polls the schedule predicts",
        "state transitions",
        "history events",
        "executions",
        "most events in one execution",
        "end noticed after",
        "status",
        "wall time",
    ]
    swept = [cost for cost in costs if CASES[cost.label].swept]
    default = [cost for cost in costs if cost.label in JOB_LENGTHS]
    capped = [cost for cost in costs if cost.label not in JOB_LENGTHS and not CASES[cost.label].swept]
    lines = [
        "## Long jobs",
        "",
        *_swept_section(swept),
        "Under `JobTracking` per-job-polling (version 1's design, and the workflow's own safety poll when no sweep",
        "comes), what one job costs in Step Functions with the template's default poll schedule (PollMinSeconds 10,",
        "PollMaxSeconds 21600, PollFraction 0.1) and accounting available, measured by `harness/long_jobs.py`: the",
        "real state machine in moto with the real handlers and head-node program over scripted Slurm, time compressed",
        "(moto's Wait states advance a virtual clock instead of sleeping, the poll step sees the virtual elapsed time,",
        "Slurm answers RUNNING until the virtual clock passes the job's length). Events are counted with",
        "GetExecutionHistory over every execution of the job, transitions as states entered. *Polls the",
        "schedule predicts* is `poll_schedule.py` alone, as if polling took no time: a cross-check. *End noticed",
        "after*: virtual time from the job's end to the poll that saw it (at most about PollFraction of the run",
        f"time, and PollMaxSeconds). Step Functions fails an execution at {EXECUTION_EVENT_LIMIT:,} events.",
        "",
    ]
    lines += _table(header, [_cost_row(cost) for cost in default])
    lines += [
        "",
        "The caps: MaxPollsPerExecution makes a long job continue in a new execution (`<jobId>_1`, ...), and without",
        "accounting the wait stays under MinJobAge/2 (MinJobAge 300 s here, Slurm's default), so that the end is read",
        "before slurmctld forgets the job.",
        "",
    ]
    lines += _table(header, [_cost_row(cost) for cost in capped])
    lines += ["", *_week_without_accounting(capped)]
    return lines


def _swept_row(cost: LongJobCost) -> list[object]:
    return [
        cost.label,
        cost.transitions,
        cost.events,
        cost.executions,
        cost.polls,
        cost.status,
        _seconds(cost.wall_seconds),
    ]


def _swept_section(swept: Sequence[LongJobCost]) -> list[str]:
    """Jobs that wait for news (JobTracking sweep, the default) with the sweep healthy."""
    if not swept:
        return []
    header = ["job", "state transitions", "history events", "executions", "PollJob entered", "status", "wall time"]
    rows = [_swept_row(cost) for cost in swept]
    return [
        "Under `JobTracking` sweep (the default) with the sweep healthy: the workflow waits in AwaitNews from",
        "submission to the end, kept alive by the sweep's heartbeats (neither a transition nor a history event), and",
        "is woken once, with the end; measured by `harness/long_jobs.py` on the same stack, each sweep standing for",
        "an eighth of the job's length. The cost does not grow with the job's length.",
        "",
        *_table(header, rows),
        "",
    ]


def _week_without_accounting(capped: Sequence[LongJobCost]) -> list[str]:
    """The 7-day job without accounting, computed (not measured) from the measured day without accounting."""
    day = next((cost for cost in capped if not cost.accounting), None)
    if day is None or not day.polls:
        return []
    week = LongJobCase("7 d, no accounting", JOB_LENGTHS["7 d"], accounting=False, min_job_age=day.min_job_age)
    polls = predicted_polls(week)
    events_per_poll = day.events / day.polls
    executions = math.ceil(polls / DEFAULT_MAX_POLLS_PER_EXECUTION)
    fullest = min(polls, DEFAULT_MAX_POLLS_PER_EXECUTION) * events_per_poll
    return [
        f"Computed, not measured: a 7-day job without accounting needs about {polls:,} polls; at the "
        f"{events_per_poll:.1f} events per poll measured above, that is {executions} executions of at most "
        f"{DEFAULT_MAX_POLLS_PER_EXECUTION:,} polls, the fullest about {fullest:,.0f} events "
        f"(limit {EXECUTION_EVENT_LIMIT:,})."
    ]


NEVER_START_ROWS = [
    (
        "more nodes, CPUs or tasks than a partition has (`nodes` 100000, `cpusPerTask` 4096, `ntasks` 10^7)",
        'refused by sbatch: SUBMIT_FAILED, the cause quotes sbatch ("More processors requested than permitted")',
        "PENDING with PartitionConfig; cancelled after UnsatisfiableGraceMinutes: CANCELLED, the reason in the cause",
    ),
    (
        "a time limit over the partition's MaxTime",
        'refused by sbatch ("Requested time limit is invalid")',
        "PartitionTimeLimit; ended as above",
    ),
    (
        "a pending job its partition can no longer run (the operator shrank it after submission)",
        "ended as above (the e2e test lowers MaxTime under a pending job's limit: CANCELLED, PartitionTimeLimit)",
        "the same",
    ),
    (
        "`afterok` on a job that then failed or was cancelled",
        "Slurm ends it (`--kill-on-invalid-dep=yes`): CANCELLED, reason DependencyNeverSatisfied",
        "the same",
    ),
    (
        "pending for Resources, Priority, Dependency, ReqNodeNotAvail, ...",
        "waits as long as it takes (with a grace of 0 in the e2e test, it still runs once the node is free)",
        "the same",
    ),
]


def never_start_section() -> list[str]:
    """Not measured: the limits for jobs that can never start, and what the tests prove."""
    header = ["request", "Slurm configured like ParallelCluster (EnforcePartLimits=ALL)", "Slurm accepts it, pending"]
    return [
        "## Jobs that can never start",
        "",
        "Not measured by the report: the limits, and what `tests/e2e/test_never_start.py`,",
        "`tests/workflow/test_never_start.py` and `tests/unit/test_never_start_reasons.py` prove.",
        "",
        *_table(header, NEVER_START_ROWS),
        "",
        "UnsatisfiableGraceMinutes defaults to 60: more than ParallelCluster's default ResumeTimeout (30 minutes)",
        "and a cluster update with `scontrol reconfigure`. The decision is made at a poll, so a job ends at most one",
        "poll interval (PollFraction of its time in Slurm) after the grace period. DependencyNeverSatisfied reaches",
        "the cause while slurmctld remembers the ended job (MinJobAge, 300 s on ParallelCluster); a poll after that",
        "reads sacct, whose Reason is the last one the job waited for (Dependency): the cause then says only that the",
        "job was cancelled.",
    ]


# Measured by tests/workflow/test_state_limits.py, not by the report's runs: kept here so the report keeps it.
STATE_LIMITS_SECTION = """## Limits: workflow state, job record and result size

Not generated by the fault runs: measured by `tests/workflow/test_state_limits.py` (run it with `-s` to print the
figures; the specs are built by `harness/limits.py`), through the real state machine under moto with the real
handlers and head-node program over scripted Slurm. Update these figures by hand when that test's output changes.

Step Functions fails an execution whose input, or any state's input or output, exceeds 256 KiB
(`States.DataLimitExceeded`). The workflow's state therefore carries references only: the execution input is
`{jobId, submissionId, owner, createdAt, requestHash, specKey}`, every later state adds the job's progress (`$.job`)
and, on a failure path, the error (Step Functions caps an error's cause at 32,768 characters); the spec stays in
`jobs/<jobId>/input/spec.json`, and FinishJob writes `result.json` itself, returning only
`{status, cause, resultKey, fileCount}`. The test's budget for every state is 16 KiB (`STATE_BUDGET_BYTES`).

Every status update writes the whole job record, and DynamoDB bills a write per started 1 KB of the item (as much
again for `OwnerCreatedAtIndex`, which projects every attribute). The record therefore keeps a summary of the spec
(`SpecSummary`: every field but the script, the environment and the outputs, which it gives by size); SubmitJob and
FinishJob read the whole spec from `jobs/<jobId>/input/spec.json`, and `result.json` repeats it. Record sizes are
DynamoDB's measure (`dynamodb_item_bytes` in `harness/limits.py`, AWS's published rules); the budget for the largest
spec's record is 16 KiB (`RECORD_BUDGET_BYTES`).

The largest spec has every field at its maximum: a 64 KiB script, a 64 KiB environment in 256 variables, 100
outputs of 1024 characters, a 4096-character working directory, a 256-character array, 32 dependencies, and
every sbatch option at its longest (`LARGEST_SBATCH_OPTIONS` in `harness/limits.py`: GPU lists of 64 characters,
gres, constraint and licenses of 128, `memoryPerCpuMB` in place of `memoryMB`).

| case | request body | largest state | job record | result |
| --- | --- | --- | --- | --- |
| largest spec, UTF-8 script and environment | 244,108 B (371,278 B escaped) | 1,354 B | 8,456 B | COMPLETED |
| largest spec, ASCII | 244,108 B | 1,354 B | 8,456 B | COMPLETED |
| largest array: 1000 tasks, 100 outputs | 2,390 B | 1,354 B | 975 B | COMPLETED, all 2100 files listed |
| any record (computed by `tests/unit/test_job_record.py`) | — | — | 20,220 B | — |

A record of 8,456 bytes costs 9 write units per update, one of 975 bytes 1. The largest any record can be is the
largest spec with a 1024-character `scriptS3Key`, every progress field, the longest cause and error and a cancel
request: 20,220 bytes, 20 write units (the test asserts at most 20 KiB, `RECORD_WORST_CASE_BYTES`). In every case
result.json holds the whole spec.

`result.json` of the largest array is 238,038 bytes.

Before these changes the UTF-8 spec made a 393 KB execution input and failed at its first state, leaving the record
SUBMITTING; the 1000-task array failed at FinishJob with 0 of 2100 files listed; and the record of the largest spec
held the whole spec: 240,945 bytes, 236 write units for every status update, within a factor of two of DynamoDB's
400 KB item limit. `GET /jobs/{jobId}/output` pages the files (`limit` 1-1000, default 100; about 1 KB of presigned
URL per file).

On real Slurm through the HTTP API (`tests/e2e/test_limits_on_real_slurm.py`): a 1000-task array with 100 declared
outputs of 1024-character paths, a 64 KiB UTF-8 script and a 64 KiB UTF-8 environment COMPLETED with all 2100 files
collected (in 36 collect commands: the head-node requests travel zlib-compressed, and each batch is cut so its reply
fits what SSM returns), listed in result.json and handed out by GET /output over three pages; its record is
1,043 bytes (2 write units per update; the record lists no file). Known limit: the job's
`arrayTaskCounts` are those of the records Slurm gives at the end; when a thousand tasks end within seconds, slurmdbd
has recorded only some of them while slurmctld has already forgotten the rest (the test's MinJobAge is 5 s; 300 s on
ParallelCluster), and the counts fell short (144 of 1000) although every task COMPLETED. The status itself is right;
making the counts wait for accounting is open work."""


# Proved by tests/unit/test_head_node_bookkeeping.py and tests/security/test_bookkeeping_attacks_real_slurm.py, not by
# the report's runs: kept here so the report keeps it.
HEAD_NODE_FILES_SECTION = """## One job against the others: the product's files on the head node

Not generated by the fault runs: what `tests/unit/test_head_node_bookkeeping.py` (the head-node program run for real
as root, then as the cluster user, over recording Slurm stand-ins) and
`tests/security/test_bookkeeping_attacks_real_slurm.py` (jobs on real Slurm through the HTTP API) prove. Every job runs
as the one cluster user, who owns its home and the job directories in it
(`~/.slurm-job-api-jobs/<jobId>/<submissionId>`); the product's bookkeeping, the submit lock and the `.submitted`
marker of each submission, is root's, in
`/var/lib/slurm-job-api/users/<user>/jobs/<jobId>/`, on a path of root's directories that no other user can write
(docs/architecture.md, "Files on the head node"). What a job can do, and what comes of it:

- `chmod 000`, `mv`, `rm -rf`, `ls`, `ln -s` or `mkdir` on or in the state directory or its parent: refused by the
  kernel. Nothing of the product's changes; the other jobs are unaffected.
- `chmod 000` on the tree of job directories, or on a job's directory in it: done (they are the user's); the next
  submit or collect gives it mode 0700 back, in place, and says so in its diagnostics. Jobs in flight keep their
  directories and their output.
- A symlink (to /etc, or to a tree of its own), a file or a FIFO at the tree, at another caller's future job id
  (computed from an Idempotency-Key the attacker knows) or at a submission's directory: never followed. The next submit
  moves it aside (`.<name>.tampered-<UTC time>-<random>`) and makes the directory; collect never follows one either.
  That caller's job COMPLETES in a directory of its own.
- The tree renamed away, removed, or replaced by a directory of the job's: the next submit makes a new tree. Jobs in
  flight lose the files in the moved tree (listed as missing) and still end with a record and a result.json; later
  jobs COMPLETE.
- The tree renamed in a loop, about a thousand times a second, each time replaced by a directory or a symlink of the
  job's: every submission is still taken, since sbatch reads the script on its stdin and the environment through a
  descriptor, never by a path in the home, and root writes its marker outside the home. A job that starts while the
  tree is away cannot open its output: Slurm ends it FAILED (JobLaunchFailure), with its record and result.json. The
  jobs submitted after the loop COMPLETE.
- An earlier version's tree forged in the home (`~/.slurm-job-api`, made by the user): not believed. An earlier
  version's marker or job directory counts only where every level above it is root's.

Measured: in the unit test, a loop of the user's renamed the tree 1,691 times (997 times with a submission's directory
in it) while 8 submissions ran; all 8 were taken with the right script and environment, and the loop's 7,674 tries on
the state directory and its parents were all refused. On real Slurm, the job's loop renamed the tree 9,220 times (4,618
with job directories in it) and tried the state directory and its parents 48,846 times, all refused; the 4 jobs another
caller submitted meanwhile were all taken by Slurm and ended FAILED (JobLaunchFailure), each with its record and
result.json, and the jobs submitted after it COMPLETED with their output.

In this shared mode a job can also read or change the other jobs' directories and `scancel` their Slurm jobs: one
POSIX user per caller (issue 10) confines all of the above to the attacker's own jobs; the bookkeeping is already kept
per user, and the job directories already live in that user's home, mode 0700 at every level."""


def render(results: Sequence[ScenarioResult], costs: Sequence[LongJobCost], environment: Mapping[str, str]) -> str:
    lines = [
        "# Reliability",
        "",
        "<!-- Generated by `make reliability-report` (python -m benchmarks.report): edits here are lost. -->",
        "",
        INTRODUCTION,
        "",
        "Measured:",
        "",
        *(f"- {label}: {value}" for label, value in environment.items()),
        "",
        *fault_section(results),
        "",
        *long_job_section(costs),
        "",
        *never_start_section(),
        "",
        STATE_LIMITS_SECTION,
        "",
        HEAD_NODE_FILES_SECTION,
        "",
    ]
    return "\n".join(lines)
