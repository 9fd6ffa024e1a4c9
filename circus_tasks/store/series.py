"""Looking up imported series and their images."""

from __future__ import annotations

from sqlmodel import Session, col, select

from circus_tasks.db.engine import session_scope
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
