"""Tests for the ``circus volume`` command in circus_tasks/cli/app.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from circus_tasks.cli.app import app
from circus_tasks.db.engine import session_scope
from circus_tasks.store.series import series_images
from circus_tasks.volume.writer import write_volume
from tests.conftest import make_volume

runner = CliRunner()
SeriesFactory = Callable[..., str]


def _raw_slices(out_dir: Path) -> np.ndarray:
    return np.fromfile(out_dir / "0.raw", dtype="<i2").reshape(-1, 8, 8)


def _files(uid: str, numbers: list[int]) -> list[Path]:
    with session_scope() as session:
        by_number = {i.instance_number: Path(i.path) for i in series_images(uid, session=session)}
    return [by_number[n] for n in numbers]


def test_auto_range_follows_job_registration(series_factory: SeriesFactory, tmp_path: Path) -> None:
    # Z rises with the image number, so "auto" runs from the last image back to the first.
    uid = series_factory(numbers=[1, 2, 3, 4], z=[0.0, 2.0, 4.0, 6.0])

    result = runner.invoke(app, ["volume", uid, str(tmp_path / "out")])

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.json", "0.mhd", "0.raw"]
    np.testing.assert_array_equal(_raw_slices(tmp_path / "out"), make_volume(4)[::-1])
    unique = json.loads((tmp_path / "out" / "0.json").read_text(encoding="utf-8"))["unique"]
    assert [item["0020,0013"] for item in unique] == [4, 3, 2, 1]


@pytest.mark.parametrize(
    ("range_text", "numbers"),
    [("2:4", [2, 3, 4]), ("5:1:-2", [5, 3, 1]), ("3:3:1", [3])],
)
def test_explicit_range_writes_what_pre_processing_writes(
    series_factory: SeriesFactory, tmp_path: Path, range_text: str, numbers: list[int]
) -> None:
    uid = series_factory(slices=5)

    result = runner.invoke(app, ["volume", f"{uid}:{range_text}", str(tmp_path / "cli")])

    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(
        _raw_slices(tmp_path / "cli"), make_volume(5)[[n - 1 for n in numbers]]
    )
    # byte for byte what the pre-processing function writes for the same files
    write_volume(_files(uid, numbers), tmp_path / "pre", 0)
    for name in ("0.mhd", "0.raw", "0.json"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "pre" / name).read_bytes()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1.2.3.4", "Series 1.2.3.4 is not imported"),
        ("{uid}:1:9", "names images that do not exist"),
        ("{uid}:0:3", "start and end must be greater than 0"),
        ("{uid}:1:x", "must be integers"),
        ("{uid}:1:4:2", "does not divide"),
    ],
)
def test_errors_are_reported_and_write_nothing(
    series_factory: SeriesFactory, tmp_path: Path, spec: str, message: str
) -> None:
    uid = series_factory(slices=5)

    result = runner.invoke(app, ["volume", spec.format(uid=uid), str(tmp_path / "out")])

    assert result.exit_code == 1
    assert "error:" in result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()
