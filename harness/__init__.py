"""The scenario library: jobs run through the product on the local stack, and how each one is checked.

Fault and purge scenarios (fault_scenarios.py, purge_scenarios.py) over the fault clusters (fault_stacks.py), the
reliability checks (reliability.py) against Slurm's own records (slurm_records.py), the cost of long jobs under
compressed time (long_jobs.py, over state_slurm.py), the Slurm answers in the head-node program's formats
(scripted_slurm.py), and the helpers that read a job's workflow (workflow.py).

tests/ and the reliability report (benchmarks/report.py) both import it; it imports neither of them
(tests/static/test_package_layers.py).

The product's shared package (functions/shared) is put on the import path here, as pytest's ``pythonpath`` does for
the tests, so that the scenarios read statuses and the poll schedule from the product itself.
"""

import sys
from pathlib import Path

_SHARED = str(Path(__file__).resolve().parents[1] / "functions" / "shared")
if _SHARED not in sys.path:
    sys.path.append(_SHARED)
