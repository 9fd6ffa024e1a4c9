"""A CIRCUS home made by the package before the wings (``tests/data/previous-layout``) is opened,
read and used by the package as it is now."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from circus_tasks.api import get_job, get_job_results, invalidate_job, list_jobs
from circus_tasks.db.engine import reset_caches
from circus_tasks.statuses import JobStatus
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series
from tests.running import claim, finish, run_steps

PREVIOUS = Path(__file__).resolve().parent / "data" / "previous-layout"
FINISHED, QUEUED, CANCELLED = (
    "01m8s0ckgcnce1zc15ec4sascq",
    "01m8s0ckghg0rnj8amen4eq1mh",
    "01m8s0ckgjpc7mmx5wm015g3d4",
)
SERIES_UID = "1.2.826.0.1.3680043.10.1.1"


def test_a_home_of_the_previous_layout_is_read_and_runs_its_queued_job(
    home: Path, tmp_path: Path
) -> None:
    shutil.copytree(PREVIOUS / "home", home)
    reset_caches()

    jobs = {job.id: job for job in list_jobs(series_uid=SERIES_UID)}
    assert {i: j.status for i, j in jobs.items()} == {
        FINISHED: JobStatus.FINISHED,
        QUEUED: JobStatus.IN_QUEUE,
        CANCELLED: JobStatus.CANCELLED,
    }
    stored = get_job_results(FINISHED)
    assert stored.results == json.loads((home / "results" / FINISHED / "results.json").read_text())
    assert stored.log is not None and "exit code 0" in stored.log.read_text()

    # the queued job's images come back (the same pixels, imported again) and it runs now
    volume = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)
    write_series(tmp_path / "series", volume, series_uid=SERIES_UID, patient_id="OLD-1")
    assert import_dicom(tmp_path / "series").series_uids == {SERIES_UID}
    context = claim(QUEUED)
    assert context is not None
    assert finish(QUEUED, run_steps(context))
    ran = get_job(QUEUED)
    assert ran is not None and ran.status == JobStatus.FINISHED
    assert ran.results == stored.results  # the same histogram as the job the old code ran

    assert invalidate_job(FINISHED, reason="re-run after the upgrade").status == (
        JobStatus.INVALIDATED
    )
