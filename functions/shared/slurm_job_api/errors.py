"""Named errors raised by the functions.

Step Functions sees the class name as the error name: the state machine retries the subclasses of TransientError
(its Retry lists are checked against TRANSIENT_ERROR_NAMES by a test) and catches everything else.
"""


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
    """The configured cluster user does not exist on the head node, or is root."""


class SlurmCommandFailed(SlurmJobApiError):
    """A Slurm command failed for a reason other than an unreachable controller."""


class HeadNodeProtocolError(SlurmJobApiError):
    """The head-node program's answer could not be understood, or it refused our request."""


class DependencyUnsatisfiable(SlurmJobApiError):
    """A dependency can never be satisfied (e.g. afterok on a job that failed)."""


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


TRANSIENT_ERROR_NAMES = tuple(sorted(cls.__name__ for cls in _subclasses(TransientError)))

# The head-node program reports errors by name; these are the Lambda-side classes they become.
HEAD_NODE_ERRORS: dict[str, type[SlurmJobApiError]] = {
    "SlurmControllerUnavailable": SlurmControllerUnavailable,
    "SlurmAccountingUnavailable": SlurmAccountingUnavailable,
    "ScriptFetchFailed": ScriptFetchFailed,
    "SbatchRejected": SbatchRejected,
    "HeadNodeSetupError": HeadNodeSetupError,
    "ClusterUserInvalid": ClusterUserInvalid,
    "SlurmCommandFailed": SlurmCommandFailed,
}
