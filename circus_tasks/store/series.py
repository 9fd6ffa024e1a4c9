"""Looking up imported series and their images."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from circus_tasks.db.engine import CHUNK, session_scope
from circus_tasks.db.models import Image, Series, SeriesRead
from circus_tasks.errors import SeriesNotFoundError
from circus_tasks.store.slices import ImageRow
from circus_tasks.volume.stored import STORED_COLUMNS, StoredSlice


def list_series(*, patient_id: str | None = None, modality: str | None = None) -> list[SeriesRead]:
    """Imported series, newest first, optionally filtered."""
    with session_scope() as session:
        query = select(Series).order_by(Series.created_at.desc())  # type: ignore[attr-defined]
        if patient_id is not None:
            query = query.where(Series.patient_id == patient_id)
        if modality is not None:
            query = query.where(Series.modality == modality)
        return [SeriesRead.model_validate(s) for s in session.exec(query)]


def get_series(series_uid: str) -> SeriesRead | None:
    """One series by UID, or ``None``."""
    with session_scope() as session:
        series = session.get(Series, series_uid)
        return SeriesRead.model_validate(series) if series else None


def series_images(series_uid: str, *, session: Session) -> list[Image]:
    """The images of a series sorted by image number (then by import order).

    Raises:
        SeriesNotFoundError: when no series has this UID.
    """
    if session.get(Series, series_uid) is None:
        raise SeriesNotFoundError.for_uid(series_uid)
    query = (
        select(Image)
        .where(Image.series_uid == series_uid)
        .order_by(col(Image.instance_number), col(Image.id))
    )
    return list(session.exec(query))


def images_by_series(
    series_uids: Sequence[str], *, session: Session
) -> tuple[dict[str, Series], dict[str, list[Image]]]:
    """The index entries of many series and their images (as :func:`series_images` orders
    them), a few queries for all; series that are not imported are left out."""
    wanted = list(dict.fromkeys(series_uids))
    found: dict[str, Series] = {}
    images: dict[str, list[Image]] = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        for series in session.exec(select(Series).where(col(Series.series_uid).in_(chunk))):
            found[series.series_uid] = series
            images[series.series_uid] = []
        query = (
            select(Image)
            .where(col(Image.series_uid).in_(chunk))
            .order_by(col(Image.series_uid), col(Image.instance_number), col(Image.id))
        )
        for image in session.exec(query):
            images[image.series_uid].append(image)
    return found, images


def stored_facts(image: Image) -> StoredSlice | None:
    """The facts import stored for an image, or ``None`` (imported before they were stored, or
    a slice that pre-processing must parse)."""
    return StoredSlice.from_columns({name: getattr(image, name) for name in STORED_COLUMNS})


def image_rows(series_uid: str, *, session: Session) -> list[ImageRow]:
    """:func:`series_images` as the rows :func:`~circus_tasks.store.slices.pick_slices` takes.

    Raises:
        SeriesNotFoundError: when no series has this UID.
    """
    return [
        (image.instance_number, image.z, image.path, stored_facts(image), image.sop_instance_uid)
        for image in series_images(series_uid, session=session)
    ]
