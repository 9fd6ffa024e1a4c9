"""Planning a batch: what each selected input would become, judged by the registration rules,
and starting it: writing exactly that.

The plan writes nothing. Starting re-plans in the same transaction that writes the batch, its
items and the jobs of the items that run (``in_queue``, held for the batch's feeder), so what
starts is what the plan says of the data as it is at that moment.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from circus_tasks.batches.selections import Selection, select_inputs
from circus_tasks.db.models import Batch, BatchEvent, BatchItem
from circus_tasks.errors import CircusError, DuplicateJobError
from circus_tasks.jobs.registration import (
    Accepted,
    JobRequest,
    SeriesInput,
    judge_requests,
    new_job_id,
    write_jobs,
)
from circus_tasks.plugins.registry import get_plugin
from circus_tasks.statuses import ACTIVE_BATCH as ACTIVE
from circus_tasks.statuses import BatchStatus, ItemOutcome
from circus_tasks.values import check_text

BATCH_PRIORITY = -5
"""The default priority of a batch's jobs: below interactive jobs (0), which start first."""


class BatchRequest(BaseModel):
    """A batch: which plug-in, over what, how fast."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    plugin_id: str = Field(description="name@version")
    selection: Selection
    priority: int = Field(default=BATCH_PRIORITY, ge=-100, le=100)
    max_in_flight: int = Field(default=4, ge=1, le=1000, description="jobs queued at a time")
    user: str | None = Field(default=None, max_length=200)

    @field_validator("name", "plugin_id", "user")
    @classmethod
    def _plain_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_text(value, "name" if info.field_name == "plugin_id" else str(info.field_name))

    def key(self) -> str:
        """A digest of the request: starting the same request again finds its batch."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class PlannedItem:
    """What one selected input would become."""

    position: int
    series: list[dict[str, str]]
    outcome: ItemOutcome
    reason: str | None = None
    related_job_ids: tuple[str, ...] = ()
    supersedes_job_id: str | None = None
    accepted: Accepted | None = None


@dataclass(frozen=True)
class BatchPlan:
    """A batch's plan: one item per selected input, in order."""

    request: BatchRequest
    items: list[PlannedItem]

    def counts(self) -> dict[ItemOutcome, int]:
        """How many items would run, be skipped and be refused."""
        found = Counter(item.outcome for item in self.items)
        return {outcome: found[outcome] for outcome in ItemOutcome}


def _described(series: list[SeriesInput]) -> list[dict[str, str]]:
    return [{"series_uid": s.series_uid, "range": str(s.range)} for s in series]


def plan_batch_items(request: BatchRequest, *, session: Session) -> BatchPlan:
    """The plan of a batch request, writing nothing.

    Raises:
        PluginNotFoundError: the batch's plug-in is not registered.
    """
    get_plugin(request.plugin_id)
    selected = select_inputs(request.selection, plugin_id=request.plugin_id, session=session)
    job_requests = [
        JobRequest(
            request.plugin_id,
            list(s.series),
            priority=request.priority,
            user=request.user,
            supersedes_job_id=s.supersedes_job_id,
        )
        for s in selected
    ]
    items = []
    for position, (chosen, outcome) in enumerate(
        zip(selected, judge_requests(job_requests, session=session), strict=True)
    ):
        series, supersedes = _described(chosen.series), chosen.supersedes_job_id
        if isinstance(outcome, DuplicateJobError):
            related = tuple(outcome.existing_job_ids)
            reason = str(outcome)
            item = PlannedItem(position, series, ItemOutcome.SKIPPED, reason, related, supersedes)
        elif isinstance(outcome, CircusError):
            item = PlannedItem(position, series, ItemOutcome.REFUSED, str(outcome), (), supersedes)
        else:
            resolved = [{"series_uid": uid, "range": str(r)} for uid, r in outcome.resolved]
            item = PlannedItem(position, resolved, ItemOutcome.RUN, None, (), supersedes, outcome)
        items.append(item)
    return BatchPlan(request, items)


def _active(key: str, session: Session) -> Batch | None:
    query = select(Batch).where(Batch.request_key == key, col(Batch.status).in_(list(ACTIVE)))
    return session.exec(query).first()


def start_batch_records(request: BatchRequest, *, session: Session) -> tuple[Batch, bool]:
    """Write the batch, its items and its jobs (held ``in_queue``), as the plan says now.

    The same request while its batch is running or paused starts nothing new, also when two
    starts race: the batch row is written first, and a unique index on the request of the
    running and paused batches lets one of them in (the other waits for it, then finds it).

    Returns:
        The batch, and whether this call created it.
    """
    key = request.key()
    existing = _active(key, session)
    if existing is not None:
        return existing, False
    batch = Batch(
        id=new_job_id(),
        name=request.name,
        plugin_id=request.plugin_id,
        request_key=key,
        selection=request.selection.model_dump(mode="json"),
        options={"priority": request.priority, "max_in_flight": request.max_in_flight},
        user=request.user,
    )
    try:
        with session.begin_nested():
            session.add(batch)
            session.flush()
    except IntegrityError:  # the other start got in first (the savepoint let go of our row)
        existing = _active(key, session)
        assert existing is not None
        return existing, False
    plan = plan_batch_items(request, session=session)
    counts = plan.counts()
    batch.planned_run = counts[ItemOutcome.RUN]
    batch.planned_skipped = counts[ItemOutcome.SKIPPED]
    batch.planned_refused = counts[ItemOutcome.REFUSED]
    session.add(batch)
    session.add(BatchEvent(batch_id=batch.id, to_status=BatchStatus.RUNNING))
    runs = [item.accepted for item in plan.items if item.accepted is not None]
    write_jobs(runs, session=session, batch_id=batch.id)
    if plan.items:  # the items as plain rows, one statement: as quick as submit_jobs
        session.execute(
            insert(BatchItem),
            [
                {
                    "batch_id": batch.id,
                    "position": item.position,
                    "series": item.series,
                    "outcome": item.outcome,
                    "reason": item.reason,
                    "job_id": item.accepted.job_id if item.accepted else None,
                    "related_job_ids": list(item.related_job_ids),
                    "supersedes_job_id": item.supersedes_job_id,
                }
                for item in plan.items
            ],
        )
    session.flush()
    return batch, True
