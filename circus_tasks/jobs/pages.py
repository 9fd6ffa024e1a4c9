"""A page of jobs: the filters ``list_jobs`` and ``circus jobs`` take, checked in one place,
and the one statement that finds the page's job ids.

Standard library only at import, so that the lean ``circus jobs`` path
(:mod:`circus_tasks.cli.jobs`) can use it: it reads the page with the database's own driver
(:func:`page_from_database`); :func:`circus_tasks.jobs.queries.list_jobs` sends the same
statement through SQLAlchemy.

Every filter is an index look-up that yields job ids newest first (the indexes on
:class:`~circus_tasks.db.models.Job` and :class:`~circus_tasks.db.models.JobSeries`), and
nothing is counted, so a page costs about the same with 100 jobs as with 1,000,000. Deep pages
take ``before`` (the last id of the page before: keyset paging), not ``offset``: an offset
steps over every job before it.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from circus_tasks.db.revision import SCHEMA_REVISION
from circus_tasks.errors import InvalidValueError
from circus_tasks.home import database_url_from_environment, sqlite_file
from circus_tasks.statuses import JobStage, JobStatus
from circus_tasks.values import check_int, check_text

MAX_LIMIT = 10_000
"""The most jobs one page holds."""


@dataclass(frozen=True)
class PageFilters:
    """What a page of jobs is: filters (each ``None``: any), size and where it starts."""

    status: JobStatus | None = None
    plugin_id: str | None = None
    series_uid: str | None = None
    user: str | None = None
    patient_id: str | None = None
    limit: int = 100
    offset: int = 0
    before: str | None = None


def page_filters(
    *,
    status: JobStatus | str | None = None,
    plugin_id: str | None = None,
    series_uid: str | None = None,
    user: str | None = None,
    patient_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
    before: str | None = None,
) -> PageFilters:
    """The filters of a page, checked.

    Raises:
        InvalidValueError: naming the first value that cannot be taken and what to give.
    """
    check_int(limit, "limit", 1, MAX_LIMIT)
    check_int(offset, "offset", 0, 2**62)
    for value, what in (
        (plugin_id, "plugin_id"),
        (user, "user"),
        (series_uid, "series_uid"),
        (patient_id, "patient_id"),
        (before, "job id"),
    ):
        check_text(value, what)
    return PageFilters(
        job_status(status), plugin_id, series_uid, user, patient_id, limit, offset, before
    )


def job_status(value: object) -> JobStatus | None:
    """``value`` as a job status (``None`` stays ``None``).

    Raises:
        InvalidValueError: naming the statuses there are.
    """
    if value is None or isinstance(value, JobStatus):
        return value
    check_text(value, "status", optional=False)
    try:
        return JobStatus(str(value))
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidValueError(
            f"The status {value!r} is not a job status; give one of {known}."
        ) from None


def page_query(filters: PageFilters) -> tuple[str, dict[str, Any]]:
    """The statement of a page's job ids, newest first, and its parameters.

    Plain SQL with ``:name`` parameters, which both :mod:`sqlite3` and SQLAlchemy's ``text()``
    take; the status is compared with the enum's name, as SQLAlchemy stores it.
    """
    where: list[str] = []
    parameters: dict[str, Any] = {"limit": filters.limit, "offset": filters.offset}
    if filters.status is not None:
        where.append("job.status = :status")
        parameters["status"] = filters.status.name
    if filters.plugin_id is not None:
        where.append("job.plugin_id = :plugin_id")
        parameters["plugin_id"] = filters.plugin_id
    if filters.user is not None:
        where.append('job."user" = :user')
        parameters["user"] = filters.user
    if filters.series_uid is not None:
        where.append("job.id IN (SELECT job_id FROM jobseries WHERE series_uid = :series_uid)")
        parameters["series_uid"] = filters.series_uid
    if filters.patient_id is not None:
        where.append(
            "job.id IN (SELECT jobseries.job_id FROM series JOIN jobseries "
            "ON jobseries.series_uid = series.series_uid WHERE series.patient_id = :patient_id)"
        )
        parameters["patient_id"] = filters.patient_id
    if filters.before is not None:
        where.append("job.id < :before")
        parameters["before"] = filters.before
    statement = "SELECT job.id FROM job"
    if where:
        statement += " WHERE " + " AND ".join(where)
    statement += " ORDER BY job.id DESC LIMIT :limit"
    if filters.offset:
        statement += " OFFSET :offset"
    else:
        del parameters["offset"]
    return statement, parameters


class SeriesCell(NamedTuple):
    """One series of a listed job, with its image range."""

    series_uid: str
    start: int
    end: int
    delta: int


class JobLine(NamedTuple):
    """What a job list shows of a job (``circus jobs``'s columns)."""

    id: str
    plugin_id: str
    status: JobStatus
    stage: JobStage | None
    machine: str | None
    priority: int
    error_message: str | None
    series: list[SeriesCell]


_LINE_COLUMNS = "id, plugin_id, status, stage, machine, priority, error_message"
_SERIES_COLUMNS = 'job_id, series_uid, start, "end", delta'
_REVISION_QUERY = "SELECT version_num FROM alembic_version"
_PSYCOPG_URL = "postgresql+psycopg://"


def page_from_database(filters: PageFilters) -> list[JobLine] | None:
    """The page read with the database's own driver, without SQLAlchemy: :mod:`sqlite3`,
    read-only, for the default SQLite database; psycopg for a ``postgresql+psycopg://`` URL
    (the home's own cluster's, ``circus up --postgres``).

    Returns:
        ``None`` when only SQLAlchemy can tell: another database or URL form, a database that
        does not exist yet, a schema that is not the newest (SQLAlchemy migrates it first),
        psycopg missing, or a database that cannot be read this way.
    """
    url = database_url_from_environment()
    if url is None:
        return None
    path = sqlite_file(url)
    if path is not None:
        return _page_from_sqlite(path, filters) if path.is_file() else None
    if url.startswith(_PSYCOPG_URL):
        return _page_from_postgres("postgresql://" + url.removeprefix(_PSYCOPG_URL), filters)
    return None


def _page_from_sqlite(path: Path, filters: PageFilters) -> list[JobLine] | None:
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        with closing(connection):
            return _read_page(connection, "?", filters)
    except sqlite3.Error:
        return None


def _page_from_postgres(url: str, filters: PageFilters) -> list[JobLine] | None:
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
            return _read_page(connection, "%s", filters)
    except psycopg.Error:
        return None


def _read_page(connection: Any, mark: str, filters: PageFilters) -> list[JobLine] | None:
    """The page through a DB-API connection whose parameters are ``mark`` (``?`` or ``%s``),
    or ``None`` if the schema is not the newest."""
    revision = connection.execute(_REVISION_QUERY).fetchone()
    if revision is None or revision[0] != SCHEMA_REVISION:
        return None
    statement, parameters = page_query(filters)
    if mark == "%s":  # psycopg's named parameters
        statement = re.sub(r":(\w+)", r"%(\1)s", statement)
    ids = [row[0] for row in connection.execute(statement, parameters).fetchall()]
    if not ids:
        return []
    marks = ", ".join(mark for _ in ids)
    series: dict[str, list[SeriesCell]] = {job_id: [] for job_id in ids}
    for job_id, *cell in connection.execute(
        f"SELECT {_SERIES_COLUMNS} FROM jobseries WHERE job_id IN ({marks}) "
        "ORDER BY job_id, position",
        ids,
    ).fetchall():
        series[job_id].append(SeriesCell(*cell))
    rows = {
        row[0]: row
        for row in connection.execute(
            f"SELECT {_LINE_COLUMNS} FROM job WHERE id IN ({marks})", ids
        ).fetchall()
    }
    return [
        JobLine(
            job_id,
            plugin_id,
            JobStatus[status],
            JobStage[stage] if stage is not None else None,
            machine,
            priority,
            error_message,
            series[job_id],
        )
        for job_id, plugin_id, status, stage, machine, priority, error_message in (
            rows[i] for i in ids if i in rows
        )
    ]
