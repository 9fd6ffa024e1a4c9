"""Tests for circus_tasks/cli/launcher.py: the ``circus`` console script's routing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from circus_tasks.cli import launcher
from circus_tasks.cli import volume as volume_command
from circus_tasks.cli.volume import VolumeArguments

SeriesFactory = Callable[..., str]
CIRCUS = Path(sys.executable).parent / "circus"


def test_well_formed_volume_calls_take_the_lean_path(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[VolumeArguments] = []
    monkeypatch.setattr(volume_command, "main", lambda args: taken.append(args) or 7)

    assert launcher.main(["volume", "U:1:2", "out", "--include-private"]) == 7
    assert taken == [VolumeArguments("U:1:2", Path("out"), True)]


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["volume", "--help"], 0, "Write one series range as a plug-in input volume"),
        (["--help"], 0, "volume"),
        (["volume", "only-a-uid"], 2, "Missing argument"),
        (["volume", "U", "out", "--bogus"], 2, "No such option: --bogus"),
    ],
)
def test_everything_else_goes_to_the_typer_app(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    text: str,
) -> None:
    monkeypatch.setattr(volume_command, "main", lambda args: pytest.fail("lean path taken"))
    monkeypatch.setenv("COLUMNS", "200")

    with pytest.raises(SystemExit) as exited:
        launcher.main(argv)

    assert exited.value.code == code
    captured = capsys.readouterr()
    assert text in " ".join((captured.out + captured.err).split())


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CIRCUS), *args], capture_output=True, text=True, env=dict(os.environ), check=False
    )


def test_the_installed_script_is_the_launcher() -> None:
    assert "circus_tasks.cli.launcher" in CIRCUS.read_text()


def test_the_console_script_writes_the_volume_without_the_heavy_imports(
    series_factory: SeriesFactory, tmp_path: Path
) -> None:
    uid = series_factory(slices=3)
    probe = (
        "import sys; from circus_tasks.cli.launcher import main; code = main(sys.argv[1:]);"
        "heavy = ('typer', 'rich', 'sqlalchemy', 'sqlmodel', 'pydantic_settings', 'alembic');"
        "print(sorted(m for m in heavy if m in sys.modules)); sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "volume", f"{uid}:1:3", str(tmp_path / "probe")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"

    script = _run("volume", f"{uid}:1:3", str(tmp_path / "script"))
    assert script.returncode == 0, script.stderr
    assert script.stdout == f"{tmp_path / 'script' / '0.mhd'}: 8 x 8 x 3 MET_SHORT\n"
    for name in ("0.raw", "0.mhd", "0.json"):
        assert (tmp_path / "script" / name).read_bytes() == (tmp_path / "probe" / name).read_bytes()
    assert len(json.loads((tmp_path / "script" / "0.json").read_text())["unique"]) == 3


def test_the_console_script_reports_errors_like_the_typer_command(
    series_factory: SeriesFactory, tmp_path: Path
) -> None:
    uid = series_factory(slices=3)

    lean = _run("volume", f"{uid}:1:4:2", str(tmp_path / "out"))
    typer = subprocess.run(
        [sys.executable, "-m", "circus_tasks.cli.app", "volume", f"{uid}:1:4:2", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert lean.returncode == typer.returncode == 1
    assert lean.stdout == typer.stdout
    assert "delta 2 does not divide end - start (3)" in lean.stdout
    assert not (tmp_path / "out").exists()
