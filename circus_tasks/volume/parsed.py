"""The slices of a plug-in input volume: each one parsed, checked and put in its place.

Each slice's header is parsed once, with pydicom, leaving large values unread. Uncompressed
little-endian pixel data then moves from the DICOM file to its place in the raw file inside the
kernel (``copy_file_range``), without passing through Python. Compressed slices of the transfer
syntaxes :mod:`circus_tasks.volume.compressed` knows are decoded from their fragments by the
fastest decoder at hand; other compressed, big-endian and deflated slices, slices whose unused
high bits must be cleared, and whatever that module declines go through pydicom's own decoders
one slice at a time. Every slice is written at its own offset (slice index times the
slice's size), so that several processes can fill one raw file, each with its share of the
slices. :func:`~circus_tasks.volume.import_facts.stored_slice` (re-exported here for the
importer) applies the same checks at import, for the slices that pre-processing may later
write without parsing them (:mod:`circus_tasks.volume.stored`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from circus_tasks.errors import VolumeError
from circus_tasks.volume.compressed import (
    FAST_SYNTAXES,
    NotDecodedHere,
    decode_slice,
    read_encapsulated,
)
from circus_tasks.volume.header import PIXEL_DATA_TAGS, HeaderSplit, fingerprint
from circus_tasks.volume.import_facts import stored_slice
from circus_tasks.volume.raw_file import copy_range, write_at
from circus_tasks.volume.slice_format import SliceFormat
from circus_tasks.volume.slice_reading import (
    ELEMENT_TYPES,
    decoded_pixels,
    open_slice,
    read_header,
    read_into,
    read_slice_format,
    slice_position,
    undecodable,
)

__all__ = ["SliceWriter", "stored_slice"]

_NATIVE_LITTLE_ENDIAN = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


_LAYOUT_TAGS = (
    0x00280002,  # Samples per Pixel
    0x00280004,  # Photometric Interpretation
    0x00280008,  # Number of Frames
    0x00280010,  # Rows
    0x00280011,  # Columns
    0x00280030,  # Pixel Spacing
    0x00280100,  # Bits Allocated
    0x00280101,  # Bits Stored
    0x00280103,  # Pixel Representation
)
"""The elements that decide a slice's :class:`SliceFormat` and how its pixels are copied."""


@dataclass(frozen=True)
class _Layout:
    """What a slice's header says about its pixels."""

    format: SliceFormat
    syntax: object  # Transfer Syntax UID
    bits_stored: object


def _layout_key(ds: Dataset, syntax: object) -> Hashable | None:
    """The bytes behind a slice's layout: two slices with equal keys have equal layouts.

    ``None`` when an element has already been decoded or its value was not read, so that
    only a full check can tell.
    """
    key: list[Hashable] = [syntax]
    for tag in _LAYOUT_TAGS:
        element = ds.get_item(tag, keep_deferred=True)
        if element is None:
            key.append(None)
            continue
        print_ = fingerprint(element)
        if print_ is None:
            return None
        key.append(print_)
    key.append(tuple(tag in ds for tag in PIXEL_DATA_TAGS))
    return tuple(key)


@dataclass
class SliceWriter:
    """Puts slices of ``files`` into the raw file and their headers into ``headers``.

    The first slice taken sets the format every other slice must have; the positions of
    slices 0 and 1 give the slice spacing.
    """

    files: Sequence[Path]
    raw_fd: int
    headers: HeaderSplit
    first: SliceFormat | None = None
    positions: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    _kernel_copy: bool = field(default=hasattr(os, "copy_file_range"), repr=False)
    # The first slice's layout and its key: a slice with the same key needs no new checks.
    _first_layout: _Layout | None = field(default=None, repr=False)
    _first_key: Hashable | None = field(default=None, repr=False)

    @property
    def compressed(self) -> bool:
        """Whether the first slice taken is compressed (decoded, not copied)."""
        first = self._first_layout
        return first is not None and first.syntax not in _NATIVE_LITTLE_ENDIAN

    def take_range(self, bounds: tuple[int, int]) -> HeaderSplit:
        """Take slices ``start <= index < stop``, in order; return the header split."""
        start, stop = bounds
        for index in range(start, stop):
            self.take(index)
        return self.headers

    def take(self, index: int) -> None:
        """Parse and check slice ``index``, write its pixels at its offset, add its header.

        Raises:
            VolumeError: the file is not a usable slice, or unlike the first slice.
        """
        path = self.files[index]
        with open_slice(path) as source:
            ds = read_header(source, path)
            layout = self._layout(ds, path)
            position = slice_position(ds, path)
            if index < 2:
                self.positions[index] = position
            self._write_pixels(index * layout.format.nbytes, ds, source, path, layout)
        self.headers.add(ds)

    def _layout(self, ds: Dataset, path: Path) -> _Layout:
        """Check a slice's pixel description against the first slice's.

        Raises:
            VolumeError: the slice is not a usable image, or unlike the first slice.
        """
        syntax = ds.file_meta.get("TransferSyntaxUID")
        key = _layout_key(ds, syntax)
        if key is not None and key == self._first_key:
            assert self._first_layout is not None
            return self._first_layout  # the same bytes as the first slice, checked already
        layout = _Layout(read_slice_format(ds, path), syntax, ds.get("BitsStored"))
        if self.first is None:
            self.first, self._first_layout, self._first_key = layout.format, layout, key
        else:
            layout.format.check_matches(self.first, path, self.files[0])
        return layout

    def _write_pixels(
        self,
        offset: int,
        ds: Dataset,
        source: io.BufferedReader,
        path: Path,
        layout: _Layout,
    ) -> None:
        slice_format = layout.format
        rows, columns = slice_format.size
        bits, _ = slice_format.pixel
        _, dtype = ELEMENT_TYPES[slice_format.pixel]
        size = slice_format.nbytes
        element = ds.get_item(0x7FE00010, keep_deferred=True)
        syntax, stored = layout.syntax, layout.bits_stored
        if (
            syntax in FAST_SYNTAXES
            and isinstance(element, RawDataElement)
            and element.length == 0xFFFFFFFF
            and isinstance(stored, int)
            and 0 < stored <= bits
        ):
            self._write(offset, self._decoded(element, source, ds, path, layout, stored))
            return
        if (
            syntax not in _NATIVE_LITTLE_ENDIAN
            or not isinstance(element, RawDataElement)
            or element.length == 0xFFFFFFFF
            or not isinstance(stored, int)
            or not 0 < stored <= bits
        ):
            self._write(offset, decoded_pixels(ds, path, slice_format).data)
            return
        if element.length < size:
            raise undecodable(ds, path, f"{element.length} bytes of pixel data, {size} expected")
        if stored < bits:
            # pydicom clears the unused high bits (sign-extending signed values); so do we.
            array = np.empty(rows * columns, dtype)
            read_into(element, source, memoryview(array).cast("B"), ds, path)
            shift = bits - stored
            np.left_shift(array, shift, out=array)
            np.right_shift(array, shift, out=array)
            self._write(offset, array.data)
        elif element.value is not None:
            self._write(offset, memoryview(element.value)[:size])
        else:
            self._copy(element.value_tell, offset, size, source, ds, path)

    def _decoded(
        self,
        element: RawDataElement,
        source: io.BufferedReader,
        ds: Dataset,
        path: Path,
        layout: _Layout,
        bits_stored: int,
    ) -> Any:
        """A compressed slice's values: decoded from its fragments where
        :func:`~circus_tasks.volume.compressed.decode_slice` can, by pydicom otherwise."""
        value = element.value
        if value is None:  # deferred
            value = read_encapsulated(source.fileno(), element.value_tell)
        try:
            return decode_slice(str(layout.syntax), value, layout.format, bits_stored)
        except NotDecodedHere:
            return decoded_pixels(ds, path, layout.format).data
        except VolumeError as exc:
            raise VolumeError(f"{path}: {exc}") from exc

    def _write(self, offset: int, data: Any) -> None:
        """Write ``data`` (bytes-like) at ``offset`` in the raw file."""
        write_at(self.raw_fd, data, offset)

    def _copy(
        self,
        source_offset: int,
        offset: int,
        size: int,
        source: io.BufferedReader,
        ds: Dataset,
        path: Path,
    ) -> None:
        """Move ``size`` bytes from ``source_offset`` in the source to ``offset`` in the raw
        file, inside the kernel where it can."""
        try:
            self._kernel_copy = copy_range(
                source.fileno(), self.raw_fd, size, source_offset, offset, self._kernel_copy
            )
        except EOFError as exc:
            raise undecodable(ds, path, exc) from None
