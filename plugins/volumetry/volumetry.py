"""CIRCUS CAD plug-in: body volume and dense-tissue volume of volume 0, in millilitres.

Self-contained (numpy, scipy, Pillow and the standard library): it reads only its input folder
and writes only its output folder.

Method, with fixed thresholds (see :data:`BODY_THRESHOLD_HU`, :data:`DENSE_THRESHOLD_HU`):

1. stored values become HU with the rescale slope ``0028,1053`` and intercept ``0028,1052`` of
   ``0.json`` (common or per slice; without ``0.json`` the stored values are taken as HU);
2. the body is the largest 3-D connected component of voxels above -500 HU, with the holes of
   each axial slice filled (air inside the body, such as lungs or bowel gas, belongs to it);
3. dense tissue is every body voxel above 200 HU (bone, contrast, calcification);
4. each volume is its voxel count times the voxel volume from ``ElementSpacing``.

Output: ``results.json`` (``bodyVolumeMl``, ``denseVolumeMl``, ``voxelVolumeMm3``,
``thresholdsHU``, voxel counts) and ``preview.png``: the middle slice, soft-tissue window, with
the body outline in green and dense voxels tinted red.

Run it as ``python volumetry.py IN_DIR OUT_DIR`` or call :func:`run`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

BODY_THRESHOLD_HU = -500.0
"""Voxels above this may be body; the largest connected group of them is the body."""

DENSE_THRESHOLD_HU = 200.0
"""Body voxels above this count as dense tissue."""

WINDOW_LEVEL = 40
WINDOW_WIDTH = 400

SLOPE_TAG = "0028,1053"
INTERCEPT_TAG = "0028,1052"

_METAIMAGE_DTYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2"}


class Series(NamedTuple):
    """Stored values ``(slices, rows, columns)`` of one input series and its spacing (x, y, z)."""

    stored: np.ndarray
    spacing_xyz: tuple[float, float, float]


def load_series(in_dir: Path, index: int = 0) -> Series:
    """Read ``N.mhd`` and the raw file it names.

    Raises:
        FileNotFoundError: the header or the raw file is missing.
        ValueError: the header is incomplete or unsupported, or the raw size is wrong.
    """
    header_path = in_dir / f"{index}.mhd"
    if not header_path.is_file():
        raise FileNotFoundError(
            f"{header_path} not found: the volumetry plug-in needs series {index} "
            f"({index}.mhd and {index}.raw) in its input folder."
        )
    fields = {}
    for line in header_path.read_text(encoding="utf-8").splitlines():
        name, equals, value = line.partition("=")
        if equals:
            fields[name.strip()] = value.strip()
    missing = [k for k in ("DimSize", "ElementType", "ElementDataFile") if k not in fields]
    if missing:
        raise ValueError(f"{header_path} lacks {', '.join(missing)}")
    sizes = [int(v) for v in fields["DimSize"].split()]
    if len(sizes) not in (2, 3) or min(sizes) < 1:
        raise ValueError(f"{header_path}: DimSize must be 'columns rows slices', got {sizes}")
    cols, rows, slices = (sizes + [1])[:3]
    spacing = [float(v) for v in fields.get("ElementSpacing", "1 1 1").split()]
    if len(spacing) not in (2, 3) or min(spacing) <= 0:
        raise ValueError(f"{header_path}: ElementSpacing must be three positive numbers")
    spacing = (spacing + [1.0])[:3]
    code = _METAIMAGE_DTYPES.get(fields["ElementType"])
    if code is None:
        raise ValueError(
            f"{header_path}: ElementType {fields['ElementType']} is not one of "
            f"{', '.join(_METAIMAGE_DTYPES)}"
        )
    msb = fields.get("ElementByteOrderMSB", "False").lower() in ("true", "1")
    raw_path = in_dir / fields["ElementDataFile"]
    if not raw_path.is_file():
        raise FileNotFoundError(f"{raw_path}, named by {header_path}, not found")
    values = np.fromfile(raw_path, dtype=np.dtype((">" if msb else "<") + code))
    if values.size != cols * rows * slices:
        raise ValueError(
            f"{raw_path} has {values.size} values; DimSize {cols} {rows} {slices} "
            f"needs {cols * rows * slices}"
        )
    return Series(values.reshape(slices, rows, cols), (spacing[0], spacing[1], spacing[2]))


def _number(value: Any) -> float | None:
    """A number from an attribute value: 2, "2", "2\\3", [2], or DICOM JSON {"Value": [2]}."""
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


def to_hu(stored: np.ndarray, attributes_path: Path) -> np.ndarray:
    """Apply the (common or per-slice) rescale of ``N.json`` to stored values; float32 HU."""
    slices = stored.shape[0]
    slope = np.ones(slices, dtype=np.float32)
    intercept = np.zeros(slices, dtype=np.float32)
    if attributes_path.is_file():
        document = json.loads(attributes_path.read_text(encoding="utf-8"))
        common = document.get("common") or {}
        per_slice = (document.get("unique") or [])[:slices]
        for tag, target in ((SLOPE_TAG, slope), (INTERCEPT_TAG, intercept)):
            shared = _number(common.get(tag))
            if shared is not None:
                target[:] = shared
            for number, attributes in enumerate(per_slice):
                own = _number((attributes or {}).get(tag))
                if own is not None:
                    target[number] = own
    else:
        print(f"{attributes_path.name} not found: stored values are taken as HU", flush=True)
    return stored.astype(np.float32) * slope[:, None, None] + intercept[:, None, None]


def find_body(hu: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """The largest connected component above ``threshold_hu``, holes filled slice by slice."""
    labels, count = ndimage.label(hu > threshold_hu)
    if count == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body = labels == int(np.argmax(sizes))
    for number in range(body.shape[0]):
        body[number] = ndimage.binary_fill_holes(body[number])
    return body


def measure(
    hu: np.ndarray, body: np.ndarray, spacing_xyz: tuple[float, float, float]
) -> dict[str, Any]:
    """Body and dense-tissue volumes of a HU volume, as the ``results`` object.

    Args:
        hu: Volume in HU, shape ``(slices, rows, columns)``.
        body: The body mask from :func:`find_body`.
        spacing_xyz: Voxel spacing in mm ``(x, y, z)``.

    Returns:
        ``bodyVolumeMl``, ``denseVolumeMl``, ``voxelVolumeMm3``, ``thresholdsHU``,
        ``bodyVoxels`` and ``denseVoxels``.
    """
    voxel_mm3 = float(np.prod(spacing_xyz))
    body_voxels = int(body.sum())
    dense_voxels = int((body & (hu > DENSE_THRESHOLD_HU)).sum())
    return {
        "bodyVolumeMl": round(body_voxels * voxel_mm3 / 1000.0, 3),
        "denseVolumeMl": round(dense_voxels * voxel_mm3 / 1000.0, 3),
        "voxelVolumeMm3": round(voxel_mm3, 6),
        "thresholdsHU": {"body": BODY_THRESHOLD_HU, "dense": DENSE_THRESHOLD_HU},
        "bodyVoxels": body_voxels,
        "denseVoxels": dense_voxels,
    }


def write_preview(hu: np.ndarray, body_mask: np.ndarray, png_path: Path) -> None:
    """Middle slice in a soft-tissue window: body outline green, dense voxels tinted red."""
    middle = hu.shape[0] // 2
    plane = hu[middle]
    body = body_mask[middle]
    low = WINDOW_LEVEL - WINDOW_WIDTH / 2
    gray = np.clip((plane - low) * (255.0 / WINDOW_WIDTH), 0, 255).astype(np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    dense = body & (plane > DENSE_THRESHOLD_HU)
    rgb[dense, 0] = 255
    rgb[dense, 1] //= 2
    rgb[dense, 2] //= 2
    outline = body & ~ndimage.binary_erosion(body)
    rgb[outline] = (0, 255, 0)
    Image.fromarray(rgb).save(png_path, format="PNG")


def run(in_dir: Path, out_dir: Path) -> None:
    """Measure volume 0 of ``in_dir``; write ``results.json`` and ``preview.png`` to ``out_dir``.

    Raises:
        FileNotFoundError: ``0.mhd`` or its raw file is missing.
        ValueError: the header or the raw data is malformed.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    series = load_series(in_dir, 0)
    slices, rows, cols = series.stored.shape
    print(
        f"Volume 0: {cols} x {rows} x {slices} voxels, spacing "
        + " x ".join(f"{s:g}" for s in series.spacing_xyz)
        + " mm",
        flush=True,
    )
    hu = to_hu(series.stored, in_dir / "0.json")
    body = find_body(hu)
    results = measure(hu, body, series.spacing_xyz)
    print(
        f"Body (> {BODY_THRESHOLD_HU:g} HU): {results['bodyVolumeMl']:g} ml; "
        f"dense (> {DENSE_THRESHOLD_HU:g} HU): {results['denseVolumeMl']:g} ml",
        flush=True,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "results": results,
        "metadata": {
            "displayOptions": [
                {"volumeId": 0, "window": {"level": WINDOW_LEVEL, "width": WINDOW_WIDTH}}
            ]
        },
    }
    (out_dir / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    write_preview(hu, body, out_dir / "preview.png")
    print(f"Wrote results.json and preview.png to {out_dir}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python volumetry.py IN_DIR OUT_DIR")
    run(Path(sys.argv[1]), Path(sys.argv[2]))
