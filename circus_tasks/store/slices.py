"""The one question pre-processing and ``circus volume`` both ask of the store: the files of a
series range, in range order, with the facts import stored for each.

Standard library only at import, so that the lean ``circus volume`` path can use it: with the
default SQLite database the rows are read with :mod:`sqlite3`, read-only; anything else goes
through SQLModel (:func:`circus_tasks.store.series.image_rows`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

from circus_tasks.errors import SeriesNotFoundError
from circus_tasks.home import database_url_from_environment, sqlite_file
from circus_tasks.store.ranges import ImageRange
from circus_tasks.volume.stored import STORED_COLUMNS, StoredSlice

ImageRow = tuple[int, float | None, str, StoredSlice | None, str]
"""An image of a series: (image number, Z of ImagePositionPatient or None, file path, the
facts import stored or None, SOP instance UID), in image number then import order."""

_IMAGES_QUERY = (
    f"SELECT instance_number, z, path, sop_instance_uid, {', '.join(STORED_COLUMNS)} FROM image "
    "WHERE series_uid = ? ORDER BY instance_number, id"
)
_SERIES_QUERY = "SELECT 1 FROM series WHERE series_uid = ?"


class SeriesSlices(NamedTuple):
    """The files of a series range in range order, the stored facts of each (or None) and
    their SOP instance UIDs."""

    files: list[Path]
    stored: list[StoredSlice | None]
    sop_uids: list[str]


def pick_slices(rows: Sequence[ImageRow], image_range: ImageRange, series_uid: str) -> SeriesSlices:
    """The rows ``image_range`` names; of two images with one number, the one imported last.

    Raises:
        InvalidRangeError: the range names images the series lacks.
    """
    by_number = {row[0]: row for row in rows}
    image_range.check_exists(by_number, series_uid)
    chosen = [by_number[number] for number in image_range.numbers()]
    return SeriesSlices(
        [Path(row[2]) for row in chosen], [row[3] for row in chosen], [row[4] for row in chosen]
    )


def input_digest(series: Sequence[Sequence[str]]) -> str:
    """The digest of the images a job uses: the SOP instance UIDs of each series in order."""
    text = "\n\n".join("\n".join(uids) for uids in series)
    return hashlib.sha256(text.encode()).hexdigest()


def image_rows_from_sqlite(series_uid: str) -> list[ImageRow] | None:
    """The series' image rows read with :mod:`sqlite3`, read-only.

    Returns:
        ``None`` when the database is not a plain SQLite file or cannot be read this way
        (another database, a schema without the tables yet, ...): the caller then asks
        SQLModel, which also creates or migrates the schema.

    Raises:
        SeriesNotFoundError: no series has this UID (also when there is no database yet).
    """
    url = database_url_from_environment()
    path = sqlite_file(url) if url is not None else None
    if path is None:
        return None
    if not path.is_file():
        raise SeriesNotFoundError.for_uid(series_uid)
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        with closing(connection):
            if connection.execute(_SERIES_QUERY, (series_uid,)).fetchone() is None:
                raise SeriesNotFoundError.for_uid(series_uid)
            found = connection.execute(_IMAGES_QUERY, (series_uid,)).fetchall()
    except sqlite3.Error:
        return None
    return [
        (
            number,
            z,
            path,
            StoredSlice.from_columns(dict(zip(STORED_COLUMNS, facts, strict=True))),
            sop_uid,
        )
        for number, z, path, sop_uid, *facts in found
    ]
