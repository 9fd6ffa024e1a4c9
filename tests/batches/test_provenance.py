"""Provenance: the images and plug-in files a job used are recorded and shown; a series whose
missing images arrived after its job is selected as changed; a plug-in whose files changed
under the same version is warned about."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
from typer.testing import CliRunner

from circus_tasks.api import get_job
from circus_tasks.batch_api import BatchRequest, ChangedSelection, plan_batch
from circus_tasks.cli.app import app
from circus_tasks.plugins.digest import folder_digest
from circus_tasks.plugins.registry import get_plugin
from circus_tasks.settings import get_settings
from circus_tasks.statuses import ItemOutcome
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series
from tests.conftest import make_volume
from tests.running import claim, finish, register, run_steps

PLUGIN = "record@1.0.0"


def _run(job_id: str) -> None:
    context = claim(job_id)
    assert context is not None and finish(job_id, run_steps(context))


def test_a_job_records_its_images_and_plugin_and_circus_show_prints_them(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", make_volume(3))
    (uid,) = import_dicom(tmp_path / "s").series_uids
    job_id = register(PLUGIN, [uid])
    _run(job_id)
    job = get_job(job_id)
    assert job is not None and job.input_count == 3 and job.input_digest
    assert job.plugin_digest == folder_digest(get_plugin(PLUGIN).path)
    kept = get_settings().results_dir / job_id / "input-images.txt"

    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]
    assert kept.read_text().split()[3:] == uids
    shown = CliRunner().invoke(app, ["show", job_id]).output
    assert job.input_digest in shown and job.plugin_digest in shown


def test_images_that_arrive_after_the_job_make_the_series_changed(tmp_path: Path) -> None:
    volume = make_volume(5)
    write_series(tmp_path / "first", volume[:3], series_uid="1.2.3.9.1")
    write_series(tmp_path / "whole", volume[:3], series_uid="1.2.3.9.2")
    import_dicom(tmp_path / "first")
    import_dicom(tmp_path / "whole")
    for uid in ("1.2.3.9.1", "1.2.3.9.2"):
        _run(register(PLUGIN, [uid]))
    request = BatchRequest(name="changed", plugin_id=PLUGIN, selection=ChangedSelection())
    assert plan_batch(request).items == []  # nothing changed yet

    # the rest of the first series' upload arrives: images 4 and 5
    late = write_series(
        tmp_path / "late", volume, series_uid="1.2.3.9.1", instance_numbers=[1, 2, 3, 4, 5]
    )
    for path in late[:3]:
        path.unlink()
    import_dicom(tmp_path / "late")
    (item,) = plan_batch(request).items
    assert item.series == [{"series_uid": "1.2.3.9.1", "range": "1:5:1"}]
    assert item.outcome == ItemOutcome.RUN and item.supersedes_job_id is not None


def test_plugins_warns_when_files_change_under_the_same_version(tmp_path: Path) -> None:
    folder = get_plugin(PLUGIN).path
    copy = tmp_path / "record-copy"
    shutil.copytree(folder, copy)
    try:
        (tmp_path / "s").mkdir()
        write_series(tmp_path / "s", make_volume(2))
        (uid,) = import_dicom(tmp_path / "s").series_uids
        _run(register(PLUGIN, [uid]))
        runner = CliRunner()
        assert "warning" not in runner.invoke(app, ["plugins"]).output
        (folder / "record.py").write_text((folder / "record.py").read_text() + "\n# changed\n")
        listing = runner.invoke(app, ["plugins"]).output
        assert f"warning {PLUGIN}: its files changed since job" in " ".join(listing.split())
    finally:
        shutil.rmtree(folder)
        shutil.copytree(copy, folder)


def test_replaced_images_make_the_series_changed_and_run_again(tmp_path: Path) -> None:
    write_series(tmp_path / "old", make_volume(3), series_uid="1.2.3.9.3")
    import_dicom(tmp_path / "old")
    old = register(PLUGIN, ["1.2.3.9.3"])
    _run(old)
    # the same image numbers again, as new instances (say, a reconstruction redone)
    write_series(tmp_path / "new", make_volume(3), series_uid="1.2.3.9.3")
    import_dicom(tmp_path / "new")
    request = BatchRequest(name="redone", plugin_id=PLUGIN, selection=ChangedSelection())
    (item,) = plan_batch(request).items
    assert item.outcome == ItemOutcome.RUN and item.supersedes_job_id == old
