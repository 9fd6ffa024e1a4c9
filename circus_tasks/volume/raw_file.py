"""Writing into the raw voxel file: every slice at its own offset, so that several processes
can fill one file, each with its share of the slices. Standard library only."""

from __future__ import annotations

import errno
import os
from typing import Any

__all__ = ["copy_range", "write_at"]

_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}
)


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
