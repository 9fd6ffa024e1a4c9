"""Planning and starting a batch: the plan writes nothing, and starting writes exactly what
it said; starting the same batch again creates no job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import select

from circus_tasks.batches.plan import BatchRequest, plan_batch_items, start_batch_records
from circus_tasks.batches.selections import FailedSelection, JobsSelection, SeriesSelection
from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import BatchItem, Job
from circus_tasks.errors import PluginNotFoundError
from circus_tasks.statuses import ItemOutcome, JobStatus
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series
from tests.conftest import make_volume
from tests.running import claim, fail, finish, register

SeriesFactory = Callable[..., str]
PLUGIN = "ct-only@1.0.0"  # CT, 3 to 10 images


def _mixed(series_factory: SeriesFactory, tmp_path: Path) -> dict[str, str]:
    """Series of every kind a plan meets: done already, in flight, refused, changed since its
    last job (two more images arrived), new."""
    volume = make_volume(6)
    write_series(tmp_path / "early", volume[:4], series_uid="1.2.3.8.1")
    import_dicom(tmp_path / "early")
    changed = register(PLUGIN, ["1.2.3.8.1"])
    assert claim(changed) is not None and finish(changed, {"results": {}})
    late = write_series(tmp_path / "late", volume, series_uid="1.2.3.8.1")
    for path in late[:4]:
        path.unlink()
    import_dicom(tmp_path / "late")
    uids = {
        "changed": "1.2.3.8.1",
        "done": series_factory(slices=4),
        "in flight": series_factory(slices=4),
        "too short": series_factory(slices=2),
        "mr": series_factory(slices=4, modality="MR"),
        "new 1": series_factory(slices=4),
        "new 2": series_factory(slices=5),
    }
    done = register(PLUGIN, [uids["done"]])
    assert claim(done) is not None and finish(done, {"results": {}})
    register(PLUGIN, [uids["in flight"]])
    return uids


def _request(name: str = "nightly", **selection: object) -> BatchRequest:
    return BatchRequest(name=name, plugin_id=PLUGIN, selection=SeriesSelection(**selection))


def _jobs() -> list[Job]:
    with session_scope() as session:
        return list(session.exec(select(Job)))


def test_the_plan_counts_each_kind_and_writes_nothing(
    series_factory: SeriesFactory, tmp_path: Path
) -> None:
    uids = _mixed(series_factory, tmp_path)
    before = _jobs()
    with session_scope() as session:
        plan = plan_batch_items(_request(), session=session)
    assert _jobs() == before
    assert plan.counts() == {ItemOutcome.RUN: 3, ItemOutcome.SKIPPED: 2, ItemOutcome.REFUSED: 2}
    by_series = {item.series[0]["series_uid"]: item for item in plan.items}
    assert by_series[uids["new 1"]].series == [{"series_uid": uids["new 1"], "range": "1:4:1"}]
    assert by_series[uids["changed"]].series == [{"series_uid": uids["changed"], "range": "1:6:1"}]
    assert by_series[uids["changed"]].outcome == ItemOutcome.RUN
    assert "duplicate" in (by_series[uids["done"]].reason or "")
    assert by_series[uids["in flight"]].related_job_ids
    assert "at least 3" in (by_series[uids["too short"]].reason or "")
    assert "modality is MR" in (by_series[uids["mr"]].reason or "")


def test_start_does_what_the_plan_said_and_again_nothing(
    series_factory: SeriesFactory, tmp_path: Path
) -> None:
    _mixed(series_factory, tmp_path)
    with session_scope() as session:
        planned = plan_batch_items(_request(), session=session).counts()
    with session_scope() as session:
        batch, created = start_batch_records(_request(), session=session)
    assert created
    assert (batch.planned_run, batch.planned_skipped, batch.planned_refused) == (
        planned[ItemOutcome.RUN],
        planned[ItemOutcome.SKIPPED],
        planned[ItemOutcome.REFUSED],
    )
    made = [j for j in _jobs() if j.batch_id == batch.id]
    assert len(made) == planned[ItemOutcome.RUN]
    assert all(j.status == JobStatus.IN_QUEUE and j.flow_run_id is None for j in made)
    assert all(j.priority == -5 for j in made)
    with session_scope() as session:
        items = list(session.exec(select(BatchItem).where(BatchItem.batch_id == batch.id)))
    assert sorted(i.job_id for i in items if i.job_id) == sorted(j.id for j in made)

    count = len(_jobs())
    with session_scope() as session:
        again, created = start_batch_records(_request(), session=session)
    assert (again.id, created) == (batch.id, False)
    with session_scope() as session:  # another name: a new batch, whose items are all in flight
        other, created = start_batch_records(_request("other"), session=session)
    assert created and other.planned_run == 0 and other.planned_skipped == 5
    assert len(_jobs()) == count


def test_series_filters_select_what_they_say(series_factory: SeriesFactory) -> None:
    a = series_factory(slices=4, patient_id="P1", series_description="Chest CT")
    b = series_factory(slices=6, patient_id="P2", series_description="Abdomen")
    series_factory(slices=4, modality="MR", patient_id="P1")

    def chosen(**selection: object) -> set[str]:
        with session_scope() as session:
            plan = plan_batch_items(_request(**selection), session=session)
        return {item.series[0]["series_uid"] for item in plan.items}

    assert chosen(modality=["CT"]) == {a, b}
    assert chosen(patient_ids=["P1"], modality=["CT"]) == {a}
    assert chosen(description="*chest*") == {a}
    assert chosen(min_images=5) == {b}
    assert chosen(series_uids=[b]) == {b}


def test_jobs_and_failed_selections_rerun_with_links(series_factory: SeriesFactory) -> None:
    uid = series_factory(slices=4)
    old = register("record@1.0.0", [f"{uid}"], force=True)
    failed = register(PLUGIN, [uid])
    assert claim(failed) is not None and fail(failed, "boom")
    with session_scope() as session:
        rerun = plan_batch_items(
            BatchRequest(
                name="v2",
                plugin_id=PLUGIN,
                selection=JobsSelection(plugin_name="record", statuses=[JobStatus.IN_QUEUE]),
            ),
            session=session,
        )
        retry = plan_batch_items(
            BatchRequest(
                name="retry",
                plugin_id=PLUGIN,
                selection=FailedSelection(since="2000-01-01T00:00:00Z"),
            ),
            session=session,
        )
    assert [(i.supersedes_job_id, i.outcome) for i in rerun.items] == [(old, ItemOutcome.RUN)]
    assert [(i.supersedes_job_id, i.outcome) for i in retry.items] == [(failed, ItemOutcome.RUN)]


def test_an_unknown_plugin_or_a_bad_range_is_refused_at_once() -> None:
    with pytest.raises(PluginNotFoundError), session_scope() as session:
        plan_batch_items(
            BatchRequest(name="x", plugin_id="nope@1.0.0", selection=SeriesSelection()),
            session=session,
        )
    with pytest.raises(ValueError, match="Specified range is invalid"):
        SeriesSelection(range="1:4:2")


def test_an_empty_selection_starts_an_empty_batch() -> None:
    with session_scope() as session:
        batch, created = start_batch_records(_request(series_uids=[]), session=session)
    assert created and (batch.planned_run, batch.planned_skipped, batch.planned_refused) == (
        0,
        0,
        0,
    )


def test_two_starts_of_one_request_at_once_make_one_batch(series_factory: SeriesFactory) -> None:
    import threading

    uids = [series_factory(slices=4) for _ in range(3)]
    barrier = threading.Barrier(2)
    outcomes: list[tuple[str, bool]] = []

    def start() -> None:
        barrier.wait()
        with session_scope() as session:
            batch, created = start_batch_records(_request(series_uids=uids), session=session)
            outcomes.append((batch.id, created))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({batch_id for batch_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False, True]
    assert len([j for j in _jobs() if j.batch_id]) == 3
