"""How import puts a file into the store: a copy of its own, or a clone where the setting asks
for one and the file system can make it.

CIRCUS keeps its own copy of every image: what was imported must not change when the source
does. A copy does that, and so does a reflink clone (``CIRCUS_IMPORT_COPY=reflink``: Btrfs, XFS,
bcachefs, ...), which shares the blocks until either file is written and then gives the writer
new ones (copy on write); where the file system cannot clone (ext4, tmpfs, another file system)
the file is copied. A hard link is not offered: it is the same file under two names, so a
program that rewrites the source in place (opened for writing, not replaced) would change the
stored image, and its size and time, which pre-processing checks, could stay the same.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from circus_tasks.volume.raw_file import copy_range, write_at

__all__ = ["COPY_MODES", "write_copy"]

COPY_MODES: tuple[str, ...] = ("copy", "reflink")
"""``copy``: the bytes are written anew. ``reflink``: cloned where the file system can (copy on
write), copied where it cannot."""

FICLONE = 0x40049409
"""Linux's ioctl that makes a file share another's blocks (``_IOW(0x94, 9, int)``)."""

_CANNOT_CLONE = frozenset(
    {
        errno.EOPNOTSUPP,
        errno.ENOTSUP,
        errno.ENOTTY,
        errno.EXDEV,
        errno.EINVAL,
        errno.ENOSYS,
        errno.EBADF,
        errno.EPERM,
    }
)
"""What the clone ioctl says where the file system, or the pair of files, cannot clone."""

_clones_fail: set[tuple[int, int]] = set()
"""(source device, target device) pairs where a clone failed: copied without trying again."""


def write_copy(source: Path, data: bytes | None, target: Path, mode: str = "copy") -> None:
    """Make ``target`` (which must not exist) a copy of ``source``.

    Args:
        source: The file imported.
        data: Its bytes, when they were read already (written from memory, the file not read
            again); ``None``: copied from the file, inside the kernel where Linux allows.
        target: The new file, created with the permissions a new file gets (as
            :func:`shutil.copyfile`).
        mode: One of :data:`COPY_MODES`.

    Raises:
        OSError: the target exists or cannot be written, or the source cannot be read.
    """
    if mode == "reflink" and _clone(source, target):
        return
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if data is None:
            with source.open("rb") as reader:
                size = os.fstat(reader.fileno()).st_size
                try:
                    copy_range(reader.fileno(), fd, size, 0, 0, hasattr(os, "copy_file_range"))
                except EOFError as exc:
                    raise OSError(errno.EIO, f"{source} changed while it was copied") from exc
        else:
            write_at(fd, data, 0)
    finally:
        os.close(fd)


def _clone(source: Path, target: Path) -> bool:
    """Clone ``source`` at ``target``; ``False`` (and no target) where it cannot be done."""
    with source.open("rb") as reader:
        pair = (os.fstat(reader.fileno()).st_dev, os.stat(target.parent).st_dev)
        if pair in _clones_fail:
            return False
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            fcntl.ioctl(fd, FICLONE, reader.fileno())
        except OSError as exc:
            os.close(fd)
            target.unlink()
            if exc.errno not in _CANNOT_CLONE:
                raise
            _clones_fail.add(pair)
            return False
        os.close(fd)
        return True
