"""Submitting, finding, cancelling, aborting and invalidating jobs under the CIRCUS rules.

Every status move goes through :func:`move_status`: one atomic compare-and-set on the job row
plus its event, so that a cancel and the start of execution that race end with one winner.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import (
    Job,
    JobEvent,
    JobRead,
    JobSeries,
    JobSeriesBase,
    Series,
    utcnow,
)
from circus_tasks.errors import (
    CircusError,
    JobNotFoundError,
    JobStateError,
)
from circus_tasks.jobs.registration import (
    JobRequest,
    SeriesInput,
    find_duplicates,
    register_job,
    register_jobs,
)
from circus_tasks.statuses import TERMINAL, JobStatus, can_move

__all__ = [
    "JobRequest",
    "SeriesInput",
    "abort_job",
    "cancel_job",
    "find_duplicates",
    "get_job",
    "invalidate_job",
    "job_events",
    "list_jobs",
    "move_status",
    "register_job",
    "register_jobs",
    "submit_job",
    "submit_jobs",
    "wait_for_job",
]

log = logging.getLogger(__name__)


def submit_job(
    plugin_id: str,
    series: Sequence[SeriesInput | str],
    *,
    priority: int = 0,
    force: bool = False,
    user: str | None = None,
) -> JobRead:
    """Register a job and create its Prefect flow run.

    The job row is committed before anything can run it. If Prefect does not answer, the job
    stays registered and the reconciler dispatches it when Prefect is back.

    Args:
        plugin_id: ``name@version`` of the plug-in.
        series: series UIDs (range "auto") or :class:`SeriesInput` items, in order.
        priority: higher runs first; first in, first out within a priority.
        force: register even if a duplicate exists.
        user: who submits (recorded on the job and its events).

    Raises:
        PluginNotFoundError, SeriesNotFoundError, InvalidRangeError, InputConditionError,
        DuplicateJobError.
    """
    from circus_tasks.orchestration.dispatch import try_dispatch

    with session_scope() as session:
        job_id = register_job(
            plugin_id, series, priority=priority, force=force, user=user, session=session
        ).id
    try_dispatch(job_id)
    job = get_job(job_id)
    assert job is not None
    return job


def submit_jobs(requests: Sequence[JobRequest]) -> list[JobRead | CircusError]:
    """Register many jobs and create their Prefect flow runs, by the rules of
    :func:`submit_job`.

    Each request is judged on its own: the result holds, in request order, the registered job
    or the error that refused the request (``DuplicateJobError`` also for a repeat of an
    earlier request of the batch, unless forced). The valid jobs are committed first, a chunk
    at a time; then their flow runs are created together
    (:func:`~circus_tasks.orchestration.dispatch.dispatch_jobs`). If Prefect does not answer,
    the jobs stay registered and the reconciler dispatches them when Prefect is back.

    Example:
        >>> submit_jobs([JobRequest("volumetry@1.0.0", [uid]) for uid in uids])  # doctest: +SKIP
    """
    from circus_tasks.orchestration.dispatch import CHUNK, try_dispatch_jobs

    outcomes: list[Job | CircusError] = []
    for start in range(0, len(requests), CHUNK):
        with session_scope() as session:
            outcomes += register_jobs(requests[start : start + CHUNK], session=session)
    job_ids = [o.id for o in outcomes if isinstance(o, Job)]
    try_dispatch_jobs(job_ids)
    with session_scope() as session:
        reads = _read_jobs(job_ids, session=session)
    return [reads[o.id] if isinstance(o, Job) else o for o in outcomes]


def move_status(
    job_id: str,
    from_status: JobStatus,
    to_status: JobStatus,
    *,
    session: Session,
    by: str | None = None,
    reason: str | None = None,
    prefect_state: str | None = None,
    **values: Any,
) -> bool:
    """Atomically move a job ``from_status -> to_status`` (compare-and-set) and log the event.

    Returns:
        Whether this call made the move (``False``: the job was not in ``from_status``).
    """
    if not can_move(from_status, to_status):
        raise JobStateError(f"The move {from_status} -> {to_status} is not allowed.")
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status) == from_status)
        .values(status=to_status, updated_at=now, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(
        JobEvent(
            job_id=job_id,
            from_status=from_status,
            to_status=to_status,
            at=now,
            by=by,
            reason=reason,
            prefect_state=prefect_state,
        )
    )
    session.flush()
    return True


def _refusal(verb: str, job: Job) -> JobStateError:
    extra = " (already being processed)" if job.status == JobStatus.PROCESSING else ""
    return JobStateError(f"You cannot {verb} this job because its status is {job.status}{extra}.")


def _require(job_id: str, session: Session) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFoundError(f"No job {job_id}; list jobs with circus jobs.")
    return job


def cancel_job(job_id: str, *, user: str | None = None) -> JobRead:
    """Cancel a job that is still ``in_queue``; its flow run ends Cancelled.

    Raises:
        JobNotFoundError, JobStateError ("You cannot cancel this job because its status is X").
    """
    from circus_tasks.orchestration.dispatch import try_mirror_state

    with session_scope() as session:
        job = _require(job_id, session)
        won = move_status(
            job_id,
            JobStatus.IN_QUEUE,
            JobStatus.CANCELLED,
            session=session,
            by=user,
            reason=f"cancelled by {user or 'unknown user'}",
            finished_at=utcnow(),
        )
        if not won:
            session.refresh(job)
            raise _refusal("cancel", job)
    try_mirror_state(job_id)
    return _read(job_id)


def abort_job(job_id: str, *, user: str | None = None) -> JobRead:
    """Stop a ``processing`` job through Prefect's cancellation (CIRCUS cannot).

    The plug-in's processes are killed, the job ends ``failed`` with "aborted by USER", and the
    machine takes its next job.

    Raises:
        JobNotFoundError, JobStateError ("You cannot abort this job because its status is X").
    """
    from circus_tasks.orchestration.dispatch import request_cancellation

    who = user or "unknown user"
    with session_scope() as session:
        job = _require(job_id, session)
        result = session.execute(
            update(Job)
            .where(
                col(Job.id) == job_id,
                col(Job.status) == JobStatus.PROCESSING,
                col(Job.abort_requested_by).is_(None),
            )
            .values(abort_requested_by=who, updated_at=utcnow())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            session.refresh(job)
            if job.status != JobStatus.PROCESSING:
                raise JobStateError(
                    f"You cannot abort this job because its status is {job.status}."
                )
    request_cancellation(job_id)
    return _read(job_id)


def invalidate_job(job_id: str, *, reason: str, user: str | None = None) -> JobRead:
    """Mark a ``finished`` job invalid (who, when, why); its flow run shows "Invalidated".

    Raises:
        JobNotFoundError, JobStateError ("You cannot invalidate this job because ...").
    """
    from circus_tasks.orchestration.dispatch import try_mirror_state

    with session_scope() as session:
        job = _require(job_id, session)
        now = utcnow()
        won = move_status(
            job_id,
            JobStatus.FINISHED,
            JobStatus.INVALIDATED,
            session=session,
            by=user,
            reason=reason,
            invalidated_by=user,
            invalidated_at=now,
            invalidation_reason=reason,
        )
        if not won:
            session.refresh(job)
            raise _refusal("invalidate", job)
    try_mirror_state(job_id)
    return _read(job_id)


def _read_jobs(job_ids: Sequence[str], *, session: Session) -> dict[str, JobRead]:
    """The API views of many jobs, by id: the jobs and their series in one query each per
    chunk (never a query per job)."""
    from circus_tasks.orchestration.dispatch import CHUNK

    reads: dict[str, JobRead] = {}
    for start in range(0, len(job_ids), CHUNK):
        chunk = list(job_ids[start : start + CHUNK])
        jobs = session.exec(select(Job).where(col(Job.id).in_(chunk))).all()
        series: dict[str, list[JobSeriesBase]] = defaultdict(list)
        for row in session.exec(
            select(JobSeries)
            .where(col(JobSeries.job_id).in_(chunk))
            .order_by(col(JobSeries.job_id), col(JobSeries.position))
        ):
            series[row.job_id].append(JobSeriesBase.model_validate(row.model_dump()))
        for job in jobs:
            reads[job.id] = JobRead.model_validate({**job.model_dump(), "series": series[job.id]})
    return reads


def to_read(job: Job, *, session: Session) -> JobRead:
    """The API view of a job row, with its series."""
    return _read_jobs([job.id], session=session)[job.id]


def get_job(job_id: str) -> JobRead | None:
    """One job by id, or ``None``."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        return to_read(job, session=session) if job else None


def _read(job_id: str) -> JobRead:
    job = get_job(job_id)
    if job is None:
        raise JobNotFoundError(f"No job {job_id}; list jobs with circus jobs.")
    return job


def list_jobs(
    *,
    status: JobStatus | str | None = None,
    plugin_id: str | None = None,
    series_uid: str | None = None,
    user: str | None = None,
    patient_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JobRead]:
    """Jobs, newest first, filtered by any of status, plug-in, series, user and patient.

    Every filter is an index look-up that yields job ids in order (see the indexes on
    :class:`~circus_tasks.db.models.Job`), so a page costs about the same with 100 jobs as with
    100,000.

    Args:
        patient_id: jobs with at least one series of this patient.
    """
    with session_scope() as session:
        query = select(Job.id)
        if status is not None:
            query = query.where(Job.status == JobStatus(status))
        if plugin_id is not None:
            query = query.where(Job.plugin_id == plugin_id)
        if user is not None:
            query = query.where(Job.user == user)
        if series_uid is not None:
            query = query.where(
                col(Job.id).in_(select(JobSeries.job_id).where(JobSeries.series_uid == series_uid))
            )
        if patient_id is not None:
            query = query.where(
                col(Job.id).in_(
                    select(JobSeries.job_id)
                    .join(Series, col(Series.series_uid) == col(JobSeries.series_uid))
                    .where(Series.patient_id == patient_id)
                )
            )
        query = query.order_by(col(Job.id).desc()).offset(offset).limit(limit)
        page = list(session.exec(query))
        reads = _read_jobs(page, session=session)
        return [reads[job_id] for job_id in page]


def job_events(job_id: str) -> list[JobEvent]:
    """Every status move of a job, oldest first."""
    with session_scope() as session:
        return list(
            session.exec(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(col(JobEvent.id))
            )
        )


def wait_for_job(
    job_id: str, timeout: float, *, until: Iterable[JobStatus] = TERMINAL | {JobStatus.FINISHED}
) -> JobRead:
    """Wait until a job reaches one of ``until`` (default: finished or any end status).

    Raises:
        JobNotFoundError: for an unknown job.
        TimeoutError: naming the job's status when ``timeout`` seconds have passed.
    """
    wanted = set(until)
    deadline = time.monotonic() + timeout
    while True:
        job = _read(job_id)
        if job.status in wanted:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"Job {job_id} is still {job.status} after {timeout} s.")
        time.sleep(0.25)


def age_seconds(moment: datetime | None) -> float | None:
    """Seconds since ``moment`` (naive datetimes from SQLite are taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return (utcnow() - moment).total_seconds()
