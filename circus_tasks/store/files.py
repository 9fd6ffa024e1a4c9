"""The files import reads: which ones, whether each is an image it can take, and what it
learns of a series from one of them."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Hashable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast, overload

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError

from circus_tasks.errors import DicomImportError
from circus_tasks.store.listing import iter_files as iter_files  # re-exported
from circus_tasks.values import MAX_NUMBER, printable, uid_problem
from circus_tasks.volume.known import KnownValues, read_elements

REQUIRED = ("SOPInstanceUID", "SeriesInstanceUID", "InstanceNumber")


def read_header(path: Path) -> pydicom.Dataset:
    """Read one DICOM file and check that it can be imported.

    Raises:
        DicomImportError: naming the problem (not DICOM, truncated, a tag missing, no pixels).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings on odd values: judged below
        return _checked(path)


READ_WHOLE_BELOW = 256 << 10
"""Files smaller than this are read into memory once, parsed from there and written from there
(:func:`read_file`). A larger one is parsed from the file with its long values (the pixel data)
left there, and copied inside the kernel: its pixels cross no process memory."""

DEFER_BYTES = 64 << 10
"""In a large file, values longer than this are left in the file until asked for."""


class ReadFile(NamedTuple):
    """A file as import reads it."""

    ds: pydicom.Dataset
    data: bytes | None
    """The bytes that were parsed: the whole file (``None`` for a file of
    :data:`READ_WHOLE_BELOW` bytes or more, parsed from the file, its pixels left there)."""
    values: KnownValues
    """``ds`` read through the memory of values :func:`read_file` was given, with its elements
    as read (before the checks decoded any)."""


def read_file(path: Path, memo: dict[Hashable, Any] | None = None) -> ReadFile:
    """:func:`read_header`, and what was read (see :class:`ReadFile`); ``memo``: decoded
    values by their bytes as read, kept across the files of an import
    (:class:`~circus_tasks.volume.known.KnownValues`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as read_header
        if not path.is_file():
            raise DicomImportError("no such file")
        memo = {} if memo is None else memo
        try:
            with path.open("rb") as source:
                size = os.fstat(source.fileno()).st_size
                if size >= READ_WHOLE_BELOW:
                    values = _checked(path, source, memo, size)
                    return ReadFile(values.dataset, None, values)
                data = source.read()
        except OSError as exc:
            raise DicomImportError(f"unreadable DICOM (truncated or corrupt): {exc}") from None
        buffer = io.BytesIO(data)
        buffer.name = os.fspath(path)  # type: ignore[misc]  # as a file opened by name is called
        values = _checked(path, buffer, memo)
        return ReadFile(values.dataset, data, values)


def _in_the_file(element: object, size: int) -> bool:
    """Whether a Pixel Data element left unread is plain bytes that the file holds whole (the
    value a full read gives is then as long as it says)."""
    return (
        type(element) is RawDataElement
        and element.length != 0xFFFFFFFF
        and element.VR in ("OB", "OW")
        and element.value_tell + element.length <= size
    )


@overload
def _checked(
    path: Path, source: BinaryIO | None = None, memo: None = None, size: None = None
) -> pydicom.Dataset: ...
@overload
def _checked(
    path: Path, source: BinaryIO | None, memo: dict[Hashable, Any], size: int | None = None
) -> KnownValues: ...
def _checked(
    path: Path,
    source: BinaryIO | None = None,
    memo: dict[Hashable, Any] | None = None,
    size: int | None = None,
) -> pydicom.Dataset | KnownValues:
    """Parse ``path`` (or ``source``: its bytes, or the file opened) and check it can be
    imported; with ``memo``, the checks read values through it, and the dataset comes back as
    they read it. With ``size`` (the file's), long values are left in the file; pixel data
    that a full read would not give as it is (cut short, encapsulated, ...) is read fully."""
    if source is None and not path.is_file():
        raise DicomImportError("no such file")
    whole = True  # the pixel data as a full read gives it
    try:
        parsed = pydicom.dcmread(
            path if source is None else source, defer_size=None if size is None else DEFER_BYTES
        )
        pixels = parsed.get_item(0x7FE00010, keep_deferred=True)
        pixel_bytes: Any = None
        if size is not None and getattr(pixels, "value", True) is None:
            whole = _in_the_file(pixels, size)
            pixel_bytes = _Unread(cast(RawDataElement, pixels).length)
        elements = read_elements(parsed) if memo is not None and whole else []
        if pixel_bytes is None:
            pixel_bytes = parsed.get("PixelData")
    except InvalidDicomError:
        raise DicomImportError("not a DICOM file (no DICM preamble or valid header)") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DicomImportError(f"unreadable DICOM (truncated or corrupt): {exc}") from None
    if not whole:  # cut short, encapsulated, ...: as a full read judges it
        return _checked(path, None, memo)
    ds: Any = parsed if memo is None else KnownValues(parsed, elements, memo)
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
    return ds  # type: ignore[no-any-return]


class _Unread:
    """Pixel data left in the file: only its length is asked for."""

    def __init__(self, length: int) -> None:
        self._length = length

    def __len__(self) -> int:
        return self._length


def orientation_of(ds: Any) -> str:
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


def series_geometry(
    ds: pydicom.Dataset | KnownValues, memo: dict[Hashable, tuple[str, bool]] | None = None
) -> dict[str, Any]:
    """What the input conditions check, read from one image of the series.

    ``ds`` read through :class:`~circus_tasks.volume.known.KnownValues` takes ``memo``:
    each element's keyword and emptiness by its bytes as read, kept across the files of an
    import (an element decoded once is not decoded again).
    """
    spacing = ds.get("PixelSpacing")
    if isinstance(ds, KnownValues):
        attributes = ds.attributes({} if memo is None else memo)
    else:
        attributes = sorted(
            e.keyword for e in ds if e.keyword and e.keyword != "PixelData" and not e.is_empty
        )
    return {
        "rows": int(ds.Rows) if "Rows" in ds else None,
        "columns": int(ds.Columns) if "Columns" in ds else None,
        "pixel_spacing_row": float(spacing[0]) if spacing else None,
        "pixel_spacing_col": float(spacing[1]) if spacing else None,
        "orientation": orientation_of(ds),
        "attributes": attributes,
    }


def z_of(ds: Any) -> float | None:
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
