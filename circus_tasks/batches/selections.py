"""What a batch runs over: a selection of series, or of earlier jobs to run again.

Each selection is a typed model (they are the parameters of the batch deployment, so that
Prefect's "Run" form can start a batch) and turns into one :class:`Selected` input per job the
batch would make, in a stable order.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlmodel import Session, col, func, select
from sqlmodel.sql.expression import SelectOfScalar

from circus_tasks.db.models import Image, Job, JobSeries, Series
from circus_tasks.errors import InvalidRangeError
from circus_tasks.jobs.registration import SeriesInput
from circus_tasks.statuses import JobStatus
from circus_tasks.store.ranges import AUTO, ImageRange, resolve_range
from circus_tasks.store.series import image_rows
from circus_tasks.store.slices import input_digest, pick_slices


class _Selection(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeriesSelection(_Selection):
    """Imported series, each one job of the batch's plug-in (range "auto" unless given)."""

    kind: Literal["series"] = "series"
    series_uids: list[str] | None = Field(default=None, description="exactly these series")
    modality: list[str] | None = None
    patient_ids: list[str] | None = None
    study_date_from: str | None = Field(default=None, pattern=r"^\d{8}$", description="YYYYMMDD")
    study_date_to: str | None = Field(default=None, pattern=r"^\d{8}$", description="YYYYMMDD")
    description: str | None = Field(
        default=None, description="series description pattern (* and ?, any case)"
    )
    imported_since: datetime | None = None
    imported_before: datetime | None = None
    min_images: int | None = Field(default=None, ge=1)
    range: str = Field(default=AUTO, description='"auto" or START:END[:DELTA]')

    @field_validator("range")
    @classmethod
    def _range(cls, value: str) -> str:
        if value != AUTO:
            ImageRange.parse(value)  # InvalidRangeError is a ValueError: reported as such
        return value


class JobsSelection(_Selection):
    """Earlier jobs to run again with the batch's plug-in, on the same series and ranges."""

    kind: Literal["jobs"] = "jobs"
    plugin_name: str
    versions: str | None = Field(default=None, description="a version range, e.g. <1.1.0")
    statuses: list[JobStatus] = Field(default_factory=lambda: [JobStatus.FINISHED])
    since: datetime | None = None
    before: datetime | None = None
    user: str | None = None

    @field_validator("versions")
    @classmethod
    def _versions(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                SpecifierSet(value)
            except InvalidSpecifier as exc:
                raise ValueError(f"{value!r} is not a version range such as <1.1.0") from exc
        return value


class FailedSelection(_Selection):
    """Jobs of a plug-in (default: the batch's) that failed in a time window, to run again:
    since a time, or within the last hours (for a schedule: "last night's failures")."""

    kind: Literal["failed"] = "failed"
    since: datetime | None = None
    within_hours: float | None = Field(default=None, gt=0)
    before: datetime | None = None
    plugin_id: str | None = None

    @model_validator(mode="after")
    def _window(self) -> FailedSelection:
        if (self.since is None) == (self.within_hours is None):
            raise ValueError("Give the window's start: since a time, or within_hours.")
        return self

    def start(self) -> datetime:
        """Where the window starts."""
        if self.since is not None:
            return self.since
        assert self.within_hours is not None
        return datetime.now(UTC) - timedelta(hours=self.within_hours)


class ChangedSelection(_Selection):
    """Series whose last finished job of the plug-in used other images than the range (``auto``
    unless given) takes now: images that arrived after the job, or were replaced."""

    kind: Literal["changed"] = "changed"
    plugin_id: str | None = Field(default=None, description="default: the batch's plug-in")
    range: str = Field(default=AUTO, description='"auto" or START:END[:DELTA]')


Selection = Annotated[
    SeriesSelection | JobsSelection | FailedSelection | ChangedSelection,
    Field(discriminator="kind"),
]


@dataclass(frozen=True)
class Selected:
    """One input of a batch: the series (and ranges) of one job, and the job it re-runs."""

    series: list[SeriesInput]
    supersedes_job_id: str | None = None
    label: str = field(default="", compare=False)


def select_inputs(selection: Selection, *, plugin_id: str, session: Session) -> list[Selected]:
    """The inputs a selection names for a batch of ``plugin_id``, in a stable order (series
    UID, or job id)."""
    if isinstance(selection, SeriesSelection):
        return _series(selection, session)
    if isinstance(selection, ChangedSelection):
        return _changed(selection.plugin_id or plugin_id, selection.range, session)
    if isinstance(selection, JobsSelection):
        name = f"{selection.plugin_name}@"
        query = select(Job).where(col(Job.plugin_id).startswith(name, autoescape=True))
        query = query.where(col(Job.status).in_(selection.statuses))
        if selection.user is not None:
            query = query.where(Job.user == selection.user)
        jobs = _window(query, selection.since, selection.before, session)
        if selection.versions is not None:
            wanted = SpecifierSet(selection.versions)
            jobs = [j for j in jobs if _version_in(j.plugin_id.partition("@")[2], wanted)]
        return _rerun(jobs, session)
    query = select(Job).where(
        Job.status == JobStatus.FAILED, Job.plugin_id == (selection.plugin_id or plugin_id)
    )
    return _rerun(
        _window(query, selection.start(), selection.before, session, when=col(Job.finished_at)),
        session,
    )


def _series(selection: SeriesSelection, session: Session) -> list[Selected]:
    query = select(Series).order_by(col(Series.series_uid))
    if selection.series_uids is not None:
        query = query.where(col(Series.series_uid).in_(selection.series_uids))
    if selection.modality is not None:
        query = query.where(col(Series.modality).in_(selection.modality))
    if selection.patient_ids is not None:
        query = query.where(col(Series.patient_id).in_(selection.patient_ids))
    if selection.study_date_from is not None:
        query = query.where(col(Series.series_date) >= selection.study_date_from)
    if selection.study_date_to is not None:
        query = query.where(col(Series.series_date) <= selection.study_date_to)
    if selection.imported_since is not None:
        query = query.where(col(Series.created_at) >= selection.imported_since)
    if selection.imported_before is not None:
        query = query.where(col(Series.created_at) < selection.imported_before)
    if selection.min_images is not None:
        counted = (
            select(Image.series_uid)
            .group_by(col(Image.series_uid))
            .having(func.count() >= selection.min_images)
        )
        query = query.where(col(Series.series_uid).in_(counted))
    chosen = list(session.exec(query))
    if selection.description is not None:
        pattern = selection.description.lower()
        chosen = [s for s in chosen if fnmatch.fnmatchcase(s.description.lower(), pattern)]
    return [
        Selected([SeriesInput(s.series_uid, selection.range)], label=s.series_uid) for s in chosen
    ]


def _window(
    query: SelectOfScalar[Job],
    since: datetime | None,
    before: datetime | None,
    session: Session,
    *,
    when: Any = None,
) -> list[Job]:
    """The jobs of ``query`` whose ``when`` (default: creation) is in ``[since, before)``,
    oldest first."""
    moment = col(Job.created_at) if when is None else when
    if since is not None:
        query = query.where(moment >= since)
    if before is not None:
        query = query.where(moment < before)
    return list(session.exec(query.order_by(col(Job.id))))


def _version_in(version: str, wanted: SpecifierSet) -> bool:
    try:
        return Version(version) in wanted
    except InvalidVersion:
        return False


def _rerun(jobs: Sequence[Job], session: Session) -> list[Selected]:
    """Each job's series and ranges, as a new input that supersedes it."""
    ids = [job.id for job in jobs]
    series: dict[str, list[SeriesInput]] = {job_id: [] for job_id in ids}
    for start in range(0, len(ids), 500):
        for row in session.exec(
            select(JobSeries)
            .where(col(JobSeries.job_id).in_(ids[start : start + 500]))
            .order_by(col(JobSeries.job_id), col(JobSeries.position))
        ):
            image_range = ImageRange(row.start, row.end, row.delta)
            series[row.job_id].append(SeriesInput(row.series_uid, image_range))
    return [Selected(series[job_id], supersedes_job_id=job_id, label=job_id) for job_id in ids]


def _changed(plugin_id: str, range_text: str, session: Session) -> list[Selected]:
    """Each series whose last finished single-series job of ``plugin_id`` (with provenance)
    used other images than ``range_text`` picks from the series now."""
    finished = session.exec(
        select(Job, JobSeries.series_uid)
        .join(JobSeries, col(JobSeries.job_id) == col(Job.id))
        .where(Job.plugin_id == plugin_id, Job.status == JobStatus.FINISHED)
        .where(col(Job.input_digest).is_not(None))
        .order_by(col(Job.id))
    ).all()
    counts = Counter(job.id for job, _ in finished)
    last = {uid: job for job, uid in finished if counts[job.id] == 1}  # the newest wins
    chosen = []
    for uid in sorted(last):
        rows = image_rows(uid, session=session)
        try:
            image_range = resolve_range(range_text, [(r[0], r[1]) for r in rows], uid)
            now = pick_slices(rows, image_range, uid).sop_uids
        except InvalidRangeError:
            now = []  # no usable range now: the images changed too
        if input_digest([now]) != last[uid].input_digest:
            chosen.append(Selected([SeriesInput(uid, range_text)], last[uid].id, uid))
    return chosen
