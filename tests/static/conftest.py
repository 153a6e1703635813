"""Fixtures shared by the static checks."""

import json
from pathlib import Path
from typing import Any

import pytest

from .tools import SAM_PYTHON, TEMPLATE, describe, require_tool, run_offline


@pytest.fixture(scope="session")
def generated_template() -> dict[str, Any]:
    """The CloudFormation template that SAM generates from template.yaml (see sam_transform.py). Do not modify."""
    python = require_tool(SAM_PYTHON)
    result = run_offline([python, Path(__file__).with_name("sam_transform.py"), TEMPLATE])
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)
