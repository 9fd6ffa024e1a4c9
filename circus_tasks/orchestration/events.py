"""Every status move of a job or a batch, sent to Prefect as an event, so that a site can act on
them with Prefect Automations (e-mail or Slack when a job fails, ...).

The moves are written to our tables with the move itself (``jobevent``, ``batch_event``); the
reconciler sends those not sent yet to Prefect's events API and marks them sent once Prefect
took them. Each event's id is derived from its row, so that a move two reconcilers send at
once is one event.

Event names: ``circus.job.<status>`` (``in_queue`` when registered) and ``circus.batch.started``,
``.paused``, ``.resumed``, ``.cancelled``, ``.completed``. The resource is the job
(``circus.job.ID``) or the batch (``circus.batch.ID``); related resources name the plug-in,
each series, the batch, the user and the flow run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from sqlalchemy import update
from sqlmodel import Session, col, select

from circus_tasks.db.engine import session_scope
from circus_tasks.db.models import Batch, BatchEvent, Job, JobEvent, JobSeries, utcnow
from circus_tasks.orchestration.client import prefect_calls
from circus_tasks.statuses import BatchStatus


def batch_event_name(from_status: BatchStatus | None, to_status: BatchStatus) -> str:
    """``started`` and ``resumed`` for moves to ``running``, else the new status."""
    if to_status != BatchStatus.RUNNING:
        return str(to_status)
    return "started" if from_status is None else "resumed"


PER_PASS = 200
"""Moves sent per reconciler pass, at most."""


def _unsent(table: type[JobEvent] | type[BatchEvent], session: Session) -> list[Any]:
    """Up to :data:`PER_PASS` rows of ``table`` not sent yet, oldest first."""
    query = select(table).where(col(table.emitted_at).is_(None)).order_by(col(table.id))
    return list(session.exec(query.limit(PER_PASS)))


def _event_id(table: str, row_id: int | None) -> str:
    return str(uuid5(NAMESPACE_URL, f"circus:{table}:{row_id}"))


def _occurred(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


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
                "id": _event_id("jobevent", move.id),
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
        name = batch_event_name(move.from_status, move.to_status)
        sent.append(
            {
                "id": _event_id("batch_event", move.id),
                "event": f"circus.batch.{name}",
                "resource": {
                    "prefect.resource.id": f"circus.batch.{batch.id}",
                    "prefect.resource.name": batch.name,
                },
                "related": _related("plugin", batch.plugin_id) + _related("user", batch.user),
                "payload": {"from": move.from_status, "to": move.to_status},
                "occurred": _occurred(move.at),
            }
        )
    return sent


def pending_events() -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """The moves not sent yet, as Prefect events, and the ids of their job and batch rows."""
    with session_scope() as session:
        jobs, batches = _unsent(JobEvent, session), _unsent(BatchEvent, session)
        events = _job_events(jobs, session) + _batch_events(batches, session)
        return events, [m.id for m in jobs], [m.id for m in batches]


def mark_sent(job_rows: list[int], batch_rows: list[int]) -> None:
    """Record that these moves are sent."""
    now = utcnow()
    with session_scope() as session:
        for table, ids in ((JobEvent, job_rows), (BatchEvent, batch_rows)):
            if ids:
                session.execute(
                    update(table)
                    .where(col(table.id).in_(ids), col(table.emitted_at).is_(None))
                    .values(emitted_at=now)
                )


def relay_events() -> int:
    """Send the moves not sent yet to Prefect's events API; how many were sent.

    Raises:
        PrefectUnavailableError: Prefect does not answer (they are sent on a later pass).
    """
    events, job_rows, batch_rows = pending_events()
    if not events:
        return 0
    with prefect_calls() as client:
        client.request("POST", "/events", json=jsonable(events))  # type: ignore[arg-type]
    mark_sent(job_rows, batch_rows)
    return len(events)


def jsonable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with every status as its plain string."""
    return json.loads(json.dumps(events, default=str))
