"""ruff (lint and format, configured in pyproject.toml) over the whole repository."""

import pytest

from .tools import REPO_ROOT, RUFF, describe, require_tool, run_offline

pytestmark = pytest.mark.static


@pytest.mark.parametrize("arguments", [["check", "."], ["format", "--check", "."]], ids=["ruff-check", "ruff-format"])
def test_ruff(arguments: list[str]) -> None:
    ruff = require_tool(RUFF)
    result = run_offline([ruff, *arguments, "--no-cache"], cwd=REPO_ROOT)
    assert result.returncode == 0, describe(result)
