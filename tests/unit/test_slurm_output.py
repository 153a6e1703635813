"""Parsing real Slurm output and deciding a job's state from it: every fixture in tests/fixtures/slurm was captured
from real Slurm 22.05 (see its README), and the head-node program's status action is replayed against it."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC
from pathlib import Path

import pytest

from slurm_job_api import head_node_program as program

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
PARSERS = {"squeue": program.parse_squeue, "sacct": program.parse_sacct, "scontrol": program.parse_scontrol_jobs}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def all_fixtures() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(FIXTURES.glob("*.json"))]


class ReplayedSlurm(program.Slurm):
    """Answers each Slurm command with what real Slurm printed at one moment of a captured scenario."""

    def __init__(self, scenario: dict, moment: str) -> None:
        super().__init__("/usr/bin")
        self.scenario, self.moment = scenario, moment
        self.config_capture = fixture(
            "show_config_accounting" if scenario["accounting"] else "show_config_no_accounting"
        )

    def run(self, tool, args, timeout=None):
        if tool == "scontrol" and args[:2] == ["show", "config"]:
            captured = self.config_capture["commands"][0]
        else:
            captured = next(
                c for c in self.scenario["commands"] if c.get("moment") == self.moment and c["argv"][0] == tool
            )
        return subprocess.CompletedProcess([tool, *args], captured["rc"], captured["stdout"], captured["stderr"])


def slurm_job_id(scenario: dict) -> str:
    squeue = next(c for c in scenario["commands"] if c["argv"][0] == "squeue")
    return next(arg for arg in squeue["argv"] if arg.startswith("--jobs=")).split("=", 1)[1]


def status_at(name: str, moment: str, **request) -> dict:
    scenario = fixture(name)
    return program.status({"slurmJobId": slurm_job_id(scenario), **request}, ReplayedSlurm(scenario, moment))


@pytest.mark.parametrize("scenario", all_fixtures(), ids=lambda s: s["scenario"])
def test_every_captured_output_parses_and_every_state_is_in_the_table(scenario):
    for command in scenario["commands"]:
        parse = PARSERS.get(command["argv"][0])
        if parse is None or command["rc"] != 0 or command["argv"][1:3] == ["show", "config"]:
            continue
        for record in parse(command["stdout"], UTC):
            assert program.normalize_slurm_state(record.slurm_state) in program.SLURM_STATE_TO_STATUS, record


# (scenario, moment) → what the status action must report. Each row was checked against the raw capture.
EXPECTED = [
    ("completed", "running", {"source": "squeue", "status": "RUNNING", "exitCode": None}),
    ("completed", "ended", {"status": "COMPLETED", "exitCode": 0, "signal": None}),
    ("completed", "purged", {"source": "sacct", "status": "COMPLETED", "exitCode": 0}),
    ("failed", "ended", {"status": "FAILED", "exitCode": 3}),
    ("failed", "purged", {"source": "sacct", "status": "FAILED", "exitCode": 3}),
    ("killed_by_signal", "ended", {"status": "FAILED", "exitCode": 0, "signal": 9}),
    ("cancelled_running", "ended", {"status": "CANCELLED"}),
    ("cancelled_running", "purged", {"source": "sacct", "status": "CANCELLED", "slurmState": "CANCELLED"}),
    ("cancelled_pending", "pending", {"status": "PENDING", "reason": "BeginTime"}),
    ("cancelled_pending", "purged", {"status": "CANCELLED"}),
    ("timeout", "running", {"status": "RUNNING"}),
    ("timeout", "ended", {"status": "TIMEOUT"}),
    ("timeout", "purged", {"source": "sacct", "status": "TIMEOUT"}),
    ("out_of_memory", "ended", {"status": "OUT_OF_MEMORY"}),
    ("out_of_memory", "purged", {"source": "sacct", "status": "OUT_OF_MEMORY"}),
    ("node_fail", "node failed", {"status": "NODE_FAIL"}),
    ("node_fail", "purged", {"source": "sacct", "status": "NODE_FAIL"}),
    ("node_fail_requeued", "requeued", {"status": "PENDING"}),  # requeued: the same job runs again
    ("node_fail_requeued", "ended", {"source": "scontrol", "status": "CANCELLED"}),  # sacct still says NODE_FAIL
    ("deadline", "ended", {"status": "DEADLINE"}),
    ("pending_resources", "pending", {"status": "PENDING", "reason": "Resources"}),
    ("pending_priority", "pending", {"status": "PENDING", "reason": "Priority"}),
    ("pending_dependency", "pending", {"status": "PENDING", "reason": "Dependency"}),
    ("pending_dependency_never_satisfied", "pending", {"status": "PENDING", "reason": "DependencyNeverSatisfied"}),
    # sacct says Reason=None (or the last reason it waited for) while squeue still says why Slurm ended it.
    (
        "pending_dependency_never_satisfied",
        "ended",
        {"source": "sacct", "status": "CANCELLED", "reason": "DependencyNeverSatisfied"},
    ),
    ("pending_partition_time_limit", "pending", {"status": "PENDING", "reason": "PartitionTimeLimit"}),
    ("pending_node_drained", "pending", {"status": "PENDING", "reason": "ReqNodeNotAvail, UnavailableNodes:vm"}),
    (
        "array_throttled_mid_run",
        "mid-run",
        {"status": "RUNNING", "arrayTaskCounts": {"COMPLETED": 2, "PENDING": 2, "RUNNING": 2}},
    ),
    ("array_throttled_mid_run", "ended", {"status": "COMPLETED", "arrayTaskCounts": {"COMPLETED": 6}}),
    ("array_completed", "purged", {"source": "sacct", "status": "COMPLETED", "arrayTaskCounts": {"COMPLETED": 3}}),
    # Right after the end, sacct still shows the array as one plain job: scontrol has every task.
    (
        "array_task_fails",
        "ended",
        {"source": "scontrol", "status": "FAILED", "exitCode": 4, "arrayTaskCounts": {"COMPLETED": 2, "FAILED": 1}},
    ),
    (
        "array_task_fails",
        "purged",
        {"source": "sacct", "status": "FAILED", "exitCode": 4, "arrayTaskCounts": {"COMPLETED": 2, "FAILED": 1}},
    ),
    ("array_cancelled_mid_run", "running", {"status": "RUNNING", "arrayTaskCounts": {"PENDING": 2, "RUNNING": 2}}),
    ("array_cancelled_mid_run", "purged", {"status": "CANCELLED", "arrayTaskCounts": {"CANCELLED": 4}}),
    ("no_accounting_completed", "ended", {"source": "scontrol", "status": "COMPLETED", "exitCode": 0}),
    ("no_accounting_failed", "ended", {"source": "scontrol", "status": "FAILED", "exitCode": 3}),
    ("no_accounting_completed", "purged", {"found": False, "source": "none"}),
    ("no_accounting_unknown_job", "never existed", {"found": False}),
    ("unknown_job", "never existed", {"found": False}),
    ("accounting_down", "accounting down (job ended)", {"source": "scontrol", "status": "COMPLETED"}),
]


@pytest.mark.parametrize(("name", "moment", "expected"), EXPECTED, ids=[f"{n}@{m}" for n, m, _ in EXPECTED])
def test_status_from_real_slurm_output(name, moment, expected):
    result = status_at(name, moment, isArray=name.startswith("array"))
    assert {key: result.get(key) for key in expected} == expected


def test_an_ended_job_keeps_only_the_reason_slurm_ended_it_for():
    never = program.TaskRecord(None, "CANCELLED", reason="DependencyNeverSatisfied")
    stale = program.TaskRecord(None, "CANCELLED", reason="Priority")
    assert program.summarize([never], False)["reason"] == "DependencyNeverSatisfied"
    assert program.summarize([stale], False)["reason"] is None


def test_timestamps_are_utc_iso():
    result = status_at("completed", "ended")
    assert result["startTime"].endswith("Z") and result["endTime"] >= result["startTime"]


def test_controller_down_is_a_retryable_error():
    with pytest.raises(program.SlurmControllerUnavailable, match="Unable to contact slurm controller"):
        status_at("controller_down", "controller down (job ended earlier)")


def test_sbatch_refusals_are_recognised():
    for name in ("sbatch_invalid_partition", "sbatch_invalid_dependency", "sbatch_memory_unsatisfiable"):
        (command,) = fixture(name)["commands"]
        assert command["rc"] != 0 and not program.controller_unreachable(command["stderr"]), name
    ((submit, *_),) = [fixture("controller_down")["commands"]]
    assert submit["argv"][0] == "sbatch" and program.controller_unreachable(submit["stderr"])


@pytest.mark.parametrize("stderr", ["", "   \n", None])
def test_a_slurm_client_failing_without_a_word_is_retried_as_controller_trouble(stderr):
    # Seen on real Slurm: scontrol exited 1 with empty stderr while slurmctld shut down (tests/faults,
    # test_slurmctld_stopped_for_a_minute); treating it as a refusal ended a running job's tracking as ERROR.
    assert program.controller_unreachable(stderr)


def test_config_says_whether_accounting_works_and_min_job_age():
    with_accounting = program.parse_slurm_config(fixture("show_config_accounting")["commands"][0]["stdout"])
    without = program.parse_slurm_config(fixture("show_config_no_accounting")["commands"][0]["stdout"])
    assert with_accounting["accountingAvailable"] is True and without["accountingAvailable"] is False
    assert with_accounting["minJobAge"] == without["minJobAge"] == 5


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("CANCELLED by 1005", "CANCELLED"),
        ("CANCELLED+", "CANCELLED"),
        ("COMPLETING", "RUNNING"),
        ("CONFIGURING", "PENDING"),
        ("REQUEUED", "PENDING"),
        ("SUSPENDED", "SUSPENDED"),
        ("PREEMPTED", "PREEMPTED"),
        ("BOOT_FAIL", "BOOT_FAIL"),
        ("SPECIAL_EXIT", "FAILED"),
        ("SOMETHING_NEW", "UNKNOWN"),
    ],
)
def test_state_table(raw, status):
    assert program.status_of_slurm_state(raw) == status


@pytest.mark.parametrize(
    ("expression", "tasks"),
    [("1-3", [1, 2, 3]), ("1-10%2", list(range(1, 11))), ("1,3,5-9:2", [1, 3, 5, 7, 9]), ("7", [7])],
)
def test_array_expressions(expression, tasks):
    assert program.expand_array_indices(expression) == tasks
