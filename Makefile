# The two commands of the README, and their parts. Everything installs itself on first use (root needed for Slurm).
.PHONY: demo serve test lint bootstrap

# Run the example job through the whole product on this machine (real Slurm, the real state machine and handlers).
demo:
	scripts/bootstrap-python.sh
	.venv/bin/python -m local_stack demo

# Keep the local API up for curl, with examples.
serve:
	scripts/bootstrap-python.sh
	.venv/bin/python -m local_stack serve

# Every test: unit, handlers, workflow, static checks and end-to-end on real Slurm. Python and pytest keep their
# bytecode and assertion rewrites in .pycache/ (gitignored; none lands next to the sources), even where the
# environment sets PYTHONDONTWRITEBYTECODE: each worker's collection then takes 7.4 CPU-s instead of 13.2.
test: bootstrap
	PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/.pycache .venv/bin/python -m pytest -n 4 --dist loadscope --no-loadscope-reorder

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bootstrap:
	scripts/bootstrap.sh

# Regenerate docs/reliability.md: the fault scenarios on real Slurm and what long jobs cost (about ten minutes, as
# root; not part of `make test`, and not while tests/faults run: they use the same clusters).
.PHONY: reliability-report
reliability-report: bootstrap
	.venv/bin/python -m benchmarks.report

# A burst of concurrent POST /jobs on the local stack in the previous design (no bound on Lambda environments, a listen
# backlog of 5) and the bounded one; prints answers, statuses, connection errors and the environments' peak memory
# (about a minute and a half; no Slurm needed; not part of `make test`).
.PHONY: api-burst
api-burst: bootstrap
	.venv/bin/python -m benchmarks.api_burst

# Regenerate docs/job-tracking.md: per-job polling, the sweep and the sweep with the push hook side by side, for 1,
# 100 and 500 concurrent jobs on the local stack with real Slurm (status commands, head-node CPU, slurmctld RPCs,
# Lambda invocations, transitions, detection latency, lost and duplicated jobs). As root; about half an hour on 2
# CPUs; not part of `make test`.
.PHONY: tracking-benchmark
tracking-benchmark: bootstrap
	.venv/bin/python -m benchmarks.job_tracking

# `sam local invoke` of the built API and sweep functions in Docker against the local stack, offline (a local
# stand-in for the Lambda python3.12 image, dockerd without a bridge network; README, "Invoking one function").
# As root; a few minutes the first time; not part of `make test`.
.PHONY: sam-local-invoke
sam-local-invoke:
	scripts/bootstrap-python.sh
	scripts/sam-local-invoke-offline.sh
