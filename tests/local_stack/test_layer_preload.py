"""The Lambda forkserver's preload of the template's layer modules (local_stack.layer_preload).

The probe forks, so the tests that run it on a layer of their own do so in a fresh, single-threaded interpreter (as
the forkserver is); the tests through a LambdaRuntime use this test process's forkserver, which preloaded the
repository template's layers.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from local_stack import layer_preload
from local_stack.lambda_runtime import LambdaRuntime
from local_stack.template_model import REPOSITORY_TEMPLATE, TemplateModel, layer_content_uris

REPO_ROOT = Path(__file__).resolve().parents[2]


def _preloadable_in_a_fresh_process(layer: Path, function_variables: list[str]) -> list[str]:
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom local_stack.layer_preload import preloadable\n"
        "print(json.dumps(preloadable([Path(sys.argv[1])], json.loads(sys.argv[2]))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(layer), json.dumps(function_variables)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "FROM_THE_PROCESS": "shared"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)


def _layer(tmp_path: Path, modules: dict[str, str]) -> Path:
    layer = tmp_path / "layer"
    (layer / "pkg").mkdir(parents=True)
    (layer / "pkg" / "__init__.py").write_text("")
    for name, source in modules.items():
        (layer / "pkg" / f"{name}.py").write_text(source)
    return layer


def test_only_modules_whose_import_touches_nothing_of_a_function_are_preloadable(tmp_path: Path) -> None:
    written = tmp_path / "written"
    layer = _layer(
        tmp_path,
        {
            "plain": "VALUE = 1\n",
            "uses_plain": "from pkg.plain import VALUE\n",
            "reads_process_variable": "import os\nSHARED = os.environ.get('FROM_THE_PROCESS')\n",
            "reads_template_variable": "import os\nTABLE = os.environ.get('TABLE_NAME')\n",
            "reads_aws_variable": "import os\nREGION = os.getenv('AWS_REGION')\n",
            "copies_environment": "import os\nALL = dict(os.environ)\n",
            "uses_reader": "from pkg import reads_template_variable\n",
            "spawns": "import subprocess\nsubprocess.run(['true'])\n",
            "writes": f"open({str(written)!r}, 'w').close()\n",
            "starts_thread": "import threading\nthreading.Thread(target=print).start()\n",
            "broken": "raise ValueError('broken')\n",
        },
    )
    preloadable = _preloadable_in_a_fresh_process(layer, ["TABLE_NAME"])
    assert preloadable == ["pkg", "pkg.plain", "pkg.reads_process_variable", "pkg.uses_plain"]
    assert not written.exists()  # the probe refused the write: nothing of a module's import escapes it


def test_a_module_that_hides_a_refused_read_makes_the_probe_preload_nothing(tmp_path: Path) -> None:
    hides = "import os\ntry:\n    NAME = os.environ['TABLE_NAME']\nexcept BaseException:\n    NAME = None\n"
    layer = _layer(tmp_path, {"plain": "VALUE = 1\n", "hides": hides})
    assert _preloadable_in_a_fresh_process(layer, ["TABLE_NAME"]) == []


def test_layer_modules_lists_packages_before_their_modules_without_importing(tmp_path: Path) -> None:
    layer = _layer(tmp_path, {"b": "raise SystemExit('imported')\n", "a": ""})
    (layer / "pkg" / "sub").mkdir()
    (layer / "pkg" / "sub" / "__init__.py").write_text("")
    (layer / "top.py").write_text("")
    assert layer_preload.layer_modules(layer) == ["pkg", "pkg.a", "pkg.b", "pkg.sub", "top"]


REPORT_HANDLER = """import os
import sys

from local_stack import lambda_worker


def handler(event, context):
    preloaded = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if any(name == package or name.startswith(package + ".") for package in lambda_worker.PRELOADED_PACKAGES)
    }
    imported = {}
    for package in event.get("import", []):
        __import__(package)
        imported[package] = getattr(sys.modules[package], "ORIGIN", "layer")
    return {
        "preloaded": preloaded,
        "imported": imported,
        "own": os.environ.get("ONLY_ONE"),
        "service": os.environ.get("POWERTOOLS_SERVICE_NAME"),
    }
"""


def test_environments_get_the_layers_modules_preloaded_and_keep_their_own_variables(tmp_path: Path) -> None:
    """Each environment of a function with the repository's layer has the layer's modules, imported from its
    ContentUri, before it imports its handler, and still its own variables; a function whose code has a package of
    the same name gets its own package, not the preloaded one."""
    (layer,) = layer_content_uris(REPOSITORY_TEMPLATE)
    packages = sorted({name.split(".")[0] for name in layer_preload.layer_modules(layer)})
    for name in ("one", "two", "shadow"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(REPORT_HANDLER)
    for package in packages:
        (tmp_path / "shadow" / package).mkdir()
        (tmp_path / "shadow" / package / "__init__.py").write_text("ORIGIN = 'shadow'\n")
    (tmp_path / "template.yaml").write_text(
        "Globals:\n  Function: {Runtime: python3.12, Handler: app.handler, Timeout: 30, Layers: [!Ref Layer]}\n"
        "Resources:\n"
        f"  Layer: {{Type: AWS::Serverless::LayerVersion, Properties: {{ContentUri: {layer}}}}}\n"
        "  One:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      CodeUri: one/\n"
        "      Environment: {Variables: {ONLY_ONE: x, POWERTOOLS_SERVICE_NAME: one}}\n"
        "  Two:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: two/, Environment: {Variables: {POWERTOOLS_SERVICE_NAME: two}}}\n"
        "  Shadow: {Type: AWS::Serverless::Function, Properties: {CodeUri: shadow/}}\n"
    )
    runtime = LambdaRuntime(
        TemplateModel(tmp_path / "template.yaml", stack_name="s"), endpoint_url="http://127.0.0.1:9"
    )
    try:
        one = runtime.invoke("One", {}).json()
        two = runtime.invoke("Two", {}).json()
        shadow = runtime.invoke("Shadow", {"import": packages}).json()
    finally:
        runtime.uninstall()
    assert (one["own"], one["service"]) == ("x", "one")
    assert (two["own"], two["service"]) == (None, "two")
    assert one["preloaded"], "the forkserver preloaded none of the layer's modules"
    assert one["preloaded"] == two["preloaded"]
    assert all(Path(file).is_relative_to(layer) for file in one["preloaded"].values()), one["preloaded"]
    # The modules that read a function's variables at import (e.g. the one creating Powertools' Logger, which reads
    # POWERTOOLS_SERVICE_NAME) are not among them: those are left to the handler's own import.
    assert set(one["preloaded"]) < set(layer_preload.layer_modules(layer))
    assert shadow["preloaded"] == {}
    assert shadow["imported"] == dict.fromkeys(packages, "shadow")
