"""Reading jobs: one job, pages of jobs by filter, their events and results.

Many jobs are read a chunk at a time, with their series in one query per chunk
(:func:`jobs_with_series`, :func:`read_jobs`), never a query per job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, text
from sqlmodel import Session, col, select

from circus_tasks.db.engine import CHUNK, session_scope
from circus_tasks.db.models import Job, JobEvent, JobRead, JobSeries, utcnow
from circus_tasks.errors import JobNotFoundError
from circus_tasks.jobs.folders import PLUGIN_LOG, job_folders, results_folder
from circus_tasks.jobs.pages import page_filters, page_query
from circus_tasks.statuses import JobStatus

_JOBS: Table = Job.__table__  # type: ignore[attr-defined]
_SERIES: Table = JobSeries.__table__  # type: ignore[attr-defined]


def jobs_with_series(
    job_ids: Sequence[str], *, session: Session
) -> Iterator[tuple[Job, list[JobSeries]]]:
    """Each existing job of ``job_ids`` with its series in job order, :data:`CHUNK` at a time."""
    wanted = list(dict.fromkeys(job_ids))
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        series: dict[str, list[JobSeries]] = defaultdict(list)
        for row in session.exec(
            select(JobSeries)
            .where(col(JobSeries.job_id).in_(chunk))
            .order_by(col(JobSeries.job_id), col(JobSeries.position))
        ):
            series[row.job_id].append(row)
        for job in session.exec(select(Job).where(col(Job.id).in_(chunk))):
            yield job, series[job.id]


def read_jobs(job_ids: Sequence[str], *, session: Session) -> dict[str, JobRead]:
    """The API views of many jobs, by id, :data:`CHUNK` at a time.

    Read as plain rows, not as ORM objects: building the session's objects first cost more
    than the queries (a page of 50 jobs: 2.3 ms that way, 1.7 ms this).
    """
    wanted = list(dict.fromkeys(job_ids))
    reads: dict[str, JobRead] = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        series: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in session.execute(
            _SERIES.select()
            .where(_SERIES.c.job_id.in_(chunk))
            .order_by(_SERIES.c.job_id, _SERIES.c.position)
        ):
            cell = {"series_uid": row.series_uid, "start": row.start, "end": row.end}
            series[row.job_id].append({**cell, "delta": row.delta})
        for row in session.execute(_JOBS.select().where(_JOBS.c.id.in_(chunk))):
            reads[row.id] = JobRead.model_validate({**row._mapping, "series": series[row.id]})
    return reads


def get_job(job_id: str) -> JobRead | None:
    """One job by id, or ``None``."""
    with session_scope() as session:
        return read_jobs([job_id], session=session).get(job_id)


def require_job(job_id: str) -> JobRead:
    """One job by id.

    Raises:
        JobNotFoundError: for an unknown job.
    """
    job = get_job(job_id)
    if job is None:
        raise JobNotFoundError.for_id(job_id)
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
    before: str | None = None,
) -> list[JobRead]:
    """Jobs, newest first, filtered by any of status, plug-in, series, user and patient.

    Every filter, and each pair of status, plug-in and user, is an index look-up that yields
    job ids in order, and nothing is counted, so a page costs about the same with 100 jobs as with
    1,000,000 (see :mod:`circus_tasks.jobs.pages`, whose statement this sends).

    Args:
        patient_id: jobs with at least one series of this patient.
        offset: how many of the matching jobs to skip; each is stepped over, so deep pages
            are quicker with ``before``.
        before: only jobs older than this job id; the last id of a page gives the next page.

    Raises:
        InvalidValueError: a filter, the limit or the offset cannot be taken.
    """
    filters = page_filters(
        status=status,
        plugin_id=plugin_id,
        series_uid=series_uid,
        user=user,
        patient_id=patient_id,
        limit=limit,
        offset=offset,
        before=before,
    )
    statement, parameters = page_query(filters)
    with session_scope() as session:
        page = list(session.execute(text(statement), parameters).scalars())
        reads = read_jobs(page, session=session)
        return [reads[job_id] for job_id in page]


def job_events(job_id: str) -> list[JobEvent]:
    """Every status move of a job, oldest first."""
    with session_scope() as session:
        return list(
            session.exec(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(col(JobEvent.id))
            )
        )


@dataclass(frozen=True)
class JobResults:
    """A job's results: the parsed results.json and where its files are."""

    job_id: str
    status: str
    results: dict[str, Any] | None
    folder: Path | None
    files: list[Path]
    log: Path | None


def get_job_results(job_id: str) -> JobResults:
    """results.json and the output files of a job (files only once post-processing stored them).

    Raises:
        JobNotFoundError: for an unknown job.
    """
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError.for_id(job_id)
        status, results = str(job.status), job.results
    folder = results_folder(job_id)
    stored = folder if folder.is_dir() else None
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if stored else []
    log = next((p for p in (folder / PLUGIN_LOG, job_folders(job_id).log) if p.is_file()), None)
    return JobResults(job_id, status, results, stored, files, log)


def age_seconds(moment: datetime | None) -> float | None:
    """Seconds since ``moment`` (naive datetimes from SQLite are taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (utcnow() - moment).total_seconds()


def plugins_changed_since_run(plugins: dict[str, str]) -> dict[str, str]:
    """Of ``plugins`` (plug-in id -> the digest of its folder now), those whose last job with
    provenance ran other files under the same version: id -> that job's id."""
    changed: dict[str, str] = {}
    with session_scope() as session:
        for plugin_id, digest in plugins.items():
            last = session.exec(
                select(Job.id, Job.plugin_digest)
                .where(Job.plugin_id == plugin_id, col(Job.plugin_digest).is_not(None))
                .order_by(col(Job.id).desc())
                .limit(1)
            ).first()
            if last is not None and last[1] != digest:
                changed[plugin_id] = last[0]
    return changed


def start_failures(job_id: str, *, session: Session) -> int:
    """How many flow runs of this queued job died before it started."""
    query = select(func.count()).where(
        col(JobEvent.job_id) == job_id,
        col(JobEvent.from_status) == JobStatus.IN_QUEUE,
        col(JobEvent.to_status) == JobStatus.IN_QUEUE,
    )
    return int(session.exec(query).one())
