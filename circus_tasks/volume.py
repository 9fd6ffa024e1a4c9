"""The plug-in input volume: one series range written as ``N.raw``, ``N.mhd`` and ``N.json``.

This is the pre-processing half of the CIRCUS plug-in contract (spec section 6). Each slice's
header is parsed once, with pydicom, leaving large values unread; uncompressed little-endian
pixel data then moves from the DICOM file to its place in the raw file inside the kernel
(``copy_file_range``), without passing through Python. Compressed, big-endian and deflated
slices, and slices whose unused high bits must be cleared, go through pydicom's own decoders
one slice at a time. The headers feed :class:`~circus_tasks.dicom_json.HeaderSplit`, which
keeps only what ``N.json`` will hold, so memory does not grow with the series beyond the
output. The three files appear only when all of them were written.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from circus_tasks.dicom_json import (
    IDENTIFYING_KEYWORDS,
    IDENTIFYING_TAGS,
    PIXEL_DATA_TAGS,
    HeaderSplit,
)
from circus_tasks.errors import VolumeError

__all__ = ["IDENTIFYING_KEYWORDS", "IDENTIFYING_TAGS", "VolumeInfo", "write_volume"]

_ELEMENT_TYPES: dict[tuple[int, int], tuple[str, np.dtype[Any]]] = {
    (8, 0): ("MET_UCHAR", np.dtype("<u1")),
    (8, 1): ("MET_CHAR", np.dtype("<i1")),
    (16, 0): ("MET_USHORT", np.dtype("<u2")),
    (16, 1): ("MET_SHORT", np.dtype("<i2")),
}
_DEFER_BYTES = 2048
"""Header values longer than this are skipped when a slice is read and fetched only if needed:
the pixel data, and the odd long binary value."""
_NATIVE_LITTLE_ENDIAN = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}
)


@dataclass(frozen=True)
class VolumeInfo:
    """What :func:`write_volume` wrote.

    Attributes:
        mhd: The MetaImage header, ``N.mhd``.
        raw: The voxel file, ``N.raw``.
        json: The DICOM attributes, ``N.json``.
        shape: (slices, rows, columns).
        element_type: The MetaImage element type, e.g. ``"MET_SHORT"``.
        spacing: (column spacing x, row spacing y, slice spacing z) in mm, as in the header.
    """

    mhd: Path
    raw: Path
    json: Path
    shape: tuple[int, int, int]
    element_type: str
    spacing: tuple[float, float, float]


def write_volume(
    files: Sequence[Path], out_dir: Path, index: int, *, include_private: bool = False
) -> VolumeInfo:
    """Write one series range as the plug-in input files ``{index}.raw/.mhd/.json``.

    ``{index}.raw`` holds the stored pixel values (no rescale), little-endian, slice after slice
    in the order of ``files``. ``{index}.mhd`` describes it: the element type follows Bits
    Allocated and Pixel Representation of the first slice; the spacing is the first slice's
    Pixel Spacing (column spacing for x, row spacing for y; 1.0 for both when the slice has no
    Pixel Spacing) and, for z, the distance between the Image Position (Patient) of the first
    two slices (1 for a single slice). ``{index}.json`` holds the slices' attributes split into
    ``common`` (equal in every slice) and ``unique`` (one object per slice, in order), without
    the file meta group, group lengths, Pixel Data, binary values, private attributes (unless
    ``include_private``) and :data:`IDENTIFYING_KEYWORDS` (at any depth).

    The files are written under temporary names in ``out_dir`` and renamed into place only
    once all three are complete; on any error the temporaries are removed.

    Args:
        files: The slice files, already in range order.
        out_dir: The job's input folder; created if missing.
        index: The series' position in the job, from 0.
        include_private: Keep private attributes (odd groups) that have a non-binary value.

    Returns:
        Where the files are and what the volume looks like.

    Raises:
        VolumeError: No files; a file is not readable DICOM; a slice has no Pixel Data, or
            pixel data that cannot be decoded; a slice is multi-frame or colour; Bits
            Allocated is not 8 or 16; rows, columns or pixel type differ between slices; a
            slice lacks Image Position (Patient); the first two slices share a position.
    """
    if not files:
        raise VolumeError(
            f"Volume {index} has no images; select a series range that holds at least one slice."
        )
    if index < 0:
        raise VolumeError(f"Volume index {index} is negative; number volumes from 0.")
    out_dir.mkdir(parents=True, exist_ok=True)
    finals = {ext: out_dir / f"{index}.{ext}" for ext in ("raw", "json", "mhd")}
    # Hidden, randomly named temporaries, created exclusively by _write_parts with the usual
    # umask permissions (the plug-in may run as another user and must be able to read them).
    token = secrets.token_hex(8)
    temps = {ext: out_dir / f".{index}.{ext}.{token}.part" for ext in finals}
    try:
        info = _write_parts(files, temps, finals, include_private)
        for ext, temp in temps.items():  # the .mhd, which names the others, comes last
            temp.replace(finals[ext])
    except BaseException:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise
    return info


def _write_parts(
    files: Sequence[Path], temps: dict[str, Path], finals: dict[str, Path], include_private: bool
) -> VolumeInfo:
    """Write the three files to their temporary paths; return the info for the final paths."""
    headers = HeaderSplit(include_private)
    positions: list[tuple[float, float, float]] = []  # of the first two slices
    first: _SliceFormat | None = None
    # Unbuffered: pixel data reaches the file both by write() and by copy_file_range().
    with temps["raw"].open("xb", buffering=0) as raw:
        pixels = _PixelWriter(raw)
        for path in files:
            with _open(path) as source:
                ds = _read(source, path)
                slice_format = _slice_format(ds, path)
                if first is None:
                    first = slice_format
                elif slice_format.size != first.size or slice_format.pixel != first.pixel:
                    raise VolumeError(
                        f"{path} is {slice_format.describe()} but the first slice {files[0]} is "
                        f"{first.describe()}; every slice of a volume must match. "
                        "Choose a range that holds one kind of image."
                    )
                position = _position(ds, path)
                if len(positions) < 2:
                    positions.append(position)
                pixels.write_slice(ds, source, path, slice_format)
            headers.add(ds)
    assert first is not None  # files is not empty
    element_type, _ = _ELEMENT_TYPES[first.pixel]
    spacing = (first.spacing[0], first.spacing[1], _slice_spacing(positions, files))
    rows, columns = first.size
    shape = (len(files), rows, columns)

    with temps["json"].open("x", encoding="utf-8", newline="\n") as out:
        json.dump(_split_common(headers), out, ensure_ascii=False, indent=2, allow_nan=False)
        out.write("\n")
    header = (
        "ObjectType = Image\n"
        "NDims = 3\n"
        f"DimSize = {columns} {rows} {len(files)}\n"
        f"ElementType = {element_type}\n"
        f"ElementSpacing = {' '.join(_number(s) for s in spacing)}\n"
        "ElementByteOrderMSB = False\n"
        f"ElementDataFile = {finals['raw'].name}\n"
    )
    with temps["mhd"].open("xb") as out_mhd:
        out_mhd.write(header.encode("ascii"))
    return VolumeInfo(
        mhd=finals["mhd"],
        raw=finals["raw"],
        json=finals["json"],
        shape=shape,
        element_type=element_type,
        spacing=spacing,
    )


def _split_common(headers: HeaderSplit) -> dict[str, Any]:
    """The ``N.json`` document: attributes equal in every slice in ``common``, the rest per
    slice in ``unique``."""
    return headers.document()


@dataclass(frozen=True)
class _SliceFormat:
    """The parts of one slice's pixel description that must agree across the volume."""

    size: tuple[int, int]  # rows, columns
    pixel: tuple[int, int]  # bits allocated, pixel representation
    spacing: tuple[float, float]  # x (column spacing), y (row spacing)

    def describe(self) -> str:
        rows, columns = self.size
        bits, representation = self.pixel
        sign = "signed" if representation else "unsigned"
        return f"{rows}x{columns} {sign} {bits}-bit"


def _open(path: Path) -> io.BufferedReader:
    try:
        return path.open("rb")
    except OSError as exc:
        raise VolumeError(
            f"{path} cannot be read as DICOM ({type(exc).__name__}: {exc}); "
            "re-import the series or remove the file from the range."
        ) from exc


def _read(source: io.BufferedReader, path: Path) -> Dataset:
    """Parse one file's header, leaving long values (the pixel data) in the file, or say why
    it cannot be a slice."""
    try:
        ds = pydicom.dcmread(source, defer_size=_DEFER_BYTES)
        if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            # The deferred values' offsets point into the inflated stream, which pydicom
            # has already let go: read the whole (small) dataset at once instead.
            source.seek(0)
            ds = pydicom.dcmread(source)
    except Exception as exc:
        # Re-raised with the file named; nothing is swallowed, and BaseException
        # (cancellation, interrupts) passes through untouched.
        raise VolumeError(
            f"{path} cannot be read as DICOM ({type(exc).__name__}: {exc}); "
            "re-import the series or remove the file from the range."
        ) from exc
    return ds


def _slice_format(ds: Dataset, path: Path) -> _SliceFormat:
    """Check that a slice is a single-frame greyscale image and describe its pixels."""
    if not any(tag in ds for tag in PIXEL_DATA_TAGS):
        raise VolumeError(
            f"{path} has no Pixel Data: it is not an image, or the file is cut short. "
            "Remove it from the series range or re-import it."
        )
    if "PixelData" not in ds:
        raise VolumeError(
            f"{path} holds float pixel data, which the plug-in input cannot carry; "
            "use a series with integer pixel data."
        )
    frames = ds.get("NumberOfFrames")
    if frames not in (None, "") and int(frames) > 1:
        raise VolumeError(
            f"{path} is a multi-frame image ({frames} frames); the plug-in input needs one "
            "frame per file. Convert the series to single-frame images."
        )
    samples = ds.get("SamplesPerPixel", 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples != 1 or not photometric.startswith("MONOCHROME"):
        raise VolumeError(
            f"{path} is a colour image ({samples} samples per pixel, {photometric}); "
            "the plug-in input must be greyscale. Choose a greyscale series."
        )
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not rows or not columns:
        raise VolumeError(f"{path} has no Rows or Columns; the file is damaged. Re-import it.")
    bits = ds.get("BitsAllocated")
    representation = ds.get("PixelRepresentation", 0)
    if (bits, representation) not in _ELEMENT_TYPES:
        raise VolumeError(
            f"{path} has Bits Allocated {bits} (Pixel Representation {representation}); "
            "the plug-in input supports only 8 and 16 bits. Convert the series first."
        )
    spacing = ds.get("PixelSpacing")
    if spacing is None or len(spacing) == 0:
        x, y = 1.0, 1.0
    else:
        try:
            y, x = (float(value) for value in spacing)
        except (TypeError, ValueError) as exc:
            raise VolumeError(
                f"{path} has Pixel Spacing {spacing!r}, not two numbers; correct the file."
            ) from exc
        if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
            raise VolumeError(f"{path} has Pixel Spacing {spacing!r}; spacings must be > 0.")
    return _SliceFormat(size=(rows, columns), pixel=(bits, representation), spacing=(x, y))


def _position(ds: Dataset, path: Path) -> tuple[float, float, float]:
    position = ds.get("ImagePositionPatient")
    try:
        x, y, z = (float(value) for value in position)
    except (TypeError, ValueError) as exc:
        raise VolumeError(
            f"{path} has no usable Image Position (Patient) ({position!r}); slices cannot be "
            "placed in a volume without it. Choose a series with position information."
        ) from exc
    return (x, y, z)


class _PixelWriter:
    """Appends each slice's stored values to the raw file, with as few copies as possible."""

    def __init__(self, raw: io.FileIO) -> None:
        self._raw = raw
        self._kernel_copy = hasattr(os, "copy_file_range")

    def write_slice(
        self, ds: Dataset, source: io.BufferedReader, path: Path, slice_format: _SliceFormat
    ) -> None:
        rows, columns = slice_format.size
        bits, _ = slice_format.pixel
        _, dtype = _ELEMENT_TYPES[slice_format.pixel]
        size = rows * columns * dtype.itemsize
        element = ds.get_item(0x7FE00010, keep_deferred=True)
        syntax = ds.file_meta.get("TransferSyntaxUID")
        stored = ds.get("BitsStored")
        if (
            syntax not in _NATIVE_LITTLE_ENDIAN
            or not isinstance(element, RawDataElement)
            or element.length == 0xFFFFFFFF
            or not isinstance(stored, int)
            or not 0 < stored <= bits
        ):
            self._raw.write(_decoded(ds, path, slice_format).data)
            return
        if element.length < size:
            raise _undecodable(ds, path, f"{element.length} bytes of pixel data, {size} expected")
        if stored < bits:
            # pydicom clears the unused high bits (sign-extending signed values); so do we.
            array = np.empty(rows * columns, dtype)
            self._read_into(element, source, memoryview(array).cast("B"), ds, path)
            shift = bits - stored
            np.left_shift(array, shift, out=array)
            np.right_shift(array, shift, out=array)
            self._raw.write(array.data)
        elif element.value is not None:
            self._raw.write(memoryview(element.value)[:size])
        else:
            self._copy(element.value_tell, size, source, ds, path)

    def _copy(
        self, offset: int, size: int, source: io.BufferedReader, ds: Dataset, path: Path
    ) -> None:
        """Move ``size`` bytes from ``offset`` in the source to the end of the raw file."""
        while size and self._kernel_copy:
            try:
                moved = os.copy_file_range(source.fileno(), self._raw.fileno(), size, offset)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                self._kernel_copy = False  # e.g. another file system: copy through memory
                break
            if moved == 0:
                raise _undecodable(ds, path, "the file ends inside the pixel data")
            offset += moved
            size -= moved
        if size:
            buffer = bytearray(size)
            source.seek(offset)
            if source.readinto(buffer) != size:
                raise _undecodable(ds, path, "the file ends inside the pixel data")
            self._raw.write(buffer)

    @staticmethod
    def _read_into(
        element: RawDataElement,
        source: io.BufferedReader,
        target: memoryview,
        ds: Dataset,
        path: Path,
    ) -> None:
        if element.value is not None:
            target[:] = memoryview(element.value)[: len(target)]
            return
        source.seek(element.value_tell)
        if source.readinto(target) != len(target):
            raise _undecodable(ds, path, "the file ends inside the pixel data")


def _undecodable(ds: Dataset, path: Path, problem: object) -> VolumeError:
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
    return VolumeError(
        f"The pixel data of {path} cannot be decoded ({syntax}): {problem}. "
        "Re-import the series, or convert it to an uncompressed transfer syntax."
    )


def _decoded(ds: Dataset, path: Path, slice_format: _SliceFormat) -> np.ndarray:
    """Decode a slice with pydicom to a C-contiguous little-endian array of stored values."""
    try:
        array = ds.pixel_array
    except Exception as exc:
        # Decoders raise many types (ValueError for truncated data, RuntimeError for a
        # missing plug-in, ...); all are re-raised with the file named.
        raise _undecodable(ds, path, exc) from exc
    if array.shape != slice_format.size:
        raise VolumeError(
            f"{path} decodes to pixels shaped {array.shape}, not Rows x Columns "
            f"{slice_format.size}; the file is damaged. Re-import it."
        )
    _, dtype = _ELEMENT_TYPES[slice_format.pixel]
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1)


def _slice_spacing(positions: Sequence[tuple[float, float, float]], files: Sequence[Path]) -> float:
    if len(positions) < 2:
        return 1.0
    distance = math.dist(positions[0], positions[1])
    if distance == 0:
        raise VolumeError(
            f"{files[0]} and {files[1]} share the Image Position (Patient) {positions[0]}; "
            "the slice spacing would be 0. Remove the duplicate slice from the range."
        )
    return distance


def _number(value: float) -> str:
    """A spacing for the header: plain decimal, no needless digits."""
    return format(value, ".10g")
