"""CIRCUS's image-range rules and the "auto" range."""

from __future__ import annotations

import pytest

from circus_tasks.errors import CircusError, InvalidRangeError
from circus_tasks.store.ranges import ImageRange, resolve_auto_range, resolve_range

VALID = [
    # (start, end, delta, numbers)
    ((1, 1, 1), [1]),
    ((1, 5, 1), [1, 2, 3, 4, 5]),
    ((5, 1, -1), [5, 4, 3, 2, 1]),
    ((1, 61, 3), list(range(1, 62, 3))),
    ((150, 1, -1), list(range(150, 0, -1))),
    ((2, 8, 2), [2, 4, 6, 8]),
    ((9, 3, -3), [9, 6, 3]),
    ((1, 6, 5), [1, 6]),
]

INVALID = [
    # (start, end, delta, what the message must say)
    ((0, 5, 1), "greater than 0"),
    ((1, 0, -1), "greater than 0"),
    ((-3, 5, 1), "greater than 0"),
    ((1, 5, 0), "must not be 0"),
    ((1, 5, -1), "positive"),
    ((5, 1, 1), "negative"),
    ((1, 6, 2), "does not divide"),
    ((6, 1, -2), "does not divide"),
    ((3, 3, -1), "single image"),
    ((3, 3, 2), "single image"),
    ((1.5, 3, 1), "integer"),
    ((1, "3", 1), "integer"),
    ((True, 3, 1), "integer"),
]


@pytest.mark.parametrize(("args", "numbers"), VALID)
def test_valid_ranges_expand_inclusively(args: tuple[int, int, int], numbers: list[int]) -> None:
    image_range = ImageRange(*args)
    assert image_range.numbers() == numbers
    assert image_range.count == len(numbers)


@pytest.mark.parametrize(("args", "message"), INVALID)
def test_invalid_ranges_are_refused(args: tuple[object, object, object], message: str) -> None:
    with pytest.raises(InvalidRangeError, match=message) as caught:
        ImageRange(*args)  # type: ignore[arg-type]
    assert "Specified range is invalid" in str(caught.value)
    assert isinstance(caught.value, CircusError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:5", ImageRange(1, 5, 1)),
        ("10:2:-2", ImageRange(10, 2, -2)),
        (" 3:3:1 ", ImageRange(3, 3)),
    ],
)
def test_parse(text: str, expected: ImageRange) -> None:
    assert ImageRange.parse(text) == expected


@pytest.mark.parametrize("text", ["1", "1:2:3:4", "a:b", "1:6:2", ""])
def test_parse_refuses_bad_text(text: str) -> None:
    with pytest.raises(InvalidRangeError):
        ImageRange.parse(text)


def test_every_named_image_must_exist() -> None:
    ImageRange(1, 5).check_exists([1, 2, 3, 4, 5, 6])
    with pytest.raises(InvalidRangeError, match="do not exist in series S: 4, 5"):
        ImageRange(1, 5).check_exists([1, 2, 3], "S")


def test_auto_takes_the_first_consecutive_run() -> None:
    images = [(n, -float(n)) for n in (1, 2, 3, 10, 11)]
    assert resolve_auto_range(images) == ImageRange(1, 3, 1)


def test_auto_on_a_gapped_series_starting_late() -> None:
    images = [(n, -float(n)) for n in (7, 8, 9, 12, 13, 14, 15)]
    assert resolve_auto_range(images) == ImageRange(7, 9, 1)


def test_auto_orders_from_higher_to_lower_z() -> None:
    rising = [(n, float(n)) for n in range(1, 6)]  # z grows with the image number
    assert resolve_auto_range(rising) == ImageRange(5, 1, -1)
    falling = [(n, -float(n)) for n in range(1, 6)]
    assert resolve_auto_range(falling) == ImageRange(1, 5, 1)
    flat = [(n, 0.0) for n in range(1, 6)]  # first z >= last z
    assert resolve_auto_range(flat) == ImageRange(1, 5, 1)


def test_auto_ignores_input_order() -> None:
    images = [(3, 3.0), (1, 1.0), (2, 2.0)]
    assert resolve_auto_range(images) == ImageRange(3, 1, -1)


def test_auto_on_a_single_image() -> None:
    assert resolve_auto_range([(1, None)]) == ImageRange(1, 1, 1)
    assert resolve_auto_range([(5, 2.0), (9, 1.0)]) == ImageRange(5, 5, 1)


def test_auto_on_an_empty_series_is_an_error() -> None:
    with pytest.raises(InvalidRangeError, match="no images"):
        resolve_auto_range([])


def test_auto_needs_z_at_both_ends() -> None:
    with pytest.raises(InvalidRangeError, match="Invalid image: image 3"):
        resolve_auto_range([(1, 1.0), (2, 2.0), (3, None)])


SERIES = [(1, 0.0), (2, 1.0), (3, 2.0), (4, 3.0), (6, 5.0)]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("auto", ImageRange(4, 1, -1)),
        ("2:4", ImageRange(2, 4, 1)),
        ("6:2:-2", ImageRange(6, 2, -2)),
        (ImageRange(1, 3, 2), ImageRange(1, 3, 2)),
    ],
)
def test_resolve_range(requested: ImageRange | str, expected: ImageRange) -> None:
    assert resolve_range(requested, SERIES, "1.2.3") == expected


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("1:6", "names images that do not exist in series 1.2.3: 5"),
        (ImageRange(5, 6), "do not exist in series 1.2.3: 5"),
        ("1:x", "must be integers"),
        ("0:2", "greater than 0"),
    ],
)
def test_resolve_range_refuses(requested: ImageRange | str, message: str) -> None:
    with pytest.raises(InvalidRangeError, match=message):
        resolve_range(requested, SERIES, "1.2.3")
