"""Import DICOM files into the store and index their series and images.

Each file is parsed fully once, here. For a slice that pre-processing can copy as it is, the
index also keeps what pre-processing would otherwise parse again (its ``N.json`` object, format,
position and pixel data offset, see :mod:`circus_tasks.volume.stored`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Image, Series
from circus_tasks.home import sqlite_file
from circus_tasks.settings import Settings, get_settings
from circus_tasks.store.files import conflict_with_stored, iter_files, read_header
from circus_tasks.store.parsing import ParsedFile, RefusedFile, parse_files, stored_facts
from circus_tasks.values import inside
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


def _no_facts(stored: Path) -> dict[str, Any]:
    """The fact columns of a slice that pre-processing must parse: all NULL but the file's
    size and time, which say that import looked (so importing again does not look again)."""
    status = stored.stat()
    columns: dict[str, Any] = dict.fromkeys(STORED_COLUMNS)
    columns.update(file_size=status.st_size, file_mtime_ns=status.st_mtime_ns)
    return columns


def _add_missing_facts(image: Image) -> bool:
    """Give an image imported without facts (by a version before they existed) the facts of
    its stored copy, if that copy is readable and can be copied as it is.

    Returns:
        Whether facts were added.
    """
    from circus_tasks.errors import DicomImportError

    stored = Path(image.path)
    try:
        ds = read_header(stored)
    except DicomImportError:
        return False  # pre-processing reports the problem when the file is used
    facts = stored_facts(ds, stored)
    columns = facts.stamped(stored).columns() if facts is not None else _no_facts(stored)
    for name, value in columns.items():
        setattr(image, name, value)
    return facts is not None


def working_files(settings: Settings) -> list[Path]:
    """CIRCUS_HOME's database (with its journal files) and working folders: import never opens
    them (opening and closing a live SQLite file drops this process's locks on it)."""
    database = sqlite_file(settings.db_url)
    files = (
        [Path(f"{database}{end}") for end in ("", "-wal", "-shm", "-journal")] if database else []
    )
    folders = [settings.jobs_dir, settings.results_dir, settings.prefect_home, settings.run_dir]
    return [p.resolve() for p in [*files, *folders, settings.locks_dir]]


def import_dicom(
    *paths: str | os.PathLike[str], progress: Callable[[Path], None] | None = None
) -> ImportReport:
    """Import DICOM files and folders into the store and index them.

    Non-DICOM and broken files are listed in the report with the reason; they never stop the
    import. Importing the same files twice changes nothing, except that images imported by a
    version that did not store pre-processing facts get them (from their stored copy): import
    the folders again, or the store itself (``CIRCUS_HOME/dicom``), to fill them in.

    Args:
        *paths: files and folders (walked recursively).
        progress: called once per file looked at (the CLI's progress bar).

    Returns:
        The import report.
    """
    settings = get_settings()
    report = ImportReport()
    store = settings.dicom_dir.resolve()
    working = working_files(settings)
    for raw in paths:
        resolved = Path(raw).resolve()
        if any(resolved == w or resolved.is_relative_to(w) for w in working):
            report.problems.append(
                (Path(raw), "CIRCUS_HOME's own database or working files: not DICOM, not opened")
            )
    # SOP instance -> (series, stored file) of the images this import added
    added: dict[str, tuple[str, Path]] = {}
    series_rows: dict[str, Series] = {}
    parsed = parse_files(iter_files(paths, skip=working))
    with contextlib.closing(parsed), session_scope() as session, session.no_autoflush:
        while chunk := list(itertools.islice(parsed, LOOKUP_BATCH)):
            present = _present(session, [f.sop_uid for f in chunk if isinstance(f, ParsedFile)])
            for file in chunk:
                if progress is not None:
                    progress(file.path)
                if isinstance(file, RefusedFile):
                    report.problems.append((file.path, file.problem))
                    continue
                report.series_uids.add(file.series_uid)
                if file.sop_uid in present or file.sop_uid in added:
                    image_id, file_size, stored_series, stored_path = present.get(
                        file.sop_uid, (None, 0, *added.get(file.sop_uid, ("", Path())))
                    )
                    conflict = conflict_with_stored(
                        file.path, file.series_uid, stored_series, Path(stored_path)
                    )
                    if conflict:
                        report.problems.append((file.path, conflict))
                        continue
                    report.already_present += 1
                    if file_size is None:  # imported before facts were looked for
                        image = session.get(Image, image_id)
                        if image is not None and _add_missing_facts(image):
                            session.add(image)
                            report.facts_added += 1
                        # looked at now: the same instance again in this import is not
                        present[file.sop_uid] = (image_id, 0, stored_series, stored_path)
                    continue
                if file.series_uid not in series_rows:
                    row = session.get(Series, file.series_uid)
                    if row is None:
                        row = Series(series_uid=file.series_uid, **file.series)
                        session.add(row)
                        session.flush()
                    series_rows[file.series_uid] = row
                target = inside(store, settings.dicom_dir / file.series_uid / f"{file.sop_uid}.dcm")
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_suffix(".part")
                shutil.copyfile(file.path, partial)
                os.replace(partial, target)
                facts = file.facts
                columns = (
                    facts.stamped(target).columns() if facts is not None else _no_facts(target)
                )
                session.add(
                    Image(
                        series_uid=file.series_uid,
                        sop_instance_uid=file.sop_uid,
                        instance_number=file.instance_number,
                        z=file.z,
                        path=str(target),
                        **columns,
                    )
                )
                added[file.sop_uid] = (file.series_uid, target)
                report.imported += 1
        session.flush()
        _update_counts(session, report.series_uids)
    return report


LOOKUP_BATCH = 256
"""Files whose "already stored?" question goes to the database in one query."""


def _present(session: Session, sop_uids: list[str]) -> dict[str, tuple[Any, ...]]:
    """Of these SOP instances, those stored already: UID -> (image id, file size, series,
    path)."""
    if not sop_uids:
        return {}
    columns: tuple[Any, ...] = (
        Image.sop_instance_uid,
        Image.id,
        Image.file_size,
        Image.series_uid,
        Image.path,
    )
    query = sa.select(*columns).where(col(Image.sop_instance_uid).in_(sop_uids))
    rows = session.exec(query)  # type: ignore[call-overload]  # sqlmodel types up to 4 columns
    return {row[0]: tuple(row[1:]) for row in rows}


def _update_counts(session: Session, series_uids: Iterable[str]) -> None:
    for uid in series_uids:
        series = session.get(Series, uid)
        if series is not None:
            series.image_count = session.exec(
                select(func.count()).select_from(Image).where(Image.series_uid == uid)
            ).one()
            session.add(series)
