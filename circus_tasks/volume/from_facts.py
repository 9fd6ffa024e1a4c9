"""A volume written from the facts import stored (see :mod:`circus_tasks.volume.stored`).

No header is parsed: native pixel data moves from each file to the raw file inside the kernel;
compressed pixel data is read from its first item to the end of the file, decoded
(:mod:`circus_tasks.volume.compressed`) and written at the slice's offset, the slices shared
between forked processes; the stored headers are split by the rule
:class:`~circus_tasks.volume.header.HeaderSplit` follows. Standard library only at import:
pydicom is imported only for a slice that the fast decoders leave to it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from circus_tasks.errors import VolumeError
from circus_tasks.volume.compressed import (
    NotDecodedHere,
    decode_slice,
    load_decoder,
    read_encapsulated,
)
from circus_tasks.volume.forked import consecutive_shares, map_forked
from circus_tasks.volume.raw_file import copy_range, write_at
from circus_tasks.volume.slice_format import SliceFormat
from circus_tasks.volume.stored import StoredSlice, deidentified, split_headers

__all__ = ["COMPRESSED_SLICES_PER_PROCESS", "write_stored_slices"]

COMPRESSED_SLICES_PER_PROCESS = 8
"""Compressed slices are shared between processes when each gets at least this many (decoding
one takes about a millisecond or more; a fork a few)."""


def write_stored_slices(
    files: Sequence[Path], slices: Sequence[StoredSlice], raw_fd: int, processes: int = 1
) -> tuple[dict[str, Any], SliceFormat, list[tuple[float, float, float]]]:
    """Put each slice's pixels into the raw file and split the headers.

    Native pixel data is copied as it is, in order, in this process. When some slices are
    compressed, each is decoded (:func:`~circus_tasks.volume.compressed.decode_slice`, or
    pydicom where that declines) and written at its offset, the slices shared between up to
    ``processes`` processes (this one and forked children, see
    :mod:`circus_tasks.volume.forked`); the file is the same whatever the number.

    Args:
        files: The slice files, in range order.
        slices: Their stored facts (see :func:`~circus_tasks.volume.stored.current_slices`).
        raw_fd: The raw file, open for writing; slice ``i`` goes at ``i`` times its size.
        processes: At most this many processes, each with at least
            :data:`COMPRESSED_SLICES_PER_PROCESS` consecutive slices.

    Returns:
        The ``N.json`` document, the first slice's format, the positions of the first two
        slices (one for a single slice).

    Raises:
        VolumeError: a slice's size or pixel type differs from the first slice's, a file
            cannot be read (changed since the check), or a compressed slice cannot be decoded;
            the first such slice in range order is reported.
    """
    writer = _StoredWriter(files, slices, raw_fd)
    syntaxes = {piece.transfer_syntax for piece in slices if piece.transfer_syntax is not None}
    if syntaxes:
        for syntax in syntaxes:  # imported once, here, rather than in every process
            with contextlib.suppress(NotDecodedHere):
                load_decoder(syntax)
        parts = min(processes, len(files) // COMPRESSED_SLICES_PER_PROCESS)
        map_forked(writer.take_range, consecutive_shares(0, len(files), parts))
    else:
        writer.take_range((0, len(files)))
    # stored at import by the rules then in force: the profile in force now applies too
    document = split_headers([deidentified(piece.header) for piece in slices])
    return document, slices[0].format, [piece.position for piece in slices[:2]]


class _StoredWriter:
    """Writes the pixels of stored slices into the raw file, slice ``i`` at ``i`` times the
    first slice's size."""

    def __init__(self, files: Sequence[Path], slices: Sequence[StoredSlice], raw_fd: int) -> None:
        self.files = files
        self.slices = slices
        self.raw_fd = raw_fd
        self.first = slices[0].format
        self.kernel = hasattr(os, "copy_file_range")

    def take_range(self, bounds: tuple[int, int]) -> None:
        """Write slices ``start <= index < stop``, in order."""
        for index in range(*bounds):
            self.take(index)

    def take(self, index: int) -> None:
        path, piece = self.files[index], self.slices[index]
        piece.format.check_matches(self.first, path, self.files[0])
        offset = index * self.first.nbytes
        try:
            source = os.open(path, os.O_RDONLY)
            try:
                if piece.transfer_syntax is None:
                    self.kernel = copy_range(
                        source,
                        self.raw_fd,
                        self.first.nbytes,
                        piece.pixel_offset,
                        offset,
                        self.kernel,
                    )
                    return
                encapsulated = read_encapsulated(source, piece.pixel_offset)
            finally:
                os.close(source)
        except (OSError, EOFError) as exc:
            raise VolumeError(
                f"{path} cannot be read ({type(exc).__name__}: {exc}); it changed while the "
                "volume was written. Re-import the series and try again."
            ) from exc
        assert piece.bits_stored is not None
        try:
            pixels = decode_slice(
                piece.transfer_syntax, encapsulated, piece.format, piece.bits_stored
            )
        except NotDecodedHere:
            pixels = _decoded_by_pydicom(path, piece.format)
        except VolumeError as exc:
            raise VolumeError(f"{path}: {exc}") from exc
        write_at(self.raw_fd, pixels, offset)


def _decoded_by_pydicom(path: Path, slice_format: SliceFormat) -> Any:
    """The slice decoded by pydicom, as the parsing path decodes it (its voxels or its error).

    Raises:
        VolumeError: naming the file and the problem.
    """
    from circus_tasks.volume.slice_reading import decoded_pixels, open_slice, read_header

    with open_slice(path) as source:
        ds = read_header(source, path)
        return decoded_pixels(ds, path, slice_format).data
