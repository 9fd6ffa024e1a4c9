"""Input conditions: each refuses a job naming the series and the condition; force does not
override them; a job that meets them is accepted."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from circus_tasks.db.engine import session_scope
from circus_tasks.errors import InputConditionError
from circus_tasks.jobs.registration import JobRequest, SeriesInput, register_job
from circus_tasks.store.series import get_series

PLUGIN = "ct-only@1.0.0"
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
SeriesFactory = Callable[..., str]


def register(*series: SeriesInput | str, force: bool = False) -> str:
    with session_scope() as session:
        return register_job(JobRequest(PLUGIN, list(series), force=force), session=session).id


def test_a_job_meeting_every_condition_is_accepted(series_factory: SeriesFactory) -> None:
    uid = series_factory(slices=5, pixel_spacing=(0.7, 0.7))
    assert register(uid)
    series = get_series(uid)
    assert series is not None and series.orientation == "axial"
    assert "PixelSpacing" in series.attributes


@pytest.mark.parametrize(
    ("options", "series_range", "message"),
    [
        ({"modality": "MR"}, "auto", "modality is MR, the plug-in takes CT"),
        ({"slices": 2}, "auto", "2 image(s), the plug-in needs at least 3"),
        ({"slices": 12}, "auto", "12 image(s), the plug-in takes at most 10"),
        ({"slices": 12}, "1:10", None),  # the range decides how many images the job takes
        (
            {"pixel_spacing": (0.3, 0.3)},
            "auto",
            "pixel spacing 0.3 x 0.3 mm is outside [0.5, 1] mm",
        ),
        (
            {"extra": {"SliceThickness": None}},
            "auto",
            "missing required attribute(s) SliceThickness",
        ),
        ({"extra": {"ImageOrientationPatient": CORONAL}}, "auto", "orientation is coronal"),
    ],
)
def test_each_condition_refuses_naming_series_and_condition(
    series_factory: SeriesFactory,
    options: dict[str, object],
    series_range: str,
    message: str | None,
) -> None:
    uid = series_factory(**options)
    if message is None:
        assert register(SeriesInput(uid, series_range))
        return
    for force in (False, True):
        with pytest.raises(InputConditionError) as caught:
            register(SeriesInput(uid, series_range), force=force)
        assert f"series 0 ({uid}): {message}" in str(caught.value)
        assert "ct-only@1.0.0" in str(caught.value)


def test_series_count_and_per_position_conditions(series_factory: SeriesFactory) -> None:
    ct, mr = series_factory(), series_factory(modality="MR")
    assert register(ct, mr)  # the second entry allows MR at position 1
    with pytest.raises(InputConditionError, match="takes 1 to 2 series, the job has 3"):
        register(ct, mr, ct)
    with pytest.raises(InputConditionError) as caught:
        register(mr, ct)
    assert f"series 0 ({mr}): modality is MR" in str(caught.value)
    assert f"series 1 ({ct})" not in str(caught.value)


def test_every_unmet_condition_is_listed(series_factory: SeriesFactory) -> None:
    uid = series_factory(modality="MR", slices=2, pixel_spacing=(2.0, 2.0))
    with pytest.raises(InputConditionError) as caught:
        register(uid)
    assert len(caught.value.problems) == 3
