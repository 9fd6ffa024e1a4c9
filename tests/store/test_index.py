"""The two ways import writes its rows (sqlite3 for the default database, SQLAlchemy for any
other) leave the same rows, stored the same way."""

from __future__ import annotations

import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from circus_tasks.db.engine import reset_caches
from circus_tasks.db.revision import SCHEMA_REVISION
from circus_tasks.store import importer
from circus_tasks.store.importer import import_dicom, open_index
from circus_tasks.store.index import SqliteIndex
from circus_tasks.store.orm_index import SqlAlchemyIndex
from circus_tasks.store.places import import_places
from circus_tasks.testing.synthetic import write_series
from tests.conftest import make_volume


def _varied(folder: Path) -> Path:
    """Two plain series, a compressed one, one that pre-processing must parse (unused high
    bits), pydicom's own files, junk and a duplicate."""
    write_series(folder / "a", make_volume(5), patient_id="A")
    write_series(folder / "b", make_volume(3, dtype="uint8"), modality="MR")
    write_series(folder / "rle", make_volume(2), transfer_syntax=RLELossless)
    write_series(folder / "bits", make_volume(2), extra={"BitsStored": 12, "HighBit": 11})
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm"):
        shutil.copy(str(get_testdata_file(name)), folder / name)
    (folder / "junk.txt").write_text("not DICOM")
    shutil.copy(next((folder / "a").iterdir()), folder / "again.dcm")
    return folder


def _rows(home: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the two tables, as SQLite stores it (each value with its storage class),
    the home's path made neutral and the series' creation times reduced to their form."""
    tables = {}
    with closing(sqlite3.connect(home / "circus.db")) as connection:
        for table, order in (("image", "id"), ("series", "series_uid")):
            names = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            selected = ", ".join(
                f"{'file_mtime_ns IS NOT NULL' if n == 'file_mtime_ns' else n}, typeof({n})"
                for n in names
            )  # each copy has its own time
            rows = connection.execute(f"SELECT {selected} FROM {table} ORDER BY {order}")
            tables[table] = [_neutral(row, home) for row in rows]
    return tables


def _neutral(row: tuple[object, ...], home: Path) -> tuple[object, ...]:
    values = []
    for value in row:
        if isinstance(value, str):
            value = value.replace(str(home), "HOME")
            value = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$", "TIME", value)
        values.append(value)
    return tuple(values)


def test_sqlite3_and_sqlalchemy_leave_the_same_rows(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _varied(tmp_path / "source")
    import_dicom(source / "a")  # the database exists, at the current schema: sqlite3 from here
    assert isinstance(open_index(import_places().database_url, SCHEMA_REVISION), SqliteIndex)
    lean = import_dicom(source)

    other = tmp_path / "other-home"
    monkeypatch.setenv("CIRCUS_HOME", str(other))
    reset_caches()
    monkeypatch.setattr(importer, "FORCE_SQLALCHEMY", True)
    import_dicom(source / "a")
    assert isinstance(open_index(import_places().database_url, SCHEMA_REVISION), SqlAlchemyIndex)
    through_orm = import_dicom(source)

    assert (lean.imported, lean.already_present, lean.problems) == (
        through_orm.imported,
        through_orm.already_present,
        [(p, r) for p, r in through_orm.problems],
    )
    assert (lean.imported, lean.already_present) == (3 + 2 + 2 + 2, 5 + 1)  # b rle bits CT MR
    assert sorted(path.name for path, _ in lean.problems) == [
        "MR_small_implicit.dcm",  # MR_small's UID, other bytes
        "junk.txt",
        "rtplan.dcm",
    ]
    lean_rows, orm_rows = _rows(home), _rows(other)
    assert lean_rows == orm_rows
    without_facts = [row for row in lean_rows["image"] if row[12] == "null"]  # header
    assert len(without_facts) == 2 and {row[13] for row in without_facts} == {"text"}
    assert all(row[row.index("TIME") + 1] == "text" for row in lean_rows["series"])


def test_a_database_to_create_goes_through_sqlalchemy(home: Path) -> None:
    url = import_places().database_url
    assert not (home / "circus.db").exists()
    assert isinstance(open_index(url, SCHEMA_REVISION), SqlAlchemyIndex)  # which creates it
    assert isinstance(open_index(url, SCHEMA_REVISION), SqliteIndex)
    assert isinstance(open_index(url, "an older revision"), SqlAlchemyIndex)  # migrates it
