"""Status moves become Prefect events, pending until sent (sending them is the stack tests')."""

from __future__ import annotations

from collections.abc import Callable

from circus_tasks.batch_api import BatchRequest, SeriesSelection, start_batch
from circus_tasks.orchestration.events import mark_sent, pending_events
from tests.running import claim, finish, prefect_unreachable, register


def test_job_and_batch_moves_become_events_once(series_factory: Callable[..., str]) -> None:
    uid = series_factory(slices=3)
    job_id = register("record@1.0.0", [uid], user="ann")
    assert claim(job_id) is not None and finish(job_id, {"results": {}})
    with prefect_unreachable():
        batch = start_batch(
            BatchRequest(name="b", plugin_id="ct-only@1.0.0", selection=SeriesSelection())
        )
    events, job_rows, batch_rows = pending_events()
    assert pending_events()[0] == events  # not sent yet: still pending
    mark_sent(job_rows, batch_rows)
    assert pending_events() == ([], [], [])
    names = [e["event"] for e in events]
    assert names[:3] == ["circus.job.in_queue", "circus.job.processing", "circus.job.finished"]
    assert names[-1] == "circus.batch.started" and names.count("circus.job.in_queue") == 2
    finished = events[2]
    assert finished["resource"]["prefect.resource.id"] == f"circus.job.{job_id}"
    related = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in finished["related"]}
    assert related == {
        "plugin": "circus.plugin.record@1.0.0",
        "series": f"circus.series.{uid}",
        "user": "circus.user.ann",
    }
    assert finished["payload"]["from"] == "processing"
    batch_job = events[3]
    assert {
        "prefect.resource.id": f"circus.batch.{batch.id}",
        "prefect.resource.role": "batch",
    } in (batch_job["related"])
