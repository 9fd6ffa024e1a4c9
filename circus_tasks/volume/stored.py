"""Slices whose header was parsed at import: what import stored, and a volume written from it.

Import reads every file fully with pydicom anyway. For a slice that pre-processing can copy
as it is (native little-endian pixel data, no unused high bits to clear, a usable format and
position), it also stores a :class:`StoredSlice`: the slice's ``N.json`` object, its format and
position, where its pixel data starts in the stored file, and the file's size and modification
time. :func:`write_stored_slices` then writes a volume from these without parsing a header:
the pixel data moves from each file to the raw file inside the kernel, and the headers are split
into ``common`` and ``unique`` by the rule :class:`~circus_tasks.volume.header.HeaderSplit`
follows. Only the standard library is imported here, so ``circus volume`` on such a series
never loads pydicom or numpy.

:func:`current_slices` decides when this applies: every slice has stored facts, private
attributes are not asked for (the stored objects leave them out), and every file still has the
size and modification time it had at import. Otherwise the volume is parsed as before.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circus_tasks.errors import VolumeError
from circus_tasks.volume.profile import in_profile
from circus_tasks.volume.slice_format import SliceFormat

__all__ = [
    "STORED_COLUMNS",
    "StoredSlice",
    "copy_range",
    "current_slices",
    "split_headers",
    "write_at",
    "write_stored_slices",
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
)
"""The ``image`` table's columns that hold a :class:`StoredSlice`: all NULL for an image
imported before facts were stored, all NULL but the file's size and time when import found that
the slice must be parsed."""

_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}
)


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
    """

    format: SliceFormat
    position: tuple[float, float, float]
    pixel_offset: int
    header: dict[str, Any]
    file_size: int
    mtime_ns: int

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
                ),
                strict=True,
            )
        )

    @classmethod
    def from_columns(cls, values: Mapping[str, Any]) -> StoredSlice | None:
        """The facts from :data:`STORED_COLUMNS` values (the header as a dict or as JSON text).

        Returns:
            ``None`` when any value is missing: the image was imported before facts were
            stored, or its slice needs the parsing path.
        """
        if any(values.get(name) is None for name in STORED_COLUMNS):
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


def write_stored_slices(
    files: Sequence[Path], slices: Sequence[StoredSlice], raw_fd: int
) -> tuple[dict[str, Any], SliceFormat, list[tuple[float, float, float]]]:
    """Copy each slice's pixel data into the raw file, in order, and split the headers.

    Args:
        files: The slice files, in range order.
        slices: Their stored facts (see :func:`current_slices`).
        raw_fd: The raw file, open for writing; slice ``i`` goes at ``i`` times its size.

    Returns:
        The ``N.json`` document, the first slice's format, the positions of the first two
        slices (one for a single slice).

    Raises:
        VolumeError: a slice's size or pixel type differs from the first slice's, or a file
            cannot be read (changed since the check).
    """
    first = slices[0].format
    kernel = hasattr(os, "copy_file_range")
    for index, (path, piece) in enumerate(zip(files, slices, strict=True)):
        piece.format.check_matches(first, path, files[0])
        try:
            source = os.open(path, os.O_RDONLY)
            try:
                kernel = copy_range(
                    source, raw_fd, first.nbytes, piece.pixel_offset, index * first.nbytes, kernel
                )
            finally:
                os.close(source)
        except (OSError, EOFError) as exc:
            raise VolumeError(
                f"{path} cannot be read ({type(exc).__name__}: {exc}); it changed while the "
                "volume was written. Re-import the series and try again."
            ) from exc
    # stored at import by the rules then in force: the profile in force now applies too
    document = split_headers([deidentified(piece.header) for piece in slices])
    return document, first, [piece.position for piece in slices[:2]]


def deidentified(header: Mapping[str, Any]) -> dict[str, Any]:
    """A stored ``N.json`` object without what :func:`~circus_tasks.volume.profile.in_profile`
    drops, at any depth (sequence items are lists of objects)."""

    def keep(key: str) -> bool:
        group, _, element = key.partition(",")
        return not in_profile(int(group, 16) << 16 | int(element, 16))

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            return [deidentified(v) if isinstance(v, dict) else v for v in value]
        return value

    return {key: clean(value) for key, value in header.items() if keep(key)}


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


def copy_range(
    source: int, target: int, size: int, source_offset: int, offset: int, kernel: bool
) -> bool:
    """Copy ``size`` bytes at ``source_offset`` in ``source`` to ``offset`` in ``target``.

    Inside the kernel (``copy_file_range``) while ``kernel`` is true and the file systems
    allow it, through memory otherwise.

    Returns:
        Whether the kernel copy is still worth trying (false once it said "not here").

    Raises:
        EOFError: ``source`` ends before ``size`` bytes.
    """
    while size and kernel:
        try:
            moved = os.copy_file_range(source, target, size, source_offset, offset)
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
            kernel = False  # e.g. another file system: copy through memory
            break
        if moved == 0:
            raise EOFError("the file ends inside the pixel data")
        source_offset += moved
        offset += moved
        size -= moved
    if size:
        data = os.pread(source, size, source_offset)
        if len(data) != size:
            raise EOFError("the file ends inside the pixel data")
        write_at(target, data, offset)
    return kernel


def write_at(target: int, data: Any, offset: int) -> None:
    """Write ``data`` (bytes-like) at ``offset`` in ``target``."""
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(target, view, offset)
        view = view[written:]
        offset += written
