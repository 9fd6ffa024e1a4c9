"""Reading what import needs of each file and writing its copy into the store, on every core
for a large import.

Each file is read once, into memory: parsed from there (the same parse as
:func:`~circus_tasks.store.files.read_header`) and, where its place in the store
(``SERIES/SOP.dcm``) is free, written from there to that place, created anew (so that two
readers never write one place). The importing process decides afterwards, in order, whether
the file is new (its copy stays, its row is added) or stored already (the copy made now is
removed); a place that was taken gets its copy from the importing process, as before. With many
files this runs in worker processes (forked, so pydicom is loaded already), which send back
only plain values: the UIDs, what the series row holds (for the first file of a series a
worker sees), the slice's pre-processing facts with its header as JSON text, whether the copy
was written.

A copy is complete before its file is reported, and a row is written only for a reported file:
an import that stops half-way can leave a partial copy without a row, which the next import
of the file replaces.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pydicom

from circus_tasks.errors import DicomImportError
from circus_tasks.store.copying import write_copy
from circus_tasks.store.files import read_file, series_geometry, z_of
from circus_tasks.values import usable_cpus
from circus_tasks.volume.import_facts import SliceFacts, slice_facts
from circus_tasks.volume.known import KnownValues, SliceObjects

PARALLEL_FROM = 64
"""Fewer files than this are parsed in the importing process (a pool costs more)."""

CHUNKS_PER_WORKER = 8
"""A worker takes its files in about this many chunks (at most :data:`MOST_PER_CHUNK` files
each): fewer messages, still an even share at the end."""
MOST_PER_CHUNK = 32


class ParsedFile(NamedTuple):
    """What import needs of one accepted file (plain values: cheap to send between
    processes)."""

    number: int
    """The file's place in the list read."""
    series_uid: str
    sop_uid: str
    instance_number: int
    z: float | None
    series: dict[str, Any] | None
    """The series row's fields, read from this file; ``None`` when the same reader has read
    another file of the series before (the importing process takes the fields of the first
    file of a series, which a reader always reads before the others it reads)."""
    facts: tuple[Any, ...] | None
    """The slice's pre-processing facts
    (:meth:`~circus_tasks.volume.import_facts.SliceFacts.values`), or ``None``."""
    written: bool = False
    """Whether the reader wrote the file's copy at its place in the store (which was free)."""
    stamp: tuple[int, int] | None = None
    """The written copy's size and modification time (ns)."""


class RefusedFile(NamedTuple):
    """A file import refuses, and why."""

    number: int
    """The file's place in the list read."""
    problem: str


def series_fields(
    ds: pydicom.Dataset | KnownValues, memo: dict[Hashable, tuple[str, bool]] | None = None
) -> dict[str, Any]:
    """The series row's fields, read from one of its files (the first one imported); ``memo``
    as :func:`~circus_tasks.store.files.series_geometry` takes it."""
    return {
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "patient_id": str(ds.get("PatientID", "")),
        "modality": str(ds.get("Modality", "")),
        "description": str(ds.get("SeriesDescription", "")),
        "series_date": str(ds.get("SeriesDate", "") or ds.get("StudyDate", "")),
        **series_geometry(ds, memo),
    }


@dataclass
class Reader:
    """Reads files as import does, in one process: what it remembers across files (element
    texts, the series seen) makes the next file of a series cheap."""

    store: Path | None = None
    """The DICOM store (resolved): a file whose place there is free is written there;
    ``None``: nothing is written."""
    copy_mode: str = "copy"
    objects: SliceObjects = field(default_factory=SliceObjects)
    elements: dict[Hashable, tuple[str, bool]] = field(default_factory=dict)
    values: dict[Hashable, Any] = field(default_factory=dict)
    seen_series: set[str] = field(default_factory=set)
    folders: dict[str, Path | None] = field(default_factory=dict)

    def read(self, job: tuple[int, str | Path]) -> ParsedFile | RefusedFile:
        """Read file number ``index`` at ``path``; a file that cannot be read is refused,
        naming why. Writing its copy may raise (a full disk stops the import)."""
        index, path = job[0], Path(job[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as read_header: pydicom's complaints are not ours
            try:
                _, data, values = read_file(path, self.values)
                parsed = self._parse(index, path, values)
            except DicomImportError as exc:
                return RefusedFile(index, str(exc))
            except Exception as exc:  # noqa: BLE001 - one odd file must not stop the import
                return RefusedFile(index, f"unreadable DICOM ({type(exc).__name__}: {exc})")
        folder = self._folder(parsed.series_uid)
        if folder is None:
            return parsed
        target = folder / f"{parsed.sop_uid}.dcm"
        try:
            write_copy(path, data, target, self.copy_mode)
        except FileExistsError:
            return parsed  # stored already, or another file with its UID: decided later
        status = target.stat()
        return parsed._replace(written=True, stamp=(status.st_size, status.st_mtime_ns))

    def _folder(self, series_uid: str) -> Path | None:
        """The series' folder in the store, made; ``None`` where it would leave the store (the
        importing process refuses that) or nothing is written."""
        if self.store is None:
            return None
        if series_uid not in self.folders:
            folder = Path(os.path.realpath(self.store / series_uid))
            if folder.is_relative_to(self.store) and folder != self.store:
                folder.mkdir(parents=True, exist_ok=True)
                self.folders[series_uid] = folder
            else:
                self.folders[series_uid] = None
        return self.folders[series_uid]

    def _parse(self, index: int, path: Path, values: KnownValues) -> ParsedFile:
        # Before series_geometry decodes every element: an element still undecoded is judged
        # by the VR written in the file (e.g. UN, left out), as pre-processing does.
        facts = _facts(values, path, self.objects)
        # every file's: a value it cannot decode refuses it
        series: dict[str, Any] | None = series_fields(values, self.elements)
        series_uid = str(values.SeriesInstanceUID)
        if series_uid in self.seen_series:
            series = None  # not sent again
        self.seen_series.add(series_uid)
        return ParsedFile(
            number=index,
            series_uid=series_uid,
            sop_uid=str(values.SOPInstanceUID),
            instance_number=int(values.InstanceNumber),
            z=z_of(values),
            series=series,
            facts=None if facts is None else facts.values(),
        )


def _facts(values: KnownValues, path: Path, objects: SliceObjects) -> SliceFacts | None:
    """The slice's facts for pre-processing, or ``None`` when it must be parsed there.

    A value pydicom cannot convert leaves the slice without facts: pre-processing then parses
    it and reports the problem as it always did.
    """
    try:
        return slice_facts(values, path, objects)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None


_reader: Reader | None = None
"""A worker process's reader (set as it starts)."""


def _start_worker(reader: Reader) -> None:
    """A parsing worker leaves Ctrl-C to the importing process and prints no warnings (its
    inherited streams may be a progress bar's)."""
    global _reader
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    _reader = reader


def _read_in_worker(job: tuple[int, str]) -> ParsedFile | RefusedFile:
    assert _reader is not None
    return _reader.read(job)


class ReadFiles(Iterator["ParsedFile | RefusedFile"]):
    """Each file read as import does, in the order given; on every core when there are many
    (where processes can be forked). The workers start at once, before the first file is
    asked for; :meth:`close` stops them (the files not asked for yet are then not read)."""

    def __init__(self, files: Sequence[Path], reader: Reader) -> None:
        jobs = [(index, str(path)) for index, path in enumerate(files)]  # str: cheap to send
        workers = min(usable_cpus(), 8)
        forkable = "fork" in multiprocessing.get_all_start_methods()
        self._pool: Any = None
        if len(jobs) < PARALLEL_FROM or workers < 2 or not forkable:
            self._results: Iterator[ParsedFile | RefusedFile] = map(reader.read, jobs)
            return
        context = multiprocessing.get_context("fork")
        self._pool = context.Pool(workers, initializer=_start_worker, initargs=(reader,))
        chunk = max(1, min(MOST_PER_CHUNK, len(jobs) // (workers * CHUNKS_PER_WORKER)))
        self._results = self._pool.imap(_read_in_worker, jobs, chunksize=chunk)

    def __next__(self) -> ParsedFile | RefusedFile:
        try:
            return next(self._results)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        """Stop the workers, if any (at once: they are not waited for)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
