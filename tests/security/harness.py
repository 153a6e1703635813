"""Sends hostile cases to the local API over scripted Slurm and checks both halves of the contract:

- refused → a 4xx (never a 5xx) whose message names each offending field, no execution started, no sbatch run;
- accepted → exactly one sbatch run, as the cluster user, with exactly the argv the spec describes (built by
  tests/security/spec_oracle.py, not by the product), the script file holding exactly the script's bytes and the
  environment file exactly the NUL-terminated NAME=value entries; and no canary file, ever.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.scripted_slurm import CONFIG, scontrol_line
from local_stack.cloud import LocalCloud
from slurm_job_api.head_node_program import JOB_DIRECTORIES
from tests.security.spec_oracle import environment_file_entries, expected_sbatch_argv, judge, with_export_descriptor
from tests.support.fake_slurm import FakeSlurm
from tests.support.hostile import SPEC_FIELDS, Canaries, Case, HostileSpecs, Targets

SBATCH_WAIT_SECONDS = 45
FIRST_SLURM_ID = 5000


def every_job_completes(slurm) -> None:
    """Answers that do not depend on the order of calls, so that many jobs can be in flight at once: each sbatch
    gets the next id, squeue knows nothing (no earlier submission; the job has left the queue), scontrol says
    COMPLETED."""
    slurm.set(
        {
            "sbatch": [{"stdout": f"{FIRST_SLURM_ID + n}\n"} for n in range(1000)],
            "scontrol-config": [{"stdout": CONFIG}],
            "squeue": [{"stdout": ""}],
            "scontrol": [scontrol_line("COMPLETED", "0:0")],
        }
    )


def wait_for_execution(sfn: Any, arn: str, timeout: float = 90) -> dict:
    """The execution once it ended (with a client made once: making a boto3 client takes a good part of a second)."""
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"execution {arn} still running after {timeout} s"
        time.sleep(0.2)
    return described


def wait_for_all_executions(sfn: Any, state_machine_arn: str, timeout: float = 90) -> None:
    """Waits for every running execution, so that none outlives the local cloud (its retries would run on)."""
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING")
    for execution in [execution for page in pages for execution in page["executions"]]:
        wait_for_execution(sfn, execution["executionArn"], timeout)


@dataclass
class Tally:
    """What the cases exercised: which fields were in accepted specs, and which a refusal had to name."""

    accepted: list[str] = field(default_factory=list)  # job ids
    rejected: int = 0
    fields_accepted: Counter[str] = field(default_factory=Counter)
    fields_refused: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"{len(self.accepted) + self.rejected} sent, {len(self.accepted)} accepted, {self.rejected} refused; "
            f"fields in accepted specs {dict(self.fields_accepted)}; "
            f"fields named by refusals {dict(self.fields_refused)}"
        )

    def missing_fields(self) -> list[str]:
        """Spec fields that no accepted spec carried, or that no refusal had to name."""
        return [name for name in SPEC_FIELDS if not self.fields_accepted[name] or not self.fields_refused[name]]


@dataclass
class Harness:
    """One caller's view of the scripted-Slurm local cloud, and what the cases sent so far did."""

    cloud: LocalCloud
    api: Any  # local_stack.api_gateway.ApiClient of the caller
    slurm: FakeSlurm
    cluster_user: pwd.struct_passwd
    canaries: Canaries
    targets: Targets
    slurm_ids: dict[str, str]  # Slurm job id of each dependency target
    sbatch_environment: dict[str, str]  # the process environment every sbatch run gets, whatever the spec
    existing_keys: set[str] = field(default_factory=set)
    tally: Tally = field(default_factory=Tally)

    @cached_property
    def generator(self) -> HostileSpecs:
        return HostileSpecs(self.canaries, self.targets)

    @cached_property
    def sfn(self) -> Any:
        return self.cloud.client("stepfunctions")  # a boto3 client takes a good part of a second to make

    @cached_property
    def s3(self) -> Any:
        return self.cloud.client("s3")

    def execution_arn(self, job_id: str) -> str:
        return self.cloud.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + job_id

    def wait_for_execution(self, job_id: str, timeout: float = 90) -> dict:
        return wait_for_execution(self.sfn, self.execution_arn(job_id), timeout)

    def result_json(self, job_id: str) -> dict:
        return json.loads(
            self.s3.get_object(Bucket=self.cloud.bucket_name, Key=f"jobs/{job_id}/result.json")["Body"].read()
        )

    def newest_execution(self) -> str | None:
        """The most recently started execution (Step Functions lists them newest first): a new one shows here."""
        executions = self.sfn.list_executions(stateMachineArn=self.cloud.state_machine_arn, maxResults=1)["executions"]
        return executions[0]["executionArn"] if executions else None

    def upload(self, case: Case) -> None:
        for key, content in case.uploads.items():
            self.s3.put_object(Bucket=self.cloud.bucket_name, Key=key, Body=content)
            self.existing_keys.add(key)

    def check(self, case: Case) -> None:
        self.upload(case)
        text = case.json_text()
        verdict = judge(
            case.body,
            body_bytes=len(text.encode()),
            existing_keys=self.existing_keys,
            my_jobs=set(self.targets.mine),
            my_inputs=self.targets.my_inputs,
        )
        newest_before, sbatch_before = self.newest_execution(), len(self.slurm.calls("sbatch"))
        answer = self.api.post("/jobs", data=text.encode(), headers={"Content-Type": "application/json"})
        problem = verdict.problem(answer.status_code, answer.json())
        assert problem is None, f"{problem} for {text[:500]}"
        if answer.status_code == 202:
            self.tally.fields_accepted.update(verdict.spec.keys())
            self.check_submission(answer.json()["jobId"], verdict.spec, case)
        else:
            self.tally.rejected += 1
            self.tally.fields_refused.update(name.split("[")[0] for name in verdict.must_name)
            assert self.newest_execution() == newest_before, f"a refused request started an execution: {text[:300]}"
            assert len(self.slurm.calls("sbatch")) == sbatch_before, f"a refused request reached sbatch: {text[:300]}"
        fired = [path for path in case.canaries if os.path.lexists(path)]
        assert not fired, f"canary created: {fired} by {text[:500]}"  # all of them are looked for again at the end

    def check_submission(self, job_id: str, spec: dict[str, Any], case: Case) -> None:
        self.tally.accepted.append(job_id)
        described = self.sfn.describe_execution(executionArn=self.execution_arn(job_id))
        submission_id = json.loads(described["input"])["submissionId"]
        call = self._sbatch_call(job_id)
        directory = f"{self.cluster_user.pw_dir}/{JOB_DIRECTORIES}/{job_id}/{submission_id}"
        expected = expected_sbatch_argv(
            spec, directory=directory, comment=f"slurm-job-api:{job_id}:{submission_id}", slurm_ids=self.slurm_ids
        )
        assert with_export_descriptor(call["argv"]) == expected
        assert call["uid"] == self.cluster_user.pw_uid and call["cwd"] == "/"
        assert call["env"] == self.sbatch_environment, "the spec changed sbatch's own environment"
        assert self._private(Path(directory), stat.S_ISDIR)
        # What sbatch read (the script on its stdin, the environment from a descriptor), and the copies left for people.
        wanted = spec["script"].encode() if "script" in spec else case.uploads[spec["scriptS3Key"]]
        assert self.slurm.script(call) == wanted
        script = Path(directory, "job.sh")
        assert self._private(script, stat.S_ISREG) and script.read_bytes() == wanted
        environment_file = Path(directory, "environment")
        if spec.get("environment"):
            content = self.slurm.export_file(call)
            assert content.endswith(b"\0")
            assert sorted(content[:-1].split(b"\0")) == environment_file_entries(spec["environment"])
            assert self._private(environment_file, stat.S_ISREG) and environment_file.read_bytes() == content
        else:
            assert self.slurm.export_file(call) is None and not environment_file.exists()

    def _private(self, path: Path, kind: Any) -> bool:
        """True if `path` is of this kind (not a symlink), the cluster user's, and no one else's to read or write."""
        info = path.lstat()
        return kind(info.st_mode) and info.st_uid == self.cluster_user.pw_uid and not info.st_mode & 0o077

    def _sbatch_call(self, job_id: str) -> dict:
        deadline = time.monotonic() + SBATCH_WAIT_SECONDS
        while not (calls := self.slurm.sbatch_calls_for(job_id)):
            if time.monotonic() > deadline:
                view = self.api.get(f"/jobs/{job_id}").json()
                raise AssertionError(f"accepted job {job_id} never reached sbatch: {view.get('status')} {view}")
            time.sleep(0.05)
        assert len(calls) == 1, f"{len(calls)} sbatch runs for one job"  # checked again once every workflow ended
        return calls[0]
