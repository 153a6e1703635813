"""The ``--env-vars`` file that points ``sam local invoke`` of every template function at a running local stack.

``sam local invoke --env-vars FILE`` sets, in the function's container, only the variables that the template declares
for that function ("Environment variable file", AWS SAM Developer Guide, "Locally invoke Lambda functions with AWS
SAM", https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/serverless-sam-cli-using-invoke.html).
So the file holds, for each function (by logical id), exactly the variables the template gives it (its own and the
Globals'), resolved as the local stack resolved them (its table, bucket, bus and state machine names and ARNs, its
parameters), with the variables of LOCAL_OVERRIDES set to the local stack's values. Those must be declared by the
template for every function (template.yaml declares ``AWS_ENDPOINT_URL`` empty: unset, on AWS).

The region and the credentials are not in it: Lambda reserves AWS_REGION, AWS_ACCESS_KEY_ID and the like (a function
cannot declare them), and SAM sets them in the container from its own session, i.e. from SAM's environment
(:func:`sam_environment`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from local_stack.lambda_runtime import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY
from local_stack.template_model import TemplateModel

# Variables that a local run sets to the local stack's value; the template declares them (empty) for every function.
ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"
LOCAL_OVERRIDE_VARIABLES = (ENDPOINT_VARIABLE,)


class UndeclaredOverride(Exception):
    """A function does not declare a variable that a local run must set: SAM would leave it out of the container."""


def env_vars_document(model: TemplateModel, endpoint_url: str) -> dict[str, dict[str, str]]:
    """``{function logical id: {variable: value}}`` for the local stack whose moto endpoint is ``endpoint_url``."""
    overrides = {ENDPOINT_VARIABLE: endpoint_url}
    document = {}
    for logical_id, function in sorted(model.functions.items()):
        missing = sorted(set(overrides) - set(function.environment))
        if missing:
            raise UndeclaredOverride(
                f"{logical_id} does not declare {', '.join(missing)}: `sam local invoke --env-vars` sets only the "
                "variables a function declares (template.yaml, Globals.Function.Environment.Variables)"
            )
        document[logical_id] = {name: overrides.get(name, value) for name, value in function.environment.items()}
    return document


def write_env_vars_file(path: Path, model: TemplateModel, endpoint_url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(env_vars_document(model, endpoint_url), indent=2, sort_keys=True) + "\n")
    return path


def sam_environment(region: str, endpoint_url: str) -> dict[str, str]:
    """The variables SAM itself needs: the region and placeholder keys it gives the container (Lambda reserves their
    names), and its own STS call (`sam local invoke` asks sts:GetCallerIdentity) kept on the local endpoint."""
    return {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
        "AWS_ENDPOINT_URL_STS": endpoint_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAM_CLI_TELEMETRY": "0",
    }


def _event_prefix(logical_id: str) -> str:
    """``SubmitJobFunction`` -> ``submit-job``: the events/ files of a function start with this."""
    stem = logical_id.removesuffix("Function")
    return re.sub(r"(?<!^)(?=[A-Z])", "-", stem).lower()


def events_by_function(function_logical_ids: list[str], events_dir: Path) -> dict[str, list[Path]]:
    """Each events/ file under the function it is for (the longest function prefix of its name), by logical id."""
    prefixes = sorted(((_event_prefix(logical_id), logical_id) for logical_id in function_logical_ids), reverse=True)
    grouped: dict[str, list[Path]] = {}
    for event in sorted(events_dir.glob("*.json")):
        for prefix, logical_id in prefixes:
            if event.stem == prefix or event.stem.startswith(prefix + "-"):
                grouped.setdefault(logical_id, []).append(event)
                break
    return grouped


def invoke_command_lines(model: TemplateModel, env_vars_path: Path, events_dir: Path, repo_root: Path) -> list[str]:
    """Ready-to-paste ``sam local invoke`` lines, one per events/ file. The container must share the host's network
    (``--docker-network host``): the local stack listens on this machine's loopback only."""
    return [
        f"sam local invoke {logical_id} -e {_shown(event, repo_root)} --env-vars {_shown(env_vars_path, repo_root)} "
        "--docker-network host"
        for logical_id, events in events_by_function(sorted(model.functions), events_dir).items()
        for event in events
    ]


def export_line(environment: Mapping[str, str]) -> str:
    """``export NAME=value ...`` for a shell."""
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in environment.items())


def _shown(path: Path, repo_root: Path) -> str:
    return str(path.relative_to(repo_root)) if path.is_relative_to(repo_root) else str(path)
