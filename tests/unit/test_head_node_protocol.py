"""The head-node protocol is declared once, in the program: the Lambda side's errors are derived from the program's,
and its request and reply types are checked against the program's declared fields and against what it reads."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from slurm_job_api import errors
from slurm_job_api import head_node_program as program
from slurm_job_api import head_node_protocol as protocol
from slurm_job_api.head_node import CommandOutcome, HeadNode


def test_every_program_error_has_a_lambda_side_class_of_the_same_name_and_retryability():
    names = {cls.__name__ for cls in errors.program_error_classes()}
    assert names >= {"SlurmControllerUnavailable", "SlurmAccountingUnavailable", "ScriptFetchFailed", "BadRequest"}
    for program_error in errors.program_error_classes():
        lambda_error = errors.HEAD_NODE_ERRORS[program_error.__name__]
        if program_error.__name__ in errors.PROTOCOL_ERROR_TYPES:
            assert lambda_error is errors.HeadNodeProtocolError
            continue
        assert lambda_error.__name__ == program_error.__name__
        assert issubclass(lambda_error, errors.TransientError) == program_error.retryable, program_error.__name__


def test_bad_request_and_internal_error_are_protocol_errors_never_retried():
    assert errors.HEAD_NODE_ERRORS["BadRequest"] is errors.HeadNodeProtocolError
    assert errors.HEAD_NODE_ERRORS[program.INTERNAL_ERROR] is errors.HeadNodeProtocolError
    assert not issubclass(errors.HeadNodeProtocolError, errors.TransientError)


def test_a_program_error_without_a_lambda_side_class_is_refused():
    brand_new = type("SlurmGotBored", (Exception,), {"retryable": True})  # not registered as a ProgramError
    with pytest.raises(TypeError, match="SlurmGotBored has no class"):
        errors.head_node_errors([*errors.program_error_classes(), brand_new])


@pytest.mark.parametrize(("name", "retryable"), [("SbatchRejected", True), ("ScriptFetchFailed", False)])
def test_a_program_error_whose_retryability_disagrees_is_refused(name, retryable):
    disagreeing = type(name, (Exception,), {"retryable": retryable})
    with pytest.raises(TypeError, match=f"{name}: the head-node program says retryable={retryable}"):
        errors.head_node_errors([disagreeing])


# -- requests and replies: the Lambda types and the program's declarations are the same fields ----------------------


def aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_the_request_types_are_the_programs_actions():
    assert (
        {request.ACTION for request in protocol.REQUEST_TYPES}
        == set(program.ACTIONS)
        == set(program.ACTION_REQUEST_FIELDS)
    )


@pytest.mark.parametrize("request_type", protocol.REQUEST_TYPES, ids=lambda request: request.ACTION)
def test_each_request_type_has_exactly_the_fields_the_program_declares(request_type):
    assert aliases(request_type) == set(program.ACTION_REQUEST_FIELDS[request_type.ACTION])


@pytest.mark.parametrize("request_type", protocol.REQUEST_TYPES, ids=lambda request: request.ACTION)
def test_each_reply_type_has_exactly_the_fields_the_program_declares(request_type):
    reply_type = request_type.reply_type()
    assert aliases(reply_type) == set(program.REPLY_FIELDS[request_type.ACTION])
    diagnostics = {reply_type.model_fields[name].alias for name in reply_type.DIAGNOSTICS}
    assert diagnostics == set(program.DIAGNOSTIC_REPLY_FIELDS.get(request_type.ACTION, ()))


def test_uploads_and_file_reports_have_the_programs_fields():
    assert aliases(protocol.Upload) == set(program.UPLOAD_FIELDS)
    assert aliases(protocol.FileReport) == set(program.FILE_REPORT_FIELDS)


def test_sweep_jobs_have_the_programs_fields_and_the_report_holds_status_replies():
    assert aliases(protocol.SweepJob) == set(program.SWEEP_JOB_FIELDS)
    assert aliases(protocol.SweepReport) == {"jobs"}
    assert protocol.SweepReport.model_fields["jobs"].annotation == list[protocol.StatusReply]


def test_head_node_adds_exactly_the_common_request_fields():
    node = HeadNode(cluster_name="c", cluster_user="u", slurm_bin_dir="/s", ssm=None, ec2=None)
    request = protocol.StatusRequest(job_id="j", slurm_job_id="5", is_array=True)
    document = node.document(request)
    assert set(document) - set(request.fields()) == set(program.REQUEST_FIELDS)
    assert document["action"] == "status" and document["protocol"] == program.PROTOCOL


def test_summarize_reports_exactly_the_declared_summary_fields():
    record = program.TaskRecord(None, "COMPLETED", exit_code=0, signal=0, start_time="s", end_time="e")
    assert set(program.summarize([record], is_array=False)) == set(program.SUMMARY_FIELDS)


# -- what the program reads from a request, found in its source ------------------------------------------------------


# The program's helpers that read one field of a request and check it: _require(request, "x"), _number(...).
CHECKED_READERS = ("_require", "_number")


def _reads(function: ast.AST, variable: str) -> set[str]:
    """Field names read from `variable` in a function: variable["x"], variable.get("x"), a checked reader's
    (variable, "x")."""
    found = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == variable:
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.add(key.value)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and isinstance(func.value, ast.Name)
                and func.value.id == variable
            ):
                found.add(node.args[0].value)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in CHECKED_READERS
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == variable
            and isinstance(node.args[1], ast.Constant)
        ):
            found.add(node.args[1].value)
    return found


PROGRAM_FUNCTIONS = {
    node.name: node for node in ast.parse(Path(program.__file__).read_text()).body if isinstance(node, ast.FunctionDef)
}


@pytest.mark.parametrize("action", sorted(program.ACTIONS))
def test_each_action_reads_only_the_fields_declared_for_it(action):
    read = _reads(PROGRAM_FUNCTIONS[program.ACTIONS[action].__name__], "request")
    declared = set(program.ACTION_REQUEST_FIELDS[action])
    # jobId only names a command in its comment: an action that declares nothing else may read nothing.
    assert read or declared == {"jobId"}, f"found no request reads in {action}(): the source scan is broken"
    assert read <= declared


def test_the_entry_point_reads_only_the_common_fields():
    read = _reads(PROGRAM_FUNCTIONS["main"], "request") | _reads(PROGRAM_FUNCTIONS["_cluster_user"], "request")
    assert read == set(program.REQUEST_FIELDS)


def test_collect_reads_only_the_declared_upload_fields():
    read = _reads(PROGRAM_FUNCTIONS["collect"], "upload")
    assert read == set(program.UPLOAD_FIELDS)


def test_sweep_reads_only_the_declared_job_fields():
    read = _reads(PROGRAM_FUNCTIONS["_sweep_jobs"], "job")
    assert read == set(program.SWEEP_JOB_FIELDS)


# -- replies that do not fit -----------------------------------------------------------------------------------------


def test_a_reply_that_does_not_fit_its_type_is_a_protocol_error():
    node = HeadNode(cluster_name="c", cluster_user="u", slurm_bin_dir="/s", ssm=None, ec2=None)
    stdout = json.dumps({"ok": True, "protocol": 1, "action": "submit", "result": {"alreadySubmitted": False}})
    node.run_command = lambda *args, **kwargs: CommandOutcome("c", "Success", stdout + "\n", "", 0)
    request = protocol.SubmitRequest(job_id="j", submission_id="s", script_url="u", sbatch_options=[])
    with pytest.raises(errors.HeadNodeProtocolError, match="submit reply does not fit the protocol"):
        node.run(request, wait_seconds=5)
