"""The rows import writes, through SQLAlchemy: any database, created or migrated first
(:func:`~circus_tasks.store.importer.open_index` picks this where :mod:`sqlite3` will not do)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from circus_tasks.store.index import IMAGE_COLUMNS, LOOKUP_CHUNK, Buffered, Stored


class SqlAlchemyIndex(Buffered):
    """:class:`Index` through SQLAlchemy, on any database (made or migrated first)."""

    def __init__(self) -> None:
        from circus_tasks.db.engine import get_engine

        super().__init__()
        self._engine = get_engine()  # creates or migrates the schema

    def stored(self, sop_uids: Sequence[str]) -> dict[str, Stored]:
        import sqlalchemy as sa
        from sqlmodel import col

        from circus_tasks.db.models import Image

        found: dict[str, Stored] = {}
        with self._engine.connect() as connection:
            for start in range(0, len(sop_uids), LOOKUP_CHUNK):
                chunk = list(sop_uids[start : start + LOOKUP_CHUNK])
                query = sa.select(
                    col(Image.sop_instance_uid),
                    col(Image.id),
                    col(Image.file_size),
                    col(Image.series_uid),
                    col(Image.path),
                ).where(col(Image.sop_instance_uid).in_(chunk))
                for uid, *rest in connection.execute(query):
                    found[uid] = (rest[0], rest[1], rest[2], rest[3])
        return found

    def has_series(self, series_uid: str) -> bool:
        from sqlalchemy.orm import Session

        from circus_tasks.db.models import Series

        if series_uid in self._new_series:
            return True
        with Session(self._engine) as session:
            return session.get(Series, series_uid) is not None

    def flush(self, recount: Iterable[str] = ()) -> None:
        import sqlalchemy as sa
        from sqlalchemy.orm import Session
        from sqlmodel import col

        from circus_tasks.db.models import Image, Series

        taken = self._taken(recount)
        if taken is None:
            return
        batch, counted = taken
        with Session(self._engine) as session, session.begin():
            for uid, fields in batch.series:
                session.add(Series(series_uid=uid, **fields))
            session.flush()
            if batch.images:
                session.execute(
                    sa.insert(Image),
                    [
                        _with_header_object(dict(zip(IMAGE_COLUMNS, row, strict=True)))
                        for row in batch.images
                    ],
                )
            for image_id, columns in batch.facts:
                image = session.get(Image, image_id)
                if image is not None:
                    for name, value in _with_header_object(dict(columns)).items():
                        setattr(image, name, value)
            session.flush()
            for uid in counted:
                series = session.get(Series, uid)
                if series is not None:
                    series.image_count = (
                        session.scalar(
                            sa.select(sa.func.count())
                            .select_from(Image)
                            .where(col(Image.series_uid) == uid)
                        )
                        or 0
                    )

    def close(self) -> None:
        pass


def _with_header_object(values: dict[str, Any]) -> dict[str, Any]:
    header = values.get("header")
    if isinstance(header, str):
        values["header"] = json.loads(header)
    return values
