"""Feeding a batch: at most max_in_flight of its jobs dispatched at a time, completion, and
pause, resume and cancel (Prefect unreachable here: the flow runs are the stack tests')."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import update
from sqlmodel import col

from circus_tasks.api import get_job
from circus_tasks.batch_api import (
    BatchRequest,
    SeriesSelection,
    batch_items,
    cancel_batch,
    get_batch,
    list_batches,
    pause_batch,
    resume_batch,
    start_batch,
)
from circus_tasks.batches import records
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Job
from circus_tasks.errors import BatchNotFoundError, JobStateError
from circus_tasks.statuses import BatchStatus, ItemOutcome, JobStatus
from tests.running import claim, finish, prefect_unreachable

SeriesFactory = Callable[..., str]


def _start(series_factory: SeriesFactory, count: int, max_in_flight: int) -> str:
    uids = [series_factory(slices=3) for _ in range(count)]
    request = BatchRequest(
        name="feed",
        plugin_id="record@1.0.0",
        selection=SeriesSelection(series_uids=uids),
        max_in_flight=max_in_flight,
    )
    with prefect_unreachable():
        batch = start_batch(request)
    assert batch.status == BatchStatus.RUNNING and batch.flow_run_id is None
    return batch.id


def _due(batch_id: str) -> list[str]:
    with session_scope() as session:
        return records.jobs_to_feed(batch_id, 2, session=session)


def _dispatched(job_ids: list[str]) -> None:
    with session_scope() as session:
        session.execute(
            update(Job).where(col(Job.id).in_(job_ids)).values(flow_run_id="a-flow-run")
        )


def test_at_most_max_in_flight_jobs_are_fed(series_factory: SeriesFactory) -> None:
    batch_id = _start(series_factory, 5, 2)
    items = batch_items(batch_id)
    assert [i.outcome for i in items] == [ItemOutcome.RUN] * 5
    first = _due(batch_id)
    assert first == sorted(i.job_id for i in items if i.job_id)[:2]
    _dispatched(first)
    assert _due(batch_id) == []  # two in flight
    context = claim(first[0])
    assert context is not None and finish(first[0], {"results": {}})
    (third,) = _due(batch_id)
    assert third not in first
    with session_scope() as session:
        assert not records.complete_if_done(batch_id, session=session)
        assert records.progress(batch_id, session=session).jobs[JobStatus.FINISHED] == 1


def test_a_batch_whose_jobs_are_all_final_completes(series_factory: SeriesFactory) -> None:
    batch_id = _start(series_factory, 2, 4)
    for item in batch_items(batch_id):
        assert item.job_id is not None
        assert claim(item.job_id) is not None and finish(item.job_id, {"results": {}})
    with session_scope() as session:
        assert records.complete_if_done(batch_id, session=session)
        assert records.progress(batch_id, session=session).percent == 100.0
    assert get_batch(batch_id).status == BatchStatus.COMPLETED
    with pytest.raises(JobStateError, match="because it is completed"):
        pause_batch(batch_id)


def test_pause_resume_and_cancel(series_factory: SeriesFactory) -> None:
    batch_id = _start(series_factory, 3, 1)
    (running,) = _due(batch_id)[:1]
    _dispatched([running])
    assert claim(running) is not None
    assert pause_batch(batch_id).status == BatchStatus.PAUSED
    assert resume_batch(batch_id).status == BatchStatus.RUNNING
    with prefect_unreachable():
        assert cancel_batch(batch_id, user="ann").status == BatchStatus.CANCELLED
    statuses = {i.job_id: get_job(i.job_id).status for i in batch_items(batch_id) if i.job_id}  # type: ignore[union-attr]
    assert statuses.pop(running) == JobStatus.PROCESSING  # a running job finishes
    assert set(statuses.values()) == {JobStatus.CANCELLED}  # no queued job left behind
    with pytest.raises(JobStateError, match="because it is cancelled"):
        resume_batch(batch_id)
    assert [b.id for b in list_batches(status="cancelled")] == [batch_id]
    with pytest.raises(BatchNotFoundError):
        get_batch("01h0nosuchbatch00000000000")


def test_no_resume_of_a_completed_batch_and_no_retry_of_a_cancelled_one(
    series_factory: SeriesFactory,
) -> None:
    from circus_tasks.batch_api import retry_failed

    done = _start(series_factory, 1, 1)
    (item,) = batch_items(done)
    assert claim(item.job_id) is not None and finish(item.job_id, {"results": {}})  # type: ignore[arg-type]
    with session_scope() as session:
        assert records.complete_if_done(done, session=session)
    with pytest.raises(JobStateError, match="because it is completed"):
        resume_batch(done)
    cancelled = _start(series_factory, 1, 1)
    with prefect_unreachable():
        cancel_batch(cancelled)
        with pytest.raises(JobStateError, match="because it is cancelled; start a new batch"):
            retry_failed(cancelled)


def test_the_reconciler_cancels_jobs_held_for_a_batch_that_no_longer_runs(
    series_factory: SeriesFactory,
) -> None:
    from circus_tasks.orchestration.reconciler import reconcile_once

    batch_id = _start(series_factory, 2, 1)
    with session_scope() as session:  # a cancel cut short: the batch moved, its jobs not
        records.move_batch(batch_id, BatchStatus.RUNNING, BatchStatus.CANCELLED, session=session)
    with prefect_unreachable():
        actions = reconcile_once()
    assert sum("its batch no longer runs" in a for a in actions) == 2
    assert {get_job(i.job_id).status for i in batch_items(batch_id)} == {JobStatus.CANCELLED}  # type: ignore[arg-type,union-attr]
