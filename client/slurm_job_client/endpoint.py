"""Where the API is and who calls it: the URL (given, SJA_API_URL, or the stack's ApiUrl output), the region to
sign for and the caller's credentials from botocore's standard chain (environment, profiles, SSO, roles)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import botocore.session
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError

from slurm_job_client.errors import ConfigurationError

API_URL_VARIABLE = "SJA_API_URL"
STACK_NAME_VARIABLE = "SJA_STACK_NAME"
API_URL_OUTPUT = "ApiUrl"
# https://<api-id>.execute-api.<region>.amazonaws.com/<stage> (and the .amazonaws.com.cn partition)
_REGION_IN_URL = re.compile(r"^https://[^/]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?(?:/|$)")


def session(profile: str | None) -> botocore.session.Session:
    return botocore.session.Session(profile=profile)


def signing_region(api_url: str, region: str | None, boto: botocore.session.Session) -> str:
    """The region to sign for: given, read from an API Gateway URL, AWS_REGION, or the profile's region."""
    if region:
        return region
    if match := _REGION_IN_URL.match(api_url):
        return match.group(1)
    try:
        found = os.environ.get("AWS_REGION") or boto.get_config_variable("region")
    except BotoCoreError as error:
        raise ConfigurationError(f"cannot read the AWS configuration: {error}") from None
    if not found:
        raise ConfigurationError(
            "no AWS region: pass --region, set AWS_REGION, or give the profile a region (aws configure)"
        )
    return found


def stack_api_url(boto: botocore.session.Session, stack_name: str, region: str | None) -> str:
    """The ApiUrl output of a CloudFormation stack."""
    try:
        cloudformation = boto.create_client("cloudformation", region_name=region or os.environ.get("AWS_REGION"))
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as error:
        raise ConfigurationError(f"cannot read the outputs of stack {stack_name}: {error}") from None
    for output in stacks[0].get("Outputs", []) if stacks else []:
        if output.get("OutputKey") == API_URL_OUTPUT:
            return output["OutputValue"]
    raise ConfigurationError(f"stack {stack_name} has no output {API_URL_OUTPUT}")


def api_url(given: str | None, stack_name: str | None, region: str | None, boto: botocore.session.Session) -> str:
    """The API's URL: given, else SJA_API_URL, else the ApiUrl output of the stack (given or SJA_STACK_NAME)."""
    url = given or os.environ.get(API_URL_VARIABLE)
    if not url:
        stack = stack_name or os.environ.get(STACK_NAME_VARIABLE)
        if not stack:
            raise ConfigurationError(
                f"no API URL: pass --api-url, set {API_URL_VARIABLE}, or name the stack (--stack-name or "
                f"{STACK_NAME_VARIABLE}) to read its {API_URL_OUTPUT} output"
            )
        url = stack_api_url(boto, stack, region)
    if not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"the API URL must start with https:// (or http:// for a local API): {url}")
    return url.rstrip("/")


def credentials(boto: botocore.session.Session) -> Callable[[], ReadOnlyCredentials]:
    """The caller's credentials of the moment (refreshable ones are refreshed as they expire)."""
    try:
        found = boto.get_credentials()
    except BotoCoreError as error:
        raise ConfigurationError(f"cannot load AWS credentials: {error}") from None
    if found is None:
        raise ConfigurationError(
            "no AWS credentials: configure a profile (aws configure, aws sso login) or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        )
    return found.get_frozen_credentials
