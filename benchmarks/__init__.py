"""Measurements of the product on the local stack: fault scenarios (reliability) and the cost of long jobs.

Run ``make reliability-report`` (``python -m benchmarks.report``) to regenerate docs/reliability.md; the tests in
tests/faults run the same code and assert on its results.

The product's shared package (functions/shared) is put on the import path here, as pytest's ``pythonpath`` does for
the tests, so that the benchmarks read statuses and the poll schedule from the product itself.
"""

import sys
from pathlib import Path

_SHARED = str(Path(__file__).resolve().parents[1] / "functions" / "shared")
if _SHARED not in sys.path:
    sys.path.append(_SHARED)
