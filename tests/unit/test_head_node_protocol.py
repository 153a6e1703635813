"""The head-node protocol is declared once: the Lambda side's errors are derived from the program's and checked."""

from __future__ import annotations

import pytest

from slurm_job_api import errors
from slurm_job_api import head_node_program as program


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
