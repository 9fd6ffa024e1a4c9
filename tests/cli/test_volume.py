"""Tests for circus_tasks/cli/volume.py: the lean ``circus volume`` path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circus_tasks.cli import volume as volume_command
from circus_tasks.cli.app import app
from circus_tasks.cli.volume import VolumeArguments, parse_arguments, series_slices
from circus_tasks.db.engine import session_scope
from circus_tasks.errors import CircusError, InvalidRangeError, SeriesNotFoundError
from circus_tasks.jobs.registration import SeriesInput, resolve_series
from circus_tasks.store import slices as store_slices
from circus_tasks.store.series import series_images
from circus_tasks.volume.writer import write_volume

SeriesFactory = Callable[..., str]
runner = CliRunner()


def _registration_files(uid: str, range_text: str) -> list[Path]:
    """The files job registration would give the pre-processing task for this range."""
    with session_scope() as session:
        ((_, image_range),) = resolve_series([SeriesInput(uid, range_text)], session=session)
        by_number = {i.instance_number: Path(i.path) for i in series_images(uid, session=session)}
    return [by_number[number] for number in image_range.numbers()]


@pytest.fixture
def sqlite_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the SQLModel fallback is used."""

    def refuse(uid: str) -> list[tuple[int, float | None, str]]:
        raise AssertionError("the SQLModel path was used")

    monkeypatch.setattr(volume_command, "_images_from_database", refuse)


@pytest.mark.parametrize(
    ("numbers", "z", "range_text"),
    [
        ([1, 2, 3, 4], [0.0, 2.0, 4.0, 6.0], "auto"),  # Z rises: auto runs backwards
        ([1, 2, 3, 4], [6.0, 4.0, 2.0, 0.0], "auto"),
        ([3, 4, 5, 7, 8], None, "auto"),  # first run of consecutive numbers only
        ([1, 2, 3, 4, 5], None, "2:4"),
        ([1, 2, 3, 4, 5], None, "5:1:-2"),
        ([1, 2, 3, 4, 5, 6, 7], None, "1:7:3"),
        ([1, 2, 3], None, "2:2:1"),
    ],
)
def test_files_match_job_registration(
    series_factory: SeriesFactory,
    sqlite_only: None,
    numbers: list[int],
    z: list[float] | None,
    range_text: str,
) -> None:
    uid = series_factory(numbers=numbers, z=z)
    spec = uid if range_text == "auto" else f"{uid}:{range_text}"

    assert series_slices(spec).files == _registration_files(uid, range_text)


def test_the_sqlmodel_fallback_gives_the_same_files(
    series_factory: SeriesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = series_factory(slices=5)
    lean = series_slices(f"{uid}:5:1:-2").files
    monkeypatch.setattr(store_slices, "database_url_from_environment", lambda: None)
    calls: list[str] = []
    fallback = volume_command._images_from_database
    monkeypatch.setattr(
        volume_command, "_images_from_database", lambda u: calls.append(u) or fallback(u)
    )

    assert series_slices(f"{uid}:5:1:-2").files == lean
    assert calls == [uid]


def _error(call: Callable[[], object]) -> CircusError:
    with pytest.raises(CircusError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    "range_text", ["1:9", "0:3", "1:x", "1:4:2", "3:1", "1", "1:2:3:4", "2:2:2", "auto"]
)
def test_range_errors_match_job_registration(
    series_factory: SeriesFactory, sqlite_only: None, range_text: str
) -> None:
    # image 3 has no position, so "auto" cannot tell the orientation
    uid = series_factory(numbers=[1, 2, 3], extra={"ImagePositionPatient": _no_position_for(2)})

    lean = _error(lambda: series_slices(f"{uid}:{range_text}").files)
    registered = _error(lambda: _registration_files(uid, range_text))

    assert isinstance(lean, InvalidRangeError)
    assert (type(lean), str(lean)) == (type(registered), str(registered))


def _no_position_for(index: int) -> Callable[[int], object]:
    return lambda i: None if i == index else [0.0, 0.0, float(-i)]


def test_unknown_series_matches_job_registration(
    series_factory: SeriesFactory, sqlite_only: None
) -> None:
    series_factory(slices=2)  # the database exists

    lean = _error(lambda: series_slices("1.2.3.4:1:2").files)
    registered = _error(lambda: _registration_files("1.2.3.4", "1:2"))

    assert isinstance(lean, SeriesNotFoundError)
    assert str(lean) == str(registered)


def test_unknown_series_without_a_database(home: Path, sqlite_only: None) -> None:
    with pytest.raises(SeriesNotFoundError, match="Series 1.2.3 is not imported"):
        series_slices("1.2.3")
    assert not (home / "circus.db").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["U", "out"], VolumeArguments("U", Path("out"))),
        (["U:1:3", "out", "--include-private"], VolumeArguments("U:1:3", Path("out"), True)),
        (["--include-private", "U", "out"], VolumeArguments("U", Path("out"), True)),
        (["--include-private", "--no-include-private", "U", "o"], VolumeArguments("U", Path("o"))),
        # everything else is the typer command's to handle and report
        (["U"], None),
        (["U", "out", "extra"], None),
        (["--help"], None),
        (["U", "out", "--help"], None),
        (["U", "out", "--bogus"], None),
        (["--", "U", "out"], None),
        (["-h", "U", "out"], None),
        ([], None),
    ],
)
def test_parse_arguments(args: list[str], expected: VolumeArguments | None) -> None:
    assert parse_arguments(args) == expected


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("include_private", [False, True])
def test_main_writes_what_the_typer_command_and_pre_processing_write(
    series_factory: SeriesFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    include_private: bool,
) -> None:
    uid = series_factory(numbers=[1, 2, 3, 4, 5], z=[0.0, 1.0, 2.0, 3.0, 4.0])

    code = volume_command.main(VolumeArguments(uid, tmp_path / "lean", include_private))
    flag = ["--include-private"] if include_private else []
    typer_run = runner.invoke(app, ["volume", uid, str(tmp_path / "typer"), *flag])
    write_volume(
        _registration_files(uid, "auto"), tmp_path / "pre", 0, include_private=include_private
    )

    assert code == 0 and typer_run.exit_code == 0, typer_run.output
    assert _outputs(tmp_path / "lean") == _outputs(tmp_path / "pre")
    assert _outputs(tmp_path / "typer") == _outputs(tmp_path / "pre")
    printed = capsys.readouterr().out
    assert printed == f"{tmp_path / 'lean' / '0.mhd'}: 8 x 8 x 5 MET_SHORT\n"
    assert typer_run.output == f"{tmp_path / 'typer' / '0.mhd'}: 8 x 8 x 5 MET_SHORT\n"


@pytest.mark.parametrize(
    ("spec", "out", "message"),
    [
        ("1.2.3.4", "out", "Series 1.2.3.4 is not imported"),
        ("{uid}:1:9", "out", "names images that do not exist"),
        ("{uid}:0:3", "out", "start and end must be greater than 0"),
        ("{uid}:1:x", "out", "must be integers"),
        ("{uid}:1:4:2", "out", "does not divide"),
        ("{uid}", "a-file/out", "Cannot write the volume to"),
        ("{uid}", "a-file", "Cannot write the volume to"),
    ],
)
def test_errors_are_the_typer_commands(
    series_factory: SeriesFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    out: str,
    message: str,
) -> None:
    uid = series_factory(slices=5)
    (tmp_path / "a-file").write_text("in the way")
    arguments = VolumeArguments(spec.format(uid=uid), tmp_path / out)

    code = volume_command.main(arguments)
    lean_output = capsys.readouterr().out
    typer_run = runner.invoke(app, ["volume", arguments.series_spec, str(arguments.out_dir)])

    assert code == typer_run.exit_code == 1
    assert lean_output == typer_run.output
    assert lean_output.startswith("error: ")
    assert message in " ".join(lean_output.split())
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "a-file").read_text() == "in the way"
