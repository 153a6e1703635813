"""Small SAM templates written for a test, beside an empty code directory ``src/``."""

import textwrap
from pathlib import Path


def write_template(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(body))
    (tmp_path / "src").mkdir(exist_ok=True)
    return path
