"""What never reaches a plug-in: the attributes of the DICOM Basic Application Level
Confidentiality Profile (PS3.15 Annex E, every action: remove, empty, dummy, new UID), as the
``dicom-anonymizer`` package tabulates them for the standard's edition below, and CIRCUS's own
list (:data:`~circus_tasks.volume.header.IDENTIFYING_KEYWORDS`). Applied whenever an input
folder is written, on the parsing path and to the headers import stored alike.

Loaded without importing the package's anonymizer (and so pydicom), so that the path that
writes a volume from stored headers stays light: the table is a plain module of tag tuples.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

EDITION = "dicomfields_2026c"
"""The edition of the standard's table in force."""

KEPT: dict[int, str] = {}
"""Attributes of the profile a plug-in still gets, each with why. None now: the shipped
plug-ins read only the geometry, the pixel description and the rescale, which the profile
leaves alone."""


@lru_cache(maxsize=1)
def _table() -> tuple[frozenset[int], tuple[tuple[int, int, int, int], ...]]:
    """The profile's single tags (``0xggggeeee``) and its masked ranges (group, element,
    group mask, element mask: the repeating groups such as overlays and curves)."""
    spec = importlib.util.find_spec("dicomanonymizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("dicom-anonymizer is not installed; it is a dependency: reinstall.")
    folder = Path(spec.submodule_search_locations[0], "dicom_anonymization_databases")
    table_spec = importlib.util.spec_from_file_location(f"_{EDITION}", folder / f"{EDITION}.py")
    assert table_spec is not None and table_spec.loader is not None
    table = importlib.util.module_from_spec(table_spec)
    table_spec.loader.exec_module(table)  # a module of tag tuples, nothing else
    singles: set[int] = set()
    masked: list[tuple[int, int, int, int]] = []
    entries: list[Any] = table.ALL_TAGS
    for entry in entries:
        if len(entry) == 2:
            singles.add(entry[0] << 16 | entry[1])
        else:
            masked.append((entry[0], entry[1], entry[2], entry[3]))
    return frozenset(singles - KEPT.keys()), tuple(masked)


def in_profile(tag: int) -> bool:
    """Whether the profile drops ``tag`` (and it is not one of :data:`KEPT`)."""
    singles, masked = _table()
    if tag in singles:
        return True
    group, element = tag >> 16, tag & 0xFFFF
    return any(
        group & group_mask == g and element & element_mask == e
        for g, e, group_mask, element_mask in masked
    )
