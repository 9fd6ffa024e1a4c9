"""The ``circus`` command line on a fresh home (no Prefect needed for these commands)."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from circus_tasks.cli.app import app
from tests.running import claim, finish, register, run_steps

runner = CliRunner()


def test_import_series_and_plugins(home: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.txt").write_text("not DICOM")
    result = runner.invoke(app, ["import", get_testdata_file("CT_small.dcm"), str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 image(s) imported" in result.output and "junk.txt: not a DICOM file" in result.output
    assert "CT" in runner.invoke(app, ["series"]).output
    listing = runner.invoke(app, ["plugins"]).output
    assert "lesion-candidates@1.0.0" in listing and "Isolation" in listing


def test_show_jobs_results_log_cancel(home: Path) -> None:
    runner.invoke(app, ["import", get_testdata_file("CT_small.dcm")])
    uid = runner.invoke(app, ["series"]).output.split("│")[1].strip()
    queued = register("hu-histogram@1.0.0", [uid])
    done = register("lesion-candidates@1.0.0", [uid])
    context = claim(done, machine="cli")
    assert context is not None
    assert finish(done, run_steps(context))

    assert queued in runner.invoke(app, ["jobs", "--status", "in_queue"]).output
    assert done in runner.invoke(app, ["jobs", "--patient", "1CT1"]).output
    assert done not in runner.invoke(app, ["jobs", "--patient", "nobody"]).output
    assert "in_queue" in runner.invoke(app, ["show", queued]).output
    results = runner.invoke(app, ["results", done])
    assert results.exit_code == 0 and "lesionCandidates" in results.output
    assert "results.json" in results.output
    assert "exit code 0" in runner.invoke(app, ["log", done]).output
    refused = runner.invoke(app, ["cancel", done])
    assert refused.exit_code == 1 and "You cannot cancel this job" in refused.output
    assert "cancelled" in runner.invoke(app, ["cancel", queued]).output
    assert runner.invoke(app, ["show", "nope"]).exit_code == 1


def test_brackets_in_stored_values_are_printed_never_read_as_markup(
    series_factory, home: Path
) -> None:  # type: ignore[no-untyped-def]
    """A series description, a job's error or a batch name holding "[/]" is someone's text:
    read as rich markup it would stop `circus series`, `circus jobs` or `circus show` for
    everyone with a MarkupError."""
    from circus_tasks.db.engine import session_scope
    from circus_tasks.jobs import transitions

    uid = series_factory(series_description="[/] CT [bold]chest")
    listed = runner.invoke(app, ["series"])
    assert listed.exit_code == 0, listed.output
    assert "[/] CT [bold]chest" in listed.output
    job_id = register("hu-histogram@1.0.0", [uid])
    with session_scope() as session:
        transitions.cancel(job_id, user="[/]dr", session=session)
    for command in (["jobs"], ["show", job_id]):
        shown = runner.invoke(app, command)
        assert shown.exit_code == 0, shown.output
    assert "[/]dr" in runner.invoke(app, ["show", job_id]).output
