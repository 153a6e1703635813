"""boto3 clients shared by a Lambda container (created once, with adaptive retries)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Adaptive mode adds client-side rate limiting to the standard retries: SSM throttles polling callers with
# "Rate exceeded" and publishes no TPS figures (see docs/facts.md).
CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 8},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="slurm-job-api",
)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=CLIENT_CONFIG)


@cache
def resource(service: str) -> Any:
    return boto3.resource(service, config=CLIENT_CONFIG)


@cache
def s3_client() -> Any:
    """S3 with SigV4 presigning on the regional virtual-hosted endpoint (path style against a local endpoint)."""
    local = bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"))
    config = CLIENT_CONFIG.merge(
        Config(signature_version="s3v4", s3={"addressing_style": "path" if local else "virtual"})
    )
    return boto3.client("s3", config=config)
