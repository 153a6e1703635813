"""The order in which `make test`'s workers take the test modules: the longest first.

`make test` hands each module whole to one xdist worker (`--dist loadscope`, `--no-loadscope-reorder`). xdist would
otherwise order modules by their number of tests, so the fault scenarios — four tests, four minutes — started last
and the run waited for them alone. Taking the longest modules first (longest-processing-time-first scheduling)
keeps every worker busy until the end. Only the order changes, never which tests run; a module missing from the
table (a new one) runs after these, in collection order.

Stdlib only: tests/unit must collect without the local stack.
"""

from __future__ import annotations

# Seconds each module took in `pytest -n 3 --dist loadscope --durations=120` on this repository's 2-core machine (sum
# of its tests' setup, call and teardown). Rough figures are enough: they only order the modules.
MODULE_SECONDS = {
    "tests/faults/test_faults_without_accounting.py": 252,
    "tests/faults/test_faults_with_accounting.py": 243,
    "tests/security/test_hostile_corpus_real_slurm.py": 221,
    "tests/e2e/test_jobs_on_real_slurm.py": 164,
    "tests/handlers/test_api.py": 155,
    "tests/security/test_hostile_specs.py": 144,
    "tests/e2e/test_limits_on_real_slurm.py": 115,
    "tests/workflow/test_state_limits.py": 93,
    "tests/security/test_openapi_schemathesis.py": 83,
    "tests/faults/test_lambda_platform_faults.py": 82,
    "tests/e2e/test_never_start.py": 80,
    "tests/handlers/test_job_logs.py": 75,
    "tests/e2e/test_client_on_real_slurm.py": 75,
    "tests/workflow/test_job_workflow.py": 64,
    "tests/e2e/test_logs_on_real_slurm.py": 55,
    "tests/faults/test_long_job_cost.py": 53,
    "tests/security/test_protocol_abuse.py": 47,
    "tests/security/test_user_isolation_real_slurm.py": 46,
    "tests/workflow/test_long_job_continuation.py": 33,
    "tests/e2e/test_dependency_never_satisfied.py": 28,
    "tests/handlers/test_events.py": 27,
    "tests/security/test_bookkeeping_attacks_real_slurm.py": 23,
    "tests/local_stack/test_slurm_cluster.py": 23,
    "tests/security/test_hostile_log_requests.py": 22,
    "tests/static/test_checkov.py": 22,
    "tests/static/test_template.py": 20,
    "tests/workflow/test_never_start.py": 20,
}


def pytest_collection_modifyitems(items) -> None:
    def weight(item) -> int:
        return -MODULE_SECONDS.get(item.nodeid.split("::", 1)[0], 0)

    items.sort(key=weight)  # stable: within a module, and among the unlisted ones, the collection order stays
