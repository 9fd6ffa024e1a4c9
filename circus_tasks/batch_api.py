"""What users call for batches: plan, start, find, pause, resume and cancel them.

A batch re-runs one plug-in over a selection (series, earlier jobs, failed jobs). Its jobs are
registered when it starts, by the rules of :func:`~circus_tasks.api.submit_jobs`, and fed to
the machines by the batch's own flow run, at most ``max_in_flight`` at a time.
"""

from __future__ import annotations

from sqlmodel import col, select

from circus_tasks.batches import records
from circus_tasks.batches.compare import as_csv, compare_items
from circus_tasks.batches.followups import retry_failed_items, supersede_finished
from circus_tasks.batches.plan import BatchPlan, BatchRequest, plan_batch_items, start_batch_records
from circus_tasks.batches.selections import (
    ChangedSelection,
    FailedSelection,
    JobsSelection,
    SeriesSelection,
)
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Batch, BatchItem, BatchRead
from circus_tasks.orchestration.batches import (
    cancel_batch as cancel_batch_and_jobs,
)
from circus_tasks.orchestration.batches import (
    ensure_feeder,
    launch,
)
from circus_tasks.orchestration.mirror import try_mirror_state
from circus_tasks.orchestration.schedules import (
    BatchSchedule,
    ScheduleError,
    add_schedule,
    list_schedules,
    remove_schedule,
    set_active,
)
from circus_tasks.statuses import BatchStatus

__all__ = [
    "BatchSchedule",
    "ScheduleError",
    "add_schedule",
    "list_schedules",
    "pause_schedule",
    "remove_schedule",
    "resume_schedule",
    "BatchPlan",
    "BatchRequest",
    "ChangedSelection",
    "FailedSelection",
    "JobsSelection",
    "SeriesSelection",
    "batch_items",
    "batch_progress",
    "cancel_batch",
    "compare_batch",
    "get_batch",
    "list_batches",
    "pause_batch",
    "plan_batch",
    "promote_batch",
    "resume_batch",
    "retry_failed",
    "start_batch",
]


def plan_batch(request: BatchRequest) -> BatchPlan:
    """What starting ``request`` would do, item by item; writes nothing.

    Raises:
        PluginNotFoundError: the batch's plug-in is not registered.
    """
    with session_scope() as session:
        return plan_batch_items(request, session=session)


def start_batch(request: BatchRequest) -> BatchRead:
    """Start a batch as its plan says: register its jobs (held for its flow run) and create the
    flow run that feeds them. The same request while its batch runs returns that batch.

    Raises:
        PluginNotFoundError: the batch's plug-in is not registered.
    """
    with session_scope() as session:
        batch, created = start_batch_records(request, session=session)
        batch_id = batch.id
    if created or batch.flow_run_id is None:
        launch(batch_id)
    return get_batch(batch_id)


def get_batch(batch_id: str) -> BatchRead:
    """One batch.

    Raises:
        BatchNotFoundError: for an unknown id.
    """
    with session_scope() as session:
        return BatchRead.model_validate(records.require_batch(batch_id, session=session))


def list_batches(*, status: BatchStatus | str | None = None, limit: int = 50) -> list[BatchRead]:
    """Batches, newest first."""
    with session_scope() as session:
        query = select(Batch).order_by(col(Batch.id).desc()).limit(limit)
        if status is not None:
            query = query.where(Batch.status == BatchStatus(status))
        return [BatchRead.model_validate(b) for b in session.exec(query)]


def batch_items(batch_id: str) -> list[BatchItem]:
    """The batch's items in order: each selected input and what became of it."""
    with session_scope() as session:
        records.require_batch(batch_id, session=session)
        return records.items(batch_id, session=session)


def batch_progress(batch_id: str) -> records.BatchProgress:
    """The batch's status and its jobs counted by status.

    Raises:
        BatchNotFoundError: for an unknown id.
    """
    with session_scope() as session:
        return records.progress(batch_id, session=session)


def _move(batch_id: str, verb: str) -> BatchRead:
    with session_scope() as session:
        return BatchRead.model_validate(records.user_move(batch_id, verb, session=session))


def pause_batch(batch_id: str) -> BatchRead:
    """Stop feeding the batch's jobs (those queued or running go on).

    Raises:
        BatchNotFoundError, JobStateError (a cancelled or completed batch).
    """
    return _move(batch_id, "pause")


def resume_batch(batch_id: str) -> BatchRead:
    """Feed a paused batch again.

    Raises:
        BatchNotFoundError, JobStateError (a cancelled or completed batch).
    """
    return _move(batch_id, "resume")


def cancel_batch(batch_id: str, *, user: str | None = None) -> BatchRead:
    """Cancel the batch and its queued jobs; running jobs finish.

    Raises:
        BatchNotFoundError, JobStateError (a completed batch).
    """
    return cancel_batch_and_jobs(batch_id, by=user or "unknown user")


def retry_failed(batch_id: str, *, user: str | None = None) -> list[str]:
    """New jobs for the batch's failed items only, each linked to the job it retries, fed by
    the batch's flow run (created again if it ended).

    Returns:
        The new jobs' ids.

    Raises:
        BatchNotFoundError: for an unknown id.
    """
    with session_scope() as session:
        new_ids = retry_failed_items(batch_id, user=user, session=session)
    if new_ids:
        ensure_feeder(batch_id)
    return new_ids


def promote_batch(batch_id: str, *, user: str | None = None) -> list[str]:
    """Invalidate each job the batch re-ran whose new job finished ("superseded by JOB
    (plug-in@version)"); their flow runs show "Invalidated".

    Returns:
        The ids of the jobs invalidated now.
    """
    with session_scope() as session:
        done = supersede_finished(batch_id, user=user, session=session)
    for job_id in done:
        try_mirror_state(job_id)
    return done


def compare_batch(batch_id: str) -> str:
    """The old and new results of each re-run item side by side, as CSV. (The batch's flow run
    publishes the same comparison as a Prefect table artifact when the batch ends.)

    Raises:
        BatchNotFoundError: for an unknown id.
    """
    with session_scope() as session:
        records.require_batch(batch_id, session=session)
        return as_csv(compare_items(batch_id, session=session))


def pause_schedule(name: str) -> None:
    """Stop a batch schedule from starting batches (until resumed).

    Raises:
        ScheduleError: no schedule has this name.
    """
    set_active(name, False)


def resume_schedule(name: str) -> None:
    """Let a paused batch schedule start batches again.

    Raises:
        ScheduleError: no schedule has this name.
    """
    set_active(name, True)
