"""Batch reprocessing at scale, against its floor and its peer, measured in one run.

(a) Planning a batch over 10,000 imported series (3 images each): ``plan_batch`` against the
    floor of reading the same rows (every series and every image, one query each), and against
    the goal of 2 s.
(b) Registering a batch of 1,000 jobs (``start_batch`` without its flow run: the plan and the
    batch, item and job rows) against registering the same 1,000 requests as
    ``submit_jobs`` does (``register_jobs``; its Prefect flow runs are left out on both sides:
    a batch creates them later, a window at a time). Each side on a fresh copy of the database.
(c) Feeding that batch: the window logic (``jobs_to_feed``) with the Prefect side simulated (a
    dispatched job gets a run id, a few in flight finish each round), checking that no more
    than ``max_in_flight`` of its jobs are ever dispatched and unfinished.

Run from the project folder (after ``make test`` has built ``.venv``)::

    .venv/bin/python benchmarks/batch.py

Each time is the median of three runs; the last line starts with the registration ratio.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchmarks.table import record  # noqa: E402

PLUGIN = "noop@1.0.0"
SERIES = 10_000
IMAGES = 3
BATCH_JOBS = 1_000
MAX_IN_FLIGHT = 4
GOAL_PLAN_SECONDS = 2.0


def median_of_three(call: Callable[[], Any], before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(3):
        if before is not None:
            before()
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fill_series(count: int) -> list[str]:
    """Bulk-insert ``count`` CT series of :data:`IMAGES` images each; their UIDs."""
    from sqlalchemy import insert

    from circus_tasks.db.engine import get_engine
    from circus_tasks.db.models import Image, Series

    now = datetime.now(UTC)
    uids = [f"1.2.826.0.1.3680043.77.{n}" for n in range(count)]
    fields = {"modality": "CT", "description": "bench", "series_date": "20260101"}
    fields |= {"image_count": IMAGES, "orientation": "axial", "attributes": [], "created_at": now}
    series = [
        {"series_uid": uid, "study_uid": f"{uid}.0", "patient_id": f"P{n % 3000:05d}", **fields}
        for n, uid in enumerate(uids)
    ]
    images = [
        {"series_uid": uid, "sop_instance_uid": f"{uid}.{k}", "instance_number": k}
        | {"z": float(-k), "path": f"/nonexistent/{uid}/{k}.dcm"}
        for uid in uids
        for k in range(1, IMAGES + 1)
    ]
    with get_engine().begin() as connection:
        connection.execute(insert(Series), series)
        connection.execute(insert(Image), images)
    return uids


def floor_read() -> None:
    """What a plan must read at the least: every series and every image row."""
    from sqlmodel import select

    from circus_tasks.db.engine import session_scope
    from circus_tasks.db.models import Image, Series

    with session_scope() as session:
        list(session.exec(select(Series)))
        list(session.exec(select(Image)))


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="circus-batch-bench-"))
    os.environ["CIRCUS_HOME"] = str(work / "home")
    os.environ["CIRCUS_PLUGINS_DIR"] = str(PROJECT / "benchmarks" / "plugins")
    os.environ.pop("CIRCUS_DATABASE_URL", None)
    from circus_tasks.batch_api import BatchRequest, SeriesSelection, plan_batch
    from circus_tasks.batches import records
    from circus_tasks.batches.plan import start_batch_records
    from circus_tasks.db.engine import get_engine, reset_caches, session_scope
    from circus_tasks.jobs.registration import JobRequest, register_jobs
    from circus_tasks.jobs.transitions import claim, finish
    from circus_tasks.settings import get_settings

    try:
        uids = fill_series(SERIES)
        database = Path(get_settings().db_url.removeprefix("sqlite:///"))
        pristine = work / "pristine.db"

        def close() -> None:
            """Let go of the database (its WAL folded back in), so that its file is whole."""
            with get_engine().connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            get_engine().dispose()
            reset_caches()

        close()
        shutil.copyfile(database, pristine)

        request = BatchRequest(name="all", plugin_id=PLUGIN, selection=SeriesSelection())
        plan_s = median_of_three(lambda: plan_batch(request))
        floor_s = median_of_three(floor_read)
        counts = plan_batch(request).counts()
        print(f"plan over {SERIES:,} series: {plan_s:.2f} s ({dict(counts)})", flush=True)
        print(f"  floor (read every series and image row): {floor_s:.2f} s", flush=True)

        def fresh() -> None:
            close()
            for extra in ("-wal", "-shm"):
                Path(f"{database}{extra}").unlink(missing_ok=True)
            shutil.copyfile(pristine, database)

        chosen = uids[:BATCH_JOBS]
        batch_request = BatchRequest(
            name="thousand", plugin_id=PLUGIN, selection=SeriesSelection(series_uids=chosen)
        )
        job_requests = [JobRequest(PLUGIN, [uid]) for uid in chosen]

        def start() -> None:
            with session_scope() as session:
                batch, created = start_batch_records(batch_request, session=session)
                assert created and batch.planned_run == BATCH_JOBS

        def submit() -> None:
            with session_scope() as session:
                assert all(
                    not isinstance(o, Exception)
                    for o in register_jobs(job_requests, session=session)
                )

        batch_s = median_of_three(start, fresh)
        submit_s = median_of_three(submit, fresh)
        batch_rate, submit_rate = BATCH_JOBS / batch_s, BATCH_JOBS / submit_s
        print(
            f"register {BATCH_JOBS:,} jobs: batch {batch_rate:.0f}/s, "
            f"submit_jobs' registration {submit_rate:.0f}/s",
            flush=True,
        )

        fresh()
        with session_scope() as session:
            batch, _ = start_batch_records(batch_request, session=session)
            batch_id = batch.id
        rng = random.Random(7)
        flying: list[str] = []
        most = fed = rounds = 0
        while True:
            with session_scope() as session:
                due = records.jobs_to_feed(batch_id, MAX_IN_FLIGHT, session=session)
                for job_id in due:
                    job = session.get(records.Job, job_id)
                    job.flow_run_id = f"simulated-{job_id}"
                    session.add(job)
            flying += due
            fed += len(due)
            most = max(most, len(flying))
            if not flying:
                break
            for job_id in rng.sample(flying, rng.randint(1, len(flying))):
                with session_scope() as session:
                    claim(job_id, machine="bench", flow_run_id=None, session=session)
                    finish(job_id, {"results": {}}, session=session)
                flying.remove(job_id)
            rounds += 1
        print(
            f"feeding: {fed:,} jobs in {rounds} rounds, "
            f"at most {most} in flight (max_in_flight {MAX_IN_FLIGHT})"
        )

        plan_ok = "meets" if plan_s <= GOAL_PLAN_SECONDS else "MISSES"
        window_ok = "held" if most <= MAX_IN_FLIGHT and fed == BATCH_JOBS else "BROKEN"
        print(
            f"{batch_rate / submit_rate:.2f}x submit_jobs' registration rate for a "
            f"{BATCH_JOBS:,}-job batch (goal >= 0.9x); "
            f"plan {plan_s:.2f} s = {plan_s / floor_s:.1f}x its floor, "
            f"{plan_ok} the {GOAL_PLAN_SECONDS:.0f} s goal; window {window_ok}"
        )
        record(
            f"batch of {BATCH_JOBS:,} registered, jobs/s",
            f"{batch_rate:.0f}/s",
            f"{submit_rate:.0f}/s (submit_jobs' registration)",
            f"{batch_rate / submit_rate:.2f}x",
            ">= 0.9x",
            batch_rate / submit_rate >= 0.9,
        )
        record(
            f"plan a batch over {SERIES:,} series",
            f"{plan_s:.2f} s",
            f"{floor_s:.2f} s (read the rows)",
            f"{plan_s / floor_s:.1f}x",
            f"<= {GOAL_PLAN_SECONDS:.0f} s",
            plan_s <= GOAL_PLAN_SECONDS,
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
