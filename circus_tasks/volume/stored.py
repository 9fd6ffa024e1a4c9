"""Slices whose header was parsed at import: what import stored of them, and when it applies.

Import reads every file fully with pydicom anyway. For a slice that pre-processing can copy
as it is (native little-endian pixel data, no unused high bits to clear, a usable format and
position), or decode without pydicom (a compressed transfer syntax that
:mod:`circus_tasks.volume.compressed` decodes), it also stores a :class:`StoredSlice`: the
slice's ``N.json`` object, its format and position, where its pixel data starts in the stored
file, the file's size and modification time and, for a compressed slice, its transfer syntax
and Bits Stored. :func:`~circus_tasks.volume.from_facts.write_stored_slices` then writes a
volume from these without parsing a header; the headers are split into ``common`` and
``unique`` by :func:`split_headers`, the rule :class:`~circus_tasks.volume.header.HeaderSplit`
follows. Only the standard library is imported here.

:func:`current_slices` decides when this applies: every slice has stored facts, private
attributes are not asked for (the stored objects leave them out), and every file still has the
size and modification time it had at import. Otherwise the volume is parsed as before.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circus_tasks.volume.profile import in_profile
from circus_tasks.volume.slice_format import SliceFormat

__all__ = [
    "COMPRESSION_COLUMNS",
    "STORED_COLUMNS",
    "StoredSlice",
    "current_slices",
    "deidentified",
    "split_headers",
]

STORED_COLUMNS: tuple[str, ...] = (
    "header",
    "rows",
    "columns",
    "bits_allocated",
    "pixel_representation",
    "spacing_x",
    "spacing_y",
    "position_x",
    "position_y",
    "position_z",
    "pixel_offset",
    "file_size",
    "file_mtime_ns",
    "transfer_syntax",
    "bits_stored",
)
"""The ``image`` table's columns that hold a :class:`StoredSlice`: all NULL for an image
imported before facts were stored, all NULL but the file's size and time when import found that
the slice must be parsed. The last two (:data:`COMPRESSION_COLUMNS`) are NULL for a native
slice."""

COMPRESSION_COLUMNS: frozenset[str] = frozenset({"transfer_syntax", "bits_stored"})
"""The columns that only a compressed slice fills."""


@dataclass(frozen=True)
class StoredSlice:
    """What import learnt of one slice: enough to put it in a volume without parsing it.

    Attributes:
        format: The slice's pixel format, as the parsing path reads it.
        position: Image Position (Patient), in mm.
        pixel_offset: Where the native pixel data starts in the stored file; the slice's
            ``format.nbytes`` bytes from there are its stored values, little-endian.
        header: The slice's ``N.json`` object without private attributes: what
            :class:`~circus_tasks.volume.header.HeaderSplit` holds for a series of this slice alone.
        file_size: The stored file's size when the facts were taken.
        mtime_ns: The stored file's modification time then, in nanoseconds.
        transfer_syntax: ``None`` for native little-endian pixel data, copied as it is;
            otherwise the slice's compressed transfer syntax (one of
            :data:`~circus_tasks.volume.compressed.FAST_SYNTAXES`), and ``pixel_offset`` is
            where the encapsulated value (its first item) starts.
        bits_stored: The compressed slice's Bits Stored (``None`` for a native slice, whose
            Bits Stored is its Bits Allocated).
    """

    format: SliceFormat
    position: tuple[float, float, float]
    pixel_offset: int
    header: dict[str, Any]
    file_size: int
    mtime_ns: int
    transfer_syntax: str | None = None
    bits_stored: int | None = None

    def stamped(self, path: Path) -> StoredSlice:
        """The same facts for a byte-identical copy of the file at ``path``."""
        status = path.stat()
        return dataclasses.replace(self, file_size=status.st_size, mtime_ns=status.st_mtime_ns)

    def matches_file(self, path: Path) -> bool:
        """Whether ``path`` still has the size and modification time the facts were taken at."""
        try:
            status = path.stat()
        except OSError:
            return False
        return (status.st_size, status.st_mtime_ns) == (self.file_size, self.mtime_ns)

    def columns(self) -> dict[str, Any]:
        """The facts as values of :data:`STORED_COLUMNS`."""
        (rows, columns), (bits, representation) = self.format.size, self.format.pixel
        return dict(
            zip(
                STORED_COLUMNS,
                (
                    self.header,
                    rows,
                    columns,
                    bits,
                    representation,
                    *self.format.spacing,
                    *self.position,
                    self.pixel_offset,
                    self.file_size,
                    self.mtime_ns,
                    self.transfer_syntax,
                    self.bits_stored,
                ),
                strict=True,
            )
        )

    @classmethod
    def from_columns(cls, values: Mapping[str, Any]) -> StoredSlice | None:
        """The facts from :data:`STORED_COLUMNS` values (the header as a dict or as JSON text).

        Returns:
            ``None`` when any value is missing: the image was imported before facts were
            stored, or its slice needs the parsing path. (Of a native slice, the
            :data:`COMPRESSION_COLUMNS` are NULL; of a compressed one, both are set.)
        """
        if any(
            values.get(name) is None for name in STORED_COLUMNS if name not in COMPRESSION_COLUMNS
        ):
            return None
        syntax, bits_stored = values.get("transfer_syntax"), values.get("bits_stored")
        if (syntax is None) != (bits_stored is None):
            return None
        header = values["header"]
        return cls(
            format=SliceFormat(
                size=(values["rows"], values["columns"]),
                pixel=(values["bits_allocated"], values["pixel_representation"]),
                spacing=(values["spacing_x"], values["spacing_y"]),
            ),
            position=(values["position_x"], values["position_y"], values["position_z"]),
            pixel_offset=values["pixel_offset"],
            header=json.loads(header) if isinstance(header, str) else header,
            file_size=values["file_size"],
            mtime_ns=values["file_mtime_ns"],
            transfer_syntax=syntax,
            bits_stored=bits_stored,
        )


def current_slices(
    files: Sequence[Path], stored: Sequence[StoredSlice | None] | None, include_private: bool
) -> list[StoredSlice] | None:
    """The stored facts of ``files`` if a volume can be written from them, else ``None``.

    They can when every file has facts, private attributes are not asked for, and every file
    has kept its size and modification time since import.
    """
    if include_private or stored is None or not files or len(stored) != len(files):
        return None
    slices: list[StoredSlice] = []
    for path, piece in zip(files, stored, strict=True):
        if piece is None or not piece.matches_file(path):
            return None
        slices.append(piece)
    return slices


def deidentified(header: Mapping[str, Any]) -> dict[str, Any]:
    """A stored ``N.json`` object without what :func:`~circus_tasks.volume.profile.in_profile`
    drops, at any depth (sequence items are lists of objects)."""

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            return [deidentified(v) if isinstance(v, dict) else v for v in value]
        return value

    return {key: clean(value) for key, value in header.items() if _kept(key)}


@functools.lru_cache(maxsize=4096)
def _kept(key: str) -> bool:
    """Whether the profile keeps the attribute ``gggg,eeee`` (asked once per key: a series'
    slices share most of theirs)."""
    group, _, element = key.partition(",")
    return not in_profile(int(group, 16) << 16 | int(element, 16))


def split_headers(headers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``N.json`` document of the slices' objects, by :class:`HeaderSplit`'s rule.

    ``common`` holds the attributes that every slice has with a value equal to the first
    slice's, in the first slice's key order; ``unique`` holds, for each slice, its other
    attributes with keys sorted.
    """
    first, *others = headers
    common = {
        key: value
        for key, value in first.items()
        if all(key in other and other[key] == value for other in others)
    }
    unique = [
        dict(sorted((key, value) for key, value in header.items() if key not in common))
        for header in headers
    ]
    return {"common": common, "unique": unique}
