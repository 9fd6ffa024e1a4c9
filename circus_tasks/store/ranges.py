"""Image ranges (CIRCUS "partial volume descriptors") and the "auto" range.

Image numbers are DICOM InstanceNumber values. A range ``(start, end, delta)`` names
``start, start + delta, ..., end``, both ends included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from circus_tasks.errors import InvalidRangeError
from circus_tasks.values import MAX_NUMBER

AUTO: Literal["auto"] = "auto"


@dataclass(frozen=True, order=True)
class ImageRange:
    """An inclusive range of image numbers, validated by the CIRCUS rules on creation.

    Raises:
        InvalidRangeError: when start/end are not integers > 0, delta is 0, delta's sign does
            not match the direction, or delta does not divide ``end - start``.
    """

    start: int
    end: int
    delta: int = 1

    def __post_init__(self) -> None:
        problem = _range_problem(self.start, self.end, self.delta)
        if problem:
            raise InvalidRangeError(
                f"Specified range is invalid: {self.start}:{self.end}:{self.delta}: {problem}."
            )

    @property
    def count(self) -> int:
        """How many images the range names."""
        return (self.end - self.start) // self.delta + 1

    def numbers(self) -> list[int]:
        """The image numbers in range order."""
        return list(range(self.start, self.end + (1 if self.delta > 0 else -1), self.delta))

    def __str__(self) -> str:
        return f"{self.start}:{self.end}:{self.delta}"

    @classmethod
    def parse(cls, text: str) -> ImageRange:
        """Read ``START:END[:DELTA]`` (DELTA defaults to 1).

        Raises:
            InvalidRangeError: when the text is not three integers or breaks the rules.
        """
        parts = text.strip().split(":")
        if len(parts) not in (2, 3):
            raise InvalidRangeError(
                f"Specified range is invalid: {text!r}; write START:END or START:END:DELTA."
            )
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise InvalidRangeError(
                f"Specified range is invalid: {text!r}; START, END and DELTA must be integers."
            ) from None
        return cls(*numbers)

    def check_exists(self, available: Iterable[int], series_uid: str = "") -> None:
        """Require every image the range names to exist.

        Raises:
            InvalidRangeError: naming the missing image numbers.
        """
        have = set(available)
        missing = [n for n in self.numbers() if n not in have]
        if missing:
            shown = ", ".join(str(n) for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
            where = f" in series {series_uid}" if series_uid else ""
            raise InvalidRangeError(
                f"Specified range is invalid: {self} names images that do not exist{where}: "
                f"{shown}. Pick a range within the series' image numbers, or 'auto'."
            )


def _range_problem(start: object, end: object, delta: object) -> str | None:
    for name, value in (("start", start), ("end", end), ("delta", delta)):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} must be an integer, not {value!r}"
    assert isinstance(start, int) and isinstance(end, int) and isinstance(delta, int)
    if start <= 0 or end <= 0:
        return "start and end must be greater than 0"
    if max(start, end, abs(delta)) > MAX_NUMBER:
        return f"start, end and delta must be at most {MAX_NUMBER} (image numbers are IS values)"
    if delta == 0:
        return "delta must not be 0"
    if start < end and delta < 0:
        return "delta must be positive when start < end"
    if start > end and delta > 0:
        return "delta must be negative when start > end"
    if start == end and delta != 1:
        return "a single image needs delta 1"
    if (end - start) % delta != 0:
        return f"delta {delta} does not divide end - start ({end - start})"
    return None


def resolve_auto_range(images: Sequence[tuple[int, float | None]]) -> ImageRange:
    """The CIRCUS "auto" range of a series.

    Args:
        images: ``(image number, ImagePositionPatient Z or None)`` of every image, any order.

    Returns:
        The first (lowest) run of consecutive image numbers, ordered from higher Z to lower Z.

    Raises:
        InvalidRangeError: for an empty series, or when the Z of the run's first or last image
            is missing ("invalid image").
    """
    if not images:
        raise InvalidRangeError("The series has no images; import its files before using it.")
    z_of = dict(images)
    numbers = sorted(z_of)
    first = numbers[0]
    last = first
    for n in numbers[1:]:
        if n != last + 1:
            break
        last = n
    if first == last:
        return ImageRange(first, first, 1)
    z_first, z_last = z_of[first], z_of[last]
    if z_first is None or z_last is None:
        bad = first if z_first is None else last
        raise InvalidRangeError(
            f"Invalid image: image {bad} has no ImagePositionPatient, so 'auto' cannot tell the "
            "orientation; give the range explicitly as START:END:DELTA."
        )
    if z_first >= z_last:
        return ImageRange(first, last, 1)
    return ImageRange(last, first, -1)


def resolve_range(
    requested: ImageRange | str, images: Sequence[tuple[int, float | None]], series_uid: str = ""
) -> ImageRange:
    """The range a request names, checked against the series' images (job registration's rules).

    Args:
        requested: ``"auto"``, ``START:END[:DELTA]`` text or an :class:`ImageRange`.
        images: ``(image number, ImagePositionPatient Z or None)`` of every image of the series.
        series_uid: Named in the error when images are missing.

    Raises:
        InvalidRangeError: when the range breaks the rules, "auto" finds no usable run, or the
            range names images the series does not hold.
    """
    if requested == AUTO:
        image_range = resolve_auto_range(images)
    elif isinstance(requested, str):
        image_range = ImageRange.parse(requested)
    else:
        image_range = requested
    image_range.check_exists((number for number, _ in images), series_uid)
    return image_range
