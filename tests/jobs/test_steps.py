"""Pre-, main and post-processing as plain functions, and how a job fails."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from circus_tasks.api import SeriesInput, cancel_job, get_job
from circus_tasks.db.engine import reset_caches
from circus_tasks.errors import (
    JobNotFoundError,
    PluginError,
    PluginNotFoundError,
    ResultsError,
    StorageError,
    VolumeError,
)
from circus_tasks.jobs.folders import INPUTS_FILE, PLUGIN_LOG, results_folder
from circus_tasks.jobs.steps import JobContext, prepare_inputs, run_main, store_results
from circus_tasks.orchestration.run import job_execution
from circus_tasks.settings import get_settings
from circus_tasks.statuses import JobStatus
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.phantom import DEFAULT_BLOBS, phantom_volume
from circus_tasks.testing.synthetic import write_series
from circus_tasks.volume.writer import IDENTIFYING_KEYWORDS
from tests.running import claim, register, run_steps

SeriesFactory = Callable[..., str]


def new_job(plugin: str, *series: SeriesInput | str) -> JobContext:
    context = claim(register(plugin, list(series), force=True))
    assert context is not None
    return context


def test_lesion_candidates_job_end_to_end_without_prefect(home: Path, tmp_path: Path) -> None:
    write_series(
        tmp_path / "phantom",
        phantom_volume(),
        pixel_spacing=(0.8, 0.8),
        slice_spacing=1.5,
        patient_name="Secret^Patient",
        patient_id="SECRET-ID-42",
    )
    (uid,) = import_dicom(tmp_path / "phantom").series_uids
    job = new_job("lesion-candidates@1.0.0", uid)

    inputs = prepare_inputs(job)
    assert sorted(p.name for p in inputs.iterdir()) == ["0.json", "0.mhd", "0.raw"]
    header = json.loads((inputs / "0.json").read_text())
    text = (inputs / "0.json").read_text() + (inputs / "0.mhd").read_text()
    assert "Secret^Patient" not in text and "SECRET-ID-42" not in text
    assert "0010,0010" not in header["common"] and len(header["unique"]) == 48
    assert len(IDENTIFYING_KEYWORDS) >= 13

    results = store_results(job, run_main(job, inputs))
    candidates = results["results"]["lesionCandidates"]
    assert len(candidates) == len(DEFAULT_BLOBS)
    stored = results_folder(job.job_id)
    assert sorted(p.name for p in stored.iterdir()) == [
        INPUTS_FILE,
        PLUGIN_LOG,
        "preview.png",
        "results.json",
    ]
    used = (stored / INPUTS_FILE).read_text().split()
    assert used[:3] == ["#", "series", "0"] and len(used) == 3 + 48
    log = (stored / PLUGIN_LOG).read_text()
    assert "exit code 0" in log and "Found 3 candidate(s)" in log and "isolation:" in log


def test_two_series_become_volumes_0_and_1_in_job_order(series_factory: SeriesFactory) -> None:
    a, b = series_factory(slices=3), series_factory(slices=6)
    inputs = prepare_inputs(new_job("record@1.0.0", SeriesInput(b, "6:2:-2"), a))
    assert "DimSize = 8 8 3" in (inputs / "0.mhd").read_text()
    assert "DimSize = 8 8 3" in (inputs / "1.mhd").read_text()
    raw = (inputs / "0.raw").read_bytes()
    first_slices = np.frombuffer(raw, "<i2").reshape(3, 8, 8)[:, 0, 0]
    assert list(first_slices) == [500, 300, 100]  # images 6, 4, 2 (value 100 * (n - 1))


def test_main_processing_runs_the_plugin_on_the_folder_it_is_given(
    series_factory: SeriesFactory, tmp_path: Path
) -> None:
    job = new_job("record@1.0.0", series_factory(slices=2))
    prepare_inputs(job)  # writes 0.mhd in the job's own input folder
    given = tmp_path / "given"
    given.mkdir()
    (given / "7.mhd").write_text("")
    outputs = run_main(job, given)
    assert outputs == job.folders.output
    recorded = json.loads((outputs / "results.json").read_text())
    assert recorded["results"]["volumes"] == ["7.mhd"]


def test_post_processing_stores_the_folder_it_is_given(
    series_factory: SeriesFactory, tmp_path: Path
) -> None:
    job = new_job("record@1.0.0", series_factory(slices=2))
    run_main(job, prepare_inputs(job))
    given = tmp_path / "given"
    given.mkdir()
    (given / "results.json").write_text('{"results": {"from": "given"}}')
    assert store_results(job, given) == {"results": {"from": "given"}}
    assert (results_folder(job.job_id) / "results.json").read_text() == (
        '{"results": {"from": "given"}}'
    )


def test_a_full_results_store_fails_the_job_clearly_and_leaves_nothing(
    series_factory: SeriesFactory, tmp_path: Path
) -> None:
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("not root: a small file system cannot be mounted here")
    job = new_job("record@1.0.0", series_factory(slices=2))
    outputs = run_main(job, prepare_inputs(job))
    store = results_folder(job.job_id).parent
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "full", str(store)], check=True)
    try:
        filler = store / "filler"
        with pytest.raises(OSError), filler.open("wb") as out:
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        with pytest.raises(StorageError, match="No space left on device.*resubmit"):
            store_results(job, outputs)
        assert sorted(p.name for p in store.iterdir()) == ["filler"]  # no partial copy left
        filler.unlink()
        store_results(job, outputs)  # with room again, the same job stores
        assert (results_folder(job.job_id) / "results.json").is_file()
    finally:
        subprocess.run(["umount", str(store)], check=True)


def run_job_plain(job_id: str) -> None:
    with job_execution(job_id) as run:
        assert run.context is not None
        run_steps(run.context)


def queued_job(plugin: str, uid: str) -> str:
    return register(plugin, [uid], force=True)


@pytest.mark.parametrize(
    ("plugin", "error", "message"),
    [
        ("crash@1.0.0", PluginError, "exited with code 3"),
        ("no-results@1.0.0", ResultsError, "results.json"),
        ("bad-results@1.0.0", ResultsError, r"location.*too short"),
        ("escape@1.0.0", ResultsError, "symbolic link to /etc/passwd"),
        ("escape-relative@1.0.0", ResultsError, r"symbolic link to \.\./in/0\.raw"),
    ],
)
def test_a_bad_plugin_fails_its_job_with_a_clear_message_and_stores_nothing(
    series_factory: SeriesFactory, plugin: str, error: type[Exception], message: str
) -> None:
    job_id = queued_job(plugin, series_factory())
    with pytest.raises(error, match=message):
        run_job_plain(job_id)
    job = get_job(job_id)
    assert job is not None and job.status == JobStatus.FAILED
    assert job.error_message is not None and re.search(message, job.error_message)
    assert not results_folder(job_id).exists()
    assert not get_settings().results_dir.exists() or not any(get_settings().results_dir.iterdir())
    assert (get_settings().jobs_dir / job_id / PLUGIN_LOG).exists()


def test_a_broken_image_fails_pre_processing(series_factory: SeriesFactory) -> None:
    uid = series_factory(slices=3)
    job_id = queued_job("record@1.0.0", uid)
    stored = sorted((get_settings().dicom_dir / uid).glob("*.dcm"))
    data = stored[1].read_bytes()
    stored[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeError):
        run_job_plain(job_id)
    job = get_job(job_id)
    assert job is not None and job.status == JobStatus.FAILED
    assert not list((get_settings().jobs_dir / job_id / "in").glob("0.*"))


def test_a_job_whose_plugin_is_gone_fails_at_its_claim(
    series_factory: SeriesFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = queued_job("record@1.0.0", series_factory(slices=2))
    monkeypatch.setenv("CIRCUS_PLUGINS_DIR", str(tmp_path))  # no plug-ins any more
    reset_caches()
    with pytest.raises(PluginNotFoundError, match="record@1.0.0"):
        with job_execution(job_id):
            pytest.fail("nothing may run without its plug-in")
    job = get_job(job_id)
    assert job is not None and job.status == JobStatus.FAILED
    assert job.error_message is not None and "Unknown plug-in 'record@1.0.0'" in job.error_message


def test_any_failure_to_read_the_run_context_fails_the_job(
    series_factory: SeriesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from circus_tasks.jobs import steps

    job_id = queued_job("record@1.0.0", series_factory(slices=2))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(steps, "image_rows", broken)
    with pytest.raises(OSError, match="disk gone"):
        with job_execution(job_id):
            pytest.fail("nothing may run without its context")
    job = get_job(job_id)
    assert job is not None and job.status == JobStatus.FAILED
    assert job.error_message == "OSError: disk gone"


def test_a_run_for_an_unknown_job_fails_and_says_so() -> None:
    with pytest.raises(JobNotFoundError, match="No job 01h0nosuchjob0000000000000 in the CIRCUS"):
        with job_execution("01h0nosuchjob0000000000000"):
            pytest.fail("nothing may run for a job that does not exist")


def test_a_run_that_loses_the_start_says_why(series_factory: SeriesFactory) -> None:
    uid = series_factory(slices=2)
    cancelled = queued_job("record@1.0.0", uid)
    cancel_job(cancelled)
    with job_execution(cancelled) as run:
        assert not run.claimed and run.status == JobStatus.CANCELLED
        assert run.reason == f"job {cancelled} was cancelled before it started"
    taken = queued_job("record@1.0.0", uid)
    assert claim(taken, machine="elsewhere")  # another run got there
    with job_execution(taken) as run:
        assert not run.claimed
        assert run.reason == f"job {taken} was not started: its status is already processing"


def test_a_huge_plugin_log_is_kept_cut_in_the_middle(tmp_path: Path) -> None:
    from circus_tasks.jobs.steps import copy_bounded

    source = tmp_path / "log.txt"
    source.write_bytes(b"start " + b"x" * 5000 + b" end")
    copy_bounded(source, tmp_path / "kept.txt", 1000)
    kept = (tmp_path / "kept.txt").read_bytes()
    assert kept.startswith(b"start ") and kept.endswith(b" end")
    assert b"bytes left out" in kept and len(kept) < 1100
    copy_bounded(source, tmp_path / "whole.txt", 10_000)
    assert (tmp_path / "whole.txt").read_bytes() == source.read_bytes()
