"""What import stores of a slice (:class:`~circus_tasks.volume.stored.StoredSlice`), decided by
the parsing path's own checks, so that pre-processing may later write the slice without
parsing it."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from circus_tasks.errors import VolumeError
from circus_tasks.volume.compressed import FAST_SYNTAXES, NotDecodedHere, single_frame
from circus_tasks.volume.header import HeaderSplit
from circus_tasks.volume.slice_reading import read_slice_format, slice_position
from circus_tasks.volume.stored import StoredSlice

__all__ = ["stored_slice"]

_NATIVE_LITTLE_ENDIAN = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


def stored_slice(ds: Dataset, path: Path) -> StoredSlice | None:
    """What import stores of a slice so that pre-processing can write it without parsing it.

    ``ds`` is the file's full dataset, as import reads it. The checks are the parsing path's:
    the format (:func:`~circus_tasks.volume.slice_reading.read_slice_format`), the position
    and the conditions under which :meth:`~circus_tasks.volume.parsed.SliceWriter.take` copies
    the pixel data as it is or decodes it from its fragments (a transfer syntax of
    :data:`~circus_tasks.volume.compressed.FAST_SYNTAXES`, encapsulated, one frame). The header
    is the slice's ``N.json`` object as :class:`~circus_tasks.volume.header.HeaderSplit` builds
    it, without private attributes.

    Returns:
        The facts, stamped with ``path``'s size and modification time; ``None`` when the
        slice needs the parsing path (another compressed syntax, big-endian or deflated pixel
        data, unused high bits to clear in native data, odd pixel data) or would fail there (not
        a usable slice).
    """
    syntax = ds.file_meta.get("TransferSyntaxUID")
    compressed = syntax in FAST_SYNTAXES
    if syntax not in _NATIVE_LITTLE_ENDIAN and not compressed:
        return None
    try:
        slice_format = read_slice_format(ds, path)
        position = slice_position(ds, path)
    except VolumeError:
        return None  # the parsing path reports it
    bits, _ = slice_format.pixel
    element = ds.get_item(0x7FE00010, keep_deferred=True)
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
    split = HeaderSplit(include_private=False)
    split.add(ds)
    status = path.stat()
    return StoredSlice(
        format=slice_format,
        position=position,
        pixel_offset=offset,
        header=split.document()["common"],
        file_size=status.st_size,
        mtime_ns=status.st_mtime_ns,
        transfer_syntax=str(syntax) if compressed else None,
        bits_stored=stored if compressed else None,
    )
