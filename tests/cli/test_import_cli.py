"""``circus import``: the console script's lean path and the typer command print the same
import, and the lean path loads neither typer, pydantic nor SQLAlchemy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from circus_tasks.cli import importing, launcher
from circus_tasks.cli.app import app
from circus_tasks.testing.synthetic import write_series
from tests.conftest import make_volume

PROBE = (
    "import sys; from circus_tasks.cli.launcher import main; code = main(sys.argv[1:]);"
    "heavy = ('typer', 'pydantic', 'sqlalchemy', 'sqlmodel', 'prefect');"
    "print(sorted(m for m in heavy if m in sys.modules)); sys.exit(code)"
)


def _lean(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, "import", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )


def test_the_lean_path_imports_what_the_typer_command_imports(home: Path, tmp_path: Path) -> None:
    write_series(tmp_path / "s", make_volume(3))
    (tmp_path / "s" / "junk.txt").write_text("not DICOM")
    CliRunner().invoke(app, ["series"])  # the database made (as by circus up)

    lean = _lean(str(tmp_path / "s"))
    typer = CliRunner().invoke(app, ["import", str(tmp_path / "s")])

    assert lean.returncode == 0, lean.stderr
    assert lean.stdout.splitlines()[-1] == "[]"  # none of the heavy modules
    assert "3 image(s) imported, 0 already present, 1 series, 1 file(s) refused" in lean.stdout
    assert "files/s" in lean.stdout and "junk.txt: not a DICOM file" in lean.stdout
    assert typer.exit_code == 0
    assert "0 image(s) imported, 3 already present, 1 series, 1 file(s) refused" in typer.output


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["missing.dcm"], "No such file or folder: missing.dcm; nothing was imported."),
        ([str(get_testdata_file("rtplan.dcm"))], "missing required attribute(s): InstanceNumber"),
    ],
)
def test_nothing_imported_is_an_error_either_way(home: Path, args: list[str], text: str) -> None:
    lean = _lean(*args)
    typer = CliRunner().invoke(app, ["import", *args])

    assert (lean.returncode, typer.exit_code) == (1, 1)
    assert text in " ".join(lean.stdout.split()) and text in " ".join(typer.output.split())


def test_a_refused_setting_is_an_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIRCUS_IMPORT_COPY", "hardlink")
    lean = _lean(str(get_testdata_file("CT_small.dcm")))
    assert lean.returncode == 1
    assert "error: CIRCUS_IMPORT_COPY='hardlink' is not a way to store files" in lean.stdout


def test_options_and_help_go_to_the_typer_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "main", lambda paths: pytest.fail("lean path taken"))
    for argv in (["import"], ["import", "--help"], ["import", "a", "--bogus"]):
        assert importing.parse_arguments(argv[1:]) is None
        with pytest.raises(SystemExit):
            launcher.main(argv)
    assert importing.parse_arguments(["a", "b"]) == [Path("a"), Path("b")]
