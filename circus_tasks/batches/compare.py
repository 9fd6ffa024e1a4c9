"""Comparing a batch's new results with those of the jobs they supersede, item by item.

Every number in ``results.json`` (at any depth, by its dotted path) and the length of every
list (e.g. the count of lesion candidates, as ``lesionCandidates[]``) is put side by side with
its difference; an item is compared once its new job finished (the old one may have been
invalidated since).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from circus_tasks.batches import records
from circus_tasks.db.models import Job
from circus_tasks.statuses import JobStatus


@dataclass(frozen=True)
class Difference:
    """One measure of one item: the old and the new value, and new minus old."""

    position: int
    old_job_id: str
    new_job_id: str
    measure: str
    old: float | None
    new: float | None

    @property
    def change(self) -> float | None:
        if self.old is None or self.new is None:
            return None
        return self.new - self.old

    def as_row(self) -> dict[str, Any]:
        """The row of the comparison table."""
        names = ("item", "old job", "new job", "measure", "old", "new", "change")
        values = (self.position, self.old_job_id, self.new_job_id, self.measure, self.old)
        return dict(zip(names, (*values, self.new, self.change), strict=True))


def measures(document: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a results document by dotted path, and each list's length."""
    found: dict[str, float] = {}
    if isinstance(document, bool):
        return found
    if isinstance(document, int | float):
        if math.isfinite(document):
            found[prefix] = float(document)
    elif isinstance(document, dict):
        for key, value in document.items():
            found.update(measures(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(document, list):
        found[f"{prefix}[]"] = float(len(document))
    return found


def compare_items(batch_id: str, *, session: Session) -> list[Difference]:
    """Every measure of every item whose new job finished, in item order."""
    rows: list[Difference] = []
    for item in records.items(batch_id, session=session):
        if item.supersedes_job_id is None or item.job_id is None:
            continue
        old, new = session.get(Job, item.supersedes_job_id), session.get(Job, item.job_id)
        if old is None or new is None:
            continue
        if new.status != JobStatus.FINISHED or old.results is None:
            continue  # compared once the new job finished, against results the old one has
        before = measures((old.results or {}).get("results", {}))
        after = measures((new.results or {}).get("results", {}))
        for name in sorted(before.keys() | after.keys()):
            rows.append(
                Difference(item.position, old.id, new.id, name, before.get(name), after.get(name))
            )
    return rows


def as_csv(rows: list[Difference]) -> str:
    """The comparison as CSV: item, old job, new job, measure, old, new, change."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["item", "old_job", "new_job", "measure", "old", "new", "change"])
    for row in rows:
        writer.writerow(
            [row.position, row.old_job_id, row.new_job_id, row.measure]
            + ["" if v is None else f"{v:g}" for v in (row.old, row.new, row.change)]
        )
    return out.getvalue()
