"""What import stores of a slice (:class:`~circus_tasks.volume.stored.StoredSlice`), decided by
the parsing path's own checks, so that pre-processing may later write the slice without
parsing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, cast

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from circus_tasks.errors import VolumeError
from circus_tasks.volume.compressed import FAST_SYNTAXES, NotDecodedHere, single_frame
from circus_tasks.volume.known import KnownValues, SliceObjects
from circus_tasks.volume.slice_format import SliceFormat
from circus_tasks.volume.slice_reading import read_slice_format, slice_position
from circus_tasks.volume.stored import STORED_COLUMNS, StoredSlice

__all__ = ["SliceFacts", "slice_facts", "stored_slice"]

_NATIVE_LITTLE_ENDIAN = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


class SliceFacts(NamedTuple):
    """A :class:`~circus_tasks.volume.stored.StoredSlice` before the stored file is known:
    without its size and time, the header as JSON text."""

    format: SliceFormat
    position: tuple[float, float, float]
    pixel_offset: int
    header_json: str
    transfer_syntax: str | None = None
    bits_stored: int | None = None

    def columns(self, stamp: tuple[int, int]) -> dict[str, Any]:
        """The values of :data:`~circus_tasks.volume.stored.STORED_COLUMNS` for a copy with
        ``stamp`` (size, modification time in ns); the header as JSON text."""
        (rows, columns), (bits, representation) = self.format.size, self.format.pixel
        spacing_x, spacing_y = self.format.spacing
        position_x, position_y, position_z = self.position
        return {
            "header": self.header_json,
            "rows": rows,
            "columns": columns,
            "bits_allocated": bits,
            "pixel_representation": representation,
            "spacing_x": spacing_x,
            "spacing_y": spacing_y,
            "position_x": position_x,
            "position_y": position_y,
            "position_z": position_z,
            "pixel_offset": self.pixel_offset,
            "file_size": stamp[0],
            "file_mtime_ns": stamp[1],
            "transfer_syntax": self.transfer_syntax,
            "bits_stored": self.bits_stored,
        }

    def values(self) -> tuple[Any, ...]:
        """The values of :data:`~circus_tasks.volume.stored.STORED_COLUMNS`, the file's size
        and time left ``None`` (plain values: cheap to send between processes)."""
        columns = self.columns((0, 0))
        columns.update(file_size=None, file_mtime_ns=None)
        return tuple(columns[name] for name in STORED_COLUMNS)

    def stored(self, path: Path) -> StoredSlice:
        """The facts of ``path``, a byte-identical copy of the file they were taken from."""
        status = path.stat()
        return StoredSlice(
            format=self.format,
            position=self.position,
            pixel_offset=self.pixel_offset,
            header=json.loads(self.header_json),
            file_size=status.st_size,
            mtime_ns=status.st_mtime_ns,
            transfer_syntax=self.transfer_syntax,
            bits_stored=self.bits_stored,
        )


_OBJECTS = SliceObjects()
"""This process's memory of element texts, for callers that bring none."""


def slice_facts(
    ds: Dataset | KnownValues, path: Path, objects: SliceObjects | None = None
) -> SliceFacts | None:
    """What import stores of a slice so that pre-processing can write it without parsing it,
    but the stored file's size and time.

    ``ds`` is the file's full dataset, as import reads it (best through
    :class:`~circus_tasks.volume.known.KnownValues`: its elements as read). The checks are the
    parsing path's: the format (:func:`~circus_tasks.volume.slice_reading.read_slice_format`),
    the position and the conditions under which
    :meth:`~circus_tasks.volume.parsed.SliceWriter.take` copies the pixel data as it is or
    decodes it from its fragments (a transfer syntax of
    :data:`~circus_tasks.volume.compressed.FAST_SYNTAXES`, encapsulated, one frame). The header
    is the slice's ``N.json`` object as :class:`~circus_tasks.volume.header.HeaderSplit` builds
    it, without private attributes, as JSON text (:class:`~circus_tasks.volume.known.
    SliceObjects`, which remembers element texts in ``objects``).

    Returns:
        The facts; ``None`` when the slice needs the parsing path (another compressed syntax,
        big-endian or deflated pixel data, unused high bits to clear in native data, odd pixel
        data) or would fail there (not a usable slice).
    """
    syntax = ds.file_meta.get("TransferSyntaxUID")
    compressed = syntax in FAST_SYNTAXES
    if syntax not in _NATIVE_LITTLE_ENDIAN and not compressed:
        return None
    read = cast(Dataset, ds)  # a KnownValues answers as its dataset does
    try:
        slice_format = read_slice_format(read, path)
        position = slice_position(read, path)
    except VolumeError:
        return None  # the parsing path reports it
    bits, _ = slice_format.pixel
    element = ds.get_item(0x7FE00010, keep_deferred=True)
    offset: int | None
    value: bytes | bytearray | None
    if isinstance(element, RawDataElement):  # not read yet
        offset, length, encapsulated, value = (
            element.value_tell,
            element.length,
            element.length == 0xFFFFFFFF,
            element.value,
        )
    elif element is not None and isinstance(element.value, bytes | bytearray):
        offset, length, encapsulated, value = (
            element.file_tell,
            len(element.value),
            element.is_undefined_length,
            element.value,
        )
    else:
        return None
    stored = ds.get("BitsStored")
    if offset is None:
        return None
    if compressed:
        if not encapsulated or not isinstance(stored, int) or not 0 < stored <= bits:
            return None  # odd pixel data: the parsing path decides
        if value is not None:
            try:
                single_frame(value)
            except NotDecodedHere:
                return None  # damaged items: the parsing path reports them
    elif stored != bits or encapsulated or length < slice_format.nbytes:
        return None  # high bits to clear, or odd pixel data: the parsing path decides
    return SliceFacts(
        format=slice_format,
        position=position,
        pixel_offset=offset,
        header_json=(objects or _OBJECTS).json(ds),
        transfer_syntax=str(syntax) if compressed else None,
        bits_stored=stored if compressed else None,
    )


def stored_slice(ds: Dataset, path: Path) -> StoredSlice | None:
    """:func:`slice_facts`, stamped with ``path``'s size and modification time."""
    facts = slice_facts(ds, path)
    return facts.stored(path) if facts is not None else None
