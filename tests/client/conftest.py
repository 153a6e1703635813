"""The client's unit tests: a fake API on 127.0.0.1, placeholder AWS credentials, no AWS configuration files."""

from __future__ import annotations

import pytest

from slurm_job_client import Client
from slurm_job_client.transport import RetryPolicy
from tests.client.fake_api import FakeApi


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "SJA_API_URL", "SJA_STACK_NAME", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNITTEST00000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-test-secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def fake_api():
    api = FakeApi()
    yield api
    api.close()


class Waits(list):
    """A sleep that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def client(fake_api, waits) -> Client:
    return Client(fake_api.url, retry=RetryPolicy(attempts=6, timeout=5), sleep=waits)
