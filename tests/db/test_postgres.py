"""The job rules on PostgreSQL (the production database): a throw-away cluster for this module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col

from circus_tasks.api import cancel_job, get_job, invalidate_job, list_jobs
from circus_tasks.db.engine import reset_caches, session_scope
from circus_tasks.db.models import Job
from circus_tasks.errors import DuplicateJobError, JobStateError
from circus_tasks.jobs.pages import page_filters, page_from_database
from circus_tasks.jobs.registration import JobRequest, SeriesInput, register_job
from circus_tasks.statuses import JobStatus
from circus_tasks.testing.postgres import available, throwaway_cluster
from tests.conftest import race_cancel_and_start
from tests.running import claim, finish

pytestmark = pytest.mark.skipif(
    not available(), reason="PostgreSQL server programs (initdb, pg_ctl, psql) are not on the PATH"
)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_cluster(["fsync=off"]) as cluster:
        cluster.create_database("circus")
        yield cluster.url("circus")


@pytest.fixture
def pg_home(home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CIRCUS_DATABASE_URL", postgres_url)
    reset_caches()
    return home


def test_jobs_on_postgres(pg_home: Path, series_factory: Callable[..., str]) -> None:
    uid = series_factory(slices=4)
    with session_scope() as session:
        first = register_job(
            JobRequest("lesion-candidates@1.0.0", [uid], user="pg"), session=session
        ).id
    with pytest.raises(DuplicateJobError), session_scope() as session:
        register_job(JobRequest("lesion-candidates@1.0.0", [uid]), session=session)
    assert [j.id for j in list_jobs(series_uid=uid, user="pg")] == [first]
    assert claim(first, machine="pg-machine")
    with pytest.raises(JobStateError, match="already being processed"):
        cancel_job(first)
    assert finish(first, {"results": {"lesionCandidates": []}})
    job = invalidate_job(first, reason="test", user="pg")
    assert job.status == JobStatus.INVALIDATED
    assert get_job(first).results == {"results": {"lesionCandidates": []}}  # type: ignore[union-attr]


def test_cancel_and_start_race_on_postgres(
    pg_home: Path, series_factory: Callable[..., str]
) -> None:
    uid = series_factory()
    for _ in range(30):
        with session_scope() as session:
            job_id = register_job(JobRequest("record@1.0.0", [uid], force=True), session=session).id
        claimed, cancelled = race_cancel_and_start(job_id)
        assert claimed != cancelled
        job = get_job(job_id)
        assert job is not None
        assert job.status == (JobStatus.PROCESSING if claimed else JobStatus.CANCELLED)


def test_pages_and_the_lean_read_on_postgres(
    pg_home: Path, series_factory: Callable[..., str]
) -> None:
    """The page statement (a quoted "user", the status enum by name) on PostgreSQL, read
    through SQLAlchemy and through psycopg alone (the lean ``circus jobs``): the same jobs."""
    uid = series_factory(slices=4, patient_id="PG-LEAN")
    with session_scope() as session:
        ids = [
            register_job(
                JobRequest("record@1.0.0", [SeriesInput(uid, f"1:{n}")], user=f"pg{n % 2}"),
                session=session,
            ).id
            for n in range(1, 5)
        ]
        session.execute(
            update(Job)
            .where(col(Job.id).in_(ids[:2]))
            .values(status=JobStatus.FAILED, error_message="exit 1")
        )
    cases = [
        {},
        {"patient_id": "PG-LEAN"},
        {"status": "failed", "user": "pg1"},
        {"status": "in_queue", "plugin_id": "record@1.0.0"},
        {"plugin_id": "record@1.0.0", "user": "pg0", "series_uid": uid},
        {"patient_id": "PG-LEAN", "before": ids[2], "limit": 1},
    ]
    for filters in cases:
        api_view = [(j.id, j.status, j.error_message, len(j.series)) for j in list_jobs(**filters)]
        lines = page_from_database(page_filters(**filters))
        assert lines is not None, filters
        assert [(j.id, j.status, j.error_message, len(j.series)) for j in lines] == api_view
    assert [j.id for j in list_jobs(patient_id="PG-LEAN", status="failed")] == ids[1::-1]
    assert [j.id for j in list_jobs(patient_id="PG-LEAN", before=ids[2], limit=1)] == [ids[1]]
