"""The job state machine, as data: statuses, allowed moves, Prefect state mapping."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Status of a CIRCUS job."""

    IN_QUEUE = "in_queue"
    PROCESSING = "processing"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    INVALIDATED = "invalidated"
    FAILED = "failed"


class JobStage(StrEnum):
    """Which part of a processing job is running."""

    PRE = "pre"
    MAIN = "main"
    POST = "post"


ALLOWED_MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.IN_QUEUE: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.FINISHED, JobStatus.FAILED}),
    JobStatus.FINISHED: frozenset({JobStatus.INVALIDATED}),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.INVALIDATED: frozenset(),
    JobStatus.FAILED: frozenset(),
}
"""from -> allowed to. ``in_queue -> failed`` is ours: a run Prefect could not start at all."""

IGNORED_BY_DUPLICATE_CHECK: frozenset[JobStatus] = frozenset(
    {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INVALIDATED}
)
"""Jobs in these statuses never make a new job a duplicate."""

TERMINAL: frozenset[JobStatus] = frozenset(s for s, to in ALLOWED_MOVES.items() if not to)
"""Statuses a job never leaves."""

PREFECT_TO_JOB: dict[str, JobStatus] = {
    "SCHEDULED": JobStatus.IN_QUEUE,
    "PENDING": JobStatus.IN_QUEUE,
    "PAUSED": JobStatus.IN_QUEUE,
    "RUNNING": JobStatus.PROCESSING,
    "CANCELLING": JobStatus.PROCESSING,
    "COMPLETED": JobStatus.FINISHED,
    "FAILED": JobStatus.FAILED,
    "CRASHED": JobStatus.FAILED,
    "CANCELLED": JobStatus.CANCELLED,
}
"""What a Prefect flow run's state *type* (``StateType.value``) means for its job. Keyed by the
type's value so that this module does not import Prefect; never match on state *names*: queued
runs turn "Late" after a while."""

PREFECT_CANCEL_TYPES: frozenset[str] = frozenset({"CANCELLING", "CANCELLED"})
"""Prefect state types that mean someone cancelled the run in Prefect (UI or API)."""

INVALIDATED_STATE_NAME = "Invalidated"
"""Name of the Completed-type state an invalidated job's flow run is moved to."""


def job_status_for(state_type: object) -> JobStatus:
    """Our status for a Prefect ``StateType`` (or its value)."""
    return PREFECT_TO_JOB[str(getattr(state_type, "value", state_type))]


def can_move(current: JobStatus, new: JobStatus) -> bool:
    """Whether the state machine allows ``current -> new``."""
    return new in ALLOWED_MOVES[current]
