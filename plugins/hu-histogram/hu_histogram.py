"""CIRCUS CAD plug-in: the Hounsfield-unit histogram of volume 0 (standard library only).

Run as its own process, the way the manifest's command runner starts it::

    python3 hu_histogram.py IN_DIR OUT_DIR

It needs nothing but the Python standard library (the system interpreter may have no numpy):
the raw file is read in one go into an ``array.array`` and the stored values are counted with
``collections.Counter``, so a volume of tens of MB takes seconds, not minutes.

Stored values become HU with the rescale slope ``0028,1053`` and intercept ``0028,1052`` of
``0.json`` (common or per slice; without ``0.json`` stored values are taken as HU). The
histogram has bins of 100 HU starting at -1000, -900, ..., 1900; lower values count in the first
bin and values of 2000 HU or more in the last. ``results.json`` also gives the mean, minimum and
maximum HU and the voxel count. A missing or malformed input makes it print the reason on
stderr and exit with status 1.
"""

from __future__ import annotations

import array
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

BIN_WIDTH_HU = 100
FIRST_BIN_HU = -1000
END_HU = 2000
BIN_STARTS_HU = list(range(FIRST_BIN_HU, END_HU, BIN_WIDTH_HU))

SLOPE_TAG = "0028,1053"
INTERCEPT_TAG = "0028,1052"

# MetaImage element type -> array typecode ("h"/"H" are 2 bytes on every CPython platform).
_TYPECODES = {"MET_UCHAR": "B", "MET_CHAR": "b", "MET_USHORT": "H", "MET_SHORT": "h"}


def read_header(path: Path) -> dict[str, str]:
    """The ``key = value`` lines of a MetaImage header.

    Raises:
        FileNotFoundError: the header does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: hu-histogram needs volume 0 (0.mhd and 0.raw) in its input folder."
        )
    fields = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, equals, value = line.partition("=")
        if equals:
            fields[key.strip()] = value.strip()
    return fields


def read_volume(mhd_path: Path) -> tuple[array.array[int], int]:
    """Stored values of a volume, slice after slice, and the number of voxels per slice.

    Raises:
        FileNotFoundError: the header or its raw file is missing.
        ValueError: the header lacks a key or is unsupported, or the raw size is wrong.
    """
    fields = read_header(mhd_path)
    for key in ("DimSize", "ElementType", "ElementDataFile"):
        if key not in fields:
            raise ValueError(f"{mhd_path} has no {key} line")
    dims = [int(part) for part in fields["DimSize"].split()]
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise ValueError(f"{mhd_path}: DimSize must be 'columns rows slices', got {dims}")
    cols, rows, slices = (dims + [1])[:3]
    typecode = _TYPECODES.get(fields["ElementType"])
    if typecode is None:
        raise ValueError(
            f"{mhd_path}: ElementType {fields['ElementType']} is not supported "
            f"(one of {', '.join(_TYPECODES)})"
        )
    raw_path = mhd_path.parent / fields["ElementDataFile"]
    if not raw_path.is_file():
        raise FileNotFoundError(f"{raw_path}, named by {mhd_path}, not found")
    values = array.array(typecode)
    data = raw_path.read_bytes()
    expected = cols * rows * slices * values.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{raw_path} has {len(data)} bytes, but DimSize {cols} {rows} {slices} of "
            f"{fields['ElementType']} needs {expected}"
        )
    values.frombytes(data)
    file_is_big_endian = fields.get("ElementByteOrderMSB", "False").lower() in ("true", "1")
    if values.itemsize > 1 and file_is_big_endian != (sys.byteorder == "big"):
        values.byteswap()
    return values, cols * rows


def _number(value: Any) -> float | None:
    """The first number of an attribute value: 2, "2", "2\\3", [2] or {"Value": [2]}."""
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


def read_rescale(json_path: Path, slices: int) -> list[tuple[float, float]]:
    """``(slope, intercept)`` of every slice; ``(1, 0)`` throughout without ``0.json``."""
    if not json_path.is_file():
        print(f"{json_path.name} not found: stored values are taken as HU", flush=True)
        return [(1.0, 0.0)] * slices
    document = json.loads(json_path.read_text(encoding="utf-8"))
    common = document.get("common") or {}
    unique = list(document.get("unique") or [])[:slices]
    unique += [{}] * (slices - len(unique))
    defaults = {SLOPE_TAG: 1.0, INTERCEPT_TAG: 0.0}
    for tag in defaults:
        shared = _number(common.get(tag))
        if shared is not None:
            defaults[tag] = shared
    rescale = []
    for attributes in unique:
        pair = []
        for tag, fallback in defaults.items():
            own = _number((attributes or {}).get(tag))
            pair.append(fallback if own is None else own)
        rescale.append((pair[0], pair[1]))
    return rescale


def count_stored(
    values: array.array[int], slice_size: int, rescale: list[tuple[float, float]]
) -> dict[tuple[float, float], Counter[int]]:
    """How often each stored value occurs, separately for each distinct rescale."""
    counts: dict[tuple[float, float], Counter[int]] = {}
    start = 0
    while start < len(rescale):
        stop = start + 1
        while stop < len(rescale) and rescale[stop] == rescale[start]:
            stop += 1
        # Slices start..stop-1 share one rescale: count them in one pass (no copy if all do).
        whole = (start, stop) == (0, len(rescale))
        block = values if whole else values[start * slice_size : stop * slice_size]
        counts.setdefault(rescale[start], Counter()).update(block)
        start = stop
    return counts


def _tidy(value: float) -> float | int:
    """Whole numbers as ints, others rounded to 3 decimals (for a readable results.json)."""
    return int(value) if float(value).is_integer() else round(value, 3)


def summarize(counts: dict[tuple[float, float], Counter[int]]) -> dict[str, Any]:
    """The ``results`` object: histogram, mean/min/max HU and voxel count."""
    bins = [0] * len(BIN_STARTS_HU)
    weighted: list[float] = []
    lowest, highest, voxels = math.inf, -math.inf, 0
    for (slope, intercept), tally in counts.items():
        for stored, number in tally.items():
            hu = stored * slope + intercept
            index = math.floor((hu - FIRST_BIN_HU) / BIN_WIDTH_HU)
            bins[min(max(index, 0), len(bins) - 1)] += number
            weighted.append(hu * number)
            lowest, highest = min(lowest, hu), max(highest, hu)
            voxels += number
    return {
        "histogram": {
            "binStartsHU": BIN_STARTS_HU,
            "binWidthHU": BIN_WIDTH_HU,
            "counts": bins,
        },
        "meanHU": _tidy(math.fsum(weighted) / voxels),
        "minHU": _tidy(lowest),
        "maxHU": _tidy(highest),
        "voxels": voxels,
    }


def run(in_dir: Path, out_dir: Path) -> None:
    """Histogram volume 0 of ``in_dir`` into ``out_dir/results.json``.

    Raises:
        FileNotFoundError: ``0.mhd`` or its raw file is missing.
        ValueError: the header, the raw file or ``0.json`` is malformed.
    """
    values, slice_size = read_volume(in_dir / "0.mhd")
    slices = len(values) // slice_size
    print(f"Volume 0: {len(values)} voxels in {slices} slice(s)", flush=True)
    rescale = read_rescale(in_dir / "0.json", slices)
    results = summarize(count_stored(values, slice_size, rescale))
    print(
        f"HU mean {results['meanHU']}, min {results['minHU']}, max {results['maxHU']}",
        flush=True,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"results": results, "metadata": {}}
    (out_dir / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote results.json to {out_dir}", flush=True)


def main(argv: list[str]) -> int:
    """Command-line entry: ``hu_histogram.py IN_DIR OUT_DIR``; returns the exit status."""
    if len(argv) != 2:
        print("usage: python3 hu_histogram.py IN_DIR OUT_DIR", file=sys.stderr)
        return 2
    try:
        run(Path(argv[0]), Path(argv[1]))
    except (OSError, ValueError) as exc:  # bad input: say why, fail the job
        print(f"hu-histogram: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
