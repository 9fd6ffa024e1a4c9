"""Reading jobs: one job, pages of jobs by filter, their events and results.

Many jobs are read a chunk at a time, with their series in one query per chunk
(:func:`jobs_with_series`), never a query per job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from circus_tasks.db.engine import CHUNK, session_scope
from circus_tasks.db.models import Job, JobEvent, JobRead, JobSeries, JobSeriesBase, Series, utcnow
from circus_tasks.errors import JobNotFoundError
from circus_tasks.jobs.folders import PLUGIN_LOG, job_folders, results_folder
from circus_tasks.statuses import JobStatus
from circus_tasks.values import check_int, check_text


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
    """The API views of many jobs, by id."""
    return {
        job.id: JobRead.model_validate(
            {
                **job.model_dump(),
                "series": [JobSeriesBase.model_validate(s.model_dump()) for s in series],
            }
        )
        for job, series in jobs_with_series(job_ids, session=session)
    }


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
) -> list[JobRead]:
    """Jobs, newest first, filtered by any of status, plug-in, series, user and patient.

    Every filter is an index look-up that yields job ids in order (see the indexes on
    :class:`~circus_tasks.db.models.Job`), so a page costs about the same with 100 jobs as
    with 100,000.

    Args:
        patient_id: jobs with at least one series of this patient.
    """
    check_int(limit, "limit", 1, 10_000)
    check_int(offset, "offset", 0, 2**62)
    for value, what in ((plugin_id, "plugin_id"), (user, "user"), (series_uid, "name")):
        check_text(value, what)
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
