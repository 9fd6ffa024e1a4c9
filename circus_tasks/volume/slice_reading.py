"""Reading one DICOM slice with pydicom: its header (long values left in the file), its
format and position checked, its pixels decoded; every problem a :class:`VolumeError` that
names the file and what to do."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from circus_tasks.errors import VolumeError
from circus_tasks.volume.header import PIXEL_DATA_TAGS
from circus_tasks.volume.slice_format import ELEMENT_TYPE_NAMES, SliceFormat

ELEMENT_TYPES: dict[tuple[int, int], tuple[str, np.dtype[Any]]] = {
    pixel: (name, np.dtype(f"<{'i' if pixel[1] else 'u'}{pixel[0] // 8}"))
    for pixel, name in ELEMENT_TYPE_NAMES.items()
}
"""(Bits Allocated, Pixel Representation) -> MetaImage element type and voxel dtype."""

DEFER_BYTES = 2048
"""Header values longer than this are skipped when a slice is read and fetched only if needed:
the pixel data, and the odd long binary value."""


def open_slice(path: Path) -> io.BufferedReader:
    try:
        return path.open("rb")
    except OSError as exc:
        raise VolumeError(
            f"{path} cannot be read as DICOM ({type(exc).__name__}: {exc}); "
            "re-import the series or remove the file from the range."
        ) from exc


def read_header(source: io.BufferedReader, path: Path) -> Dataset:
    """Parse one file's header, leaving long values (the pixel data) in the file, or say why
    it cannot be a slice."""
    try:
        ds = pydicom.dcmread(source, defer_size=DEFER_BYTES)
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


def read_slice_format(ds: Dataset, path: Path) -> SliceFormat:
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
    if (bits, representation) not in ELEMENT_TYPES:
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
    return SliceFormat(size=(rows, columns), pixel=(bits, representation), spacing=(x, y))


def slice_position(ds: Dataset, path: Path) -> tuple[float, float, float]:
    position = ds.get("ImagePositionPatient")
    try:
        x, y, z = (float(value) for value in position)
    except (TypeError, ValueError) as exc:
        raise VolumeError(
            f"{path} has no usable Image Position (Patient) ({position!r}); slices cannot be "
            "placed in a volume without it. Choose a series with position information."
        ) from exc
    return (x, y, z)


def read_into(
    element: RawDataElement, source: io.BufferedReader, target: memoryview, ds: Dataset, path: Path
) -> None:
    if element.value is not None:
        target[:] = memoryview(element.value)[: len(target)]
        return
    source.seek(element.value_tell)
    if source.readinto(target) != len(target):
        raise undecodable(ds, path, "the file ends inside the pixel data")


def undecodable(ds: Dataset, path: Path, problem: object) -> VolumeError:
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
    return VolumeError(
        f"The pixel data of {path} cannot be decoded ({syntax}): {problem}. The file may be "
        "damaged: re-import the series from its source or remove the slice from the range; "
        "if its compression is not supported, convert the series to an uncompressed transfer "
        "syntax."
    )


def decoded_pixels(ds: Dataset, path: Path, slice_format: SliceFormat) -> np.ndarray:
    """Decode a slice with pydicom to a C-contiguous little-endian array of stored values.

    RLE goes through pydicom's own decoder: the pylibjpeg-rle plug-in, tried first when
    pylibjpeg is installed, aborts with a Rust panic (not a Python error) on some segments that
    decode longer than the image, which pydicom's decoder accepts.
    """
    try:
        if ds.file_meta.get("TransferSyntaxUID") == RLELossless:
            ds.pixel_array_options(decoding_plugin="pydicom")
        array = ds.pixel_array
    except Exception as exc:
        # Decoders raise many types (ValueError for truncated data, RuntimeError for a
        # missing plug-in, ...); all are re-raised with the file named.
        raise undecodable(ds, path, exc) from exc
    if array.shape != slice_format.size:
        raise VolumeError(
            f"{path} decodes to pixels shaped {array.shape}, not Rows x Columns "
            f"{slice_format.size}; the file is damaged. Re-import it."
        )
    _, dtype = ELEMENT_TYPES[slice_format.pixel]
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1)
