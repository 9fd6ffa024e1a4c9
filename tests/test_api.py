"""Many jobs at once (``register_jobs``, ``submit_jobs``, ``dispatch_jobs``) and finding jobs
in a big table (``list_jobs`` by patient, one query per page part)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, func, update
from sqlmodel import col, select

from circus_tasks import api
from circus_tasks.api import (
    JobRequest,
    SeriesInput,
    get_job,
    list_jobs,
    submit_jobs,
)
from circus_tasks.db.engine import get_engine, session_scope
from circus_tasks.db.models import Job, JobEvent, JobSeries
from circus_tasks.errors import (
    CircusError,
    DuplicateJobError,
    InputConditionError,
    InvalidRangeError,
    JobStateError,
    PluginNotFoundError,
    PrefectUnavailableError,
    SeriesNotFoundError,
)
from circus_tasks.jobs.registration import register_job, register_jobs
from circus_tasks.orchestration import client as prefect_client_module
from circus_tasks.orchestration.dispatch import dispatch_jobs
from circus_tasks.statuses import JobStatus
from tests.running import prefect_unreachable

PLUGIN = "lesion-candidates@1.0.0"
OTHER = "record@1.0.0"

SeriesFactory = Callable[..., str]


def row_counts() -> tuple[int, int, int]:
    with session_scope() as session:
        return tuple(  # type: ignore[return-value]
            session.exec(select(func.count()).select_from(table)).one()
            for table in (Job, JobSeries, JobEvent)
        )


def test_each_request_of_a_batch_gets_its_own_outcome(series_factory: SeriesFactory) -> None:
    uid, other = series_factory(slices=5), series_factory(slices=5)
    with session_scope() as session:
        existing = register_job(JobRequest(PLUGIN, [uid]), session=session).id
    requests = [
        JobRequest(PLUGIN, [other], user="ann"),  # 0 valid
        JobRequest("nope@1.0.0", [other]),  # 1 unknown plug-in
        JobRequest(PLUGIN, [SeriesInput(uid, "1:4:2")]),  # 2 invalid range
        JobRequest(PLUGIN, [uid]),  # 3 duplicate of the existing job
        JobRequest(PLUGIN, [SeriesInput(other, "1:3")], priority=2),  # 4 valid
        JobRequest(PLUGIN, [SeriesInput(other, "1:5:1")]),  # 5 duplicate of 0 ("auto" = 1:5:1)
        JobRequest(PLUGIN, [uid], force=True),  # 6 forced duplicate
        JobRequest(PLUGIN, ["1.2.3.4"]),  # 7 unknown series
        JobRequest(PLUGIN, []),  # 8 no series
    ]
    with session_scope() as session:
        outcomes = register_jobs(requests, session=session)

    kinds = [type(o) for o in outcomes]
    assert kinds == [
        Job,
        PluginNotFoundError,
        InvalidRangeError,
        DuplicateJobError,
        Job,
        DuplicateJobError,
        Job,
        SeriesNotFoundError,
        JobStateError,
    ]
    first, fourth, forced = outcomes[0], outcomes[4], outcomes[6]
    assert isinstance(first, Job) and isinstance(fourth, Job) and isinstance(forced, Job)
    duplicate_of_existing, duplicate_in_batch = outcomes[3], outcomes[5]
    assert isinstance(duplicate_of_existing, DuplicateJobError)
    assert duplicate_of_existing.existing_job_ids == [existing]
    assert isinstance(duplicate_in_batch, DuplicateJobError)
    assert duplicate_in_batch.existing_job_ids == [first.id]
    assert "do not exist" not in str(outcomes[2]) and "does not divide" in str(outcomes[2])

    for job in (first, fourth, forced):
        read = get_job(job.id)
        assert read is not None and read.status == JobStatus.IN_QUEUE and read.flow_run_id is None
    read = get_job(fourth.id)
    assert read is not None and read.priority == 2
    assert [(s.series_uid, s.start, s.end, s.delta) for s in read.series] == [(other, 1, 3, 1)]
    # the existing job plus three new ones; nothing written for the refused requests
    assert row_counts() == (4, 4, 4)


def test_a_batch_breaking_input_conditions_is_refused_per_request(
    series_factory: SeriesFactory,
) -> None:
    mr = series_factory(slices=5, modality="MR")
    with session_scope() as session:
        outcomes = register_jobs(
            [JobRequest("ct-only@1.0.0", [mr]), JobRequest(OTHER, [mr])], session=session
        )
    assert isinstance(outcomes[0], InputConditionError) and "modality is MR" in str(outcomes[0])
    assert isinstance(outcomes[1], Job)


def test_plugins_and_images_are_read_once_per_batch(
    series_factory: SeriesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import circus_tasks.jobs.registration as jobs

    a, b = series_factory(), series_factory()
    calls: dict[str, int] = {"plugin": 0, "images": 0}

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(jobs, "get_plugin", counted("plugin", jobs.get_plugin))
    monkeypatch.setattr(jobs, "images_by_series", counted("images", jobs.images_by_series))
    requests = [JobRequest(OTHER, [a, b], force=True) for _ in range(20)]
    requests += [JobRequest("nope@1.0.0", [a]) for _ in range(5)]
    with session_scope() as session:
        outcomes = register_jobs(requests, session=session)
    assert sum(isinstance(o, Job) for o in outcomes) == 20
    assert all(isinstance(o, PluginNotFoundError) for o in outcomes[20:])
    assert calls == {"plugin": 2, "images": 1}  # both series' images in one read


def test_submit_jobs_without_prefect_keeps_the_valid_jobs_registered(
    series_factory: SeriesFactory,
) -> None:
    uid = series_factory()
    with prefect_unreachable():
        outcomes = submit_jobs(
            [
                JobRequest(PLUGIN, [uid], user="ann"),
                JobRequest(PLUGIN, [uid]),
                JobRequest(PLUGIN, [uid], force=True, priority=5),
                JobRequest(PLUGIN, [SeriesInput(uid, "1:9")]),
            ]
        )
    assert [type(o).__name__ for o in outcomes] == [
        "JobRead",
        "DuplicateJobError",
        "JobRead",
        "InvalidRangeError",
    ]
    for outcome in (outcomes[0], outcomes[2]):
        assert not isinstance(outcome, CircusError)
        assert outcome.status == JobStatus.IN_QUEUE and outcome.flow_run_id is None
        assert outcome.series[0].series_uid == uid
    assert not isinstance(outcomes[0], CircusError) and outcomes[0].user == "ann"
    assert not isinstance(outcomes[2], CircusError) and outcomes[2].priority == 5
    assert row_counts() == (2, 2, 2)


def test_chunks_of_a_big_batch_see_each_other_as_duplicates(
    series_factory: SeriesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "CHUNK", 2)
    a, b = series_factory(), series_factory()
    with prefect_unreachable():
        outcomes = submit_jobs(
            [
                JobRequest(OTHER, [a]),
                JobRequest(OTHER, [b]),
                JobRequest(OTHER, [a]),  # second chunk: a duplicate of the first request
                JobRequest(OTHER, [b], force=True),
                JobRequest(OTHER, [b]),  # third chunk: a duplicate of requests 1 and 3
            ]
        )
    assert [isinstance(o, DuplicateJobError) for o in outcomes] == [
        False,
        False,
        True,
        False,
        True,
    ]
    last = outcomes[4]
    assert isinstance(last, DuplicateJobError)
    assert sorted(last.existing_job_ids) == sorted(
        [outcomes[1].id, outcomes[3].id]  # type: ignore[union-attr]
    )


def test_dispatch_jobs_raises_prefect_unavailable_and_leaves_jobs_alone(
    series_factory: SeriesFactory,
) -> None:
    uid = series_factory()
    with session_scope() as session:
        job_id = register_job(JobRequest(OTHER, [uid]), session=session).id
    with prefect_unreachable(), pytest.raises(PrefectUnavailableError, match="does not answer"):
        dispatch_jobs([job_id])
    job = get_job(job_id)
    assert job is not None and job.status == JobStatus.IN_QUEUE and job.flow_run_id is None


def test_dispatch_jobs_asks_prefect_nothing_for_jobs_that_need_no_run(
    series_factory: SeriesFactory,
) -> None:
    uid = series_factory()
    with session_scope() as session:
        has_run, cancelled = (
            register_job(JobRequest(OTHER, [uid], force=True), session=session).id for _ in range(2)
        )
        session.flush()
        session.execute(update(Job).where(col(Job.id) == has_run).values(flow_run_id="run-1"))
        session.execute(
            update(Job).where(col(Job.id) == cancelled).values(status=JobStatus.CANCELLED)
        )
    with prefect_unreachable():  # no request is made: nothing raises
        assert dispatch_jobs([has_run, cancelled, "01h0000000000000000000000"]) == {
            has_run: "run-1"
        }


def test_list_jobs_by_patient(series_factory: SeriesFactory) -> None:
    ann_ct = series_factory(patient_id="ANN")
    ann_mr = series_factory(patient_id="ANN", modality="MR")
    bob = series_factory(patient_id="BOB")
    with session_scope() as session:
        ids = {
            name: register_job(JobRequest(OTHER, series, force=True), session=session).id
            for name, series in {
                "ann-ct": [ann_ct],
                "ann-both": [ann_mr, ann_ct],
                "bob": [bob],
                "bob-and-ann": [bob, ann_mr],
            }.items()
        }
    assert [j.id for j in list_jobs(patient_id="ANN")] == sorted(
        [ids["ann-ct"], ids["ann-both"], ids["bob-and-ann"]], reverse=True
    )
    assert [j.id for j in list_jobs(patient_id="BOB")] == sorted(
        [ids["bob"], ids["bob-and-ann"]], reverse=True
    )
    assert [j.id for j in list_jobs(patient_id="BOB", series_uid=ann_mr)] == [ids["bob-and-ann"]]
    assert list_jobs(patient_id="NOBODY") == []
    # each job once, even when two of its series belong to the patient
    both = [j for j in list_jobs(patient_id="ANN") if j.id == ids["ann-both"]]
    assert [s.series_uid for s in both[0].series] == [ann_mr, ann_ct]


def test_a_page_of_jobs_costs_three_queries_however_long(series_factory: SeriesFactory) -> None:
    uid = series_factory()
    with session_scope() as session:
        register_jobs(
            [JobRequest(OTHER, [uid, uid], force=True) for _ in range(30)], session=session
        )
    statements: list[str] = []

    def keep(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", keep)
    try:
        page = list_jobs(series_uid=uid, limit=25)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert len(page) == 25 and all(len(j.series) == 2 for j in page)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3


@pytest.mark.parametrize(
    "filters",
    [
        {"status": JobStatus.FAILED},
        {"plugin_id": OTHER},
        {"user": "ann"},
        {"series_uid": "1.2.3"},
        {"patient_id": "ANN"},
        {"status": JobStatus.FAILED, "plugin_id": OTHER},
        {"status": JobStatus.IN_QUEUE, "user": "ann"},
        {"plugin_id": OTHER, "user": "ann"},
        {"status": JobStatus.FAILED, "plugin_id": OTHER, "user": "ann"},
        {"status": JobStatus.FINISHED, "before": "01m8s0ckgcnce1zc15ec4sascq"},
        {"user": "ann", "patient_id": "ANN"},
    ],
)
def test_each_filter_reads_its_page_from_an_index(filters: dict[str, Any]) -> None:
    """SQLite's plan for the page query (without statistics, as a site's database has them):
    an index search, no table scan, no sort; a pair of status, plug-in and user is one
    search in the index made for it."""
    engine = get_engine()
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        list_jobs(limit=50, **filters)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    statement, parameters = seen[0]
    with engine.connect() as connection:
        plan = [
            str(row[3])
            for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        ]
    assert not any(step.startswith("SCAN") for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any(step.startswith("SEARCH job USING") for step in plan), plan
    if len({"status", "plugin_id", "user"} & set(filters)) >= 2:
        assert re.search(r"\((status|plugin_id|user)=\? AND (plugin_id|user)=\?\)", plan[0]), plan


def test_the_duplicate_check_looks_the_signature_up() -> None:
    """Not the plug-in's jobs in id order (its (plugin_id, id) index), which SQLite picks when
    the query asks for id order: at 1,000,000 jobs that read 90 ms instead of 0.3 ms."""
    from circus_tasks.jobs.duplicates import find_duplicates

    engine = get_engine()
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        with session_scope() as session:
            find_duplicates(OTHER, "1.2.3:1:4:1", session=session)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    ((statement, parameters),) = [s for s in seen if s[0].lstrip().startswith("SELECT")]
    with engine.connect() as connection:
        plan = [
            str(row[3])
            for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        ]
    assert plan == ["SEARCH job USING INDEX ix_job_plugin_signature (plugin_id=? AND signature=?)"]


def test_pages_by_cursor_and_by_offset_are_the_same_pages(series_factory: SeriesFactory) -> None:
    uid = series_factory()
    with session_scope() as session:
        made = register_jobs(
            [JobRequest(OTHER, [uid], force=True, user=f"u{n % 2}") for n in range(23)],
            session=session,
        )
    ids = sorted((job.id for job in made if isinstance(job, Job)), reverse=True)
    for filters in ({}, {"user": "u1"}, {"series_uid": uid, "user": "u0"}):
        wanted = [i for i in ids if not filters.get("user") or i in user_jobs(filters["user"])]
        by_cursor: list[str] = []
        before = None
        while page := list_jobs(limit=5, before=before, **filters):
            by_cursor += [job.id for job in page]
            before = page[-1].id
        by_offset = [
            job.id
            for start in range(0, 25, 5)
            for job in list_jobs(limit=5, offset=start, **filters)
        ]
        assert by_cursor == by_offset == wanted
    assert [j.id for j in list_jobs(limit=3, offset=2, before=ids[4])] == ids[7:10]


def user_jobs(user: str) -> set[str]:
    with session_scope() as session:
        return set(session.exec(select(Job.id).where(Job.user == user)))


def test_prefect_clients_share_one_tls_context_only_for_plain_http() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    plain, tls = "http://127.0.0.1:4200/api", "https://prefect.example.org/api"
    first, second = (prefect_client_module.httpx_settings(plain) for _ in range(2))
    assert first["verify"] is second["verify"]
    with temporary_settings(updates={PREFECT_API_URL: plain}):
        with prefect_client_module.prefect_client() as client:  # the client takes it as it is
            assert client._client._transport._pool._ssl_context is first["verify"]
    assert prefect_client_module.httpx_settings(tls) == {}  # Prefect's own certificate handling
