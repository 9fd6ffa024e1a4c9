"""Registering, finding, cancelling and invalidating jobs under the CIRCUS rules.

Every status move goes through :func:`move_status`: one atomic compare-and-set on the job row
plus its event, so that a cancel and the start of execution that race end with one winner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select
from ulid import ULID

from circus_tasks.conditions import SeriesUse, unmet_conditions
from circus_tasks.db import session_scope
from circus_tasks.errors import (
    DuplicateJobError,
    InputConditionError,
    JobNotFoundError,
    JobStateError,
)
from circus_tasks.models import Job, JobEvent, JobRead, JobSeries, JobSeriesBase, Series, utcnow
from circus_tasks.plugins import get_plugin
from circus_tasks.ranges import AUTO, ImageRange, resolve_auto_range
from circus_tasks.series import series_images
from circus_tasks.statuses import IGNORED_BY_DUPLICATE_CHECK, TERMINAL, JobStatus, can_move

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesInput:
    """One series of a job request: its UID and an image range or ``"auto"``."""

    series_uid: str
    range: ImageRange | str = AUTO


def resolve_series(
    series: Sequence[SeriesInput | str], *, session: Session
) -> list[tuple[str, ImageRange]]:
    """Resolve "auto", parse and check each range against the series' images.

    Raises:
        SeriesNotFoundError: for a series that is not imported.
        InvalidRangeError: for a range that breaks the rules or names missing images.
    """
    resolved = []
    for item in series:
        request = SeriesInput(item) if isinstance(item, str) else item
        images = series_images(request.series_uid, session=session)
        if request.range == AUTO:
            image_range = resolve_auto_range([(i.instance_number, i.z) for i in images])
        elif isinstance(request.range, str):
            image_range = ImageRange.parse(request.range)
        else:
            image_range = request.range
        image_range.check_exists((i.instance_number for i in images), request.series_uid)
        resolved.append((request.series_uid, image_range))
    return resolved


def job_signature(resolved: Iterable[tuple[str, ImageRange]]) -> str:
    """The duplicate-check key: each series UID and range, in job order."""
    return "|".join(f"{uid}:{r}" for uid, r in resolved)


def find_duplicates(plugin_id: str, signature: str, *, session: Session) -> list[str]:
    """Ids of jobs that make a new job with this plug-in and series a duplicate."""
    query = select(Job.id).where(
        Job.plugin_id == plugin_id,
        Job.signature == signature,
        col(Job.status).not_in(list(IGNORED_BY_DUPLICATE_CHECK)),
    )
    return list(session.exec(query))


def new_job_id() -> str:
    """A lower-case ULID, sortable by creation time."""
    return str(ULID()).lower()


def register_job(
    plugin_id: str,
    series: Sequence[SeriesInput | str],
    *,
    priority: int = 0,
    force: bool = False,
    user: str | None = None,
    session: Session,
) -> Job:
    """Validate a job request and write the job ``in_queue`` (no dispatch).

    Raises:
        PluginNotFoundError, SeriesNotFoundError, InvalidRangeError, DuplicateJobError.
    """
    plugin = get_plugin(plugin_id)
    if not series:
        raise JobStateError("A job needs at least one series.")
    resolved = resolve_series(series, session=session)
    uses = [SeriesUse(session.get(Series, uid), r.count) for uid, r in resolved]  # type: ignore[arg-type]
    problems = unmet_conditions(plugin.manifest.input_conditions, uses)
    if problems:
        raise InputConditionError(plugin_id, problems)
    signature = job_signature(resolved)
    if not force:
        existing = find_duplicates(plugin_id, signature, session=session)
        if existing:
            raise DuplicateJobError(existing)
    job = Job(
        id=new_job_id(), plugin_id=plugin_id, user=user, priority=priority, signature=signature
    )
    session.add(job)
    session.flush()
    for position, (uid, image_range) in enumerate(resolved):
        session.add(
            JobSeries(
                job_id=job.id,
                position=position,
                series_uid=uid,
                start=image_range.start,
                end=image_range.end,
                delta=image_range.delta,
            )
        )
    session.add(JobEvent(job_id=job.id, to_status=JobStatus.IN_QUEUE, by=user, reason="submitted"))
    return job


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
        PluginNotFoundError, SeriesNotFoundError, InvalidRangeError, DuplicateJobError.
    """
    from circus_tasks.dispatch import try_dispatch

    with session_scope() as session:
        job_id = register_job(
            plugin_id, series, priority=priority, force=force, user=user, session=session
        ).id
    try_dispatch(job_id)
    job = get_job(job_id)
    assert job is not None
    return job


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
    from circus_tasks.dispatch import try_mirror_state

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
    from circus_tasks.dispatch import request_cancellation

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
    from circus_tasks.dispatch import try_mirror_state

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


def to_read(job: Job, *, session: Session) -> JobRead:
    """The API view of a job row, with its series."""
    rows = session.exec(
        select(JobSeries).where(JobSeries.job_id == job.id).order_by(col(JobSeries.position))
    )
    data = job.model_dump()
    data["series"] = [JobSeriesBase.model_validate(r.model_dump()) for r in rows]
    return JobRead.model_validate(data)


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
    limit: int = 100,
    offset: int = 0,
) -> list[JobRead]:
    """Jobs, newest first, filtered by any of status, plug-in, series and user."""
    with session_scope() as session:
        query = select(Job)
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
        query = query.order_by(col(Job.id).desc()).offset(offset).limit(limit)
        return [to_read(job, session=session) for job in session.exec(query)]


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
