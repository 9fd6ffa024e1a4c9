"""CIRCUS CAD plug-in: what became dense between two time points (series 0 and series 1).

Self-contained (numpy, scipy, Pillow and the standard library): it reads only its input folder
and writes only its output folder.

Both series must cover the same region with the same grid: equal ``DimSize`` and
``ElementSpacing`` (no registration is done). Stored values become HU with each series' own
rescale (``N.json``: slope ``0028,1053``, intercept ``0028,1052``, common or per slice). Then
``difference = HU(1) - HU(0)``, and

- ``newDenseVolumeMl``: the volume of voxels whose HU rose by more than :data:`RISE_HU`;
- ``meanAbsDifferenceHU``: the mean of ``|difference|`` over the whole volume;
- ``lesionCandidates``: the largest connected region of risen voxels (at least
  :data:`MIN_REGION_MM3`), as one candidate on volume 1 at its voxel centroid ``[x, y, z]``.

``preview.png`` is the maximum-intensity projection along z of the positive difference
(0 to :data:`PREVIEW_MAX_RISE_HU`), with a red ring on the candidate.

Run it as ``python subtraction.py IN_DIR OUT_DIR`` or call :func:`run`.
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

RISE_HU = 100.0
"""A voxel is "newly dense" when its HU rose by more than this."""

MIN_REGION_MM3 = 5.0
"""Smaller risen regions are not reported as a candidate (noise, misalignment)."""

PREVIEW_MAX_RISE_HU = 500.0
"""A rise of this much or more is white in the preview."""

SLOPE_TAG = "0028,1053"
INTERCEPT_TAG = "0028,1052"

_NUMPY_CODES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2"}


class Series(NamedTuple):
    """One input series: stored values ``(slices, rows, columns)`` and spacing ``(x, y, z)``."""

    stored: np.ndarray
    spacing_xyz: tuple[float, float, float]


def _header(path: Path) -> dict[str, str]:
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, equals, value = line.partition("=")
        if equals:
            entries[key.strip()] = value.strip()
    return entries


def load_series(in_dir: Path, index: int) -> Series:
    """Read series ``index`` (``N.mhd`` and its raw file).

    Raises:
        FileNotFoundError: the header or its raw file is missing.
        ValueError: the header is incomplete or unsupported, or the raw size is wrong.
    """
    path = in_dir / f"{index}.mhd"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the subtraction plug-in compares two series and needs "
            f"{index}.mhd and {index}.raw (run the job on two series: earlier, then later)."
        )
    entries = _header(path)
    for key in ("DimSize", "ElementType", "ElementDataFile"):
        if key not in entries:
            raise ValueError(f"{path} has no {key} line")
    dims = [int(v) for v in entries["DimSize"].split()]
    steps = [float(v) for v in entries.get("ElementSpacing", "1 1 1").split()]
    if len(dims) not in (2, 3) or min(dims) < 1 or len(steps) != len(dims) or min(steps) <= 0:
        raise ValueError(f"{path}: bad DimSize {dims} or ElementSpacing {steps}")
    cols, rows, slices = (dims + [1])[:3]
    sx, sy, sz = (steps + [1.0])[:3]
    code = _NUMPY_CODES.get(entries["ElementType"])
    if code is None:
        raise ValueError(f"{path}: unsupported ElementType {entries['ElementType']}")
    byte_order = ">" if entries.get("ElementByteOrderMSB", "").lower() in ("true", "1") else "<"
    raw = in_dir / entries["ElementDataFile"]
    if not raw.is_file():
        raise FileNotFoundError(f"{raw} (named by {path}) not found")
    data = np.fromfile(raw, dtype=np.dtype(byte_order + code))
    if data.size != cols * rows * slices:
        raise ValueError(f"{raw}: {data.size} values, but DimSize needs {cols * rows * slices}")
    return Series(data.reshape(slices, rows, cols), (sx, sy, sz))


def _scalar(value: Any) -> float | None:
    """First number of an attribute value (number, string, backslash list, list, DICOM JSON)."""
    if isinstance(value, dict):
        value = value.get("Value")
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str):
        value = value.split("\\")[0].strip() or None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def hounsfield(series: Series, attributes_path: Path) -> np.ndarray:
    """HU of a series (float32) using the rescale in ``N.json``; identity if it is missing."""
    slices = series.stored.shape[0]
    factors = {SLOPE_TAG: np.ones(slices), INTERCEPT_TAG: np.zeros(slices)}
    if attributes_path.is_file():
        document = json.loads(attributes_path.read_text(encoding="utf-8"))
        common = document.get("common") or {}
        unique = (document.get("unique") or [])[:slices]
        for tag, values in factors.items():
            shared = _scalar(common.get(tag))
            if shared is not None:
                values[:] = shared
            for number, own_attributes in enumerate(unique):
                own = _scalar((own_attributes or {}).get(tag))
                if own is not None:
                    values[number] = own
    slope = factors[SLOPE_TAG].astype(np.float32)[:, None, None]
    intercept = factors[INTERCEPT_TAG].astype(np.float32)[:, None, None]
    return series.stored.astype(np.float32) * slope + intercept


def check_compatible(earlier: Series, later: Series) -> None:
    """Refuse two series that do not share one voxel grid.

    Raises:
        ValueError: the shapes or the spacings differ.
    """
    if earlier.stored.shape != later.stored.shape:
        (s0, r0, c0), (s1, r1, c1) = earlier.stored.shape, later.stored.shape
        raise ValueError(
            f"Series 0 is {c0} x {r0} x {s0} voxels but series 1 is {c1} x {r1} x {s1}: "
            "subtraction needs two series of the same size (same region, same reconstruction)."
        )
    if not np.allclose(earlier.spacing_xyz, later.spacing_xyz, rtol=1e-3, atol=1e-4):
        raise ValueError(
            f"Series 0 spacing {earlier.spacing_xyz} differs from series 1 spacing "
            f"{later.spacing_xyz}: subtraction needs the same voxel spacing in both."
        )


def compare(
    hu_earlier: np.ndarray, hu_later: np.ndarray, spacing_xyz: tuple[float, float, float]
) -> dict[str, Any]:
    """The ``results`` object for two HU volumes on the same grid.

    Returns:
        ``newDenseVolumeMl``, ``newDenseVoxels``, ``meanAbsDifferenceHU``, ``riseThresholdHU``,
        ``newRegions`` and ``lesionCandidates`` (empty, or the largest risen region on
        ``volumeId`` 1 with ``location`` ``[x, y, z]`` rounded to whole voxels and
        ``volumeSize`` in mm^3).
    """
    difference = hu_later - hu_earlier
    risen = difference > RISE_HU
    voxel_mm3 = float(np.prod(spacing_xyz))
    labels, regions = ndimage.label(risen)
    candidates: list[dict[str, Any]] = []
    if regions:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        largest = int(np.argmax(sizes))
        volume_mm3 = float(sizes[largest]) * voxel_mm3
        if volume_mm3 >= MIN_REGION_MM3:
            region = labels == largest
            cz, cy, cx = ndimage.center_of_mass(region)
            mean_rise = float(difference[region].mean())
            confidence = (1.0 - math.exp(-volume_mm3 / 100.0)) * min(1.0, mean_rise / 400.0)
            candidates.append(
                {
                    "rank": 1,
                    "volumeId": 1,
                    "location": [round(cx), round(cy), round(cz)],
                    "volumeSize": round(volume_mm3, 2),
                    "confidence": round(confidence, 4),
                    "meanRiseHU": round(mean_rise, 1),
                }
            )
    return {
        "newDenseVolumeMl": round(int(risen.sum()) * voxel_mm3 / 1000.0, 4),
        "newDenseVoxels": int(risen.sum()),
        "meanAbsDifferenceHU": round(float(np.abs(difference).mean(dtype=np.float64)), 3),
        "riseThresholdHU": RISE_HU,
        "newRegions": int(regions),
        "lesionCandidates": candidates,
    }


def write_preview(difference: np.ndarray, candidates: list[dict[str, Any]], path: Path) -> None:
    """MIP along z of the positive difference, with a red ring on each candidate."""
    projection = np.clip(difference, 0.0, None).max(axis=0)
    gray = np.rint(np.clip(projection * (255.0 / PREVIEW_MAX_RISE_HU), 0, 255)).astype(np.uint8)
    image = Image.fromarray(gray).convert("RGB")
    pen = ImageDraw.Draw(image)
    for candidate in candidates:
        x, y, _ = candidate["location"]
        pen.ellipse((x - 5, y - 5, x + 5, y + 5), outline=(255, 0, 0))
    image.save(path, format="PNG")


def run(in_dir: Path, out_dir: Path) -> None:
    """Compare series 1 with series 0 of ``in_dir``; write the results to ``out_dir``.

    Raises:
        FileNotFoundError: ``0.mhd``, ``1.mhd`` or a raw file is missing.
        ValueError: a header or raw file is malformed, or the two grids differ.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    earlier, later = load_series(in_dir, 0), load_series(in_dir, 1)
    check_compatible(earlier, later)
    slices, rows, cols = earlier.stored.shape
    print(f"Series 0 and 1: {cols} x {rows} x {slices} voxels each", flush=True)
    hu_earlier = hounsfield(earlier, in_dir / "0.json")
    hu_later = hounsfield(later, in_dir / "1.json")
    results = compare(hu_earlier, hu_later, earlier.spacing_xyz)
    print(
        f"Rise > {RISE_HU:g} HU: {results['newDenseVolumeMl']:g} ml in {results['newRegions']} "
        f"region(s); mean |difference| {results['meanAbsDifferenceHU']:g} HU",
        flush=True,
    )
    for candidate in results["lesionCandidates"]:
        print(
            f"  largest new region at {candidate['location']}: {candidate['volumeSize']:g} mm3",
            flush=True,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    window = {"level": 40, "width": 400}
    document = {
        "results": results,
        "metadata": {
            "displayOptions": [
                {"volumeId": 0, "window": window},
                {"volumeId": 1, "window": window},
            ]
        },
    }
    (out_dir / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    write_preview(hu_later - hu_earlier, results["lesionCandidates"], out_dir / "preview.png")
    print(f"Wrote results.json and preview.png to {out_dir}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python subtraction.py IN_DIR OUT_DIR")
    run(Path(sys.argv[1]), Path(sys.argv[2]))
