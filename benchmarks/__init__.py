"""The reliability report: ``make reliability-report`` (``python -m benchmarks.report``) regenerates
docs/reliability.md from the scenario library (harness/), whose scenarios the tests in tests/faults run and assert on.
"""
