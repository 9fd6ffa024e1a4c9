"""Reading what import needs of each file, on every core for a large import.

Each file is parsed in a worker process (forked, so pydicom is loaded already) and only plain
values come back: the UIDs, what the series row holds, the slice's pre-processing facts. The
importing process copies the files and writes the rows, in order.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from circus_tasks.errors import DicomImportError
from circus_tasks.store.files import read_header, series_geometry, z_of
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
    """Read one file as import does."""
    try:
        ds = read_header(path)
    except DicomImportError as exc:
        return RefusedFile(path, str(exc))
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


def parse_files(paths: Iterable[Path]) -> Iterator[ParsedFile | RefusedFile]:
    """Each file read as import does, in the order given; on every core when there are many."""
    files = list(paths)
    workers = min(len(os.sched_getaffinity(0)), 8)
    if len(files) < PARALLEL_FROM or workers < 2:
        yield from map(parse_file, files)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(parse_file, files, chunksize=16)
