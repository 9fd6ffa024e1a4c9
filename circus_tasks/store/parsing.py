"""Reading what import needs of each file, on every core for a large import.

Each file is parsed in a worker process (forked, so pydicom is loaded already) and only plain
values come back: the UIDs, what the series row holds, the slice's pre-processing facts. The
importing process copies the files and writes the rows, in order.
"""

from __future__ import annotations

import multiprocessing
import signal
import warnings
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from circus_tasks.errors import DicomImportError
from circus_tasks.store.files import read_header, series_geometry, z_of
from circus_tasks.values import usable_cpus
from circus_tasks.volume.parsed import stored_slice
from circus_tasks.volume.stored import StoredSlice

PARALLEL_FROM = 64
"""Fewer files than this are parsed in the importing process (a pool costs more)."""


@dataclass(frozen=True)
class ParsedFile:
    """What import needs of one accepted file."""

    path: Path
    series_uid: str
    sop_uid: str
    instance_number: int
    z: float | None
    series: dict[str, Any]
    """The series row's fields, read from this file."""
    facts: StoredSlice | None


@dataclass(frozen=True)
class RefusedFile:
    """A file import refuses, and why."""

    path: Path
    problem: str


def stored_facts(ds: pydicom.Dataset, path: Path) -> StoredSlice | None:
    """The slice's facts for pre-processing, or ``None`` when it must be parsed there.

    A value pydicom cannot convert leaves the slice without facts: pre-processing then parses
    it and reports the problem as it always did.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as read_header: the file is already accepted
            return stored_slice(ds, path)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None


def parse_file(path: Path) -> ParsedFile | RefusedFile:
    """Read one file as import does; a file that cannot be read is refused, naming why."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as read_header: pydicom's complaints are not ours
        try:
            return _parse(path)
        except DicomImportError as exc:
            return RefusedFile(path, str(exc))
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the import
            return RefusedFile(path, f"unreadable DICOM ({type(exc).__name__}: {exc})")


def _parse(path: Path) -> ParsedFile:
    ds = read_header(path)
    # Before series_geometry decodes every element: an element still undecoded is judged by
    # the VR written in the file (e.g. UN, left out), as pre-processing does.
    facts = stored_facts(ds, path)
    series = {
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "patient_id": str(ds.get("PatientID", "")),
        "modality": str(ds.get("Modality", "")),
        "description": str(ds.get("SeriesDescription", "")),
        "series_date": str(ds.get("SeriesDate", "") or ds.get("StudyDate", "")),
        **series_geometry(ds),
    }
    return ParsedFile(
        path=path,
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        instance_number=int(ds.InstanceNumber),
        z=z_of(ds),
        series=series,
        facts=facts,
    )


def _quiet_worker() -> None:
    """A parsing worker leaves Ctrl-C to the importing process and prints no warnings (its
    inherited streams may be a progress bar's)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")


def parse_files(paths: Iterable[Path]) -> Generator[ParsedFile | RefusedFile, None, None]:
    """Each file read as import does, in the order given; on every core when there are many
    (where processes can be forked). Close the iterator to stop the workers early."""
    files = list(paths)
    workers = min(usable_cpus(), 8)
    forkable = "fork" in multiprocessing.get_all_start_methods()
    if len(files) < PARALLEL_FROM or workers < 2 or not forkable:
        yield from map(parse_file, files)
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=_quiet_worker) as pool:
        yield from pool.imap(parse_file, files, chunksize=16)
