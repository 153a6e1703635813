"""checkov over template.yaml and over the template SAM generates from it.

Suppressions live only in template.yaml, next to what they excuse (Metadata: checkov: skip: [{id, comment}]).
Resources that SAM generates (roles, stages, permissions) inherit the suppressions of the SAM resource they come
from, whose logical id prefixes theirs (SAM's naming: ApiFunction -> ApiFunctionRole, JobsApi -> JobsApiv1Stage).
"""

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from local_stack.template_model import load_template_document

from .tools import CHECKOV, TEMPLATE, describe, require_tool, run_offline

pytestmark = pytest.mark.static

SERVERLESS_PREFIX = "AWS::Serverless::"


def run_checkov(template: Path, workdir: Path) -> dict[str, Any]:
    """checkov's JSON report for one CloudFormation template, offline and ignoring any user or project config."""
    checkov = require_tool(CHECKOV)
    result = run_offline(
        [checkov, "--file", template, "--framework", "cloudformation", "--skip-download", "--output", "json"],
        cwd=workdir,  # no .checkov.yaml here or in HOME: nothing can be skipped but inline
        env={"HOME": str(workdir)},
    )
    assert result.returncode in (0, 1), describe(result)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON report\n{describe(result)}")
    return report


def assert_clean(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0 and summary["resource_count"] > 0, f"checkov checked nothing: {summary}"
    failed = [
        f"{check['check_id']} {check['check_name']}: {check['resource']} (lines {check['file_line_range']})"
        for check in report["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)


def test_checkov_passes_on_template(tmp_path: Path) -> None:
    assert_clean(run_checkov(TEMPLATE, tmp_path))


def test_checkov_passes_on_generated_template(generated_template: dict[str, Any], tmp_path: Path) -> None:
    generated = copy.deepcopy(generated_template)
    sam_resources = {
        logical_id: resource
        for logical_id, resource in load_template_document(TEMPLATE)["Resources"].items()
        if resource["Type"].startswith(SERVERLESS_PREFIX)
    }
    for logical_id, resource in generated["Resources"].items():
        parents = [parent for parent in sam_resources if logical_id.startswith(parent) and logical_id != parent]
        if parents and "Metadata" not in resource:
            parent = max(parents, key=len)
            resource["Metadata"] = {"checkov": sam_resources[parent].get("Metadata", {}).get("checkov", {})}
    generated_path = tmp_path / "generated.json"
    generated_path.write_text(json.dumps(generated), encoding="utf-8")
    assert_clean(run_checkov(generated_path, tmp_path))


def test_every_suppression_is_justified() -> None:
    suppressions = [
        (logical_id, skip)
        for logical_id, resource in load_template_document(TEMPLATE)["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert suppressions, "expected the template's justified suppressions; has the Metadata layout changed?"
    unjustified = [
        f"{logical_id}: {skip}"
        for logical_id, skip in suppressions
        if not re.fullmatch(r"CKV2?_AWS_\d+", str(skip.get("id"))) or len(str(skip.get("comment", "")).split()) < 5
    ]
    assert unjustified == [], "each skip needs a check id and a comment saying why:\n" + "\n".join(unjustified)
