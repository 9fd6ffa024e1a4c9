"""Registering jobs under the CIRCUS rules: "auto" resolved, ranges and input conditions
checked, the duplicate check, and the rows written ``in_queue`` (nothing is dispatched here)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session
from ulid import ULID

from circus_tasks.db.models import (
    Image,
    Job,
    JobEvent,
    JobSeries,
    Series,
)
from circus_tasks.errors import (
    CircusError,
    DuplicateJobError,
    InputConditionError,
    InvalidValueError,
    JobStateError,
    PluginNotFoundError,
)
from circus_tasks.jobs.duplicates import find_many_duplicates, job_signature
from circus_tasks.plugins.conditions import SeriesUse, unmet_conditions
from circus_tasks.plugins.registry import Plugin, get_plugin
from circus_tasks.statuses import JobStatus
from circus_tasks.store.ranges import AUTO, ImageRange, resolve_range
from circus_tasks.store.series import images_by_series, series_images
from circus_tasks.values import check_int, check_text


@dataclass(frozen=True)
class SeriesInput:
    """One series of a job request: its UID and an image range or ``"auto"``."""

    series_uid: str
    range: ImageRange | str = AUTO


class _Lookups:
    """What validation reads, read once per batch: plug-ins (found by scanning a folder),
    series and their images."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._plugins: dict[str, Plugin | PluginNotFoundError] = {}
        self._images: dict[str, list[Image]] = {}
        self._series: dict[str, Series] = {}

    def prefetch(self, series_uids: Sequence[str]) -> None:
        """Read many series and their images at once (a few queries, not two per series)."""
        series, images = images_by_series(series_uids, session=self.session)
        self._series.update(series)
        self._images.update(images)

    def plugin(self, plugin_id: str) -> Plugin:
        """:func:`get_plugin`, once per id.

        Raises:
            PluginNotFoundError: for an unknown id.
        """
        found = self._plugins.get(plugin_id)
        if found is None:
            try:
                found = get_plugin(plugin_id)
            except PluginNotFoundError as exc:
                found = exc
            self._plugins[plugin_id] = found
        if isinstance(found, PluginNotFoundError):
            raise PluginNotFoundError(str(found))
        return found

    def images(self, series_uid: str) -> list[Image]:
        """:func:`series_images`, once per series.

        Raises:
            SeriesNotFoundError: for a series that is not imported.
        """
        if series_uid not in self._images:
            self._images[series_uid] = series_images(series_uid, session=self.session)
        return self._images[series_uid]

    def series(self, series_uid: str) -> Series:
        """The index entry of a series already looked up with :meth:`images`."""
        if series_uid not in self._series:
            series = self.session.get(Series, series_uid)
            assert series is not None
            self._series[series_uid] = series
        return self._series[series_uid]


def resolve_series(
    series: Sequence[SeriesInput | str], *, session: Session, lookups: _Lookups | None = None
) -> list[tuple[str, ImageRange]]:
    """Resolve "auto", parse and check each range against the series' images.

    Raises:
        SeriesNotFoundError: for a series that is not imported.
        InvalidRangeError: for a range that breaks the rules or names missing images.
    """
    lookups = lookups or _Lookups(session)
    resolved = []
    for item in series:
        request = SeriesInput(item) if isinstance(item, str) else item
        images = lookups.images(request.series_uid)
        image_range = resolve_range(
            request.range, [(i.instance_number, i.z) for i in images], request.series_uid
        )
        resolved.append((request.series_uid, image_range))
    return resolved


def new_job_id() -> str:
    """A lower-case ULID, sortable by creation time."""
    return str(ULID()).lower()


@dataclass(frozen=True)
class JobRequest:
    """One job of :func:`submit_jobs`: the arguments :func:`submit_job` takes."""

    plugin_id: str
    series: list[SeriesInput | str]
    priority: int = 0
    force: bool = False
    user: str | None = None
    supersedes_job_id: str | None = None
    """The job this one re-runs (recorded on the new job)."""

    def __post_init__(self) -> None:
        """Check every field where it enters: one bad request never reaches the tables.

        Raises:
            InvalidValueError: naming the field and what to give instead.
        """
        check_text(self.plugin_id, "plugin_id", optional=False)
        check_int(self.priority, "priority", -100, 100)
        if not isinstance(self.force, bool):
            raise InvalidValueError(f"force must be True or False, not {self.force!r}.")
        check_text(self.user, "user")
        check_text(self.supersedes_job_id, "name")
        if isinstance(self.series, str | bytes) or not isinstance(self.series, Sequence):
            raise InvalidValueError("series must be a list of series UIDs or SeriesInput items.")
        object.__setattr__(self, "series", list(self.series))
        for item in self.series:
            uid = item.series_uid if isinstance(item, SeriesInput) else item
            check_text(uid, "name", optional=False)


def _validate(
    request: JobRequest, *, lookups: _Lookups
) -> tuple[list[tuple[str, ImageRange]], str]:
    """Check a request by every registration rule but the duplicate check; its resolved series
    and signature.

    Raises:
        PluginNotFoundError, JobStateError, SeriesNotFoundError, InvalidRangeError,
        InputConditionError.
    """
    plugin = lookups.plugin(request.plugin_id)
    if not request.series:
        raise JobStateError("A job needs at least one series.")
    resolved = resolve_series(request.series, session=lookups.session, lookups=lookups)
    uses = [SeriesUse(lookups.series(uid), r.count) for uid, r in resolved]
    problems = unmet_conditions(plugin.manifest.input_conditions, uses)
    if problems:
        raise InputConditionError(request.plugin_id, problems)
    return resolved, job_signature(resolved)


@dataclass(frozen=True)
class Accepted:
    """A request that meets every registration rule, with what registering it writes."""

    request: JobRequest
    resolved: list[tuple[str, ImageRange]]
    signature: str
    job_id: str


def judge_requests(
    requests: Sequence[JobRequest], *, session: Session
) -> list[Accepted | CircusError]:
    """Judge many requests by the registration rules, each on its own, writing nothing.

    A request that repeats an earlier accepted one is a duplicate of it (unless forced).
    Plug-ins, series, images and the duplicates already registered are read a few queries for
    all of them, not per request.

    Returns:
        For each request in order, its acceptance or the error that refuses it.
    """
    lookups = _Lookups(session)
    lookups.prefetch(
        [s if isinstance(s, str) else s.series_uid for request in requests for s in request.series]
    )
    judged: list[tuple[list[tuple[str, ImageRange]], str] | CircusError] = []
    for request in requests:
        try:
            judged.append(_validate(request, lookups=lookups))
        except CircusError as exc:
            judged.append(exc)
    registered = find_many_duplicates(
        [
            (request.plugin_id, outcome[1])
            for request, outcome in zip(requests, judged, strict=True)
            if not isinstance(outcome, CircusError) and not request.force
        ],
        session=session,
    )
    pending: dict[tuple[str, str], list[str]] = defaultdict(list)
    outcomes: list[Accepted | CircusError] = []
    for request, outcome in zip(requests, judged, strict=True):
        if isinstance(outcome, CircusError):
            outcomes.append(outcome)
            continue
        key = (request.plugin_id, outcome[1])
        # a request that re-runs a job is not a duplicate of that job
        existing = [
            job_id
            for job_id in registered.get(key, []) + pending[key]
            if job_id != request.supersedes_job_id
        ]
        if existing and not request.force:
            outcomes.append(DuplicateJobError(existing))
            continue
        accepted = Accepted(request, outcome[0], outcome[1], new_job_id())
        pending[key].append(accepted.job_id)
        outcomes.append(accepted)
    return outcomes


def _job_rows(accepted: Accepted, batch_id: str | None) -> list[Job | JobSeries | JobEvent]:
    """The rows that register a job: the job ``in_queue``, its series, its first event."""
    request = accepted.request
    job = Job(
        id=accepted.job_id,
        plugin_id=request.plugin_id,
        user=request.user,
        priority=request.priority,
        signature=accepted.signature,
        batch_id=batch_id,
        supersedes_job_id=request.supersedes_job_id,
    )
    series = [
        JobSeries(
            job_id=job.id,
            position=position,
            series_uid=uid,
            start=image_range.start,
            end=image_range.end,
            delta=image_range.delta,
        )
        for position, (uid, image_range) in enumerate(accepted.resolved)
    ]
    reason = f"submitted in batch {batch_id}" if batch_id else "submitted"
    event = JobEvent(job_id=job.id, to_status=JobStatus.IN_QUEUE, by=request.user, reason=reason)
    return [job, *series, event]


def write_jobs(
    accepted: Sequence[Accepted], *, session: Session, batch_id: str | None = None
) -> list[Job]:
    """Write accepted requests as jobs ``in_queue`` (no dispatch), in one flush."""
    rows = [row for item in accepted for row in _job_rows(item, batch_id)]
    session.add_all(rows)
    session.flush()
    return [row for row in rows if isinstance(row, Job)]


def register_job(request: JobRequest, *, session: Session) -> Job:
    """Validate a job request and write the job ``in_queue`` (no dispatch).

    Raises:
        PluginNotFoundError, SeriesNotFoundError, InvalidRangeError, InputConditionError,
        DuplicateJobError.
    """
    (outcome,) = judge_requests([request], session=session)
    if isinstance(outcome, CircusError):
        raise outcome
    (job,) = write_jobs([outcome], session=session)
    return job


def register_jobs(requests: Sequence[JobRequest], *, session: Session) -> list[Job | CircusError]:
    """Validate and write many jobs ``in_queue`` (no dispatch), each request on its own
    (:func:`judge_requests`); the rows are written in one flush.

    Returns:
        For each request in order, its new job or the error that refused it.
    """
    outcomes = judge_requests(requests, session=session)
    jobs = iter(write_jobs([o for o in outcomes if isinstance(o, Accepted)], session=session))
    return [o if isinstance(o, CircusError) else next(jobs) for o in outcomes]
