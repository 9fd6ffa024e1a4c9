"""Every write of a job's status, each one compare-and-set beside the table of allowed moves
(:data:`circus_tasks.statuses.ALLOWED_MOVES`).

A move changes the row only if the job is still in the status the move starts from, and logs
a :class:`~circus_tasks.db.models.JobEvent` in the same transaction: a cancel and the start of
the run that race end with exactly one winner. The functions take the caller's session and
leave the commit to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from circus_tasks.db.models import Job, JobEvent, utcnow
from circus_tasks.errors import JobNotFoundError, JobStateError
from circus_tasks.statuses import JobStage, JobStatus, RunState, can_move


def move_status(
    job_id: str,
    from_status: JobStatus,
    to_status: JobStatus,
    *,
    session: Session,
    by: str | None = None,
    reason: str | None = None,
    prefect_state: str | None = None,
    only_if: Any = None,
    **values: Any,
) -> bool:
    """Atomically move a job ``from_status -> to_status`` and log the event (``only_if``: a
    further condition on the row).

    Returns:
        Whether this call made the move (``False``: the job was not in ``from_status``).
    """
    if not can_move(from_status, to_status):
        raise JobStateError(f"The move {from_status} -> {to_status} is not allowed.")
    now = utcnow()
    query = update(Job).where(col(Job.id) == job_id, col(Job.status) == from_status)
    if only_if is not None:
        query = query.where(only_if)
    result = session.execute(query.values(status=to_status, updated_at=now, **values))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(
        JobEvent(
            job_id=job_id,
            from_status=from_status,
            to_status=to_status,
            at=now,
            by=by,
            reason=reason,
            prefect_state=prefect_state,
        )
    )
    session.flush()
    return True


def _require(job_id: str, session: Session) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFoundError.for_id(job_id)
    return job


def _refusal(verb: str, job: Job) -> JobStateError:
    extra = " (already being processed)" if job.status == JobStatus.PROCESSING else ""
    return JobStateError(f"You cannot {verb} this job because its status is {job.status}{extra}.")


def claim(job_id: str, *, machine: str, flow_run_id: str | None, session: Session) -> bool:
    """The start-or-cancel decision: ``in_queue -> processing`` on ``machine``.

    A run that is no longer the job's (it was replaced after it failed to start) cannot claim
    it.

    Returns:
        ``True`` if this run may process the job; ``False`` if it was cancelled (or otherwise
        left ``in_queue``, or given another run) first.
    """
    now = utcnow()
    own_run = None
    if flow_run_id:
        own_run = col(Job.flow_run_id).is_(None) | (col(Job.flow_run_id) == flow_run_id)
    won = move_status(
        job_id,
        JobStatus.IN_QUEUE,
        JobStatus.PROCESSING,
        session=session,
        by=f"machine:{machine}",
        reason="execution started",
        prefect_state=RunState.RUNNING,
        machine=machine,
        started_at=now,
        heartbeat_at=now,
        stage=JobStage.PRE,
        only_if=own_run,
    )
    if won and flow_run_id:
        session.execute(
            update(Job)
            .where(col(Job.id) == job_id, col(Job.flow_run_id).is_(None))
            .values(flow_run_id=flow_run_id)
        )
    return won


def _while_processing(job_id: str, session: Session, **values: Any) -> None:
    session.execute(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status) == JobStatus.PROCESSING)
        .values(**values)
    )


def set_stage(job_id: str, stage: JobStage, *, session: Session) -> None:
    """Record which part of a processing job runs now."""
    _while_processing(job_id, session, stage=stage, updated_at=utcnow())


def beat(job_id: str, *, session: Session) -> None:
    """Record that a processing job's process is alive."""
    _while_processing(job_id, session, heartbeat_at=utcnow())


def finish(job_id: str, results: dict[str, Any], *, session: Session) -> bool:
    """``processing -> finished`` with the results."""
    return move_status(
        job_id,
        JobStatus.PROCESSING,
        JobStatus.FINISHED,
        session=session,
        reason="results stored",
        prefect_state=RunState.COMPLETED,
        results=results,
        stage=None,
        finished_at=utcnow(),
    )


def fail(
    job_id: str,
    message: str,
    *,
    session: Session,
    by: str | None = None,
    prefect_state: str = RunState.FAILED,
) -> bool:
    """``processing -> failed`` with a readable error message."""
    return move_status(
        job_id,
        JobStatus.PROCESSING,
        JobStatus.FAILED,
        session=session,
        by=by,
        reason=message,
        prefect_state=prefect_state,
        error_message=message,
        finished_at=utcnow(),
    )


def end_queued(job_id: str, to: JobStatus, reason: str, *, by: str, session: Session) -> bool:
    """``in_queue -> cancelled`` or ``in_queue -> failed``, by someone other than a user."""
    return move_status(
        job_id,
        JobStatus.IN_QUEUE,
        to,
        session=session,
        by=by,
        reason=reason,
        error_message=reason if to == JobStatus.FAILED else None,
        finished_at=utcnow(),
    )


def replace_run(job_id: str, old_run: str, new_run: str, reason: str, *, session: Session) -> bool:
    """Give a queued job a new flow run in place of one that died before it started (logged as
    ``in_queue -> in_queue``); the old run can no longer claim the job. ``False``: the job was
    no longer queued on ``old_run``."""
    now, queued = utcnow(), JobStatus.IN_QUEUE
    result = session.execute(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status) == queued, col(Job.flow_run_id) == old_run)
        .values(flow_run_id=new_run, updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(
        JobEvent(
            job_id=job_id,
            from_status=queued,
            to_status=queued,
            at=now,
            by="reconciler",
            reason=reason,
        )
    )
    session.flush()
    return True


_USER_MOVES: dict[str, tuple[JobStatus, JobStatus]] = {
    "cancel": (JobStatus.IN_QUEUE, JobStatus.CANCELLED),
    "invalidate": (JobStatus.FINISHED, JobStatus.INVALIDATED),
}
"""The moves a user asks for by name, and the one status each may start from."""


def _move_or_refuse(verb: str, job_id: str, *, session: Session, **fields: Any) -> None:
    """A user's move: the job must exist and be in the move's start status, else the refusal
    says why ("You cannot cancel this job because its status is ...")."""
    job = _require(job_id, session)
    from_status, to_status = _USER_MOVES[verb]
    if not move_status(job_id, from_status, to_status, session=session, **fields):
        session.refresh(job)
        raise _refusal(verb, job)


def cancel(job_id: str, *, user: str | None, session: Session) -> None:
    """``in_queue -> cancelled`` by a user.

    Raises:
        JobNotFoundError, JobStateError ("You cannot cancel this job because its status is X").
    """
    reason = f"cancelled by {user or 'unknown user'}"
    _move_or_refuse("cancel", job_id, session=session, by=user, reason=reason, finished_at=utcnow())


def _invalidation(reason: str, user: str | None) -> dict[str, Any]:
    """The fields of a ``finished -> invalidated`` move: who, when, why."""
    return {
        "by": user,
        "reason": reason,
        "invalidated_by": user,
        "invalidated_at": utcnow(),
        "invalidation_reason": reason,
    }


def invalidate(job_id: str, *, reason: str, user: str | None, session: Session) -> None:
    """``finished -> invalidated``, recording who, when and why.

    Raises:
        JobNotFoundError, JobStateError ("You cannot invalidate this job because ...").
    """
    _move_or_refuse("invalidate", job_id, session=session, **_invalidation(reason, user))


def mark_abort(job_id: str, who: str, *, session: Session) -> bool:
    """Record who asked to abort a processing job (the first asker wins).

    Returns:
        Whether this call recorded it.
    """
    result = session.execute(
        update(Job)
        .where(
            col(Job.id) == job_id,
            col(Job.status) == JobStatus.PROCESSING,
            col(Job.abort_requested_by).is_(None),
        )
        .values(abort_requested_by=who, updated_at=utcnow())
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def request_abort(job_id: str, *, user: str, session: Session) -> None:
    """Record an abort request on a processing job (a repeat request is accepted).

    Raises:
        JobNotFoundError, JobStateError ("You cannot abort this job because its status is X").
    """
    job = _require(job_id, session)
    if not mark_abort(job_id, user, session=session):
        session.refresh(job)
        if job.status != JobStatus.PROCESSING:
            raise JobStateError(f"You cannot abort this job because its status is {job.status}.")


def supersede(
    job_id: str, by_job: str, plugin_id: str, *, user: str | None, session: Session
) -> bool:
    """``finished -> invalidated`` because ``by_job`` (of ``plugin_id``) re-ran it and finished.

    Returns:
        Whether this call made the move (``False``: the job was not finished).
    """
    fields = _invalidation(f"superseded by {by_job} ({plugin_id})", user)
    return move_status(job_id, JobStatus.FINISHED, JobStatus.INVALIDATED, session=session, **fields)
