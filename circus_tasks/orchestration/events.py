"""Every status move of a job or a batch, sent to Prefect as an event, so that a site can act on
them with Prefect Automations (e-mail or Slack when a job fails, ...).

The moves are written to our tables with the move itself (``jobevent``, ``batch_event``); the
reconciler sends those not sent yet. Each row is claimed before it is sent, so that the
reconcilers of several machines send each move once.

Event names: ``circus.job.<status>`` (``in_queue`` when registered) and ``circus.batch.started``,
``.paused``, ``.resumed``, ``.cancelled``, ``.completed``. The resource is the job
(``circus.job.ID``) or the batch (``circus.batch.ID``); related resources name the plug-in,
each series, the batch, the user and the flow run.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Batch, BatchEvent, Job, JobEvent, JobSeries, utcnow
from circus_tasks.statuses import BatchStatus

BATCH_EVENT_NAMES: dict[BatchStatus, str] = {
    BatchStatus.PAUSED: "paused",
    BatchStatus.CANCELLED: "cancelled",
    BatchStatus.COMPLETED: "completed",
}
"""The event of a batch move by its new status (``running``: started, or resumed)."""

CLAIM = 200
"""Moves claimed and sent per query."""


def _claim(table: type[JobEvent] | type[BatchEvent], session: Session) -> list[Any]:
    """Mark up to :data:`CLAIM` unsent rows of ``table`` sent, and return those this call got."""
    ids = list(
        session.exec(
            select(table.id).where(col(table.emitted_at).is_(None)).order_by(col(table.id))
        ).fetchmany(CLAIM)
    )
    if not ids:
        return []
    now = utcnow()
    session.execute(
        update(table)
        .where(col(table.id).in_(ids), col(table.emitted_at).is_(None))
        .values(emitted_at=now)
    )
    session.flush()
    return list(session.exec(select(table).where(col(table.id).in_(ids), table.emitted_at == now)))


def _related(role: str, *names: str | None) -> list[dict[str, str]]:
    return [
        {"prefect.resource.id": f"circus.{role}.{name}", "prefect.resource.role": role}
        for name in names
        if name
    ]


def _job_events(moves: list[JobEvent], session: Session) -> list[dict[str, Any]]:
    job_ids = list({m.job_id for m in moves})
    jobs = {j.id: j for j in session.exec(select(Job).where(col(Job.id).in_(job_ids)))}
    series: dict[str, list[str]] = defaultdict(list)
    for row in session.exec(
        select(JobSeries)
        .where(col(JobSeries.job_id).in_(job_ids))
        .order_by(col(JobSeries.position))
    ):
        series[row.job_id].append(row.series_uid)
    sent = []
    for move in moves:
        job = jobs[move.job_id]
        related = _related("plugin", job.plugin_id) + _related("series", *series[job.id])
        related += _related("batch", job.batch_id) + _related("user", job.user)
        if job.flow_run_id:
            related.append(
                {
                    "prefect.resource.id": f"prefect.flow-run.{job.flow_run_id}",
                    "prefect.resource.role": "flow-run",
                }
            )
        sent.append(
            {
                "event": f"circus.job.{move.to_status}",
                "resource": {
                    "prefect.resource.id": f"circus.job.{job.id}",
                    "prefect.resource.name": job.id,
                },
                "related": related,
                "payload": {
                    "from": move.from_status,
                    "to": move.to_status,
                    "by": move.by,
                    "reason": move.reason,
                },
                "occurred": move.at,
            }
        )
    return sent


def _batch_events(moves: list[BatchEvent], session: Session) -> list[dict[str, Any]]:
    sent = []
    for move in moves:
        batch = session.get(Batch, move.batch_id)
        assert batch is not None
        name = BATCH_EVENT_NAMES.get(move.to_status) or (
            "started" if move.from_status is None else "resumed"
        )
        sent.append(
            {
                "event": f"circus.batch.{name}",
                "resource": {
                    "prefect.resource.id": f"circus.batch.{batch.id}",
                    "prefect.resource.name": batch.name,
                },
                "related": _related("plugin", batch.plugin_id) + _related("user", batch.user),
                "payload": {"from": move.from_status, "to": move.to_status},
                "occurred": move.at,
            }
        )
    return sent


def claim_events() -> list[dict[str, Any]]:
    """The moves not sent yet, claimed (no other caller gets them), as Prefect events."""
    with session_scope() as session:
        events = _job_events(_claim(JobEvent, session), session)
        return events + _batch_events(_claim(BatchEvent, session), session)


def relay_events() -> int:
    """Send the moves not sent yet to Prefect; how many were sent."""
    from prefect.events import emit_event

    events = claim_events()
    for event in events:
        emit_event(**event)
    return len(events)
