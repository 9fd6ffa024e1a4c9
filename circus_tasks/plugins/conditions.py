"""Checking a job's series against the input conditions its plug-in declares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from circus_tasks.db.models import Series
from circus_tasks.plugins.manifest import InputConditions, SeriesConditions


@dataclass(frozen=True)
class SeriesUse:
    """One series of a job as the conditions see it: the index entry and how many images the
    job's range takes."""

    series: Series
    image_count: int


def unmet_conditions(conditions: InputConditions, uses: Sequence[SeriesUse]) -> list[str]:
    """Every condition the job breaks, each naming the series (position and UID).

    Returns:
        An empty list when the job meets every condition.
    """
    problems = []
    count = len(uses)
    most = conditions.max_series
    if count < conditions.min_series or (most is not None and count > most):
        wanted = (
            f"{conditions.min_series}"
            if most == conditions.min_series
            else f"{conditions.min_series} to {most if most is not None else 'any number of'}"
        )
        problems.append(f"the plug-in takes {wanted} series, the job has {count}")
    for position, use in enumerate(uses):
        rules = conditions.for_position(position)
        if rules is not None:
            where = f"series {position} ({use.series.series_uid})"
            problems += [f"{where}: {p}" for p in _series_problems(rules, use)]
    return problems


def _series_problems(rules: SeriesConditions, use: SeriesUse) -> list[str]:
    series = use.series
    problems = []
    if rules.modality is not None and series.modality not in rules.modality:
        problems.append(
            f"modality is {series.modality or 'unknown'}, the plug-in takes "
            + " or ".join(rules.modality)
        )
    if rules.min_images is not None and use.image_count < rules.min_images:
        problems.append(
            f"{use.image_count} image(s), the plug-in needs at least {rules.min_images}"
        )
    if rules.max_images is not None and use.image_count > rules.max_images:
        problems.append(f"{use.image_count} image(s), the plug-in takes at most {rules.max_images}")
    if rules.required_attributes:
        missing = [a for a in rules.required_attributes if a not in set(series.attributes or [])]
        if missing:
            problems.append(f"missing required attribute(s) {', '.join(missing)}")
    if rules.pixel_spacing_mm is not None:
        spacings = [series.pixel_spacing_row, series.pixel_spacing_col]
        if None in spacings:
            problems.append("pixel spacing unknown (no PixelSpacing)")
        elif not all(rules.pixel_spacing_mm.holds(s) for s in spacings if s is not None):
            problems.append(
                f"pixel spacing {spacings[0]:g} x {spacings[1]:g} mm is outside "
                f"{rules.pixel_spacing_mm} mm"
            )
    if rules.orientation is not None and series.orientation not in rules.orientation:
        problems.append(
            f"orientation is {series.orientation or 'unknown'}, the plug-in takes "
            + " or ".join(rules.orientation)
        )
    return problems
