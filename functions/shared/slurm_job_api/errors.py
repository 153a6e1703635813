"""Named errors raised by the functions.

Step Functions sees the class name as the error name: the state machine retries the subclasses of TransientError
(its Retry lists are checked against TRANSIENT_ERROR_NAMES by a test) and catches everything else.
"""

from __future__ import annotations

from collections.abc import Iterable

from slurm_job_api import head_node_program as program


class SlurmJobApiError(Exception):
    """Base class of the product's own errors."""


class TransientError(SlurmJobApiError):
    """Worth retrying: the same request may well succeed a little later."""


class HeadNodeUnreachable(TransientError):
    """The SSM command was not delivered or did not finish in time (agent offline, instance stopped...)."""


class HeadNodeNotFound(TransientError):
    """No running instance carries the cluster's head-node tags."""


class SlurmControllerUnavailable(TransientError):
    """slurmctld did not answer the Slurm client on the head node."""


class SlurmAccountingUnavailable(TransientError):
    """slurmctld has forgotten the job and slurmdbd (accounting) did not answer."""


class ScriptFetchFailed(TransientError):
    """The head node could not download the job script from S3."""


class AwsThrottled(TransientError):
    """An AWS API kept throttling after the SDK's own retries."""


class DependencyNotSubmitted(TransientError):
    """A job this one depends on has not reached Slurm yet."""


class SbatchRejected(SlurmJobApiError):
    """sbatch refused the job (bad partition, account, limits...)."""


class HeadNodeSetupError(SlurmJobApiError):
    """The head node lacks something the program needs (Slurm binaries, python3, runuser...)."""


class ClusterUserInvalid(SlurmJobApiError):
    """The cluster user does not exist on the head node, or is root, a system or service account, or below the
    minimum uid (checked on the head node at every command)."""


class SlurmCommandFailed(SlurmJobApiError):
    """A Slurm command failed for a reason other than an unreachable controller."""


class HeadNodeProtocolError(SlurmJobApiError):
    """The head-node program's answer could not be understood, or it refused our request."""


class DependencyUnsatisfiable(SlurmJobApiError):
    """A dependency can never be satisfied (e.g. afterok on a job that failed)."""


class HeadNodeOutageLimitReached(SlurmJobApiError):
    """The job's state could not be asked for HeadNodeOutageLimitHours: the workflow stops tracking it."""


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


TRANSIENT_ERROR_NAMES = tuple(sorted(cls.__name__ for cls in _subclasses(TransientError)))

# The transient errors that mean the job's state could not be asked at all (the head node, slurmctld, slurmdbd or
# AWS did not answer): the job may still run. When PollJob's retries of one of them run out (about 90 minutes), the
# workflow notes the outage in the record and goes on polling, up to HeadNodeOutageLimitHours of lost contact; the
# other transient errors (a script or a dependency not there yet) concern the submission only. A test checks the
# state machine's Catch against this list.
OUTAGE_ERROR_NAMES = (
    AwsThrottled.__name__,
    HeadNodeNotFound.__name__,
    HeadNodeUnreachable.__name__,
    SlurmAccountingUnavailable.__name__,
    SlurmControllerUnavailable.__name__,
)

# Failures of Lambda itself, not of the product's code, by the names Step Functions gives them: the Invoke call's
# transient service errors ("Lambda.<Exception>": AWS's recommended retrier in "Handle Lambda service exceptions",
# https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html, plus the Invoke API's
# throttling and not-ready errors), an error Lambda returned without a type (Lambda.Unknown, e.g. out of memory), a
# function timeout (Sandbox.Timedout), and an execution environment that failed to start or died (Runtime.InitError,
# Runtime.ExitError: a cold-start storm, a crashed process). Every Lambda task of the state machine retries them in a
# Retry entry of their own, with backoff and a bounded number of attempts, then its Catch ends the job with a record
# and result.json (a broken deploy is retried that many times, no more). A test checks the definition against this.
# Runtime.ImportModuleError and Runtime.HandlerNotFound are left out: a handler that cannot be imported stays so.
LAMBDA_PLATFORM_ERROR_NAMES = (
    "Lambda.AWSLambdaException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.EC2ThrottledException",
    "Lambda.ResourceNotReadyException",
    "Lambda.SdkClientException",
    "Lambda.ServiceException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
    "Runtime.ExitError",
    "Runtime.InitError",
    "Sandbox.Timedout",
)


def _error_classes_by_name() -> dict[str, type[SlurmJobApiError]]:
    return {cls.__name__: cls for cls in _subclasses(SlurmJobApiError)}


# The program's BadRequest (it refused our request) and InternalError (it failed itself) mean that the Lambda and the
# program do not understand each other: both become HeadNodeProtocolError, which the state machine does not retry.
PROTOCOL_ERROR_TYPES = frozenset([program.BadRequest.__name__, program.INTERNAL_ERROR])


def program_error_classes() -> list[type[program.ProgramError]]:
    """Every error class of the head-node program."""
    return _subclasses(program.ProgramError)


def head_node_errors(program_errors: Iterable[type[program.ProgramError]]) -> dict[str, type[SlurmJobApiError]]:
    """The Lambda-side class of each error type the program reports: the class of the same name here, a
    TransientError exactly when the program calls the error retryable. Raises TypeError when one has no counterpart
    or the two disagree, so that a new program error can never silently become a non-retried protocol error."""
    ours = _error_classes_by_name()
    mapping: dict[str, type[SlurmJobApiError]] = dict.fromkeys(PROTOCOL_ERROR_TYPES, HeadNodeProtocolError)
    for program_error in program_errors:
        name = program_error.__name__
        if name in PROTOCOL_ERROR_TYPES:
            continue
        counterpart = ours.get(name)
        if counterpart is None:
            raise TypeError(f"the head-node program's {name} has no class of the same name in slurm_job_api.errors")
        if issubclass(counterpart, TransientError) != bool(program_error.retryable):
            raise TypeError(
                f"{name}: the head-node program says retryable={program_error.retryable}, but errors.{name} "
                f"{'is' if issubclass(counterpart, TransientError) else 'is not'} a TransientError"
            )
        mapping[name] = counterpart
    return mapping


# The head-node program reports errors by name; these are the Lambda-side classes they become.
HEAD_NODE_ERRORS = head_node_errors(program_error_classes())
