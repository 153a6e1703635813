"""Answers for Slurm stand-ins, in the formats the head-node program reads: the exact squeue/scontrol command lines
of head_node_program. The tests' recording stand-ins (tests/support/fake_slurm.py) and the long-job benchmark's
(harness/state_slurm.py) both answer with them."""

CONFIG = "MinJobAge = 300 sec\nAccountingStorageType = accounting_storage/none\n"
TIMES = "2026-11-25T10:00:00|2026-11-25T10:00:01|2026-11-25T10:05:00"
NO_EARLIER_JOB = {"stdout": ""}  # the submit's look-up of an earlier submission by comment finds nothing
INVALID_JOB = {"rc": 1, "stderr": "slurm_load_jobs error: Invalid job id specified\n"}


def squeue_line(state: str, reason: str = "None", job: str = "101") -> dict:
    return {"stdout": f"{job}|{job}|N/A|{state}|{reason}|{TIMES}\n"}


def scontrol_line(state: str, exit_code: str, job: str = "101") -> dict:
    return {
        "stdout": f"JobId={job} JobName=x JobState={state} Reason=None ExitCode={exit_code} "
        "SubmitTime=2026-11-25T10:00:00 StartTime=2026-11-25T10:00:01 EndTime=2026-11-25T10:00:09\n"
    }
