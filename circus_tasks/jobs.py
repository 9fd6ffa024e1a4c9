"""Registering, finding, cancelling and invalidating jobs under the CIRCUS rules.

Every status move goes through :func:`move_status`: one atomic compare-and-set on the job row
plus its event, so that a cancel and the start of execution that race end with one winner.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select
from ulid import ULID

from circus_tasks.conditions import SeriesUse, unmet_conditions
from circus_tasks.db import session_scope
from circus_tasks.errors import (
    CircusError,
    DuplicateJobError,
    InputConditionError,
    JobNotFoundError,
    JobStateError,
    PluginNotFoundError,
)
from circus_tasks.models import (
    Image,
    Job,
    JobEvent,
    JobRead,
    JobSeries,
    JobSeriesBase,
    Series,
    utcnow,
)
from circus_tasks.plugins import Plugin, get_plugin
from circus_tasks.ranges import AUTO, ImageRange, resolve_auto_range
from circus_tasks.series import series_images
from circus_tasks.statuses import IGNORED_BY_DUPLICATE_CHECK, TERMINAL, JobStatus, can_move

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesInput:
    """One series of a job request: its UID and an image range or ``"auto"``."""

    series_uid: str
    range: ImageRange | str = AUTO


class _Lookups:
    """What validation reads, read once per batch: plug-ins (found by scanning a folder),
    series and their images."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._plugins: dict[str, Plugin | PluginNotFoundError] = {}
        self._images: dict[str, list[Image]] = {}

    def plugin(self, plugin_id: str) -> Plugin:
        """:func:`get_plugin`, once per id.

        Raises:
            PluginNotFoundError: for an unknown id.
        """
        found = self._plugins.get(plugin_id)
        if found is None:
            try:
                found = get_plugin(plugin_id)
            except PluginNotFoundError as exc:
                found = exc
            self._plugins[plugin_id] = found
        if isinstance(found, PluginNotFoundError):
            raise PluginNotFoundError(str(found))
        return found

    def images(self, series_uid: str) -> list[Image]:
        """:func:`series_images`, once per series.

        Raises:
            SeriesNotFoundError: for a series that is not imported.
        """
        if series_uid not in self._images:
            self._images[series_uid] = series_images(series_uid, session=self.session)
        return self._images[series_uid]

    def series(self, series_uid: str) -> Series:
        """The index entry of a series already looked up with :meth:`images`."""
        series = self.session.get(Series, series_uid)
        assert series is not None
        return series


def resolve_series(
    series: Sequence[SeriesInput | str], *, session: Session, lookups: _Lookups | None = None
) -> list[tuple[str, ImageRange]]:
    """Resolve "auto", parse and check each range against the series' images.

    Raises:
        SeriesNotFoundError: for a series that is not imported.
        InvalidRangeError: for a range that breaks the rules or names missing images.
    """
    lookups = lookups or _Lookups(session)
    resolved = []
    for item in series:
        request = SeriesInput(item) if isinstance(item, str) else item
        images = lookups.images(request.series_uid)
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


@dataclass(frozen=True)
class JobRequest:
    """One job of :func:`submit_jobs`: the arguments :func:`submit_job` takes."""

    plugin_id: str
    series: list[SeriesInput | str]
    priority: int = 0
    force: bool = False
    user: str | None = None


def _validate(
    request: JobRequest, *, lookups: _Lookups, pending: Mapping[tuple[str, str], list[str]]
) -> tuple[list[tuple[str, ImageRange]], str]:
    """Check a request by every registration rule; its resolved series and signature.

    ``pending`` holds jobs of the same batch not written yet, by (plug-in, signature): they
    make a duplicate too.

    Raises:
        PluginNotFoundError, JobStateError, SeriesNotFoundError, InvalidRangeError,
        InputConditionError, DuplicateJobError.
    """
    plugin = lookups.plugin(request.plugin_id)
    if not request.series:
        raise JobStateError("A job needs at least one series.")
    resolved = resolve_series(request.series, session=lookups.session, lookups=lookups)
    uses = [SeriesUse(lookups.series(uid), r.count) for uid, r in resolved]
    problems = unmet_conditions(plugin.manifest.input_conditions, uses)
    if problems:
        raise InputConditionError(request.plugin_id, problems)
    signature = job_signature(resolved)
    if not request.force:
        existing = find_duplicates(request.plugin_id, signature, session=lookups.session)
        existing += pending.get((request.plugin_id, signature), [])
        if existing:
            raise DuplicateJobError(existing)
    return resolved, signature


def _job_rows(
    request: JobRequest, resolved: Sequence[tuple[str, ImageRange]], signature: str
) -> list[Job | JobSeries | JobEvent]:
    """The rows that register a job: the job ``in_queue``, its series, its first event."""
    job = Job(
        id=new_job_id(),
        plugin_id=request.plugin_id,
        user=request.user,
        priority=request.priority,
        signature=signature,
    )
    series = [
        JobSeries(
            job_id=job.id,
            position=position,
            series_uid=uid,
            start=image_range.start,
            end=image_range.end,
            delta=image_range.delta,
        )
        for position, (uid, image_range) in enumerate(resolved)
    ]
    event = JobEvent(
        job_id=job.id, to_status=JobStatus.IN_QUEUE, by=request.user, reason="submitted"
    )
    return [job, *series, event]


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
        PluginNotFoundError, SeriesNotFoundError, InvalidRangeError, InputConditionError,
        DuplicateJobError.
    """
    request = JobRequest(plugin_id, list(series), priority=priority, force=force, user=user)
    resolved, signature = _validate(request, lookups=_Lookups(session), pending={})
    rows = _job_rows(request, resolved, signature)
    session.add_all(rows)
    session.flush()
    job = rows[0]
    assert isinstance(job, Job)
    return job


def register_jobs(requests: Sequence[JobRequest], *, session: Session) -> list[Job | CircusError]:
    """Validate and write many jobs ``in_queue`` (no dispatch), each request on its own.

    A request that breaks a rule gets its error in its slot and writes nothing; a request that
    repeats an earlier one of the same batch is a duplicate unless forced. Plug-ins, series and
    images are read once for the batch, and the rows are written in one flush.

    Returns:
        For each request in order, its new job or the error that refused it.
    """
    lookups = _Lookups(session)
    pending: dict[tuple[str, str], list[str]] = defaultdict(list)
    outcomes: list[Job | CircusError] = []
    rows: list[Job | JobSeries | JobEvent] = []
    for request in requests:
        try:
            resolved, signature = _validate(request, lookups=lookups, pending=pending)
        except CircusError as exc:
            outcomes.append(exc)
            continue
        job_rows = _job_rows(request, resolved, signature)
        job = job_rows[0]
        assert isinstance(job, Job)
        pending[(request.plugin_id, signature)].append(job.id)
        rows += job_rows
        outcomes.append(job)
    session.add_all(rows)
    session.flush()
    return outcomes


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
    from circus_tasks.dispatch import try_dispatch

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
    at a time; then their flow runs are created together (:func:`~circus_tasks.dispatch.
    dispatch_jobs`). If Prefect does not answer, the jobs stay registered and the reconciler
    dispatches them when Prefect is back.

    Example:
        >>> submit_jobs([JobRequest("volumetry@1.0.0", [uid]) for uid in uids])  # doctest: +SKIP
    """
    from circus_tasks.dispatch import CHUNK, try_dispatch_jobs

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


def _read_jobs(job_ids: Sequence[str], *, session: Session) -> dict[str, JobRead]:
    """The API views of many jobs, by id: the jobs and their series in one query each per
    chunk (never a query per job)."""
    from circus_tasks.dispatch import CHUNK

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
    :class:`~circus_tasks.models.Job`), so a page costs about the same with 100 jobs as with
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
