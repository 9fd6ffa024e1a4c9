"""How import stores a file: its own copy, whatever the setting, and never a hard link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from circus_tasks.errors import InvalidValueError
from circus_tasks.settings import Settings
from circus_tasks.store import files
from circus_tasks.store.copying import write_copy
from circus_tasks.store.importer import import_dicom
from circus_tasks.testing.synthetic import write_series
from tests.conftest import make_volume


def _stored(home: Path) -> list[Path]:
    return sorted((home / "dicom").glob("*/*.dcm"))


@pytest.mark.parametrize(
    "whole_below", [files.READ_WHOLE_BELOW, 0], ids=["from memory", "in kernel"]
)
@pytest.mark.parametrize("mode", ["copy", "reflink"])
def test_the_stored_file_stays_as_imported_when_its_source_is_rewritten_in_place(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, whole_below: int
) -> None:
    monkeypatch.setenv("CIRCUS_IMPORT_COPY", mode)
    monkeypatch.setattr(files, "READ_WHOLE_BELOW", whole_below)  # 0: copied file to file
    (source,) = write_series(tmp_path / "s", make_volume(1))
    imported = source.read_bytes()

    assert import_dicom(source).imported == 1

    (stored,) = _stored(home)
    assert stored.read_bytes() == imported
    assert stored.stat().st_ino != source.stat().st_ino and stored.stat().st_nlink == 1
    with source.open("r+b") as rewritten:  # in place: the same file, other pixels
        rewritten.seek(-16, os.SEEK_END)
        rewritten.write(b"\xff" * 16)
    assert source.read_bytes() != imported
    assert stored.read_bytes() == imported


def test_a_clone_where_the_file_system_cannot_make_one_is_a_copy(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(100_000))
    for name in ("first", "second"):  # the second: known to fail here, not tried again
        target = tmp_path / name
        write_copy(source, None, target, "reflink")
        assert target.read_bytes() == source.read_bytes()
    with pytest.raises(FileExistsError):
        write_copy(source, b"other", tmp_path / "first", "copy")  # never over a file


def test_hard_links_are_refused_with_why(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_series(tmp_path / "s", make_volume(1))
    monkeypatch.setenv("CIRCUS_IMPORT_COPY", "hardlink")

    with pytest.raises(InvalidValueError, match="copy or reflink.*hard link"):
        import_dicom(tmp_path / "s")
    with pytest.raises(ValidationError, match="import_copy"):
        Settings()
    assert _stored(home) == []
