"""``circus volume`` without the weight of the full command line.

The ``circus`` console script (:mod:`circus_tasks.cli.launcher`) sends a well-formed
``circus volume SERIES[:START:END[:DELTA]] OUT_DIR [--include-private]`` here, and everything
else (``--help``, unknown options, a missing argument) to the typer application in
:mod:`circus_tasks.cli.app`, which documents the command and reports usage errors. Both run
:func:`run_volume`, so both write the same files with the same function as pre-processing
(:func:`circus_tasks.volume.writer.write_volume`) and report the same errors.

What it leaves out is imports: typer and rich (loaded only to print an error), pydantic
settings, SQLAlchemy, SQLModel and the table models; pydicom too when the volume is written
from the facts import stored (and numpy, unless a compressed slice's decoder needs it; numpy's
OpenBLAS then starts one thread, not a pool), and otherwise the parts of pydicom that only
download test files (see :mod:`circus_tasks.cli.deferred_imports`). With the default SQLite
database the series' images are read with the standard library's :mod:`sqlite3`, read-only;
any other database goes through the SQLModel path that job registration uses. Either way the
range is resolved by :func:`circus_tasks.store.ranges.resolve_range`, job registration's own
rules. The images' stored facts come with them, so that a series import has already parsed is
written without importing pydicom (see :mod:`circus_tasks.volume.stored`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from circus_tasks.cli.deferred_imports import UNUSED_BY_PYDICOM_READING, deferred_imports
from circus_tasks.errors import CircusError
from circus_tasks.store.ranges import AUTO, resolve_range
from circus_tasks.store.slices import ImageRow, SeriesSlices, image_rows_from_sqlite, pick_slices
from circus_tasks.values import usable_cpus
from circus_tasks.volume.writer import VolumeInfo, write_volume


@dataclass(frozen=True)
class VolumeArguments:
    """The arguments of ``circus volume``."""

    series_spec: str
    out_dir: Path
    include_private: bool = False


def parse_arguments(args: Sequence[str]) -> VolumeArguments | None:
    """Read ``SERIES_SPEC OUT_DIR`` and the ``--[no-]include-private`` flag.

    Args:
        args: What follows ``volume`` on the command line.

    Returns:
        The arguments, or ``None`` for anything else (help, another option, a missing or an
        extra argument, ``--``): the typer command handles and reports those.
    """
    positional: list[str] = []
    include_private = False
    for arg in args:
        if arg == "--include-private":
            include_private = True
        elif arg == "--no-include-private":
            include_private = False
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
    if len(positional) != 2:
        return None
    spec, out_dir = positional
    return VolumeArguments(spec, Path(out_dir), include_private)


def series_slices(spec: str) -> SeriesSlices:
    """The image files of ``SERIES_UID[:START:END[:DELTA]]`` in range order, and the facts
    import stored for each (or ``None``). The range is resolved as job registration resolves
    it (no range: "auto").

    Raises:
        SeriesNotFoundError: the series is not imported.
        InvalidRangeError: the range breaks the rules or names images the series lacks.
    """
    uid, _, range_text = spec.partition(":")
    rows = image_rows_from_sqlite(uid)
    if rows is None:
        rows = _images_from_database(uid)
    image_range = resolve_range(range_text or AUTO, [(row[0], row[1]) for row in rows], uid)
    return pick_slices(rows, image_range, uid)


def _images_from_database(uid: str) -> list[ImageRow]:
    """The series' image rows through SQLModel (any database the settings name).

    Raises:
        SeriesNotFoundError: no series has this UID.
    """
    from circus_tasks.db.engine import session_scope
    from circus_tasks.store.series import image_rows

    with session_scope() as session:
        return image_rows(uid, session=session)


def run_volume(arguments: VolumeArguments) -> VolumeInfo:
    """Write the series range as ``0.mhd``, ``0.raw`` and ``0.json`` in the output folder.

    From the facts import stored when they apply; otherwise the files are parsed, the slices
    shared between up to two processes (see :func:`~circus_tasks.volume.writer.write_volume`). The
    files are the same either way.

    Raises:
        CircusError: the series, the range, the files or the output folder is not usable.
    """
    slices = series_slices(arguments.series_spec)
    # numpy, if a decoder or the parsing path imports it, needs no linear algebra here:
    # OpenBLAS's pool of threads would take about as long to start as a small volume to write.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # pydicom is imported only if the volume must be parsed (inside write_volume).
    with deferred_imports(UNUSED_BY_PYDICOM_READING):
        return write_volume(
            slices.files,
            arguments.out_dir,
            0,
            include_private=arguments.include_private,
            processes=min(2, usable_cpus()),
            stored=slices.stored,
        )


def summary(info: VolumeInfo) -> str:
    """The line the command prints on success."""
    slices, rows, columns = info.shape
    return f"{info.mhd}: {columns} x {rows} x {slices} {info.element_type}"


def main(arguments: VolumeArguments) -> int:
    """Run the command; errors are printed as the typer command prints them.

    Returns:
        The exit code: 0 on success, 1 when the input or the output folder is not usable.
    """
    try:
        info = run_volume(arguments)
    except CircusError as exc:
        from circus_tasks.cli.console import print_error

        print_error(exc)
        return 1
    print(summary(info), flush=True)
    return 0
