"""Example CIRCUS CAD plug-in: report bright blobs of volume 0 as lesion candidates.

The plug-in sees only its input folder and its output folder (CIRCUS mounts them at
``/circus/in`` and ``/circus/out``), so it depends on nothing but numpy, scipy, Pillow and the
standard library.

Input (written by pre-processing): ``0.mhd`` (MetaImage header), the raw file it names
(stored values, little-endian, ``(slices, rows, columns)``), and optionally ``0.json`` (DICOM
attributes as ``{"common": {...}, "unique": [{...}, ...]}``), from which the rescale slope
``0028,1053`` and intercept ``0028,1052`` turn stored values into Hounsfield units.

Output: ``results.json`` with ``results.lesionCandidates`` and ``metadata.displayOptions``, and
``preview.png``, a maximum-intensity projection along z with a marker on each candidate.

Run it as ``python lesion_candidates.py IN_DIR OUT_DIR``, or call :func:`run`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

THRESHOLD_HU = 200.0
"""Voxels brighter than this (in HU) may belong to a candidate."""

MIN_VOLUME_MM3 = 10.0
"""Connected components smaller than this are dropped as noise."""

WINDOW_LEVEL = 40
WINDOW_WIDTH = 400

_ELEMENT_TYPES: dict[str, str] = {
    "MET_UCHAR": "u1",
    "MET_CHAR": "i1",
    "MET_USHORT": "u2",
    "MET_SHORT": "i2",
}

RESCALE_SLOPE_TAG = "0028,1053"
RESCALE_INTERCEPT_TAG = "0028,1052"


class Volume(NamedTuple):
    """One input volume.

    (A ``NamedTuple`` rather than a dataclass: runners may load this file with
    ``importlib.util.spec_from_file_location`` without registering it in ``sys.modules``,
    which dataclasses with postponed annotations cannot cope with.)

    Attributes:
        stored: Stored values, shape ``(slices, rows, columns)``.
        spacing_xyz: Voxel spacing in mm ``(x, y, z)``.
    """

    stored: np.ndarray
    spacing_xyz: tuple[float, float, float]


def read_mhd(mhd_path: Path) -> Volume:
    """Read a MetaImage header and the raw data file it names.

    Args:
        mhd_path: Path of the ``.mhd`` file.

    Returns:
        The volume of stored values.

    Raises:
        FileNotFoundError: The header or its data file does not exist.
        ValueError: The header lacks a key, names an unsupported element type, or the data
            file's size does not match ``DimSize``.
    """
    if not mhd_path.is_file():
        raise FileNotFoundError(
            f"Input volume header {mhd_path} not found: this plug-in needs volume 0 "
            "(0.mhd and its raw file) in the input folder."
        )
    header: dict[str, str] = {}
    for line in mhd_path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    for key in ("DimSize", "ElementType", "ElementDataFile"):
        if key not in header:
            raise ValueError(f"{mhd_path} has no {key} line")

    dims = [int(v) for v in header["DimSize"].split()]
    if len(dims) == 2:
        dims.append(1)
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"{mhd_path}: DimSize must be 'columns rows slices', got {dims}")
    spacing = [float(v) for v in header.get("ElementSpacing", "1 1 1").split()]
    if len(spacing) == 2:
        spacing.append(1.0)
    if len(spacing) != 3:
        raise ValueError(f"{mhd_path}: ElementSpacing must be three numbers, got {spacing}")

    element_type = header["ElementType"]
    if element_type not in _ELEMENT_TYPES:
        raise ValueError(
            f"{mhd_path}: ElementType {element_type} is not supported "
            f"(use one of {', '.join(_ELEMENT_TYPES)})"
        )
    big_endian = header.get("ElementByteOrderMSB", "False").lower() in ("true", "1")
    dtype = np.dtype(("<", ">")[big_endian] + _ELEMENT_TYPES[element_type])

    data_name = header["ElementDataFile"]
    if data_name.upper() in ("LOCAL", "LIST") or " " in data_name:
        raise ValueError(f"{mhd_path}: ElementDataFile must name one raw file, got {data_name}")
    raw_path = mhd_path.parent / data_name
    if not raw_path.is_file():
        raise FileNotFoundError(f"Raw data file {raw_path} named by {mhd_path} not found")

    cols, rows, slices = dims
    count = cols * rows * slices
    data = np.fromfile(raw_path, dtype=dtype)
    if data.size != count:
        raise ValueError(
            f"{raw_path} holds {data.size} values of {element_type}, "
            f"but DimSize {cols} x {rows} x {slices} needs {count}"
        )
    stored = data.reshape(slices, rows, cols)
    sx, sy, sz = spacing
    return Volume(stored=stored, spacing_xyz=(sx, sy, sz))


def _as_number(value: Any) -> float | None:
    """One number from a JSON attribute value: ``-1024``, ``"-1024"``, ``[-1024]``, DICOM JSON."""
    if isinstance(value, dict):
        value = value.get("Value")
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str):
        value = value.split("\\")[0].strip()
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_rescale(json_path: Path, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice rescale slope and intercept from the input attribute file.

    Args:
        json_path: Path of ``0.json``; if it does not exist, slope 1 and intercept 0 are used.
        slices: Number of slices of the volume.

    Returns:
        ``(slopes, intercepts)``, two float arrays of length ``slices``.
    """
    slopes = np.ones(slices)
    intercepts = np.zeros(slices)
    if not json_path.is_file():
        print(f"{json_path.name} not found: assuming stored values are already HU")
        return slopes, intercepts
    attributes = json.loads(json_path.read_text(encoding="utf-8"))
    common = attributes.get("common") or {}
    unique = attributes.get("unique") or []
    for target, tag in ((slopes, RESCALE_SLOPE_TAG), (intercepts, RESCALE_INTERCEPT_TAG)):
        shared = _as_number(common.get(tag))
        if shared is not None:
            target[:] = shared
        for index, per_slice in enumerate(unique[:slices]):
            own = _as_number((per_slice or {}).get(tag))
            if own is not None:
                target[index] = own
    return slopes, intercepts


def to_hu(volume: Volume, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """Stored values to Hounsfield units, slice by slice.

    Args:
        volume: The input volume.
        slopes: Rescale slope of each slice.
        intercepts: Rescale intercept of each slice.

    Returns:
        A float32 array of the volume's shape.
    """
    hu = volume.stored.astype(np.float32)
    hu *= slopes.astype(np.float32)[:, None, None]
    hu += intercepts.astype(np.float32)[:, None, None]
    return hu


def _confidence(volume_mm3: float, mean_hu: float) -> float:
    """A 0..1 score: bigger and brighter blobs score higher."""
    size_score = 1.0 - math.exp(-volume_mm3 / 100.0)
    contrast_score = min(1.0, max(0.0, (mean_hu - THRESHOLD_HU) / 300.0))
    return round(size_score * (0.5 + 0.5 * contrast_score), 4)


def find_candidates(
    hu: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    *,
    threshold_hu: float = THRESHOLD_HU,
    min_volume_mm3: float = MIN_VOLUME_MM3,
) -> list[dict[str, Any]]:
    """Bright connected components of a volume, as CIRCUS lesion candidates.

    Args:
        hu: Volume in HU, shape ``(slices, rows, columns)``.
        spacing_xyz: Voxel spacing in mm ``(x, y, z)``.
        threshold_hu: Voxels brighter than this are candidate voxels.
        min_volume_mm3: Components smaller than this are dropped.

    Returns:
        Candidates sorted by confidence then size, largest first, each with ``rank`` (from 1),
        ``volumeId`` 0, ``location`` ``[x, y, z]`` (rounded voxel centroid: column, row,
        slice), ``volumeSize`` in mm^3 and ``confidence`` in 0..1.
    """
    mask = hu > threshold_hu
    labels, count = ndimage.label(mask)
    if count == 0:
        return []
    ids = np.arange(1, count + 1)
    voxel_mm3 = float(np.prod(spacing_xyz))
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, ids)
    means = ndimage.mean(hu, labels, ids)
    centroids = ndimage.center_of_mass(mask, labels, ids)

    found: list[dict[str, Any]] = []
    for size, mean, (cz, cy, cx) in zip(sizes, means, centroids, strict=True):
        volume_mm3 = float(size) * voxel_mm3
        if volume_mm3 < min_volume_mm3:
            continue
        found.append(
            {
                "volumeId": 0,
                "location": [round(cx), round(cy), round(cz)],
                "volumeSize": round(volume_mm3, 2),
                "confidence": _confidence(volume_mm3, float(mean)),
            }
        )
    found.sort(key=lambda c: (-c["confidence"], -c["volumeSize"]))
    return [{"rank": rank, **c} for rank, c in enumerate(found, start=1)]


def write_preview(hu: np.ndarray, candidates: list[dict[str, Any]], png_path: Path) -> None:
    """Save a windowed maximum-intensity projection along z with a marker per candidate.

    Args:
        hu: Volume in HU, shape ``(slices, rows, columns)``.
        candidates: As returned by :func:`find_candidates`.
        png_path: Where to write the PNG (``columns`` wide, ``rows`` high).
    """
    mip = hu.max(axis=0)
    low = WINDOW_LEVEL - WINDOW_WIDTH / 2
    gray = np.clip((mip - low) / WINDOW_WIDTH * 255.0, 0, 255).astype(np.uint8)
    image = Image.fromarray(gray).convert("RGB")
    draw = ImageDraw.Draw(image)
    for candidate in candidates:
        x, y, _ = candidate["location"]
        r = 4
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 0, 0))
        draw.point((x, y), fill=(255, 0, 0))
    image.save(png_path, format="PNG")


def run(in_dir: Path, out_dir: Path) -> None:
    """Find lesion candidates in volume 0 of ``in_dir`` and write the results to ``out_dir``.

    Args:
        in_dir: The job's input folder (``0.mhd``, its raw file, optionally ``0.json``).
        out_dir: The output folder; ``results.json`` and ``preview.png`` are written there.

    Raises:
        FileNotFoundError: ``0.mhd`` or its raw file is missing.
        ValueError: The volume header or data is malformed.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    volume = read_mhd(in_dir / "0.mhd")
    slices, rows, cols = volume.stored.shape
    sx, sy, sz = volume.spacing_xyz
    print(
        f"Volume 0: {cols} x {rows} x {slices} voxels of {volume.stored.dtype}, "
        f"spacing {sx:g} x {sy:g} x {sz:g} mm",
        flush=True,
    )
    slopes, intercepts = read_rescale(in_dir / "0.json", slices)
    hu = to_hu(volume, slopes, intercepts)
    candidates = find_candidates(hu, volume.spacing_xyz)
    print(f"Found {len(candidates)} candidate(s) above {THRESHOLD_HU:g} HU", flush=True)
    for c in candidates:
        print(
            f"  #{c['rank']}: location {c['location']}, {c['volumeSize']:g} mm3, "
            f"confidence {c['confidence']:.3f}",
            flush=True,
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "results": {"lesionCandidates": candidates},
        "metadata": {
            "displayOptions": [
                {"volumeId": 0, "window": {"level": WINDOW_LEVEL, "width": WINDOW_WIDTH}}
            ]
        },
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_preview(hu, candidates, out_dir / "preview.png")
    print(f"Wrote results.json and preview.png to {out_dir}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) not in (1, 3):
        sys.exit(
            "usage: python lesion_candidates.py [IN_DIR OUT_DIR]  (default /circus/in /circus/out)"
        )
    arguments = sys.argv[1:] or ["/circus/in", "/circus/out"]
    run(Path(arguments[0]), Path(arguments[1]))
