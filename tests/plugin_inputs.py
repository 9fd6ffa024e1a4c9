"""Test helper: write a plug-in input folder (``N.raw``, ``N.mhd``, ``N.json``) and load plug-ins.

The files follow the plug-in contract (``docs/plugin-contract.md``), so the shipped
plug-ins can be run on generated volumes whose right answer is known.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

ELEMENT_TYPES: dict[str, str] = {
    "uint8": "MET_UCHAR",
    "int8": "MET_CHAR",
    "uint16": "MET_USHORT",
    "int16": "MET_SHORT",
}
"""numpy dtype name -> MetaImage ElementType."""


def write_input(
    folder: Path,
    index: int,
    volume: np.ndarray,
    spacing_xyz: Sequence[float],
    rescale: tuple[float, float] | None = (1.0, -1024.0),
    *,
    big_endian: bool = False,
) -> None:
    """Write series ``index`` of a job's input folder the way pre-processing does.

    Args:
        folder: The input folder (created if missing).
        index: The series number N: files ``N.raw``, ``N.mhd`` and ``N.json``.
        volume: Stored values, shape ``(slices, rows, columns)``, of uint8, int8, uint16 or
            int16.
        spacing_xyz: Voxel spacing in mm ``(x, y, z)``.
        rescale: ``(slope, intercept)`` written into ``N.json`` as common attributes, or
            ``None`` to write no ``N.json`` at all.
        big_endian: Write the raw file most significant byte first (and say so in the header);
            pre-processing never does, but a reader should still honour the header.
    """
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (slices, rows, columns), got shape {volume.shape}")
    element_type = ELEMENT_TYPES.get(volume.dtype.name)
    if element_type is None:
        raise ValueError(f"dtype {volume.dtype} has no MetaImage element type here")
    folder.mkdir(parents=True, exist_ok=True)
    slices, rows, cols = volume.shape
    stored_dtype = volume.dtype.newbyteorder(">" if big_endian else "<")
    volume.astype(stored_dtype).tofile(folder / f"{index}.raw")
    sx, sy, sz = spacing_xyz
    header = (
        "ObjectType = Image\n"
        "NDims = 3\n"
        f"DimSize = {cols} {rows} {slices}\n"
        f"ElementType = {element_type}\n"
        f"ElementSpacing = {sx} {sy} {sz}\n"
        f"ElementByteOrderMSB = {big_endian}\n"
        f"ElementDataFile = {index}.raw\n"
    )
    (folder / f"{index}.mhd").write_bytes(header.encode("ascii"))
    if rescale is not None:
        slope, intercept = rescale
        attributes = {
            "common": {"0028,1053": slope, "0028,1052": intercept, "0028,0010": rows},
            "unique": [{"0020,0013": number + 1} for number in range(slices)],
        }
        (folder / f"{index}.json").write_text(json.dumps(attributes), encoding="utf-8")


def load_plugin_module(path: Path, name: str) -> ModuleType:
    """Import a plug-in's Python file by path, without touching ``sys.path``.

    Args:
        path: The plug-in's ``.py`` file.
        name: A module name unique to the test (it is not registered in ``sys.modules``).

    Returns:
        The executed module.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
