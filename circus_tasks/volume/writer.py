"""The plug-in input volume: one series range written as ``N.raw``, ``N.mhd`` and ``N.json``.

This is the pre-processing half of the plug-in contract (``docs/plugin-contract.md``). The
slices are parsed, checked and copied by :class:`~circus_tasks.volume.parsed.SliceWriter`
(each header parsed once, uncompressed pixel data moved inside the kernel, compressed data
decoded from its fragments, see :mod:`circus_tasks.volume.compressed`, or by pydicom). The
headers feed :class:`~circus_tasks.volume.header.HeaderSplit`, which keeps only what ``N.json``
will hold, so memory does not grow with the series beyond the output. A long series can be
shared between forked processes, each filling its part of the raw file and splitting its
headers, the parts merged in order: the files are the same as with one process.
The three files appear only when all of them were written.

When import has stored the facts of every slice (see :mod:`circus_tasks.volume.stored`) and
they still hold, the volume is written from them instead: no header is parsed, pydicom is not
imported, and numpy only if a compressed slice's decoder needs it. The files are the same
either way. This module imports the parsing path's modules only when it takes that path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circus_tasks.errors import VolumeError
from circus_tasks.volume.forked import consecutive_shares, map_forked
from circus_tasks.volume.from_facts import COMPRESSED_SLICES_PER_PROCESS, write_stored_slices
from circus_tasks.volume.slice_format import ELEMENT_TYPE_NAMES, SliceFormat
from circus_tasks.volume.stored import StoredSlice, current_slices

if TYPE_CHECKING:
    from circus_tasks.volume.header import IDENTIFYING_KEYWORDS, IDENTIFYING_TAGS

__all__ = ["IDENTIFYING_KEYWORDS", "IDENTIFYING_TAGS", "VolumeInfo", "write_volume"]


def __getattr__(name: str) -> Any:
    """:data:`IDENTIFYING_KEYWORDS` and :data:`IDENTIFYING_TAGS`, from
    :mod:`circus_tasks.volume.header` on first use (it imports pydicom)."""
    if name in ("IDENTIFYING_KEYWORDS", "IDENTIFYING_TAGS"):
        from circus_tasks.volume import header

        return getattr(header, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SLICES_PER_PROCESS = 32
"""A series is shared between processes only when each gets at least this many slices (a fork
and the merge cost a few milliseconds); compressed series from
:data:`~circus_tasks.volume.from_facts.COMPRESSED_SLICES_PER_PROCESS` slices each (decoding one
takes longer than parsing it)."""


@dataclass(frozen=True)
class VolumeInfo:
    """What :func:`write_volume` wrote.

    Attributes:
        mhd: The MetaImage header, ``N.mhd``.
        raw: The voxel file, ``N.raw``.
        json: The DICOM attributes, ``N.json``.
        shape: (slices, rows, columns).
        element_type: The MetaImage element type, e.g. ``"MET_SHORT"``.
        spacing: (column spacing x, row spacing y, slice spacing z) in mm, as in the header.
    """

    mhd: Path
    raw: Path
    json: Path
    shape: tuple[int, int, int]
    element_type: str
    spacing: tuple[float, float, float]


def write_volume(
    files: Sequence[Path],
    out_dir: Path,
    index: int,
    *,
    include_private: bool = False,
    processes: int = 1,
    stored: Sequence[StoredSlice | None] | None = None,
) -> VolumeInfo:
    """Write one series range as the plug-in input files ``{index}.raw/.mhd/.json``, as
    ``docs/plugin-contract.md`` (section 3) describes them.

    With ``stored`` the volume is written from the facts import stored when
    :func:`~circus_tasks.volume.stored.current_slices` allows it (every file has facts and is
    unchanged since import, and ``include_private`` is false); otherwise every header is
    parsed. The files and the errors are the same either way. They are written under temporary
    names and renamed into place only once all three are complete.

    Args:
        files: The slice files, already in range order.
        out_dir: The job's input folder; created if missing.
        index: The series' position in the job, from 0.
        include_private: Keep private attributes (odd groups) that have a non-binary value.
        processes: Share the slices between up to this many processes (this one and forked
            children), each taking at least :data:`SLICES_PER_PROCESS` consecutive slices
            (compressed ones: fewer). Only in a process with a single thread (see
            :mod:`circus_tasks.volume.forked`); the files are the same whatever the number.
            From the stored facts, only compressed slices are shared.
        stored: The facts import stored for each of ``files``, in the same order.

    Returns:
        Where the files are and what the volume looks like.

    Raises:
        VolumeError: naming the file and what to do, for anything that keeps the slices from
            forming one volume (unreadable, undecodable, multi-frame, colour, unlike the first
            slice, no position) or ``out_dir`` from being written.
    """
    if not files:
        raise VolumeError(
            f"Volume {index} has no images; select a series range that holds at least one slice."
        )
    if index < 0:
        raise VolumeError(f"Volume index {index} is negative; number volumes from 0.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(out_dir, exc) from exc
    finals = {ext: out_dir / f"{index}.{ext}" for ext in ("raw", "json", "mhd")}
    # Hidden, randomly named temporaries, created exclusively by _write_parts with the usual
    # umask permissions (the plug-in may run as another user and must be able to read them).
    token = os.urandom(8).hex()  # as secrets.token_hex, without importing secrets
    temps = {ext: out_dir / f".{index}.{ext}.{token}.part" for ext in finals}
    renamed: list[Path] = []
    try:
        slices = current_slices(files, stored, include_private)
        info = _write_parts(files, temps, finals, include_private, processes, slices)
        for ext, temp in temps.items():  # the .mhd, which names the others, comes last
            temp.replace(finals[ext])
            renamed.append(finals[ext])
    except BaseException:
        for path in [*temps.values(), *renamed]:
            path.unlink(missing_ok=True)
        raise
    return info


def _unwritable(out_dir: Path, exc: OSError) -> VolumeError:
    return VolumeError(
        f"Cannot write the volume to {out_dir} ({type(exc).__name__}: {exc.strerror or exc}); "
        "choose a folder you can create and write to."
    )


def _shares(count: int, processes: int, minimum: int = SLICES_PER_PROCESS) -> list[tuple[int, int]]:
    """Split slices ``1 <= index < count`` (slice 0 is taken first, alone) into consecutive
    ``(start, stop)`` shares, one per process, this process's share first, each process having
    about ``minimum`` slices or more."""
    return consecutive_shares(1, count, min(processes, count // minimum))


def _write_parts(
    files: Sequence[Path],
    temps: dict[str, Path],
    finals: dict[str, Path],
    include_private: bool,
    processes: int,
    stored: Sequence[StoredSlice] | None,
) -> VolumeInfo:
    """Write the three files to their temporary paths; return the info for the final paths.

    From the ``stored`` facts when given, else by parsing every file.
    """
    try:
        # Unbuffered: every slice is written at its own offset, by pwrite or copy_file_range.
        raw = temps["raw"].open("xb", buffering=0)
    except OSError as exc:
        raise _unwritable(temps["raw"].parent, exc) from exc
    with raw:
        if stored is not None:
            document, first, positions = write_stored_slices(files, stored, raw.fileno(), processes)
        else:
            document, first, positions = _parse_slices(
                files, raw.fileno(), include_private, processes
            )
    element_type = ELEMENT_TYPE_NAMES[first.pixel]
    spacing = (first.spacing[0], first.spacing[1], _slice_spacing(positions, files))
    rows, columns = first.size
    shape = (len(files), rows, columns)

    with temps["json"].open("x", encoding="utf-8", newline="\n") as out:
        json.dump(document, out, ensure_ascii=False, indent=2, allow_nan=False)
        out.write("\n")
    header = (
        "ObjectType = Image\n"
        "NDims = 3\n"
        f"DimSize = {columns} {rows} {len(files)}\n"
        f"ElementType = {element_type}\n"
        f"ElementSpacing = {' '.join(_number(s) for s in spacing)}\n"
        "ElementByteOrderMSB = False\n"
        f"ElementDataFile = {finals['raw'].name}\n"
    )
    with temps["mhd"].open("xb") as out_mhd:
        out_mhd.write(header.encode("ascii"))
    return VolumeInfo(
        mhd=finals["mhd"],
        raw=finals["raw"],
        json=finals["json"],
        shape=shape,
        element_type=element_type,
        spacing=spacing,
    )


def _parse_slices(
    files: Sequence[Path], raw_fd: int, include_private: bool, processes: int
) -> tuple[dict[str, Any], SliceFormat, list[tuple[float, float, float]]]:
    """Parse, check and copy every slice (shared between processes); return the ``N.json``
    document, the first slice's format and the positions of the first two slices."""
    from circus_tasks.volume.header import HeaderSplit
    from circus_tasks.volume.parsed import SliceWriter

    slices = SliceWriter(files, raw_fd, HeaderSplit(include_private))
    # Slice 0 first, here: it sets the format the others must match, in every process (and
    # imports its decoder once for all of them).
    slices.take(0)
    minimum = COMPRESSED_SLICES_PER_PROCESS if slices.compressed else SLICES_PER_PROCESS
    # The first share (with slice 1, whose position gives the spacing) stays here.
    headers, *later = map_forked(slices.take_range, _shares(len(files), processes, minimum))
    for part in later:
        # A share taken in this process (no fork: other threads run here) went on filling the
        # same split, in order; only a forked child's split is a continuation to merge.
        if part is not headers:
            headers.merge(part)
    assert slices.first is not None
    positions = [slices.positions[i] for i in sorted(slices.positions)]
    return headers.document(), slices.first, positions


def _slice_spacing(positions: Sequence[tuple[float, float, float]], files: Sequence[Path]) -> float:
    if len(positions) < 2:
        return 1.0
    distance = math.dist(positions[0], positions[1])
    if distance == 0:
        raise VolumeError(
            f"{files[0]} and {files[1]} share the Image Position (Patient) {positions[0]}; "
            "the slice spacing would be 0. Remove the duplicate slice from the range."
        )
    return distance


def _number(value: float) -> str:
    """A spacing for the header: plain decimal, no needless digits."""
    return format(value, ".10g")
