"""The plug-in input volume: one series range written as ``N.raw``, ``N.mhd`` and ``N.json``.

This is the pre-processing half of the CIRCUS plug-in contract (spec section 6). The slices are
read once each with pydicom; each slice's stored pixel values go straight to the raw file and its
header becomes a plain JSON object, so memory holds one slice's pixels at a time plus the small
header objects. The three files appear only when all of them were written.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import PersonName

from circus_tasks.errors import VolumeError

__all__ = ["IDENTIFYING_KEYWORDS", "IDENTIFYING_TAGS", "VolumeInfo", "write_volume"]

IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionalDepartmentName",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "OperatorsName",
    "OperatorIdentificationSequence",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "RequestingPhysicianIdentificationSequence",
    "RequestingPhysician",
    "RequestingService",
)
"""Attributes never written to ``N.json``, at any depth.

The spec's list (institution name, address and code sequence, department, physicians of record,
performing and reading physicians, operators' name, patient's name, ID and birth date,
requesting physician and service), plus the identification sequences that name the same
people, as CIRCUS itself drops them.
"""


def _tag_of(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - guards the table above against typos
        raise ValueError(f"{keyword} is not a DICOM keyword")
    return tag


IDENTIFYING_TAGS: frozenset[int] = frozenset(_tag_of(k) for k in IDENTIFYING_KEYWORDS)
"""The tags of :data:`IDENTIFYING_KEYWORDS`, as ``0xggggeeee`` integers."""

_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_ELEMENT_TYPES: dict[tuple[int, int], tuple[str, np.dtype[Any]]] = {
    (8, 0): ("MET_UCHAR", np.dtype("<u1")),
    (8, 1): ("MET_CHAR", np.dtype("<i1")),
    (16, 0): ("MET_USHORT", np.dtype("<u2")),
    (16, 1): ("MET_SHORT", np.dtype("<i2")),
}


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
    headers: list[dict[str, Any]] = []
    positions: list[tuple[float, float, float]] = []
    first: _SliceFormat | None = None
    with temps["raw"].open("xb") as raw:
        for path in files:
            ds = _read(path)
            slice_format = _slice_format(ds, path)
            if first is None:
                first = slice_format
            elif slice_format.size != first.size or slice_format.pixel != first.pixel:
                raise VolumeError(
                    f"{path} is {slice_format.describe()} but the first slice {files[0]} is "
                    f"{first.describe()}; every slice of a volume must match. "
                    "Choose a range that holds one kind of image."
                )
            positions.append(_position(ds, path))
            pixels = _stored_pixels(ds, path, slice_format)
            raw.write(pixels.data)
            headers.append(_dataset_to_json(ds, include_private))
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


def _read(path: Path) -> Dataset:
    """Read one file completely, or say why it cannot be a slice."""
    try:
        return pydicom.dcmread(path)
    except Exception as exc:
        # Re-raised with the file named; nothing is swallowed, and BaseException
        # (cancellation, interrupts) passes through untouched.
        raise VolumeError(
            f"{path} cannot be read as DICOM ({type(exc).__name__}: {exc}); "
            "re-import the series or remove the file from the range."
        ) from exc


def _slice_format(ds: Dataset, path: Path) -> _SliceFormat:
    """Check that a slice is a single-frame greyscale image and describe its pixels."""
    if not any(tag in ds for tag in _PIXEL_DATA_TAGS):
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


def _stored_pixels(ds: Dataset, path: Path, slice_format: _SliceFormat) -> np.ndarray:
    """Decode a slice to a C-contiguous little-endian array of its stored values."""
    try:
        array = ds.pixel_array
    except Exception as exc:
        # Decoders raise many types (ValueError for truncated data, RuntimeError for a
        # missing plug-in, ...); all are re-raised with the file named.
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
        raise VolumeError(
            f"The pixel data of {path} cannot be decoded ({syntax}): {exc}. "
            "Re-import the series, or convert it to an uncompressed transfer syntax."
        ) from exc
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


def _split_common(headers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Move attributes equal in every slice to ``common``; the rest stay per slice."""
    first, rest = headers[0], headers[1:]
    common = {
        key: value
        for key, value in first.items()
        if all(key in other and other[key] == value for other in rest)
    }
    unique = [{k: v for k, v in header.items() if k not in common} for header in headers]
    return {"common": common, "unique": unique}


def _key(tag: int) -> str:
    tag = Tag(tag)
    return f"{tag.group:04x},{tag.element:04x}"


def _dataset_to_json(ds: Dataset, include_private: bool) -> dict[str, Any]:
    """Turn a dataset (or a sequence item) into a plain, de-identified JSON object."""
    result: dict[str, Any] = {}
    for elem in ds:
        tag = elem.tag
        if (
            tag.group == 0x0002
            or tag.element == 0x0000
            or tag in _PIXEL_DATA_TAGS
            or tag in IDENTIFYING_TAGS
            or (tag.is_private and not include_private)
            or _is_binary(elem.VR)
        ):
            continue
        result[_key(tag)] = _element_value(elem, include_private)
    return result


def _is_binary(vr: str) -> bool:
    # Ambiguous VRs such as "OB or OW" count as binary when any choice is binary.
    return any(choice in _BINARY_VRS for choice in str(vr).split(" or "))


def _element_value(elem: DataElement, include_private: bool) -> Any:
    if elem.VR == "SQ":
        return [_dataset_to_json(item, include_private) for item in elem.value]
    value = elem.value
    if isinstance(value, MultiValue | list | tuple):
        return [_scalar(item, elem.VR) for item in value]
    return _scalar(value, elem.VR)


def _scalar(value: Any, vr: str) -> Any:
    """One value as plain JSON: numbers as numbers, names and text as strings."""
    if value is None:
        return None
    if vr == "AT":
        return _key(BaseTag(value))
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, int):  # includes IS
        return int(value)
    if isinstance(value, float | Decimal):  # includes DS
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)
