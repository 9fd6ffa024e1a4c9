"""The rows import reads and writes: which instances are stored already, and the new series
and images, written a batch at a time.

Two ways to the same rows. With the default SQLite database at the schema this code expects,
:class:`SqliteIndex` uses the standard library's :mod:`sqlite3` with the statements below, so
that ``circus import`` does not import SQLAlchemy, SQLModel and the table models; it stores
every value as SQLAlchemy would (JSON as ``json.dumps`` writes it, times as SQLAlchemy's SQLite
dialect writes them). Any other database, or a schema to create or migrate, goes through
:class:`~circus_tasks.store.orm_index.SqlAlchemyIndex`
(:func:`~circus_tasks.store.importer.open_index` picks). ``tests/store/test_index.py`` checks
that both leave the same rows.

Each batch is one short transaction: the series it starts, its images, and the image counts
of its series (so that an import stopped half-way leaves rows that match the files stored).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from circus_tasks.volume.stored import STORED_COLUMNS

__all__ = [
    "IMAGE_COLUMNS",
    "Batch",
    "Buffered",
    "Index",
    "SqliteIndex",
    "Stored",
]

Stored = tuple[Any, ...]
"""An instance stored already: (image id, file size, series UID, path)."""

IMAGE_COLUMNS: tuple[str, ...] = (
    "series_uid",
    "sop_instance_uid",
    "instance_number",
    "z",
    "path",
    *STORED_COLUMNS,
)
"""The columns of a new ``image`` row, in the order of the rows :meth:`Index.add_image` takes
(``header`` as JSON text or ``None``)."""

SERIES_COLUMNS: tuple[str, ...] = (
    "series_uid",
    "study_uid",
    "patient_id",
    "modality",
    "description",
    "series_date",
    "image_count",
    "rows",
    "columns",
    "pixel_spacing_row",
    "pixel_spacing_col",
    "orientation",
    "attributes",
    "created_at",
)

_HEADER = IMAGE_COLUMNS.index("header")

LOOKUP_CHUNK = 500
"""SOP instance UIDs per "stored already?" query."""


class Index(Protocol):
    """What import asks of the database, and the rows it adds (kept until :meth:`flush`)."""

    def stored(self, sop_uids: Sequence[str]) -> dict[str, Stored]:
        """Of these SOP instances, those stored already."""

    def has_series(self, series_uid: str) -> bool:
        """Whether the series has a row (written before this import's last flush)."""

    def add_series(self, series_uid: str, fields: dict[str, Any]) -> None:
        """A new series row (no images counted yet)."""

    def add_image(self, row: tuple[Any, ...]) -> None:
        """A new image row: the values of :data:`IMAGE_COLUMNS`."""

    def set_facts(self, image_id: Any, columns: dict[str, Any]) -> None:
        """Pre-processing facts (the values of :data:`STORED_COLUMNS`, the header as JSON
        text) for an image stored already."""

    @property
    def pending(self) -> int:
        """Rows waiting for :meth:`flush`."""

    def flush(self, recount: Iterable[str] = ()) -> None:
        """Write the rows added since the last flush, and count the images of their series and
        of ``recount``, in one transaction."""

    def close(self) -> None:
        """Let go of the database (rows not flushed are dropped)."""


def sqlite_time(moment: datetime) -> str:
    """A time as SQLAlchemy's SQLite dialect stores a ``DATETIME`` (the zone left out)."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}"
    )


class Batch:
    """The rows of one flush."""

    def __init__(self) -> None:
        self.series: list[tuple[str, dict[str, Any]]] = []
        self.images: list[tuple[Any, ...]] = []
        self.facts: list[tuple[Any, dict[str, Any]]] = []
        self.series_uids: set[str] = set()

    def __len__(self) -> int:
        return len(self.series) + len(self.images) + len(self.facts)


class Buffered:
    """The rows an index keeps until its flush (both indexes' own part)."""

    def __init__(self) -> None:
        self._batch = Batch()
        self._new_series: set[str] = set()

    def add_series(self, series_uid: str, fields: dict[str, Any]) -> None:
        self._batch.series.append((series_uid, fields))
        self._new_series.add(series_uid)

    def add_image(self, row: tuple[Any, ...]) -> None:
        self._batch.images.append(row)
        self._batch.series_uids.add(row[0])

    def set_facts(self, image_id: Any, columns: dict[str, Any]) -> None:
        self._batch.facts.append((image_id, columns))

    @property
    def pending(self) -> int:
        return len(self._batch)

    def _taken(self, recount: Iterable[str]) -> tuple[Batch, list[str]] | None:
        """The rows to write now and the series to count, or ``None`` for nothing to do."""
        batch, self._batch = self._batch, Batch()
        counted = sorted(batch.series_uids.union(recount))
        return None if not batch and not counted else (batch, counted)


class SqliteIndex(Buffered):
    """:class:`Index` over a SQLite file, with :mod:`sqlite3`."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__()
        self._connection = connection
        columns = ", ".join(IMAGE_COLUMNS)
        self._insert_image = (
            f"INSERT INTO image ({columns}) VALUES ({', '.join('?' * len(IMAGE_COLUMNS))})"
        )
        self._insert_series = (
            f"INSERT INTO series ({', '.join(SERIES_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(SERIES_COLUMNS))})"
        )
        self._set_facts = (
            f"UPDATE image SET {', '.join(f'{c} = ?' for c in STORED_COLUMNS)} WHERE id = ?"
        )

    @classmethod
    def open(cls, path: Path, revision: str) -> SqliteIndex | None:
        """The index in the SQLite file at ``path``, or ``None`` when it is not there or its
        schema is not ``revision`` (SQLAlchemy then creates or migrates it)."""
        if not path.is_file():
            return None
        try:
            connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            found = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            if found is None or found[0] != revision:
                connection.close()
                return None
            # as the SQLAlchemy engine sets up each connection (circus_tasks.db.engine)
            for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON"):
                connection.execute(f"PRAGMA {pragma}")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            connection.close()
            return None
        return cls(connection)

    def stored(self, sop_uids: Sequence[str]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        for start in range(0, len(sop_uids), LOOKUP_CHUNK):
            chunk = list(sop_uids[start : start + LOOKUP_CHUNK])
            query = (
                "SELECT sop_instance_uid, id, file_size, series_uid, path FROM image "
                f"WHERE sop_instance_uid IN ({', '.join('?' * len(chunk))})"
            )
            for uid, *rest in self._connection.execute(query, chunk):
                found[uid] = (rest[0], rest[1], rest[2], rest[3])
        return found

    def has_series(self, series_uid: str) -> bool:
        if series_uid in self._new_series:
            return True
        query = "SELECT 1 FROM series WHERE series_uid = ?"
        return self._connection.execute(query, (series_uid,)).fetchone() is not None

    def add_image(self, row: tuple[Any, ...]) -> None:
        if row[_HEADER] is None:  # as the JSON column stores None: JSON null
            row = (*row[:_HEADER], "null", *row[_HEADER + 1 :])
        super().add_image(row)

    def set_facts(self, image_id: Any, columns: dict[str, Any]) -> None:
        if columns["header"] is None:
            columns = {**columns, "header": "null"}
        super().set_facts(image_id, columns)

    def flush(self, recount: Iterable[str] = ()) -> None:
        taken = self._taken(recount)
        if taken is None:
            return
        batch, counted = taken
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            now = sqlite_time(datetime.now(UTC))
            connection.executemany(
                self._insert_series,
                [
                    tuple(_series_values(uid, fields, now)[c] for c in SERIES_COLUMNS)
                    for uid, fields in batch.series
                ],
            )
            connection.executemany(self._insert_image, batch.images)
            connection.executemany(
                self._set_facts,
                [
                    (*(columns[c] for c in STORED_COLUMNS), image_id)
                    for image_id, columns in batch.facts
                ],
            )
            connection.executemany(
                "UPDATE series SET image_count = "
                "(SELECT count(*) FROM image WHERE series_uid = ?) WHERE series_uid = ?",
                [(uid, uid) for uid in counted],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._connection.close()


def _series_values(series_uid: str, fields: dict[str, Any], now: Any) -> dict[str, Any]:
    values = {
        "series_uid": series_uid,
        "study_uid": "",
        "patient_id": "",
        "modality": "",
        "description": "",
        "series_date": "",
        "rows": None,
        "columns": None,
        "pixel_spacing_row": None,
        "pixel_spacing_col": None,
        "orientation": "",
        **fields,
        "image_count": 0,
        "created_at": now,
    }
    values["attributes"] = json.dumps(fields.get("attributes", []))
    return values
