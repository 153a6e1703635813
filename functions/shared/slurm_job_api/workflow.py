"""The three steps of the job workflow — submit, poll, finish — behind the state machine's Task states.

The handlers in functions/{submit,poll,finish} only parse the event (slurm_job_api.workflow_events) and call these.
Each step keeps the job record in DynamoDB current, talks to the head node through HeadNode (which owns the SSM
transport), and raises the named errors of slurm_job_api.errors for the state machine to retry or catch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from slurm_job_api import arns, errors, outcome, progress, results
from slurm_job_api.clock import iso, utc_now
from slurm_job_api.dependencies import DependencyTarget, resolve
from slurm_job_api.head_node import HeadNode, ssm_wait_seconds
from slurm_job_api.head_node_protocol import (
    CancelRequest,
    CollectRequest,
    FileReport,
    StatusRequest,
    SubmitRequest,
    Upload,
)
from slurm_job_api.job_record import JobRecord, StoredResults
from slurm_job_api.job_store import JobStore
from slurm_job_api.observability import MetricUnit, logger, metrics
from slurm_job_api.progress import JobProgress
from slurm_job_api.results import ResultsBucket
from slurm_job_api.sbatch import sbatch_options
from slurm_job_api.settings import Settings
from slurm_job_api.spec import JobSpec
from slurm_job_api.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES
from slurm_job_api.workflow_events import AwaitNewsEvent, FinishJobEvent, PollJobEvent, SubmitJobEvent, WorkflowInput

FINISH_COLLECT_ATTEMPTS = 3  # transient collection errors are retried this many times before results go without


def submit_request(
    *,
    job_id: str,
    submission_id: str,
    spec: JobSpec,
    slurm_dependencies: dict[str, list[str]],
    script_url: str,
    environment_url: str | None,
) -> SubmitRequest:
    """What the head-node program's submit action gets. Large values (the script, the environment) travel through
    S3 behind presigned URLs, so the SSM command stays small whatever the spec."""
    return SubmitRequest(
        job_id=job_id,
        submission_id=submission_id,
        script_url=script_url,
        sbatch_options=sbatch_options(spec, slurm_dependencies),
        working_directory=spec.working_directory,
        environment_url=environment_url or None,
    )


def collect_request(
    job: JobProgress, spec: JobSpec, planned: list[results.PlannedUpload], presigned_put: Callable[[str], str]
) -> CollectRequest:
    """The collect request for every planned upload (HeadNode.collect_batches splits it under the command budget)."""
    return CollectRequest(
        job_id=job.job_id,
        submission_id=job.submission_id,
        slurm_job_id=job.slurm_job_id,
        working_directory=spec.working_directory,
        uploads=[
            Upload(
                name=upload.name,
                source=upload.source,
                task_id=upload.task_id,
                path=upload.path,
                url=presigned_put(upload.key),
            )
            for upload in planned
        ],
    )


@dataclass
class Workflow:
    settings: Settings
    store: JobStore
    bucket: ResultsBucket
    head_node: HeadNode
    remaining_seconds: Callable[[], float] = lambda: 120.0
    now: Callable[[], datetime] = utc_now

    def _ssm_wait(self) -> float:
        return ssm_wait_seconds(self.remaining_seconds())

    def _record_and_spec(self, state: WorkflowInput, execution_arn: str) -> tuple[JobRecord, JobSpec]:
        """The job's record and its accepted spec, read from S3 (the record keeps only a summary of it, the state only
        its key). If the API stopped before writing the record, it is made here from the execution input."""
        job_id, owner = state.job_id, state.owner
        stored = self.bucket.read_json(state.spec_key)
        if stored is None:
            raise errors.SlurmJobApiError(f"the accepted spec {state.spec_key} is not in the results bucket")
        spec = JobSpec.model_validate(stored)
        record = self.store.get(job_id)
        if record is None:
            logger.warning("job record missing: recreating it from the execution input")
            self.store.create(
                JobRecord.new(
                    job_id=job_id,
                    submission_id=state.submission_id,
                    owner=owner,
                    spec=spec,
                    created_at=state.created_at,
                    request_hash=state.request_hash,
                    execution_arn=execution_arn,
                    retention_days=self.settings.result_retention_days,
                    cluster_name=self.settings.cluster_name,
                    cluster_user=state.cluster_user or self.settings.cluster_user,
                )
            )
            record = self.store.get(job_id)
        if record is None or record.owner != owner:
            raise errors.HeadNodeProtocolError(f"job record {job_id} does not match the execution input")
        return record, spec

    # -- submit ---------------------------------------------------------------------------------------------------

    def submit(self, event: SubmitJobEvent) -> dict:
        record, spec = self._record_and_spec(event, event.execution_arn)
        now = iso(self.now())
        if record.cancel_requested and not record.slurm_job_id:
            cancelled = progress.cancelled_before_submission(event.job_id, now=now)
            self.store.update(event.job_id, JobRecord.progress_fields(cancelled, now), only_if_active=True)
            logger.info("job cancelled before submission")
            return cancelled.to_state()

        resolved = resolve(spec.dependency or [], self._dependency_targets(spec, event.owner))
        environment_url = None
        if spec.environment:
            environment_url = self.bucket.presigned_get(self.bucket.put_environment(event.job_id, spec.environment))
        request = submit_request(
            job_id=event.job_id,
            submission_id=event.submission_id,
            spec=spec,
            slurm_dependencies=resolved.slurm,
            script_url=self.bucket.presigned_get(spec.script_s3_key or results.script_key(event.job_id)),
            environment_url=environment_url,
        )
        head_node = self.head_node.as_user(record.cluster_user)
        reply = head_node.run(request, wait_seconds=self._ssm_wait())

        submitted = progress.submitted(
            event.job_id,
            submission_id=event.submission_id,
            slurm_job_id=reply.slurm_job_id,
            is_array=spec.array is not None,
            now=record.submitted_at or now,
            schedule=self.settings.poll_schedule,
            safety_floor_seconds=self.settings.safety_floor_seconds,
        )
        updated = self.store.update(event.job_id, JobRecord.progress_fields(submitted, now), only_if_active=True)
        logger.info(
            "job submitted",
            extra={
                "slurm_job_id": submitted.slurm_job_id,
                "already_submitted": reply.already_submitted,
                **reply.diagnostics(),
            },
        )
        if not reply.already_submitted:
            metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
        if updated and updated.cancel_requested:
            # DELETE arrived while sbatch ran: cancel now; the next poll sees the result.
            head_node.run(
                CancelRequest(job_id=event.job_id, slurm_job_id=submitted.slurm_job_id), wait_seconds=self._ssm_wait()
            )
        return submitted.to_state()

    def _dependency_targets(self, spec: JobSpec, owner: str) -> dict[str, DependencyTarget]:
        targets: dict[str, DependencyTarget] = {}
        for dependency in spec.dependency or []:
            other = self.store.get_owned(dependency.job_id, owner)
            if other is not None:
                targets[dependency.job_id] = DependencyTarget(
                    job_id=dependency.job_id,
                    status=other.status,
                    slurm_job_id=other.slurm_job_id,
                    started=bool(other.started_at),
                )
        return targets

    # -- poll -----------------------------------------------------------------------------------------------------

    def poll(self, event: PollJobEvent) -> dict:
        if event.outage is not None:
            return self.note_outage(event)
        job = event.job
        record = self.store.get(event.job_id)
        head_node = self.head_node.as_user(record.cluster_user if record else None)
        cancel_requested = bool(record and record.cancel_requested)
        observation = event.news.observation if event.news else None  # the sweep's, when it woke the workflow
        if observation is not None and observation.slurm_job_id != job.slurm_job_id:
            observation = None
        over = observation is not None and (not observation.found or observation.status in TERMINAL_STATUSES)
        if cancel_requested and job.status in ACTIVE_STATUSES and not over:
            head_node.run(
                CancelRequest(job_id=job.job_id, slurm_job_id=job.slurm_job_id), wait_seconds=self._ssm_wait()
            )
            observation = None  # what the sweep saw came before the cancel
        if observation is None:
            observation = head_node.run(
                StatusRequest(job_id=job.job_id, slurm_job_id=job.slurm_job_id, is_array=job.is_array),
                wait_seconds=self._ssm_wait(),
            )
        now = self.now()
        advanced = progress.observe(
            job,
            observation,
            now=now,
            schedule=self.settings.poll_schedule,
            max_polls_per_execution=self.settings.max_polls_per_execution,
            cancel_requested=cancel_requested,
            never_start_grace_seconds=self.settings.never_start_grace_seconds,
            safety_floor_seconds=self.settings.safety_floor_seconds,
        )
        if progress.newly_unsatisfiable(job, advanced):
            # Pending past the grace period for a reason that never lets it start: end it, as an operator would.
            head_node.run(
                CancelRequest(job_id=job.job_id, slurm_job_id=job.slurm_job_id), wait_seconds=self._ssm_wait()
            )
            metrics.add_metric(name="JobsEndedAsUnsatisfiable", unit=MetricUnit.Count, value=1)
            logger.warning(
                "job cancelled: it cannot start under the cluster's configuration",
                extra={"reason": advanced.never_start_reason, "pending_since": advanced.never_start_since},
            )
        woken = event.news is not None and event.news.observation is not None
        metrics.add_metric(name="Wakes" if woken else "Polls", unit=MetricUnit.Count, value=1)
        changes = {**JobRecord.progress_fields(advanced, iso(now)), **JobRecord.stored(**JobRecord.wait_over())}
        if advanced.continue_as_new:
            changes.update(
                JobRecord.stored(
                    execution_arn=arns.execution_arn(event.state_machine_arn, advanced.next_execution_name or "")
                )
            )
        if record is None or record.would_change(changes):
            self.store.update(event.job_id, changes)
            logger.info(
                "job state changed",
                extra={"status": advanced.status, "slurm_state": advanced.slurm_state, **observation.diagnostics()},
            )
        return advanced.to_state()

    def note_outage(self, event: PollJobEvent) -> dict:
        """NoteHeadNodeOutage: PollJob's retries ran out because the job's state could not be asked; the workflow
        goes on (the outage in the record) until HeadNodeOutageLimitHours of lost contact."""
        error = str((event.outage or {}).get("Error", ""))
        now = self.now()
        advanced = progress.after_lost_contact(
            event.job,
            error=error,
            now=now,
            limit_seconds=self.settings.head_node_outage_limit_seconds,
            safety_floor_seconds=self.settings.safety_floor_seconds,
        )
        self.store.update(
            event.job_id,
            JobRecord.stored(
                unreachable_since=advanced.unreachable_since,
                longest_outage_seconds=advanced.longest_outage_seconds,
                updated_at=iso(now),
            ),
            only_if_active=True,
        )
        metrics.add_metric(name="HeadNodeOutagesNoted", unit=MetricUnit.Count, value=1)
        logger.warning(
            "no answer about the job: tracking goes on",
            extra={"error": error, "unreachable_since": advanced.unreachable_since},
        )
        return advanced.to_state()

    # -- await news -----------------------------------------------------------------------------------------------

    def await_news(self, event: AwaitNewsEvent) -> None:
        """Keeps the waiting workflow's token in the record, where the cluster's sweep finds it. A record that has
        ended keeps none: the wait then ends with its safety poll, which sees the end."""
        fields = JobRecord.waiting_fields(event.task_token, event.job.to_state(), iso(self.now()))
        if self.store.update(event.job_id, fields, only_if_active=True) is None:
            logger.warning("the job's record is no longer active: the workflow waits for its safety poll")

    # -- finish ---------------------------------------------------------------------------------------------------

    def finish(self, event: FinishJobEvent) -> dict:
        state = event.state
        job_id, job, error = state.job_id, state.job, state.error
        record, spec = self._record_and_spec(state, event.execution_arn)
        status, cause = outcome.final_status(job, error)
        files, collection = self._collect(self.head_node.as_user(record.cluster_user), job, spec, event.retry_count)
        finished_at = iso(self.now())
        document = outcome.result_document(
            record=record,
            spec=spec,
            progress=job,
            status=status,
            cause=cause,
            error=error,
            files=files,
            collection=collection,
            execution_arn=event.execution_arn,
            finished_at=finished_at,
        )
        # result.json lists every collected file, whatever their number: S3 holds it, never the workflow state.
        result_key = results.result_key(job_id)
        self.bucket.put_json(result_key, document)
        final_fields = JobRecord.finish_fields(
            job,
            status=status,
            cause=cause,
            error=outcome.error_details(error),
            results=StoredResults(
                bucket=self.bucket.name,
                prefix=results.job_prefix(job_id),
                result_key=result_key,
                file_count=len(files),
                collection=collection["status"],
            ),
            finished_at=finished_at,
        )
        self.store.update(job_id, final_fields)
        metrics.add_dimension(name="Status", value=status)
        metrics.add_metric(name="JobsFinished", unit=MetricUnit.Count, value=1)
        logger.info("job finished", extra={"status": status, "cause": cause})
        return {"status": status, "cause": cause, "resultKey": result_key, "fileCount": len(files)}

    def _collect(
        self, head_node: HeadNode, job: JobProgress | None, spec: JobSpec, retry_count: int
    ) -> tuple[list[dict], dict]:
        """Uploads the job's files through the head node; returns (files, collection summary)."""
        if job is None or not job.slurm_job_id:
            return [], {"status": "skipped", "message": "the job never reached Slurm"}
        planned = results.planned_uploads(job.job_id, array_task_ids=spec.array_task_ids, outputs=spec.outputs or [])
        by_name = {upload.name: upload for upload in planned}
        request = collect_request(job, spec, planned, self.bucket.presigned_put)
        reported: list[FileReport] = []
        try:
            for batch in head_node.collect_batches(request):
                reply = head_node.run(batch, wait_seconds=self._ssm_wait(), execution_timeout=3600)
                reported.extend(reply.files)
        except errors.TransientError as error:
            if retry_count + 1 < FINISH_COLLECT_ATTEMPTS:
                raise
            return self._files(reported, by_name), {"status": "failed", "message": str(error)[:1000]}
        except errors.SlurmJobApiError as error:
            return self._files(reported, by_name), {"status": "failed", "message": str(error)[:1000]}
        problems = [f"{item.name}: {item.message}" for item in reported if item.status == "error"]
        if problems:
            return self._files(reported, by_name), {"status": "partial", "message": "; ".join(problems)[:1000]}
        return self._files(reported, by_name), {"status": "complete", "message": None}

    @staticmethod
    def _files(reported: list[FileReport], by_name: dict[str, results.PlannedUpload]) -> list[dict]:
        return [
            {"name": item.name, "key": by_name[item.name].key, "bytes": item.bytes}
            for item in reported
            if item.status == "uploaded" and item.name in by_name
        ]


def workflow_for(remaining_seconds: Callable[[], float]) -> Workflow:
    """The workflow steps wired to this Lambda container's AWS clients."""
    from slurm_job_api import services
    from slurm_job_api.settings import settings

    return Workflow(
        settings=settings(),
        store=services.job_store(),
        bucket=services.results_bucket(),
        head_node=services.head_node(),
        remaining_seconds=remaining_seconds,
    )
