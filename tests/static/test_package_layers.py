"""The packages of the repository import one another in one direction only, so no loop between them can come back.

From the bottom up: the product (functions/: the shared package slurm_job_api and the handlers) imports only itself
and libraries; the local stack (local_stack/) loads the product through template.yaml and never imports it; the
scenario library (harness/) runs the product on the local stack; the reliability report (benchmarks/) runs the
harness; the tests (tests/) may import every layer. The command-line client (client/, installed on its own) imports
nothing of the repository, and nothing but the tests imports it. Every import statement of every .py file is read
with ast, wherever it is in the file (function bodies too), and so is ``importlib.import_module`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from .tools import REPO_ROOT

pytestmark = pytest.mark.static

PRODUCT_PACKAGE = "slurm_job_api"
CLIENT_PACKAGE = "slurm_job_client"
# Each layer (a top-level directory), with the repository's own packages its code may import. Libraries (the
# standard library and installed distributions) are allowed everywhere.
ALLOWED = {
    "functions": {PRODUCT_PACKAGE},
    # The command-line client is installed on its own (pip install ./client): it imports nothing of the repository.
    "client": {CLIENT_PACKAGE},
    "local_stack": {"local_stack"},
    "harness": {"harness", "local_stack", PRODUCT_PACKAGE},
    "benchmarks": {"benchmarks", "harness", "local_stack", PRODUCT_PACKAGE},
    "tests": {"tests", "benchmarks", "harness", "local_stack", PRODUCT_PACKAGE, CLIENT_PACKAGE, "app"},
}


def import_root(path: Path) -> Path:
    """The directory the file's module is imported from: functions/shared for the shared package, a function's own
    directory for its handler (Lambda imports ``app``), the repository root for everything else."""
    relative = path.relative_to(REPO_ROOT)
    if relative.parts[0] == "functions" and len(relative.parts) > 2:
        return REPO_ROOT / "functions" / relative.parts[1]
    if relative.parts[0] == "client":
        return REPO_ROOT / "client"
    return REPO_ROOT


def own_top_level_names() -> set[str]:
    """The import names that are this repository's code, not libraries: its top-level packages, the shared package,
    and the handler modules."""
    names = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")}
    names |= {path.parent.name for path in (REPO_ROOT / "functions" / "shared").glob("*/__init__.py")}
    names |= {path.parent.name for path in (REPO_ROOT / "client").glob("*/__init__.py")}
    names |= {path.stem for path in (REPO_ROOT / "functions").glob("*/*.py")}
    return names


def imported_modules(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, the text of a module of ``package`` (the package
    its relative imports start from)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            else:
                yield node.lineno, node.module or ""
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def layer_violations(layer: str, package: str, source: str, own: set[str]) -> list[str]:
    """The imports of a module of ``package`` (code of ``layer``) that reach a package of the repository the layer
    must not use."""
    return [
        f"line {line}: imports {name}"
        for line, name in imported_modules(source, package)
        if name.split(".")[0] in own - ALLOWED[layer]
    ]


def package_of(path: Path) -> str:
    """The package a module's relative imports start from (the module itself for an __init__.py)."""
    return ".".join(path.relative_to(import_root(path)).parent.parts)


def layer_files(layer: str) -> list[Path]:
    return sorted(path for path in (REPO_ROOT / layer).rglob("*.py") if "__pycache__" not in path.parts)


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    own = own_top_level_names()
    files = layer_files(layer)
    assert files, f"no Python file under {layer}/"
    found = {
        str(path.relative_to(REPO_ROOT)): violations
        for path in files
        if (violations := layer_violations(layer, package_of(path), path.read_text(), own))
    }
    assert not found, f"{layer}/ may import only {sorted(ALLOWED[layer])} of this repository: {found}"


def test_every_package_of_the_repository_is_known_to_the_rules() -> None:
    """A new top-level package fails here until the rules say which layers may import it."""
    assert own_top_level_names() == {
        "local_stack",
        "harness",
        "benchmarks",
        "tests",
        PRODUCT_PACKAGE,
        CLIENT_PACKAGE,
        "app",
    }


@pytest.mark.parametrize(
    ("layer", "package", "source"),
    [
        ("functions", PRODUCT_PACKAGE, "from local_stack.cloud import LocalCloud"),
        ("functions", "", "def lambda_handler(event, context):\n    import harness.workflow\n"),
        ("local_stack", "local_stack", "from slurm_job_api.head_node import HeadNode"),
        ("local_stack", "local_stack", "import importlib\nimportlib.import_module('app')"),
        ("harness", "harness", "from tests.support.fake_slurm import FakeSlurm"),
        ("harness", "harness", "from benchmarks import report"),
        ("benchmarks", "benchmarks", "from tests.support import hostile"),
        ("client", CLIENT_PACKAGE, "from slurm_job_api.spec import JobSpec"),
        ("functions", PRODUCT_PACKAGE, "import slurm_job_client"),
    ],
)
def test_an_import_across_the_layers_is_found(layer: str, package: str, source: str) -> None:
    assert len(layer_violations(layer, package, source, own_top_level_names())) == 1


def test_imports_within_a_layer_and_of_libraries_are_allowed() -> None:
    source = "from __future__ import annotations\nimport boto3\nfrom . import spec\nfrom .errors import Invalid\n"
    assert [name for _, name in imported_modules(source, PRODUCT_PACKAGE)] == [
        "__future__",
        "boto3",
        PRODUCT_PACKAGE,
        f"{PRODUCT_PACKAGE}.errors",
    ]
    assert [name for _, name in imported_modules("from ..support import hostile", "tests.static")] == ["tests.support"]
    assert layer_violations("functions", PRODUCT_PACKAGE, source, own_top_level_names()) == []
