"""Job registration (CIRCUS's duplicate and range rules) and every status move."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from circus_tasks.api import (
    SeriesInput,
    cancel_job,
    get_job,
    invalidate_job,
    job_events,
    list_jobs,
)
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job
from circus_tasks.errors import (
    DuplicateJobError,
    InvalidRangeError,
    JobNotFoundError,
    JobStateError,
    PluginNotFoundError,
    SeriesNotFoundError,
)
from circus_tasks.jobs.registration import JobRequest, register_job
from circus_tasks.jobs.transitions import move_status
from circus_tasks.statuses import ALLOWED_MOVES, JobStatus
from circus_tasks.store.ranges import ImageRange
from tests.conftest import race_cancel_and_start
from tests.running import claim, fail, finish

PLUGIN = "lesion-candidates@1.0.0"
OTHER = "record@1.0.0"

SeriesFactory = Callable[..., str]


def register(*series: SeriesInput | str, plugin: str = PLUGIN, **kwargs: object) -> str:
    with session_scope() as session:
        return register_job(JobRequest(plugin, list(series), **kwargs), session=session).id  # type: ignore[arg-type]


def force_status(job_id: str, status: JobStatus) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(col(Job.id) == job_id).values(status=status))


def test_a_job_is_registered_in_queue_with_a_ulid_and_numbers(
    series_factory: SeriesFactory,
) -> None:
    uid = series_factory(slices=4)
    job_id = register(uid, user="ann@example.org", priority=3)
    assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{26}", job_id)
    job = get_job(job_id)
    assert job is not None
    assert job.status == JobStatus.IN_QUEUE and job.priority == 3 and job.user == "ann@example.org"
    (entry,) = job.series
    assert (entry.series_uid, entry.start, entry.end, entry.delta) == (uid, 1, 4, 1)
    (event,) = job_events(job_id)
    assert event.from_status is None and event.to_status == JobStatus.IN_QUEUE


def test_job_ids_sort_by_creation(series_factory: SeriesFactory) -> None:
    uid = series_factory()
    ids = [register(uid, force=True) for _ in range(5)]
    assert ids == sorted(ids)
    assert [j.id for j in list_jobs()] == sorted(ids, reverse=True)


def test_auto_is_resolved_at_registration(series_factory: SeriesFactory) -> None:
    rising = series_factory([1, 2, 3, 7, 8], z=[1.0, 2.0, 3.0, 7.0, 8.0])
    job = get_job(register(rising))
    assert job is not None
    assert (job.series[0].start, job.series[0].end, job.series[0].delta) == (3, 1, -1)


def test_series_order_is_kept(series_factory: SeriesFactory) -> None:
    a, b = series_factory(), series_factory()
    job = get_job(
        register(SeriesInput(b, "2:4"), SeriesInput(a, ImageRange(5, 1, -2)), plugin=OTHER)
    )
    assert job is not None
    assert [(s.series_uid, s.start, s.end, s.delta) for s in job.series] == [
        (b, 2, 4, 1),
        (a, 5, 1, -2),
    ]


def test_unknown_series_plugin_and_bad_ranges_are_refused(series_factory: SeriesFactory) -> None:
    uid = series_factory(slices=5)
    with pytest.raises(SeriesNotFoundError, match="1.2.3.4 is not imported"):
        register("1.2.3.4")
    with pytest.raises(
        PluginNotFoundError, match="Unknown plug-in 'nope@1.0.0'.*lesion-candidates"
    ):
        register(uid, plugin="nope@1.0.0")
    with pytest.raises(InvalidRangeError, match="does not divide"):
        register(SeriesInput(uid, "1:4:2"))
    with pytest.raises(InvalidRangeError, match="do not exist.*6"):
        register(SeriesInput(uid, "1:6"))
    assert list_jobs() == []


def test_duplicate_is_refused_unless_forced(series_factory: SeriesFactory) -> None:
    uid = series_factory()
    first = register(uid)
    with pytest.raises(DuplicateJobError, match="There is a duplicate job") as caught:
        register(uid)
    assert caught.value.existing_job_ids == [first]
    second = register(uid, force=True)
    with pytest.raises(DuplicateJobError) as caught:
        register(SeriesInput(uid, "1:5:1"))  # "auto" resolved to the same numbers
    assert sorted(caught.value.existing_job_ids) == sorted([first, second])


def test_not_a_duplicate_when_anything_differs(series_factory: SeriesFactory) -> None:
    a, b = series_factory(), series_factory()
    register(a, b, plugin=OTHER)
    register(b, a, plugin=OTHER)  # order matters
    register(a, plugin=OTHER)  # number of series
    register(SeriesInput(a, "1:4"), b, plugin=OTHER)  # range
    register(a, b, plugin="ct-only@1.0.0")  # plug-in
    assert len(list_jobs()) == 5


@pytest.mark.parametrize(
    ("status", "blocks"),
    [
        (JobStatus.IN_QUEUE, True),
        (JobStatus.PROCESSING, True),
        (JobStatus.FINISHED, True),
        (JobStatus.FAILED, False),
        (JobStatus.CANCELLED, False),
        (JobStatus.INVALIDATED, False),
    ],
)
def test_duplicate_check_ignores_failed_cancelled_invalidated(
    series_factory: SeriesFactory, status: JobStatus, blocks: bool
) -> None:
    uid = series_factory()
    force_status(register(uid), status)
    if blocks:
        with pytest.raises(DuplicateJobError):
            register(uid)
    else:
        register(uid)


def test_cancel_from_in_queue(series_factory: SeriesFactory) -> None:
    job_id = register(series_factory())
    job = cancel_job(job_id, user="bob")
    assert job.status == JobStatus.CANCELLED
    last = job_events(job_id)[-1]
    assert (last.from_status, last.to_status, last.by) == (
        JobStatus.IN_QUEUE,
        JobStatus.CANCELLED,
        "bob",
    )


@pytest.mark.parametrize("status", [s for s in JobStatus if s != JobStatus.IN_QUEUE])
def test_cancel_is_refused_unless_in_queue(
    series_factory: SeriesFactory, status: JobStatus
) -> None:
    job_id = register(series_factory())
    force_status(job_id, status)
    with pytest.raises(
        JobStateError, match=f"You cannot cancel this job because its status is {status}"
    ):
        cancel_job(job_id)
    job = get_job(job_id)
    assert job is not None and job.status == status


def test_cancel_of_a_running_job_says_already_being_processed(
    series_factory: SeriesFactory,
) -> None:
    job_id = register(series_factory())
    force_status(job_id, JobStatus.PROCESSING)
    with pytest.raises(JobStateError, match="already being processed"):
        cancel_job(job_id)


def test_invalidate_from_finished_records_who_when_why(series_factory: SeriesFactory) -> None:
    job_id = register(series_factory())
    assert claim(job_id, machine="m1")
    assert finish(job_id, {"results": {}})
    job = invalidate_job(job_id, reason="series incomplete", user="carol")
    assert job.status == JobStatus.INVALIDATED
    assert job.invalidated_by == "carol" and job.invalidation_reason == "series incomplete"
    assert job.invalidated_at is not None


@pytest.mark.parametrize("status", [s for s in JobStatus if s != JobStatus.FINISHED])
def test_invalidate_is_refused_unless_finished(
    series_factory: SeriesFactory, status: JobStatus
) -> None:
    job_id = register(series_factory())
    force_status(job_id, status)
    with pytest.raises(
        JobStateError, match=f"You cannot invalidate this job because its status is {status}"
    ):
        invalidate_job(job_id, reason="x")


def test_unknown_job() -> None:
    with pytest.raises(JobNotFoundError):
        cancel_job("01h0000000000000000000000")
    assert get_job("01h0000000000000000000000") is None


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [(f, t) for f in JobStatus for t in JobStatus if t not in ALLOWED_MOVES[f]],
)
def test_every_move_outside_the_table_is_refused(
    session: Session, from_status: JobStatus, to_status: JobStatus
) -> None:
    with pytest.raises(JobStateError, match="not allowed"):
        move_status("any", from_status, to_status, session=session)


def test_the_table_is_the_circus_one() -> None:
    assert ALLOWED_MOVES[JobStatus.IN_QUEUE] >= {JobStatus.PROCESSING, JobStatus.CANCELLED}
    assert ALLOWED_MOVES[JobStatus.PROCESSING] == {JobStatus.FINISHED, JobStatus.FAILED}
    assert ALLOWED_MOVES[JobStatus.FINISHED] == {JobStatus.INVALIDATED}
    for end in (JobStatus.CANCELLED, JobStatus.INVALIDATED, JobStatus.FAILED):
        assert not ALLOWED_MOVES[end]


def test_finish_and_fail_need_processing(series_factory: SeriesFactory) -> None:
    job_id = register(series_factory())
    assert not finish(job_id, {"results": {}})
    assert not fail(job_id, "boom")
    assert claim(job_id, machine="m")
    assert not claim(job_id, machine="m")
    assert fail(job_id, "boom")
    job = get_job(job_id)
    assert job is not None and job.status == JobStatus.FAILED and job.error_message == "boom"


def test_cancel_and_start_race_has_exactly_one_winner(series_factory: SeriesFactory) -> None:
    uid = series_factory()
    for _ in range(40):
        job_id = register(uid, force=True)
        claimed, cancelled = race_cancel_and_start(job_id)
        assert claimed != cancelled
        job = get_job(job_id)
        assert job is not None
        assert job.status == (JobStatus.PROCESSING if claimed else JobStatus.CANCELLED)
        assert len(job_events(job_id)) == 2


def test_plugins_are_recorded_in_the_plugin_table(home: object) -> None:
    from sqlmodel import select

    from circus_tasks.db.models import PluginRecord
    from circus_tasks.plugins.registry import list_plugins

    ids = [p.plugin_id for p in list_plugins()]
    assert PLUGIN in ids and OTHER in ids
    with session_scope() as session:
        records = {r.plugin_id: r for r in session.exec(select(PluginRecord))}
    assert set(records) == set(ids)
    assert records[PLUGIN].manifest["pluginName"] == "lesion-candidates"
    assert records[PLUGIN].version == "1.0.0"
