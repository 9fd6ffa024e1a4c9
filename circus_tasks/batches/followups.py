"""What comes after a batch's jobs ran: retrying the failed ones, and promoting the new
results over the jobs they supersede."""

from __future__ import annotations

from sqlmodel import Session

from circus_tasks.batches import records
from circus_tasks.db.models import Batch, Job
from circus_tasks.errors import CircusError, JobStateError
from circus_tasks.jobs import transitions
from circus_tasks.jobs.registration import JobRequest, SeriesInput, judge_requests, write_jobs
from circus_tasks.statuses import BatchStatus, JobStatus


def retry_failed_items(batch_id: str, *, user: str | None, session: Session) -> list[str]:
    """A new job for each item whose job failed, linked to it, in the same batch; the batch
    runs again if it had completed.

    Returns:
        The new jobs' ids.
    """
    batch = records.require_batch(batch_id, session=session)
    if batch.status == BatchStatus.CANCELLED:
        raise JobStateError(
            f"You cannot retry the failed items of batch {batch_id} because it is cancelled; "
            "start a new batch with --failed-since to run them again."
        )
    failed = []
    for item in records.items(batch_id, session=session):
        job = session.get(Job, item.job_id) if item.job_id else None
        if job is not None and job.status == JobStatus.FAILED:
            failed.append((item, job))
    requests = [
        JobRequest(
            batch.plugin_id,
            [SeriesInput(s["series_uid"], s["range"]) for s in item.series],
            priority=job.priority,
            user=user or job.user,
            supersedes_job_id=job.id,
        )
        for item, job in failed
    ]
    new_ids = []
    for (item, job), outcome in zip(failed, judge_requests(requests, session=session), strict=True):
        if isinstance(outcome, CircusError):
            item.reason = f"retry of {job.id} refused: {outcome}"
        else:
            write_jobs([outcome], session=session, batch_id=batch_id)
            item.job_id, item.reason = outcome.job_id, f"retry of {job.id}"
            new_ids.append(outcome.job_id)
        session.add(item)
    if new_ids and batch.status == BatchStatus.COMPLETED:
        records.move_batch(batch_id, BatchStatus.COMPLETED, BatchStatus.RUNNING, session=session)
    session.flush()
    return new_ids


def supersede_finished(batch_id: str, *, user: str | None, session: Session) -> list[str]:
    """Invalidate each job the batch re-ran whose new job finished, with the reason
    "superseded by JOB (plug-in@version)"; the others stay as they are.

    Returns:
        The ids of the jobs invalidated now.
    """
    batch: Batch = records.require_batch(batch_id, session=session)
    done = []
    for item in records.items(batch_id, session=session):
        new = session.get(Job, item.job_id) if item.job_id else None
        if item.supersedes_job_id is None or new is None or new.status != JobStatus.FINISHED:
            continue
        if transitions.supersede(
            item.supersedes_job_id, new.id, batch.plugin_id, user=user, session=session
        ):
            done.append(item.supersedes_job_id)
    return done
