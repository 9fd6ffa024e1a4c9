"""The files an import looks at: files as given, folders walked as ``os.walk`` walks them,
leaving out CIRCUS_HOME's own database and working folders without opening them."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

__all__ = ["iter_files"]


def iter_files(
    paths: Iterable[str | os.PathLike[str]], *, skip: Collection[Path] = ()
) -> Iterator[Path]:
    """Every file under ``paths`` (files as given, folders walked, sorted: a folder's files,
    then its folders; links to folders are not followed), leaving out the files and folders
    ``skip`` (resolved paths) without opening anything there."""
    left = [str(p.resolve()) for p in skip]

    def left_out(resolved: str) -> bool:
        return any(resolved == s or resolved.startswith(s + os.sep) for s in left)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            root = os.path.realpath(path)
            if not left_out(root):
                yield from _walk(path, root, left_out)
        elif not left_out(os.path.realpath(path)):
            yield path


def _walk(folder: Path, resolved: str, left_out: Callable[[str], bool]) -> Iterator[Path]:
    """The files below ``folder`` (whose resolved path is ``resolved``), as ``os.walk`` lists
    them: each folder's files sorted, then its folders sorted; a link is resolved to be
    judged, any other entry is its folder's resolved path and its name."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return  # as os.walk: a folder that cannot be listed is passed over
    files: list[tuple[str, bool]] = []
    folders: list[tuple[str, bool]] = []
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        try:
            link = entry.is_symlink()
        except OSError:
            link = False
        (folders if is_dir else files).append((entry.name, link))
    for name, link in sorted(files):
        where = os.path.realpath(folder / name) if link else os.path.join(resolved, name)
        if not left_out(where):
            yield folder / name
    for name, link in sorted(folders):
        if link:
            continue  # os.walk does not follow links to folders
        where = os.path.join(resolved, name)
        if not left_out(where):
            yield from _walk(folder / name, where, left_out)
