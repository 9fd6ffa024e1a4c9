"""A batch's records: its status moves (compare-and-set, beside
:data:`~circus_tasks.statuses.BATCH_MOVES`), which of its jobs to feed next, and its progress.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from circus_tasks.db.models import Batch, BatchEvent, BatchItem, Job, utcnow
from circus_tasks.errors import BatchNotFoundError, JobStateError
from circus_tasks.jobs.transitions import end_queued
from circus_tasks.statuses import BATCH_MOVES, TERMINAL, USER_BATCH_MOVES, BatchStatus, JobStatus

IN_FLIGHT: frozenset[JobStatus] = frozenset({JobStatus.IN_QUEUE, JobStatus.PROCESSING})


def require_batch(batch_id: str, *, session: Session) -> Batch:
    """The batch.

    Raises:
        BatchNotFoundError: for an unknown id.
    """
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise BatchNotFoundError.for_id(batch_id)
    return batch


def move_batch(
    batch_id: str, from_status: BatchStatus, to_status: BatchStatus, *, session: Session
) -> bool:
    """Atomically move a batch ``from_status -> to_status``; whether this call made it."""
    if to_status not in BATCH_MOVES[from_status]:
        raise JobStateError(f"The batch move {from_status} -> {to_status} is not allowed.")
    result = session.execute(
        update(Batch)
        .where(col(Batch.id) == batch_id, col(Batch.status) == from_status)
        .values(status=to_status, updated_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(BatchEvent(batch_id=batch_id, from_status=from_status, to_status=to_status))
    return True


def user_move(batch_id: str, verb: str, *, session: Session) -> Batch:
    """A user's move of a batch by name (:data:`~circus_tasks.statuses.USER_BATCH_MOVES`):
    pause, resume or cancel; asking for the status it has already is no move.

    Raises:
        BatchNotFoundError, JobStateError ("You cannot resume this batch because it is ...").
    """
    starts, to_status = USER_BATCH_MOVES[verb]
    batch = require_batch(batch_id, session=session)
    if batch.status == to_status:
        return batch
    if batch.status not in starts or not move_batch(
        batch_id, batch.status, to_status, session=session
    ):
        session.refresh(batch)
        raise JobStateError(
            f"You cannot {verb} this batch because it is {batch.status}; "
            "start a new batch (circus batch start) to run its plug-in again."
        )
    session.refresh(batch)
    return batch


def cancel_queued(
    batch_id: str, *, by: str, session: Session, held_only: bool = False
) -> list[str]:
    """Cancel the batch's jobs still ``in_queue`` (only those held for its feeder, without a
    flow run yet, with ``held_only``), oldest first; the ids of those cancelled."""
    reason = f"batch {batch_id} cancelled"
    queued = select(Job.id).where(Job.batch_id == batch_id, Job.status == JobStatus.IN_QUEUE)
    if held_only:
        queued = queued.where(col(Job.flow_run_id).is_(None))
    return [
        job_id
        for job_id in session.exec(queued.order_by(col(Job.id)))
        if end_queued(job_id, JobStatus.CANCELLED, reason, by=by, session=session)
    ]


def take_feeding(
    batch_id: str, flow_run_id: str, *, replacing: str | None, session: Session
) -> bool:
    """Make ``flow_run_id`` the batch's feeding run if it has none, is it already, or
    ``replacing`` (an ended run) is; whether it is now."""
    owners = [None, flow_run_id, replacing]
    result = session.execute(
        update(Batch)
        .where(
            col(Batch.id) == batch_id,
            col(Batch.flow_run_id).is_(None) | col(Batch.flow_run_id).in_([o for o in owners if o]),
        )
        .values(flow_run_id=flow_run_id)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def jobs_to_feed(batch_id: str, max_in_flight: int, *, session: Session) -> list[str]:
    """The held jobs (``in_queue``, no flow run yet) that may be dispatched now, oldest first,
    so that at most ``max_in_flight`` of the batch's jobs are queued or running."""
    flying = session.exec(
        select(func.count())
        .select_from(Job)
        .where(
            Job.batch_id == batch_id,
            col(Job.status).in_(IN_FLIGHT),
            col(Job.flow_run_id).is_not(None),
        )
    ).one()
    room = max(0, max_in_flight - int(flying))
    if room == 0:
        return []
    held = select(Job.id).where(
        Job.batch_id == batch_id, Job.status == JobStatus.IN_QUEUE, col(Job.flow_run_id).is_(None)
    )
    return list(session.exec(held.order_by(col(Job.id)).limit(room)))


@dataclass(frozen=True)
class BatchProgress:
    """How far a batch's jobs are, by status."""

    batch_id: str
    status: BatchStatus
    jobs: dict[JobStatus, int]

    @property
    def total(self) -> int:
        return sum(self.jobs.values())

    @property
    def done(self) -> int:
        return sum(n for s, n in self.jobs.items() if s in TERMINAL or s == JobStatus.FINISHED)

    @property
    def percent(self) -> float:
        return 100.0 if self.total == 0 else 100.0 * self.done / self.total


def progress(batch_id: str, *, session: Session) -> BatchProgress:
    """The batch's status and its jobs counted by status."""
    batch = require_batch(batch_id, session=session)
    rows = session.exec(
        select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
    )
    counts = Counter({JobStatus(status): int(n) for status, n in rows})
    return BatchProgress(batch.id, batch.status, {s: counts[s] for s in JobStatus})


def complete_if_done(batch_id: str, *, session: Session) -> bool:
    """``running -> completed`` once none of its jobs is queued or running."""
    left = session.exec(
        select(func.count())
        .select_from(Job)
        .where(Job.batch_id == batch_id, col(Job.status).in_(IN_FLIGHT))
    ).one()
    if left:
        return False
    return move_batch(batch_id, BatchStatus.RUNNING, BatchStatus.COMPLETED, session=session)


def items(batch_id: str, *, session: Session) -> list[BatchItem]:
    """The batch's items in order."""
    query = select(BatchItem).where(BatchItem.batch_id == batch_id)
    return list(session.exec(query.order_by(col(BatchItem.position))))
