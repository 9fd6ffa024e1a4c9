"""Import DICOM files into the store and index their series and images.

Each file is read once and parsed fully, there (:mod:`circus_tasks.store.parsing`, on every
core for many files), and its copy is written from what was read. For a slice that
pre-processing can copy as it is, the index also keeps what pre-processing would otherwise
parse again (its ``N.json`` object, format, position and pixel data offset, see
:mod:`circus_tasks.volume.stored`). The rows are written a batch at a time
(:mod:`circus_tasks.store.index`).

Only the standard library and pydicom are imported here: with the default SQLite database
``circus import`` loads neither pydantic settings nor SQLAlchemy
(:mod:`circus_tasks.store.places`, :mod:`circus_tasks.store.index`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circus_tasks.db.revision import SCHEMA_REVISION
from circus_tasks.home import sqlite_file
from circus_tasks.store.copying import write_copy
from circus_tasks.store.files import conflict_with_stored, read_header
from circus_tasks.store.index import Index, SqliteIndex, Stored
from circus_tasks.store.listing import iter_files
from circus_tasks.store.parsing import ParsedFile, Reader, ReadFiles, RefusedFile, series_fields
from circus_tasks.store.places import (
    ImportPlaces,
    import_places,
    one_import_at_a_time,
    working_files,
)
from circus_tasks.values import inside
from circus_tasks.volume.import_facts import slice_facts
from circus_tasks.volume.stored import STORED_COLUMNS


@dataclass
class ImportReport:
    """What an import did: counts, the series touched, and every file it refused, with why."""

    imported: int = 0
    already_present: int = 0
    facts_added: int = 0
    """Images already present that got their pre-processing facts now (imported by a version
    that did not store them)."""
    series_uids: set[str] = field(default_factory=set)
    problems: list[tuple[Path, str]] = field(default_factory=list)

    def __str__(self) -> str:
        added = f" ({self.facts_added} given pre-processing facts)" if self.facts_added else ""
        return (
            f"{self.imported} image(s) imported, {self.already_present} already present"
            f"{added}, {len(self.series_uids)} series, {len(self.problems)} file(s) refused"
        )


_SIZE, _TIME = STORED_COLUMNS.index("file_size"), STORED_COLUMNS.index("file_mtime_ns")


def _fact_values(facts: tuple[Any, ...] | None, stamp: tuple[int, int]) -> tuple[Any, ...]:
    """The values of :data:`STORED_COLUMNS` for a stored copy with ``stamp`` (size, time): the
    facts (:meth:`~circus_tasks.volume.import_facts.SliceFacts.values`), or, for a slice that
    pre-processing must parse, all NULL but the file's size and time, which say that import
    looked (so importing again does not look again)."""
    values = list(facts) if facts is not None else [None] * len(STORED_COLUMNS)
    values[_SIZE], values[_TIME] = stamp
    return tuple(values)


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def _missing_facts(stored: Path) -> tuple[dict[str, Any], bool] | None:
    """The fact columns of a stored copy imported without them (by a version before they
    existed), if the copy is readable, and whether it can be copied as it is."""
    from circus_tasks.errors import DicomImportError

    try:
        ds = read_header(stored)
    except DicomImportError:
        return None  # pre-processing reports the problem when the file is used
    try:
        facts = slice_facts(ds, stored)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        facts = None
    values = _fact_values(None if facts is None else facts.values(), _stamp(stored))
    return dict(zip(STORED_COLUMNS, values, strict=True)), facts is not None


FORCE_SQLALCHEMY = False
"""Tests set this to write through SQLAlchemy where :mod:`sqlite3` would be used."""


def open_index(database_url: str, revision: str | None) -> Index:
    """The index of ``database_url``: :class:`~circus_tasks.store.index.SqliteIndex` for a
    plain SQLite file at schema ``revision`` (``None``: not known without SQLAlchemy), else
    :class:`~circus_tasks.store.orm_index.SqlAlchemyIndex` (which creates or migrates it)."""
    path = sqlite_file(database_url)
    if path is not None and revision is not None and not FORCE_SQLALCHEMY:
        index = SqliteIndex.open(path, revision)
        if index is not None:
            return index
    from circus_tasks.store.orm_index import SqlAlchemyIndex

    return SqlAlchemyIndex()


LOOKUP_BATCH = 256
"""Files whose "already stored?" question goes to the database in one query."""

WRITE_BATCH = 2_000
"""Rows written in one transaction."""


def import_dicom(
    *paths: str | os.PathLike[str],
    progress: Callable[[Path], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import DICOM files and folders into the store and index them.

    Non-DICOM and broken files are listed in the report with the reason; they never stop the
    import. Importing the same files twice changes nothing, except that images imported by a
    version that did not store pre-processing facts get them (from their stored copy): import
    the folders again, or the store itself (``CIRCUS_HOME/dicom``), to fill them in.

    Args:
        *paths: files and folders (walked recursively).
        progress: called once per file looked at, in order (the CLI's progress bar).
        started: called with the number of files found, once they are being read.

    Returns:
        The import report.
    """
    places = import_places()
    report = ImportReport()
    working = working_files(places)
    for raw in paths:
        resolved = Path(raw).resolve()
        if any(resolved == w or resolved.is_relative_to(w) for w in working):
            report.problems.append(
                (Path(raw), "CIRCUS_HOME's own database or working files: not DICOM, not opened")
            )
    files = list(iter_files(paths, skip=working))
    store = places.dicom_dir.resolve()
    if not files:
        return report
    store.mkdir(parents=True, exist_ok=True)
    with one_import_at_a_time(places):
        _import_files(files, places, store, report, progress, started)
    return report


def _import_files(
    files: list[Path],
    places: ImportPlaces,
    store: Path,
    report: ImportReport,
    progress: Callable[[Path], None] | None,
    started: Callable[[int], None] | None,
) -> None:
    reader = Reader(store=store, copy_mode=places.copy_mode)
    parsed = ReadFiles(files, reader)  # the workers start reading now
    try:
        if started is not None:
            started(len(files))
        index = open_index(places.database_url, SCHEMA_REVISION)
        try:
            _Import(index, report, places, store, files, progress).run(parsed)
        finally:
            index.close()
    finally:
        parsed.close()


class _Import:
    """The importing process's side: decides, per file in order, stored already or new; keeps
    or removes the copies the readers wrote, copies where they could not, and adds the rows."""

    def __init__(
        self,
        index: Index,
        report: ImportReport,
        places: ImportPlaces,
        store: Path,
        files: list[Path],
        progress: Callable[[Path], None] | None,
    ) -> None:
        self.index, self.report, self.places, self.store = index, report, places, store
        self.files, self.progress = files, progress
        # SOP instance -> (series, stored file) of the images this import added
        self.added: dict[str, tuple[str, Path]] = {}
        self.series_done: set[str] = set()
        self.folders: dict[str, Path] = {}  # series UID -> its folder in the store, resolved
        self.emptied: set[Path] = set()  # folders a copy was removed from

    def run(self, parsed: ReadFiles) -> None:
        chunk: list[ParsedFile | RefusedFile] = []
        for file in parsed:
            if self.progress is not None:
                self.progress(self.files[file.number])  # as read: the bar moves file by file
            chunk.append(file)
            if len(chunk) >= LOOKUP_BATCH:
                self._chunk(chunk)
                chunk = []
        self._chunk(chunk)
        self.index.flush(recount=self.report.series_uids)
        for folder in self.emptied:  # the readers are done: a folder made for nothing goes
            with contextlib.suppress(OSError):
                folder.rmdir()

    def _chunk(self, chunk: list[ParsedFile | RefusedFile]) -> None:
        present = self.index.stored([f.sop_uid for f in chunk if isinstance(f, ParsedFile)])
        for file in chunk:
            path = self.files[file.number]
            if isinstance(file, RefusedFile):
                self.report.problems.append((path, file.problem))
                continue
            self.report.series_uids.add(file.series_uid)
            if file.sop_uid in present or file.sop_uid in self.added:
                if file.written:
                    self._drop_copy(file)
                self._present(file, path, present)
                continue
            self._new(file, path)
            if self.index.pending >= WRITE_BATCH:
                self.index.flush()

    def _drop_copy(self, file: ParsedFile) -> None:
        """Remove the copy a reader wrote for a file that is not imported: its instance is
        stored already (the store stays as it was), or it is another file with the UID of one
        this import added in another series."""
        target = self._folder(file.series_uid) / f"{file.sop_uid}.dcm"
        added = self.added.get(file.sop_uid)
        if added is None or added[1] != target:
            target.unlink(missing_ok=True)
            self.emptied.add(target.parent)

    def _present(self, file: ParsedFile, path: Path, present: dict[str, Stored]) -> None:
        image_id, file_size, stored_series, stored_path = present.get(
            file.sop_uid, (None, 0, *self.added.get(file.sop_uid, ("", Path())))
        )
        conflict = conflict_with_stored(path, file.series_uid, stored_series, Path(stored_path))
        if conflict:
            self.report.problems.append((path, conflict))
            return
        self.report.already_present += 1
        if file_size is None:  # imported before facts were looked for
            found = _missing_facts(Path(stored_path))
            if found is not None:
                columns, usable = found
                self.index.set_facts(image_id, columns)
                self.report.facts_added += usable
            # looked at now: the same instance again in this import is not
            present[file.sop_uid] = (image_id, 0, stored_series, str(stored_path))

    def _new(self, file: ParsedFile, path: Path) -> None:
        uid = file.series_uid
        name = f"{file.sop_uid}.dcm"
        if file.written and file.stamp is not None:
            # written at its place, which was free: the folder's resolved path and the name
            target = self._folder(uid) / name
            stamp = file.stamp
        else:
            target = inside(self.store, self.places.dicom_dir / uid / name)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            partial.unlink(missing_ok=True)
            write_copy(path, None, partial, self.places.copy_mode)
            os.replace(partial, target)
            stamp = _stamp(target)
        if uid not in self.series_done:
            if not self.index.has_series(uid):
                fields = file.series
                if fields is None:  # its reader read another file of the series first
                    fields = series_fields(read_header(target))
                self.index.add_series(uid, fields)
            self.series_done.add(uid)
        self.index.add_image(
            (uid, file.sop_uid, file.instance_number, file.z, str(target))
            + _fact_values(file.facts, stamp)
        )
        self.added[file.sop_uid] = (uid, target)
        self.report.imported += 1

    def _folder(self, series_uid: str) -> Path:
        folder = self.folders.get(series_uid)
        if folder is None:
            folder = inside(self.store, self.places.dicom_dir / series_uid)
            self.folders[series_uid] = folder
        return folder
