"""Re-running the jobs of volumetry 1.0.0 with 1.1.0 (dense tissue from 150 HU): each new job
supersedes its old one, compare shows what changed, promote invalidates only the old jobs whose
new job finished, retry-failed re-runs only the failed items."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from circus_tasks.api import get_job
from circus_tasks.batch_api import (
    BatchRequest,
    JobsSelection,
    batch_items,
    compare_batch,
    promote_batch,
    retry_failed,
    start_batch,
)
from circus_tasks.statuses import JobStatus
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series
from tests.running import claim, fail, finish, prefect_unreachable, register, run_steps


def _series(folder: Path) -> str:
    """A body of 40 HU with a block at 175 HU: dense for 1.1.0, not for 1.0.0."""
    stored = np.full((4, 16, 16), 1024 + 40, dtype=np.int16)
    stored[1:3, 4:8, 4:8] = 1024 + 175
    write_series(folder, stored)
    (uid,) = import_dicom(folder).series_uids
    return uid


def _run(job_id: str) -> None:
    context = claim(job_id)
    assert context is not None and finish(job_id, run_steps(context))


def test_rerun_compare_promote_and_retry(tmp_path: Path) -> None:
    first, second = _series(tmp_path / "a"), _series(tmp_path / "b")
    old = [register("volumetry@1.0.0", [uid]) for uid in (first, second)]
    for job_id in old:
        _run(job_id)
    request = BatchRequest(
        name="volumetry 1.1.0",
        plugin_id="volumetry@1.1.0",
        selection=JobsSelection(plugin_name="volumetry", versions="<1.1.0"),
    )
    with prefect_unreachable():
        batch = start_batch(request)
    items = batch_items(batch.id)
    assert [i.supersedes_job_id for i in items] == old
    new = [i.job_id for i in items]
    assert all(get_job(n).supersedes_job_id == o for n, o in zip(new, old, strict=True))  # type: ignore[arg-type,union-attr]
    _run(new[0])  # type: ignore[arg-type]
    assert claim(new[1]) is not None and fail(new[1], "boom")  # type: ignore[arg-type]

    rows = list(csv.DictReader(io.StringIO(compare_batch(batch.id))))
    dense = [r for r in rows if r["measure"] == "denseVolumeMl"]
    assert len(dense) == 1 and dense[0]["old_job"] == old[0]  # the failed item is not compared
    assert float(dense[0]["old"]) == 0 and float(dense[0]["change"]) > 0
    (threshold,) = [r for r in rows if r["measure"] == "thresholdsHU.dense"]
    assert (threshold["old"], threshold["new"], threshold["change"]) == ("200", "150", "-50")

    with prefect_unreachable():
        assert promote_batch(batch.id, user="lead") == [old[0]]
    promoted, kept = get_job(old[0]), get_job(old[1])
    assert promoted is not None and promoted.status == JobStatus.INVALIDATED
    assert promoted.invalidation_reason == f"superseded by {new[0]} (volumetry@1.1.0)"
    assert kept is not None and kept.status == JobStatus.FINISHED

    with prefect_unreachable():
        (retried,) = retry_failed(batch.id)
    again = get_job(retried)
    assert again is not None and again.supersedes_job_id == new[1]
    assert again.batch_id == batch.id and again.status == JobStatus.IN_QUEUE
    assert batch_items(batch.id)[1].job_id == retried
    with prefect_unreachable():
        assert retry_failed(batch.id) == []  # nothing failed any more
