"""The files import reads: which ones, whether each is an image it can take, and what it
learns of a series from one of them."""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from circus_tasks.errors import DicomImportError
from circus_tasks.values import MAX_NUMBER, printable, uid_problem

REQUIRED = ("SOPInstanceUID", "SeriesInstanceUID", "InstanceNumber")


def iter_files(
    paths: Iterable[str | os.PathLike[str]], *, skip: Collection[Path] = ()
) -> Iterator[Path]:
    """Every file under ``paths`` (files as given, folders walked, sorted), leaving out the
    files and folders ``skip`` (resolved paths) without opening anything there."""
    left = {p.resolve() for p in skip}

    def left_out(path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved == s or resolved.is_relative_to(s) for s in left)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not left_out(Path(root, d)))
                for name in sorted(files):
                    if not left_out(Path(root, name)):
                        yield Path(root) / name
        elif not left_out(path):
            yield path


def read_header(path: Path) -> pydicom.Dataset:
    """Read one DICOM file and check that it can be imported.

    Raises:
        DicomImportError: naming the problem (not DICOM, truncated, a tag missing, no pixels).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings on odd values: judged below
        return _checked(path)


def _checked(path: Path) -> pydicom.Dataset:
    if not path.is_file():
        raise DicomImportError("no such file")
    try:
        ds = pydicom.dcmread(path)
        pixel_bytes = ds.get("PixelData")
    except InvalidDicomError:
        raise DicomImportError("not a DICOM file (no DICM preamble or valid header)") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DicomImportError(f"unreadable DICOM (truncated or corrupt): {exc}") from None
    missing = [k for k in REQUIRED if ds.get(k) in (None, "")]
    if missing:
        raise DicomImportError(
            f"missing required attribute(s): {', '.join(missing)} "
            "(not an image instance, or the file is truncated)"
        )
    if pixel_bytes is None:
        raise DicomImportError("no PixelData: not an image, or the file is truncated")
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * int(ds.get("NumberOfFrames", 1) or 1)
            * (int(ds.BitsAllocated) // 8)
        )
        if len(pixel_bytes) < expected:
            raise DicomImportError(
                f"truncated: PixelData holds {len(pixel_bytes)} bytes, {expected} expected"
            )
    try:
        number = int(ds.InstanceNumber)
    except (TypeError, ValueError):
        raise DicomImportError(f"InstanceNumber {ds.InstanceNumber!r} is not an integer") from None
    if not 0 <= number <= MAX_NUMBER:
        raise DicomImportError(f"InstanceNumber {number} is out of bounds (0 to {MAX_NUMBER})")
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        value = str(ds.get(keyword, "") or "")
        problem = uid_problem(value) if value or keyword != "StudyInstanceUID" else None
        if problem:
            raise DicomImportError(
                f"{keyword} {printable(value[:80])!r} {problem}: not a valid DICOM UID; "
                "correct the file (it is not imported)"
            )
    return ds


def orientation_of(ds: pydicom.Dataset) -> str:
    """axial, coronal, sagittal (the axis the slice normal is nearest), oblique, or ""."""
    cosines = ds.get("ImageOrientationPatient")
    if cosines is None or len(cosines) != 6:
        return ""
    row, col = [float(v) for v in cosines[:3]], [float(v) for v in cosines[3:]]
    normal = (
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    )
    axis = max(range(3), key=lambda i: abs(normal[i]))
    if abs(normal[axis]) < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def series_geometry(ds: pydicom.Dataset) -> dict[str, Any]:
    """What the input conditions check, read from one image of the series."""
    spacing = ds.get("PixelSpacing")
    return {
        "rows": int(ds.Rows) if "Rows" in ds else None,
        "columns": int(ds.Columns) if "Columns" in ds else None,
        "pixel_spacing_row": float(spacing[0]) if spacing else None,
        "pixel_spacing_col": float(spacing[1]) if spacing else None,
        "orientation": orientation_of(ds),
        "attributes": sorted(
            e.keyword for e in ds if e.keyword and e.keyword != "PixelData" and not e.is_empty
        ),
    }


def z_of(ds: pydicom.Dataset) -> float | None:
    position = ds.get("ImagePositionPatient")
    if position is None or len(position) != 3:
        return None
    return float(position[2])


def conflict_with_stored(
    path: Path, series_uid: str, stored_series: str, stored: Path
) -> str | None:
    """Why a file whose SOP instance is stored already cannot be the same instance, or None."""
    if stored_series != series_uid:
        return (
            f"its SOPInstanceUID is stored already in series {stored_series}, and this file "
            f"says series {series_uid}: two instances share one UID; not imported"
        )
    if stored.is_file() and not _same_bytes(path, stored):
        return (
            "its SOPInstanceUID is stored already with other content (pixels or header); "
            "not imported: give the new instance a new UID, or remove the stored one"
        )
    return None


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as first, b.open("rb") as second:
        while chunk := first.read(1 << 20):
            if chunk != second.read(len(chunk)):
                return False
    return True
