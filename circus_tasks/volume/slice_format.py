"""The pixel format of one slice, which every slice of a plug-in input volume must share.

Only the standard library is imported here. The parsing path
(:mod:`circus_tasks.volume.parsed`) and the path that uses what import stored
(:mod:`circus_tasks.volume.stored`) both describe and compare slices with these, so that their
checks and messages are one and the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from circus_tasks.errors import VolumeError

__all__ = ["ELEMENT_TYPE_NAMES", "SliceFormat"]

ELEMENT_TYPE_NAMES: dict[tuple[int, int], str] = {
    (8, 0): "MET_UCHAR",
    (8, 1): "MET_CHAR",
    (16, 0): "MET_USHORT",
    (16, 1): "MET_SHORT",
}
"""(Bits Allocated, Pixel Representation) -> MetaImage element type."""


@dataclass(frozen=True)
class SliceFormat:
    """The parts of one slice's pixel description that must agree across the volume."""

    size: tuple[int, int]  # rows, columns
    pixel: tuple[int, int]  # bits allocated, pixel representation
    spacing: tuple[float, float]  # x (column spacing), y (row spacing)

    @property
    def nbytes(self) -> int:
        """Bytes of one slice in the raw file."""
        rows, columns = self.size
        bits, _ = self.pixel
        return rows * columns * (bits // 8)

    def describe(self) -> str:
        rows, columns = self.size
        bits, representation = self.pixel
        sign = "signed" if representation else "unsigned"
        return f"{rows}x{columns} {sign} {bits}-bit"

    def check_matches(self, first: SliceFormat, path: Path, first_path: Path) -> None:
        """Refuse a slice (at ``path``) whose size or pixel type differs from the first's.

        Raises:
            VolumeError: naming both files and both formats.
        """
        if self.size != first.size or self.pixel != first.pixel:
            raise VolumeError(
                f"{path} is {self.describe()} but the first slice {first_path} "
                f"is {first.describe()}; every slice of a volume must match. "
                "Choose a range that holds one kind of image."
            )
