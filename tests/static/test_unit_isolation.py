"""tests/unit needs nothing but the product's dependencies: it collects whole with the local stack, moto, yaml and
requests unimportable (tests/static/without_local_stack.py), e.g. on a machine set up from
functions/shared/requirements.txt alone."""

import os
import re
import subprocess
import sys

import pytest

from .tools import REPO_ROOT

pytestmark = pytest.mark.static


def collected_unit_tests(*pytest_args: str) -> int:
    """How many tests `pytest --collect-only tests/unit` collects in a fresh interpreter, no plugin autoloaded."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *pytest_args, "tests/unit"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    counted = re.search(r"^(\d+) tests? collected", done.stdout, re.MULTILINE)
    assert counted, output[-4000:]
    return int(counted.group(1))


def test_tests_unit_collect_whole_without_the_local_stack_and_its_libraries() -> None:
    everything = collected_unit_tests()
    assert collected_unit_tests("-p", "tests.static.without_local_stack") == everything > 0
