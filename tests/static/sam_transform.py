"""Prints the CloudFormation template that SAM generates from a SAM template, as JSON.

Runs with .venv-sam's Python (it needs samtranslator, which pins its own boto3): `python sam_transform.py TEMPLATE`.
Local code locations are replaced by placeholder S3 URIs, as `sam package` would replace them by real ones.
"""

import json
import sys
from pathlib import Path

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

_LOCAL_CODE_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")


class _NoManagedPolicyLookups:
    """SAM resolves managed policy names through IAM; the template must use none, so there is nothing to look up."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(template_text: str) -> dict:
    template = yaml_parse(template_text)
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        for name in _LOCAL_CODE_PROPERTIES:
            if isinstance(properties.get(name), str):
                properties[name] = f"s3://placeholder-bucket/{name}"
    return transform(template, {}, _NoManagedPolicyLookups())


if __name__ == "__main__":
    json.dump(transformed(Path(sys.argv[1]).read_text(encoding="utf-8")), sys.stdout, indent=1)
